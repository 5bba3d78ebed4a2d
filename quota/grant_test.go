package quota

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// withoutGrants makes every Reserve of l ask its shard. Called before l
// serves anything.
func withoutGrants(l *Limiter) {
	for _, s := range l.shards {
		s.noGrants = true
	}
}

// TestGrantsChangeNoDecision runs the same random reservations,
// settlements, Status calls and clock steps against a limiter with grants
// and one without: every Reserve is admitted or refused alike, for the same
// reason and retry time, every Status and synchronous Settle reads the
// same, and a Reserve or Headroom answered from a grant reports no more
// headroom than the shard does (it does not see refunds queued since).
func TestGrantsChangeNoDecision(t *testing.T) {
	lim := map[string]Limits{
		"tpm":   {TPM: 6000},
		"both":  {TPM: 4000, QuotaTokens: 30000, Period: Hourly},
		"quota": {QuotaTokens: 9000, Period: Daily},
		"free":  {},
	}
	consumers := []string{"tpm", "both", "quota", "free", "unknown"}
	keys := []string{"", "k"}
	steps := []time.Duration{0, 0, 0, 100 * time.Millisecond, 400 * time.Millisecond, time.Second, 7 * time.Second, 61 * time.Second}
	ctx := context.Background()
	for seed := range uint64(12) {
		rng := rand.New(rand.NewPCG(seed, 15))
		ck := newClock(t0.Add(time.Duration(rng.IntN(1000)) * time.Millisecond))
		with, without := open(t, ck, lim), open(t, ck, lim)
		withoutGrants(without)
		type pair struct{ with, without Reservation }
		var out []pair
		drawn := 0
		for step := range 600 {
			c, k := consumers[rng.IntN(len(consumers))], keys[rng.IntN(len(keys))]
			switch op := rng.IntN(20); {
			case op < 10:
				tokens := int64(rng.IntN(900))
				if rng.IntN(20) == 0 {
					tokens = int64(rng.IntN(12000))
				}
				r1, d1 := reserve(t, with, c, k, tokens)
				r2, d2 := reserve(t, without, c, k, tokens)
				if d1.Allowed != d2.Allowed || d1.Reason != d2.Reason || d1.RetryAfter != d2.RetryAfter || d1.Limit != d2.Limit || !d1.QuotaResetsAt.Equal(d2.QuotaResetsAt) {
					t.Fatalf("seed %d step %d: Reserve(%s, %q, %d) = %+v with grants, %+v without", seed, step, c, k, tokens, d1, d2)
				}
				if d1.Remaining != d2.Remaining {
					t.Fatalf("seed %d step %d: Reserve(%s, %q, %d) remaining %d with grants (drawn %v), %d without", seed, step, c, k, tokens, d1.Remaining, r1.drawn != nil, d2.Remaining)
				}
				if r1.drawn != nil {
					drawn++
				}
				if d1.Allowed {
					out = append(out, pair{r1, r2})
				}
			case op < 15 && len(out) > 0:
				i := rng.IntN(len(out))
				p := out[i]
				out = append(out[:i], out[i+1:]...)
				actual := int64(rng.IntN(int(2*p.with.Tokens() + 2)))
				if rng.IntN(3) == 0 {
					d1, d2 := with.Settle(ctx, p.with, actual), without.Settle(ctx, p.without, actual)
					if d1 != d2 {
						t.Fatalf("seed %d step %d: Settle(%d of %d) = %+v with grants, %+v without", seed, step, actual, p.with.Tokens(), d1, d2)
					}
				} else {
					with.SettleAsync(p.with, actual)
					without.SettleAsync(p.without, actual)
				}
			case op < 17:
				h1, err1 := with.Headroom(ctx, c, k)
				h2, err2 := without.Headroom(ctx, c, k)
				if err1 != nil || err2 != nil || h1 != h2 {
					t.Fatalf("seed %d step %d: Headroom(%s, %q) = %+v, %v with grants, %+v, %v without", seed, step, c, k, h1, err1, h2, err2)
				}
			case op < 18:
				if c == "unknown" {
					continue
				}
				s1, s2 := status(t, with, c), status(t, without, c)
				if s1.TPMUsed != s2.TPMUsed || s1.QuotaUsed != s2.QuotaUsed || s1.TPMRemaining != s2.TPMRemaining || len(s1.Keys) != len(s2.Keys) {
					t.Fatalf("seed %d step %d: Status(%s) = %+v with grants, %+v without", seed, step, c, s1, s2)
				}
				for i := range s1.Keys {
					if s1.Keys[i] != s2.Keys[i] {
						t.Fatalf("seed %d step %d: Status(%s) keys %+v with grants, %+v without", seed, step, c, s1.Keys, s2.Keys)
					}
				}
			case op < 19:
				// The news a node sends peers (which retires grants and
				// makes them again) holds what the node without grants
				// reports, net of refunds, bucket by bucket.
				n1, n2 := netNews(t, with, ck.now()), netNews(t, without, ck.now())
				if !maps.Equal(n1, n2) {
					t.Fatalf("seed %d step %d: news %v with grants, %v without", seed, step, n1, n2)
				}
			default:
				ck.add(steps[rng.IntN(len(steps))])
			}
		}
		if drawn == 0 {
			t.Fatalf("seed %d: no reservation was taken from a grant", seed)
		}
	}
}

