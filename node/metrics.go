package node

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llmgate/llmgate/internal/promreg"
)

// metrics are the node's backend-side series. The front end records requests.
type metrics struct {
	attempts *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	aborted  *prometheus.CounterVec

	tokensUsed *prometheus.CounterVec
	rejections *prometheus.CounterVec
	cacheReqs  *prometheus.CounterVec
	cacheTime  *prometheus.HistogramVec
	embedTime  *prometheus.HistogramVec
	storeErrs  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, backs []*backend, now func() time.Time) (*metrics, error) {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llmgate_backend_attempts_total",
			Help: "Upstream attempts by backend and result (HTTP status, or error).",
		}, []string{"backend", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "llmgate_upstream_duration_seconds",
			Help:    "Time spent on one upstream attempt, body included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"backend"}),
		aborted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llmgate_streams_aborted_total",
			Help: "Streams that ended early, by who ended them (client or upstream).",
		}, []string{"by"}),
	}
	fast := []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05, .25, 1}
	m.tokensUsed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmgate_tokens_total",
		Help: "Tokens charged, by consumer, route and kind (prompt or completion).",
	}, []string{"consumer", "route", "kind"})
	m.rejections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmgate_limit_rejections_total",
		Help: "Requests refused by token limits, by reason (tpm, quota, too_large).",
	}, []string{"reason"})
	m.cacheReqs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmgate_cache_requests_total",
		Help: "Chat requests by cache result: hit_exact, hit_semantic, miss, bypass, off.",
	}, []string{"result"})
	m.cacheTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "llmgate_cache_lookup_duration_seconds",
		Help:    "Time of one cache look-up (index search and guard), by tier that answered (exact, semantic, miss).",
		Buckets: fast,
	}, []string{"tier"})
	m.embedTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "llmgate_cache_embed_duration_seconds",
		Help:    "Time to embed one prompt for the semantic tier, by result (ok, error).",
		Buckets: fast,
	}, []string{"result"})
	m.storeErrs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "llmgate_cache_store_failures_total",
		Help: "Answers that could not be stored in the cache.",
	})
	var errs [9]error
	m.attempts, errs[0] = promreg.Register(reg, m.attempts)
	m.latency, errs[1] = promreg.Register(reg, m.latency)
	m.aborted, errs[2] = promreg.Register(reg, m.aborted)
	m.tokensUsed, errs[3] = promreg.Register(reg, m.tokensUsed)
	m.rejections, errs[4] = promreg.Register(reg, m.rejections)
	m.cacheReqs, errs[5] = promreg.Register(reg, m.cacheReqs)
	m.cacheTime, errs[6] = promreg.Register(reg, m.cacheTime)
	m.embedTime, errs[7] = promreg.Register(reg, m.embedTime)
	m.storeErrs, errs[8] = promreg.Register(reg, m.storeErrs)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("registering backend metrics: %w", err)
	}
	for _, b := range backs {
		up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "llmgate_backend_up",
			Help:        "1 when the backend's circuit is closed (it takes traffic), 0 while open.",
			ConstLabels: prometheus.Labels{"backend": b.name},
		}, func() float64 {
			if open, _ := b.breaker.open(now()); open {
				return 0
			}
			return 1
		})
		// A gateway rebuilt by a reload reports its own backends' health.
		reg.Unregister(up)
		if err := reg.Register(up); err != nil {
			return nil, fmt.Errorf("registering backend metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) attempt(backend, result string, d time.Duration) {
	m.attempts.WithLabelValues(backend, result).Inc()
	m.latency.WithLabelValues(backend).Observe(d.Seconds())
}

func (m *metrics) streamAborted(by string) { m.aborted.WithLabelValues(by).Inc() }

func (m *metrics) rejected(reason string) { m.rejections.WithLabelValues(reason).Inc() }

func (m *metrics) tokens(c *Consumer, route string, prompt, completion int64) {
	name := ""
	if c != nil {
		name = c.Name
	}
	if prompt > 0 {
		m.tokensUsed.WithLabelValues(name, route, "prompt").Add(float64(prompt))
	}
	if completion > 0 {
		m.tokensUsed.WithLabelValues(name, route, "completion").Add(float64(completion))
	}
}

// cacheState counts a request's cache plan; misses are counted at look-up.
func (m *metrics) cacheState(state string) {
	if state != cacheMiss {
		m.cacheReqs.WithLabelValues(state).Inc()
	}
}

func (m *metrics) lookup(tier string, d time.Duration) {
	m.cacheTime.WithLabelValues(tier).Observe(d.Seconds())
	result := "miss"
	switch tier {
	case "exact":
		result = "hit_exact"
	case "semantic":
		result = "hit_semantic"
	case "normalized":
		result = "hit_normalized"
	case "verified":
		result = "hit_verified"
	}
	m.cacheReqs.WithLabelValues(result).Inc()
}

func (m *metrics) embedded(err error, d time.Duration) {
	if err != nil {
		m.embedTime.WithLabelValues("error").Observe(d.Seconds())
		m.cacheReqs.WithLabelValues("miss").Inc()
		return
	}
	m.embedTime.WithLabelValues("ok").Observe(d.Seconds())
}

func (m *metrics) storeFailed() { m.storeErrs.Inc() }

// registerCacheGauges exports the cache's size; read from its actors at scrape time.
func registerCacheGauges(reg prometheus.Registerer, c Cache) error {
	for _, g := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "llmgate_cache_entries", Help: "Entries in the semantic cache."},
			func() float64 { return float64(c.Stats().Entries) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "llmgate_cache_bytes", Help: "Bytes held by cache entries (responses, prompts, vectors)."},
			func() float64 { return float64(c.Stats().Bytes) }),
	} {
		if _, err := promreg.Register(reg, g); err != nil {
			return fmt.Errorf("registering cache metrics: %w", err)
		}
	}
	return nil
}
