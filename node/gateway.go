package node

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/llmgate/llmgate/affinity"
	"github.com/llmgate/llmgate/internal/certs"
	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/internal/embed"
	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/internal/tokens"
	"github.com/llmgate/llmgate/verify"
)

// Response headers the gateway adds (SPEC §4).
const (
	HeaderRequestID = "x-request-id"
	HeaderCache     = "x-llmgate-cache"
	HeaderBackend   = "x-llmgate-backend"
	// HeaderTokensConsumed is what the request was charged; a trailer on streams.
	HeaderTokensConsumed = "x-llmgate-tokens-consumed"
	HeaderCacheDistance  = "x-llmgate-cache-distance"
	HeaderCacheTTL       = "x-llmgate-cache-ttl"
	HeaderLimitTokens    = "x-ratelimit-limit-tokens"
	HeaderRemainTokens   = "x-ratelimit-remaining-tokens"
)

// HeaderCacheTier names the tier that answered a cache hit: exact,
// normalized, semantic or verified (a judge confirmed it).
const HeaderCacheTier = "x-llmgate-cache-tier"

// maxResponseBytes bounds a buffered (non-streaming) upstream answer.
const maxResponseBytes = 64 << 20

// Consumer is an authenticated caller.
type Consumer struct {
	Name string
	// CounterKey is what its limits count: config.CounterConsumer, CounterRoute or CounterUser.
	CounterKey string
	// Credential is the kind of credential that authenticated this request:
	// "api_key" (the configuration's), "runtime_key" or "jwt" (identity's
	// Kind constants). Never the credential itself.
	Credential string
	// Issuer is the token's issuer when Credential is "jwt".
	Issuer string
	// User is the end user the credential vouches for (a token's
	// user_claim): it takes the place of limits.user_header for
	// counter_key: user and vary_by: user, which a client could set at will.
	User string
}

// WithCredential returns a copy of c authenticated by another kind of
// credential, for the end user user ("" = none).
func (c *Consumer) WithCredential(kind, issuer, user string) *Consumer {
	cc := *c
	cc.Credential, cc.Issuer, cc.User = kind, issuer, user
	return &cc
}

// user is the end user of call: the credential's, else the user header's.
func (g *Gateway) user(call *Call) string {
	if call.Consumer.User != "" {
		return call.Consumer.User
	}
	return call.Header.Get(g.limits.UserHeader)
}

// Call is one authenticated model call, parsed by the front end.
type Call struct {
	Op    openai.Operation
	Route string
	// Model is the body's own "model" field ("" if absent); an OpenAI-style
	// backend needs it to equal Route.
	Model    string
	Body     []byte // the client's body, forwarded byte for byte
	Stream   bool
	Consumer *Consumer
	// APIVersion is the client's Azure api-version, if it sent one.
	APIVersion string
	RequestID  string
	// Chat and Embeddings are the parsed body, per Op (the other is nil).
	Chat       *openai.ChatRequest
	Embeddings *openai.EmbeddingsRequest
	Responses  *openai.ResponsesRequest
	// Header is the client's request header (cache control, end-user id).
	Header http.Header
	// Capture asks for the answer's body in Outcome.Answer (the request log's
	// capture_content).
	Capture bool
}

// Outcome says how a call ended, for the front end's metrics and logs.
type Outcome struct {
	Status   int
	Backend  string
	Attempts int
	// Upstream is the time spent waiting on backends (all attempts, bodies included).
	Upstream time.Duration
	// Aborted is set when a stream ended early: "client" or "upstream".
	Aborted string
	// Cache is the x-llmgate-cache value: hit, miss, bypass or off.
	Cache string
	// Tokens is what the call was charged (0 for hits and refusals).
	Tokens int64
	// Prompt, Completion and Cached are the charged usage's parts (Cached:
	// prompt tokens the backend served from its own prompt cache).
	Prompt, Completion, Cached int64
	// Distance is a hit's cosine distance; Saved the stored answer's usage,
	// which the hit spared, and SavedPrompt its prompt part.
	Distance           float64
	Saved, SavedPrompt int64
	// Refusal is the error code of an answer the gateway wrote itself
	// (model_not_found, rate_limit_exceeded, quota_exceeded, backend_unavailable).
	Refusal string
	// Answer is the answer's body when Call.Capture asked for it.
	Answer []byte
	// ResponseID is the answer's id (chatcmpl-…), when it has one.
	ResponseID string
}

