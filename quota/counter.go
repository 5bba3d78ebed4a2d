package quota

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

const (
	// bucketNanos is the width of one window bucket. It is the same on every
	// node of a cluster, so (origin, bucket) names the same interval everywhere.
	bucketNanos = int64(time.Second)
	// windowBack is how many buckets before the current one count: admission
	// in bucket b counts b-windowBack..b, 61 buckets that cover every 60 s
	// interval ending in bucket b. Conservative: it can never over-admit.
	windowBack = 60
	// ringSize buckets are held per origin (a power of two ≥ windowBack+1,
	// with room for merges of slightly future buckets from skewed clocks).
	ringSize = 64
	ringMask = ringSize - 1
	// maxFuture is how many buckets (seconds) ahead of the local clock a
	// merged bucket or period start may be (clock skew between nodes); later
	// ones are ignored.
	maxFuture = 2
	// mergeBack is how many buckets before the current one a merge may name:
	// all of them are still held by the ring (head ≤ cur+maxFuture).
	mergeBack = ringSize - maxFuture - 1
	// maxBucket bounds stored bucket indexes (year ~36000) so ring arithmetic
	// cannot overflow on a corrupt value.
	maxBucket = 1 << 40
	// periodCap bounds each grow-only period total. A period total sums a
	// whole year of usage, so it may pass MaxTokens; summed over maxOrigins
	// origins it still cannot overflow.
	periodCap = 1 << 52
	// maxOrigins bounds the remote origins one counter holds, so a confused
	// or hostile peer naming endless origins cannot grow memory or overflow
	// sums (64 buckets × maxOrigins × MaxTokens < 2^63). Clusters are far
	// smaller; usage of origins past the bound is ignored.
	maxOrigins = 256
)

// bucketOf returns the index of the bucket that holds t.
func bucketOf(t time.Time) int64 {
	n := t.UnixNano()
	b := n / bucketNanos
	if n < 0 && n%bucketNanos != 0 {
		b--
	}
	return b
}

// pn is the usage of one origin in one bucket (or one period) as two
// grow-only totals: what was added (reservations, settlements above the
// estimate) and what was removed (settlements below it). A node only ever
// raises its own totals, so merging a copy from elsewhere takes the larger of
// each: a copy seen twice, late or out of order counts once, and a refund
// that arrives before its reservation cannot be lost. The usage is the
// difference, never below zero.
type pn struct{ added, removed int64 }

func (p pn) value() int64 { return max(p.added-p.removed, 0) }

func (p pn) isZero() bool { return p.added == 0 && p.removed == 0 }

// join raises p to q per component and reports whether p changed.
func (p *pn) join(q pn) bool {
	if q.added <= p.added && q.removed <= p.removed {
		return false
	}
	p.added, p.removed = max(p.added, q.added), max(p.removed, q.removed)
	return true
}

// charge records delta tokens (negative: a refund), each total capped at
// limit.
func (p *pn) charge(delta, limit int64) {
	if delta >= 0 {
		p.added = min(p.added+delta, limit)
	} else {
		p.removed = min(p.removed-delta, limit)
	}
}

// ring holds the per-bucket totals of one origin for the buckets
// head-ringSize+1 .. head. Slots of buckets outside that range are stale.
type ring struct {
	head int64
	v    [ringSize]pn
}

// advance moves head forward to b, zeroing the slots it reuses.
func (r *ring) advance(b int64) {
	if b <= r.head {
		return
	}
	if b-r.head >= ringSize {
		clear(r.v[:])
	} else {
		for i := r.head + 1; i <= b; i++ {
			r.v[i&ringMask] = pn{}
		}
	}
	r.head = b
}

// holds reports whether bucket b is in the ring.
func (r *ring) holds(b int64) bool { return b <= r.head && b > r.head-ringSize }

// at returns bucket b's totals (zero if not held).
func (r *ring) at(b int64) pn {
	if !r.holds(b) {
		return pn{}
	}
	return r.v[b&ringMask]
}

// sumFrom returns the usage in the held buckets from lo to head.
func (r *ring) sumFrom(lo int64) int64 {
	lo = max(lo, r.head-ringSize+1)
	var s int64
	for b := lo; b <= r.head; b++ {
		s += r.v[b&ringMask].value()
	}
	return s
}

