package guard

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Reasons Check gives for a refusal.
const (
	ReasonNumber      = "number"
	ReasonNegation    = "negation"
	ReasonEntity      = "entity"
	ReasonComparative = "comparative"
	ReasonOrder       = "order"
	ReasonQualifier   = "qualifier"
	ReasonSymbol      = "symbol"
	ReasonWord        = "word"
	ReasonTurns       = "turns"
)

// TurnSeparator separates the turns of a dialog text (the record separator,
// U+001E): Check compares turn by turn, so that moving a turn boundary
// ("A\nB" / "C" against "A" / "B\nC") is a different dialog. Callers keep
// it out of the turns themselves.
const TurnSeparator = "\x1e"

// Check reports whether the cached candidate may answer query: ok is false,
// with a reason, when the two dialog texts (the retained messages' contents
// joined with TurnSeparator) have a different number of turns, or a turn
// differs from its counterpart in a number, a negation, a named entity, a
// comparative word, a symbol or operator, a pronoun or other marked function
// word, the order of their shared words, a qualifier, or a content word
// that is neither another form nor a WordNet synonym of the word it replaces
// (see the package comment). It is cheap (a few µs for prompts of a hundred
// words) and deterministic.
func Check(query, candidate string) (ok bool, reason string) {
	if strings.Count(query, TurnSeparator) != strings.Count(candidate, TurnSeparator) {
		return false, ReasonTurns
	}
	for {
		qa, qrest, qmore := cutTurn(query)
		ca, crest, cmore := cutTurn(candidate)
		if ok, reason := checkTurn(qa, ca); !ok {
			return false, reason
		}
		if qmore != cmore {
			return false, ReasonTurns
		}
		if !qmore {
			return true, ""
		}
		query, candidate = qrest, crest
	}
}

// Class is a set of kinds of difference the guard finds between two
// dialog texts, one bit each.
type Class uint32

// The classes of difference. Hard ones decide the answer by themselves and
// no judge may override them (Hard); the others are differences of
// wording that a judge can settle (see Judgeable).
const (
	ClassTurns           Class = 1 << iota // a different number of turns, or more than one turn differs
	ClassNumber                            // a number differs, is added, removed or moved
	ClassNegation                          // the count of negations differs
	ClassSymbol                            // a symbol or operator run differs
	ClassMarkedSwap                        // a pronoun, quantifier or and/or exchanged for another (he/she, all/some, and/or)
	ClassMarked                            // a pronoun, quantifier or and/or only one text has
	ClassEntity                            // an entity or quoted string only one text has, or shared ones in another order
	ClassComparativeSwap                   // a comparative or direction word exchanged for another (before/after)
	ClassComparative                       // a comparative or direction word only one text has
	ClassOrder                             // shared content words come in another order
	ClassQualifier                         // one text's content words are a strict subset of the other's
	ClassWord                              // a content word is neither a form nor a WordNet synonym
)

// Hard are the differences no judge may override: a number, a negation, a
// symbol or operator, a named entity, a pronoun, quantifier or and/or
// exchanged for another, a comparative or direction word exchanged for
// another, and turns (a changed turn count, or a dialog in which more than
// one turn differs, as when a turn boundary moves). They are the facts the
// cache promises never to confuse, whatever a judge answers.
const Hard Class = ClassTurns | ClassNumber | ClassNegation | ClassSymbol | ClassMarkedSwap |
	ClassEntity | ClassComparativeSwap

// Differences returns every class of difference between query and
// candidate, turn by turn (0 when Check accepts the pair). Unlike Check it
// does not stop at the first: it is meant for a candidate Check refused.
func Differences(query, candidate string) Class {
	if strings.Count(query, TurnSeparator) != strings.Count(candidate, TurnSeparator) {
		return ClassTurns
	}
	var out Class
	differing := 0
	for {
		qa, qrest, qmore := cutTurn(query)
		ca, crest, _ := cutTurn(candidate)
		if c := turnDifferences(qa, ca); c != 0 {
			out |= c
			differing++
		}
		if !qmore {
			break
		}
		query, candidate = qrest, crest
	}
	if differing > 1 {
		out |= ClassTurns
	}
	return out
}

