package quota

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func benchLimiter(b *testing.B) *Limiter {
	b.Helper()
	limits := map[string]Limits{}
	for i := range 64 {
		limits["c"+strconv.Itoa(i)] = Limits{TPM: 1 << 50, QuotaTokens: 1 << 50, Period: Daily}
	}
	l, err := Open(Options{NodeName: "n1"}, limits)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return l
}

// BenchmarkReserveSettle is one caller reserving and settling against one
// counter: the latency of a round trip to a shard actor, twice.
func BenchmarkReserveSettle(b *testing.B) {
	l := benchLimiter(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		r, d, err := l.Reserve(ctx, "c0", "", 100)
		if err != nil || !d.Allowed {
			b.Fatal(err, d)
		}
		l.Settle(ctx, r, 90)
	}
}

// BenchmarkReserveSettleParallel spreads callers over 64 consumers (and so
// over every shard) and reports the p99 latency of Reserve.
func BenchmarkReserveSettleParallel(b *testing.B) {
	l := benchLimiter(b)
	ctx := context.Background()
	var next atomic.Int64
	var lat []time.Duration
	var latMu sync.Mutex
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		consumer := "c" + strconv.Itoa(int(next.Add(1)%64))
		mine := make([]time.Duration, 0, 1<<16)
		for i := 0; pb.Next(); i++ {
			start := time.Now()
			r, d, err := l.Reserve(ctx, consumer, "", 100)
			if i%16 == 0 && len(mine) < cap(mine) {
				mine = append(mine, time.Since(start))
			}
			if err != nil || !d.Allowed {
				b.Error(err, d)
				return
			}
			l.Settle(ctx, r, 90)
		}
		latMu.Lock()
		lat = append(lat, mine...)
		latMu.Unlock()
	})
	if len(lat) > 0 {
		slices.Sort(lat)
		var sum time.Duration
		for _, d := range lat {
			sum += d
		}
		b.ReportMetric(float64(sum.Nanoseconds())/float64(len(lat))/1e3, "mean-reserve-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-reserve-µs")
		b.ReportMetric(float64(lat[len(lat)*999/1000].Nanoseconds())/1e3, "p99.9-reserve-µs")
	}
}

// BenchmarkSettleStage is what settling costs the caller, the time the
// answer waits for it: Settle (a round trip to the shard) against
// SettleAsync (queued, not awaited), reported as settle-ns per call.
func BenchmarkSettleStage(b *testing.B) {
	for _, tc := range []struct {
		name   string
		settle func(l *Limiter, r Reservation)
	}{
		{"wait", func(l *Limiter, r Reservation) { l.Settle(context.Background(), r, 90) }},
		{"async", func(l *Limiter, r Reservation) { l.SettleAsync(r, 90) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			l := benchLimiter(b)
			ctx := context.Background()
			var spent time.Duration
			n := 0
			for b.Loop() {
				r, d, err := l.Reserve(ctx, "c0", "", 100)
				if err != nil || !d.Allowed {
					b.Fatal(err, d)
				}
				start := time.Now()
				tc.settle(l, r)
				spent += time.Since(start)
				n++
			}
			b.ReportMetric(float64(spent.Nanoseconds())/float64(n), "settle-ns")
		})
	}
}

// BenchmarkReserveBound is a reservation bounded in time inside a request's
// context, as the node bounds it: a context.WithTimeout per call against
// ReserveWithin's pooled timer, same run. The bound is 10s rather than the
// node's 250ms so that a stall of a loaded machine cannot end the run; the
// cost does not depend on it.
func BenchmarkReserveBound(b *testing.B) {
	parent, cancel := context.WithTimeout(context.Background(), time.Hour) // the request's
	defer cancel()
	b.Run("context", func(b *testing.B) {
		l := benchLimiter(b)
		b.ReportAllocs()
		for b.Loop() {
			rctx, done := context.WithTimeout(parent, 10*time.Second)
			r, _, err := l.Reserve(rctx, "c0", "", 100)
			done()
			if err != nil {
				b.Fatal(err)
			}
			l.SettleAsync(r, 90)
		}
	})
	b.Run("within", func(b *testing.B) {
		l := benchLimiter(b)
		b.ReportAllocs()
		for b.Loop() {
			r, _, err := l.ReserveWithin(parent, 10*time.Second, "c0", "", 100)
			if err != nil {
				b.Fatal(err)
			}
			l.SettleAsync(r, 90)
		}
	})
}
