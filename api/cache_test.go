package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/verify"
)

func cached(t *testing.T, up *upstream, mutate ...func(*setup)) *gateway {
	t.Helper()
	s := twoBackends(up, up)
	s.cache = true
	for _, m := range mutate {
		m(&s)
	}
	return newGateway(t, s)
}

func chatAbout(text string) string {
	b, _ := json.Marshal(text)
	return `{"model":"gpt-4o","messages":[{"role":"user","content":` + string(b) + `}]}`
}

func TestCacheTiers(t *testing.T) {
	noLeaks(t)
	up := newUpstream(t, okChat("east"))
	g := cached(t, up)
	url := g.data.URL + "/v1/chat/completions"
	steps := []struct {
		name, key, body string
		headers         []string
		want            string // x-llmgate-cache
		upstream        bool   // whether the backend is called
	}{
		{"cold miss", keyA, chatAbout("What is the capital of France?"), nil, "miss", true},
		{"same prompt is an exact hit", keyA, chatAbout("What is the capital of France?"), nil, "hit", false},
		{"reordered keys and whitespace are the same request", keyA, `{ "messages" : [ {"content":"What is the capital of France?", "role":"user"} ], "model":"gpt-4o" }`, nil, "hit", false},
		{"other case and punctuation is a semantic hit", keyA, chatAbout("what is the capital of france"), nil, "hit", false},
		{"negation is a miss", keyA, chatAbout("What is not the capital of France?"), nil, "miss", true},
		{"changed entity is a miss", keyA, chatAbout("What is the capital of Germany?"), nil, "miss", true},
		{"other tenant is a miss", keyB, chatAbout("What is the capital of France?"), nil, "miss", true},
		{"other answer-shaping parameters are a miss", keyA, `{"model":"gpt-4o","temperature":1.5,"messages":[{"role":"user","content":"What is the capital of France?"}]}`, nil, "miss", true},
		{"cache off bypasses look-up", keyA, chatAbout("What is the capital of France?"), []string{"x-llmgate-cache", "off"}, "off", true},
	}
	for _, st := range steps {
		before := up.calls.Load()
		a := do(t, "POST", url, st.key, st.body, st.headers...)
		if a.status != 200 {
			t.Fatalf("%s: %d %s", st.name, a.status, a.body)
		}
		if got := a.header.Get("x-llmgate-cache"); got != st.want {
			t.Errorf("%s: x-llmgate-cache = %q, want %q", st.name, got, st.want)
		}
		if called := up.calls.Load() > before; called != st.upstream {
			t.Errorf("%s: backend called = %v, want %v", st.name, called, st.upstream)
		}
		if st.want == "hit" {
			if a.header.Get("x-llmgate-cache-distance") == "" || a.header.Get("x-llmgate-backend") != "" {
				t.Errorf("%s: a hit carries a distance and no backend: %v", st.name, a.header)
			}
			if !strings.Contains(string(a.body), "hello from east") {
				t.Errorf("%s: body %s", st.name, a.body)
			}
		}
	}
}

