package norm

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// turnSep is guard.TurnSeparator (U+001E): turns are normalised one by one.
const turnSep = "\x1e"

// Text returns the normalised form of a dialog text (see the package
// comment).
func Text(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i, turn := range strings.Split(s, turnSep) {
		if i > 0 {
			b.WriteString(turnSep)
		}
		b.WriteString(normTurn(turn))
	}
	return b.String()
}

func normTurn(s string) string {
	var lines []string
	for _, line := range strings.Split(s, "\n") {
		lines = append(lines, normLine(line))
	}
	// Drop empty lines at both ends.
	for len(lines) > 0 && lines[0] == "" {
		lines = lines[1:]
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	out := strings.Join(lines, "\n")
	return rewrite(out)
}

// normLine lower-cases words (not acronyms), drops sentence punctuation,
// collapses inner spaces and trims trailing ones; leading indentation stays.
func normLine(line string) string {
	indent := len(line) - len(strings.TrimLeft(line, " \t"))
	var b strings.Builder
	b.WriteString(line[:indent])
	rest := strings.ReplaceAll(line[indent:], "’", "'")
	words := strings.Fields(rest)
	for i, w := range words {
		w = trimSentencePunct(w)
		if w == "" {
			continue
		}
		if i > 0 && b.Len() > indent {
			b.WriteByte(' ')
		}
		b.WriteString(lowerWord(w))
	}
	return b.String()
}

// trimSentencePunct drops . ? ! , from the end of a space-delimited chunk,
// unless the chunk is only punctuation and symbols ("!=", "...") or the mark
// follows a symbol ("i++.", kept as "i++").
func trimSentencePunct(w string) string {
	hasWord := false
	for _, r := range w {
		if unicode.IsLetter(r) || unicode.IsNumber(r) {
			hasWord = true
			break
		}
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

// rewrite applies the meaning-preserving rewrites to a normalised turn.
func rewrite(s string) string {
	words := strings.Split(s, " ")
	out := make([]string, 0, len(words)+2)
	for i := 0; i < len(words); i++ {
		w := words[i]
		switch {
		case w == "please":
			continue
		case w == "what's":
			out = append(out, "what", "is")
			continue
		case w == "how" && i+2 < len(words) && words[i+1] == "can" && words[i+2] == "i":
			out = append(out, "how", "do", "i")
			i += 2
			continue
		case len(out) == 0 && w == "tell" && i+2 < len(words) && words[i+1] == "me" && words[i+2] == "the":
			out = append(out, "what", "is", "the")
			i += 2
			continue
		}
		out = append(out, w)
	}
	return strings.Join(out, " ")
}