// netNews is what l's Outgoing(true) holds, net of refunds: tokens by
// counter and bucket of the window at now (bucket -1: the period). Buckets
// that left the window count in no decision.
func netNews(t *testing.T, l *Limiter, now time.Time) map[string]int64 {
	t.Helper()
	us, _, err := l.Outgoing(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	net := map[string]int64{}
	for _, u := range us {
		for _, b := range u.Buckets {
			if v := b.Added - b.Removed; v != 0 && b.Bucket >= bucketOf(now)-windowBack {
				net[fmt.Sprintf("%s/%s/%d", u.Consumer, u.Key, b.Bucket)] += v
			}
		}
		if v := u.PeriodAdded - u.PeriodRemoved; v != 0 {
			net[fmt.Sprintf("%s/%s/%d/-1", u.Consumer, u.Key, u.PeriodStart)] += v
		}
	}
	return net
}

// TestReserveFromAGrantNeedsNoShard: once a shard admitted a reservation of
// a counter, the next ones in the same second are answered while its
// goroutine cannot serve anything; another counter's, which needs it,
// times out.
func TestReserveFromAGrantNeedsNoShard(t *testing.T) {
	ck := newClock(t0)
	l := open(t, ck, map[string]Limits{"a": {TPM: 100000}, "b": {TPM: 100000}})
	reserve(t, l, "a", "", 500)
	s := l.shardOf("a", "")
	// The goroutine applies its mailbox before any message: holding the
	// mailbox's lock stops it at its next one.
	s.mailMu.Lock()
	blocked := true
	defer func() {
		if blocked {
			s.mailMu.Unlock()
		}
	}()
	ctx := context.Background()
	for i := range 7 {
		r, d, err := l.ReserveWithin(ctx, 50*time.Millisecond, "a", "", 500)
		if err != nil || !d.Allowed || r.drawn == nil {
			t.Fatalf("reservation %d: %+v, %v, drawn %v: want one taken from the grant", i+2, d, err, r.drawn != nil)
		}
		if want := int64(100000 - 500*(i+2)); d.Remaining != want {
			t.Fatalf("reservation %d: remaining %d, want %d", i+2, d.Remaining, want)
		}
	}
	// A counter on the same shard without a grant needs the goroutine.
	key := ""
	for i := 0; l.shardOf("b", key) != s; i++ {
		key = string(rune('a' + i))
	}
	if _, _, err := l.ReserveWithin(ctx, 50*time.Millisecond, "b", key, 500); err == nil {
		t.Fatal("a counter without a grant was answered while its shard could not serve")
	}
	s.mailMu.Unlock()
	blocked = false
	if st := status(t, l, "a"); st.TPMUsed != 8*500 {
		t.Fatalf("used %d, want %d", st.TPMUsed, 8*500)
	}
}

// TestGrantEndsWithItsSecond: a reservation in a later second goes to the
// shard, which takes back what was left of the grant.
func TestGrantEndsWithItsSecond(t *testing.T) {
	ck := newClock(t0.Add(999 * time.Millisecond))
	l := open(t, ck, map[string]Limits{"a": {TPM: 10000, QuotaTokens: 50000, Period: Daily}})
	reserve(t, l, "a", "", 1000)
	if r, _ := reserve(t, l, "a", "", 1000); r.drawn == nil {
		t.Fatal("second reservation in the same second not taken from the grant")
	}
	ck.add(time.Millisecond)
	r, d := reserve(t, l, "a", "", 1000)
	if r.drawn != nil || d.Remaining != 7000 {
		t.Fatalf("first reservation of the next second: drawn %v, remaining %d; want the shard's, 7000", r.drawn != nil, d.Remaining)
	}
	if st := status(t, l, "a"); st.TPMUsed != 3000 || st.QuotaUsed != 3000 {
		t.Fatalf("used %d, quota %d; want 3000, 3000", st.TPMUsed, st.QuotaUsed)
	}
}

// TestLimitChangeRetiresGrants: a lower limit set at run time applies to
// the next Reserve, even one that a grant made under the old limit could
// have held, whichever way it is set (none of them asks for a Status,
// which retires grants too).
func TestLimitChangeRetiresGrants(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		set  func(*Limiter) error
	}{
		{"SetLimits", func(l *Limiter) error { _, err := l.SetLimits(ctx, "a", ptrTo(150), nil); return err }},
		{"SetConfig", func(l *Limiter) error { return l.SetConfig(ctx, map[string]Limits{"a": {TPM: 150}}) }},
		{"ApplyLimits", func(l *Limiter) error {
			return l.ApplyLimits(ctx, []LimitRecord{{Consumer: "a", TPM: ptrTo(150), TPMAt: t0.UnixNano(), TPMOrigin: "n2"}})
		}},
	} {
		l := open(t, newClock(t0), map[string]Limits{"a": {TPM: 100000}})
		reserve(t, l, "a", "", 100) // a grant of 800
		if err := c.set(l); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if r, d := reserve(t, l, "a", "", 100); d.Allowed || d.Reason != ReasonTPM {
			t.Fatalf("%s: Reserve(100) after the limit became 150 with 100 used = %+v (drawn %v), want refused (tpm)", c.name, d, r.drawn != nil)
		}
	}
}

