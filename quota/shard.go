package quota

import (
	"maps"
	"sort"
	"time"
)

// maxPendingAge is how long an outstanding reservation is remembered; one
// never settled in that time keeps its estimate charged.
const maxPendingAge = time.Hour

type msgKind uint8

const (
	msgReserve msgKind = iota
	msgHeadroom
	msgSettle
	msgMerge
	msgSetLimits
	msgCollect
	msgFlush
)

// message is a request to one shard. reply is buffered(1) and receives
// exactly one result, so the actor never blocks on a caller.
type message struct {
	kind          msgKind
	consumer, key string
	tokens        int64  // reserve: estimate; settle: actual; merge: bucket total
	id            uint64 // settle
	bucket        int64  // merge
	origin        string // merge
	limits        Limits // setLimits
	encode        bool   // flush: return encoded snapshots
	reply         chan result
}

// result is a shard's answer to one message.
type result struct {
	res      Reservation
	dec      Decision
	views    []keyView         // collect
	limits   map[string]Limits // collect
	snapshot []kv              // flush
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
	created     int64 // Unix seconds
}

// keyView is a read-only copy of one counter's state for Status.
type keyView struct {
	consumer, key string
	used          int64
	quotaUsed     int64
	byNode        map[string]int64
}

// counterKey names a counter in a shard's map.
type counterKey struct{ consumer, key string }

// shard owns a subset of the counters. Only its run goroutine touches its
// fields after Open returns.
type shard struct {
	inbox      chan message
	now        func() time.Time
	node       string
	limits     map[string]Limits // every configured consumer's effective limits
	counters   map[counterKey]*counter
	pending    map[uint64]pending
	nextID     uint64
	tombstones []string // database keys of forgotten counters, deleted at the next flush
}

func newShard(node string, now func() time.Time, limits map[string]Limits) *shard {
	return &shard{
		inbox:    make(chan message, 256),
		now:      now,
		node:     node,
		limits:   maps.Clone(limits),
		counters: map[counterKey]*counter{},
		pending:  map[uint64]pending{},
	}
}

// run serves messages until stop is closed.
func (s *shard) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case m := <-s.inbox:
			m.reply <- s.handle(&m)
		}
	}
}

