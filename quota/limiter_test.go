package quota

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestWindowSlides(t *testing.T) {
	c := newClock(t0)
	l := open(t, c, map[string]Limits{"a": {TPM: 1000}})
	steps := []struct {
		at        time.Duration
		tokens    int64
		allowed   bool
		remaining int64
	}{
		{0, 600, true, 400},
		{10 * time.Second, 500, false, 400},
		{10 * time.Second, 400, true, 0},
		{59 * time.Second, 1, false, 0},
		// Conservative: bucket t0 still counts until t0+61s.
		{60*time.Second + 500*time.Millisecond, 1, false, 0},
		{61 * time.Second, 600, true, 0},
		{70*time.Second + 999*time.Millisecond, 1, false, 0},
		{71 * time.Second, 400, true, 0},
	}
	for _, s := range steps {
		c.set(t0.Add(s.at))
		_, d := reserve(t, l, "a", "", s.tokens)
		if d.Allowed != s.allowed || d.Remaining != s.remaining || d.Limit != 1000 {
			t.Fatalf("at +%v reserve %d: Allowed=%v Remaining=%d Limit=%d, want Allowed=%v Remaining=%d Limit=1000",
				s.at, s.tokens, d.Allowed, d.Remaining, d.Limit, s.allowed, s.remaining)
		}
		if !s.allowed && d.Reason != ReasonTPM {
			t.Fatalf("at +%v: Reason=%q, want %q", s.at, d.Reason, ReasonTPM)
		}
	}
}

func TestRetryAfterIsExact(t *testing.T) {
	type res struct {
		at     time.Duration
		tokens int64
	}
	tests := []struct {
		name   string
		before []res
		at     time.Duration
		tokens int64
		want   time.Duration
	}{
		{"oldest bucket frees enough", []res{{0, 300}, {5500 * time.Millisecond, 300}, {20 * time.Second, 300}}, 30 * time.Second, 400, 31 * time.Second},
		{"two buckets must leave", []res{{0, 300}, {5500 * time.Millisecond, 300}, {20 * time.Second, 300}}, 30 * time.Second, 600, 36 * time.Second},
		{"whole limit needs every bucket gone", []res{{0, 300}, {5500 * time.Millisecond, 300}, {20 * time.Second, 300}}, 30250 * time.Millisecond, 1000, 50750 * time.Millisecond},
		{"sub-second", []res{{900 * time.Millisecond, 1000}}, 1200 * time.Millisecond, 1, 59800 * time.Millisecond},
		{"same bucket", []res{{0, 1000}}, 0, 1, 61 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock(t0)
			l := open(t, c, map[string]Limits{"a": {TPM: 1000}})
			for _, r := range tt.before {
				c.set(t0.Add(r.at))
				if _, d := reserve(t, l, "a", "", r.tokens); !d.Allowed {
					t.Fatalf("setup reserve %d at +%v refused: %+v", r.tokens, r.at, d)
				}
			}
			c.set(t0.Add(tt.at))
			_, d := reserve(t, l, "a", "", tt.tokens)
			if d.Allowed || d.Reason != ReasonTPM || d.RetryAfter != tt.want {
				t.Fatalf("reserve %d at +%v: %+v, want refused for tpm with RetryAfter %v", tt.tokens, tt.at, d, tt.want)
			}
			c.set(t0.Add(tt.at + tt.want - time.Nanosecond))
			if _, d := reserve(t, l, "a", "", tt.tokens); d.Allowed {
				t.Fatalf("admitted 1ns before RetryAfter elapsed")
			}
			c.set(t0.Add(tt.at + tt.want))
			if _, d := reserve(t, l, "a", "", tt.tokens); !d.Allowed {
				t.Fatalf("still refused when RetryAfter elapsed: %+v", d)
			}
		})
	}
}

func TestTooLarge(t *testing.T) {
	tests := []struct {
		name    string
		lim     Limits
		tokens  int64
		allowed bool
	}{
		{"over tpm", Limits{TPM: 100}, 101, false},
		{"exactly tpm", Limits{TPM: 100}, 100, true},
		{"over whole quota", Limits{TPM: 1000, QuotaTokens: 50, Period: Daily}, 60, false},
		{"over quota without tpm", Limits{QuotaTokens: 50, Period: Hourly}, 51, false},
		{"zero tokens", Limits{TPM: 1}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock(t0)
			l := open(t, c, map[string]Limits{"a": tt.lim})
			_, d := reserve(t, l, "a", "", tt.tokens)
			if d.Allowed != tt.allowed {
				t.Fatalf("Allowed=%v, want %v (%+v)", d.Allowed, tt.allowed, d)
			}
			if tt.allowed {
				return
			}
			if d.Reason != ReasonTooLarge || d.RetryAfter != 0 {
				t.Errorf("Reason=%q RetryAfter=%v, want %q and 0", d.Reason, d.RetryAfter, ReasonTooLarge)
			}
			if st := status(t, l, "a"); st.TPMUsed != 0 || st.QuotaUsed != 0 {
				t.Errorf("a too-large request was charged: %+v", st)
			}
		})
	}
}