// TestMergeRetiresGrants: usage merged from another node counts before the
// next Reserve, which a grant made before it could have held.
func TestMergeRetiresGrants(t *testing.T) {
	l := open(t, newClock(t0), map[string]Limits{"a": {TPM: 1000}})
	reserve(t, l, "a", "", 100) // a grant of 800
	mergeUsage(t, l, Usage{Origin: "n2", Consumer: "a", Buckets: []BucketUsage{bucketAt(t0, 850, 0)}})
	if r, d := reserve(t, l, "a", "", 100); d.Allowed || d.Reason != ReasonTPM {
		t.Fatalf("Reserve(100) with 950 used = %+v (drawn %v), want refused (tpm)", d, r.drawn != nil)
	}
	if st := status(t, l, "a"); st.TPMUsed != 950 {
		t.Fatalf("used %d, want 950", st.TPMUsed)
	}
}

// TestRecordRetiresGrants: the usage of a reservation made while the
// consumer had no limit, settled once it has one, counts before the next
// Reserve, which a grant made before could have held.
func TestRecordRetiresGrants(t *testing.T) {
	ctx := context.Background()
	l := open(t, newClock(t0), map[string]Limits{"a": {}})
	free, _ := reserve(t, l, "a", "", 100)
	if free.unmetered == nil {
		t.Fatal("reservation of an unlimited consumer asked its shard")
	}
	if err := l.SetConfig(ctx, map[string]Limits{"a": {TPM: 1000}}); err != nil {
		t.Fatal(err)
	}
	reserve(t, l, "a", "", 100) // a grant of 800
	l.SettleAsync(free, 850)
	if r, d := reserve(t, l, "a", "", 100); d.Allowed || d.Reason != ReasonTPM {
		t.Fatalf("Reserve(100) with 950 used = %+v (drawn %v), want refused (tpm)", d, r.drawn != nil)
	}
	if h, _ := l.Headroom(ctx, "a", ""); h.Remaining != 50 {
		t.Fatalf("Headroom %+v, want 50 remaining", h)
	}
}

