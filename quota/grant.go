package quota

import (
	"math"
	"sync/atomic"
	"time"
)

// Grants: reservations without a round trip to the shard.
//
// A Reserve sent to its shard costs two goroutine hand-offs (the caller
// wakes the shard's goroutine, which wakes the caller with the answer),
// each of which may wait for a core. So when a shard admits a reservation
// of a counter with a limit, and it is alone (no peers), it also sets aside
// the counter's headroom, up to about two seconds of its recent demand, as
// a grant for the rest of the current bucket: it charges the grant's tokens
// to that bucket and to the period, as one reservation, and publishes the
// grant. A Reserve of the counter in the same bucket then takes its tokens
// from the grant (an atomic compare-and-swap) and is answered without the
// shard; one that does not fit what is left, or comes in a later bucket,
// goes to the shard as before.
//
// Exactness: every token taken from a grant was charged to the window and
// the period when the grant was made, in the bucket of the reservation, so
// the window and period hold at least what the shard would have admitted;
// a grant holds at most what the shard would still admit (its headroom
// after the reservation that made it). Before the shard reads a counter to
// decide, report or persist anything (Reserve, Status, a snapshot, a merge
// of remote usage, a limit change, peers arriving), it retires the counter's
// grant: it revokes it (nobody can take from it any more) and refunds what
// was left, in the bucket and period it was charged to. A read that admits
// nothing and that a node alone makes every few tens of milliseconds (the
// news for peers, a snapshot) then makes the counter a new grant, if the
// retired one served anything (see regrant): otherwise a steady consumer's
// next reservation after each would go to the shard. Its decisions are
// thus exactly those it would make without grants; only the grant's own
// takers admit against the headroom as it stood when it was made (and they
// take at most that). A settlement above its estimate retires the grant
// too, so that what it charged beyond the estimate counts before anything
// more is admitted, as it would without grants: queuing it closes the
// grant (nothing more is taken from it), and offer publishes no grant of
// the counter while it waits in the mailbox, both under the mailbox's lock,
// so that one queued after the shard drained the mailbox and before it
// published a grant stops that grant too. A Settle that changes the
// estimate is queued in the mailbox as well (and then waits for a
// Headroom), so that the grant is closed even if the caller stops waiting.
// A Reserve taken from a grant whose caller gave up (or that Close
// refused) gives its tokens back to the grant.
//
// A reservation taken from a grant is settled through the shard's mailbox
// like an unmetered one: it carries its bucket, period and time, and the
// first Settle or SettleAsync of any copy wins. A settlement below its
// estimate, of a reservation charged in the grant's bucket and period,
// gives what it frees to the grant at once (see give): the next
// reservations admit against it, as the shard would once it applied the
// settlement, and the shard does not refund the window for it (the grant's
// retirement does, if nobody took it). It does so under the mailbox's lock,
// and offer gives a grant what the settlements queued before it free, so a
// Reserve from a grant admits and reports against every refund queued in
// its bucket; a refund of a reservation charged in an earlier bucket of
// the window is not given, but counts in what the grant reports (see
// countRefund). Only the first settlement of a reservation gives anything:
// every reservation carries a flag that the first Settle or SettleAsync of
// any copy sets.
//
// Grants need no round trip, so a Headroom within the grant's bucket is
// answered from it too (the headroom left once all of the grant is taken,
// plus what is left of it).

// grantRevoked is a retired grant's credit: below any reservation.
const grantRevoked = math.MinInt64

// grantMinReservations sizes a counter's first grant, in reservations of
// the size that made it; later ones follow what the previous grant served.
const grantMinReservations = 8

