package quota

import (
	"maps"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// maxPendingAge is how long an outstanding reservation is remembered; one
// never settled in that time keeps its estimate charged.
const maxPendingAge = time.Hour

// resendRounds is how many consecutive Outgoing(false) calls carry each
// change of this node's usage, so that a lost packet is repaired by one of
// the next ones without waiting for a full exchange.
const resendRounds = 3

type msgKind uint8

const (
	msgReserve msgKind = iota
	msgHeadroom
	msgSettle
	msgMerge
	msgSetLimits
	msgSetPeers
	msgCollect
	msgFlush
	msgOutgoing
	msgDrain // apply the mailbox's settlements; nothing else (the mailbox's timer)
)

// mailDelay is how long a settlement may wait in a shard's mailbox (see
// shard.mail) when no message comes to apply it first. Nothing can tell:
// every message (a Reserve, Status, snapshot, a cluster exchange) applies
// the mailbox before it is served. A firing costs a timer, a goroutine and
// a wake, so the delay is long enough that a steady stream of settlements
// (500 per second: ten per firing) wakes the shard's goroutine far less
// often than once per settlement, and far below the snapshot interval.
const mailDelay = 20 * time.Millisecond

// message is a request to one shard. reply is buffered(1) and receives
// exactly one result, so the actor never blocks on a caller; a nil reply
// (msgDrain) receives nothing.
type message struct {
	kind          msgKind
	consumer, key string
	tokens        int64             // reserve: estimate; settle: actual
	id            uint64            // settle
	usages        []Usage           // merge; read only
	limits        map[string]Limits // setLimits: the consumers whose limits changed
	peers         []string          // setPeers
	flag          bool              // flush: return encoded snapshots; outgoing: full; collect: with limits
	reply         chan result
}

// result is a shard's answer to one message.
type result struct {
	res      Reservation
	dec      Decision
	views    []keyView         // collect
	limits   map[string]Limits // collect
	refusals map[string]int64  // collect: share refusals by consumer
	snapshot []kv              // flush
	usages   []Usage           // outgoing
}

// kv is one database write of a snapshot; a nil val deletes key.
type kv struct {
	key string
	val []byte
}

// pending is an outstanding reservation.
type pending struct {
	c           *counter
	bucket      int64 // where the estimate was charged
	periodStart int64 // the period it was charged to (0 = none)
	tokens      int64
	at          int64 // Unix ns
}

// keyView is a read-only copy of one counter's state for Status.
type keyView struct {
	consumer, key string
	used          int64
	quotaUsed     int64
	byNode        map[string]int64 // key "" only: each origin's tokens in the window
}

// counterKey names a counter in a shard's map.
type counterKey struct{ consumer, key string }

// settlement is a SettleAsync queued in a shard's mailbox.
type settlement struct {
	consumer, key string
	id            uint64 // 0: an unmetered or drawn reservation's (see Reservation)
	tokens        int64
	bucket        int64 // an unmetered or drawn reservation's bucket
	// estimate is what the reservation charged (0 for an unmetered one).
	estimate int64
	// periodStart is the period a metered reservation was charged to.
	periodStart int64
	// drawn: a reservation taken from a grant, made at at (see grant.go).
	drawn bool
	at    int64
	// kept: what the settlement frees was given to the counter's grant,
	// which holds it charged (see grant.give); the window is not refunded.
	kept *grant
	// counted: the grant whose remaining counts what the settlement frees
	// (see grant.countRefund).
	counted *grant
}

// shard owns a subset of the counters. Only its run goroutine touches its
// fields after Open returns, but for the mailbox (mailMu's fields).
type shard struct {
	inbox chan message
	// The mailbox holds settlements (SettleAsync) queued without waking the
	// run goroutine: a message in the inbox wakes it, and waking a parked
	// goroutine costs more than the settlement. run applies the mailbox
	// before every message it takes from the inbox, so whatever is sent
	// after a settlement was queued sees it; a timer armed when the mailbox
	// turns non-empty sends msgDrain after mailDelay in case nothing else
	// comes. The counters are still changed only by run.
	mailMu sync.Mutex
	mail   []settlement
	// overs counts the settlements in mail above their estimate: offer
	// publishes no grant of a counter one of them charges (see grant.go).
	overs  int
	armed  bool         // the timer will send msgDrain
	timer  *time.Timer  // nil until first armed
	closed bool         // Close: no more timers
	spare  []settlement // run's: the previous batch, reused
	// counted is the settlement being applied's (see settlement.counted);
	// run's.
	counted *grant

	now        func() time.Time
	node       string
	lag        time.Duration     // Options.PeerLag
	halfLife   time.Duration     // Options.DemandHalfLife
	limits     map[string]Limits // every configured consumer's effective limits
	counters   map[counterKey]*counter
	pending    map[uint64]pending
	nextID     uint64
	tombstones []string // database keys of forgotten counters, deleted at the next flush
	// peers are the other live nodes; empty: this node is alone and the
	// share rule is off.
	peers []string
	// round counts Outgoing(false) calls; a change is stamped round+1, the
	// call that first carries it.
	round    uint64
	refusals map[string]int64 // share-rule refusals by consumer
	// grants publishes the live grant of each counter that has one (see
	// grant.go), for Reserve and Headroom to read without the goroutine;
	// only run stores and deletes them.
	grants   sync.Map // counterKey → *grant
	noGrants bool     // tests: every Reserve asks the goroutine
	// closing is the limiter's: once closed, reads make no new grant (the
	// final snapshot must leave none behind).
	closing <-chan struct{}
}

func newShard(node string, now func() time.Time, lag, halfLife time.Duration, limits map[string]Limits) *shard {
	return &shard{
		inbox:    make(chan message, 256),
		now:      now,
		node:     node,
		lag:      lag,
		halfLife: halfLife,
		limits:   maps.Clone(limits),
		counters: map[counterKey]*counter{},
		pending:  map[uint64]pending{},
		refusals: map[string]int64{},
	}
}

// run serves messages until stop is closed.
func (s *shard) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case m := <-s.inbox:
			s.drain()
			if m.kind == msgDrain {
				continue
			}
			r := s.handle(&m)
			if m.reply != nil {
				m.reply <- r
			}
		}
	}
}

