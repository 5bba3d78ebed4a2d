package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/llmgate/llmgate/identity"
	"github.com/llmgate/llmgate/index"
	"github.com/llmgate/llmgate/index/guard"
	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/internal/edge"
	"github.com/llmgate/llmgate/node"
	"github.com/llmgate/llmgate/quota"
	"github.com/llmgate/llmgate/telemetry"
	"github.com/llmgate/llmgate/usage"
)

const (
	keyA = "sk-team-a"
	keyB = "sk-team-b"
)

// upstream is a fake backend whose behaviour a test sets.
type upstream struct {
	*httptest.Server
	calls   atomic.Int64
	handler atomic.Pointer[http.HandlerFunc]
	lastReq atomic.Pointer[recorded]
}

type recorded struct {
	method, path, query string
	header              http.Header
	body                []byte
}

func newUpstream(t testing.TB, h http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{}
	u.set(h)
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		u.lastReq.Store(&recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), body})
		r.Body = io.NopCloser(bytes.NewReader(body))
		(*u.handler.Load())(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) set(h http.HandlerFunc) { u.handler.Store(&h) }

// okChat answers like a chat completion, naming who answered.
func okChat(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("x-ratelimit-remaining-tokens", "999")
		_, _ = io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"hello from `+name+`"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}`)
	}
}

func status(code int, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = io.WriteString(w, `{"error":{"code":"`+http.StatusText(code)+`","message":"from upstream"}}`)
	}
}

// gateway is a node with its data and admin fronts on loopback.
type gateway struct {
	data, admin *httptest.Server
	reg         *prometheus.Registry
	api         *API
}

type setup struct {
	backends []config.Backend
	routes   map[string]config.Route
	mutate   func(*config.Config)
	// limits and cache start an in-memory limiter and cache for the node.
	limits   bool
	cache    bool
	embedder node.Embedder
	now      func() time.Time
	// observer receives every finished request; capture asks for content.
	observer telemetry.Observer
	capture  bool
	// keys starts in-memory run-time keys for the consumers; jwt adds a
	// token authenticator.
	keys bool
	jwt  *identity.JWT
	// tracer traces requests (front and pipeline).
	tracer trace.Tracer
	// history keeps usage history (in memory) for /admin/usage, with these prices.
	history map[string]usage.Price
	// tokens are the Entra ID token sources of backends with auth: entra.
	tokens map[string]node.TokenSource
}

func newGateway(t testing.TB, s setup) *gateway {
	t.Helper()
	cfg := &config.Config{
		Backends: s.backends,
		Routes:   s.routes,
		Consumers: []config.Consumer{
			{Name: "team-a", Keys: []string{keyA}},
			{Name: "team-b", Keys: []string{keyB}},
		},
	}
	cfg.Upstream.ResponseHeaderTimeout = 2 * time.Second
	cfg.Upstream.Timeout = 10 * time.Second
	if s.mutate != nil {
		s.mutate(cfg)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config invalid: %v", err)
	}
	reg := prometheus.NewRegistry()
	// Stores complete before the answer goes out, so a test's next request
	// finds them however slow the machine.
	nopts := node.Options{Registry: reg, Embedder: s.embedder, Now: s.now, StoreWait: time.Minute, Counter: mockCounter()}
	aopts := Options{Registry: reg, Gatherer: reg, MaxBodyBytes: cfg.Server.MaxBodyBytes, AdminToken: cfg.AdminToken, NodeName: "gw-test", GossipAddr: "127.0.0.1:7946", Observer: s.observer, CaptureContent: s.capture}
	if s.limits {
		limits := map[string]quota.Limits{}
		for _, c := range cfg.Consumers {
			limits[c.Name] = quota.Limits{TPM: c.TPM, QuotaTokens: c.Quota.Tokens, Period: quota.Period(c.Quota.Period)}
		}
		l, err := quota.Open(quota.Options{Now: s.now, NodeName: "gw-test"}, limits)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		nopts.Limiter, aopts.Quota = l, l
	}
	if s.cache {
		cfg.Cache.Enabled = true
		c, err := index.Open(context.Background(), index.Options{Now: s.now, Check: guard.Check, Judgeable: guard.Judgeable})
		if err != nil {
			t.Fatal(err)
		}
		for !c.Ready() {
			time.Sleep(time.Millisecond)
		}
		t.Cleanup(func() { _ = c.Close() })
		nopts.Cache, aopts.Cache = c, c
	}
	if s.keys {
		var names []string
		for _, c := range cfg.Consumers {
			names = append(names, c.Name)
		}
		k, err := identity.OpenKeys(identity.KeyOptions{Consumers: names, Now: s.now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k.Close() })
		aopts.Identity, aopts.Keys = identity.New(k, s.jwt), k
	} else if s.jwt != nil {
		aopts.Identity = identity.New(nil, s.jwt)
	}
	if s.history != nil {
		db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil))
		if err != nil {
			t.Fatal(err)
		}
		h, err := usage.Open(usage.Options{DB: db, Node: "gw-test", Prices: s.history, Now: s.now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.Close(); _ = db.Close() })
		aopts.Usage = h
		aopts.Observer = telemetry.Observers{h}
		if s.observer != nil {
			aopts.Observer = telemetry.Observers{h, s.observer}
		}
	}
	nopts.Tracer, aopts.Tracer = s.tracer, s.tracer
	nopts.BackendTokens = s.tokens
	gw, err := node.New(cfg, nopts)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(gw, aopts)
	if err != nil {
		t.Fatal(err)
	}
	// The servers are the ones a node runs: internal/edge's deadlines and guard.
	eo := edge.Options{ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout, BodyReadTimeout: cfg.Server.BodyReadTimeout, IdleTimeout: cfg.Server.IdleTimeout}
	serve := func(h http.Handler) *httptest.Server {
		ts := httptest.NewUnstartedServer(nil)
		ts.Config = edge.NewServer(h, eo)
		ts.Start()
		return ts
	}
	g := &gateway{data: serve(a.DataHandler()), admin: serve(a.AdminHandler()), reg: reg, api: a}
	t.Cleanup(func() {
		g.data.Close()
		g.admin.Close()
		gw.Close()
	})
	return g
}

// twoBackends routes gpt-4o to primary, then secondary, and gpt-4o-mini to both in one group.
func twoBackends(primary, secondary *upstream) setup {
	return setup{
		backends: []config.Backend{
			{Name: "primary", Kind: "azure", URL: primary.URL, APIKey: "upstream-key-1"},
			{Name: "secondary", Kind: "openai", URL: secondary.URL + "/v1", APIKey: "upstream-key-2"},
		},
		routes: map[string]config.Route{
			"gpt-4o":                 {Pool: [][]string{{"primary"}, {"secondary"}}},
			"gpt-4o-mini":            {Pool: [][]string{{"primary", "secondary"}}},
			"text-embedding-3-small": {Pool: [][]string{{"primary"}}},
		},
	}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) errorCode(t *testing.T) string {
	t.Helper()
	var e struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Code    string  `json:"code"`
			Param   *string `json:"param"`
		} `json:"error"`
	}
	if err := json.Unmarshal(a.body, &e); err != nil {
		t.Fatalf("the answer is not an OpenAI error body: %v: %s", err, a.body)
	}
	if e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("the error body lacks message or type: %s", a.body)
	}
	return e.Error.Code
}

func do(t *testing.T, method, url, key string, body string, headers ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("api-key", key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] != "" {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading answer: %v", err)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

const chatBody = `{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}]}`

// noLeaks fails the test if goroutines started during it are still running
// shortly after it ends (servers closed by their own cleanups first).
func noLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before+2 {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutines: %d before, %d after the test\n%s", before, n, buf)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
