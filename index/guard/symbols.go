package guard

import (
	"unicode"
	"unicode/utf8"
)

// symbols appends to dst a hash of each run of symbol characters in text
// (anything but letters, digits and spaces), in order, so that "7 + 3" and
// "7 - 3", "a == b" and "a != b", "C++" and "C#", "$100" and "€100", "20%"
// and "20" differ. Sentence punctuation and quotation marks are not
// symbols: they are trimmed from the ends of a run ("!=" keeps its "!",
// "i++." loses its "."), and a run of nothing else is dropped. A hyphen or
// apostrophe between two letters, and a point or comma inside a word or
// number, are part of the word.
func symbols(dst []uint64, text string) []uint64 {
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		if !symbolic(r) {
			i += size
			continue
		}
		j := i + size
		for j < len(text) {
			r2, n := utf8.DecodeRuneInString(text[j:])
			if !symbolic(r2) {
				break
			}
			j += n
		}
		run := text[i:j]
		if j-i == 1 && inWord(text, i) {
			i = j
			continue
		}
		// Trim trailing sentence punctuation, leading opening quotes.
		for len(run) > 0 {
			r, n := utf8.DecodeLastRuneInString(run)
			if !punctuation(r) {
				break
			}
			run = run[:len(run)-n]
		}
		for len(run) > 0 {
			r, n := utf8.DecodeRuneInString(run)
			if !opening(r) {
				break
			}
			run = run[n:]
		}
		if run != "" {
			h := uint64(fnvOffset)
			for k := 0; k < len(run); k++ {
				h = (h ^ uint64(run[k])) * fnvPrime
			}
			dst = append(dst, h)
		}
		i = j
	}
	return dst
}

// symbolic reports whether r can be part of a symbol run.
func symbolic(r rune) bool {
	return !unicode.IsLetter(r) && !unicode.IsNumber(r) && !unicode.IsSpace(r) && r != 0x1e
}

// inWord reports whether the one-byte symbol at text[i] joins two word
// characters: the hyphen or apostrophe of a word (well-known, don't), the
// point of a decimal or abbreviation, the comma of a thousands group.
func inWord(text string, i int) bool {
	if i == 0 || i+1 >= len(text) {
		return false
	}
	prev, _ := utf8.DecodeLastRuneInString(text[:i])
	next, _ := utf8.DecodeRuneInString(text[i+1:])
	letters := unicode.IsLetter(prev) && unicode.IsLetter(next)
	alnum := (unicode.IsLetter(prev) || unicode.IsNumber(prev)) && (unicode.IsLetter(next) || unicode.IsNumber(next))
	switch text[i] {
	case '-', '\'':
		return letters
	case '.', ',':
		return alnum
	}
	return false
}

// punctuation reports whether r ends sentences or clauses, or closes a quote.
func punctuation(r rune) bool {
	switch r {
	case '.', ',', ';', ':', '?', '!', '\'', '"', '`', '’', '”', '»', '…', '—':
		return true
	}
	return false
}

// opening reports whether r opens a quote or is punctuation that can start a
// run without meaning anything ("...so", "— and").
func opening(r rune) bool {
	switch r {
	case '\'', '"', '`', '‘', '“', '„', '«', '…', '—', ',', ';', ':', '.':
		return true
	}
	return false
}

func slicesEqual(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// sameWords reports whether every content word one text has and the other
// lacks is another form or a WordNet synonym of a word the other has and
// the first lacks (mango/banana, add/remove, open/close are not;
// delete/remove and list/lists are). ac and bc are the texts' content-word
// hashes; the words themselves are read again only when they differ.
func sameWords(a, b string, ac, bc []uint64) bool {
	var da, db [16]uint64
	onlyA, onlyB := missing(da[:0], ac, bc), missing(db[:0], bc, ac)
	if len(onlyA) == 0 && len(onlyB) == 0 {
		return true
	}
	if len(onlyA) == 0 || len(onlyB) == 0 || len(onlyA) > 8 || len(onlyB) > 8 {
		return false
	}
	wa, wb := wordsFor(a, onlyA), wordsFor(b, onlyB)
	if len(wa) != len(onlyA) || len(wb) != len(onlyB) {
		return false // a word the lexicon cannot read (not ASCII, too long)
	}
	lex := theLexicon()
	covered := func(xs, ys []string) bool {
		for _, x := range xs {
			ok := false
			for _, y := range ys {
				if lex.related(x, y) {
					ok = true
					break
				}
			}
			if !ok {
				return false
			}
		}
		return true
	}
	return covered(wa, wb) && covered(wb, wa)
}

// missing appends to dst the distinct items of a that are not in b.
func missing(dst, a, b []uint64) []uint64 {
	for i, x := range a {
		if indexOf(a[:i], x) < 0 && !contains(b, []uint64{x}) {
			dst = append(dst, x)
		}
	}
	return dst
}

// wordsFor returns the lower-case ASCII words of text whose hashes (as scan
// computes them) are in want, each once.
func wordsFor(text string, want []uint64) []string {
	var out []string
	var seen []uint64
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		if !unicode.IsLetter(r) && !unicode.IsNumber(r) {
			i += size
			continue
		}
		j, ascii := i, true
		h := uint64(fnvOffset)
		var low []byte
		for j < len(text) {
			c, n := utf8.DecodeRuneInString(text[j:])
			if !unicode.IsLetter(c) && !unicode.IsNumber(c) {
				break
			}
			lc := unicode.ToLower(c)
			if lc >= utf8.RuneSelf {
				ascii = false
			}
			var e [4]byte
			for _, x := range e[:utf8.EncodeRune(e[:], lc)] {
				h = (h ^ uint64(x)) * fnvPrime
				low = append(low, x)
			}
			j += n
		}
		i = j
		if ascii && len(low) < 64 && indexOf(want, h) >= 0 && indexOf(seen, h) < 0 {
			seen = append(seen, h)
			out = append(out, string(low))
		}
	}
	return out
}