// post queues a settlement in the mailbox and arms the timer that applies
// it if no message comes first. It never blocks on the run goroutine. A
// settlement above its estimate closes the counter's grant, and one below
// gives what it frees to it (see grant.go), under the lock under which
// offer publishes a grant: a grant published before is closed (or given
// to), and offer publishes none while one above waits in the mailbox (and
// takes what one below frees).
func (s *shard) post(st settlement) {
	s.mailMu.Lock()
	switch {
	case st.tokens > st.estimate:
		s.overs++
		if v, ok := s.grants.Load(counterKey{st.consumer, st.key}); ok {
			v.(*grant).closed.Store(true)
		}
	case st.tokens < st.estimate && (st.id != 0 || st.drawn):
		if v, ok := s.grants.Load(counterKey{st.consumer, st.key}); ok {
			if g := v.(*grant); !g.give(&st) {
				g.countRefund(&st)
			}
		}
	}
	s.mail = append(s.mail, st)
	if !s.armed && !s.closed {
		s.armed = true
		if s.timer == nil {
			s.timer = time.AfterFunc(mailDelay, s.ring)
		} else {
			s.timer.Reset(mailDelay)
		}
	}
	s.mailMu.Unlock()
}

// ring is the mailbox timer's: it asks run to apply the mailbox. A full
// inbox needs no reminder (run applies the mailbox before each message).
func (s *shard) ring() {
	s.mailMu.Lock()
	s.armed = false
	s.mailMu.Unlock()
	select {
	case s.inbox <- message{kind: msgDrain}:
	default:
	}
}

// stopMail stops the mailbox's timer for good (Close).
func (s *shard) stopMail() {
	s.mailMu.Lock()
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
	}
	s.mailMu.Unlock()
}