// grant is headroom of one counter set aside by its shard for the rest of
// one bucket. Only credit changes after it is published.
type grant struct {
	credit atomic.Int64 // tokens left to take; grantRevoked once retired
	// closed is set by a settlement above its estimate, queued but not yet
	// applied: nothing more may be taken before the shard has counted it.
	closed      atomic.Bool
	given       atomic.Int64 // tokens settlements gave it (see give)
	bucket      int64        // the bucket it was charged to and is valid in
	periodStart int64        // the period it was charged to (0 = none)
	size        int64        // tokens charged for it
	// limit, remaining and resetsAt are the Decision of a reservation that
	// takes the last of the grant.
	limit int64
	// remaining grows by the refunds into the window, queued or applied
	// while the grant is live, that are not given to it (see countRefund).
	remaining atomic.Int64
	resetsAt  time.Time
	// spare is what must be left of the credit after a ReserveSpare, so
	// that the window and the period stay under half of their limits.
	spare int64
	// unit is the size of the reservation that the counter's grants were
	// first made after: the smallest grant worth making (see regrant).
	unit int64
}

// take removes tokens from the grant's credit, leaving at least floor, and
// returns what is left, or false if the credit (or a revoked grant's)
// cannot hold them.
func (g *grant) take(tokens, floor int64) (left int64, ok bool) {
	if g.closed.Load() {
		return 0, false
	}
	for {
		c := g.credit.Load()
		// A revoked grant's credit is math.MinInt64: c-floor would wrap
		// round to a large positive credit for any floor above zero.
		if c < 0 || c-floor < tokens {
			return 0, false
		}
		if g.credit.CompareAndSwap(c, c-tokens) {
			return c - tokens, true
		}
	}
}

// decision is the Decision of a reservation that left left in the grant.
func (g *grant) decision(left int64) Decision {
	d := Decision{Allowed: true, Limit: g.limit, QuotaResetsAt: g.resetsAt}
	if g.limit > 0 {
		d.Remaining = g.remaining.Load() + max(left, 0)
	}
	return d
}

// drawn is what settling a reservation taken from a grant needs besides
// its bucket and period.
type drawn struct {
	at int64 // Unix ns of the reservation
	// held is what the reservation still holds: its tokens, less what a
	// Shrink gave back; drawnSettled once the first Settle or SettleAsync of
	// any copy won. One word, so that a Shrink and a Settle racing each
	// other take each token exactly once.
	held atomic.Int64
}

// drawnSettled is a settled drawn reservation's held.
const drawnSettled = -1

// give adds what settlement st frees (its estimate less its charge) to the
// grant of its counter, if the counter has a live grant charged in the
// bucket and period st's reservation was: the tokens stay charged to the
// window, now as the grant's, for the next reservations to take, and the
// shard takes them back with the rest of the grant when it retires it.
// It reports whether it did (st is then applied without a refund). Any
// goroutine.
func (s *shard) give(st *settlement) bool {
	v, ok := s.grants.Load(counterKey{st.consumer, st.key})
	if !ok {
		return false
	}
	return v.(*grant).give(st)
}

// give adds what st frees to g, if st's reservation was charged in g's
// bucket and period (see shard.give), and notes it in st.kept.
func (g *grant) give(st *settlement) bool {
	if g.bucket != st.bucket || g.periodStart != st.periodStart {
		return false
	}
	freed := st.estimate - st.tokens
	for {
		c := g.credit.Load()
		if c < 0 || c > MaxTokens-freed {
			return false // retired: the shard refunds the window itself
		}
		if g.credit.CompareAndSwap(c, c+freed) {
			g.given.Add(freed)
			st.kept = g
			return true
		}
	}
}

// countRefund adds what st frees, if it is not given to g (charged in an
// earlier bucket) but refunds g's window, to g's remaining, and notes it in
// st.counted: what a Reserve or Headroom answered from g reports then
// counts it, as the shard's answer after applying the mailbox would. Under
// mailMu.
func (g *grant) countRefund(st *settlement) {
	if g.limit > 0 && st.tokens < st.estimate && st.bucket <= g.bucket && st.bucket >= g.bucket-windowBack {
		g.remaining.Add(st.estimate - st.tokens)
		st.counted = g
	}
}

// grantOf returns the grant published for (consumer, key) valid at now,
// or nil. Any goroutine.
func (s *shard) grantOf(consumer, key string, now time.Time) *grant {
	v, ok := s.grants.Load(counterKey{consumer, key})
	if !ok {
		return nil
	}
	g := v.(*grant)
	if bucketOf(now) != g.bucket {
		return nil
	}
	return g
}