// anyFrom reports whether a held bucket from lo to head has a non-zero total.
func (r *ring) anyFrom(lo int64) bool {
	lo = max(lo, r.head-ringSize+1)
	for b := lo; b <= r.head; b++ {
		if !r.v[b&ringMask].isZero() {
			return true
		}
	}
	return false
}

// origin is one node's contribution to a counter.
type origin struct {
	name string
	w    ring
	// period is the origin's usage in the period starting at periodStart
	// (Unix seconds; 0 = none). It counts only while that is the counter's
	// current period: a remote node that rolled over first already reports
	// the next one.
	periodStart int64
	period      pn
	// demand is a remote origin's last reported demand (tokens per second),
	// received at demandAt (Unix nanoseconds); it decays from then on.
	demand   float64
	demandAt int64
}

// counter is the usage of one (consumer, key). Owned by one shard.
type counter struct {
	consumer, key string
	dbKey         string
	// origins[0] is this node; the others were merged from remote nodes.
	origins []origin
	// periodStart and periodEnd bound the current quota period in Unix
	// seconds; both are 0 when the consumer has no period.
	periodStart, periodEnd int64
	pending                int  // outstanding reservations
	dirty                  bool // changed since the last snapshot
	stored                 bool // a snapshot of it is in the database

	// Gossip of this node's own usage (origins[0]): the Outgoing round that
	// first carries the latest change of each ring slot, and of the counter
	// as a whole (buckets or period); see shard.outgoing.
	slotRound [ringSize]uint64
	round     uint64
	// sent holds the demands recently sent to peers.
	sent published

	demand rate     // this node's requests, tokens per second
	flight inflight // this node's recent reservations, unseen by peers

	// grant is the counter's live grant (see grant.go), nil if none;
	// grantServed is what its last retired grant served.
	grant       *grant
	grantServed int64
}

func newCounter(consumer, key, node string) *counter {
	return &counter{
		consumer: consumer,
		key:      key,
		dbKey:    counterDBKey(consumer, key),
		origins:  []origin{{name: node}},
	}
}

// roll moves the counter into the period that holds now.
func (c *counter) roll(now time.Time, p Period) {
	if p == NoPeriod {
		if c.periodStart != 0 || c.periodEnd != 0 {
			c.setPeriod(0, 0)
		}
		return
	}
	sec := now.Unix()
	if c.periodEnd != 0 && sec >= c.periodStart && sec < c.periodEnd {
		return
	}
	start, end := p.Bounds(now)
	if s := start.Unix(); s != c.periodStart {
		c.setPeriod(s, end.Unix())
		return
	}
	c.periodEnd = end.Unix()
}

// setPeriod makes [start, end) the current period (0, 0: none). This node's
// total starts again from zero; a remote origin's record is kept if it is
// for the new period or a later one (that origin rolled over first) and
// dropped if older.
func (c *counter) setPeriod(start, end int64) {
	c.periodStart, c.periodEnd = start, end
	for i := range c.origins {
		o := &c.origins[i]
		keep := i > 0 && start != 0 && o.periodStart >= start
		if i == 0 && o.periodStart == start {
			keep = true
		}
		if keep {
			continue
		}
		if o.periodStart != 0 || !o.period.isZero() {
			c.dirty = true
		}
		o.periodStart, o.period = 0, pn{}
		if i == 0 {
			o.periodStart = start
		}
	}
}

// windowSum returns the tokens counted against admission in bucket cur.
func (c *counter) windowSum(cur int64) int64 {
	var s int64
	for i := range c.origins {
		s += c.origins[i].w.sumFrom(cur - windowBack)
	}
	return s
}

// periodSum returns the tokens charged in the current period.
func (c *counter) periodSum() int64 {
	if c.periodStart == 0 {
		return 0
	}
	var s int64
	for i := range c.origins {
		if o := &c.origins[i]; o.periodStart == c.periodStart {
			s += o.period.value()
		}
	}
	return s
}

