package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/llmgate/llmgate/api"
	"github.com/llmgate/llmgate/identity"
	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/node"
	"github.com/llmgate/llmgate/quota"
	"github.com/llmgate/llmgate/telemetry"
	history "github.com/llmgate/llmgate/usage"
)

// A generation is everything a node builds from one configuration: the
// gateway (consumers, keys, routes, backends, prices, cache settings), the
// HTTP front (admin token, body limits), who authenticates bearer tokens
// (auth.jwt) and what observes each request (request log, per-consumer
// metrics, OTLP export). It is immutable: a reload builds the next
// generation beside it and installs it atomically, so a request or stream in
// flight finishes on the generation it started on and the next request sees
// the new one. A replaced generation is released (its gateway closed, its
// token issuers' key fetches and its OTLP exporter stopped unless the next
// one shares them) once its last request has finished. What a generation
// cannot hold (the listeners, the data directory, the cluster, the index) is
// fixed at start, and config.RestartOnly refuses a reload that would change
// it.
type generation struct {
	cfg   *config.Config
	gw    *node.Gateway
	api   *api.API
	data  http.Handler
	admin http.Handler
	jwt   *identity.JWT // nil without auth.jwt
	otlp  *exporter     // nil without telemetry.otlp_endpoint
	// flight counts the requests it serves, to release it after the last.
	flight inflight
}

// inflight counts the requests a generation serves and tells when the last
// one has finished after close.
type inflight struct {
	n      atomic.Int64
	closed atomic.Bool
	once   sync.Once
	idle   chan struct{} // closed when closed and no request runs
}

func newInflight() inflight { return inflight{idle: make(chan struct{})} }

// enter counts a request in, unless close came first.
func (f *inflight) enter() bool {
	f.n.Add(1)
	if f.closed.Load() {
		f.leave()
		return false
	}
	return true
}

func (f *inflight) leave() {
	if f.n.Add(-1) == 0 && f.closed.Load() {
		f.once.Do(func() { close(f.idle) })
	}
}

// close lets no request in any more. An enter racing with it either sees
// closed (and backs out) or is counted before close looks at the count.
func (f *inflight) close() {
	f.closed.Store(true)
	if f.n.Load() == 0 {
		f.once.Do(func() { close(f.idle) })
	}
}

// genHandler serves each request with the generation installed last,
// counted in its flight.
type genHandler struct {
	n     *runningNode
	admin bool
}

func (h genHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for {
		g := h.n.gen.Load()
		if g.flight.enter() {
			defer g.flight.leave()
		} else if h.n.gen.Load() != g {
			continue // replaced meanwhile: the new one serves it
		}
		// (Not entered and still installed: the node is stopping, and the
		// last generation answers what still reaches it.)
		if h.admin {
			g.admin.ServeHTTP(w, r)
		} else {
			g.data.ServeHTTP(w, r)
		}
		return
	}
}

// exporter is one OTLP export (trace and meter providers), shared by the
// generations built with the same telemetry.otlp_endpoint and
// trace_sample_ratio and shut down when the last of them is released.
type exporter struct {
	otlp     *telemetry.OTLP
	endpoint string
	ratio    float64
	refs     atomic.Int32
}

// exporterFor returns the OTLP export cfg asks for: prev's when the
// settings are unchanged, else a new one; nil when export is off.
func (n *runningNode) exporterFor(cfg *config.Config, prev *generation) (*exporter, error) {
	t := cfg.Telemetry
	if t.OTLPEndpoint == "" {
		return nil, nil
	}
	if prev != nil && prev.otlp != nil && prev.otlp.endpoint == t.OTLPEndpoint && prev.otlp.ratio == t.TraceSampleRatio {
		prev.otlp.refs.Add(1)
		return prev.otlp, nil
	}
	o, err := telemetry.NewOTLP(context.Background(), telemetry.OTLPOptions{Endpoint: t.OTLPEndpoint, Node: cfg.Node.Name, Version: version, SampleRatio: t.TraceSampleRatio, Logger: n.log})
	if err != nil {
		return nil, err
	}
	e := &exporter{otlp: o, endpoint: t.OTLPEndpoint, ratio: t.TraceSampleRatio}
	e.refs.Store(1)
	return e, nil
}

// release drops one generation's use; the last flushes what is pending
// (within ctx) and stops the exporters.
func (e *exporter) release(ctx context.Context) error {
	if e.refs.Add(-1) != 0 {
		return nil
	}
	return e.otlp.Shutdown(ctx)
}