func TestQuotaPeriods(t *testing.T) {
	d := func(y int, m time.Month, day, h, min, s, ms int) time.Time {
		return time.Date(y, m, day, h, min, s, ms*1e6, time.UTC)
	}
	tests := []struct {
		period Period
		at     time.Time
		end    time.Time
	}{
		{Hourly, d(2025, 6, 11, 12, 59, 30, 0), d(2025, 6, 11, 13, 0, 0, 0)},
		{Daily, d(2025, 6, 30, 23, 0, 0, 0), d(2025, 7, 1, 0, 0, 0, 0)},
		{Weekly, d(2025, 6, 15, 22, 0, 0, 0), d(2025, 6, 16, 0, 0, 0, 0)}, // Sunday → Monday
		{Monthly, d(2024, 2, 29, 12, 0, 0, 0), d(2024, 3, 1, 0, 0, 0, 0)},
		{Yearly, d(2025, 12, 31, 23, 59, 59, 500), d(2026, 1, 1, 0, 0, 0, 0)},
	}
	for _, tt := range tests {
		t.Run(string(tt.period), func(t *testing.T) {
			c := newClock(tt.at)
			l := open(t, c, map[string]Limits{"a": {QuotaTokens: 100, Period: tt.period}})
			if _, dec := reserve(t, l, "a", "", 100); !dec.Allowed || !dec.QuotaResetsAt.Equal(tt.end) {
				t.Fatalf("first 100 tokens: %+v, want allowed with QuotaResetsAt %v", dec, tt.end)
			}
			_, dec := reserve(t, l, "a", "", 1)
			if dec.Allowed || dec.Reason != ReasonQuota || dec.RetryAfter != tt.end.Sub(tt.at) || !dec.QuotaResetsAt.Equal(tt.end) {
				t.Fatalf("over quota: %+v, want refused for quota, RetryAfter %v, resets at %v", dec, tt.end.Sub(tt.at), tt.end)
			}
			st := status(t, l, "a")
			if st.QuotaUsed != 100 || st.QuotaResetsAt == nil || !st.QuotaResetsAt.Equal(tt.end) || st.QuotaPeriod != string(tt.period) {
				t.Fatalf("status before reset: %+v", st)
			}
			c.set(tt.end.Add(-time.Nanosecond))
			if _, dec := reserve(t, l, "a", "", 1); dec.Allowed {
				t.Fatal("admitted 1ns before the period reset")
			}
			c.set(tt.end)
			if _, dec := reserve(t, l, "a", "", 100); !dec.Allowed {
				t.Fatalf("refused in the new period: %+v", dec)
			}
			if st := status(t, l, "a"); st.QuotaUsed != 100 {
				t.Fatalf("new period's usage = %d, want 100", st.QuotaUsed)
			}
		})
	}
}

func TestQuotaCheckedBeforeTPM(t *testing.T) {
	c := newClock(t0)
	l := open(t, c, map[string]Limits{"a": {TPM: 100, QuotaTokens: 150, Period: Daily}})
	reserve(t, l, "a", "", 100)
	_, d := reserve(t, l, "a", "", 60)
	if d.Reason != ReasonQuota {
		t.Fatalf("window and quota both full: Reason=%q, want %q (waiting for the window would not help)", d.Reason, ReasonQuota)
	}
}

