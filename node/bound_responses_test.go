package node

import (
	"net/http"
	"testing"

	"github.com/llmgate/llmgate/internal/openai"
)

// responsesBoundBodies are Responses creates whose bound must cover the
// estimate: each shape the estimate counts differently.
var responsesBoundBodies = map[string]string{
	"instructions and a string input":  benchResponsesBody,
	"message items":                    `{"model":"gpt-4o","input":[{"role":"user","content":[{"type":"input_text","text":"héllo wörld, 東京"}]},{"role":"assistant","content":"hi 👋"}]}`,
	"tools":                            `{"model":"gpt-4o","input":"weather?","tools":[{"type":"function","name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}],"max_output_tokens":50}`,
	"an image (the raw input counted)": `{"model":"gpt-4o","input":[{"role":"user","content":[{"type":"input_image","image_url":"https://example.com/a.png"},{"type":"input_text","text":"what is it?"}]}]}`,
	"no max_output_tokens":             `{"model":"gpt-4o","input":"` + "word " + `"}`,
	"escapes":                          `{"model":"gpt-4o","instructions":"\u00e9\n\"q\"","input":"\ud83d\ude00 \\ done"}`,
}

func responsesCall(tb testing.TB, body string) *Call {
	tb.Helper()
	r, e := openai.ParseResponses([]byte(body))
	if e != nil {
		tb.Fatal(e)
	}
	return &Call{Op: openai.OpResponses, Route: "gpt-4o", Model: "gpt-4o", Body: []byte(body), Responses: r, Header: http.Header{}}
}

// TestResponsesBoundIsAtLeastTheEstimate: the bound a create is admitted
// with, counting nothing, is never below what counting gives.
func TestResponsesBoundIsAtLeastTheEstimate(t *testing.T) {
	g := admitGateway(t)
	for name, body := range responsesBoundBodies {
		t.Run(name, func(t *testing.T) {
			call := responsesCall(t, body)
			_, total := g.estimate(call)
			b, ok := (responsesWire{}).bound(g, call)
			if !ok || b < total || total <= 0 {
				t.Fatalf("bound %d (ok %v), estimate %d", b, ok, total)
			}
		})
	}
	if _, ok := (responsesWire{}).bound(g, &Call{Op: openai.OpResponses}); ok {
		t.Fatal("a call without a parsed request was bounded")
	}
}

func FuzzResponsesBoundIsAtLeastTheEstimate(f *testing.F) {
	for _, body := range responsesBoundBodies {
		f.Add([]byte(body))
	}
	g := admitGateway(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		r, e := openai.ParseResponses(body)
		if e != nil {
			return
		}
		call := &Call{Op: openai.OpResponses, Route: "gpt-4o", Body: body, Responses: r}
		_, total := g.estimate(call)
		if b, ok := (responsesWire{}).bound(g, call); !ok || b < total {
			t.Fatalf("bound %d (ok %v) below the estimate %d of %q", b, ok, total, body)
		}
	})
}

// TestResponsesBoundedAdmissionChargesAsCounted: Responses creates served
// by a node whose limiter reserves the bound without counting first and by
// one that counts first are charged the same tokens (the answer's usage,
// 23 + 16), and the first node bounds them once its first request made a
// grant.
func TestResponsesBoundedAdmissionChargesAsCounted(t *testing.T) {
	chargesAsCounted(t, func(tb testing.TB) *Call { return responsesCall(tb, benchResponsesBody) }, func(*Gateway) int64 { return 39 })
}