// draw reserves tokens for (consumer, key) from its grant, without the
// shard's goroutine, and returns the grant it took them from; nil when
// there is no grant valid now or it cannot hold them (with spare, and leave
// the counter under half of its limits). Any goroutine.
func (s *shard) draw(consumer, key string, tokens int64, now time.Time, spare bool) (Reservation, Decision, *grant) {
	g := s.grantOf(consumer, key, now)
	if g == nil {
		return Reservation{}, Decision{}, nil
	}
	var floor int64
	if spare {
		floor = g.spare
	}
	left, ok := g.take(tokens, floor)
	if !ok {
		return Reservation{}, Decision{}, nil
	}
	r := Reservation{consumer: consumer, key: key, tokens: tokens, bucket: g.bucket, periodStart: g.periodStart,
		drawn: &drawn{at: now.UnixNano()}}
	r.drawn.held.Store(tokens)
	return r, g.decision(left), g
}

// offer publishes a grant for c after the shard admitted a reservation of
// tokens in bucket cur, leaving used tokens in the window: the headroom
// left, up to twice what c's previous grant served (at least
// grantMinReservations reservations of this size, and at least minSize). Nothing when the shard
// has peers (the share rule needs each reservation), when c has no limit,
// or when the headroom would not hold another reservation like this one.
func (s *shard) offer(c *counter, lim Limits, cur, used, tokens, minSize int64, d Decision) {
	local := &c.origins[0]
	if s.noGrants || len(s.peers) > 0 || lim.TPM <= 0 && lim.QuotaTokens <= 0 || local.w.head != cur || c.grant != nil {
		return
	}
	room := int64(math.MaxInt64)
	if lim.TPM > 0 {
		room = lim.TPM - used
	}
	if lim.QuotaTokens > 0 {
		room = min(room, lim.QuotaTokens-c.periodSum())
	}
	size := min(room, max(2*c.grantServed, grantMinReservations*tokens, minSize))
	slot := &local.w.v[cur&ringMask]
	if size <= 0 || size < tokens || slot.added > MaxTokens-size || c.periodStart != 0 && local.period.added > periodCap-size {
		return // (or its totals would reach their caps, where retire could not take it back)
	}
	g := &grant{bucket: cur, periodStart: c.periodStart, size: size,
		limit: lim.TPM, resetsAt: d.QuotaResetsAt, unit: tokens}
	g.remaining.Store(lim.remaining(used + size))
	if lim.TPM > 0 {
		g.spare = max(g.spare, (lim.TPM+1)/2-lim.remaining(used+size))
	}
	if lim.QuotaTokens > 0 {
		g.spare = max(g.spare, (lim.QuotaTokens+1)/2-(lim.QuotaTokens-c.periodSum()-size))
	}
	g.credit.Store(size)
	if !s.mayGrant(c, g) {
		return
	}
	// Charged as one reservation in the bucket the reservation that made it
	// already changed (see markChanged): nothing more to gossip.
	slot.added += size
	if c.periodStart != 0 {
		local.period.added += size
	}
	c.grant = g
	s.grants.Store(counterKey{c.consumer, c.key}, g)
	s.mailMu.Unlock()
}

// mayGrant locks the mailbox and reports whether it holds no settlement of
// c above its estimate; it unlocks it when false. A settlement queued after
// the shard drained the mailbox and before a grant is published would
// otherwise find no grant to close (see shard.post), and the grant would
// serve reservations that the settlement leaves no room for. What the
// settlements of c below their estimates queued since free is given to g,
// as shard.post gives it once g is published.
func (s *shard) mayGrant(c *counter, g *grant) bool {
	s.mailMu.Lock()
	if s.overs > 0 {
		for i := range s.mail {
			if st := &s.mail[i]; st.tokens > st.estimate && st.consumer == c.consumer && st.key == c.key {
				s.mailMu.Unlock()
				return false
			}
		}
	}
	for i := range s.mail {
		if st := &s.mail[i]; st.tokens < st.estimate && (st.id != 0 || st.drawn) && st.kept == nil && st.consumer == c.consumer && st.key == c.key {
			if !g.give(st) {
				g.countRefund(st)
			}
		}
	}
	return true
}

