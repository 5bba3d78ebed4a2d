package tokens

import (
	"unicode"
	"unicode/utf8"
)

// Character classes of the split patterns, as bits of one byte per rune. The
// patterns are tiktoken's, as github.com/tiktoken-go/tokenizer compiles them
// (regexp2, .NET semantics, on runes):
//
//	o200k_base: [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//	          | [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//	          | \p{N}{1,3} | ?[^\s\p{L}\p{N}]+[\r\n/]* | \s*[\r\n]+ | \s+(?!\S) | \s+
//	cl100k_base: (?i:'s|'t|'re|'ve|'m|'ll|'d) | [^\r\n\p{L}\p{N}]?\p{L}+ | \p{N}{1,3}
//	          | ?[^\s\p{L}\p{N}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
const (
	clSpace  = 1 << iota // \s
	clNL                 // \r or \n
	clLetter             // \p{L}
	clNum                // \p{N}
	clUpper              // [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]
	clLower              // [\p{Ll}\p{Lm}\p{Lo}\p{M}]
	clPrefix             // [^\r\n\p{L}\p{N}]
	clPunct              // [^\s\p{L}\p{N}]
)

// The compiled patterns test ASCII against these bitmaps (bit c of lo for
// c < 64, bit c-64 of hi otherwise). Both leave out DEL (0x7f), which is
// therefore in no class: it matches no alternative and is never counted.
const (
	prefixLo, prefixHi = 0xfc00ffffffffdbff, 0x78000001f8000001
	punctLo, punctHi   = 0xfc00fffeffffc1ff, 0x78000001f8000001
)

// classTable holds the class of every rune of the first four planes (where
// every script, emoji and CJK ideograph is); runes above them are classified
// on the fly (see classify).
type classTable [0x40000]uint8

func newClassTable() *classTable {
	t := new(classTable)
	for r := range rune(len(t)) {
		t[r] = classify(r)
	}
	return t
}

func inBitmap(r rune, lo, hi uint64) bool {
	if r < 64 {
		return lo&(1<<uint(r)) != 0
	}
	return hi&(1<<uint(r-64)) != 0
}

// classify computes the classes of r the way the compiled patterns test them:
// \s is unicode.IsSpace, categories are Go's unicode tables.
func classify(r rune) uint8 {
	var c uint8
	if unicode.IsSpace(r) {
		c |= clSpace
	}
	if r == '\r' || r == '\n' {
		c |= clNL
	}
	letter := unicode.IsLetter(r)
	if letter {
		c |= clLetter
	}
	num := unicode.IsNumber(r)
	if num {
		c |= clNum
	}
	if unicode.In(r, unicode.Lu, unicode.Lt, unicode.Lm, unicode.Lo, unicode.M) {
		c |= clUpper
	}
	if unicode.In(r, unicode.Ll, unicode.Lm, unicode.Lo, unicode.M) {
		c |= clLower
	}
	if r < utf8.RuneSelf {
		if inBitmap(r, prefixLo, prefixHi) {
			c |= clPrefix
		}
		if inBitmap(r, punctLo, punctHi) {
			c |= clPunct
		}
		return c
	}
	if !letter && !num {
		c |= clPrefix
		if c&clSpace == 0 {
			c |= clPunct
		}
	}
	return c
}

// at returns the class and the length in bytes of the rune at s[i], or 0, 0
// past the end. s must be valid UTF-8.
func (t *classTable) at(s string, i int) (uint8, int) {
	if i >= len(s) {
		return 0, 0
	}
	if b := s[i]; b < utf8.RuneSelf {
		return t[b], 1
	}
	r, n := utf8.DecodeRuneInString(s[i:])
	if r < rune(len(t)) {
		return t[r], n
	}
	return classify(r), n
}

// run returns the end of the run of runes of class cl that starts at i.
func (t *classTable) run(s string, i int, cl uint8) int {
	for {
		c, n := t.at(s, i)
		if c&cl == 0 {
			return i
		}
		i += n
	}
}

// contraction returns the end of the contraction ('s, 't, 're, 've, 'm, 'll,
// 'd in any case, 's also as 'ſ) at s[i:], or -1 if there is none.
func contraction(s string, i int) int {
	if i+1 >= len(s) || s[i] != '\'' {
		return -1
	}
	switch s[i+1] {
	case 's', 'S', 't', 'T', 'm', 'M', 'd', 'D':
		return i + 2
	case 0xc5: // ſ is C5 BF
		if i+2 < len(s) && s[i+2] == 0xbf {
			return i + 3
		}
	case 'r', 'R', 'v', 'V':
		if i+2 < len(s) && (s[i+2] == 'e' || s[i+2] == 'E') {
			return i + 3
		}
	case 'l', 'L':
		if i+2 < len(s) && (s[i+2] == 'l' || s[i+2] == 'L') {
			return i + 3
		}
	}
	return -1
}