func TestSettle(t *testing.T) {
	lim := map[string]Limits{"a": {TPM: 1000, QuotaTokens: 100000, Period: Hourly}}
	t.Run("down frees the window", func(t *testing.T) {
		c := newClock(t0)
		l := open(t, c, lim)
		r, d := reserve(t, l, "a", "", 800)
		if d.Remaining != 200 {
			t.Fatalf("Remaining=%d, want 200", d.Remaining)
		}
		if d := l.Settle(context.Background(), r, 300); d.Remaining != 700 || d.Limit != 1000 {
			t.Fatalf("after settling 300: %+v, want Remaining 700", d)
		}
		if _, d := reserve(t, l, "a", "", 700); !d.Allowed {
			t.Fatalf("the freed tokens are not available: %+v", d)
		}
		if st := status(t, l, "a"); st.QuotaUsed != 1000 {
			t.Fatalf("QuotaUsed=%d, want 1000", st.QuotaUsed)
		}
	})
	t.Run("up may exceed and is reported", func(t *testing.T) {
		c := newClock(t0)
		l := open(t, c, lim)
		r, _ := reserve(t, l, "a", "", 500)
		if d := l.Settle(context.Background(), r, 1500); d.Remaining != 0 {
			t.Fatalf("after settling 1500 of 1000: Remaining=%d, want 0", d.Remaining)
		}
		if st := status(t, l, "a"); st.TPMUsed != 1500 || st.TPMRemaining != 0 || st.QuotaUsed != 1500 {
			t.Fatalf("status: %+v, want used 1500, remaining 0, quota 1500", st)
		}
		c.add(30 * time.Second)
		if _, d := reserve(t, l, "a", "", 1); d.Allowed || d.RetryAfter != 31*time.Second {
			t.Fatalf("reserve after overshoot: %+v, want refused for 31s", d)
		}
	})
	t.Run("exactly once", func(t *testing.T) {
		c := newClock(t0)
		l := open(t, c, lim)
		r, _ := reserve(t, l, "a", "", 500)
		dup := r
		l.Settle(context.Background(), r, 100)
		l.Settle(context.Background(), r, 100)
		l.Settle(context.Background(), dup, 900)
		if st := status(t, l, "a"); st.TPMUsed != 100 || st.QuotaUsed != 100 {
			t.Fatalf("after settling three times: used %d, quota %d; want 100, 100", st.TPMUsed, st.QuotaUsed)
		}
	})
	t.Run("after the bucket left the window only the quota changes", func(t *testing.T) {
		c := newClock(t0)
		l := open(t, c, lim)
		r, _ := reserve(t, l, "a", "", 500)
		c.add(70 * time.Second)
		reserve(t, l, "a", "", 100)
		l.Settle(context.Background(), r, 200)
		if st := status(t, l, "a"); st.TPMUsed != 100 || st.QuotaUsed != 300 {
			t.Fatalf("used %d, quota %d; want 100 (the new reservation only), 300", st.TPMUsed, st.QuotaUsed)
		}
	})
	t.Run("after the period ended only the window changes", func(t *testing.T) {
		c := newClock(time.Date(2025, 6, 11, 12, 59, 50, 0, time.UTC))
		l := open(t, c, lim)
		r, _ := reserve(t, l, "a", "", 500)
		c.add(20 * time.Second)
		reserve(t, l, "a", "", 100)
		l.Settle(context.Background(), r, 0)
		if st := status(t, l, "a"); st.TPMUsed != 100 || st.QuotaUsed != 100 {
			t.Fatalf("used %d, quota %d; want 100, 100 (the old period's settlement must not touch the new one)", st.TPMUsed, st.QuotaUsed)
		}
	})
	t.Run("zero reservation is ignored", func(t *testing.T) {
		l := open(t, newClock(t0), lim)
		if d := l.Settle(context.Background(), Reservation{}, 5); d != (Decision{}) {
			t.Fatalf("Settle(zero) = %+v, want zero Decision", d)
		}
	})
	t.Run("negative actual counts as zero", func(t *testing.T) {
		l := open(t, newClock(t0), lim)
		r, _ := reserve(t, l, "a", "", 500)
		l.Settle(context.Background(), r, -7)
		if st := status(t, l, "a"); st.TPMUsed != 0 || st.QuotaUsed != 0 {
			t.Fatalf("status: %+v", st)
		}
	})
}

func TestUnknownConsumerIsUnlimited(t *testing.T) {
	l := open(t, newClock(t0), map[string]Limits{"a": {TPM: 10}})
	for range 3 {
		r, d := reserve(t, l, "stranger", "", 1<<40)
		if !d.Allowed || d.Limit != 0 || d.Remaining != 0 || !d.QuotaResetsAt.IsZero() {
			t.Fatalf("unknown consumer: %+v, want allowed with no limit", d)
		}
		l.Settle(context.Background(), r, 5)
	}
	if _, ok := l.Status(context.Background(), "stranger"); ok {
		t.Error("Status of an unconfigured consumer reported ok")
	}
}

func TestCounterKeysAreSeparate(t *testing.T) {
	l := open(t, newClock(t0), map[string]Limits{"a": {TPM: 100}})
	for _, key := range []string{"", "a/route:gpt-4o", "a/user:bob"} {
		if _, d := reserve(t, l, "a", key, 100); !d.Allowed {
			t.Fatalf("key %q: first 100 tokens refused", key)
		}
		if _, d := reserve(t, l, "a", key, 1); d.Allowed {
			t.Fatalf("key %q: over the limit admitted", key)
		}
	}
	st := status(t, l, "a")
	if st.TPMUsed != 100 || len(st.Keys) != 2 || st.Keys[0].Key != "a/route:gpt-4o" || st.Keys[1].Key != "a/user:bob" || st.Keys[1].TPMUsed != 100 {
		t.Fatalf("status: %+v", st)
	}
}

func TestConcurrentReservesNeverExceedTPM(t *testing.T) {
	const tpm = 10000
	l := open(t, newClock(t0), map[string]Limits{"a": {TPM: tpm}})
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range 200 {
				n := rng.Int64N(50) + 1
				_, d, err := l.Reserve(context.Background(), "a", "", n)
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					admitted.Add(n)
				}
			}
		})
	}
	wg.Wait()
	if got := admitted.Load(); got > tpm || got < tpm-50 {
		t.Fatalf("admitted %d tokens against a limit of %d in one bucket; want in (%d, %d]", got, tpm, tpm-50, tpm)
	}
	if st := status(t, l, "a"); st.TPMUsed != admitted.Load() {
		t.Fatalf("TPMUsed=%d, admitted %d", st.TPMUsed, admitted.Load())
	}
}

func TestConcurrentReserveSettleAcrossKeys(t *testing.T) {
	l := open(t, newClock(t0), map[string]Limits{"a": {TPM: 1 << 40, QuotaTokens: 1 << 40, Period: Daily}})
	keys := []string{"", "a/user:x", "a/user:y", "a/route:z"}
	var want [4]atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 2))
			for range 300 {
				k := rng.IntN(len(keys))
				r, _ := reserve(t, l, "a", keys[k], 100)
				actual := rng.Int64N(150)
				l.Settle(context.Background(), r, actual)
				want[k].Add(actual)
			}
		})
	}
	wg.Wait()
	st := status(t, l, "a")
	if st.TPMUsed != want[0].Load() || st.QuotaUsed != want[0].Load() {
		t.Errorf("key \"\": used %d quota %d, want %d", st.TPMUsed, st.QuotaUsed, want[0].Load())
	}
	for _, ks := range st.Keys {
		for i, k := range keys {
			if k == ks.Key && (ks.TPMUsed != want[i].Load() || ks.QuotaUsed != want[i].Load()) {
				t.Errorf("key %q: used %d quota %d, want %d", k, ks.TPMUsed, ks.QuotaUsed, want[i].Load())
			}
		}
	}
}