// drain applies the mailbox's settlements in the order they were queued.
func (s *shard) drain() {
	s.mailMu.Lock()
	batch := s.mail
	if len(batch) == 0 {
		s.mailMu.Unlock()
		return
	}
	s.mail = s.spare[:0]
	s.overs = 0
	s.mailMu.Unlock()
	now := s.now()
	for i := range batch {
		st := &batch[i]
		s.counted = st.counted
		switch {
		case st.drawn:
			s.settleDrawn(st, now)
		case st.id == 0:
			s.record(st.consumer, st.key, st.tokens, st.bucket, now)
		default:
			s.settleKept(st, now)
		}
	}
	s.counted = nil
	clear(batch) // let go of the strings and grants
	s.spare = batch[:0]
}

func (s *shard) handle(m *message) result {
	now := s.now()
	switch m.kind {
	case msgReserve:
		return s.reserve(m, now)
	case msgHeadroom:
		lim := s.limits[m.consumer]
		c := s.counter(m.consumer, m.key)
		cur := s.prepare(c, lim, now)
		d := decision(lim, c, c.windowSum(cur)-c.unusedGrant(cur))
		d.Allowed = true
		return result{dec: d}
	case msgSettle:
		return result{dec: s.settle(m.consumer, m.key, m.id, m.tokens, now)}
	case msgMerge:
		s.merge(m.usages, now)
	case msgSetLimits:
		for consumer := range m.limits {
			s.retireAll(consumer, now)
		}
		maps.Copy(s.limits, m.limits)
	case msgSetPeers:
		if len(m.peers) > 0 {
			s.retireAll("", now)
		}
		s.peers = m.peers
	case msgCollect:
		return s.collect(m.consumer, m.flag, now)
	case msgFlush:
		return result{snapshot: s.flush(now, m.flag)}
	case msgOutgoing:
		return result{usages: s.outgoing(m.flag, now)}
	}
	return result{}
}

// counter returns the counter of (consumer, key), creating it if needed.
func (s *shard) counter(consumer, key string) *counter {
	if c := s.counters[counterKey{consumer, key}]; c != nil {
		return c
	}
	c := newCounter(consumer, key, s.node)
	s.counters[counterKey{consumer, key}] = c
	return c
}

// prepare brings c to now: the right period and the local ring at cur.
func (s *shard) prepare(c *counter, lim Limits, now time.Time) (cur int64) {
	c.roll(now, lim.Period)
	cur = bucketOf(now)
	c.origins[0].w.advance(cur)
	return cur
}

// decision fills the TPM fields of d for a window holding used tokens.
func decision(lim Limits, c *counter, used int64) Decision {
	d := Decision{Limit: lim.TPM, Remaining: lim.remaining(used)}
	if lim.QuotaTokens > 0 && c.periodEnd != 0 {
		d.QuotaResetsAt = time.Unix(c.periodEnd, 0).UTC()
	}
	return d
}

func (s *shard) reserve(m *message, now time.Time) result {
	lim := s.limits[m.consumer]
	c := s.counter(m.consumer, m.key)
	cur := s.prepare(c, lim, now)
	s.retire(c, now)
	used := c.windowSum(cur)
	d := decision(lim, c, used)
	if lim.TPM > 0 && m.tokens > lim.TPM || lim.QuotaTokens > 0 && m.tokens > lim.QuotaTokens {
		d.Reason = ReasonTooLarge
		return result{dec: d}
	}
	ns := now.UnixNano()
	limited := lim.TPM > 0 || lim.QuotaTokens > 0
	if limited {
		// Refused requests are demand too: a node whose clients wait needs
		// a larger share.
		c.demand.add(ns, m.tokens, s.halfLife)
	}
	switch {
	case lim.QuotaTokens > 0 && c.periodSum()+m.tokens > lim.QuotaTokens:
		d.Reason = ReasonQuota
		d.RetryAfter = d.QuotaResetsAt.Sub(now)
		return result{dec: d}
	case lim.TPM > 0 && used+m.tokens > lim.TPM:
		d.Reason = ReasonTPM
		d.RetryAfter = c.retryAfter(now, cur, used+m.tokens-lim.TPM)
		return result{dec: d}
	}
	if limited && len(s.peers) > 0 {
		if refused, retry, reason := s.shareRefusal(c, lim, used, m.tokens, now, cur); refused {
			d.Reason, d.RetryAfter = reason, retry
			if reason == ReasonQuota {
				d.RetryAfter = d.QuotaResetsAt.Sub(now)
			}
			s.refusals[m.consumer]++
			return result{dec: d}
		}
		c.flight.add(ns, m.tokens, s.lag)
	}
	local := &c.origins[0]
	b := local.w.head // cur, or later if the clock stepped back
	local.w.v[b&ringMask].charge(m.tokens, MaxTokens)
	if c.periodStart != 0 {
		local.period.charge(m.tokens, periodCap)
	}
	c.markChanged(b, s.round+1)
	c.dirty = true
	c.pending++
	s.nextID++
	s.pending[s.nextID] = pending{c: c, bucket: b, periodStart: c.periodStart, tokens: m.tokens, at: ns}
	d.Allowed = true
	d.Remaining = lim.remaining(used + m.tokens)
	s.offer(c, lim, cur, used+m.tokens, m.tokens, 0, d)
	return result{
		res: Reservation{consumer: m.consumer, key: m.key, id: s.nextID, tokens: m.tokens, bucket: b, periodStart: c.periodStart, settled: new(atomic.Bool)},
		dec: d,
	}
}

