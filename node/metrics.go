package node

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the node's backend-side series. The front end records requests.
type metrics struct {
	attempts *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	aborted  *prometheus.CounterVec
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
	cs := []prometheus.Collector{m.attempts, m.latency, m.aborted}
	for _, b := range backs {
		b := b
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "llmgate_backend_up",
			Help:        "1 when the backend's circuit is closed (it takes traffic), 0 while open.",
			ConstLabels: prometheus.Labels{"backend": b.name},
		}, func() float64 {
			if open, _ := b.breaker.open(now()); open {
				return 0
			}
			return 1
		}))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
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