// giveBack returns r's tokens, taken from g by a Reserve whose caller gave
// up (or Close runs, when SettleAsync drops settlements), to g if it is
// still live, else settles r to 0 through the mailbox. Any goroutine.
func (s *shard) giveBack(r Reservation, g *grant) {
	for {
		c := g.credit.Load()
		if c < 0 {
			break // retired: what was taken counts as served
		}
		if g.credit.CompareAndSwap(c, c+r.tokens) {
			return
		}
	}
	if st, ok := r.settlement(0); ok {
		s.post(st)
	}
}

// retire revokes c's grant, if it has one, and takes back what was left of
// it where it was charged; what it served counts as demand. c must be
// prepared (see shard.prepare) at now.
//
// What was left, up to the grant's own size, is taken off the added totals
// it was put on, not added to the removed ones: nothing outside the shard's
// goroutine (a snapshot, a peer, Status) ever reads a total while a grant
// is on it (each retires first), so to them the added totals only ever
// grow, by what was taken. What settlements gave it beyond that is removed
// as their refunds would have been.
func (s *shard) retire(c *counter, now time.Time) {
	g := c.grant
	if g == nil {
		return
	}
	c.grant = nil
	s.grants.Delete(counterKey{c.consumer, c.key})
	left := max(g.credit.Swap(grantRevoked), 0)
	c.grantServed = g.size + g.given.Load() - left
	if left > 0 {
		back, extra := min(left, g.size), max(left-g.size, 0)
		local := &c.origins[0]
		if local.w.holds(g.bucket) {
			slot := &local.w.v[g.bucket&ringMask]
			slot.added -= back
			slot.charge(-extra, MaxTokens)
		}
		if g.periodStart != 0 && g.periodStart == c.periodStart {
			local.period.added -= back
			local.period.charge(-extra, periodCap)
		}
	}
	if left != g.size {
		// What it served, and what settlements gave back, changed the
		// totals since the last snapshot and Outgoing.
		c.dirty = true
		c.markChanged(g.bucket, s.round+1)
		if g.periodStart != 0 {
			c.round = s.round + 1
		}
	}
	if c.grantServed > 0 {
		c.demand.add(now.UnixNano(), c.grantServed, s.halfLife)
	}
}

// regrant offers c a grant again after a read of the counter retired g,
// the grant it had (see retire), if g served anything: a steady consumer's
// reservations keep being answered without the shard across the reads that
// retire grants without admitting anything (the cluster's news, which a
// node alone still collects once a second, and snapshots). The new grant
// is made as after an admission of g's unit: from the headroom as it
// stands now, sized by what g served but no smaller than g (a read soon
// after g was made finds that it served little; a smaller grant would soon
// send reservations, and bounds larger than the unit, to the shard). It
// changes no decision, as any grant (see grant.go); what was read was read
// without g. c must be prepared at now.
func (s *shard) regrant(c *counter, g *grant, lim Limits, now time.Time) {
	if g == nil || c.grant != nil || c.grantServed <= 0 {
		return
	}
	select {
	case <-s.closing: // Close's final snapshot leaves no grant behind
		return
	default:
	}
	cur := bucketOf(now)
	used := c.windowSum(cur)
	s.offer(c, lim, cur, used, g.unit, g.size, decision(lim, c, used))
}

// retireAll retires the grants of consumer's counters ("" = every counter).
func (s *shard) retireAll(consumer string, now time.Time) {
	for _, c := range s.counters {
		if c.grant != nil && (consumer == "" || c.consumer == consumer) {
			s.prepare(c, s.limits[c.consumer], now)
			s.retire(c, now)
		}
	}
}

// unusedGrant is what is left of c's grant, if it counts in the window at
// bucket cur: tokens charged that no reservation holds (yet).
func (c *counter) unusedGrant(cur int64) int64 {
	if g := c.grant; g != nil && g.bucket >= cur-windowBack {
		return max(g.credit.Load(), 0)
	}
	return 0
}