// TestNoSixtySecondIntervalOverAdmits drives random reservations and
// settlements (down only) with a moving clock and checks, by brute force,
// that the admitted tokens in every 60-second interval stay within the limit.
func TestNoSixtySecondIntervalOverAdmits(t *testing.T) {
	const tpm = 1000
	for seed := range uint64(20) {
		c := newClock(t0.Add(time.Duration(seed) * 137 * time.Millisecond))
		l := open(t, c, map[string]Limits{"a": {TPM: tpm}})
		rng := rand.New(rand.NewPCG(seed, 3))
		type adm struct {
			at     time.Time
			tokens int64
			r      Reservation
		}
		var admitted []*adm
		var open []*adm
		var total int64
		for range 2000 {
			c.add(time.Duration(rng.Int64N(1500)) * time.Millisecond)
			if len(open) > 0 && rng.IntN(2) == 0 {
				i := rng.IntN(len(open))
				a := open[i]
				a.tokens = rng.Int64N(a.tokens + 1)
				l.Settle(context.Background(), a.r, a.tokens)
				open = append(open[:i], open[i+1:]...)
			}
			n := rng.Int64N(400) + 1
			r, d := reserve(t, l, "a", "", n)
			if d.Allowed {
				a := &adm{at: c.now(), tokens: n, r: r}
				admitted = append(admitted, a)
				open = append(open, a)
			}
		}
		for i, a := range admitted {
			var sum int64
			for _, b := range admitted[i:] {
				if b.at.Sub(a.at) <= 60*time.Second { // closed interval: stricter
					sum += b.tokens
				}
			}
			if sum > tpm {
				t.Fatalf("seed %d: %d tokens admitted in the 60 s from %v, limit %d", seed, sum, a.at, tpm)
			}
		}
		for _, a := range admitted {
			total += a.tokens
		}
		span := c.now().Sub(t0)
		if floor := int64(span/(61*time.Second)) * tpm / 2; total < floor {
			t.Fatalf("seed %d: only %d tokens admitted over %v; the limiter refuses too much", seed, total, span)
		}
	}
}

func TestMergeIsIdempotent(t *testing.T) {
	c := newClock(t0)
	l := open(t, c, map[string]Limits{"a": {TPM: 1000, QuotaTokens: 5000, Period: Daily}})
	day := time.Date(2025, 6, 11, 0, 0, 0, 0, time.UTC).Unix()
	// merge merges origin's totals: one bucket, and its period total.
	merge := func(origin string, at time.Duration, tokens, period int64) {
		t.Helper()
		mergeUsage(t, l, Usage{Origin: origin, Consumer: "a", PeriodStart: day, PeriodAdded: period, Demand: -1,
			Buckets: []BucketUsage{bucketAt(t0.Add(at), tokens, 0)}})
	}
	merge("n2", 0, 300, 300)
	merge("n2", 0, 300, 300)                     // duplicate
	merge("n2", 0, 200, 200)                     // older totals, arriving late
	merge("n2", time.Second, 100, 400)           // next bucket
	merge("n2", 1500*time.Millisecond, 100, 400) // same bucket, named by another instant in it
	merge("n3", 0, 300, 300)
	merge("n1", 0, 999, 999)              // this node's own origin: ignored
	merge("n2", -2*time.Minute, 999, 400) // too old
	merge("n2", 10*time.Second, 999, 400) // too far in the future
	st := status(t, l, "a")
	if st.TPMUsed != 700 || st.QuotaUsed != 700 {
		t.Fatalf("used %d quota %d, want 700, 700", st.TPMUsed, st.QuotaUsed)
	}
	if st.ByNode["n1"] != 0 || st.ByNode["n2"] != 400 || st.ByNode["n3"] != 300 || len(st.ByNode) != 3 {
		t.Fatalf("ByNode = %v", st.ByNode)
	}
	c.add(30 * time.Second)
	_, d := reserve(t, l, "a", "", 400)
	if d.Allowed || d.RetryAfter != 31*time.Second {
		t.Fatalf("reserve 400 with 700 merged: %+v, want refused for 31s", d)
	}
	// Replays while the bucket is still held do not count again, even after
	// a snapshot pass that forgets idle counters.
	l.snapshot(nil)
	merge("n2", 0, 300, 300)
	if st := status(t, l, "a"); st.QuotaUsed != 700 {
		t.Fatalf("quota after replay = %d, want 700", st.QuotaUsed)
	}
	// Once the window has passed, a replay is too old to count.
	c.add(40 * time.Second)
	l.snapshot(nil)
	merge("n2", 0, 300, 300)
	if st := status(t, l, "a"); st.QuotaUsed != 700 || st.TPMUsed != 0 {
		t.Fatalf("after the window: quota %d used %d, want 700, 0", st.QuotaUsed, st.TPMUsed)
	}
}

