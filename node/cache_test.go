package node

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmgate/llmgate/index"
	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/internal/openai"
)

func TestPartitionNamesNeverCollide(t *testing.T) {
	g := &Gateway{cacheCfg: config.Cache{VaryBy: []string{"consumer", "header:x-team"}}}
	name := func(team string, set bool) string {
		h := http.Header{}
		if set {
			h.Set("x-team", team)
		}
		return g.partition(&Call{Consumer: &Consumer{Name: "team-a"}, Header: h})
	}
	seen := map[string]string{}
	for _, tc := range []struct {
		label string
		team  string
		set   bool
	}{
		{"a/b", "a/b", true}, {"a%2Fb", "a%2Fb", true}, {"dash", "-", true}, {"missing", "", false}, {"plain", "blue", true},
	} {
		n := name(tc.team, tc.set)
		if other, dup := seen[n]; dup {
			t.Errorf("%s and %s share partition %q", tc.label, other, n)
		}
		seen[n] = tc.label
	}
	if got := name("blue", true); got != "team-a/blue" {
		t.Errorf("partition = %q, want team-a/blue (SPEC §6: vary_by values joined by /)", got)
	}
}

func TestPlanCache(t *testing.T) {
	g := &Gateway{cache: nopCache{}, cacheCfg: config.Cache{MaxMessageCount: 10, VaryBy: []string{"consumer"}, IgnoreSystemMessages: true}}
	plan := func(body string, h ...string) cachePlan {
		r, e := openai.ParseChat([]byte(body))
		if e != nil {
			t.Fatal(e)
		}
		hdr := http.Header{}
		for i := 0; i+1 < len(h); i += 2 {
			hdr.Set(h[i], h[i+1])
		}
		return g.planCache(&Call{Route: "gpt-4o", Body: []byte(body), Chat: r, Consumer: &Consumer{Name: "team-a"}, Header: hdr})
	}
	base := plan(`{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}`)
	if base.state != cacheMiss || base.prompt != "hi" || base.space.Partition != "team-a" {
		t.Fatalf("base plan: %+v", base)
	}
	tests := []struct {
		name      string
		body      string
		state     string
		sameShape bool
		semantic  bool
		headers   []string
	}{
		{"ignored system message keeps the shape", `{"model":"gpt-4o","messages":[{"role":"system","content":"be verbose"},{"role":"user","content":"hi"}]}`, cacheMiss, true, true, nil},
		{"stream flag keeps the shape", `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`, cacheMiss, true, true, nil},
		{"a temperature changes the shape", `{"model":"gpt-4o","temperature":0.8,"messages":[{"role":"user","content":"hi"}]}`, cacheMiss, false, true, nil},
		{"tools change the shape", `{"model":"gpt-4o","tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"hi"}]}`, cacheMiss, false, true, nil},
		{"another turn structure changes the shape", `{"model":"gpt-4o","messages":[{"role":"assistant","content":"hello"},{"role":"user","content":"hi"}]}`, cacheMiss, false, true, nil},
		{"tool results match exactly or not at all", `{"model":"gpt-4o","messages":[{"role":"user","content":"weather?"},{"role":"assistant","content":null},{"role":"tool","content":"18C"}]}`, cacheMiss, false, false, nil},
		{"images are not cacheable", `{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, cacheBypass, false, false, nil},
		{"too many messages", `{"model":"gpt-4o","messages":[` + repeatMsg(11) + `]}`, cacheBypass, false, false, nil},
		{"client turned it off", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, cacheOff, false, false, []string{"x-llmgate-cache", "off"}},
		{"ttl 0 is not stored", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, cacheBypass, false, false, []string{"x-llmgate-cache-ttl", "0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := plan(tc.body, tc.headers...)
			if p.state != tc.state {
				t.Fatalf("state = %s, want %s", p.state, tc.state)
			}
			if p.state != cacheMiss {
				return
			}
			if same := p.space == base.space; same != tc.sameShape {
				t.Errorf("same space as the base = %v, want %v (%+v vs %+v)", same, tc.sameShape, p.space, base.space)
			}
			if semantic := p.prompt != ""; semantic != tc.semantic {
				t.Errorf("semantic tier = %v, want %v", semantic, tc.semantic)
			}
		})
	}
}

func repeatMsg(n int) string {
	s := ""
	for i := range n {
		if i > 0 {
			s += ","
		}
		s += `{"role":"user","content":"x"}`
	}
	return s
}

func TestContentFiltered(t *testing.T) {
	tests := []struct {
		body string
		want bool
	}{
		{`{"choices":[{"content_filter_results":{"hate":{"filtered":false}}}]}`, false},
		{`{"choices":[{"content_filter_results":{"hate":{"filtered": true,"severity":"high"}}}]}`, true},
		{`{"prompt_filter_results":[{"content_filter_results":{"jailbreak":{"filtered" :true}}}]}`, true},
		{`{"choices":[{"message":{"content":"the word \"filtered\" in an answer"}}]}`, false},
		{`{"choices":[]}`, false},
		{`{"a":{"filtered" : false},"b":"filtered","c":[{"filtered":false}]}`, false},
		{`{"a":{"filt\u0065red":true},"b":{"filtered":false}}`, true},
		{strings.Repeat("[", 33) + `{"filtered":false}` + strings.Repeat("]", 33), true}, // too deep to tell
	}
	for _, tc := range tests {
		if got := contentFiltered([]byte(tc.body)); got != tc.want {
			t.Errorf("contentFiltered(%s) = %v, want %v", tc.body, got, tc.want)
		}
	}
}

// nopCache stands in for a cache where only its presence matters.
type nopCache struct{ Cache }

// hangingCache is a cache whose look-ups never answer before their
// context ends; it records how many it was asked and stores nothing.
type hangingCache struct {
	nopCache
	mu        sync.Mutex
	lookups   int
	deadlines []time.Time // of each look-up's context
}

func (h *hangingCache) Ready() bool { return true }
func (h *hangingCache) wait(ctx context.Context) {
	dl, _ := ctx.Deadline()
	h.mu.Lock()
	h.lookups++
	h.deadlines = append(h.deadlines, dl)
	h.mu.Unlock()
	<-ctx.Done()
}
func (h *hangingCache) LookupKeyed(ctx context.Context, _ index.Space, _, _ [32]byte, _ func(*index.Entry) bool) (*index.Entry, bool, bool) {
	h.wait(ctx)
	return nil, false, false
}
func (h *hangingCache) NearestGuarded(ctx context.Context, _ index.Space, _ []float32, _ string, _ float32) (*index.Entry, float32, bool) {
	h.wait(ctx)
	return nil, 0, false
}
func (h *hangingCache) Miss()                                       {}
func (h *hangingCache) StoreAsync(_ *index.Entry, done func(error)) { done(nil) }

// TestHangingCacheCostsOneLookupDeadline: a cache that never answers costs
// a request the look-up stage's one deadline (both tiers together), and
// the request is answered from the backend.
func TestHangingCacheCostsOneLookupDeadline(t *testing.T) {
	l, cfg := oneRouteNode(t)
	cfg.Cache.Enabled = true
	cfg.ApplyDefaults()
	hc := &hangingCache{}
	g, err := New(cfg, Options{Limiter: l, Transport: answerTransport{}, Cache: hc, StoreWait: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"How should our team rotate the access keys?"}],"max_tokens":16}`)
	chat, e := openai.ParseChat(body)
	if e != nil {
		t.Fatal(e)
	}
	serve := func(h http.Header) (*httptest.ResponseRecorder, Outcome, time.Duration) {
		start := time.Now()
		w := httptest.NewRecorder()
		out := g.Serve(context.Background(), w, &Call{Op: openai.OpChat, Route: "gpt-4o", Model: "gpt-4o", Body: body, Chat: chat, Consumer: g.byName["team-a"], Header: h})
		return w, out, time.Since(start)
	}
	off := http.Header{}
	off.Set(HeaderCache, "off")
	serve(off) // the token counter's and embedder's tables, built at first use
	g.embedder.Embed(context.Background(), "warm")
	w, out, took := serve(http.Header{})
	if out.Status != http.StatusOK || w.Header().Get(HeaderCache) != cacheMiss {
		t.Fatalf("outcome %+v, x-llmgate-cache %q: want an answer that missed", out, w.Header().Get(HeaderCache))
	}
	if hc.lookups != 2 {
		t.Errorf("%d look-ups, want 2 (exact, then semantic)", hc.lookups)
	}
	// Both tiers share one deadline: a deadline each would take twice as
	// long. The deadlines are compared rather than the request's time, which
	// a loaded machine stretches.
	if len(hc.deadlines) == 2 && (hc.deadlines[0].IsZero() || !hc.deadlines[1].Equal(hc.deadlines[0])) {
		t.Errorf("the look-ups' deadlines were %v: want one deadline for both tiers", hc.deadlines)
	}
	if took < lookupTimeout {
		t.Errorf("the request took %v with a hanging cache, want at least lookupTimeout (%v)", took, lookupTimeout)
	}
}

// answerTransport answers every request with benchChatAnswer, in process
// (benchResponse to the Responses API).
type answerTransport struct{}

func (answerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
	}
	answer := benchChatAnswer
	if strings.HasSuffix(r.URL.Path, "/responses") {
		answer = benchResponse
	}
	return &http.Response{
		StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(bytes.NewReader([]byte(answer))),
		ContentLength: int64(len(answer)),
		Request:       r,
	}, nil
}