// charged records the usage u (nil: nothing) in the outcome.
func (o *Outcome) charged(u *usage) {
	if u == nil {
		return
	}
	o.Prompt, o.Completion = u.Prompt, u.Completion
	if u.Details != nil {
		o.Cached = u.Details.Cached
	}
}

// Options are a Gateway's collaborators; zero fields get defaults.
type Options struct {
	Logger   *slog.Logger
	Registry prometheus.Registerer
	Now      func() time.Time
	// Transport overrides the HTTP transport to backends (tests).
	Transport http.RoundTripper
	// Limiter enforces TPM and quotas (admit and settle); nil = no limits.
	Limiter Limiter
	// Cache answers repeated and similar prompts (look up and store); nil = no cache.
	Cache Cache
	// Embedder embeds prompts for the cache's semantic tier; nil with a Cache
	// set means the route embedder named by cfg.Cache.Embedder, or the local one.
	Embedder Embedder
	// Counter counts prompt tokens; nil = a new one.
	Counter *tokens.Counter
	// BackendTokens supply Microsoft Entra ID tokens to the backends with
	// auth: entra, by backend name.
	BackendTokens map[string]TokenSource
	// Space says whether the data disk has room for new cache entries; nil = always.
	Space Space
	// StoreWait overrides cfg.Cache.StoreWait (tests).
	StoreWait time.Duration
	// Tracer starts the child spans of a request's trace (cache look-up,
	// admission, each upstream attempt); nil = no tracing.
	Tracer trace.Tracer
	// Previous is the gateway this one replaces after a configuration
	// reload: the circuit breakers and observed capacity of backends that
	// keep their name, kind and URL carry over, and so do the token counter
	// and the local embedder. Previous keeps serving the requests it has.
	Previous *Gateway
	// Owners remembers who owns each Responses API response id (cluster-wide);
	// nil = an in-memory store for this node alone.
	Owners Owners
}

// Space is what the store stage asks of the data disk: implemented by
// *space.Watcher. Below its reserve answers are served and not stored.
type Space interface {
	Storing() bool
}

// Gateway runs the request pipeline of one node.
type Gateway struct {
	log     *slog.Logger
	now     func() time.Time
	client  *http.Client
	up      config.Upstream
	keys    map[[32]byte]*Consumer
	byName  map[string]*Consumer
	routes  map[string]*route
	names   []string        // route names, sorted
	budgets map[string]bool // the consumers with a money budget (quota.usd)
	backs   []*backend
	metrics *metrics

	counter   *tokens.Counter
	limits    config.Limits
	limiter   Limiter
	cache     Cache
	cacheCfg  config.Cache
	verifier  *verify.Verifier // nil unless cache.verify is set
	embedder  Embedder
	stores    sync.WaitGroup // cache stores finishing in the background
	storeWait time.Duration
	waits     *cacheWaits  // the look-ups' and the stores' shared deadlines
	tracer    trace.Tracer // nil = no spans
	spanKinds *spanKinds   // the tracer's start options by span kind
	owners    Owners
	ownOwners *affinity.Store // the in-memory store made when none was given
	// streamWrite bounds each write of a relayed stream to the client.
	streamWrite time.Duration
	space       Space
}

