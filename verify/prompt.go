package verify

import (
	"strings"
	"unicode"
)

// JudgeSystem is the judge's instruction (SPEC §6: one chat request with
// both texts verbatim, answered with one word).
const JudgeSystem = "You decide whether one answer can serve two requests. Reply with exactly one word: yes if the same answer serves both requests, no otherwise."

// Markers around the two texts in the judge's user message.
const (
	markA   = "Request A:\n<<<\n"
	markB   = "\n>>>\nRequest B:\n<<<\n"
	markEnd = "\n>>>\nDoes the same answer serve both requests? Answer yes or no."
)

// JudgeUser is the judge's user message holding both texts verbatim.
func JudgeUser(query, candidate string) string {
	return markA + query + markB + candidate + markEnd
}

// ParseJudgeUser recovers the two texts of a JudgeUser message (the mock
// upstream uses it to act as a judge).
func ParseJudgeUser(msg string) (a, b string, ok bool) {
	rest, ok := strings.CutPrefix(msg, markA)
	if !ok {
		return "", "", false
	}
	rest, ok = strings.CutSuffix(rest, markEnd)
	if !ok {
		return "", "", false
	}
	a, b, ok = strings.Cut(rest, markB)
	return a, b, ok
}

// Yes reads a judge's reply: its first word decides ("Yes.", "yes, …").
func Yes(reply string) bool {
	w := strings.FieldsFunc(reply, func(r rune) bool { return !unicode.IsLetter(r) })
	return len(w) > 0 && strings.EqualFold(w[0], "yes")
}
