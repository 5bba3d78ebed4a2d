package guard

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"io"
	"sort"
	"strconv"
	"sync"
)

// lexiconGz is WordNet 3.0 reduced to what the guard asks of it (built by
// gen/main.go; licence in NOTICE): the lemmas, the synsets of each lemma's
// first senses, verb hypernyms and irregular forms.
//
//go:embed lexicon.txt.gz
var lexiconGz []byte

// lexicon is the parsed table. It is read-only once built.
type lexicon struct {
	blob  []byte   // the lemma lines, sorted
	lines []uint32 // start of each lemma line in blob
	hyper map[uint32][]uint32
	irreg map[string][]string
}

// theLexicon parses the embedded table on first use (about 20 ms): most
// processes never compare two differing words. The table is constant data,
// so sharing it does not make Check stateful.
var theLexicon = sync.OnceValue(func() *lexicon {
	l := &lexicon{hyper: map[uint32][]uint32{}, irreg: map[string][]string{}}
	zr, err := gzip.NewReader(bytes.NewReader(lexiconGz))
	if err != nil {
		return l // cannot happen with the committed file; every word is then unknown
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return l
	}
	for len(raw) > 0 {
		line := raw
		if k := bytes.IndexByte(raw, '\n'); k >= 0 {
			line, raw = raw[:k], raw[k+1:]
		} else {
			raw = nil
		}
		if len(line) == 0 {
			continue
		}
		switch line[0] {
		case '#':
		case '^':
			head, tail, _ := bytes.Cut(line[1:], []byte{' '})
			l.hyper[parseID36(head)] = parseIDs(tail)
		case '>':
			form, base, _ := bytes.Cut(line[1:], []byte{' '})
			l.irreg[string(form)] = append(l.irreg[string(form)], string(base))
		default:
			l.lines = append(l.lines, uint32(len(l.blob)))
			l.blob = append(l.blob, line...)
			l.blob = append(l.blob, '\n')
		}
	}
	return l
})

func parseID36(b []byte) uint32 {
	n, _ := strconv.ParseUint(string(b), 36, 32)
	return uint32(n)
}

func parseIDs(b []byte) []uint32 {
	var out []uint32
	for len(b) > 0 {
		var f []byte
		f, b, _ = bytes.Cut(b, []byte{','})
		out = append(out, parseID36(f))
	}
	return out
}

// entry returns w's synset ids and whether w is a lemma.
func (l *lexicon) entry(w string) ([]uint32, bool) {
	i := sort.Search(len(l.lines), func(i int) bool { return string(l.word(i)) >= w })
	if i == len(l.lines) || string(l.word(i)) != w {
		return nil, false
	}
	start := int(l.lines[i])
	line := l.blob[start : start+bytes.IndexByte(l.blob[start:], '\n')]
	_, ids, _ := bytes.Cut(line, []byte{' '})
	return parseIDs(ids), true
}

// word is the lemma of line i.
func (l *lexicon) word(i int) []byte {
	line := l.blob[l.lines[i]:]
	end := bytes.IndexAny(line, " \n")
	return line[:end]
}

// detachments are WordNet's morphological rules (morphy): an inflected
// ending and what replaces it in the base form.
var detachments = [...][2]string{
	{"s", ""}, {"ses", "s"}, {"xes", "x"}, {"zes", "z"}, {"ches", "ch"}, {"shes", "sh"},
	{"men", "man"}, {"ies", "y"}, {"es", "e"}, {"es", ""}, {"ed", "e"}, {"ed", ""},
	{"ing", "e"}, {"ing", ""}, {"er", ""}, {"est", ""}, {"er", "e"}, {"est", "e"},
}

// bases returns the base forms of w: w itself when it is a lemma, its
// irregular bases, and the lemmas that WordNet's detachment rules reach
// (with a doubled final consonant undone: running → run). A word that is a
// lemma is not detached further, so "news" is not "new".
func (l *lexicon) bases(w string) []string {
	out := []string{w}
	if bs, ok := l.irreg[w]; ok {
		out = append(out, bs...)
	}
	if _, ok := l.entry(w); ok {
		return out
	}
	for _, d := range detachments {
		if len(w) <= len(d[0])+1 || w[len(w)-len(d[0]):] != d[0] {
			continue
		}
		stem := w[:len(w)-len(d[0])]
		for _, b := range []string{stem + d[1], undouble(stem)} {
			if b == "" {
				continue
			}
			if _, ok := l.entry(b); ok {
				out = append(out, b)
			}
		}
	}
	return out
}

// undouble drops a doubled final consonant (runn → run), else "".
func undouble(s string) string {
	n := len(s)
	if n < 3 || s[n-1] != s[n-2] {
		return ""
	}
	switch s[n-1] {
	case 'a', 'e', 'i', 'o', 'u', 's', 'l':
		return ""
	}
	return s[:n-1]
}

// related reports whether a and b (lower-case words) are the same word in
// another form or synonyms: they share a base form, or a base form of each
// shares a synset among its first senses, or a verb sense of one is a
// direct hypernym of the other's ("delete" is a way to "remove"). Words
// WordNet does not know are related only to their own forms.
func (l *lexicon) related(a, b string) bool {
	if a == b {
		return true
	}
	ba, bb := l.bases(a), l.bases(b)
	for _, x := range ba {
		for _, y := range bb {
			if x == y {
				return true
			}
		}
	}
	// Unknown words (jargon, names lower-cased): a plural is a form.
	if l.plural(a, b) || l.plural(b, a) {
		return true
	}
	var sa, sb []uint32
	for _, x := range ba {
		ids, _ := l.entry(x)
		sa = append(sa, ids...)
	}
	for _, y := range bb {
		ids, _ := l.entry(y)
		sb = append(sb, ids...)
	}
	for _, x := range sa {
		for _, y := range sb {
			if x == y {
				return true
			}
		}
	}
	return l.hypernymOf(sa, sb) || l.hypernymOf(sb, sa)
}

// plural reports whether p is s with an s or es added, for words neither of
// which WordNet knows.
func (l *lexicon) plural(p, s string) bool {
	if len(p) <= len(s) || len(s) < 3 || p[:len(s)] != s {
		return false
	}
	if suf := p[len(s):]; suf != "s" && suf != "es" {
		return false
	}
	_, pk := l.entry(p)
	_, sk := l.entry(s)
	return !pk && !sk
}

// hypernymOf reports whether a synset of sub has one of sup as a direct
// hypernym.
func (l *lexicon) hypernymOf(sub, sup []uint32) bool {
	for _, x := range sub {
		for _, h := range l.hyper[x] {
			for _, y := range sup {
				if h == y {
					return true
				}
			}
		}
	}
	return false
}

// Warm parses the embedded WordNet table now (about 0.1 s) rather than on
// the first pair of prompts that differ in a word; serve calls it at
// start-up so that no request pays for it.
func Warm() { theLexicon() }