func TestMergeRejectsBadInput(t *testing.T) {
	l := open(t, newClock(t0), map[string]Limits{"a": {TPM: 1000}})
	mergeUsage(t, l, Usage{Origin: "n2", Consumer: "a", Buckets: []BucketUsage{bucketAt(t0, -5, -3)}})
	if st := status(t, l, "a"); st.TPMUsed != 0 {
		t.Fatalf("negative merge counted: %+v", st)
	}
}

func TestStatusAndList(t *testing.T) {
	c := newClock(t0)
	l := open(t, c, map[string]Limits{
		"b": {TPM: 100},
		"a": {TPM: 1000, QuotaTokens: 10000, Period: Weekly},
		"c": {},
	})
	reserve(t, l, "a", "", 250)
	reserve(t, l, "a", "a/user:bob", 50)
	reserve(t, l, "b", "", 100)
	reserve(t, l, "zz", "", 100) // not configured: not listed
	list := l.List(context.Background())
	if len(list) != 3 || list[0].Consumer != "a" || list[1].Consumer != "b" || list[2].Consumer != "c" {
		t.Fatalf("List = %+v, want a, b, c", list)
	}
	a := list[0]
	reset := time.Date(2025, 6, 16, 0, 0, 0, 0, time.UTC)
	if a.TPMLimit != 1000 || a.TPMUsed != 250 || a.TPMRemaining != 750 || a.QuotaLimit != 10000 || a.QuotaUsed != 250 ||
		a.QuotaPeriod != "weekly" || a.QuotaResetsAt == nil || !a.QuotaResetsAt.Equal(reset) || a.ByNode["n1"] != 250 {
		t.Fatalf("status of a: %+v", a)
	}
	if len(a.Keys) != 1 || a.Keys[0] != (KeyStatus{Key: "a/user:bob", TPMUsed: 50, TPMRemaining: 950, QuotaUsed: 50}) {
		t.Fatalf("keys of a: %+v", a.Keys)
	}
	if b := list[1]; b.TPMRemaining != 0 || b.QuotaResetsAt != nil || b.QuotaPeriod != "" {
		t.Fatalf("status of b: %+v", b)
	}
	if cs := list[2]; cs.TPMRemaining != Unlimited {
		t.Fatalf("c has no TPM limit: remaining %d, want Unlimited", cs.TPMRemaining)
	}
	if cs := list[2]; cs.TPMUsed != 0 || cs.ByNode["n1"] != 0 || len(cs.ByNode) != 1 {
		t.Fatalf("status of c: %+v", cs)
	}
	c.add(61 * time.Second)
	if st := status(t, l, "a"); st.TPMUsed != 0 || st.QuotaUsed != 250 {
		t.Fatalf("a minute later: %+v", st)
	}
}