// settle replaces reservation id's estimate by tokens (see Limiter.Settle).
func (s *shard) settle(consumer, key string, id uint64, tokens int64, now time.Time) Decision {
	p, ok := s.pending[id]
	if ok {
		delete(s.pending, id)
		p.c.pending--
		return s.apply(p, tokens, false, now)
	}
	c := s.counter(consumer, key)
	lim := s.limits[c.consumer]
	cur := s.prepare(c, lim, now)
	d := decision(lim, c, c.windowSum(cur)-c.unusedGrant(cur))
	d.Allowed = true
	return d
}

// settleKept is settle for a settlement from the mailbox, which may have
// given what it frees to the counter's grant (settlement.kept).
func (s *shard) settleKept(st *settlement, now time.Time) {
	if p, ok := s.pending[st.id]; ok {
		delete(s.pending, st.id)
		p.c.pending--
		s.apply(p, st.tokens, st.kept != nil, now)
		return
	}
	s.settle(st.consumer, st.key, st.id, st.tokens, now)
}

// settleDrawn settles a reservation taken from a grant (see grant.go), as
// settle does one of the shard's own.
func (s *shard) settleDrawn(st *settlement, now time.Time) {
	s.apply(pending{c: s.counter(st.consumer, st.key), bucket: st.bucket, periodStart: st.periodStart, tokens: st.estimate, at: st.at}, st.tokens, st.kept != nil, now)
}

// apply replaces the estimate of reservation p by tokens and returns the
// counter's Decision after it. A charge above the estimate retires the
// counter's grant first: nothing more is admitted before it counts. kept:
// what a charge below the estimate frees was given to the grant (see
// grant.give), which takes it back from the window when retired.
func (s *shard) apply(p pending, tokens int64, kept bool, now time.Time) Decision {
	c := p.c
	lim := s.limits[c.consumer]
	cur := s.prepare(c, lim, now)
	if delta := max(tokens, 0) - p.tokens; delta != 0 && !(kept && delta < 0) {
		if delta > 0 {
			s.retire(c, now)
		}
		local := &c.origins[0]
		if p.bucket >= cur-windowBack && local.w.holds(p.bucket) {
			local.w.v[p.bucket&ringMask].charge(delta, MaxTokens)
			c.markChanged(p.bucket, s.round+1)
			if g := c.grant; delta < 0 && g != nil && g != s.counted && g.limit > 0 {
				g.remaining.Add(-delta) // what a Reserve or Headroom from it reports
			}
		}
		if p.periodStart != 0 && p.periodStart == c.periodStart {
			local.period.charge(delta, periodCap)
			c.round = s.round + 1
		}
		if len(s.peers) > 0 {
			ns := now.UnixNano()
			if delta > 0 {
				c.flight.add(ns, delta, s.lag)
			} else {
				c.flight.refund(p.at, -delta, ns, s.lag)
			}
		}
		c.dirty = true
	}
	d := decision(lim, c, c.windowSum(cur)-c.unusedGrant(cur))
	d.Allowed = true
	return d
}