// retryAfter returns how long until enough buckets leave the window for
// over more tokens to fit, measured from now (in bucket cur).
func (c *counter) retryAfter(now time.Time, cur, over int64) time.Duration {
	hi := cur
	for i := range c.origins {
		hi = max(hi, c.origins[i].w.head)
	}
	var freed int64
	b := cur - windowBack
	for ; b < hi; b++ {
		for i := range c.origins {
			freed += c.origins[i].w.at(b).value()
		}
		if freed >= over {
			break
		}
	}
	// Bucket b stops counting once the current bucket is b+windowBack+1.
	return time.Unix(0, (b+windowBack+1)*bucketNanos).Sub(now)
}

// origin returns the index of the named origin, adding it if new; -1 if it
// is new and the counter already holds maxOrigins remote origins.
func (c *counter) origin(name string) int {
	for i := range c.origins {
		if c.origins[i].name == name {
			return i
		}
	}
	if len(c.origins) > maxOrigins {
		return -1
	}
	c.origins = append(c.origins, origin{name: name})
	return len(c.origins) - 1
}

// markChanged records that this node's bucket b (and so the counter) changed
// and must go out with Outgoing round next.
func (c *counter) markChanged(b int64, next uint64) {
	c.slotRound[b&ringMask] = next
	c.round = next
}

// idle reports whether the counter holds nothing worth keeping at bucket cur
// (now, in Unix ns): no outstanding reservation, no period totals, no bucket
// a merge could still name (so forgetting it cannot make a replayed merge
// count twice), nothing in flight and no demand worth reporting.
func (c *counter) idle(cur, now int64, halfLife time.Duration) bool {
	if c.pending > 0 || c.flight.sum != 0 || c.demand.at(now, halfLife) >= 0.5 {
		return false
	}
	for i := range c.origins {
		o := &c.origins[i]
		if !o.period.isZero() || o.w.anyFrom(cur-mergeBack) || decay(o.demand, now-o.demandAt, halfLife) >= 0.5 {
			return false
		}
	}
	return true
}

// counterDBKey is the database key of a counter.
func counterDBKey(consumer, key string) string {
	return prefixQuota + consumer + "\x00" + key
}

// parseCounterDBKey splits a database key made by counterDBKey.
func parseCounterDBKey(k []byte) (consumer, key string, ok bool) {
	if len(k) < len(prefixQuota) || string(k[:len(prefixQuota)]) != prefixQuota {
		return "", "", false
	}
	rest := k[len(prefixQuota):]
	for i, ch := range rest {
		if ch == 0 {
			return string(rest[:i]), string(rest[i+1:]), true
		}
	}
	return "", "", false
}

// Versions of the encoded counter (its first byte). Version 1 held one net
// total per bucket and period; version 2 holds the grow-only pair.
const (
	counterVersion1 = 1
	counterVersion  = 2
)

// encode returns the counter's snapshot value:
//
//	version byte (2)
//	varint  periodStart (Unix seconds, 0 = none)
//	uvarint number of origins, then per origin:
//	  uvarint name length, name
//	  varint  start of the origin's period record (0 = none), and unless 0:
//	          uvarint added, uvarint removed
//	  uvarint number of buckets, then per bucket: the bucket index (Unix
//	          seconds; the first as a varint, the others as a uvarint
//	          increase over the previous one), uvarint added, uvarint removed
//
// Only non-zero buckets are written; bucket indexes let a reader drop the
// stale ones.
func (c *counter) encode(buf []byte) []byte {
	buf = append(buf, counterVersion)
	buf = binary.AppendVarint(buf, c.periodStart)
	buf = binary.AppendUvarint(buf, uint64(len(c.origins)))
	for i := range c.origins {
		o := &c.origins[i]
		buf = binary.AppendUvarint(buf, uint64(len(o.name)))
		buf = append(buf, o.name...)
		buf = binary.AppendVarint(buf, o.periodStart)
		if o.periodStart != 0 {
			buf = binary.AppendUvarint(buf, uint64(o.period.added))
			buf = binary.AppendUvarint(buf, uint64(o.period.removed))
		}
		n := 0
		for b := o.w.head - ringSize + 1; b <= o.w.head; b++ {
			if !o.w.v[b&ringMask].isZero() {
				n++
			}
		}
		buf = binary.AppendUvarint(buf, uint64(n))
		prev := int64(0)
		for b := o.w.head - ringSize + 1; b <= o.w.head; b++ {
			v := o.w.v[b&ringMask]
			if v.isZero() {
				continue
			}
			if prev == 0 {
				buf = binary.AppendVarint(buf, b)
			} else {
				buf = binary.AppendUvarint(buf, uint64(b-prev))
			}
			prev = b
			buf = binary.AppendUvarint(buf, uint64(v.added))
			buf = binary.AppendUvarint(buf, uint64(v.removed))
		}
	}
	return buf
}