// New builds a gateway from a validated configuration.
func New(cfg *config.Config, opts Options) (*Gateway, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	g := &Gateway{
		log:       opts.Logger,
		now:       opts.Now,
		up:        cfg.Upstream,
		keys:      map[[32]byte]*Consumer{},
		byName:    map[string]*Consumer{},
		routes:    map[string]*route{},
		budgets:   map[string]bool{},
		counter:   opts.Counter,
		limits:    cfg.Limits,
		limiter:   opts.Limiter,
		cache:     opts.Cache,
		cacheCfg:  cfg.Cache,
		embedder:  opts.Embedder,
		tracer:    opts.Tracer,
		spanKinds: newSpanKinds(),
		owners:    opts.Owners,
		// Waiting a little for a store means the client's next request
		// usually finds the entry; a slow disk never holds an answer long.
		storeWait:   cmp.Or(opts.StoreWait, cfg.Cache.StoreWait, 20*time.Millisecond),
		streamWrite: cmp.Or(cfg.Server.StreamWriteTimeout, 30*time.Second),
		space:       opts.Space,
	}
	g.waits = newCacheWaits(g.storeWait)
	prev := opts.Previous
	if g.counter == nil && prev != nil {
		g.counter = prev.counter
	}
	if g.owners == nil {
		g.ownOwners = affinity.Open(affinity.Options{Now: opts.Now, Logger: opts.Logger})
		g.owners = g.ownOwners
	}
	if g.counter == nil {
		g.counter = tokens.NewCounter()
	}
	if g.cache != nil && !cfg.Cache.Enabled {
		g.cache = nil
	}
	rt := opts.Transport
	if rt == nil {
		t := newTransport(cfg.Upstream, len(cfg.Backends))
		if cfg.Upstream.CAFile != "" {
			// Read at every build, so a reload picks up a changed bundle.
			pool, err := certs.LoadPool(cfg.Upstream.CAFile, true)
			if err != nil {
				return nil, fmt.Errorf("upstream.ca_file: %w", err)
			}
			t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		rt = t
	}
	// No client-wide Timeout: each call gets its deadline from its context,
	// upstream.timeout for the whole request (a stream included).
	g.client = &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	byName := map[string]*backend{}
	for _, bc := range cfg.Backends {
		b := newBackend(bc, cfg.Upstream)
		if prev != nil {
			b.carryOver(prev.backs, cfg.Upstream, prev.up)
		}
		if bc.Auth == config.BackendAuthEntra {
			b.tokens = opts.BackendTokens[bc.Name]
			if b.tokens == nil {
				return nil, fmt.Errorf("backends.%s: auth is entra but no token source was given", bc.Name)
			}
		}
		byName[b.name] = b
		g.backs = append(g.backs, b)
	}
	for name, rc := range cfg.Routes {
		r := &route{name: name, price: rc.Price}
		for gi, names := range rc.Pool {
			members := make([]*backend, 0, len(names))
			for _, n := range names {
				b, ok := byName[n]
				if !ok {
					return nil, fmt.Errorf("routes.%s.pool[%d]: unknown backend %q", name, gi, n)
				}
				members = append(members, b)
				r.metered = r.metered || b.capacity.tpm > 0
			}
			r.groups = append(r.groups, newGroup(members))
			r.steers = r.steers || r.metered || len(members) > 1
		}
		g.routes[name] = r
		g.names = append(g.names, name)
	}
	slices.Sort(g.names)
	for _, cc := range cfg.Consumers {
		c := &Consumer{Name: cc.Name, CounterKey: cc.CounterKey, Credential: "api_key"}
		g.byName[cc.Name] = c
		g.budgets[cc.Name] = cc.Quota.USD > 0
		keys := cc.UsableKeys()
		if len(keys) == 0 && len(cc.ClientIDs) == 0 {
			// Run-time keys may still come; tokens need client_ids.
			g.log.Warn("consumer has no usable key (unset environment variable?) and no client_ids", "consumer", cc.Name)
		}
		for _, k := range keys {
			g.keys[sha256.Sum256([]byte(k))] = c
		}
	}
	m, err := newMetrics(opts.Registry, g.backs, g.now)
	if err != nil {
		return nil, err
	}
	g.metrics = m
	if g.cache != nil {
		if err := registerCacheGauges(opts.Registry, g.cache); err != nil {
			return nil, err
		}
	}
	if g.cache != nil && g.embedder == nil {
		if local, ok := prevEmbedder(prev).(LocalEmbedder); ok && (cfg.Cache.Embedder == "local" || cfg.Cache.Embedder == "") {
			g.embedder = local
		} else if cfg.Cache.Embedder == "local" || cfg.Cache.Embedder == "" {
			g.embedder = LocalEmbedder{embed.NewLocal()}
		} else {
			g.embedder = &RouteEmbedder{g: g, Route: cfg.Cache.Embedder}
		}
	}
	if v := cfg.Cache.Verify; g.cache != nil && v != nil {
		var store verify.Store
		if vc, ok := g.cache.(VerdictCache); ok {
			store = verdictStore{c: vc, now: g.now}
		}
		if g.verifier, err = verify.New(verify.Options{
			Judge: &RouteJudge{g: g, Route: v.Route}, Store: store,
			MaxErrorRate: v.MaxErrorRate, AuditRate: v.AuditRate, TokensPerMinute: v.TokensPerMinute,
			Timeout: v.Timeout, Now: g.now, Logger: g.log,
		}); err != nil {
			return nil, fmt.Errorf("cache.verify: %w", err)
		}
		if opts.Registry != nil {
			if err := opts.Registry.Register(newVerifyCollector(g.verifier)); err != nil {
				g.verifier.Close()
				return nil, fmt.Errorf("registering verify metrics: %w", err)
			}
		}
	}
	return g, nil
}

func prevEmbedder(prev *Gateway) Embedder {
	if prev == nil {
		return nil
	}
	return prev.embedder
}

func newTransport(up config.Upstream, backends int) *http.Transport {
	d := &net.Dialer{Timeout: up.DialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          up.MaxIdleConnsPerBackend * max(backends, 1),
		MaxIdleConnsPerHost:   up.MaxIdleConnsPerBackend,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   up.DialTimeout,
		ResponseHeaderTimeout: up.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		// Bytes go to the client as the backend sent them; SSE must not sit in a gzip window.
		DisableCompression: true,
	}
}

// Authenticate returns the consumer owning key.
func (g *Gateway) Authenticate(key string) (*Consumer, *openai.Error) {
	if key == "" {
		return nil, openai.InvalidKey("Missing API key: send it in the api-key, Authorization: Bearer or Ocp-Apim-Subscription-Key header.")
	}
	// Looked up by hash: the map's timing then says nothing about the key's bytes.
	c, ok := g.keys[sha256.Sum256([]byte(key))]
	if !ok {
		return nil, openai.InvalidKey("Incorrect API key provided.")
	}
	return c, nil
}

// User names the end user of a request from its header (limits.user_header),
// "" when it names none.
func (g *Gateway) User(h http.Header) string { return h.Get(g.limits.UserHeader) }

// Consumer returns the configured consumer named name, as its configuration
// keys authenticate it (Credential "api_key"); callers authenticating it by other
// means use WithCredential.
func (g *Gateway) Consumer(name string) (*Consumer, bool) {
	c, ok := g.byName[name]
	return c, ok
}

// HasRoute reports whether name is a route (model or deployment) of this gateway.
func (g *Gateway) HasRoute(name string) bool {
	_, ok := g.routes[name]
	return ok
}

// Routes returns the route names, sorted.
func (g *Gateway) Routes() []string { return g.names }

// Close waits for cache stores still running and releases idle upstream
// connections. Call it after the servers have stopped, before the cache closes.
func (g *Gateway) Close() {
	if g.verifier != nil {
		g.verifier.Close()
	}
	g.stores.Wait()
	g.client.CloseIdleConnections()
	if g.ownOwners != nil {
		_ = g.ownOwners.Close()
	}
}

// Serve runs the pipeline for one authenticated call and writes the answer to w.
//
// Stages: look up (cache: a hit answers at once and charges nothing) → admit
// (reserve the estimate against the consumer's TPM and quota) → forward →
// settle (charge the reply's usage) → store (cache a complete success).
// A failing cache or limiter degrades to plain proxying, never to an error.
func (g *Gateway) Serve(ctx context.Context, w http.ResponseWriter, call *Call) Outcome {
	rt, ok := g.routes[call.Route]
	if !ok {
		e := openai.ModelNotFound(call.Route)
		e.Write(w)
		return Outcome{Status: e.Status, Refusal: e.Code}
	}
	ctx, cancel := context.WithTimeout(ctx, g.up.Timeout)
	defer cancel()

	if g.limiter != nil && call.Consumer != nil && len(call.Body) > floorMinBody {
		// Before the cache too: hashing and embedding megabytes cost as
		// much as counting them, and what can never be admitted was never stored.
		if e := g.refuseByLength(ctx, call); e != nil {
			e.Write(w)
			return Outcome{Status: e.Status}
		}
	}
	cp := g.planCache(call)
	w.Header().Set(headerCacheKey, cp.state)
	g.metrics.cacheState(cp.state)
	if cp.state == cacheMiss {
		lctx, span := g.startSpan(ctx, "cache.lookup", trace.SpanKindInternal)
		out, hit := g.lookup(lctx, w, call, &cp)
		if span != nil {
			endSpan(span, "", attribute.Bool("llmgate.cache.hit", hit))
		}
		if hit {
			return out
		}
	}

	actx, span := g.startSpan(ctx, "admission", trace.SpanKindInternal)
	adm, e := g.admit(actx, call)
	if span != nil {
		refused := ""
		if e != nil {
			refused = e.Code
		}
		endSpan(span, refused, attribute.Int64("llmgate.tokens.reserved", adm.tokens), attribute.Int64("llmgate.tokens.prompt_estimate", adm.prompt))
	}
	adm.setHeaders(w.Header())
	if e != nil {
		e.Write(w)
		return Outcome{Status: e.Status, Cache: cp.state, Refusal: e.Code}
	}

	x := &exchange{call: call, adm: adm, cache: cp}
	if prev := wireOf(call).follows(call); prev != "" {
		// A follow-up goes to the backend holding what it continues, and
		// only for the consumer that created it.
		b, held, e := g.holder(ctx, call.Consumer, prev, "previous_response_id")
		if e != nil {
			x.setHeaders(g, w.Header())
			g.settle(ctx, x, nil)
			e.Write(w)
			return Outcome{Status: e.Status, Cache: cp.state, Refusal: e.Code}
		}
		x.pin = b
		if held != prev {
			// A cached answer's replay: the backend continues the original.
			call.Body = withPreviousResponse(call.Body, prev, held)
		}
	}
	out := g.forward(ctx, w, call, rt, x)
	out.Cache = cp.state
	if out.Status == http.StatusOK {
		g.remember(ctx, x, out.Backend)
	}
	if x.reply != nil {
		// A whole (buffered) answer: settle first so the headers carry the charge.
		u := g.replyUsage(x)
		out.Tokens = g.settle(ctx, x, u)
		out.charged(u)
		out.ResponseID = x.reply.id
		if call.Capture {
			out.Answer = x.reply.body
		}
		x.adm.setHeadersCharged(w.Header(), out.Tokens)
		if cp.state == cacheMiss && x.reply.cacheable() {
			// Stored (for up to store_wait) before the client has the answer,
			// so that its next request finds it.
			g.store(ctx, call, cp, x.reply.body)
		}
		x.reply.writeTo(w)
		return out
	}
	if x.stream != nil {
		u := x.stream.usage(g, x)
		out.Tokens = g.settle(ctx, x, u)
		out.charged(u)
		out.ResponseID = x.stream.responseID()
		if call.Capture {
			out.Answer = x.stream.completion()
		}
		// Declared as a trailer before the stream started.
		w.Header().Set(HeaderTokensConsumed, strconv.FormatInt(out.Tokens, 10))
		if cp.state == cacheMiss && out.Aborted == "" {
			if body := x.stream.completion(); body != nil {
				g.store(ctx, call, cp, body)
			}
		}
		return out
	}
	// No answer reached the client: release the reservation, down to the
	// prompt estimate if a backend was sent the request (x.reached).
	out.Tokens = g.settle(ctx, x, nil)
	return out
}

// forward tries the route's backends, group by group, until one answers with
// something the client should see. A streamed answer is relayed as it
// arrives; a whole answer is left in x.reply for Serve to write.
func (g *Gateway) forward(ctx context.Context, w http.ResponseWriter, call *Call, rt *route, x *exchange) Outcome {
	var (
		out       Outcome
		failures  []string
		soonest   time.Time // earliest moment an open breaker admits traffic again
		order     [8]*backend
		lastThrot time.Duration
	)
	need := x.adm.tokens
	groups := rt.groups
	if x.pin != nil {
		groups = []*group{newGroup([]*backend{x.pin})}
	}
	for _, grp := range groups {
		now := g.now()
		for _, b := range deferFull(grp.order(order[:0]), need, now) {
			now := g.now()
			if open, until := b.breaker.open(now); open {
				failures = append(failures, b.name+": circuit open")
				if soonest.IsZero() || until.Before(soonest) {
					soonest = until
				}
				continue
			}
			out.Attempts++
			res := g.attempt(ctx, w, call, b, x)
			out.Upstream += res.upstream
			if res.done {
				out.Status, out.Backend, out.Aborted = res.status, b.name, res.aborted
				return out
			}
			if ctx.Err() != nil {
				// The client left or the overall deadline passed: no point trying others.
				x.setHeaders(g, w.Header())
				return g.giveUp(ctx, w, out, failures)
			}
			failures = append(failures, b.name+": "+res.reason)
			if res.retryIn > lastThrot {
				lastThrot = res.retryIn
			}
		}
	}
	e := openai.Unavailable("No backend of route '" + call.Route + "' could serve the request (" + strings.Join(failures, "; ") + ").")
	wait := lastThrot
	if !soonest.IsZero() {
		if d := soonest.Sub(g.now()); d > wait {
			wait = d
		}
	}
	// Every 503 says when to come back (at least a second), so clients back
	// off instead of hammering the gateway.
	e.Header = http.Header{"Retry-After": {retryAfterSeconds(max(wait, time.Second))}}
	x.setHeaders(g, w.Header())
	e.Write(w)
	out.Status, out.Refusal = e.Status, e.Code
	return out
}

func (g *Gateway) giveUp(ctx context.Context, w http.ResponseWriter, out Outcome, failures []string) Outcome {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		msg := "The backends did not answer within the gateway's deadline"
		if len(failures) > 0 {
			msg += " (" + strings.Join(failures, "; ") + ")"
		}
		e := openai.Unavailable(msg + ".")
		e.Header = http.Header{"Retry-After": {"1"}}
		e.Write(w)
		out.Status, out.Refusal = e.Status, e.Code
		return out
	}
	// The client went away; nobody reads this status, but logs and metrics do.
	out.Status = 499
	out.Aborted = "client"
	return out
}