func (s *shard) handle(m *message) result {
	now := s.now()
	switch m.kind {
	case msgReserve:
		return s.reserve(m, now)
	case msgHeadroom:
		lim := s.limits[m.consumer]
		c := s.counter(m.consumer, m.key)
		d := decision(lim, c, c.windowSum(s.prepare(c, lim, now)))
		d.Allowed = true
		return result{dec: d}
	case msgSettle:
		return result{dec: s.settle(m, now)}
	case msgMerge:
		s.merge(m, now)
	case msgSetLimits:
		s.limits[m.consumer] = m.limits
	case msgCollect:
		return s.collect(m.consumer, now)
	case msgFlush:
		return result{snapshot: s.flush(now, m.encode)}
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
	d := Decision{Limit: lim.TPM}
	if lim.TPM > 0 {
		d.Remaining = max(lim.TPM-used, 0)
	}
	if lim.QuotaTokens > 0 && c.periodEnd != 0 {
		d.QuotaResetsAt = time.Unix(c.periodEnd, 0).UTC()
	}
	return d
}

func (s *shard) reserve(m *message, now time.Time) result {
	lim := s.limits[m.consumer]
	c := s.counter(m.consumer, m.key)
	cur := s.prepare(c, lim, now)
	used := c.windowSum(cur)
	d := decision(lim, c, used)
	switch {
	case lim.TPM > 0 && m.tokens > lim.TPM, lim.QuotaTokens > 0 && m.tokens > lim.QuotaTokens:
		d.Reason = ReasonTooLarge
		return result{dec: d}
	case lim.QuotaTokens > 0 && c.periodSum()+m.tokens > lim.QuotaTokens:
		d.Reason = ReasonQuota
		d.RetryAfter = d.QuotaResetsAt.Sub(now)
		return result{dec: d}
	case lim.TPM > 0 && used+m.tokens > lim.TPM:
		d.Reason = ReasonTPM
		d.RetryAfter = c.retryAfter(now, cur, used+m.tokens-lim.TPM)
		return result{dec: d}
	}
	local := &c.origins[0]
	b := local.w.head // cur, or later if the clock stepped back
	local.w.v[b&ringMask] += m.tokens
	if c.periodStart != 0 {
		local.period += m.tokens
	}
	c.dirty = true
	c.pending++
	s.nextID++
	s.pending[s.nextID] = pending{c: c, bucket: b, periodStart: c.periodStart, tokens: m.tokens, created: now.Unix()}
	d.Allowed = true
	if lim.TPM > 0 {
		d.Remaining = max(lim.TPM-used-m.tokens, 0)
	}
	return result{
		res: Reservation{consumer: m.consumer, key: m.key, id: s.nextID, tokens: m.tokens},
		dec: d,
	}
}

func (s *shard) settle(m *message, now time.Time) Decision {
	p, ok := s.pending[m.id]
	var c *counter
	if ok {
		delete(s.pending, m.id)
		c = p.c
		c.pending--
	} else {
		c = s.counter(m.consumer, m.key)
	}
	lim := s.limits[c.consumer]
	cur := s.prepare(c, lim, now)
	if ok {
		delta := max(m.tokens, 0) - p.tokens
		local := &c.origins[0]
		if p.bucket >= cur-windowBack && local.w.holds(p.bucket) {
			local.w.v[p.bucket&ringMask] = max(local.w.v[p.bucket&ringMask]+delta, 0)
		}
		if p.periodStart != 0 && p.periodStart == c.periodStart {
			local.period = max(local.period+delta, 0)
		}
		c.dirty = true
	}
	d := decision(lim, c, c.windowSum(cur))
	d.Allowed = true
	return d
}

func (s *shard) merge(m *message, now time.Time) {
	if m.origin == s.node || m.tokens <= 0 {
		return
	}
	cur := bucketOf(now)
	if m.bucket < cur-mergeBack || m.bucket > cur+maxFuture {
		return
	}
	lim := s.limits[m.consumer]
	c := s.counter(m.consumer, m.key)
	s.prepare(c, lim, now)
	o := &c.origins[c.origin(m.origin)]
	o.w.advance(m.bucket)
	old := o.w.at(m.bucket)
	if m.tokens <= old {
		return
	}
	o.w.v[m.bucket&ringMask] = m.tokens
	if sec := bucketTime(m.bucket).Unix(); c.periodStart != 0 && sec >= c.periodStart && sec < c.periodEnd {
		o.period += m.tokens - old
	}
	c.dirty = true
}

// collect returns views of the counters of consumer ("" = every consumer)
// and a copy of the limits.
func (s *shard) collect(consumer string, now time.Time) result {
	var r result
	for _, c := range s.counters {
		if consumer != "" && c.consumer != consumer {
			continue
		}
		cur := s.prepare(c, s.limits[c.consumer], now)
		v := keyView{consumer: c.consumer, key: c.key, quotaUsed: max(c.periodSum(), 0), byNode: map[string]int64{}}
		for i := range c.origins {
			n := c.origins[i].w.sumFrom(cur - windowBack)
			v.used += n
			if n != 0 || i == 0 {
				v.byNode[c.origins[i].name] = n
			}
		}
		r.views = append(r.views, v)
	}
	sort.Slice(r.views, func(i, j int) bool { return r.views[i].key < r.views[j].key })
	if consumer == "" {
		r.limits = maps.Clone(s.limits)
	} else if lim, ok := s.limits[consumer]; ok {
		r.limits = map[string]Limits{consumer: lim}
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
		if p.created < cutoff {
			p.c.pending--
			delete(s.pending, id)
		}
	}
	var sets []kv
	for k, c := range s.counters {
		cur := s.prepare(c, s.limits[c.consumer], now)
		if c.idle(cur) {
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
