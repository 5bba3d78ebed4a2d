package cluster

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	members      *prometheus.GaugeVec
	sent         *prometheus.CounterVec
	received     *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	joinFailures prometheus.Counter
	syncs        *prometheus.CounterVec
	syncEntries  prometheus.Counter
	syncSeconds  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "llmgate_cluster_members",
			Help: "Cluster members as this node sees them, by state (this node counts as alive).",
		}, []string{"state"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llmgate_cluster_messages_sent_total",
			Help: "Messages sent to other nodes, by kind (per receiving node).",
		}, []string{"kind"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llmgate_cluster_messages_received_total",
			Help: "Messages received from other nodes, by kind.",
		}, []string{"kind"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llmgate_cluster_messages_dropped_total",
			Help: "Messages not sent or not processed (full queue, send error, malformed); anti-entropy repairs them.",
		}, []string{"kind"}),
		joinFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llmgate_cluster_join_failures_total",
			Help: "Join attempts in which no seed answered.",
		}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llmgate_cluster_cache_syncs_total",
			Help: "Cache catch-up rounds pulled from a peer, by result.",
		}, []string{"result"}),
		syncEntries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llmgate_cluster_cache_sync_entries_total",
			Help: "Cache entries fetched from peers by catch-up.",
		}),
		syncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "llmgate_cluster_cache_sync_seconds",
			Help:    "Duration of cache catch-up rounds.",
			Buckets: []float64{.001, .01, .1, .5, 1, 5, 10, 30, 60, 120},
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, col := range []prometheus.Collector{m.members, m.sent, m.received, m.dropped, m.joinFailures, m.syncs, m.syncEntries, m.syncSeconds} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("cluster: registering metrics: %w", err)
		}
	}
	return m, nil
}