// attemptResult is what one backend attempt came to.
type attemptResult struct {
	done     bool // the answer went (or started going) to the client
	status   int
	aborted  string
	upstream time.Duration
	reason   string        // why the attempt failed, when !done
	retryIn  time.Duration // the backend's retry hint, when it refused
}

// attempt sends call to b. A failure that the client has not seen yet (connect
// error, timeout, 5xx, 429, a body cut short) returns done=false so the caller
// can try the next backend; a stream is relayed to the client, and any other
// answer is buffered into x.reply.
func (g *Gateway) attempt(ctx context.Context, w http.ResponseWriter, call *Call, b *backend, x *exchange) (res attemptResult) {
	name := b.spanName
	if name == "" {
		name = "upstream " + b.name
	}
	ctx, span := g.startSpan(ctx, name, trace.SpanKindClient)
	if span != nil {
		defer func() {
			failed := res.reason
			if res.done && res.status >= 400 {
				failed = "HTTP " + strconv.Itoa(res.status)
			}
			endSpan(span, failed, attribute.String("llmgate.backend", b.name), attribute.Int("http.response.status_code", res.status))
		}()
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := b.newRequest(actx, call, g.up.APIVersion)
	if err != nil {
		return attemptResult{reason: err.Error()}
	}
	g.injectTrace(actx, call.Header, req.Header)
	start := g.now()
	b.capacity.sent(x.adm.tokens, start)
	var wrote atomic.Bool // the backend has the whole request (set by the transport's goroutine)
	req = req.WithContext(httptrace.WithClientTrace(actx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) { wrote.Store(i.Err == nil) },
	}))
	resp, err := g.client.Do(req)
	if err != nil {
		// Sent but unanswered (the client left, a timeout, a reset): the
		// backend may be generating all the same.
		x.reached = x.reached || wrote.Load()
		d := g.now().Sub(start)
		if ctx.Err() == nil {
			b.breaker.failure(g.now())
			g.metrics.attempt(b.name, "error", d)
			g.log.Warn("backend attempt failed", "backend", b.name, "route", call.Route, "request_id", call.RequestID, "err", err)
		}
		return attemptResult{upstream: d, reason: describe(err)}
	}
	defer resp.Body.Close()
	b.capacity.observe(resp.Header, g.now())
	if resp.StatusCode < 400 {
		x.reached = true // an error status is a refusal: nothing was spent
	}

	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		hint := retryAfter(resp.Header, g.now(), g.up.MaxRetryAfter)
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep the connection reusable
		d := g.now().Sub(start)
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			b.breaker.throttled(g.now(), hint)
		} else {
			b.breaker.failure(g.now())
		}
		g.metrics.attempt(b.name, strconv.Itoa(resp.StatusCode), d)
		g.log.Warn("backend refused", "backend", b.name, "route", call.Route, "status", resp.StatusCode, "request_id", call.RequestID)
		return attemptResult{upstream: d, reason: "HTTP " + strconv.Itoa(resp.StatusCode), retryIn: hint}
	}

	if call.Stream && resp.StatusCode == http.StatusOK && isEventStream(resp.Header) {
		b.breaker.success()
		copyHeaders(w.Header(), resp.Header)
		w.Header().Set(HeaderBackend, b.name)
		w.Header().Del("Content-Length")
		w.Header().Set("Trailer", HeaderTokensConsumed)
		w.WriteHeader(resp.StatusCode)
		x.stream = wireOf(call).tap(call, x.cache.state == cacheMiss)
		aborted := g.relayStream(ctx, w, resp.Body, cancel, x.stream)
		d := g.now().Sub(start)
		g.metrics.attempt(b.name, "200", d)
		return attemptResult{done: true, status: resp.StatusCode, aborted: aborted, upstream: d}
	}

	// A whole body: buffer it, so a backend that breaks off mid-body is retried
	// like one that never answered.
	body, err := readWhole(resp)
	d := g.now().Sub(start)
	if err != nil || len(body) > maxResponseBytes {
		if ctx.Err() == nil {
			b.breaker.failure(g.now())
			g.metrics.attempt(b.name, "error", d)
		}
		reason := "response body exceeds the limit"
		if err != nil {
			reason = "reading response: " + describe(err)
		}
		return attemptResult{upstream: d, reason: reason}
	}
	b.breaker.success()
	g.metrics.attempt(b.name, strconv.Itoa(resp.StatusCode), d)
	h := w.Header()
	copyHeaders(h, resp.Header)
	h.Set(headerBackendKey, b.name)
	x.reply = newReply(call, resp.StatusCode, body)
	return attemptResult{done: true, status: resp.StatusCode, upstream: d}
}