func TestSetLimits(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	l := open(t, c, map[string]Limits{"a": {TPM: 100, QuotaTokens: 1000, Period: Daily}, "b": {TPM: 5}})
	if _, err := l.SetLimits(ctx, "nobody", ptrTo(5), nil); !errors.Is(err, ErrUnknownConsumer) {
		t.Fatalf("unknown consumer: err = %v, want ErrUnknownConsumer", err)
	}
	if _, err := l.SetLimits(ctx, "a", ptrTo(-1), nil); !errors.Is(err, ErrInvalidLimits) {
		t.Fatalf("negative tpm: err = %v, want ErrInvalidLimits", err)
	}
	if _, err := l.SetLimits(ctx, "b", nil, ptrTo(10)); !errors.Is(err, ErrInvalidLimits) {
		t.Fatalf("quota for a consumer without a period: err = %v, want ErrInvalidLimits", err)
	}
	st, err := l.SetLimits(ctx, "a", ptrTo(500), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.TPMLimit != 500 || st.QuotaLimit != 1000 {
		t.Fatalf("after raising tpm: %+v", st)
	}
	// Every shard sees the change: try several counter keys.
	for _, key := range []string{"", "k1", "k2", "k3", "k4", "k5"} {
		if _, d := reserve(t, l, "a", key, 400); !d.Allowed || d.Limit != 500 {
			t.Fatalf("key %q: %+v, want allowed with limit 500", key, d)
		}
	}
	st, err = l.SetLimits(ctx, "a", nil, ptrTo(0))
	if err != nil {
		t.Fatal(err)
	}
	if st.TPMLimit != 500 || st.QuotaLimit != 0 {
		t.Fatalf("after lifting the quota: %+v", st)
	}
}

func TestContextAndClose(t *testing.T) {
	l := open(t, newClock(t0), map[string]Limits{"a": {TPM: 1000}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := l.Reserve(ctx, "a", "", 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Reserve: err = %v", err)
	}
	if _, _, err := l.Reserve(context.Background(), "a", "", -1); err == nil {
		t.Fatal("negative tokens accepted")
	}
	if _, d := reserve(t, l, "a", "", 1); !d.Allowed {
		t.Fatal("the actor is wedged after a cancelled call")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := l.Reserve(context.Background(), "a", "", 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Reserve after Close: err = %v, want ErrClosed", err)
	}
	if l.List(context.Background()) != nil {
		t.Fatal("List after Close returned statuses")
	}
}

// TestAbandonedReservesAreReleased: callers that give up while their Reserve
// is in flight must not leave tokens charged.
func TestAbandonedReservesAreReleased(t *testing.T) {
	l := open(t, newClock(t0), map[string]Limits{"a": {TPM: 1 << 40}})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration((g*500+i)%5)*time.Microsecond)
				r, d, err := l.Reserve(ctx, "a", "", 10)
				cancel()
				if err == nil && d.Allowed {
					l.Settle(context.Background(), r, 0)
				}
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := status(t, l, "a")
		if st.TPMUsed == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d tokens still charged for abandoned reservations", st.TPMUsed)
		}
		time.Sleep(time.Millisecond) // waiting for release goroutines, not for window logic
	}
}

func TestOpenRejectsBadLimits(t *testing.T) {
	if _, err := Open(Options{}, map[string]Limits{"a": {TPM: -1}}); err == nil {
		t.Fatal("negative tpm accepted")
	}
	if _, err := Open(Options{}, map[string]Limits{"a": {QuotaTokens: 5, Period: "fortnightly"}}); err == nil {
		t.Fatal("unknown period accepted")
	}
}

func TestUnsettledReservationIsForgottenAfterAnHour(t *testing.T) {
	c := newClock(t0)
	l := open(t, c, map[string]Limits{"a": {TPM: 1000, QuotaTokens: 10000, Period: Daily}})
	r, _ := reserve(t, l, "a", "", 500)
	c.add(30 * time.Minute)
	l.snapshot(nil)
	c.add(31 * time.Minute)
	l.snapshot(nil)
	l.Settle(context.Background(), r, 0)
	if st := status(t, l, "a"); st.QuotaUsed != 500 {
		t.Fatalf("QuotaUsed = %d, want the estimate (500) kept for a reservation forgotten after an hour", st.QuotaUsed)
	}
	r2, _ := reserve(t, l, "a", "", 100)
	c.add(59 * time.Minute)
	l.snapshot(nil)
	l.Settle(context.Background(), r2, 0)
	if st := status(t, l, "a"); st.QuotaUsed != 500 {
		t.Fatalf("QuotaUsed = %d, want 500 after settling a 59-minute-old reservation to 0", st.QuotaUsed)
	}
}

func TestAbsurdCountsCannotWrapTheWindow(t *testing.T) {
	t0 := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	clk := newClock(t0)
	l := open(t, clk, map[string]Limits{"a": {TPM: 1000, QuotaTokens: 1 << 50, Period: Daily}})
	ctx := context.Background()
	var rs []Reservation
	for range 2 {
		r, d := reserve(t, l, "a", "", 10)
		if !d.Allowed {
			t.Fatal("first reservations must fit")
		}
		rs = append(rs, r)
	}
	for _, r := range rs {
		l.Settle(ctx, r, math.MaxInt64/2+10)
	}
	mergeUsage(t, l, Usage{Origin: "other", Consumer: "a", Buckets: []BucketUsage{bucketAt(t0, math.MaxInt64/2+10, 0)},
		PeriodStart: time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC).Unix(), PeriodAdded: math.MaxInt64/2 + 10})
	if _, d := reserve(t, l, "a", "", 1000); d.Allowed {
		t.Fatalf("after absurd usage a full-TPM request was admitted: %+v", d)
	}
	s, _ := l.Status(ctx, "a")
	if s.TPMUsed <= 0 || s.QuotaUsed <= 0 {
		t.Errorf("usage wrapped: %+v", s)
	}
}

func TestHeadroomChargesNothing(t *testing.T) {
	t0 := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	l := open(t, newClock(t0), map[string]Limits{"a": {TPM: 100}})
	ctx := context.Background()
	reserve(t, l, "a", "", 30)
	for range 3 {
		d, err := l.Headroom(ctx, "a", "")
		if err != nil || d.Limit != 100 || d.Remaining != 70 {
			t.Fatalf("headroom = %+v, %v; want limit 100, remaining 70", d, err)
		}
	}
	if s, _ := l.Status(ctx, "a"); s.TPMUsed != 30 {
		t.Errorf("tpm_used %d after reading headroom, want 30", s.TPMUsed)
	}
}

