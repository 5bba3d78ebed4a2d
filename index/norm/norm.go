package norm

import (
	"bytes"
	"strings"
	"unicode"
	"unicode/utf8"
)

// turnSep is guard.TurnSeparator (U+001E): turns are normalised one by one.
const turnSep = "\x1e"

// Text returns the normalised form of a dialog text (see the package
// comment).
//
// Each turn is normalised line by line into one buffer, then rewritten
// word by word into the result: a few allocations per text, where
// splitting into lines, fields and words and joining them again cost a
// look-up about fifteen.
func Text(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	buf := make([]byte, 0, len(s)+8)
	for i := 0; ; i++ {
		turn, rest, more := strings.Cut(s, turnSep)
		if i > 0 {
			b.WriteString(turnSep)
		}
		buf = normTurn(buf[:0], turn)
		rewrite(&b, buf)
		if !more {
			return b.String()
		}
		s = rest
	}
}

// normTurn appends the normalised lines of the turn s to buf, joined by
// "\n", without the empty ones at both ends.
func normTurn(buf []byte, s string) []byte {
	started, pending := false, 0 // pending: empty lines since the last one kept
	for {
		line, rest, more := strings.Cut(s, "\n")
		mark := len(buf)
		if started {
			for range pending + 1 {
				buf = append(buf, '\n')
			}
		}
		at := len(buf)
		buf = normLine(buf, line)
		switch {
		case len(buf) == at: // an empty line: kept only if a line follows
			buf = buf[:mark]
			if started {
				pending++
			}
		default:
			started, pending = true, 0
		}
		if !more {
			return buf
		}
		s = rest
	}
}

// normLine appends line with its words lower-cased (not acronyms),
// sentence punctuation dropped, inner spaces collapsed and trailing ones
// trimmed; leading indentation stays.
func normLine(buf []byte, line string) []byte {
	indent := len(line) - len(strings.TrimLeft(line, " \t"))
	buf = append(buf, line[:indent]...)
	start := len(buf)
	rest := strings.ReplaceAll(line[indent:], "’", "'")
	for rest != "" {
		// The next field: a run of characters that are not spaces
		// (unicode.IsSpace, as strings.Fields splits).
		i := 0
		for i < len(rest) {
			if c := rest[i]; c < utf8.RuneSelf {
				if !asciiSpace(c) {
					break
				}
				i++
				continue
			}
			r, n := utf8.DecodeRuneInString(rest[i:])
			if !unicode.IsSpace(r) {
				break
			}
			i += n
		}
		j := i
		for j < len(rest) {
			if c := rest[j]; c < utf8.RuneSelf {
				if asciiSpace(c) {
					break
				}
				j++
				continue
			}
			r, n := utf8.DecodeRuneInString(rest[j:])
			if unicode.IsSpace(r) {
				break
			}
			j += n
		}
		w := trimSentencePunct(rest[i:j])
		rest = rest[j:]
		if w == "" {
			continue
		}
		if len(buf) > start {
			buf = append(buf, ' ')
		}
		buf = appendLowerWord(buf, w)
	}
	return buf
}

// trimSentencePunct drops . ? ! , from the end of a space-delimited chunk,
// unless the chunk is only punctuation and symbols ("!=", "...") or the mark
// follows a symbol ("i++.", kept as "i++").
func trimSentencePunct(w string) string {
	hasWord := false
	for i := 0; i < len(w); {
		if c := w[i]; c < utf8.RuneSelf {
			if 'a' <= c|0x20 && c|0x20 <= 'z' || '0' <= c && c <= '9' {
				hasWord = true
				break
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(w[i:])
		if unicode.IsLetter(r) || unicode.IsNumber(r) {
			hasWord = true
			break
		}
		i += n
	}
	if !hasWord {
		return w
	}
	for len(w) > 0 {
		switch w[len(w)-1] {
		case '.', '?', '!', ',':
			w = w[:len(w)-1]
			continue
		}
		break
	}
	return w
}

// appendLowerWord appends w lower-cased unless it holds two or more
// capitals (an acronym or a mixed-case name: "US", "iPhone" stays).
func appendLowerWord(buf []byte, w string) []byte {
	ascii := true
	upper := 0
	for i := range len(w) {
		switch c := w[i]; {
		case c >= utf8.RuneSelf:
			ascii = false
		case 'A' <= c && c <= 'Z':
			upper++
		}
	}
	if !ascii {
		return append(buf, lowerWord(w)...)
	}
	if upper >= 2 || upper == 1 && len(w) == 1 && w != "I" {
		return append(buf, w...) // a single capital letter is a name ("variable X")
	}
	for i := range len(w) {
		c := w[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf = append(buf, c)
	}
	return buf
}

// lowerWord lower-cases w unless it holds two or more capitals (an acronym
// or a mixed-case name: "US", "iPhone" stays).
func lowerWord(w string) string {
	upper := 0
	for _, r := range w {
		if unicode.IsUpper(r) {
			upper++
		}
	}
	if upper >= 2 {
		return w
	}
	if upper == 1 && utf8.RuneCountInString(w) == 1 && w != "I" {
		return w // a single capital letter is a name ("variable X")
	}
	return strings.ToLower(w)
}

// rewrite writes the normalised turn s to b with the meaning-preserving
// rewrites applied. Words are what lies between single spaces (an empty
// one between two spaces of an indentation stays one).
func rewrite(b *strings.Builder, s []byte) {
	var words [3][]byte // the word at hand and the next two
	var has [3]bool
	rest := s
	next := func() ([]byte, bool) {
		if rest == nil {
			return nil, false
		}
		w, r, more := bytes.Cut(rest, []byte(" "))
		if more {
			rest = r
		} else {
			rest = nil
		}
		return w, true
	}
	for k := range words {
		words[k], has[k] = next()
	}
	out := 0
	emit := func(ws ...string) {
		for _, w := range ws {
			if out > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(w)
			out++
		}
	}
	shift := func(n int) {
		for range n {
			words[0], words[1], has[0], has[1] = words[1], words[2], has[1], has[2]
			words[2], has[2] = next()
		}
	}
	for has[0] {
		w := words[0]
		switch {
		case string(w) == "please":
			shift(1)
			continue
		case string(w) == "what's":
			emit("what", "is")
			shift(1)
			continue
		case string(w) == "how" && has[2] && string(words[1]) == "can" && string(words[2]) == "i":
			emit("how", "do", "i")
			shift(3)
			continue
		case out == 0 && string(w) == "tell" && has[2] && string(words[1]) == "me" && string(words[2]) == "the":
			emit("what", "is", "the")
			shift(3)
			continue
		}
		if out > 0 {
			b.WriteByte(' ')
		}
		b.Write(w)
		out++
		shift(1)
	}
}

// asciiSpace is unicode.IsSpace of an ASCII character, without the call.
func asciiSpace(c byte) bool { return c == ' ' || '\t' <= c && c <= '\r' }
