package node

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/quota"
)

// countFirst is a Limiter without ReserveSpare: every admission counts
// the prompt first, as before bounded admissions.
type countFirst struct{ Limiter }

// shrinkNothing is a spareReserver that reserves and shrinks nothing.
type shrinkNothing struct{}

func (shrinkNothing) ReserveSpare(string, string, int64) (quota.Reservation, quota.Decision, bool) {
	return quota.Reservation{}, quota.Decision{}, false
}
func (shrinkNothing) Shrink(quota.Reservation, int64) bool { return false }

// boundGateway is admitGateway with the limiter's clock stopped (its grants
// last the whole test) and team-a's TPM tpm, its limiter wrapped by wrap.
func boundGateway(t *testing.T, tpm int64, wrap func(*quota.Limiter) Limiter) (*Gateway, *quota.Limiter) {
	t.Helper()
	return boundGatewayVia(t, tpm, answerTransport{}, wrap)
}

// boundGatewayVia is boundGateway with its backend behind rt.
func boundGatewayVia(t *testing.T, tpm int64, rt http.RoundTripper, wrap func(*quota.Limiter) Limiter) (*Gateway, *quota.Limiter) {
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
	g, err := New(cfg, Options{Limiter: wrap(l), Transport: rt})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g, l
}

// TestBoundedAdmissionChargesAsCounted: chat calls served by a node whose
// limiter reserves a bound without counting first and by one that counts
// first are charged the same tokens. The answer reports 39 tokens, fewer
// than the prompt: both charge the prompt estimate.
func TestBoundedAdmissionChargesAsCounted(t *testing.T) {
	chargesAsCounted(t, prompt500, func(counted *Gateway) int64 {
		want, _ := counted.estimate(prompt500(t))
		return want
	})
}

// chargesAsCounted serves eight calls made by mkCall through a node whose
// limiter reserves a bound without counting first and through one that
// counts first. Every answer must be charged want(the counting node) tokens
// on both, with a remaining allowance in range; the first node must bound
// its admissions once its first request made a grant (and the second never);
// both consumers' status must then hold the sum.
func chargesAsCounted(t *testing.T, mkCall func(testing.TB) *Call, want func(counted *Gateway) int64) {
	t.Helper()
	const tpm = 1 << 30
	bounded, lb := boundGateway(t, tpm, func(l *quota.Limiter) Limiter { return l })
	counted, lc := boundGateway(t, tpm, func(l *quota.Limiter) Limiter { return countFirst{l} })
	ctx := context.Background()
	each := want(counted)
	var sum int64
	nBounded := 0
	for i := range 8 {
		var charged [2]string
		for j, g := range []*Gateway{bounded, counted} {
			call := mkCall(t)
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
			if rem, err := strconv.ParseInt(w.Header().Get(HeaderRemainTokens), 10, 64); err != nil || rem <= 0 || rem > tpm {
				t.Fatalf("remaining %q", w.Header().Get(HeaderRemainTokens))
			}
		}
		if charged[0] != charged[1] || charged[0] != strconv.FormatInt(each, 10) {
			t.Fatalf("request %d charged %s bounded, %s counted; want %d", i, charged[0], charged[1], each)
		}
		sum += each
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
		ec := g.countBeside(call, shrinkNothing{}, quota.Reservation{})
		if p, total := ec.result(g, call); p != wantPrompt || total != wantTotal {
			t.Fatalf("result = %d, %d; want %d, %d", p, total, wantPrompt, wantTotal)
		}
	}
	ec := g.countBeside(call, shrinkNothing{}, quota.Reservation{})
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

// failingTransport answers every request with a 500: no backend can serve.
type failingTransport struct{}

func (failingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
	}
	body := `{"error":{"message":"boom","type":"server_error"}}`
	return &http.Response{StatusCode: http.StatusInternalServerError, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)), Request: r}, nil
}