// record charges tokens used by an unmetered reservation (one made while
// the consumer had no limit at all, without asking the shard) to bucket,
// where Reserve would have charged its estimate and Settle corrected it:
// the window ends as a Reserve and a Settle would have left it. With peers
// they are in flight until the peers have seen them.
func (s *shard) record(consumer, key string, tokens, bucket int64, now time.Time) {
	c := s.counter(consumer, key)
	cur := s.prepare(c, s.limits[consumer], now)
	if tokens <= 0 {
		return
	}
	s.retire(c, now) // tokens beyond any estimate: they count before the next admission
	local := &c.origins[0]
	bucket = min(bucket, local.w.head)
	if bucket < cur-windowBack || !local.w.holds(bucket) {
		return // left the window, as a settlement would have found it
	}
	local.w.v[bucket&ringMask].charge(tokens, MaxTokens)
	c.markChanged(bucket, s.round+1)
	if len(s.peers) > 0 {
		c.flight.add(now.UnixNano(), tokens, s.lag)
	}
	c.dirty = true
}

// merge joins remote origins' usage into the counters (see MergeUsage).
func (s *shard) merge(us []Usage, now time.Time) {
	cur, sec, ns := bucketOf(now), now.Unix(), now.UnixNano()
	for i := range us {
		u := &us[i]
		lim, known := s.limits[u.Consumer]
		if u.Origin == s.node || u.Origin == "" || !known {
			continue
		}
		c := s.counter(u.Consumer, u.Key)
		s.prepare(c, lim, now)
		s.retire(c, now) // the grant did not count this usage
		oi := c.origin(u.Origin)
		if oi < 0 {
			continue
		}
		o := &c.origins[oi]
		for _, bu := range u.Buckets {
			if bu.Bucket < cur-mergeBack || bu.Bucket > cur+maxFuture {
				continue
			}
			v := pn{min(max(bu.Added, 0), MaxTokens), min(max(bu.Removed, 0), MaxTokens)}
			if v.isZero() {
				continue
			}
			o.w.advance(bu.Bucket)
			if o.w.holds(bu.Bucket) && o.w.v[bu.Bucket&ringMask].join(v) {
				c.dirty = true
			}
		}
		// A record for an older period than the current one is stale; one
		// for a later period (its node rolled over first) replaces the
		// origin's record and counts once this node rolls over too.
		if ps := u.PeriodStart; c.periodStart != 0 && ps >= c.periodStart && ps <= sec+maxFuture && ps >= o.periodStart {
			v := pn{min(max(u.PeriodAdded, 0), periodCap), min(max(u.PeriodRemoved, 0), periodCap)}
			if ps > o.periodStart {
				o.periodStart, o.period = ps, v
				c.dirty = true
			} else if o.period.join(v) {
				c.dirty = true
			}
		}
		if u.Demand >= 0 {
			o.demand, o.demandAt = float64(u.Demand), ns
		}
	}
}

// outgoing returns this node's usage to tell peers (see Limiter.Outgoing).
func (s *shard) outgoing(full bool, now time.Time) []Usage {
	ns := now.UnixNano()
	if !full {
		s.round++
	}
	var out []Usage
	for _, c := range s.counters {
		lim, known := s.limits[c.consumer]
		if !known {
			continue // unlimited everywhere: nothing to enforce together
		}
		lo := s.prepare(c, lim, now) - mergeBack
		g := c.grant
		s.retire(c, now)
		out = s.report(out, c, lo, full, ns)
		s.regrant(c, g, lim, now)
	}
	return out
}

// report appends c's usage to out (see outgoing), its grant retired.
func (s *shard) report(out []Usage, c *counter, lo int64, full bool, ns int64) []Usage {
	demand := int64(math.Round(c.demand.at(ns, s.halfLife)))
	if full {
		for i := range c.origins {
			d := int64(-1) // a relayed origin's demand is not fresh
			if i == 0 {
				d = demand
			}
			if u := c.usage(i, lo, 0, d); len(u.Buckets) > 0 || u.PeriodStart != 0 || u.Demand > 0 {
				out = append(out, u)
				if i == 0 {
					c.sent.add(ns, float64(demand), s.lag)
				}
			}
		}
		return out
	}
	// Peers decay the demand they were sent; send it again only when
	// it has moved away from what they now assume.
	had := c.sent.last(ns, s.halfLife)
	diff := math.Abs(float64(demand) - had)
	moved := diff >= 1 && diff > 0.1*max(float64(demand), had)
	since := s.round + 1 - min(s.round, resendRounds)
	if c.round < since && !moved {
		return out
	}
	out = append(out, c.usage(0, lo, since, demand))
	c.sent.add(ns, float64(demand), s.lag)
	return out
}

