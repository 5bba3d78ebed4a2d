package quota

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// inHandle reports whether the caller's stack holds (*shard).handle: a
// clock passed as Options.Now can then act at the shard's clock read in
// handle, after it drained the mailbox and before it serves the message.
func inHandle() bool {
	pc := make([]uintptr, 32)
	n := runtime.Callers(2, pc)
	fr := runtime.CallersFrames(pc[:n])
	for {
		f, more := fr.Next()
		if strings.HasSuffix(f.Function, ".(*shard).handle") {
			return true
		}
		if !more {
			return false
		}
	}
}

// handleClock is a clock whose next read in (*shard).handle first runs a
// function (once), e.g. to queue a settlement after the shard drained its
// mailbox or to hold the shard's goroutine.
type handleClock struct {
	*clock
	hook atomic.Pointer[func()]
}

func (h *handleClock) now() time.Time {
	if f := h.hook.Load(); f != nil && inHandle() && h.hook.CompareAndSwap(f, nil) {
		(*f)()
	}
	return h.clock.now()
}

func (h *handleClock) once(f func()) { h.hook.Store(&f) }

// openOne opens a one-shard limiter on clock now, with or without grants.
func openOne(t *testing.T, now func() time.Time, limits map[string]Limits, grants bool) *Limiter {
	t.Helper()
	l, err := Open(Options{Now: now, Shards: 1, NodeName: "n1"}, limits)
	if err != nil {
		t.Fatal(err)
	}
	if !grants {
		withoutGrants(l)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestSettlementQueuedBeforeAGrantIsMadeStopsIt: a SettleAsync above its
// estimate queued after the shard drained its mailbox and before it
// publishes a new grant (queued from the shard's clock read) keeps that
// grant from serving anything: once SettleAsync has returned, no Reserve
// is admitted that the shard alone would refuse.
func TestSettlementQueuedBeforeAGrantIsMadeStopsIt(t *testing.T) {
	for _, limits := range []Limits{{TPM: 1000}, {QuotaTokens: 1000, Period: Daily}} {
		for _, grants := range []bool{false, true} {
			ck := &handleClock{clock: newClock(t0)}
			l := openOne(t, ck.now, map[string]Limits{"a": limits}, grants)
			r1, _ := reserve(t, l, "a", "", 10) // with grants, one of 80
			settled := make(chan struct{})
			ck.once(func() { l.SettleAsync(r1, 900); close(settled) })
			reserve(t, l, "a", "", 100) // does not fit the grant: to the shard, which may make another
			<-settled
			// The window holds 900 + 100 = 1000.
			for i := range 8 {
				if r, d := reserve(t, l, "a", "", 100); d.Allowed {
					t.Fatalf("%+v grants=%v: Reserve %d after the window filled admitted (drawn %v), used %d of 1000",
						limits, grants, i, r.drawn != nil, status(t, l, "a").TPMUsed)
				}
			}
			if st := status(t, l, "a"); st.TPMUsed != 1000 || limits.QuotaTokens > 0 && st.QuotaUsed != 1000 {
				t.Fatalf("%+v grants=%v: used %d, quota used %d; want 1000", limits, grants, st.TPMUsed, st.QuotaUsed)
			}
		}
	}
}

// TestSettlementsAboveEstimateNeverLetGrantsOverAdmit: many callers reserve
// and settle at or above their estimates at once. What had been admitted
// and settled when a Reserve is asked is in the window when the shard alone
// serves it (it applies queued settlements first): a Reserve that would
// not fit on top of that is refused, with grants too.
func TestSettlementsAboveEstimateNeverLetGrantsOverAdmit(t *testing.T) {
	const limit, est = 600, 10
	rounds := 150
	if testing.Short() {
		rounds = 20
	}
	var drawn atomic.Int64
	for round := range rounds {
		for _, limits := range []Limits{{TPM: limit}, {QuotaTokens: limit, Period: Daily}} {
			l := openOne(t, newClock(t0.Add(time.Duration(round)*time.Millisecond)).now, map[string]Limits{"a": limits}, true)
			var (
				known atomic.Int64 // charged by the Reserve and SettleAsync calls that returned
				wg    sync.WaitGroup
			)
			for w := range 6 {
				wg.Go(func() {
					for i := range 80 {
						before := known.Load()
						r, d := reserve(t, l, "a", "", est)
						if !d.Allowed {
							continue
						}
						known.Add(est)
						if r.drawn != nil {
							drawn.Add(1)
						}
						if before+est > limit {
							t.Errorf("round %d %+v: admitted %d (drawn %v) with %d charged already, limit %d", round, limits, est, r.drawn != nil, before, limit)
						}
						actual := int64(est)
						if (w+i)%2 == 0 {
							actual = 3 * est
						}
						l.SettleAsync(r, actual)
						known.Add(actual - est)
					}
				})
			}
			wg.Wait()
			l.Close()
			if t.Failed() {
				return
			}
		}
	}
	if drawn.Load() == 0 {
		t.Fatal("no reservation taken from a grant")
	}
}

// TestSettleAboveEstimateGivenUpStillStopsGrants: a Settle above its
// estimate whose ctx ends before the shard answers is still queued (the
// settlement is never lost) and a Reserve asked after it returned is
// served after it, as the shard alone serves it: no grant answers it.
func TestSettleAboveEstimateGivenUpStillStopsGrants(t *testing.T) {
	for _, grants := range []bool{false, true} {
		ck := &handleClock{clock: newClock(t0)}
		l := openOne(t, ck.now, map[string]Limits{"a": {TPM: 1000}}, grants)
		r1, _ := reserve(t, l, "a", "", 10) // with grants, one of 80
		release := make(chan struct{})
		ck.once(func() { <-release }) // the shard is slow to serve the next message
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		if d := l.Settle(ctx, r1, 1000); d != (Decision{}) {
			t.Fatalf("grants=%v: Settle answered %+v while the shard was held", grants, d)
		}
		cancel()
		time.AfterFunc(30*time.Millisecond, func() { close(release) })
		for range 8 {
			if r, d := reserve(t, l, "a", "", 10); d.Allowed {
				t.Fatalf("grants=%v: Reserve(10) after Settle(1000) returned admitted (drawn %v)", grants, r.drawn != nil)
			}
		}
		if st := status(t, l, "a"); st.TPMUsed != 1000 {
			t.Fatalf("grants=%v: used %d, want 1000", grants, st.TPMUsed)
		}
	}
}

// TestHeadroomCountsNoUnusedGrant: what Headroom and a repeated Settle
// report while tokens are set aside in a grant equals what the shard
// alone reports.
func TestHeadroomCountsNoUnusedGrant(t *testing.T) {
	ctx := context.Background()
	ck := newClock(t0)
	with, without := openOne(t, ck.now, map[string]Limits{"a": {TPM: 1000}}, true), openOne(t, ck.now, map[string]Limits{"a": {TPM: 1000}}, false)
	r1, _ := reserve(t, with, "a", "", 10) // a grant of 80
	r2, _ := reserve(t, without, "a", "", 10)
	if d1, d2 := with.Settle(ctx, r1, 0), without.Settle(ctx, r2, 0); d1 != d2 {
		t.Fatalf("Settle: %+v with grants, %+v without", d1, d2)
	}
	h1, _ := with.Headroom(ctx, "a", "")
	h2, _ := without.Headroom(ctx, "a", "")
	if h1 != h2 {
		t.Errorf("Headroom after Settle: %+v with grants, %+v without", h1, h2)
	}
	if d1, d2 := with.Settle(ctx, r1, 0), without.Settle(ctx, r2, 0); d1 != d2 { // settled already: the Decision only
		t.Errorf("second Settle: %+v with grants, %+v without", d1, d2)
	}
}

// TestReserveRefusedByCloseGivesItsTokensBack: a Reserve taken from a grant
// while Close runs returns ErrClosed and charges nothing: the final
// snapshot holds only what was admitted.
func TestReserveRefusedByCloseGivesItsTokensBack(t *testing.T) {
	ck := newClock(t0)
	l, err := Open(Options{Now: ck.now, Shards: 1, NodeName: "n1"}, map[string]Limits{"a": {TPM: 100000, QuotaTokens: 1000000, Period: Daily}})
	if err != nil {
		t.Fatal(err)
	}
	reserve(t, l, "a", "", 100) // a grant of 800
	s := l.shards[0]
	s.mailMu.Lock() // the final snapshot's flush waits at the shard's drain
	done := make(chan struct{})
	go func() { l.Close(); close(done) }()
	<-l.closing
	_, _, err = l.Reserve(context.Background(), "a", "", 500)
	s.mailMu.Unlock()
	<-done
	if err == nil {
		t.Fatal("Reserve during Close succeeded")
	}
	c := s.counters[counterKey{"a", ""}]
	if used, period := c.windowSum(bucketOf(t0)), c.periodSum(); used != 100 || period != 100 {
		t.Fatalf("Reserve during Close returned %v and left window %d, period %d; want 100, 100", err, used, period)
	}
}

// TestReserveGivenUpGivesItsTokensBack: a Reserve taken from a grant whose
// ctx is done returns the error and charges nothing.
func TestReserveGivenUpGivesItsTokensBack(t *testing.T) {
	l := openOne(t, newClock(t0).now, map[string]Limits{"a": {TPM: 1000}}, true)
	reserve(t, l, "a", "", 100) // a grant of 800
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := l.Reserve(ctx, "a", "", 100); err == nil {
		t.Fatal("Reserve with a done ctx succeeded")
	}
	if st := status(t, l, "a"); st.TPMUsed != 100 {
		t.Fatalf("used %d, want 100", st.TPMUsed)
	}
}

// TestGrantCountsRefunds: a Reserve or Headroom answered from a grant
// reports what the shard alone reports, refunds applied (Settle) or queued
// (SettleAsync) since the grant was made included.
func TestGrantCountsRefunds(t *testing.T) {
	ctx := context.Background()
	for _, sync := range []bool{false, true} {
		ck := newClock(t0)
		lim := map[string]Limits{"a": {TPM: 1000}}
		with, without := openOne(t, ck.now, lim, true), openOne(t, ck.now, lim, false)
		var rs [2][]Reservation
		for i, l := range []*Limiter{with, without} {
			for range 3 {
				r, _ := reserve(t, l, "a", "", 50) // with grants: the first makes one of 400
				rs[i] = append(rs[i], r)
			}
		}
		if rs[0][1].drawn == nil {
			t.Fatal("second reservation not taken from a grant")
		}
		for i, l := range []*Limiter{with, without} {
			for j, r := range rs[i] {
				if sync {
					l.Settle(ctx, r, int64(10*j))
				} else {
					l.SettleAsync(r, int64(10*j))
				}
			}
		}
		answersAsWithoutGrants(t, fmt.Sprintf("sync %v", sync), with, without, 40)
	}
}

// TestSecondSettlementGivesNothingToTheGrant: a reservation of the shard's
// settled twice below its estimate frees its tokens once: the second
// settlement gives the grant nothing, whether what the grant holds is then
// left in it, taken from it, or refunded by its retirement.
func TestSecondSettlementGivesNothingToTheGrant(t *testing.T) {
	ctx := context.Background()
	for _, after := range []string{"nothing", "taken", "retired"} {
		ck := newClock(t0)
		lim := map[string]Limits{"a": {TPM: 1000, QuotaTokens: 5000, Period: Daily}}
		with, without := openOne(t, ck.now, lim, true), openOne(t, ck.now, lim, false)
		for _, l := range []*Limiter{with, without} {
			r, _ := reserve(t, l, "a", "", 100) // with grants: one of 800
			l.SettleAsync(r, 0)
			l.SettleAsync(r, 0) // settled already
			if d := l.Settle(ctx, r, 10); d.Remaining != 1000 {
				t.Fatalf("%s: third settlement: remaining %d, want 1000", after, d.Remaining)
			}
			switch after {
			case "taken":
				reserve(t, l, "a", "", 850)
			case "retired":
				status(t, l, "a")
			}
		}
		s1, s2 := status(t, with, "a"), status(t, without, "a")
		if s1.TPMUsed != s2.TPMUsed || s1.QuotaUsed != s2.QuotaUsed {
			t.Fatalf("%s: used %d, quota %d with grants; %d, %d without", after, s1.TPMUsed, s1.QuotaUsed, s2.TPMUsed, s2.QuotaUsed)
		}
		_, d1 := reserve(t, with, "a", "", 200)
		_, d2 := reserve(t, without, "a", "", 200)
		if d1.Allowed != d2.Allowed {
			t.Fatalf("%s: Reserve(200) %+v with grants, %+v without", after, d1, d2)
		}
	}
}

// TestGrantCountsEarlierRefunds: a refund of a reservation charged before
// the grant's second (still in the window) is not given to the grant, but
// what a Reserve or Headroom answered from the grant reports counts it,
// queued or applied, once only.
func TestGrantCountsEarlierRefunds(t *testing.T) {
	ctx := context.Background()
	for _, how := range []string{"SettleAsync", "Settle", "SettleAsync twice", "queued before the grant"} {
		ck := &handleClock{clock: newClock(t0)}
		lim := map[string]Limits{"a": {TPM: 1000}}
		with, without := openOne(t, ck.now, lim, true), openOne(t, ck.now, lim, false)
		var old [2]Reservation
		for i, l := range []*Limiter{with, without} {
			old[i], _ = reserve(t, l, "a", "", 300)
		}
		ck.add(time.Second)
		for i, l := range []*Limiter{with, without} {
			settle := func() {
				switch how {
				case "Settle":
					l.Settle(ctx, old[i], 50)
				default:
					l.SettleAsync(old[i], 50)
				}
			}
			if how == "queued before the grant" && i == 0 {
				ck.once(settle) // after the shard drained, before it offers the grant
				reserve(t, l, "a", "", 50)
				continue
			}
			reserve(t, l, "a", "", 50) // with grants: the shard's, and a grant
			settle()
			if how == "SettleAsync twice" {
				l.SettleAsync(old[i], 50)
			}
		}
		answersAsWithoutGrants(t, how, with, without, 50)
		// Applied now (the Status), the refund is counted once.
		if s1, s2 := status(t, with, "a"), status(t, without, "a"); s1.TPMRemaining != s2.TPMRemaining {
			t.Errorf("%s: Status remaining %v with grants, %v without", how, s1.TPMRemaining, s2.TPMRemaining)
		}
		r1, d1 := reserve(t, with, "a", "", 50)
		_, d2 := reserve(t, without, "a", "", 50)
		if d1 != d2 {
			t.Errorf("%s: Reserve(50) after Status = %+v (drawn %v) with grants, %+v without", how, d1, r1.drawn != nil, d2)
		}
		r1, d1 = reserve(t, with, "a", "", 50)
		_, d2 = reserve(t, without, "a", "", 50)
		if d1 != d2 {
			t.Errorf("%s: a second Reserve(50) after Status = %+v (drawn %v) with grants, %+v without", how, d1, r1.drawn != nil, d2)
		}
	}
}

// answersAsWithoutGrants checks that consumer "a" is told the same headroom
// by a limiter with grants and one without, and that a Reserve of tokens is
// decided the same by both, the first taking it from a grant.
func answersAsWithoutGrants(t *testing.T, label string, with, without *Limiter, tokens int64) {
	t.Helper()
	ctx := context.Background()
	h1, _ := with.Headroom(ctx, "a", "")
	h2, _ := without.Headroom(ctx, "a", "")
	if h1 != h2 {
		t.Errorf("%s: Headroom %+v with grants, %+v without", label, h1, h2)
	}
	r1, d1 := reserve(t, with, "a", "", tokens)
	_, d2 := reserve(t, without, "a", "", tokens)
	if r1.drawn == nil || d1 != d2 {
		t.Errorf("%s: Reserve(%d) = %+v (drawn %v) with grants, %+v without", label, tokens, d1, r1.drawn != nil, d2)
	}
}