// build makes a generation from cfg; prev is the one it replaces (nil at
// start), whose backends' health, token issuers' keys and OTLP export carry
// over where unchanged.
func (n *runningNode) build(cfg *config.Config, prev *generation) (_ *generation, err error) {
	gen := &generation{cfg: cfg, flight: newInflight()}
	defer func() {
		if err != nil {
			n.release(gen)
		}
	}()
	var prevGW *node.Gateway
	var prevJWT *identity.JWT
	if prev != nil {
		prevGW, prevJWT = prev.gw, prev.jwt
	}
	if gen.otlp, err = n.exporterFor(cfg, prev); err != nil {
		return nil, err
	}
	var tracer trace.Tracer // nil: tracing off, no span is ever started
	if gen.otlp != nil {
		tracer = gen.otlp.otlp.Tracer()
	}
	if gen.jwt, err = newJWT(cfg, n.log, n.reg, prevJWT); err != nil {
		return nil, err
	}
	obs, err := observers(cfg, n.log, n.reg, n.state)
	if err != nil {
		return nil, err
	}
	if gen.otlp != nil {
		obs = append(obs, gen.otlp.otlp)
	}
	gen.gw, err = node.New(cfg, node.Options{Logger: n.log, Registry: n.reg, Limiter: n.state.limiter, Cache: n.state.nodeCache(), Tracer: tracer, Previous: prevGW, BackendTokens: n.tokens, Owners: n.state.owners, Space: n.disk})
	if err != nil {
		return nil, fmt.Errorf("building the gateway: %w", err)
	}
	gen.api, err = api.New(gen.gw, api.Options{
		Logger: n.log, Registry: n.reg, Gatherer: n.reg,
		MaxBodyBytes: cfg.Server.MaxBodyBytes,
		AdminToken:   cfg.AdminToken, NodeName: cfg.Node.Name, GossipAddr: n.cluster.Addr(),
		Quota: n.state.limiter, Cache: n.state.adminCache(), Cluster: n.cluster, Storage: n.disk,
		Observer: obs, Tracer: tracer, CaptureContent: cfg.Telemetry.CaptureContent,
		Identity: identity.New(n.state.keys, gen.jwt), Keys: n.state.keys,
		Usage:  n.state.usageAdmin(),
		Reload: n.reload,
	})
	if err != nil {
		return nil, fmt.Errorf("building the HTTP front: %w", err)
	}
	gen.data, gen.admin = gen.api.DataHandler(), gen.api.AdminHandler()
	return gen, nil
}

// install makes gen the one new requests are served by.
func (n *runningNode) install(gen *generation) { n.gen.Store(gen) }

func (n *runningNode) current() *generation { return n.gen.Load() }

// retire lets gen take no new request and releases it in the background
// once its last one has finished (or when stop gives up waiting).
func (n *runningNode) retire(gen *generation) {
	gen.flight.close()
	n.retiring.Add(1)
	go func() {
		defer n.retiring.Done()
		select {
		case <-gen.flight.idle:
		case <-n.abandon.Done():
		}
		n.release(gen)
	}()
}

// release closes what gen holds alone: its gateway (waiting for its cache
// stores), its token issuers' key fetches and its OTLP export (flushing
// pending spans and metrics) unless a newer generation shares them.
func (n *runningNode) release(gen *generation) {
	if gen.gw != nil {
		gen.gw.Close()
	}
	if gen.jwt != nil {
		gen.jwt.Close()
	}
	if gen.otlp != nil {
		ctx, cancel := context.WithTimeout(n.abandon, 10*time.Second)
		defer cancel()
		if err := gen.otlp.release(ctx); err != nil {
			n.log.Warn("flushing OpenTelemetry data", "err", err)
		}
	}
}

// reloadTimeout bounds applying a reload (the limiter's actors, the cluster
// broadcast of the new config hash).
const reloadTimeout = 10 * time.Second