func TestCacheStoresOnlySuccesses(t *testing.T) {
	up := newUpstream(t, status(400))
	g := cached(t, up)
	url := g.data.URL + "/v1/chat/completions"
	do(t, "POST", url, keyA, chatAbout("tell me a story"))
	up.set(okChat("east"))
	if a := do(t, "POST", url, keyA, chatAbout("tell me a story")); a.header.Get("x-llmgate-cache") != "miss" {
		t.Errorf("an error answer was cached: %v", a.header)
	}
	up.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"..."},"finish_reason":"content_filter"}]}`)
	})
	do(t, "POST", url, keyA, chatAbout("something filtered"))
	if a := do(t, "POST", url, keyA, chatAbout("something filtered")); a.header.Get("x-llmgate-cache") != "miss" {
		t.Errorf("a content-filtered answer was cached")
	}
}

func TestCachedStreamRoundTrip(t *testing.T) {
	noLeaks(t)
	var saw bool
	up := newUpstream(t, streamingUpstream(t, &saw))
	g := cached(t, up)
	url := g.data.URL + "/v1/chat/completions"
	stream := `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"greet me"}]}`
	first, _ := streamRequest(t, url, keyA, stream)
	calls := up.calls.Load()
	replayed, _ := streamRequest(t, url, keyA, stream)
	if up.calls.Load() != calls {
		t.Fatal("the second stream went to the backend")
	}
	if len(replayed) < 4 || replayed[len(replayed)-1] != "[DONE]" {
		t.Fatalf("replay is not a well-formed stream: %q", replayed)
	}
	text := func(events []string) string {
		var sb strings.Builder
		for _, e := range events {
			var c struct {
				Choices []struct {
					Delta struct{ Content string } `json:"delta"`
				} `json:"choices"`
			}
			if e != "[DONE]" && json.Unmarshal([]byte(e), &c) == nil && len(c.Choices) > 0 {
				sb.WriteString(c.Choices[0].Delta.Content)
			}
		}
		return sb.String()
	}
	if text(first) != "Hi there" || text(replayed) != "Hi there" {
		t.Errorf("content: first %q, replayed %q", text(first), text(replayed))
	}
	// The streamed answer also serves a non-streaming client, as JSON.
	a := do(t, "POST", url, keyA, `{"model":"gpt-4o","messages":[{"role":"user","content":"greet me"}]}`)
	var body struct {
		Object  string `json:"object"`
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	if a.header.Get("x-llmgate-cache") != "hit" || json.Unmarshal(a.body, &body) != nil || body.Object != "chat.completion" || body.Choices[0].Message.Content != "Hi there" {
		t.Errorf("JSON replay: %v %s", a.header.Get("x-llmgate-cache"), a.body)
	}
}

type failingEmbedder struct{}

func (failingEmbedder) Embed(context.Context, string) ([]float32, error) {
	return nil, errors.New("embedder down")
}

func TestEmbedderFailureGoesUncached(t *testing.T) {
	up := newUpstream(t, okChat("east"))
	g := cached(t, up, func(s *setup) { s.embedder = failingEmbedder{} })
	url := g.data.URL + "/v1/chat/completions"
	for i := range 2 {
		a := do(t, "POST", url, keyA, chatAbout("hello there"))
		if a.status != 200 {
			t.Fatalf("request %d failed: %d", i, a.status)
		}
	}
	// The exact tier needs no embedding: the second identical request hits.
	if up.calls.Load() != 1 {
		t.Errorf("backend calls = %d, want 1 (exact tier still works)", up.calls.Load())
	}
	if a := do(t, "POST", url, keyA, chatAbout("hello there, friend")); a.status != 200 || a.header.Get("x-llmgate-cache") != "miss" {
		t.Errorf("paraphrase with a failing embedder: %d %s", a.status, a.header.Get("x-llmgate-cache"))
	}
}

func TestCacheAdmin(t *testing.T) {
	up := newUpstream(t, okChat("east"))
	g := cached(t, up)
	url := g.data.URL + "/v1/chat/completions"
	for _, p := range []string{"What is the capital of France?", "How tall is Mount Everest?"} {
		do(t, "POST", url, keyA, chatAbout(p))
	}
	do(t, "POST", url, keyB, chatAbout("What is the capital of France?"))

	var stats map[string]float64
	a := do(t, "GET", g.admin.URL+"/admin/cache/stats", "", "")
	if json.Unmarshal(a.body, &stats) != nil || stats["entries"] != 3 {
		t.Fatalf("stats: %s", a.body)
	}
	for _, f := range []string{"hits", "misses", "exact_hits", "semantic_hits", "bytes"} {
		if _, ok := stats[f]; !ok {
			t.Errorf("stats lacks %q", f)
		}
	}
	var list struct {
		Entries []struct {
			ID, Route, Partition, Prompt string
		} `json:"entries"`
		NextCursor *string `json:"next_cursor"`
	}
	a = do(t, "GET", g.admin.URL+"/admin/cache/entries?partition=team-a&limit=10", "", "")
	if json.Unmarshal(a.body, &list) != nil || len(list.Entries) != 2 || list.NextCursor == nil {
		t.Fatalf("list: %s", a.body)
	}
	id := list.Entries[0].ID
	if a := do(t, "GET", g.admin.URL+"/admin/cache/entries/"+id, "", ""); a.status != 200 || !strings.Contains(string(a.body), `"response"`) {
		t.Errorf("get: %d %s", a.status, a.body)
	}
	a = do(t, "POST", g.admin.URL+"/admin/cache/search", "", `{"route":"gpt-4o","partition":"team-a","messages":[{"role":"user","content":"What's the capital of France?"}]}`)
	if a.status != 200 || !strings.Contains(string(a.body), `"distance"`) {
		t.Errorf("search: %d %s", a.status, a.body)
	}
	if a := do(t, "DELETE", g.admin.URL+"/admin/cache/entries/"+id, "", ""); a.status != 204 {
		t.Errorf("delete: %d", a.status)
	}
	if a := do(t, "GET", g.admin.URL+"/admin/cache/entries/"+id, "", ""); a.status != 404 {
		t.Errorf("get after delete: %d", a.status)
	}
	a = do(t, "DELETE", g.admin.URL+"/admin/cache?partition=team-a", "", "")
	if a.status != 200 || !strings.Contains(string(a.body), `"deleted":1`) {
		t.Errorf("purge: %d %s", a.status, a.body)
	}
	if a := do(t, "GET", g.admin.URL+"/admin/cache/stats", "", ""); !strings.Contains(string(a.body), `"entries":1`) {
		t.Errorf("after purge: %s", a.body)
	}
}

func TestCacheTTLHeader(t *testing.T) {
	up := newUpstream(t, okChat("east"))
	now := time.Unix(1_700_000_000, 0)
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	g := cached(t, up, func(s *setup) { s.now = func() time.Time { return time.Unix(0, clock.Load()) } })
	url := g.data.URL + "/v1/chat/completions"
	do(t, "POST", url, keyA, chatAbout("short lived"), "x-llmgate-cache-ttl", "5")
	if a := do(t, "POST", url, keyA, chatAbout("short lived")); a.header.Get("x-llmgate-cache") != "hit" {
		t.Fatalf("within its TTL: %s", a.header.Get("x-llmgate-cache"))
	}
	clock.Add(int64(6 * time.Second))
	if a := do(t, "POST", url, keyA, chatAbout("short lived")); a.header.Get("x-llmgate-cache") != "miss" {
		t.Errorf("after its 5 s TTL: %s", a.header.Get("x-llmgate-cache"))
	}
	if a := do(t, "POST", url, keyA, chatAbout("never stored"), "x-llmgate-cache-ttl", "0"); a.header.Get("x-llmgate-cache") != "bypass" {
		t.Errorf("ttl 0: %s", a.header.Get("x-llmgate-cache"))
	}
}

func TestRouteEmbedder(t *testing.T) {
	// The embedder is the gateway's own embeddings route, served by the fake
	// upstream with a fixed vector per text length: equal lengths match.
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/embeddings") {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[1,0,0]}]}`)
			return
		}
		okChat("east")(w, r)
	})
	g := cached(t, up, func(s *setup) {
		s.mutate = func(c *config.Config) { c.Cache.Embedder = "text-embedding-3-small"; c.Cache.ScoreThreshold = 0.1 }
	})
	url := g.data.URL + "/v1/chat/completions"
	do(t, "POST", url, keyA, chatAbout("what is a vector"))
	a := do(t, "POST", url, keyA, chatAbout("What is a vector?"))
	if a.header.Get("x-llmgate-cache") != "hit" || a.header.Get("x-llmgate-cache-distance") != "0.0000" {
		t.Errorf("same vector from the route: %s d=%s", a.header.Get("x-llmgate-cache"), a.header.Get("x-llmgate-cache-distance"))
	}
	// The embedding route fails: requests go uncached, never fail.
	up.set(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/embeddings") {
			status(500)(w, r)
			return
		}
		okChat("east")(w, r)
	})
	if a := do(t, "POST", url, keyA, chatAbout("a brand new question")); a.status != 200 || a.header.Get("x-llmgate-cache") != "miss" {
		t.Errorf("with the embedder down: %d %s", a.status, a.header.Get("x-llmgate-cache"))
	}
}