// TestPeersTurnGrantsOff: with peers, every reservation is the shard's (the
// share rule needs each), and what is gossiped is exactly what was
// reserved.
func TestPeersTurnGrantsOff(t *testing.T) {
	l := open(t, newClock(t0), map[string]Limits{"a": {TPM: 100000}})
	reserve(t, l, "a", "", 100)
	reserve(t, l, "a", "", 100) // from the grant
	l.SetPeers([]string{"n1", "n2"})
	for range 3 {
		if r, _ := reserve(t, l, "a", "", 100); r.drawn != nil {
			t.Fatal("a reservation was taken from a grant with peers")
		}
	}
	us, _, err := l.Outgoing(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 1 || len(us[0].Buckets) != 1 || us[0].Buckets[0] != bucketAt(t0, 500, 0) {
		t.Fatalf("outgoing %+v, want one bucket of 500 added, 0 removed", us)
	}
}

// TestConcurrentGrantsNeverExceedTPM: callers taking from grants and the
// shard at once, within one second, admit at most the limit, and exactly
// what Status then reports.
func TestConcurrentGrantsNeverExceedTPM(t *testing.T) {
	const limit = 50000
	l := open(t, newClock(t0.Add(500*time.Millisecond)), map[string]Limits{"a": {TPM: limit}})
	var (
		mu       sync.Mutex
		admitted int64
		drawn    int
		wg       sync.WaitGroup
	)
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				tokens := int64(10 + (w*31+i*17)%90)
				r, d := reserve(t, l, "a", "", tokens)
				if d.Allowed {
					mu.Lock()
					admitted += tokens
					if r.drawn != nil {
						drawn++
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if admitted > limit {
		t.Fatalf("admitted %d tokens, limit %d", admitted, limit)
	}
	if st := status(t, l, "a"); st.TPMUsed != admitted {
		t.Fatalf("used %d, admitted %d", st.TPMUsed, admitted)
	}
	if drawn == 0 {
		t.Fatal("no reservation was taken from a grant")
	}
}

// TestReserveSpareKeepsHalfTheLimits: ReserveSpare takes from a grant only
// while the counter's window and period stay under half of their limits,
// and never asks the shard.
func TestReserveSpareKeepsHalfTheLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		lim  Limits
	}{
		{"tpm", Limits{TPM: 10000}},
		{"quota", Limits{QuotaTokens: 10000, Period: Daily}},
		{"both", Limits{TPM: 10000, QuotaTokens: 10000, Period: Daily}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := open(t, newClock(t0), map[string]Limits{"a": tc.lim})
			if _, _, ok := l.ReserveSpare("a", "", 100); ok {
				t.Fatal("ReserveSpare without a grant reserved")
			}
			reserve(t, l, "a", "", 1000) // the shard's; a grant of 8000 follows
			if _, _, ok := l.ReserveSpare("a", "", 4001); ok {
				t.Fatal("ReserveSpare(4001) with 1000 used of 10000 reserved")
			}
			r, d, ok := l.ReserveSpare("a", "", 4000)
			if !ok || r.drawn == nil || tc.lim.TPM > 0 && d.Remaining != 5000 {
				t.Fatalf("ReserveSpare(4000) with 1000 used = %+v, %v: want 5000 remaining", d, ok)
			}
			if _, _, ok := l.ReserveSpare("a", "", 1); ok {
				t.Fatal("ReserveSpare(1) with half of the limit used reserved")
			}
			if r, _ := reserve(t, l, "a", "", 1000); r.drawn == nil {
				t.Fatal("Reserve(1000) was not taken from the grant's rest")
			}
			st := status(t, l, "a")
			if tc.lim.TPM > 0 && st.TPMUsed != 6000 || tc.lim.QuotaTokens > 0 && st.QuotaUsed != 6000 {
				t.Fatalf("used %d, quota %d; want 6000", st.TPMUsed, st.QuotaUsed)
			}
		})
	}
}