// TestBoundedAnswersCarryCountingFirstsHeaders: whatever the answer, one
// written before settling (a 503: no backend could serve) or after, a node
// that reserved a bound reports the x-ratelimit headers a node that counts
// first reports.
func TestBoundedAnswersCarryCountingFirstsHeaders(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rt     http.RoundTripper
		status int
	}{
		{"no backend could serve: a 503 before settling", failingTransport{}, http.StatusServiceUnavailable},
		{"a whole answer after settling", answerTransport{}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const tpm = 1 << 30
			bounded, _ := boundGatewayVia(t, tpm, tc.rt, func(l *quota.Limiter) Limiter { return l })
			counted, _ := boundGatewayVia(t, tpm, tc.rt, func(l *quota.Limiter) Limiter { return countFirst{l} })
			for i := range 4 {
				var remain [2]string
				for j, g := range []*Gateway{bounded, counted} {
					call := prompt500(t)
					call.Consumer = g.byName["team-a"]
					w := httptest.NewRecorder()
					if out := g.Serve(context.Background(), w, call); out.Status != tc.status {
						t.Fatalf("status %d, want %d", out.Status, tc.status)
					}
					remain[j] = w.Header().Get(HeaderRemainTokens)
				}
				if remain[0] == "" || remain[0] != remain[1] {
					t.Fatalf("request %d: %s %q from the bounding node, %q from the counting one", i, HeaderRemainTokens, remain[0], remain[1])
				}
			}
			// The requests after the first were bounded: one more is.
			call := prompt500(t)
			call.Consumer = bounded.byName["team-a"]
			a, e := bounded.admit(context.Background(), call)
			if e != nil || !a.bounded {
				t.Fatalf("a request after the first: bounded %v, refused %v", a.bounded, e)
			}
			bounded.settle(context.Background(), &exchange{call: call, adm: a}, nil)
		})
	}
}

// TestRequestBesideABoundedOneIsAdmittedAsCounted: once the early count of a
// bounded request in flight is done, the window holds its estimate, not
// its bound: a request of the same consumer admitted meanwhile is admitted
// or refused, and told what remains and when to retry, as by a node that
// counts first. The largest request that fits beside two in flight is
// admitted; one token more is refused.
func TestRequestBesideABoundedOneIsAdmittedAsCounted(t *testing.T) {
	const tpm = 20000
	for _, tc := range []struct {
		name  string
		extra int64 // tokens beyond what fills the window
		admit bool
	}{
		{"the request that fills the window is admitted", 0, true},
		{"one token more is refused", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type result struct {
				allowed           bool
				remain            int64
				retryAfter, retry string
			}
			var got [2]result
			for j, wrap := range []func(*quota.Limiter) Limiter{
				func(l *quota.Limiter) Limiter { return l },
				func(l *quota.Limiter) Limiter { return countFirst{l} },
			} {
				g, _ := boundGateway(t, tpm, wrap)
				ctx := context.Background()
				first := prompt500(t)
				first.Consumer = g.byName["team-a"]
				if _, e := g.admit(ctx, first); e != nil { // counted: makes the grant
					t.Fatal(e)
				}
				inflight := prompt500(t)
				inflight.Consumer = g.byName["team-a"]
				a, e := g.admit(ctx, inflight)
				if e != nil {
					t.Fatal(e)
				}
				if a.bounded != (j == 0) {
					t.Fatalf("node %d: second request bounded %v", j, a.bounded)
				}
				if a.bounded {
					for a.early.state.Load() != earlyDone { // microseconds after admission
						time.Sleep(time.Microsecond)
					}
				}
				_, est := g.estimate(prompt500(t))
				_, promptBig := g.estimate(bigCall(t, 1))
				promptBig--
				big := bigCall(t, tpm-2*est-promptBig+tc.extra)
				big.Consumer = g.byName["team-a"]
				if _, need := g.estimate(big); need != tpm-2*est+tc.extra {
					t.Fatalf("the large request needs %d, want %d", need, tpm-2*est+tc.extra)
				}
				b, e := g.admit(ctx, big)
				got[j] = result{allowed: e == nil, remain: b.remain}
				if e != nil {
					got[j].retryAfter, got[j].retry = e.Header.Get("Retry-After"), e.Header.Get("Retry-After-Ms")
				}
			}
			if got[0] != got[1] || got[0].allowed != tc.admit {
				t.Fatalf("beside a bounded request %+v, beside a counted one %+v; want admitted %v", got[0], got[1], tc.admit)
			}
		})
	}
}

// bigCall is prompt500's prompt with max_tokens maxTokens.
func bigCall(t *testing.T, maxTokens int64) *Call {
	t.Helper()
	call := prompt500(t)
	text := strings.Repeat("The gateway counts every prompt before it forwards it, and settles after. ", 35)
	body, _ := json.Marshal(map[string]any{"model": "gpt-4o", "max_tokens": maxTokens, "messages": []map[string]string{{"role": "system", "content": "You are terse."}, {"role": "user", "content": text}}})
	r, e := openai.ParseChat(body)
	if e != nil {
		t.Fatal(e)
	}
	call.Body, call.Chat = body, r
	return call
}