// TestSharedDeadlineLeavesAtLeastItsDuration checks the look-ups' and the
// stores' shared deadlines: every context handed out ends no sooner than d
// after it is handed out and no later than d+window, and one stops being
// handed out once window has passed.
func TestSharedDeadlineLeavesAtLeastItsDuration(t *testing.T) {
	s := sharedDeadline{d: 200 * time.Millisecond, window: 40 * time.Millisecond}
	firstAt := time.Now()
	first := s.get()
	for range 5 {
		before := time.Now()
		ctx := s.get()
		after := time.Now()
		dl, ok := ctx.Deadline()
		if !ok {
			t.Fatal("a shared deadline has no deadline")
		}
		if dl.Sub(before) < s.d || dl.Sub(after) > s.d+s.window {
			t.Fatalf("handed out with %v to %v left, want between %v and %v", dl.Sub(after), dl.Sub(before), s.d, s.d+s.window)
		}
		time.Sleep(15 * time.Millisecond)
	}
	if s.get() == first {
		t.Fatal("a context was still handed out after its window")
	}
	// Err first, then the clock: a loaded machine may have slept past d, and
	// only an end before firstAt+d is early.
	if first.Err() != nil && time.Since(firstAt) < s.d {
		t.Fatal("a shared deadline ended early")
	}
	<-first.Done() // its own timer ends it
}

// TestCanonicalCacheHeaders checks the canonical spellings the cache's
// stages read and write its headers with.
func TestCanonicalCacheHeaders(t *testing.T) {
	for _, c := range []struct{ key, name string }{{headerCacheKey, HeaderCache}, {headerCacheTTLKey, HeaderCacheTTL}} {
		if want := http.CanonicalHeaderKey(c.name); c.key != want {
			t.Errorf("%q is not the canonical form of %q (%q)", c.key, c.name, want)
		}
	}
}