// TestRefundsGoToTheGrant: what a settlement below its estimate frees is
// admitted from the grant at once, as the shard would admit it, and
// counted once.
func TestRefundsGoToTheGrant(t *testing.T) {
	l := open(t, newClock(t0), map[string]Limits{"a": {TPM: 10000, QuotaTokens: 50000, Period: Daily}})
	r1, _ := reserve(t, l, "a", "", 1000) // the shard's; a grant of 8000 follows
	r2, d := reserve(t, l, "a", "", 1000)
	if r2.drawn == nil || d.Remaining != 8000 {
		t.Fatalf("second reservation: drawn %v, remaining %d; want drawn, 8000", r2.drawn != nil, d.Remaining)
	}
	l.SettleAsync(r2, 100)
	l.SettleAsync(r1, 0)
	r3, d := reserve(t, l, "a", "", 1000)
	if r3.drawn == nil || d.Remaining != 8900 {
		t.Fatalf("after two refunds: drawn %v, remaining %d; want drawn, 8900", r3.drawn != nil, d.Remaining)
	}
	// The grant holds 8000 of its own and 1900 given back, less 2000 taken;
	// the last 1000 of the window are the shard's.
	if r, d := reserve(t, l, "a", "", 7900); r.drawn == nil || d.Remaining != 1000 {
		t.Fatalf("the grant's rest: drawn %v, remaining %d; want drawn, 1000", r.drawn != nil, d.Remaining)
	}
	if r, d := reserve(t, l, "a", "", 1000); r.drawn != nil || d.Remaining != 0 {
		t.Fatalf("the window's rest: drawn %v, remaining %d; want the shard's, 0", r.drawn != nil, d.Remaining)
	}
	if _, d := reserve(t, l, "a", "", 1); d.Allowed {
		t.Fatalf("a full window admitted %+v", d)
	}
	if st := status(t, l, "a"); st.TPMUsed != 10000 || st.QuotaUsed != 10000 {
		t.Fatalf("used %d, quota %d; want 10000, 10000", st.TPMUsed, st.QuotaUsed)
	}
}

// TestSpareTakeFromARetiredGrantIsRefused: a ReserveSpare that found a grant
// just before the shard retired it must not take from it. Its floor (the
// grant's spare) is above zero, and the revoked credit minus it wrapped round
// to a huge credit: the reservation was admitted, charged to nothing, and
// left the grant with an unlimited credit for any other caller holding it.
func TestSpareTakeFromARetiredGrantIsRefused(t *testing.T) {
	ck := newClock(t0)
	l := openOne(t, ck.now, map[string]Limits{"a": {TPM: 10000}}, true)
	reserve(t, l, "a", "", 1000) // a grant of the headroom, with a spare to keep
	g := l.shards[0].grantOf("a", "", ck.now())
	if g == nil || g.spare <= 0 {
		t.Fatalf("no grant with a spare after the first reservation: %+v", g)
	}
	status(t, l, "a") // the shard retires g
	if left, ok := g.take(100, g.spare); ok {
		t.Fatalf("take(100, spare %d) from a retired grant = %d, true; want refused", g.spare, left)
	}
	if _, ok := g.take(100, 0); ok {
		t.Fatal("take(100, 0) from a retired grant succeeded")
	}
}