// readWhole reads a whole answer's body: into a buffer of its declared
// length when it has one up to presizeBytes (no buffer grown and copied as
// it fills; a larger declared length is not trusted with memory before its
// bytes arrive), else up to one byte past maxResponseBytes.
func readWhole(resp *http.Response) ([]byte, error) {
	const presizeBytes = 1 << 20
	if n := resp.ContentLength; n >= 0 && n <= presizeBytes {
		body := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, body); err != nil {
			return nil, err
		}
		return body, nil
	}
	return io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
}

// relayStream copies a Server-Sent Events stream event by event, flushing
// whenever no further event is already buffered. It returns "" for a complete
// stream, "client" if the client went away and "upstream" if the backend broke
// off or stalled (after telling the client in an error event).
func (g *Gateway) relayStream(ctx context.Context, w http.ResponseWriter, body io.Reader, cancel context.CancelFunc, tap streamWatcher) string {
	rc := http.NewResponseController(w)
	_ = rc.Flush() // headers out now: the client sees the stream start
	er := openai.NewEventReader(body)
	stalled := time.AfterFunc(g.up.ResponseHeaderTimeout, cancel)
	defer stalled.Stop()
	for {
		ev, err := er.Next()
		if err != nil {
			if errors.Is(ctx.Err(), context.Canceled) {
				g.metrics.streamAborted("client")
				return "client"
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // ended without [DONE]
			}
			g.metrics.streamAborted("upstream")
			msg := "The backend stream ended before completion: " + describe(err)
			_, _ = w.Write(tap.broken(&openai.Error{Type: "server_error", Code: "stream_interrupted", Message: msg}))
			_ = rc.Flush()
			return "upstream"
		}
		stalled.Reset(g.up.ResponseHeaderTimeout)
		final := ev.Done()
		if !final {
			if !tap.see(ev.Data) {
				// The usage chunk the gateway asked for and the client did not.
				if er.Buffered() == 0 {
					_ = rc.Flush()
				}
				continue
			}
			// The Responses API ends with a typed terminal event, no [DONE].
			final = tap.ended()
		}
		// A client that reads nothing for stream_write_timeout is dropped:
		// it would otherwise hold this goroutine, the upstream stream and
		// the reservation for as long as it cares to.
		_ = rc.SetWriteDeadline(time.Now().Add(g.streamWrite))
		if _, err := w.Write(ev.Raw); err != nil {
			g.metrics.streamAborted("client")
			return "client"
		}
		if final {
			// The stream is complete once its last event is out, whatever
			// the client does next (SDKs close the connection at once) and
			// however long the backend takes to end its body.
			if err := rc.Flush(); err != nil {
				g.metrics.streamAborted("client")
				return "client"
			}
			return ""
		}
		if er.Buffered() == 0 {
			if err := rc.Flush(); err != nil {
				g.metrics.streamAborted("client")
				return "client"
			}
		}
	}
}

func isEventStream(h http.Header) bool {
	return strings.HasPrefix(h.Get("Content-Type"), "text/event-stream")
}

// hopHeader reports whether a backend's response header stays behind: hop
// by hop, or the gateway's own to set. Upstream rate-limit headers (see
// copyHeaders) describe the backend's capacity, not the consumer's.
func hopHeader(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Connection", "Te", "Trailer",
		"Transfer-Encoding", "Upgrade", "Content-Length", "Set-Cookie", "X-Request-Id":
		return true
	}
	return false
}

func copyHeaders(dst, src http.Header) {
	for k, vs := range src {
		if hopHeader(k) || strings.HasPrefix(k, "X-Ratelimit-") {
			continue
		}
		dst[k] = vs
	}
}

func describe(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed mid-response"
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Op + ": " + oe.Err.Error()
	}
	return err.Error()
}
