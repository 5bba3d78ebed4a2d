//go:build unix

package quota

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/cputime"
)

// BenchmarkReserveSettleIdle is one Reserve and one SettleAsync per
// millisecond, as a node at low load makes them: between calls every
// goroutine and thread parks, so each hand-off to a shard may have to wake
// one. It reports the process's CPU per call pair (cpu-µs, the caller's and
// the actors' and the runtime's, the sleep's own wake included) and the
// median Reserve latency.
func BenchmarkReserveSettleIdle(b *testing.B) {
	for _, wait := range []time.Duration{0, 250 * time.Millisecond} {
		b.Run("within="+wait.String(), func(b *testing.B) { reserveSettleIdle(b, wait) })
	}
}

func reserveSettleIdle(b *testing.B, wait time.Duration) {
	l := benchLimiter(b)
	ctx := context.Background()
	var lat []time.Duration
	before := cputime.Process()
	n := 0
	for b.Loop() {
		time.Sleep(time.Millisecond)
		start := time.Now()
		r, d, err := l.ReserveWithin(ctx, wait, "c0", "", 100)
		lat = append(lat, time.Since(start))
		if err != nil || !d.Allowed {
			b.Fatal(err, d)
		}
		l.SettleAsync(r, 90)
		n++
	}
	b.ReportMetric(float64((cputime.Process()-before).Nanoseconds())/float64(n)/1e3, "cpu-µs")
	b.ReportMetric(float64(median(lat).Nanoseconds())/1e3, "reserve-p50-µs")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