// TestShrinkHoldsWhatCountingWouldHave: a reservation taken by ReserveSpare
// and shrunk to its estimate holds the estimate in the window and the
// period from then on, whether its grant is still live or retired, and its
// settlement charges exactly the actual tokens, once.
func TestShrinkHoldsWhatCountingWouldHave(t *testing.T) {
	for _, tc := range []struct {
		name       string
		later      time.Duration // between the reservation and Shrink
		settleLast bool          // Settle before Shrink: Shrink changes nothing
		actual     int64
		wantShrunk bool
		wantUsed   int64 // after the reservation of 1000 that made the grant
		wantFinal  int64 // after settling
	}{
		{"a live grant takes the rest back", 0, false, 500, true, 1800, 1500},
		{"a retired grant's window is refunded", 2 * time.Second, false, 500, true, 1800, 1500},
		{"settled above the shrunk estimate", 0, false, 1200, true, 1800, 2200},
		{"settled first: nothing to shrink", 0, true, 500, false, 1500, 1500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock(t0)
			l := open(t, c, map[string]Limits{"a": {TPM: 100000, QuotaTokens: 1000000, Period: Daily}})
			reserve(t, l, "a", "", 1000) // the shard's; a grant follows
			r, _, ok := l.ReserveSpare("a", "", 3000)
			if !ok {
				t.Fatal("ReserveSpare(3000) far from the limits reserved nothing")
			}
			c.add(tc.later)
			if tc.settleLast {
				l.SettleAsync(r, tc.actual)
			}
			if got := l.Shrink(r, 800); got != tc.wantShrunk {
				t.Fatalf("Shrink = %v, want %v", got, tc.wantShrunk)
			}
			if l.Shrink(r, 800) || l.Shrink(r, 900) {
				t.Fatal("a second Shrink, not below what is held, shrank")
			}
			if st := status(t, l, "a"); st.TPMUsed != tc.wantUsed || st.QuotaUsed != tc.wantUsed {
				t.Fatalf("after Shrink: used %d, quota %d; want %d", st.TPMUsed, st.QuotaUsed, tc.wantUsed)
			}
			l.SettleAsync(r, tc.actual)
			l.SettleAsync(r, 0) // a copy settled again: nothing
			if l.Shrink(r, 10) {
				t.Fatal("Shrink of a settled reservation shrank")
			}
			if st := status(t, l, "a"); st.TPMUsed != tc.wantFinal || st.QuotaUsed != tc.wantFinal {
				t.Fatalf("settled: used %d, quota %d; want %d", st.TPMUsed, st.QuotaUsed, tc.wantFinal)
			}
		})
	}
}

// TestShrinkAdmitsAsCounting: once shrunk, the next reservation from the
// grant is admitted, and told what remains, as if the estimate had been
// reserved in the first place.
func TestShrinkAdmitsAsCounting(t *testing.T) {
	remaining := func(shrink bool) int64 {
		l := open(t, newClock(t0), map[string]Limits{"a": {TPM: 100000}})
		reserve(t, l, "a", "", 1000)
		if shrink {
			r, _, _ := l.ReserveSpare("a", "", 3000)
			if !l.Shrink(r, 800) {
				t.Fatal("Shrink(3000 -> 800) shrank nothing")
			}
		} else {
			l.ReserveSpare("a", "", 800)
		}
		r, d := reserve(t, l, "a", "", 1000)
		if r.drawn == nil {
			t.Fatal("the next reservation was not taken from the grant")
		}
		return d.Remaining
	}
	if shrunk, counted := remaining(true), remaining(false); shrunk != counted {
		t.Fatalf("remaining after a shrunk bound %d, after the estimate %d", shrunk, counted)
	}
}

