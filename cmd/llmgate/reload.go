package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llmgate/llmgate/api"
	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/node"
	"github.com/llmgate/llmgate/quota"
)

// A generation is everything a node builds from one configuration: the
// gateway (consumers, keys, routes, backends, prices, cache settings) and
// the HTTP front (admin token, body limits). It is immutable: a reload
// builds the next generation beside it and swaps the handlers atomically, so
// a request or stream in flight finishes on the generation it started on and
// the next request sees the new one. What a generation cannot hold (the
// listeners, the data directory, the cluster, the index) is fixed at start,
// and config.RestartOnly refuses a reload that would change it.
type generation struct {
	cfg   *config.Config
	gw    *node.Gateway
	api   *api.API
	data  http.Handler
	admin http.Handler
}

// swapHandler serves with the handler stored last.
type swapHandler struct{ h atomic.Pointer[http.Handler] }

func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}

func (s *swapHandler) store(h http.Handler) { s.h.Store(&h) }

// build makes a generation from cfg; prev is the one it replaces (nil at
// start), whose backends' health carries over.
func (n *runningNode) build(cfg *config.Config, prev *generation) (*generation, error) {
	var prevGW *node.Gateway
	if prev != nil {
		prevGW = prev.gw
	}
	gw, err := node.New(cfg, node.Options{Logger: n.log, Registry: n.reg, Limiter: n.state.limiter, Cache: n.state.nodeCache(), Tracer: n.tracer, Previous: prevGW, BackendTokens: n.tokens, Owners: n.state.owners, Space: n.disk})
	if err != nil {
		return nil, fmt.Errorf("building the gateway: %w", err)
	}
	front, err := api.New(gw, api.Options{
		Logger: n.log, Registry: n.reg, Gatherer: n.reg,
		MaxBodyBytes: cfg.Server.MaxBodyBytes,
		AdminToken:   cfg.AdminToken, NodeName: cfg.Node.Name, GossipAddr: n.cluster.Addr(),
		Quota: n.state.limiter, Cache: n.state.adminCache(), Cluster: n.cluster, Storage: n.disk,
		Observer: n.obs, Tracer: n.tracer, CaptureContent: cfg.Telemetry.CaptureContent,
		Identity: n.ident, Keys: n.state.keys,
		Usage:  n.state.usageAdmin(),
		Reload: n.reload,
	})
	if err != nil {
		return nil, fmt.Errorf("building the HTTP front: %w", err)
	}
	return &generation{cfg: cfg, gw: gw, api: front, data: front.DataHandler(), admin: front.AdminHandler()}, nil
}

// install makes gen the one new requests are served by.
func (n *runningNode) install(gen *generation) {
	n.gen.Store(gen)
	n.dataH.store(gen.data)
	n.adminH.store(gen.admin)
}

func (n *runningNode) current() *generation { return n.gen.Load() }

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
	if len(next.Auth.JWT) > 0 && !maps.Equal(clientIDs(cur.cfg), clientIDs(next)) {
		// The token issuers map client ids to consumers when they start.
		fixed = append(fixed, "consumers[].client_ids")
	}
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
	// Limits first: if they cannot be applied, nothing is swapped.
	if err := n.state.limiter.SetConfig(ctx, consumerLimits(next)); err != nil {
		result = "failed"
		return nil, fmt.Errorf("applying consumer limits: %w", err)
	}
	n.install(gen)
	n.retired = append(n.retired, cur.gw)
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
