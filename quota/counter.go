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
	// maxFuture is how many buckets ahead of the local clock a merged bucket
	// may be (clock skew between nodes); later ones are ignored.
	maxFuture = 2
	// mergeBack is how many buckets before the current one a merge may name:
	// all of them are still held by the ring (head ≤ cur+maxFuture).
	mergeBack = ringSize - maxFuture - 1
	// maxBucket bounds stored bucket indexes (year ~36000) so ring arithmetic
	// cannot overflow on a corrupt value.
	maxBucket = 1 << 40
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

// bucketTime returns the start of bucket b.
func bucketTime(b int64) time.Time { return time.Unix(0, b*bucketNanos).UTC() }

// ring holds the per-bucket totals of one origin for the buckets
// head-ringSize+1 .. head. Slots of buckets outside that range are stale.
type ring struct {
	head int64
	v    [ringSize]int64
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
			r.v[i&ringMask] = 0
		}
	}
	r.head = b
}

// holds reports whether bucket b is in the ring.
func (r *ring) holds(b int64) bool { return b <= r.head && b > r.head-ringSize }

// at returns bucket b's total (0 if not held).
func (r *ring) at(b int64) int64 {
	if !r.holds(b) {
		return 0
	}
	return r.v[b&ringMask]
}

// sumFrom returns the total of the held buckets from lo to head.
func (r *ring) sumFrom(lo int64) int64 {
	lo = max(lo, r.head-ringSize+1)
	var s int64
	for b := lo; b <= r.head; b++ {
		s += r.v[b&ringMask]
	}
	return s
}

// origin is one node's contribution to a counter.
type origin struct {
	name   string
	w      ring
	period int64 // tokens in the counter's current period
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
}

func newCounter(consumer, key, node string) *counter {
	return &counter{
		consumer: consumer,
		key:      key,
		dbKey:    counterDBKey(consumer, key),
		origins:  []origin{{name: node}},
	}
}

// roll moves the counter into the period that holds now, resetting the
// period totals when it changed.
func (c *counter) roll(now time.Time, p Period) {
	if p == NoPeriod {
		if c.periodStart != 0 || c.periodEnd != 0 {
			c.resetPeriod(0, 0)
		}
		return
	}
	sec := now.Unix()
	if c.periodEnd != 0 && sec >= c.periodStart && sec < c.periodEnd {
		return
	}
	start, end := p.Bounds(now)
	if s := start.Unix(); s != c.periodStart {
		c.resetPeriod(s, end.Unix())
		return
	}
	c.periodEnd = end.Unix()
}

func (c *counter) resetPeriod(start, end int64) {
	c.periodStart, c.periodEnd = start, end
	for i := range c.origins {
		if c.origins[i].period != 0 {
			c.origins[i].period = 0
			c.dirty = true
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
	var s int64
	for i := range c.origins {
		s += c.origins[i].period
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
			freed += c.origins[i].w.at(b)
		}
		if freed >= over {
			break
		}
	}
	// Bucket b stops counting once the current bucket is b+windowBack+1.
	return time.Unix(0, (b+windowBack+1)*bucketNanos).Sub(now)
}

// origin returns the index of the named origin, adding it if new.
func (c *counter) origin(name string) int {
	for i := range c.origins {
		if c.origins[i].name == name {
			return i
		}
	}
	c.origins = append(c.origins, origin{name: name})
	return len(c.origins) - 1
}

// idle reports whether the counter holds nothing worth keeping at bucket cur:
// no outstanding reservation, no period usage, and no bucket a Merge could
// still name (so forgetting it cannot make a replayed merge count twice).
func (c *counter) idle(cur int64) bool {
	if c.pending > 0 || c.periodSum() != 0 {
		return false
	}
	for i := range c.origins {
		if c.origins[i].w.sumFrom(cur-mergeBack) != 0 {
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

// counterVersion is the first byte of an encoded counter.
const counterVersion = 1

// encode returns the counter's snapshot value:
//
//	version byte
//	varint  periodStart (Unix seconds, 0 = none)
//	uvarint number of origins, then per origin:
//	  uvarint name length, name
//	  varint  period tokens
//	  uvarint number of buckets, then per bucket: varint bucket index
//	          (Unix seconds), varint tokens
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
		buf = binary.AppendVarint(buf, o.period)
		n := 0
		for b := o.w.head - ringSize + 1; b <= o.w.head; b++ {
			if o.w.v[b&ringMask] != 0 {
				n++
			}
		}
		buf = binary.AppendUvarint(buf, uint64(n))
		for b := o.w.head - ringSize + 1; b <= o.w.head; b++ {
			if v := o.w.v[b&ringMask]; v != 0 {
				buf = binary.AppendVarint(buf, b)
				buf = binary.AppendVarint(buf, v)
			}
		}
	}
	return buf
}

var errCorrupt = errors.New("corrupt counter value")

// decodeCounter rebuilds a counter from encode's output. The local origin is
// named node; it is first even if the snapshot was written under another name.
func decodeCounter(consumer, key, node string, v []byte) (*counter, error) {
	c := newCounter(consumer, key, node)
	if len(v) == 0 || v[0] != counterVersion {
		return nil, fmt.Errorf("%w: unknown version", errCorrupt)
	}
	v = v[1:]
	varint := func() (int64, error) {
		x, n := binary.Varint(v)
		if n <= 0 {
			return 0, errCorrupt
		}
		v = v[n:]
		return x, nil
	}
	uvarint := func(limit uint64) (uint64, error) {
		x, n := binary.Uvarint(v)
		if n <= 0 || x > limit {
			return 0, errCorrupt
		}
		v = v[n:]
		return x, nil
	}
	var err error
	if c.periodStart, err = varint(); err != nil {
		return nil, err
	}
	nOrigins, err := uvarint(1 << 16)
	if err != nil {
		return nil, err
	}
	for range nOrigins {
		nameLen, err := uvarint(1 << 16)
		if err != nil {
			return nil, err
		}
		if nameLen > uint64(len(v)) {
			return nil, fmt.Errorf("%w: origin name longer than the value", errCorrupt)
		}
		name := string(v[:nameLen])
		v = v[nameLen:]
		o := &c.origins[c.origin(name)]
		if o.period, err = varint(); err != nil {
			return nil, err
		}
		nb, err := uvarint(ringSize)
		if err != nil {
			return nil, err
		}
		for range nb {
			b, err := varint()
			if err != nil {
				return nil, err
			}
			tok, err := varint()
			if err != nil {
				return nil, err
			}
			if b < 0 || b > maxBucket {
				return nil, fmt.Errorf("%w: bucket %d out of range", errCorrupt, b)
			}
			o.w.advance(b)
			if o.w.holds(b) {
				o.w.v[b&ringMask] = tok
			}
		}
	}
	if len(v) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(v))
	}
	return c, nil
}