// reload re-reads the configuration and applies it, or changes nothing. It
// returns the changed settings, or an *api.ReloadRefused saying why the file
// is invalid or needs a restart, or another error when applying failed
// (nothing was changed then either). Outcomes are logged and counted by
// result. SIGHUP and POST /admin/config/reload call it.
func (n *runningNode) reload(ctx context.Context) (changed []string, err error) {
	result := "ok"
	defer func() {
		n.reloads.WithLabelValues(result).Inc()
		if err != nil {
			n.log.Error("configuration reload refused; the running configuration is unchanged", "result", result, "err", err)
		} else {
			n.log.Info("configuration reloaded", "changed", changed, "config_hash", n.current().cfg.Hash())
		}
	}()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reloadTimeout)
	defer cancel()
	if n.reread == nil {
		result = "refused"
		return nil, &api.ReloadRefused{Reasons: []string{"the node runs on built-in defaults (no --config): there is no file to re-read"}}
	}
	next, err := n.reread()
	if err != nil {
		result = "invalid"
		return nil, &api.ReloadRefused{Reasons: []string{err.Error()}}
	}
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	if n.certs != nil {
		// The certificate files are re-read on a reload too, not only
		// when the watcher sees them change.
		if err := n.certs.Reload(); err != nil {
			n.log.Warn("re-reading the TLS files; still serving the previous certificate", "err", err)
		}
	}
	if n.stopped.Load() {
		result = "failed"
		return nil, errors.New("the node is stopping")
	}
	cur := n.current()
	fixed := config.RestartOnly(cur.cfg, next)
	if !maps.Equal(entraBackends(cur.cfg), entraBackends(next)) {
		// Token sources (and their credentials) are built at start.
		fixed = append(fixed, "backends[].auth and backends[].entra")
	}
	if len(fixed) > 0 {
		result = "refused"
		reasons := make([]string, len(fixed))
		for i, p := range fixed {
			reasons[i] = p + ": cannot change while the node runs; restart the node to apply it"
		}
		return nil, &api.ReloadRefused{Reasons: reasons}
	}
	changed = config.Diff(cur.cfg, next)
	if len(changed) == 0 {
		return []string{}, nil
	}
	gen, err := n.build(next, cur)
	if err != nil {
		result = "failed"
		return nil, err
	}
	tlsChanged := n.certs != nil && !reflect.DeepEqual(cur.cfg.TLS, next.TLS)
	if tlsChanged {
		// Other files or settings: loaded now, served from the next
		// handshake; files that do not load refuse the reload.
		opts, err := certOptions(next.TLS)
		if err == nil {
			err = n.certs.Set(opts)
		}
		if err != nil {
			result = "invalid"
			n.release(gen)
			return nil, &api.ReloadRefused{Reasons: []string{"tls: " + err.Error()}}
		}
	}
	// Limits before the swap: if they cannot be applied, nothing is swapped.
	if err := n.state.limiter.SetConfig(ctx, consumerLimits(next)); err != nil {
		result = "failed"
		n.release(gen)
		if tlsChanged {
			if opts, oerr := certOptions(cur.cfg.TLS); oerr == nil {
				_ = n.certs.Set(opts) // back to the files it served
			}
		}
		return nil, fmt.Errorf("applying consumer limits: %w", err)
	}
	n.install(gen)
	if n.draining.Load() {
		gen.api.SetReady(false) // installed while the node drains: stay not ready
	}
	n.retire(cur)
	if h := n.state.history; h != nil {
		h.SetConfig(routePrices(next), next.Telemetry.UsageRetention)
	}
	if c := n.state.cache; c != nil && (next.Cache.TTL != cur.cfg.Cache.TTL || next.Cache.MaxEntries != cur.cfg.Cache.MaxEntries) {
		// A smaller max_entries evicts now; if that is cut short, the next
		// store finishes it.
		if err := c.SetLimits(ctx, next.Cache.TTL, next.Cache.MaxEntries); err != nil {
			n.log.Warn("evicting cache entries beyond the new cache.max_entries", "err", err)
		}
	}
	if next.Server.MaxConnections != cur.cfg.Server.MaxConnections {
		for _, l := range n.connLimits {
			l.SetMax(next.Server.MaxConnections)
		}
	}
	if n.format != nil && next.Log.Format != cur.cfg.Log.Format {
		n.format.set(next.Log.Format)
	}
	if n.level != nil {
		var lv slog.Level
		if lv.UnmarshalText([]byte(next.Log.Level)) == nil { // validated
			n.level.Set(lv)
		}
	}
	if err := n.cluster.SetConfigHash(ctx, next.Hash()); err != nil {
		n.log.Warn("announcing the new config hash", "err", err)
	}
	return changed, nil
}

// routePrices are the routes' prices, as the usage history takes them.
func routePrices(cfg *config.Config) map[string]history.Price {
	prices := map[string]history.Price{}
	for name, r := range cfg.Routes {
		prices[name] = history.Price{InputPer1M: r.Price.InputPer1M, OutputPer1M: r.Price.OutputPer1M, CachedInputPer1M: r.Price.CachedInputPer1M}
	}
	return prices
}

// clientIDs maps the consumers' token client ids to their names.
func clientIDs(cfg *config.Config) map[string]string {
	out := map[string]string{}
	for _, c := range cfg.Consumers {
		for _, id := range c.ClientIDs {
			out[id] = c.Name
		}
	}
	return out
}

// consumerLimits are the configured limits by consumer, as the limiter takes them.
func consumerLimits(cfg *config.Config) map[string]quota.Limits {
	limits := make(map[string]quota.Limits, len(cfg.Consumers))
	for _, c := range cfg.Consumers {
		limits[c.Name] = quota.Limits{TPM: c.TPM, QuotaTokens: c.Quota.Tokens, Period: quota.Period(c.Quota.Period)}
		if c.Quota.USD > 0 { // the money budget: a period quota in micro-dollars
			limits[quota.BudgetName(c.Name)] = quota.Limits{QuotaTokens: int64(math.Round(c.Quota.USD * quota.MicroUSD)), Period: quota.Period(c.Quota.Period)}
		}
	}
	return limits
}

func newReloadMetric(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmgate_config_reloads_total",
		Help: "Configuration reloads (SIGHUP, POST /admin/config/reload) by result: ok, invalid (the file), refused (a change that needs a restart) or failed (applying it).",
	}, []string{"result"})
	for _, r := range []string{"ok", "invalid", "refused", "failed"} {
		c.WithLabelValues(r)
	}
	if err := reg.Register(c); err != nil {
		return nil, fmt.Errorf("registering reload metrics: %w", err)
	}
	return c, nil
}