func TestAdminStateRoutesOfAbsentParts(t *testing.T) {
	up := newUpstream(t, okChat("east"))
	g := newGateway(t, twoBackends(up, up)) // no cache, no token accounting
	for _, path := range []string{"/admin/cache/stats", "/admin/cache/entries", "/admin/quota", "/admin/quota/team-a"} {
		if a := do(t, "GET", g.admin.URL+path, "", ""); a.status != 404 || a.errorCode(t) != "not_found" {
			t.Errorf("GET %s without the part: %d %s, want 404 not_found", path, a.status, a.body)
		}
	}
}

// TestCacheNeverAnswersADifferentRequest sends, per false-hit class, a first
// request that is stored and a second that differs in what can change the
// answer: the second must reach the backend.
func TestCacheNeverAnswersADifferentRequest(t *testing.T) {
	dialog := func(turns ...string) string {
		var msgs []map[string]string
		for i, c := range turns {
			role := "user"
			if i%2 == 1 {
				role = "assistant"
			}
			msgs = append(msgs, map[string]string{"role": role, "content": c})
		}
		b, _ := json.Marshal(map[string]any{"model": "gpt-4o", "messages": msgs})
		return string(b)
	}
	withSystem := func(system, user string) string {
		b, _ := json.Marshal(map[string]any{"model": "gpt-4o", "messages": []map[string]string{{"role": "system", "content": system}, {"role": "user", "content": user}}})
		return string(b)
	}
	tests := []struct{ name, first, second string }{
		{"operator differs is a miss", chatAbout("What does print(7 + 3) output in Python?"), chatAbout("What does print(7 - 3) output in Python?")},
		{"comparison operator differs is a miss", chatAbout("When is a == b true in JavaScript?"), chatAbout("When is a != b true in JavaScript?")},
		{"increment and decrement differ", chatAbout("What does i++ do in a loop?"), chatAbout("What does i-- do in a loop?")},
		{"C++ and C# differ", chatAbout("Is C++ good for games?"), chatAbout("Is C# good for games?")},
		{"currency differs is a miss", chatAbout("How much is $100 in yen?"), chatAbout("How much is €100 in yen?")},
		{"percent sign is a miss", chatAbout("Raise the price by 20% please"), chatAbout("Raise the price by 20 please")},
		{"product and power differ", chatAbout("Compute 2*10 for me"), chatAbout("Compute 2^10 for me")},
		{"swapped content word is a miss", chatAbout("Write a long story about a mango that learns to fly over the sea"), chatAbout("Write a long story about a banana that learns to fly over the sea")},
		{"antonym is a miss", chatAbout("How do I add a user to the docker group?"), chatAbout("How do I remove a user to the docker group?")},
		{"pronoun differs is a miss", chatAbout("What did he say at the meeting on the budget?"), chatAbout("What did she say at the meeting on the budget?")},
		{"moved turn boundary is a miss", dialog("tell me a joke\nabout cats", "why did the cat sit on the computer", "explain it"), dialog("tell me a joke", "about cats\nwhy did the cat sit on the computer", "explain it")},
		{"word swapped inside a dialog is a miss", dialog("plan a trip to the coast", "sure, by train or car?", "open the itinerary"), dialog("plan a trip to the coast", "sure, by train or car?", "close the itinerary")},
		{"different system message is a miss", withSystem("Customer Alice, balance $10", "What is my balance?"), withSystem("Customer Bob, balance $99000", "What is my balance?")},
		// Duplicate keys never get this far: they are refused as ambiguous (ambiguity_test.go).
		{"lone surrogates differ", `{"model":"gpt-4o","messages":[{"role":"user","content":"name \ud800 please"}]}`, `{"model":"gpt-4o","messages":[{"role":"user","content":"name \ud801 please"}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t, okChat("east"))
			g := cached(t, up)
			url := g.data.URL + "/v1/chat/completions"
			if a := do(t, "POST", url, keyA, tc.first); a.status != 200 || a.header.Get("x-llmgate-cache") != "miss" {
				t.Fatalf("first: %d %v %s", a.status, a.header.Get("x-llmgate-cache"), a.body)
			}
			if a := do(t, "POST", url, keyA, tc.first); a.header.Get("x-llmgate-cache") != "hit" {
				t.Fatalf("the first request was not stored: %v", a.header.Get("x-llmgate-cache"))
			}
			before := up.calls.Load()
			a := do(t, "POST", url, keyA, tc.second)
			if a.status != 200 {
				t.Fatalf("second: %d %s", a.status, a.body)
			}
			if got := a.header.Get("x-llmgate-cache"); got != "miss" || up.calls.Load() == before {
				t.Errorf("second request: x-llmgate-cache = %q (distance %s), want a miss that reaches the backend",
					got, a.header.Get("x-llmgate-cache-distance"))
			}
		})
	}
}

func TestCacheMaxEntryBytes(t *testing.T) {
	up := newUpstream(t, okChat("east"))
	g := cached(t, up, func(s *setup) { s.mutate = func(c *config.Config) { c.Cache.MaxEntryBytes = 10 } })
	url := g.data.URL + "/v1/chat/completions"
	do(t, "POST", url, keyA, chatAbout("a big answer"))
	if a := do(t, "POST", url, keyA, chatAbout("a big answer")); a.status != 200 || a.header.Get("x-llmgate-cache") != "miss" {
		t.Errorf("an answer over max_entry_bytes was stored: %d %v", a.status, a.header.Get("x-llmgate-cache"))
	}
}

func TestCacheTierHeader(t *testing.T) {
	up := newUpstream(t, okChat("east"))
	g := cached(t, up)
	url := g.data.URL + "/v1/chat/completions"
	steps := []struct{ name, prompt, tier string }{
		{"cold miss", "How do I reverse a list in Python?", ""},
		{"same request is an exact hit", "How do I reverse a list in Python?", "exact"},
		{"case, punctuation and how can I are a normalised hit", "how can I reverse a list in python", "normalized"},
		{"please is a normalised hit", "Please, how do I reverse a list in Python?", "normalized"},
		{"another function word is a semantic hit", "So how do I reverse a list in Python?", "semantic"},
	}
	for _, st := range steps {
		a := do(t, "POST", url, keyA, chatAbout(st.prompt))
		if got := a.header.Get("x-llmgate-cache-tier"); got != st.tier {
			t.Errorf("%s: x-llmgate-cache-tier = %q (cache %s, distance %s), want %q", st.name, got,
				a.header.Get("x-llmgate-cache"), a.header.Get("x-llmgate-cache-distance"), st.tier)
		}
		if st.tier == "normalized" && a.header.Get("x-llmgate-cache-distance") != "0.0000" {
			t.Errorf("%s: distance %q, want 0.0000", st.name, a.header.Get("x-llmgate-cache-distance"))
		}
	}
	m := do(t, "GET", g.admin.URL+"/metrics", "", "")
	if !strings.Contains(string(m.body), `result="hit_normalized"`) {
		t.Error("metrics have no hit_normalized result")
	}
	var st struct {
		NormalizedHits int `json:"normalized_hits"`
	}
	s := do(t, "GET", g.admin.URL+"/admin/cache/stats", "", "")
	if err := json.Unmarshal(s.body, &st); err != nil || st.NormalizedHits != 2 {
		t.Errorf("stats %s: want normalized_hits 2", s.body)
	}
}

// judgeUpstream answers judge prompts with judge(a, b) (or fails them with
// failStatus), and everything else as okChat; it counts the judge calls.
func judgeUpstream(judge func(a, b string) string, failStatus *atomic.Int32, judged *atomic.Int32) http.HandlerFunc {
	ok := okChat("east")
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req struct {
			Messages []struct{ Role, Content string } `json:"messages"`
		}
		_ = json.Unmarshal(body, &req)
		if len(req.Messages) == 2 && req.Messages[0].Content == verify.JudgeSystem {
			judged.Add(1)
			if s := failStatus.Load(); s != 0 {
				status(int(s))(w, r)
				return
			}
			a, b, _ := verify.ParseJudgeUser(req.Messages[1].Content)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id":"j","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"`+judge(a, b)+`"},"finish_reason":"stop"}],"usage":{"prompt_tokens":60,"completion_tokens":1,"total_tokens":61}}`)
			return
		}
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		ok(w, r)
	}
}