// TestShrinkRacingSettleCountsOnce: Shrink and Settle of the same
// reservation from different goroutines charge the actual tokens exactly
// once, whichever wins.
func TestShrinkRacingSettleCountsOnce(t *testing.T) {
	c := newClock(t0)
	l := open(t, c, map[string]Limits{"a": {TPM: 1 << 40}})
	reserve(t, l, "a", "", 100000) // a grant of 800000 follows
	const n = 200
	var wg sync.WaitGroup
	for range n {
		r, _, ok := l.ReserveSpare("a", "", 300)
		if !ok {
			t.Fatal("ReserveSpare(300) reserved nothing")
		}
		wg.Add(2)
		go func() { defer wg.Done(); l.Shrink(r, 100) }()
		go func() { defer wg.Done(); l.SettleAsync(r, 7) }()
	}
	wg.Wait()
	if st := status(t, l, "a"); st.TPMUsed != 100000+7*n {
		t.Fatalf("used %d, want %d", st.TPMUsed, 100000+7*n)
	}
}

// TestReadsThatRetireAGrantMakeAnother: the cluster's news (collected every
// few tens of milliseconds even on a node alone) and snapshots retire a
// counter's grant to read it; a grant that served reservations is made
// again at once, so a steady consumer's next reservation needs no shard.
// What they read holds only what was reserved, never the unused grant; an
// idle counter (its grant served nothing) gets no new one.
func TestReadsThatRetireAGrantMakeAnother(t *testing.T) {
	ctx := context.Background()
	for _, read := range []struct {
		name string
		do   func(l *Limiter)
	}{
		{"news", func(l *Limiter) {
			if _, _, err := l.Outgoing(ctx, false); err != nil {
				t.Fatal(err)
			}
		}},
		{"snapshot", func(l *Limiter) {
			if _, err := l.snapshot(nil); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(read.name, func(t *testing.T) {
			l := open(t, newClock(t0), map[string]Limits{"a": {TPM: 100000, QuotaTokens: 1000000, Period: Daily}})
			reserve(t, l, "a", "", 100) // the shard's; it makes a grant of 8
			for range 7 {
				reserve(t, l, "a", "", 100) // from the grant
			}
			// It served 7: made again for 14.
			read.do(l)
			size := l.shardOf("a", "").grantOf("a", "", t0).size
			if size != 1400 {
				t.Fatalf("grant of %d tokens after the first read, want 1400", size)
			}
			for i := range 3 {
				r, d, ok := l.ReserveSpare("a", "", 100)
				if !ok || r.drawn == nil {
					t.Fatalf("read %d: the next reservation needed the shard", i+1)
				}
				if want := int64(100000 - 100*(i+9)); d.Remaining != want {
					t.Fatalf("read %d: remaining %d, want %d", i+1, d.Remaining, want)
				}
				read.do(l)
				// Having served one since it was made, it is made again
				// no smaller.
				if g := l.shardOf("a", "").grantOf("a", "", t0); g == nil || g.size < size {
					t.Fatalf("read %d: grant %+v, want one of at least %d tokens", i+1, g, size)
				}
			}
			us, _, err := l.Outgoing(ctx, true)
			if err != nil {
				t.Fatal(err)
			}
			if len(us) != 1 || len(us[0].Buckets) != 1 || us[0].Buckets[0] != bucketAt(t0, 1100, 0) || us[0].PeriodAdded != 1100 {
				t.Fatalf("outgoing %+v, want one bucket and a period of 1100 added", us)
			}
			// Served nothing since the last read: no new grant.
			read.do(l)
			read.do(l)
			if r, _ := reserve(t, l, "a", "", 100); r.drawn != nil {
				t.Fatal("an idle counter's grant was made again")
			}
		})
	}
}