var errCorrupt = errors.New("corrupt counter value")

// reader decodes the varints of one value; the first error sticks, and
// wraps base.
type reader struct {
	v    []byte
	err  error
	base error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{r.base}, args...)...)
	}
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	x, n := binary.Varint(r.v)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.v = r.v[n:]
	return x
}

// uvarint reads a uvarint no larger than limit.
func (r *reader) uvarint(limit uint64) uint64 {
	if r.err != nil {
		return 0
	}
	x, n := binary.Uvarint(r.v)
	if n <= 0 {
		r.fail("bad uvarint")
		return 0
	}
	if x > limit {
		r.fail("%d out of range", x)
		return 0
	}
	r.v = r.v[n:]
	return x
}

// count reads an int64 total in [0, limit].
func (r *reader) count(limit int64) int64 { return int64(r.uvarint(uint64(limit))) }

// net reads a version 1 net total: a varint, clamped to [0, limit] (version
// 1 did not bound bucket totals).
func (r *reader) net(limit int64) int64 {
	x := r.varint()
	if x < 0 {
		r.fail("negative total %d", x)
	}
	return min(x, limit)
}

// str reads a uvarint length and that many bytes.
func (r *reader) str() string {
	n := r.uvarint(uint64(len(r.v)))
	return r.bytes(n)
}

// bytes reads n bytes as a string.
func (r *reader) bytes(n uint64) string {
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.v)) {
		r.fail("%d bytes past the end", n-uint64(len(r.v)))
		return ""
	}
	s := string(r.v[:n])
	r.v = r.v[n:]
	return s
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.v) == 0 {
		r.fail("truncated")
		return 0
	}
	b := r.v[0]
	r.v = r.v[1:]
	return b
}

// decodeCounter rebuilds a counter from encode's output, or from a version 1
// value (whose net totals become added totals). The local origin is named
// node; it is first even if the snapshot was written under another name.
func decodeCounter(consumer, key, node string, v []byte) (*counter, error) {
	c := newCounter(consumer, key, node)
	r := &reader{v: v, base: errCorrupt}
	version := r.byte()
	if r.err != nil || (version != counterVersion && version != counterVersion1) {
		return nil, fmt.Errorf("%w: unknown version", errCorrupt)
	}
	c.periodStart = r.varint()
	nOrigins := r.uvarint(1 << 16)
	for range nOrigins {
		name := r.str()
		if r.err != nil {
			return nil, r.err
		}
		i := c.origin(name)
		if i < 0 {
			return nil, fmt.Errorf("%w: more than %d origins", errCorrupt, maxOrigins)
		}
		o := &c.origins[i]
		if version == counterVersion1 {
			tokens := r.net(periodCap)
			if c.periodStart != 0 && tokens != 0 {
				o.periodStart, o.period = c.periodStart, pn{added: tokens}
			}
		} else if o.periodStart = r.varint(); o.periodStart != 0 {
			o.period = pn{added: r.count(periodCap), removed: r.count(periodCap)}
		}
		nb := r.uvarint(ringSize)
		b := int64(0)
		for j := range nb {
			var v pn
			if version == counterVersion1 {
				b = r.varint()
				v.added = r.net(MaxTokens)
			} else {
				if j == 0 {
					b = r.varint()
				} else {
					b += int64(r.uvarint(maxBucket))
				}
				v = pn{added: r.count(MaxTokens), removed: r.count(MaxTokens)}
			}
			if r.err != nil {
				return nil, r.err
			}
			if b < 0 || b > maxBucket {
				return nil, fmt.Errorf("%w: bucket %d out of range", errCorrupt, b)
			}
			o.w.advance(b)
			if o.w.holds(b) {
				o.w.v[b&ringMask] = v
			}
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.v) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(r.v))
	}
	return c, nil
}