func TestVerifiedMatching(t *testing.T) {
	var fail, judged atomic.Int32
	// The judge accepts "would" for "do" and refuses anything else.
	judge := func(a, b string) string {
		if strings.Replace(a, "would", "do", 1) == b || strings.Replace(b, "would", "do", 1) == a {
			return "Yes."
		}
		return "no"
	}
	up := newUpstream(t, judgeUpstream(judge, &fail, &judged))
	g := cached(t, up, func(s *setup) {
		s.mutate = func(c *config.Config) {
			c.Cache.Verify = &config.CacheVerify{Route: "gpt-4o-mini", AuditRate: 1e-9}
		}
	})
	url := g.data.URL + "/v1/chat/completions"
	const stored = "How do I rotate the API key of my Azure OpenAI resource?"
	do(t, "POST", url, keyA, chatAbout(stored))
	steps := []struct {
		name, prompt, cache, tier string
		judged                    bool
	}{
		{"close paraphrase needs no judge", "How do I rotate the API key for my Azure OpenAI resource?", "hit", "semantic", false},
		{"near miss the judge confirms is a verified hit", "How would I rotate the API key of my Azure OpenAI resource?", "hit", "verified", true},
		{"near miss the judge refuses is a miss", "How do I rotate the API key of the Azure OpenAI resource?", "miss", "", true},
		{"wording the guard refuses is left to the judge", "How do I delete the API key of my Azure OpenAI resource?", "miss", "", true},
		{"a number the guard refuses never reaches the judge", "How do I rotate the 2 API keys of my Azure OpenAI resource?", "miss", "", false},
	}
	for _, st := range steps {
		before := judged.Load()
		a := do(t, "POST", url, keyA, chatAbout(st.prompt))
		if a.status != 200 || a.header.Get("x-llmgate-cache") != st.cache || a.header.Get("x-llmgate-cache-tier") != st.tier {
			t.Errorf("%s: %d cache %q tier %q (distance %s), want %s %q", st.name, a.status, a.header.Get("x-llmgate-cache"),
				a.header.Get("x-llmgate-cache-tier"), a.header.Get("x-llmgate-cache-distance"), st.cache, st.tier)
		}
		if got := judged.Load() > before; got != st.judged {
			t.Errorf("%s: judge called = %v, want %v", st.name, got, st.judged)
		}
	}
	// A failing judge is a miss, never an error.
	fail.Store(500)
	a := do(t, "POST", url, keyA, chatAbout("How would I rotate the API key of my Azure OpenAI resource, then?"))
	if a.status != 200 || a.header.Get("x-llmgate-cache") != "miss" {
		t.Errorf("failing judge: %d %q, want 200 miss", a.status, a.header.Get("x-llmgate-cache"))
	}
	s := do(t, "GET", g.admin.URL+"/admin/cache/stats", "", "")
	var stats struct {
		Verify *struct {
			Judged, Confirmed, Refused, Failed int
			Tokens                             int
		} `json:"verify"`
	}
	if err := json.Unmarshal(s.body, &stats); err != nil || stats.Verify == nil {
		t.Fatalf("stats %s: no verify section", s.body)
	}
	// The wording the guard refused was judged in both orders: two calls.
	if v := stats.Verify; v.Confirmed != 1 || v.Refused != 3 || v.Failed < 1 || v.Tokens != 244 {
		t.Errorf("verify stats %+v: want 1 confirmed, 3 refused, a failure, 244 judge tokens", *v)
	}
	m := string(do(t, "GET", g.admin.URL+"/metrics", "", "").body)
	for _, want := range []string{`result="hit_verified"`, "llmgate_cache_judge_tokens_total 244", `llmgate_cache_judge_calls_total{result="refused"} 3`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestJudgeSettlesOnlyWording: with a judge, a candidate the guard refused
// on wording alone (a content word, word order, a qualifier) is the judge's
// to decide, while the hard classes stay misses even when the judge says
// yes to everything: the judge is never asked about them.
func TestJudgeSettlesOnlyWording(t *testing.T) {
	dialog := func(turns ...string) string {
		var msgs []map[string]string
		for i, c := range turns {
			role := "user"
			if i%2 == 1 {
				role = "assistant"
			}
			msgs = append(msgs, map[string]string{"role": role, "content": c})
		}
		b, _ := json.Marshal(map[string]any{"model": "gpt-4o", "messages": msgs})
		return string(b)
	}
	withSystem := func(system, user string) string {
		b, _ := json.Marshal(map[string]any{"model": "gpt-4o", "messages": []map[string]string{{"role": "system", "content": system}, {"role": "user", "content": user}}})
		return string(b)
	}
	hard := []struct{ name, first, second string }{
		{"operator differs is a miss", chatAbout("What does print(7 + 3) output in Python?"), chatAbout("What does print(7 - 3) output in Python?")},
		{"comparison operator differs is a miss", chatAbout("When is a == b true in JavaScript?"), chatAbout("When is a != b true in JavaScript?")},
		{"increment and decrement differ", chatAbout("What does i++ do in a loop?"), chatAbout("What does i-- do in a loop?")},
		{"C++ and C# differ", chatAbout("Is C++ good for games?"), chatAbout("Is C# good for games?")},
		{"currency differs is a miss", chatAbout("How much is $100 in yen?"), chatAbout("How much is €100 in yen?")},
		{"percent sign is a miss", chatAbout("Raise the price by 20% please"), chatAbout("Raise the price by 20 please")},
		{"number differs is a miss", chatAbout("Write a poem of 4 lines about the sea"), chatAbout("Write a poem of 5 lines about the sea")},
		{"negation is a miss", chatAbout("Is it safe to eat raw eggs every day?"), chatAbout("Is it not safe to eat raw eggs every day?")},
		{"changed entity is a miss", chatAbout("Who is Barack Obama and what did he do?"), chatAbout("Who is Donald Trump and what did he do?")},
		{"pronoun differs is a miss", chatAbout("What did he say at the meeting on the budget?"), chatAbout("What did she say at the meeting on the budget?")},
		{"quantifier differs is a miss", chatAbout("delete all files in the build folder"), chatAbout("delete some files in the build folder")},
		{"and or is a miss", chatAbout("tea and coffee for a long breakfast"), chatAbout("tea or coffee for a long breakfast")},
		{"direction word differs is a miss", chatAbout("What happened in Europe before the war?"), chatAbout("What happened in Europe after the war?")},
		{"moved turn boundary is a miss", dialog("tell me a joke\nabout cats", "why did the cat sit on the computer", "explain it"), dialog("tell me a joke", "about cats\nwhy did the cat sit on the computer", "explain it")},
		{"extra turn is a miss", dialog("tell me a joke about cats", "why did the cat sit on the computer", "explain it"), dialog("tell me a joke about cats")},
		{"different system message is a miss", withSystem("Customer Alice, balance $10", "What is my balance?"), withSystem("Customer Bob, balance $99000", "What is my balance?")},
	}
	soft := []struct{ name, first, second string }{
		{"swapped content word is the judge's", chatAbout("Write a long story about a mango that learns to fly over the sea"), chatAbout("Write a long story about a banana that learns to fly over the sea")},
		{"antonym is the judge's", chatAbout("How do I add a user to the docker group?"), chatAbout("How do I remove a user to the docker group?")},
		{"word order is the judge's", chatAbout("the dog chased the cat across the garden"), chatAbout("the cat chased the dog across the garden")},
		{"added qualifier is the judge's", chatAbout("Can I share my dataset with my team?"), chatAbout("Can I share my audio dataset with my team?")},
		{"word swapped in one turn of a dialog is the judge's", dialog("plan a trip to the coast", "sure, by train or car?", "open the itinerary"), dialog("plan a trip to the coast", "sure, by train or car?", "close the itinerary")},
	}
	for _, answer := range []string{"yes", "no"} {
		var fail, judged atomic.Int32
		up := newUpstream(t, judgeUpstream(func(a, b string) string { return answer }, &fail, &judged))
		g := cached(t, up, func(s *setup) {
			s.mutate = func(c *config.Config) {
				c.Cache.Verify = &config.CacheVerify{Route: "gpt-4o-mini", AuditRate: 1e-9}
			}
		})
		url := g.data.URL + "/v1/chat/completions"
		check := func(t *testing.T, first, second, wantCache, wantTier string, wantJudged bool) {
			t.Helper()
			if a := do(t, "POST", url, keyA, first); a.status != 200 {
				t.Fatalf("first: %d %s", a.status, a.body)
			}
			before, calls := judged.Load(), up.calls.Load()
			a := do(t, "POST", url, keyA, second)
			if a.status != 200 || a.header.Get("x-llmgate-cache") != wantCache || a.header.Get("x-llmgate-cache-tier") != wantTier {
				t.Errorf("second: %d cache %q tier %q (distance %s), want %s %q", a.status, a.header.Get("x-llmgate-cache"),
					a.header.Get("x-llmgate-cache-tier"), a.header.Get("x-llmgate-cache-distance"), wantCache, wantTier)
			}
			if got := judged.Load() > before; got != wantJudged {
				t.Errorf("judge called = %v, want %v", got, wantJudged)
			}
			if wantCache == "miss" && up.calls.Load()-calls < 1 {
				t.Errorf("a miss that did not reach the backend")
			}
		}
		for _, tc := range hard {
			t.Run("judge says "+answer+"/"+tc.name, func(t *testing.T) { check(t, tc.first, tc.second, "miss", "", false) })
		}
		for _, tc := range soft {
			t.Run("judge says "+answer+"/"+tc.name, func(t *testing.T) {
				if answer == "yes" {
					check(t, tc.first, tc.second, "hit", "verified", true)
				} else {
					check(t, tc.first, tc.second, "miss", "", true)
				}
			})
		}
	}
}