// usage returns origin i's part of c: its non-zero buckets from lo on (only
// those of this node stamped round since or later, unless since is 0), its
// period record and the given demand.
func (c *counter) usage(i int, lo int64, since uint64, demand int64) Usage {
	o := &c.origins[i]
	u := Usage{Origin: o.name, Consumer: c.consumer, Key: c.key, Demand: demand}
	if o.periodStart != 0 && (i > 0 || !o.period.isZero()) {
		u.PeriodStart, u.PeriodAdded, u.PeriodRemoved = o.periodStart, o.period.added, o.period.removed
	}
	for b := max(lo, o.w.head-ringSize+1); b <= o.w.head; b++ {
		v := o.w.v[b&ringMask]
		if v.isZero() || since != 0 && c.slotRound[b&ringMask] < since {
			continue
		}
		u.Buckets = append(u.Buckets, BucketUsage{Bucket: b, Added: v.added, Removed: v.removed})
	}
	return u
}

// collect returns views of the counters of consumer ("" = every consumer)
// and the share refusals, and with withLimits a copy of the limits (every
// shard holds the same, so one shard is asked for them).
func (s *shard) collect(consumer string, withLimits bool, now time.Time) result {
	var r result
	for _, c := range s.counters {
		if consumer != "" && c.consumer != consumer {
			continue
		}
		cur := s.prepare(c, s.limits[c.consumer], now)
		s.retire(c, now)
		v := keyView{consumer: c.consumer, key: c.key, quotaUsed: c.periodSum()}
		if c.key == "" {
			v.byNode = map[string]int64{}
		}
		for i := range c.origins {
			n := c.origins[i].w.sumFrom(cur - windowBack)
			v.used += n
			if v.byNode != nil && (n != 0 || i == 0) {
				v.byNode[c.origins[i].name] = n
			}
		}
		r.views = append(r.views, v)
	}
	if consumer == "" {
		if withLimits {
			r.limits = maps.Clone(s.limits)
		}
		r.refusals = maps.Clone(s.refusals)
	} else {
		if lim, ok := s.limits[consumer]; ok && withLimits {
			r.limits = map[string]Limits{consumer: lim}
		}
		r.refusals = map[string]int64{consumer: s.refusals[consumer]}
	}
	return r
}

// flush forgets idle counters and old reservations and returns the database
// writes that bring the snapshot up to date: deletes of forgotten counters
// first (a counter forgotten and created again is then written after its
// delete), then the changed counters. Nothing is encoded unless encode is set.
func (s *shard) flush(now time.Time, encode bool) []kv {
	cutoff := now.Add(-maxPendingAge).Unix()
	for id, p := range s.pending {
		if p.at/int64(time.Second) < cutoff {
			p.c.pending--
			delete(s.pending, id)
		}
	}
	ns := now.UnixNano()
	var sets []kv
	for k, c := range s.counters {
		lim := s.limits[c.consumer]
		cur := s.prepare(c, lim, now)
		g := c.grant
		s.retire(c, now) // the snapshot holds no unused grant
		c.flight.expire(ns, s.lag)
		if c.idle(cur, ns, s.halfLife) {
			delete(s.counters, k)
			if c.stored {
				s.tombstones = append(s.tombstones, c.dbKey)
			}
			continue
		}
		if c.dirty && encode {
			sets = append(sets, kv{key: c.dbKey, val: c.encode(nil)})
			c.stored = true
		}
		c.dirty = false
		s.regrant(c, g, lim, now)
	}
	var out []kv
	if encode {
		out = make([]kv, 0, len(s.tombstones)+len(sets))
		for _, k := range s.tombstones {
			out = append(out, kv{key: k})
		}
		out = append(out, sets...)
	}
	s.tombstones = s.tombstones[:0]
	return out
}
