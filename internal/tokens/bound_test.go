package tokens

import (
	"encoding/json"
	"testing"

	"github.com/llmgate/llmgate/internal/openai"
)

// boundBodies are chat bodies whose texts are hard on a length bound: one
// token per byte (digits and punctuation runs), invalid UTF-8, escapes that
// decode to more bytes than they take, names, parts and raw content.
var boundBodies = []string{
	`{"messages":[{"role":"system","content":"Be brief."},{"role":"user","name":"bob","content":"What's 2+2?\n\u00e9\"q\""}]}`,
	`{"messages":[{"role":"user","content":[{"type":"text","text":"hello"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":" world"}]}]}`,
	`{"messages":[{"role":"assistant","content":null},{"role":"user","content":""}]}`,
	`{"messages":[{"role":"user","content":"1 2 3 4 5 6 7 8 9 0 ! ? . , ; : ( ) [ ] { } < > | \\ / ~ ^"}]}`,
	`{"messages":[{"role":"user","content":"\ud83d\ude00\ud83d\ude00 \ud800 \u0000\u0001\u0002"}]}`,
}

// checkBound fails t unless ChatBound is at least CountChat of msgs, for
// both encodings, with the texts decoded by ParseChat and as raw content.
func checkBound(t testing.TB, c *Counter, msgs []openai.Message) {
	t.Helper()
	raw := make([]openai.Message, len(msgs))
	for i, m := range msgs {
		m.Text = nil
		raw[i] = m
	}
	for _, ms := range [][]openai.Message{msgs, raw} {
		bound := ChatBound(ms)
		for _, model := range []string{"gpt-4o", "gpt-4"} {
			if n := c.CountChat(model, ms); n > bound {
				t.Fatalf("%s: CountChat = %d, above ChatBound %d, of %+v", model, n, bound, ms)
			}
		}
	}
}

func parseForBound(t testing.TB, body string) []openai.Message {
	t.Helper()
	r, perr := openai.ParseChat([]byte(body))
	if perr != nil {
		return nil
	}
	return r.Messages
}

// TestChatBoundIsAnUpperBound checks ChatBound against the count on the
// hard bodies above and on the labelled pairs, each pair as a
// conversation.
func TestChatBoundIsAnUpperBound(t *testing.T) {
	c := NewCounter()
	for _, body := range boundBodies {
		msgs := parseForBound(t, body)
		if msgs == nil {
			t.Fatalf("ParseChat refused %s", body)
		}
		checkBound(t, c, msgs)
	}
	pairs := labelledPairs(t)
	for _, p := range pairs {
		msgs := []openai.Message{
			{Role: "system", Text: &openai.MessageText{Parts: []string{p.Origin}}},
			{Role: "user", Name: "u", Text: &openai.MessageText{Parts: []string{p.Similar, p.Origin}}},
		}
		checkBound(t, c, msgs)
		for _, s := range []string{p.Origin, p.Similar} {
			if n, b := c.Count("gpt-4", s), TextBound(s); n > b {
				t.Fatalf("Count = %d, above TextBound %d, of %q", n, b, s)
			}
		}
	}
	// Invalid UTF-8, which ParseChat refuses but a caller may build.
	bad := "\xff\xfe\x80 a\xc3 \xe2\x82 \xed\xa0\x80"
	checkBound(t, c, []openai.Message{{Role: "user\xff", Name: bad, Content: json.RawMessage(`"` + bad + `"`), Text: &openai.MessageText{Parts: []string{bad, bad}}}})
	// Content of other shapes, counted as its raw bytes.
	checkBound(t, c, []openai.Message{{Role: "user", Content: json.RawMessage(`{"not":"a string"}`)}, {Role: "tool", Name: "f", Content: json.RawMessage(`[1,2,3]`)}})
	// The bound is the byte lengths and the rule's constants: 3 for the
	// reply, 3 per message, 1 per name.
	plain := []openai.Message{{Role: "user", Name: "bo", Text: &openai.MessageText{Parts: []string{"hello", "you"}}}}
	if got := ChatBound(plain); got != 3+3+4+5+3+1+2 {
		t.Fatalf("ChatBound = %d, want %d", got, 3+3+4+5+3+1+2)
	}
}

func FuzzChatBound(f *testing.F) {
	for _, b := range boundBodies {
		f.Add(b)
	}
	c := NewCounter()
	f.Fuzz(func(t *testing.T, body string) {
		if len(body) > 8<<10 {
			return
		}
		if msgs := parseForBound(t, body); msgs != nil {
			checkBound(t, c, msgs)
		}
		// The body as one message's text and as its raw content.
		checkBound(t, c, []openai.Message{{Role: "user", Name: body, Content: json.RawMessage(body), Text: &openai.MessageText{Parts: []string{body}}}})
	})
}
