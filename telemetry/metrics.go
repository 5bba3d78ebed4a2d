package telemetry

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llmgate/llmgate/internal/promreg"
	"github.com/llmgate/llmgate/quota"
)

// otherLabel stands for a consumer or route name that is not configured, so
// that unknown names sent by clients cannot grow the label sets.
const otherLabel = "other"

// Metrics counts requests and the cache's savings per consumer and route.
// Its label sets are bounded: consumer and route are configured names (or
// "" for no consumer, "other" for a route that does not exist), code an
// HTTP status.
type Metrics struct {
	consumers, routes map[string]bool
	requests          *prometheus.CounterVec
	saved             *prometheus.CounterVec
	cached            *prometheus.CounterVec
}

// NewMetrics registers the per-consumer series on reg.
func NewMetrics(reg prometheus.Registerer, consumers, routes []string) (*Metrics, error) {
	m := &Metrics{consumers: map[string]bool{}, routes: map[string]bool{}}
	for _, c := range consumers {
		m.consumers[c] = true
	}
	for _, r := range routes {
		m.routes[r] = true
	}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmgate_consumer_requests_total",
		Help: "Data-plane requests by consumer (empty: not authenticated), route, HTTP status and cache result.",
	}, []string{"consumer", "route", "code", "cache"})
	m.saved = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmgate_cache_tokens_saved_total",
		Help: "Tokens the cache spared: the stored usage of each answer served from the cache, by consumer and route.",
	}, []string{"consumer", "route"})
	m.cached = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmgate_prompt_cached_tokens_total",
		Help: "Prompt tokens the backends served from their own prompt cache, by consumer and route.",
	}, []string{"consumer", "route"})
	// Metrics rebuilt by a configuration reload (new consumers and routes)
	// keep counting in the series of the ones they replace.
	for _, c := range []**prometheus.CounterVec{&m.requests, &m.saved, &m.cached} {
		var err error
		if *c, err = promreg.Register(reg, *c); err != nil {
			return nil, fmt.Errorf("registering consumer metrics: %w", err)
		}
	}
	return m, nil
}

// Observe implements Observer.
func (m *Metrics) Observe(_ context.Context, r *Request) {
	consumer, route := r.Consumer, r.Route
	if consumer != "" && !m.consumers[consumer] {
		consumer = otherLabel
	}
	if !m.routes[route] {
		route = otherLabel
	}
	m.requests.WithLabelValues(consumer, route, strconv.Itoa(r.Status), r.Cache).Inc()
	if r.Saved > 0 {
		m.saved.WithLabelValues(consumer, route).Add(float64(r.Saved))
	}
	if r.CachedTokens > 0 {
		m.cached.WithLabelValues(consumer, route).Add(float64(r.CachedTokens))
	}
}

// HeadroomSource lists every consumer's limits and usage: implemented by
// *quota.Limiter.
type HeadroomSource interface {
	List(ctx context.Context) []quota.Status
}

// headroom exports each consumer's limits and what is left of them,
// read from the limiter when scraped.
type headroom struct {
	src                                              HeadroomSource
	tpmLimit, tpmRemaining, quotaLimit, quotaRemains *prometheus.Desc
	budgetLimit, budgetRemains                       *prometheus.Desc
}

// RegisterHeadroom exports the consumers' TPM and quota headroom as gauges
// (cluster-wide, as this node sees it), and its money budget's in US
// dollars. A consumer without a TPM limit has no TPM series; one without a
// quota no quota series; one without a budget no budget series.
func RegisterHeadroom(reg prometheus.Registerer, src HeadroomSource) error {
	h := &headroom{
		src:          src,
		tpmLimit:     prometheus.NewDesc("llmgate_consumer_tpm_limit", "The consumer's token-per-minute limit.", []string{"consumer"}, nil),
		tpmRemaining: prometheus.NewDesc("llmgate_consumer_tpm_remaining", "Tokens left in the consumer's sliding minute, cluster-wide.", []string{"consumer"}, nil),
		quotaLimit:   prometheus.NewDesc("llmgate_consumer_quota_limit_tokens", "The consumer's token quota for its period.", []string{"consumer", "period"}, nil),
		quotaRemains: prometheus.NewDesc("llmgate_consumer_quota_remaining_tokens", "Tokens left of the consumer's quota in the current period, cluster-wide.", []string{"consumer", "period"}, nil),
		budgetLimit:  prometheus.NewDesc("llmgate_consumer_budget_limit_usd", "The consumer's money budget for its period, in US dollars.", []string{"consumer", "period"}, nil),
		budgetRemains: prometheus.NewDesc("llmgate_consumer_budget_remaining_usd",
			"US dollars left of the consumer's money budget in the current period, cluster-wide.", []string{"consumer", "period"}, nil),
	}
	if err := reg.Register(h); err != nil {
		return fmt.Errorf("registering headroom metrics: %w", err)
	}
	return nil
}

func (h *headroom) Describe(ch chan<- *prometheus.Desc) {
	ch <- h.tpmLimit
	ch <- h.tpmRemaining
	ch <- h.quotaLimit
	ch <- h.quotaRemains
	ch <- h.budgetLimit
	ch <- h.budgetRemains
}

func (h *headroom) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, s := range h.src.List(ctx) {
		if s.TPMLimit > 0 {
			ch <- prometheus.MustNewConstMetric(h.tpmLimit, prometheus.GaugeValue, float64(s.TPMLimit), s.Consumer)
			ch <- prometheus.MustNewConstMetric(h.tpmRemaining, prometheus.GaugeValue, float64(max(s.TPMRemaining, 0)), s.Consumer)
		}
		if s.QuotaLimit > 0 {
			ch <- prometheus.MustNewConstMetric(h.quotaLimit, prometheus.GaugeValue, float64(s.QuotaLimit), s.Consumer, s.QuotaPeriod)
			ch <- prometheus.MustNewConstMetric(h.quotaRemains, prometheus.GaugeValue, float64(max(s.QuotaLimit-s.QuotaUsed, 0)), s.Consumer, s.QuotaPeriod)
		}
		if b := s.Budget; b != nil && b.LimitUSD > 0 {
			ch <- prometheus.MustNewConstMetric(h.budgetLimit, prometheus.GaugeValue, b.LimitUSD, s.Consumer, b.Period)
			ch <- prometheus.MustNewConstMetric(h.budgetRemains, prometheus.GaugeValue, b.RemainingUSD, s.Consumer, b.Period)
		}
	}
}