func TestSettleAsync(t *testing.T) {
	lim := map[string]Limits{"a": {TPM: 1000, QuotaTokens: 100000, Period: Hourly}}
	t.Run("a later call sees the settlement", func(t *testing.T) {
		l := open(t, newClock(t0), lim)
		r, d := reserve(t, l, "a", "", 800)
		l.SettleAsync(r, 300)
		// The freed 500 must be there for the very next Reserve.
		if _, d2 := reserve(t, l, "a", "", 700); !d2.Allowed || d2.Remaining != 0 {
			t.Fatalf("reserve after SettleAsync(300): %+v", d2)
		}
		if st := status(t, l, "a"); st.TPMUsed != 1000 || st.QuotaUsed != 1000 {
			t.Fatalf("status: used %d, quota %d; want 1000, 1000", st.TPMUsed, st.QuotaUsed)
		}
		if got := d.AfterSettle(800, 300); got.Remaining != 700 || got.Limit != 1000 {
			t.Fatalf("AfterSettle: %+v, want Remaining 700 as Settle reports", got)
		}
	})
	t.Run("exactly once, mixed with Settle", func(t *testing.T) {
		l := open(t, newClock(t0), lim)
		r, _ := reserve(t, l, "a", "", 500)
		l.SettleAsync(r, 100)
		l.SettleAsync(r, 900)
		l.Settle(context.Background(), r, 400)
		if st := status(t, l, "a"); st.TPMUsed != 100 || st.QuotaUsed != 100 {
			t.Fatalf("used %d, quota %d; want 100, 100", st.TPMUsed, st.QuotaUsed)
		}
	})
	t.Run("the snapshot at Close holds it", func(t *testing.T) {
		dir := t.TempDir()
		c := newClock(t0)
		db := openDB(t, dir)
		l := openWithDB(t, db, c, persistLimits, time.Hour) // only Close snapshots
		r, _ := reserve(t, l, "a", "", 300)
		l.SettleAsync(r, 120)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		db.Close()
		_, l = reopen(t, dir, c, persistLimits)
		if st := status(t, l, "a"); st.TPMUsed != 120 || st.QuotaUsed != 120 {
			t.Fatalf("after restart: used %d, quota %d; want the settled 120", st.TPMUsed, st.QuotaUsed)
		}
	})
	t.Run("zero reservation and closed limiter do nothing", func(t *testing.T) {
		l := open(t, newClock(t0), lim)
		r, _ := reserve(t, l, "a", "", 500)
		l.SettleAsync(Reservation{}, 5)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { l.SettleAsync(r, 1); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("SettleAsync after Close blocked")
		}
	})
	t.Run("thousands queued at once never block and all count", func(t *testing.T) {
		l := open(t, newClock(t0), lim)
		var rs []Reservation
		for range 2000 { // far more than an inbox holds
			r, d := reserve(t, l, "a", "", 0)
			if !d.Allowed {
				t.Fatalf("reserve: %+v", d)
			}
			rs = append(rs, r)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for _, r := range rs {
				l.SettleAsync(r, 0)
			}
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("SettleAsync blocked")
		}
		if st := status(t, l, "a"); st.TPMUsed != 0 {
			t.Fatalf("used %d after settling everything to 0", st.TPMUsed)
		}
		l.Settle(context.Background(), rs[0], 7) // already settled: no-op
		if st := status(t, l, "a"); st.TPMUsed != 0 {
			t.Fatalf("used %d after settling a settled reservation again", st.TPMUsed)
		}
	})
}

// TestSettleAsyncIsSeenByTheNextCall: whatever is asked of the limiter after
// SettleAsync returned counts the settlement, although SettleAsync does not
// wake the shard.
func TestSettleAsyncIsSeenByTheNextCall(t *testing.T) {
	lim := map[string]Limits{"a": {TPM: 1000, QuotaTokens: 1500, Period: Daily}}
	for _, tc := range []struct {
		name            string
		reserved        int64
		actual          int64
		next            int64
		allowed         bool
		reason          string
		used, quotaUsed int64 // after the next Reserve
	}{
		{"less than reserved frees room for the next", 900, 100, 900, true, "", 1000, 1000},
		{"more than reserved fills the window", 100, 950, 100, false, ReasonTPM, 950, 950},
		{"zero gives everything back", 1000, 0, 1000, true, "", 1000, 1000},
		{"beyond the quota leaves no room in the period", 100, 1450, 100, false, ReasonQuota, 1450, 1450},
		{"an exact fit is admitted", 500, 400, 600, true, "", 1000, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := open(t, newClock(t0), lim)
			r, _ := reserve(t, l, "a", "", tc.reserved)
			l.SettleAsync(r, tc.actual)
			_, d := reserve(t, l, "a", "", tc.next)
			if d.Allowed != tc.allowed || d.Reason != tc.reason {
				t.Fatalf("next Reserve(%d) = %+v, want allowed %v, reason %q", tc.next, d, tc.allowed, tc.reason)
			}
			if st := status(t, l, "a"); st.TPMUsed != tc.used || st.QuotaUsed != tc.quotaUsed {
				t.Fatalf("used %d, quota %d; want %d, %d", st.TPMUsed, st.QuotaUsed, tc.used, tc.quotaUsed)
			}
		})
	}
}

