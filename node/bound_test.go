package node

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/quota"
)

// countFirst is a Limiter without ReserveSpare: every admission counts
// the prompt first, as before bounded admissions.
type countFirst struct{ Limiter }

// boundGateway is admitGateway with the limiter's clock stopped (its grants
// last the whole test) and team-a's TPM tpm, its limiter wrapped by wrap.
func boundGateway(t *testing.T, tpm int64, wrap func(*quota.Limiter) Limiter) (*Gateway, *quota.Limiter) {
	t.Helper()
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	l, err := quota.Open(quota.Options{Now: func() time.Time { return now }}, map[string]quota.Limits{"team-a": {TPM: tpm}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	cfg := &config.Config{
		Backends:  []config.Backend{{Name: "b", Kind: "openai", URL: "http://127.0.0.1:1/v1"}},
		Routes:    map[string]config.Route{"gpt-4o": {Pool: [][]string{{"b"}}}},
		Consumers: []config.Consumer{{Name: "team-a", Keys: []string{"k"}, TPM: tpm}},
	}
	cfg.ApplyDefaults()
	g, err := New(cfg, Options{Limiter: wrap(l), Transport: answerTransport{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g, l
}

// TestBoundedAdmissionChargesAsCounted serves the same requests through a
// node whose limiter reserves a bound without counting first and one that
// counts first: once the first request made a grant, the first node admits
// requests with the bound while the grant holds it, and every answer is
// charged the same tokens, which the consumer's status then holds.
func TestBoundedAdmissionChargesAsCounted(t *testing.T) {
	const tpm = 1 << 30
	bounded, lb := boundGateway(t, tpm, func(l *quota.Limiter) Limiter { return l })
	counted, lc := boundGateway(t, tpm, func(l *quota.Limiter) Limiter { return countFirst{l} })
	ctx := context.Background()
	want, _ := counted.estimate(prompt500(t))
	var sum int64
	nBounded := 0
	for i := range 8 {
		var charged [2]string
		for j, g := range []*Gateway{bounded, counted} {
			call := prompt500(t)
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
				t.Fatalf("status %d", out.Status)
			}
			charged[j] = w.Header().Get(HeaderTokensConsumed)
			if rem, err := strconv.ParseInt(w.Header().Get(HeaderRemainTokens), 10, 64); err != nil || rem <= 0 || rem > tpm {
				t.Fatalf("remaining %q", w.Header().Get(HeaderRemainTokens))
			}
		}
		// The answer reports 39 tokens, fewer than the prompt: both charge
		// the prompt estimate.
		if charged[0] != charged[1] || charged[0] != strconv.FormatInt(want, 10) {
			t.Fatalf("request %d charged %s bounded, %s counted; want %d", i, charged[0], charged[1], want)
		}
		sum += want
	}
	if nBounded < 4 {
		t.Fatalf("%d of 7 admissions bounded", nBounded)
	}
	for _, l := range []*quota.Limiter{lb, lc} {
		if st, _ := l.Status(ctx, "team-a"); st.TPMUsed != sum {
			t.Fatalf("used %d, want %d", st.TPMUsed, sum)
		}
	}
}

// TestEarlyCountIsTheEstimate: the prompt counted beside the upstream
// call is the estimate, read when done or counted again when not.
func TestEarlyCountIsTheEstimate(t *testing.T) {
	g := admitGateway(t)
	call := prompt500(t)
	wantPrompt, wantTotal := g.estimate(call)
	// Read before, while or after the goroutine counts.
	for range 50 {
		ec := g.countBeside(call)
		if p, total := ec.result(g, call); p != wantPrompt || total != wantTotal {
			t.Fatalf("result = %d, %d; want %d, %d", p, total, wantPrompt, wantTotal)
		}
	}
	ec := g.countBeside(call)
	for ec.state.Load() != earlyDone {
		time.Sleep(time.Millisecond)
	}
	if p, total := ec.result(g, call); p != wantPrompt || total != wantTotal {
		t.Fatalf("result = %d, %d; want %d, %d", p, total, wantPrompt, wantTotal)
	}
	// Taken over before the goroutine started: it counts nothing.
	ec = &earlyCount{}
	ec.result(g, call)
	if ec.state.Load() != earlyTaken {
		t.Fatalf("state %d after a result before the goroutine, want taken", ec.state.Load())
	}
	if b, _ := (chatWire{}).bound(g, call); b < wantTotal {
		t.Fatalf("bound %d below the estimate %d", b, wantTotal)
	}
}

// TestBoundNeedsRoomAndAWholeAnswer: a stream (whose headers go out before
// settling), a consumer near its limit and one with a money budget count
// the prompt first.
func TestBoundNeedsRoomAndAWholeAnswer(t *testing.T) {
	ctx := context.Background()
	admit := func(g *Gateway, stream bool, consumer string) admission {
		call := prompt500(t)
		call.Consumer = &Consumer{Name: consumer, CounterKey: config.CounterConsumer}
		call.Stream = stream
		a, e := g.admit(ctx, call)
		if e != nil {
			t.Fatal(e)
		}
		return a
	}
	g, _ := boundGateway(t, 1<<30, func(l *quota.Limiter) Limiter { return l })
	admit(g, false, "team-a") // makes the grant
	if a := admit(g, true, "team-a"); a.bounded || a.prompt == 0 {
		t.Fatalf("a stream: bounded %v, prompt %d", a.bounded, a.prompt)
	}
	if a := admit(g, false, "team-a"); !a.bounded {
		t.Fatal("a whole answer far from the limit was not bounded")
	}
	// A limit below twice the first request and the bound: the bound would
	// take the window past half of it.
	_, total := g.estimate(prompt500(t))
	bound, _ := (chatWire{}).bound(g, prompt500(t))
	near, _ := boundGateway(t, 2*(total+bound)-1, func(l *quota.Limiter) Limiter { return l })
	admit(near, false, "team-a")
	if a := admit(near, false, "team-a"); a.bounded || a.prompt == 0 {
		t.Fatalf("near the limit: bounded %v, prompt %d", a.bounded, a.prompt)
	}
	d, _ := deferGateway(t)
	admit(d, false, "paying")
	if a := admit(d, false, "paying"); a.bounded {
		t.Fatal("a consumer with a money budget was bounded")
	}
}

// TestBoundedEmbeddingsChargeAsCounted: an embeddings call (texts, or
// pre-tokenized inputs) admitted with its bound is settled exactly as one
// counted first.
func TestBoundedEmbeddingsChargeAsCounted(t *testing.T) {
	ctx := context.Background()
	for _, body := range []string{
		`{"model":"gpt-4o","input":["The gateway counts every prompt before it forwards it.","Ünïcödé and digits 0123456789"]}`,
		`{"model":"gpt-4o","input":[[1,2,3,4,5],[6,7]]}`,
	} {
		r, e := openai.ParseEmbeddings([]byte(body))
		if e != nil {
			t.Fatal(e)
		}
		var charged [2]int64
		for j, wrap := range []func(*quota.Limiter) Limiter{
			func(l *quota.Limiter) Limiter { return l },
			func(l *quota.Limiter) Limiter { return countFirst{l} },
		} {
			g, _ := boundGateway(t, 1<<30, wrap)
			for i := range 2 {
				call := &Call{Op: openai.OpEmbeddings, Route: "gpt-4o", Model: "gpt-4o", Body: []byte(body), Embeddings: r, Consumer: g.byName["team-a"], Header: http.Header{}}
				a, e := g.admit(ctx, call)
				if e != nil {
					t.Fatal(e)
				}
				if a.bounded != (j == 0 && i == 1) {
					t.Fatalf("%s: node %d, call %d: bounded %v", body, j, i, a.bounded)
				}
				if b, _ := (embeddingsWire{}).bound(g, call); a.bounded && a.tokens != b {
					t.Fatalf("%s: reserved %d, the bound is %d", body, a.tokens, b)
				}
				charged[j] = g.settle(ctx, &exchange{call: call, adm: a, reached: true}, &usage{Prompt: 1, Total: 1})
			}
		}
		want, _ := embeddingsWire{}.estimate(admitGateway(t), &Call{Route: "gpt-4o", Embeddings: r})
		if charged[0] != want || charged[1] != want || want < 2 {
			t.Fatalf("%s: charged %d bounded, %d counted; want the estimate %d", body, charged[0], charged[1], want)
		}
	}
}
