package mock

import (
	"encoding/json"
	"strings"
	"unicode"

	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/verify"
)

// judgeReply answers a cache judge's prompt (package verify: a system
// message and both texts verbatim) with a deterministic rule, so that the
// demo and tests can run verified matching against the mock: "yes" when the
// two texts have the same words in the same order once case, punctuation
// and a few function words (articles, auxiliaries, fillers) are dropped,
// else "no". ok is false for any other request.
func judgeReply(msgs []openai.Message) (reply string, ok bool) {
	if len(msgs) != 2 {
		return "", false
	}
	sys, ok1 := messageString(msgs[0].Content)
	user, ok2 := messageString(msgs[1].Content)
	if !ok1 || !ok2 || sys != verify.JudgeSystem {
		return "", false
	}
	a, b, ok := verify.ParseJudgeUser(user)
	if !ok {
		return "", false
	}
	if judgeWords(a) == judgeWords(b) {
		return "yes", true
	}
	return "no", true
}

// judgeFiller are the words the mock judge ignores.
var judgeFiller = map[string]bool{
	"a": true, "an": true, "the": true, "do": true, "does": true, "can": true, "could": true,
	"would": true, "should": true, "please": true, "so": true, "then": true, "just": true,
}

func judgeWords(s string) string {
	var out []string
	for _, w := range strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsNumber(r) }) {
		if !judgeFiller[w] {
			out = append(out, w)
		}
	}
	return strings.Join(out, " ")
}

// messageString is a message content that is a JSON string.
func messageString(raw []byte) (string, bool) {
	var s string
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}
