package api

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llmgate/llmgate/internal/promreg"
)

type routeLabel struct{ op, route string }

// metrics are the request-side series; the node records the backend side.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	overhead *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer, routes []string) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llmgate_requests_total",
			Help: "Data-plane model requests by operation, route, status and serving backend.",
		}, []string{"op", "route", "code", "backend"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "llmgate_request_duration_seconds",
			Help:    "Time from request arrival to the last byte of the answer.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"op", "route"}),
		overhead: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "llmgate_gateway_overhead_seconds",
			Help:    "Time a request spent in the gateway itself: its total minus the time waiting on backends.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1},
		}, []string{"op"}),
	}
	// An API rebuilt by a configuration reload keeps counting in the series
	// of the one it replaces.
	var errs [3]error
	m.requests, errs[0] = promreg.Register(reg, m.requests)
	m.duration, errs[1] = promreg.Register(reg, m.duration)
	m.overhead, errs[2] = promreg.Register(reg, m.overhead)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("registering request metrics: %w", err)
	}
	return m, nil
}

func (m *metrics) request(l routeLabel, status int, backend string, total, overhead time.Duration) {
	m.requests.WithLabelValues(l.op, l.route, strconv.Itoa(status), backend).Inc()
	m.duration.WithLabelValues(l.op, l.route).Observe(total.Seconds())
	if backend != "" {
		m.overhead.WithLabelValues(l.op).Observe(overhead.Seconds())
	}
}