// Judgeable reports whether a pair Check refuses differs only in ways a
// judge may settle, in at most one turn: a content word without a WordNet
// link, a qualifier added, shared words in another order, a pronoun,
// quantifier, and/or or comparative word only one text has. Pairs Check
// accepts are judgeable too.
func Judgeable(query, candidate string) bool {
	return Differences(query, candidate)&Hard == 0
}

func cutTurn(s string) (turn, rest string, more bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == TurnSeparator[0] {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// checkTurn compares one turn of each dialog.
func checkTurn(query, candidate string) (ok bool, reason string) {
	var a, b facts
	var at, bt [256]uint64
	var ae, be [32]uint64
	var aq, bq [8]uint64
	var an, bn [16]number
	var ac, bc [128]uint64
	var as, bs [16]uint64
	a.content, b.content = ac[:0], bc[:0]
	a.toks, a.ents, a.quotes, a.nums = at[:0], ae[:0], aq[:0], an[:0]
	b.toks, b.ents, b.quotes, b.nums = bt[:0], be[:0], bq[:0], bn[:0]
	a = a.scan(query)
	b = b.scan(candidate)
	switch {
	case !a.sameNumbers(&b):
		return false, ReasonNumber
	case a.neg != b.neg:
		return false, ReasonNegation
	case !a.sameEntities(&b):
		return false, ReasonEntity
	case a.comp != b.comp:
		return false, ReasonComparative
	case !slicesEqual(symbols(as[:0], query), symbols(bs[:0], candidate)):
		return false, ReasonSymbol
	case a.marked != b.marked:
		return false, ReasonWord
	case !sameOrder(a.content, b.content):
		return false, ReasonOrder
	case qualified(a.content, b.content):
		return false, ReasonQualifier
	case !sameWords(query, candidate, a.content, b.content):
		return false, ReasonWord
	}
	return true, ""
}

// turnDifferences is checkTurn without stopping at the first difference.
func turnDifferences(query, candidate string) Class {
	var a, b facts
	var at, bt [256]uint64
	var ae, be [32]uint64
	var aq, bq [8]uint64
	var an, bn [16]number
	var ac, bc [128]uint64
	var as, bs [16]uint64
	a.content, b.content = ac[:0], bc[:0]
	a.toks, a.ents, a.quotes, a.nums = at[:0], ae[:0], aq[:0], an[:0]
	b.toks, b.ents, b.quotes, b.nums = bt[:0], be[:0], bq[:0], bn[:0]
	a = a.scan(query)
	b = b.scan(candidate)
	var out Class
	if !a.sameNumbers(&b) {
		out |= ClassNumber
	}
	if a.neg != b.neg {
		out |= ClassNegation
	}
	if !a.sameEntities(&b) {
		out |= ClassEntity
	}
	out |= setDifference(a.comp, b.comp, ClassComparativeSwap, ClassComparative)
	if !slicesEqual(symbols(as[:0], query), symbols(bs[:0], candidate)) {
		out |= ClassSymbol
	}
	out |= setDifference(a.marked, b.marked, ClassMarkedSwap, ClassMarked)
	if !sameOrder(a.content, b.content) {
		out |= ClassOrder
	}
	if qualified(a.content, b.content) {
		out |= ClassQualifier
	}
	if !sameWords(query, candidate, a.content, b.content) {
		out |= ClassWord
	}
	return out
}

// setDifference classifies how two sets of word classes differ: each has one
// the other lacks (swap), or only one has more (oneSided).
func setDifference(a, b uint64, swap, oneSided Class) Class {
	switch {
	case a == b:
		return 0
	case a&^b != 0 && b&^a != 0:
		return swap
	default:
		return oneSided
	}
}

// number is one number of a text: its value and whether it is an ordinal
// (11th, eleventh).
type number struct {
	val     float64
	ordinal bool
	// digits identifies a number too long for a float64 to hold exactly
	// (over 15 digits): a hash of its digits and decimal point; 0 otherwise.
	digits uint64
}

// facts are what Check compares of one text. Check starts the slices on
// arrays of its own frame, so typical texts need no heap memory.
type facts struct {
	toks   []uint64 // hash of every lower-cased word, in order
	ents   []uint64 // hash of every entity, in order of appearance
	quotes []uint64 // hash of each quoted string's lower-cased words
	nums   []number // in order
	// content words (not numbers, negations, comparatives or common
	// function words and openers), in order
	content []uint64
	neg     int    // negations
	comp    uint64 // comparative words present, one bit each (see lookup)
	marked  uint64 // marked function words present (pronouns, quantifiers, and/or), one bit per class
	// number-word run being read ("twenty one thousand")
	run      bool
	runTotal float64
	runCur   float64
	// whether the last token was a digit number (for "5 million")
	lastDigits bool
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// isQuote reports whether r is a quotation mark that opens or closes a quoted
// string (the apostrophe is not: it is too often one).
func isQuote(r rune) bool {
	switch r {
	case '"', '`', '“', '”', '„', '«', '»':
		return true
	}
	return false
}

// scan returns f with text read into it. (The facts methods take and
// return values, not pointers, so the slices can live on Check's stack.)
func (f facts) scan(text string) facts {
	start := true // at a sentence start
	inQuote, quoteHash, quoteLen := false, uint64(fnvOffset), 0
	var lowBuf [64]byte
	for i := 0; i < len(text); {
		r, size := rune(text[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(text[i:])
		}
		// URLs and e-mail addresses: the whole whitespace-delimited chunk.
		if (i == 0 || isSpaceByte(text[i-1])) && !unicode.IsSpace(r) {
			if end := chunkEnd(text, i); isAddress(text[i:end]) {
				h := hashLower(trimPunct(text[i:end]))
				f.toks = append(f.toks, h)
				f.ents = append(f.ents, h)
				if f.run {
					f = f.endRun()
				}
				f.lastDigits = false
				start = false
				i = end
				continue
			}
		}
		switch {
		case r == '\'' && i+1 < len(text) && text[i+1] == '\'': // '' closes a `` quote
			r, size = '"', 2
			fallthrough
		case isQuote(r):
			if text[i] == '`' { // a run of backticks is one mark
				for i+size < len(text) && text[i+size] == '`' {
					size++
				}
			}
			if inQuote && quoteLen > 0 {
				f.quotes = append(f.quotes, quoteHash)
			}
			inQuote, quoteHash, quoteLen = !inQuote, fnvOffset, 0
			i += size
			continue
		case r == '\'' || r == '’':
			// n't: an apostrophe between n and a final t.
			if i > 0 && (text[i-1] == 'n' || text[i-1] == 'N') && i+size < len(text) &&
				(text[i+size] == 't' || text[i+size] == 'T') &&
				(i+size+1 == len(text) || !isWordByte(text[i+size+1])) {
				f.neg++
				i += size + 1
				continue
			}
			i += size
			continue
		case r == '\n' || r == '.' || r == '?' || r == '!' || r == ':' || r == ';':
			if r != '.' || i+1 >= len(text) || !isDigitByte(text[i+1]) {
				start = true
			}
			if f.run {
				f = f.endRun()
			}
			i += size
			continue
		case !unicode.IsLetter(r) && !unicode.IsNumber(r):
			if r != '-' && r != ' ' {
				if f.run {
					f = f.endRun()
				}
			}
			i += size
			continue
		}
		// A word: letters and digits.
		j := i
		upper, letters, digits, firstUpper := 0, 0, 0, false
		low := lowBuf[:0]
		h := uint64(fnvOffset)
		for j < len(text) {
			c, n := rune(text[j]), 1
			if c < utf8.RuneSelf { // ASCII fast path
				b := byte(c)
				switch {
				case 'a' <= b && b <= 'z':
					letters++
				case 'A' <= b && b <= 'Z':
					upper++
					letters++
					if j == i {
						firstUpper = true
					}
					b += 'a' - 'A'
				case '0' <= b && b <= '9':
					digits++
				case digits > 0 && letters == 0 && (b == ',' || b == '.') && j+1 < len(text) && isDigitByte(text[j+1]):
					j++ // 1,000 and 3.5 continue a number
					continue
				default:
					goto end
				}
				h = (h ^ uint64(b)) * fnvPrime
				if len(low) < cap(low) {
					low = append(low, b)
				}
				j++
				continue
			}
			c, n = utf8.DecodeRuneInString(text[j:])
			if !unicode.IsLetter(c) && !unicode.IsNumber(c) {
				break
			}
			if unicode.IsUpper(c) {
				upper++
				if j == i {
					firstUpper = true
				}
			}
			if unicode.IsLetter(c) {
				letters++
			} else {
				digits++
			}
			lc := unicode.ToLower(c)
			if lc < utf8.RuneSelf {
				h = (h ^ uint64(lc)) * fnvPrime
				if len(low) < cap(low) {
					low = append(low, byte(lc))
				}
			} else {
				var e [4]byte
				for _, x := range e[:utf8.EncodeRune(e[:], lc)] {
					h = (h ^ uint64(x)) * fnvPrime
				}
				low = low[:cap(low)] // not an ASCII word: never matches a lookup
			}
			j += n
		}
	end:
		word := text[i:j]
		neg := i > 0 && text[i-1] == '-' && (i < 2 || !isWordByte(text[i-2]))
		i = j
		f.toks = append(f.toks, h)
		if inQuote {
			quoteHash = (quoteHash ^ h) * fnvPrime
			quoteLen++
		}
		wasStart := start
		start = false

		if digits > 0 {
			f = f.digitWord(word, letters, neg, h)
			continue
		}
		kind, val := kindOther, 0.0
		if len(low) < cap(low) {
			kind, val = lookup(low)
		}
		switch kind {
		case kindNumber, kindOrdinal, kindScale:
			f = f.numberWord(kind, val)
			continue
		case kindNegation:
			f.neg++
		case kindComparative:
			f.comp |= 1 << uint(val)
		case kindFunction:
			if val > 0 {
				f.marked |= 1 << uint(val-1)
			}
		}
		if f.run {
			f = f.endRun()
		}
		f.lastDigits = false
		if kind == kindOther || kind == kindOpener || kind == kindComparative {
			f.content = append(f.content, h)
		}
		if (upper >= 2 && upper*2 >= letters) || // an acronym
			(firstUpper && !wasStart && !(letters == 1 && low[0] == 'i')) || // a name
			(firstUpper && wasStart && kind == kindOther) { // a name opening a sentence
			f.ents = append(f.ents, h)
		}
	}
	return f.endRun()
}

// digitWord records a word with digits: a number (1,000, 3.5, 11th, 10k), and
// when it mixes in other letters (gpt4o, 5kg) also an entity.
func (f facts) digitWord(word string, letters int, neg bool, h uint64) facts {
	if f.run {
		f = f.endRun()
	}
	// leading digits
	var v, scale float64 = 0, 0
	var digits, ndigits uint64 = fnvOffset, 0
	k := 0
	for ; k < len(word); k++ {
		c := word[k]
		if isDigitByte(c) || c == '.' {
			digits = (digits ^ uint64(c)) * fnvPrime
			if c != '.' {
				ndigits++
			}
		}
		switch {
		case isDigitByte(c):
			if scale == 0 {
				v = v*10 + float64(c-'0')
			} else {
				scale /= 10
				v += float64(c-'0') * scale
			}
		case c == '.':
			scale = 1
		case c == ',':
		default:
			goto done
		}
	}
done:
	if k == 0 { // letters first: v2, gpt4
		f.ents = append(f.ents, h)
		f.lastDigits = false
		return f
	}
	if neg {
		v = -v
	}
	suffix := word[k:]
	n := number{val: v}
	if ndigits > 15 {
		n.digits = digits
	}
	switch {
	case suffix == "":
	case equalFold(suffix, "st") || equalFold(suffix, "nd") || equalFold(suffix, "rd") || equalFold(suffix, "th"):
		n.ordinal = true
	case equalFold(suffix, "k"):
		n.val *= 1e3
	default:
		f.ents = append(f.ents, h)
	}
	f.nums = append(f.nums, n)
	f.lastDigits = suffix == ""
	return f
}

// numberWord adds a number word to the current run ("two hundred and five"
// is read as one number), or scales the digits just before it ("5 million").
func (f facts) numberWord(kind wordKind, val float64) facts {
	if kind == kindScale && f.lastDigits && !f.run {
		f.nums[len(f.nums)-1].val *= val
		return f
	}
	f.lastDigits = false
	f.run = true
	switch kind {
	case kindNumber:
		f.runCur += val
	case kindScale:
		if f.runCur == 0 {
			f.runCur = 1
		}
		if val >= 1000 {
			f.runTotal += f.runCur * val
			f.runCur = 0
		} else {
			f.runCur *= val
		}
	case kindOrdinal:
		f.runCur += val
		f.nums = append(f.nums, number{val: f.runTotal + f.runCur, ordinal: true})
		f.run, f.runTotal, f.runCur = false, 0, 0
	}
	return f
}

// endRun closes the number-word run being read, if any.
func (f facts) endRun() facts {
	if f.run {
		f.nums = append(f.nums, number{val: f.runTotal + f.runCur})
		f.run, f.runTotal, f.runCur = false, 0, 0
	}
	return f
}

// sameNumbers reports whether both texts hold the same numbers in the same
// order.
func (f *facts) sameNumbers(g *facts) bool {
	if len(f.nums) != len(g.nums) {
		return false
	}
	for i := range f.nums {
		if f.nums[i] != g.nums[i] {
			return false
		}
	}
	return true
}

// sameEntities reports whether every entity and quoted string of each text
// occurs in the other, and the entities both name come in the same order.
func (f *facts) sameEntities(g *facts) bool {
	if !contains(g.toks, f.ents) || !contains(f.toks, g.ents) ||
		!contains(g.quotes, f.quotes) || !contains(f.quotes, g.quotes) {
		return false
	}
	// Order: the first occurrences of the entities both name, as entities.
	var sa, sb [64]uint64
	x, y := shared(sa[:0], f.ents, g.ents), shared(sb[:0], g.ents, f.ents)
	if len(x) != len(y) { // cannot happen: both are the distinct shared entities
		return false
	}
	for k := range x {
		if x[k] != y[k] {
			return false
		}
	}
	return true
}

// sameOrder reports whether the content words a and b share come in the
// same order, allowing one swap of two adjacent ones ("the capital of
// France" / "France's capital") but not a swap across other words
// ("directed by A … produced by B" / "produced by A … directed by B") or a
// moved clause. Only first occurrences count.
func sameOrder(a, b []uint64) bool {
	var sa, sb [64]uint64
	s, t := shared(sa[:0], a, b), shared(sb[:0], b, a)
	if len(s) != len(t) { // cannot happen: both are the distinct shared words
		return false
	}
	for len(s) > 0 && s[0] == t[0] {
		s, t = s[1:], t[1:]
	}
	for len(s) > 0 && s[len(s)-1] == t[len(t)-1] {
		s, t = s[:len(s)-1], t[:len(t)-1]
	}
	return len(s) == 0 || len(s) == 2 && s[0] == t[1] && s[1] == t[0]
}

// shared appends to dst the distinct words of a, in order of first
// occurrence, that also occur in b.
func shared(dst, a, b []uint64) []uint64 {
	if len(a) <= small && len(b) <= small {
		for i, x := range a {
			if indexOf(a[:i], x) < 0 && indexOf(b, x) >= 0 {
				dst = append(dst, x)
			}
		}
		return dst
	}
	var bb, sb [4 * small]uint64
	inB, seen := newSet(bb[:], len(b), b), newSet(sb[:], len(a), nil)
	for _, x := range a {
		if inB.has(x) && seen.add(x) {
			dst = append(dst, x)
		}
	}
	return dst
}

// qualified reports whether the content words of one text are a strict
// subset of the other's: the longer one adds a qualifier ("share your
// dataset" / "share your audio dataset").
func qualified(a, b []uint64) bool {
	aInB, bInA := contains(b, a), contains(a, b)
	return aInB != bInA
}

// contains reports whether every one of items is in set.
func contains(set, items []uint64) bool {
	if len(set) > small && len(items) > 1 {
		var buf [4 * small]uint64
		h := newSet(buf[:], len(set), set)
		for _, x := range items {
			if !h.has(x) {
				return false
			}
		}
		return true
	}
	for _, x := range items {
		if indexOf(set, x) < 0 {
			return false
		}
	}
	return true
}

// small is the length up to which lists are searched linearly; longer
// ones go through a hashSet (texts of thousands of words stay linear time).
const small = 64

// hashSet is an open-addressing set of word hashes. The hashes are FNV
// values, so their low bits index it directly; 0 marks an empty slot (a
// real 0 is stored as zeroKey).
type hashSet struct {
	slots []uint64
	mask  uint64
}

const zeroKey = 0x9e3779b97f4a7c15

// newSet returns a set holding items with room for n items in all, in buf
// when it is large enough (at least twice n, rounded up to a power of two),
// else on the heap.
func newSet(buf []uint64, n int, items []uint64) hashSet {
	size := len(buf)
	for size < 2*n {
		size *= 2
	}
	var slots []uint64
	if size == len(buf) {
		slots = buf
		clear(slots)
	} else {
		slots = make([]uint64, size)
	}
	h := hashSet{slots: slots, mask: uint64(size - 1)}
	for _, x := range items {
		h.add(x)
	}
	return h
}

// add inserts x and reports whether it was new.
func (h hashSet) add(x uint64) bool {
	if x == 0 {
		x = zeroKey
	}
	for i := x & h.mask; ; i = (i + 1) & h.mask {
		switch h.slots[i] {
		case x:
			return false
		case 0:
			h.slots[i] = x
			return true
		}
	}
}

func (h hashSet) has(x uint64) bool {
	if x == 0 {
		x = zeroKey
	}
	for i := x & h.mask; ; i = (i + 1) & h.mask {
		switch h.slots[i] {
		case x:
			return true
		case 0:
			return false
		}
	}
}

func indexOf(s []uint64, x uint64) int {
	for i, y := range s {
		if y == x {
			return i
		}
	}
	return -1
}

func chunkEnd(s string, i int) int {
	for i < len(s) && !isSpaceByte(s[i]) {
		i++
	}
	return i
}

// isAddress reports whether chunk is a URL or an e-mail address.
func isAddress(chunk string) bool {
	for k := 0; k+2 < len(chunk); k++ {
		if chunk[k] == ':' && chunk[k+1] == '/' && chunk[k+2] == '/' {
			return true
		}
	}
	if len(chunk) > 4 && equalFold(chunk[:4], "www.") {
		return true
	}
	at := -1
	for k := 0; k < len(chunk); k++ {
		if chunk[k] == '@' && k > 0 {
			at = k
		}
		if at > 0 && k > at+1 && chunk[k] == '.' && k+1 < len(chunk) && isWordByte(chunk[k+1]) {
			return true
		}
	}
	return false
}

func trimPunct(s string) string {
	for len(s) > 0 {
		switch s[len(s)-1] {
		case '.', ',', ';', ':', '!', '?', ')', ']', '"', '\'':
			s = s[:len(s)-1]
			continue
		}
		break
	}
	return s
}

func hashLower(s string) uint64 {
	h := uint64(fnvOffset)
	for k := 0; k < len(s); k++ {
		c := s[k]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h = (h ^ uint64(c)) * fnvPrime
	}
	return h
}

func equalFold(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for k := 0; k < len(s); k++ {
		c := s[k]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[k] {
			return false
		}
	}
	return true
}

func isSpaceByte(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }
func isDigitByte(c byte) bool { return '0' <= c && c <= '9' }
func isWordByte(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c >= utf8.RuneSelf
}