// optContraction extends a word ending at e by a contraction that follows it.
func optContraction(s string, e int) int {
	if c := contraction(s, e); c > 0 {
		return c
	}
	return e
}

// splitO200k returns the end of the piece of s that starts at i under
// o200k_base's pattern, and false if the rune at i starts no piece (it is
// skipped). Each alternative is tried in the pattern's order with the
// backtracking the regular expression would do, which for these patterns is
// bounded: the whole split is linear in len(s).
func (t *classTable) splitO200k(s string, i int) (int, bool) {
	c0, n0 := t.at(s, i)
	if c0&(clPrefix|clUpper|clLower) != 0 {
		// [^\r\n\p{L}\p{N}]? U* L+ 's? : first with the optional prefix, then without.
		if c0&clPrefix != 0 {
			if e := t.upperLower(s, i+n0); e > 0 {
				return optContraction(s, e), true
			}
		}
		if c0&(clUpper|clLower) != 0 {
			if e := t.upperLower(s, i); e > 0 {
				return optContraction(s, e), true
			}
		}
		// [^\r\n\p{L}\p{N}]? U+ L* 's?
		if c0&clPrefix != 0 {
			if c, n := t.at(s, i+n0); c&clUpper != 0 {
				e := t.run(s, t.run(s, i+n0+n, clUpper), clLower)
				return optContraction(s, e), true
			}
		}
		if c0&clUpper != 0 {
			e := t.run(s, t.run(s, i+n0, clUpper), clLower)
			return optContraction(s, e), true
		}
	}
	if c0&clNum != 0 {
		return t.digits(s, i+n0), true
	}
	if e := t.punct(s, i, true); e > 0 {
		return e, true
	}
	if c0&clSpace != 0 {
		return t.space(s, i), true
	}
	return i + n0, false
}

// upperLower matches U* L+ at s[i:] (U and L overlap in Lm, Lo and M) and
// returns its end, or -1. U* is greedy and gives back runes until one of
// class L follows: the end is after the longest run of L that starts after
// the U run, else after the last rune of the U run that is also of class L.
func (t *classTable) upperLower(s string, i int) int {
	lastLower := -1
	for {
		c, n := t.at(s, i)
		if c&clUpper == 0 {
			if c&clLower != 0 {
				return t.run(s, i+n, clLower)
			}
			return lastLower
		}
		i += n
		if c&clLower != 0 {
			lastLower = i
		}
	}
}

// digits matches up to two more runes of \p{N} after the first, at i.
func (t *classTable) digits(s string, i int) int {
	for range 2 {
		c, n := t.at(s, i)
		if c&clNum == 0 {
			break
		}
		i += n
	}
	return i
}

// punct matches " ?[^\s\p{L}\p{N}]+[\r\n/]*" (without '/' for cl100k_base)
// at i and returns its end, or -1.
func (t *classTable) punct(s string, i int, slash bool) int {
	j := i
	if s[i] == ' ' {
		j++
	}
	c, n := t.at(s, j)
	if c&clPunct == 0 {
		return -1
	}
	j = t.run(s, j+n, clPunct)
	for j < len(s) && (s[j] == '\r' || s[j] == '\n' || slash && s[j] == '/') {
		j++
	}
	return j
}

// space matches the whitespace alternatives at i, where a whitespace run
// starts. "\s*[\r\n]+" ends after the run's first group of line breaks: the
// compiled pattern backtracks "\s*" to the first line break of the run, not
// the last as a backtracking engine would, and the tokenizer's split is the
// reference. Failing that, "\s+(?!\S)" takes the run but its last rune,
// unless the run ends the text or is one rune long, when "\s+" takes it all.
// Stopping at the first line break keeps the split linear in the run.
func (t *classTable) space(s string, i int) int {
	lastStart := i
	j := i
	for {
		c, n := t.at(s, j)
		if c&clSpace == 0 {
			break
		}
		if c&clNL != 0 {
			for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
				j++
			}
			return j
		}
		lastStart = j
		j += n
	}
	if j == len(s) || lastStart == i {
		return j
	}
	return lastStart
}

// splitCl100k is splitO200k for cl100k_base's pattern.
func (t *classTable) splitCl100k(s string, i int) (int, bool) {
	if e := contraction(s, i); e > 0 {
		return e, true
	}
	c0, n0 := t.at(s, i)
	if c0&clPrefix != 0 {
		if c, n := t.at(s, i+n0); c&clLetter != 0 {
			return t.run(s, i+n0+n, clLetter), true
		}
	}
	if c0&clLetter != 0 {
		return t.run(s, i+n0, clLetter), true
	}
	if c0&clNum != 0 {
		return t.digits(s, i+n0), true
	}
	if e := t.punct(s, i, false); e > 0 {
		return e, true
	}
	if c0&clSpace != 0 {
		return t.space(s, i), true
	}
	return i + n0, false
}
