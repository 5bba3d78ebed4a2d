package node

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/quota"
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
// one that counts first are charged the same tokens, and the first node
// bounds them once its first request made a grant.
func TestResponsesBoundedAdmissionChargesAsCounted(t *testing.T) {
	const tpm = 1 << 30
	bounded, lb := boundGateway(t, tpm, func(l *quota.Limiter) Limiter { return l })
	counted, lc := boundGateway(t, tpm, func(l *quota.Limiter) Limiter { return countFirst{l} })
	ctx := context.Background()
	nBounded := 0
	for i := range 8 {
		var charged [2]string
		for j, g := range []*Gateway{bounded, counted} {
			call := responsesCall(t, benchResponsesBody)
			call.Consumer = g.byName["team-a"]
			a, e := g.admit(ctx, call)
			if e != nil {
				t.Fatal(e)
			}
			if a.bounded && (j == 1 || i == 0) {
				t.Fatalf("request %d to the %s node was bounded", i, []string{"bounding", "counting"}[j])
			}
			if a.bounded {
				nBounded++
			}
			g.settle(ctx, &exchange{call: call, adm: a}, nil) // not forwarded: nothing charged
			w := httptest.NewRecorder()
			if out := g.Serve(ctx, w, call); out.Status != http.StatusOK {
				t.Fatalf("status %d: %s", out.Status, w.Body)
			}
			charged[j] = w.Header().Get(HeaderTokensConsumed)
		}
		// The answer's usage: 23 + 16 tokens.
		if charged[0] != charged[1] || charged[0] != strconv.Itoa(39) {
			t.Fatalf("request %d charged %s bounded, %s counted; want 39", i, charged[0], charged[1])
		}
	}
	if nBounded < 4 {
		t.Fatalf("%d of 7 admissions bounded", nBounded)
	}
	st, _ := lb.Status(ctx, "team-a")
	sc, _ := lc.Status(ctx, "team-a")
	if st.TPMUsed != 8*39 || sc.TPMUsed != 8*39 {
		t.Fatalf("used %d bounded, %d counted; want %d", st.TPMUsed, sc.TPMUsed, 8*39)
	}
}