// TestSettleAsyncOrderUnderConcurrency: callers on every shard reserve
// their whole limit, settle it asynchronously and reserve again at once,
// while others read Status and settle synchronously. The limit admits the
// second Reserve only if the settlement was applied before it.
func TestSettleAsyncOrderUnderConcurrency(t *testing.T) {
	const (
		consumers = 16
		rounds    = 200
		estimate  = 1000
	)
	lim := map[string]Limits{}
	for i := range consumers {
		// Each round leaves 1 token charged: the window holds every round's
		// token plus one estimate, and a second estimate only if a
		// settlement was missed.
		lim["c"+strconv.Itoa(i)] = Limits{TPM: estimate + rounds}
	}
	l := open(t, newClock(t0), lim)
	ctx := context.Background()
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				l.List(ctx)
			}
		}
	})
	var wg sync.WaitGroup
	for i := range consumers {
		name := "c" + strconv.Itoa(i)
		wg.Go(func() {
			for round := range rounds {
				r, d, err := l.Reserve(ctx, name, "", estimate)
				if err != nil || !d.Allowed {
					t.Errorf("%s round %d: Reserve(%d) = %+v, %v: an earlier settlement was not applied first", name, round, estimate, d, err)
					return
				}
				if round%10 == 9 {
					l.Settle(ctx, r, 1)
				} else {
					l.SettleAsync(r, 1)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	for i := range consumers {
		if st := status(t, l, "c"+strconv.Itoa(i)); st.TPMUsed != rounds {
			t.Errorf("c%d: used %d, want %d", i, st.TPMUsed, rounds)
		}
	}
}

// TestSettleAsyncTimerAppliesIt: with nothing else asked of the shard (no
// snapshot either), its timer has it apply the mailbox, and then no timer
// is left armed.
func TestSettleAsyncTimerAppliesIt(t *testing.T) {
	c := newClock(t0)
	l, err := Open(Options{Now: c.now, Shards: 4, NodeName: "n1", SnapshotInterval: time.Hour}, map[string]Limits{"a": {TPM: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r, _ := reserve(t, l, "a", "", 800)
	l.SettleAsync(r, 300)
	s := l.shardOf("a", "")
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mailMu.Lock()
		queued, armed := len(s.mail), s.armed
		s.mailMu.Unlock()
		if queued == 0 && !armed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d settlements still queued (timer armed %v) after 10 s with nothing else asked", queued, armed)
		}
		time.Sleep(time.Millisecond) // waiting for the shard's timer, not for window logic
	}
	if st := status(t, l, "a"); st.TPMUsed != 300 {
		t.Fatalf("used %d, want the settled 300", st.TPMUsed)
	}
}

// TestCloseWritesQueuedSettlements: every settlement queued before Close,
// on every shard, is in the final snapshot.
func TestCloseWritesQueuedSettlements(t *testing.T) {
	dir := t.TempDir()
	c := newClock(t0)
	limits := map[string]Limits{}
	for i := range 8 {
		limits["c"+strconv.Itoa(i)] = Limits{TPM: 1 << 30, QuotaTokens: 1 << 30, Period: Daily}
	}
	db := openDB(t, dir)
	l := openWithDB(t, db, c, limits, time.Hour) // only Close snapshots
	for i := range 8 {
		name := "c" + strconv.Itoa(i)
		for range 50 {
			r, _ := reserve(t, l, name, "", 100)
			l.SettleAsync(r, int64(i+1))
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, l = reopen(t, dir, c, limits)
	for i := range 8 {
		name := "c" + strconv.Itoa(i)
		if st := status(t, l, name); st.TPMUsed != int64(50*(i+1)) || st.QuotaUsed != int64(50*(i+1)) {
			t.Errorf("%s after restart: used %d, quota %d; want %d", name, st.TPMUsed, st.QuotaUsed, 50*(i+1))
		}
	}
}

func TestDecisionAfterSettle(t *testing.T) {
	for _, tc := range []struct {
		name             string
		d                Decision
		reserved, actual int64
		want             int64
	}{
		{"less than reserved gives back the rest", Decision{Limit: 1000, Remaining: 200}, 800, 300, 700},
		{"more than reserved takes from what is left", Decision{Limit: 1000, Remaining: 200}, 100, 250, 50},
		{"overshoot clamps at zero", Decision{Limit: 1000, Remaining: 200}, 100, 5000, 0},
		{"never above the limit", Decision{Limit: 1000, Remaining: 990}, 500, 0, 1000},
		{"negative actual counts as zero", Decision{Limit: 1000, Remaining: 0}, 10, -7, 10},
		{"no limit stays zero", Decision{}, 100, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.d.AfterSettle(tc.reserved, tc.actual)
			if got.Remaining != tc.want || got.Limit != tc.d.Limit {
				t.Fatalf("AfterSettle(%d, %d) of %+v = %+v, want Remaining %d", tc.reserved, tc.actual, tc.d, got, tc.want)
			}
		})
	}
}

func TestReserveWithin(t *testing.T) {
	l := open(t, newClock(t0), map[string]Limits{"a": {TPM: 1 << 40}})
	var wg sync.WaitGroup
	var expired atomic.Int64
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				wait := time.Duration((g*500+i)%5+1) * time.Microsecond
				r, d, err := l.ReserveWithin(context.Background(), wait, "a", "", 10)
				switch {
				case errors.Is(err, context.DeadlineExceeded):
					expired.Add(1)
				case err != nil:
					t.Errorf("ReserveWithin: %v", err)
					return
				case d.Allowed:
					l.SettleAsync(r, 0)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d of 4000 calls gave up", expired.Load())
	// The pooled timers are reused: one that fired or was stopped must not
	// end a later, longer wait at once.
	for range 200 {
		if _, d, err := l.ReserveWithin(context.Background(), 10*time.Second, "a", "", 10); err != nil || !d.Allowed {
			t.Fatalf("ReserveWithin(10s) after short waits: %+v, %v", d, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := status(t, l, "a")
		if st.TPMUsed == 200*10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d tokens charged, want the 2000 of the long waits: reservations whose caller gave up were not released", st.TPMUsed)
		}
		time.Sleep(time.Millisecond) // waiting for release goroutines, not for window logic
	}
	if _, _, err := l.ReserveWithin(context.Background(), time.Second, "a", "", -1); err == nil {
		t.Fatal("negative tokens accepted")
	}
}
