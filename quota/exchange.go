package quota

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// Usage is one origin node's part of one counter, as nodes exchange it.
// Every number in it is a grow-only total, so merging takes the larger of
// each and a record merged twice, late or out of order changes nothing.
type Usage struct {
	Origin, Consumer, Key string
	// PeriodStart is the start of the origin's current quota period (Unix
	// seconds; 0 = the consumer has no period), and PeriodAdded and
	// PeriodRemoved its totals in that period.
	PeriodStart                int64
	PeriodAdded, PeriodRemoved int64
	// Buckets are the origin's non-zero one-second buckets.
	Buckets []BucketUsage
	// Demand is the origin's recent demand for this counter, in requested
	// tokens per second; it sets the origin's share of the budget (see
	// SetPeers). Negative: not known, as for the origins a node relays in
	// a full exchange; the receiver keeps what it had.
	Demand int64
}

// BucketUsage is an origin's totals in the one-second bucket that starts at
// Bucket (Unix seconds): Added by reservations and settlements above the
// estimate, Removed by settlements below it.
type BucketUsage struct {
	Bucket         int64
	Added, Removed int64
}

// Outgoing returns what this node should tell its peers.
//
// With full false, it is this node's own usage of every counter that changed
// since the previous Outgoing(false) call, or whose demand moved by more
// than about 10% from what peers assume: each with the buckets that changed
// in the last few calls (every change goes out in resendRounds consecutive
// calls, so a lost packet is repaired by one of the next), and the limit
// changes made here by SetLimits in as many calls. Calls are meant to be
// regular (every 50–100 ms); the time between them adds to the gossip lag
// that Options.PeerLag must cover.
//
// With full true (anti-entropy, for a push/pull exchange), it is every
// origin's usage held for every counter, with all buckets that a peer would
// still accept, and every run-time limit record.
//
// Counters of consumers that are not configured are never sent: they are
// unlimited everywhere.
func (l *Limiter) Outgoing(ctx context.Context, full bool) ([]Usage, []LimitRecord, error) {
	var us []Usage
	for _, s := range l.shards {
		r, err := l.call(ctx, s, message{kind: msgOutgoing, flag: full}, false)
		if err != nil {
			return nil, nil, fmt.Errorf("quota: outgoing: %w", err)
		}
		us = append(us, r.usages...)
	}
	// Sorted: records of one consumer travel together (shorter packets) and
	// the output is deterministic.
	slices.SortFunc(us, func(a, b Usage) int {
		return cmp.Or(cmp.Compare(a.Consumer, b.Consumer), cmp.Compare(a.Key, b.Key), cmp.Compare(a.Origin, b.Origin))
	})
	return us, l.outgoingLimits(full), nil
}

// MergeUsage merges remote origins' usage into this node's counters: per
// origin and bucket, and per origin and period, each total becomes the larger
// of the one held and the one received, so duplicated, replayed or reordered
// records never count twice. Records of this node's own origin, of consumers
// not configured here, of buckets that left the ring (about 62 s) or lie more
// than 2 s ahead of this node's clock, and period totals of an older period
// than the current one are ignored; a record of a later period replaces the
// origin's period totals. Merged usage counts in this node's windows and
// periods like its own. ctx is checked between shards; the records are not
// used after MergeUsage returns.
func (l *Limiter) MergeUsage(ctx context.Context, us []Usage) error {
	if len(us) == 0 {
		return nil
	}
	parts := make([][]Usage, len(l.shards))
	for _, u := range us {
		i := l.shardIndex(u.Consumer, u.Key)
		parts[i] = append(parts[i], u)
	}
	for i, part := range parts {
		if len(part) == 0 {
			continue
		}
		if err := l.usable(ctx); err != nil {
			return fmt.Errorf("quota: merge usage: %w", err)
		}
		// Waited for even if ctx ends meanwhile: the shard reads part.
		if _, err := l.call(context.WithoutCancel(ctx), l.shards[i], message{kind: msgMerge, usages: part}, false); err != nil {
			return fmt.Errorf("quota: merge usage: %w", err)
		}
	}
	return nil
}

// SetPeers names the other live nodes of the cluster (this node's name and
// duplicates are ignored). From then on each reservation also has to fit
// this node's share of the budget that the nodes have not yet claimed
// together (see the argument in share.go): the share follows the demand of
// this node and of the named peers, as last reported by their Usage. Nodes
// not named have no share, but their merged usage keeps counting until it
// leaves the window. nil or empty: this node is alone and admits on its own
// view of the window and quota only.
func (l *Limiter) SetPeers(names []string) {
	peers := make([]string, 0, len(names))
	for _, n := range names {
		if n != "" && n != l.node {
			peers = append(peers, n)
		}
	}
	slices.Sort(peers)
	peers = slices.Compact(peers)
	for _, s := range l.shards {
		if _, err := l.call(context.Background(), s, message{kind: msgSetPeers, peers: peers}, true); err != nil {
			return // closed
		}
	}
}

// usagesVersion is the first byte of a packet made by EncodeUsages.
const usagesVersion = 1

// maxDemand bounds a decoded demand (tokens per second).
const maxDemand = periodCap

var errBadUsages = errors.New("malformed usage packet")

// EncodeUsages packs records into packets of at most maxBytes each. A
// record is split over several packets (each fragment repeating its names,
// period and demand) when it alone is too big; merging is per bucket, so the
// fragments merge like the whole. A record whose names alone leave no room
// for one bucket goes, with one bucket, in a packet of its own larger than
// maxBytes: nothing is ever truncated. Buckets are sorted and numbers are
// clamped to what MergeUsage accepts; zero buckets are left out. Format:
//
//	version byte (1), then records to the end of the packet:
//	  origin:   uvarint 0 = the previous record's, else length+1 and name
//	  consumer: the same
//	  key:      uvarint length, key
//	  varint PeriodStart, and unless 0: uvarint PeriodAdded, PeriodRemoved
//	  varint Demand (-1: not known)
//	  uvarint number of buckets, then per bucket: its index (the first a
//	    varint, the others a uvarint increase over the previous one),
//	    uvarint Added, uvarint Removed
func EncodeUsages(us []Usage, maxBytes int) [][]byte {
	e := &usageEncoder{max: maxBytes}
	for i := range us {
		e.add(&us[i])
	}
	e.flush()
	return e.out
}

// usageEncoder fills packets for EncodeUsages.
type usageEncoder struct {
	max  int
	out  [][]byte
	pkt  []byte // the open packet; nil: none
	prev [2]string
	// scratch for one record
	hdr, body []byte
	ends      []int // ends[k]: len(body) after k+1 buckets
}

func (e *usageEncoder) flush() {
	if len(e.pkt) > 1 {
		e.out = append(e.out, e.pkt)
	}
	e.pkt = nil
}

// fit modes of usageEncoder.put
const (
	fitWhole   = iota // all buckets, or nothing
	fitPartial        // at least one bucket (or a record without buckets), or nothing
	fitForce          // at least one bucket even past maxBytes
)

func (e *usageEncoder) add(u *Usage) {
	bs := normalizeBuckets(u.Buckets)
	if e.pkt != nil {
		if e.put(u, bs, fitWhole) >= 0 {
			return
		}
		e.prepare(u, bs, true)
		if 1+len(e.hdr)+uvarintLen(len(bs))+len(e.body) <= e.max {
			// Fits a packet of its own: do not split it.
			e.flush()
			e.put(u, bs, fitWhole)
			return
		}
		if k := e.put(u, bs, fitPartial); k > 0 {
			bs = bs[k:]
		}
		e.flush()
	}
	for {
		bs = bs[e.put(u, bs, fitForce):]
		if len(bs) == 0 {
			return
		}
		e.flush()
	}
}

// prepare encodes u's header (with back references unless fresh) and its
// buckets bs into the scratch buffers.
func (e *usageEncoder) prepare(u *Usage, bs []BucketUsage, fresh bool) {
	h := e.hdr[:0]
	for i, s := range [2]string{u.Origin, u.Consumer} {
		if !fresh && s == e.prev[i] {
			h = append(h, 0)
		} else {
			h = binary.AppendUvarint(h, uint64(len(s))+1)
			h = append(h, s...)
		}
	}
	h = binary.AppendUvarint(h, uint64(len(u.Key)))
	h = append(h, u.Key...)
	if ps := max(u.PeriodStart, 0); ps != 0 {
		h = binary.AppendVarint(h, ps)
		h = binary.AppendUvarint(h, uint64(min(max(u.PeriodAdded, 0), periodCap)))
		h = binary.AppendUvarint(h, uint64(min(max(u.PeriodRemoved, 0), periodCap)))
	} else {
		h = binary.AppendVarint(h, 0)
	}
	h = binary.AppendVarint(h, min(max(u.Demand, -1), maxDemand))
	e.hdr = h
	body, ends := e.body[:0], e.ends[:0]
	for i, b := range bs {
		if i == 0 {
			body = binary.AppendVarint(body, b.Bucket)
		} else {
			body = binary.AppendUvarint(body, uint64(b.Bucket-bs[i-1].Bucket))
		}
		body = binary.AppendUvarint(body, uint64(b.Added))
		body = binary.AppendUvarint(body, uint64(b.Removed))
		ends = append(ends, len(body))
	}
	e.body, e.ends = body, ends
}

// put appends to the open packet (opening one if none is) a record of u
// with the longest prefix of bs that fits, as mode allows, and returns the
// number of buckets written; -1 if it wrote nothing.
func (e *usageEncoder) put(u *Usage, bs []BucketUsage, mode int) int {
	if e.pkt == nil {
		e.pkt = []byte{usagesVersion}
	}
	fresh := len(e.pkt) == 1
	e.prepare(u, bs, fresh)
	space := e.max - len(e.pkt)
	size := func(k int) int {
		n := len(e.hdr) + uvarintLen(k)
		if k > 0 {
			n += e.ends[k-1]
		}
		return n
	}
	// The longest prefix that fits; only k == 0 may not fit.
	k := len(bs)
	for k > 0 && size(k) > space {
		k--
	}
	switch {
	case k == len(bs) && size(k) <= space:
	case mode == fitWhole:
		return -1
	case mode == fitPartial && k == 0:
		return -1
	case mode == fitForce:
		k = max(k, min(1, len(bs)))
	}
	e.pkt = append(e.pkt, e.hdr...)
	e.pkt = binary.AppendUvarint(e.pkt, uint64(k))
	if k > 0 {
		e.pkt = append(e.pkt, e.body[:e.ends[k-1]]...)
	}
	e.prev = [2]string{u.Origin, u.Consumer}
	return k
}

func uvarintLen(n int) int {
	var b [binary.MaxVarintLen64]byte
	return len(binary.AppendUvarint(b[:0], uint64(n)))
}

// normalizeBuckets returns bs sorted by bucket, with duplicates joined,
// totals clamped to [0, MaxTokens], and zero or out-of-range buckets left
// out.
func normalizeBuckets(bs []BucketUsage) []BucketUsage {
	out := make([]BucketUsage, 0, len(bs))
	for _, b := range bs {
		b.Added, b.Removed = min(max(b.Added, 0), MaxTokens), min(max(b.Removed, 0), MaxTokens)
		if b.Bucket >= 0 && b.Bucket <= maxBucket && (b.Added != 0 || b.Removed != 0) {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(a, b BucketUsage) int { return cmp.Compare(a.Bucket, b.Bucket) })
	j := 0
	for i, b := range out {
		if i > 0 && b.Bucket == out[j].Bucket {
			out[j].Added, out[j].Removed = max(out[j].Added, b.Added), max(out[j].Removed, b.Removed)
			continue
		}
		if i > 0 {
			j++
		}
		out[j] = b
	}
	return out[:min(j+1, len(out))]
}

// DecodeUsages is the inverse of EncodeUsages: the records of one packet.
// Malformed input (unknown version, truncation, out-of-range numbers,
// buckets out of order) is an error, never a panic.
func DecodeUsages(p []byte) ([]Usage, error) {
	r := &reader{v: p, base: errBadUsages}
	if v := r.byte(); r.err == nil && v != usagesVersion {
		return nil, fmt.Errorf("%w: unknown version %d", errBadUsages, v)
	}
	var out []Usage
	var prev [2]string
	for n := 0; len(r.v) > 0 && r.err == nil; n++ {
		var names [2]string
		for i := range names {
			switch l := r.uvarint(uint64(len(r.v)) + 1); {
			case r.err != nil:
			case l == 0 && n == 0:
				r.fail("first record refers to a previous one")
			case l == 0:
				names[i] = prev[i]
			default:
				names[i] = r.bytes(l - 1)
			}
		}
		prev = names
		u := Usage{Origin: names[0], Consumer: names[1], Key: r.str()}
		if u.PeriodStart = r.varint(); u.PeriodStart < 0 {
			r.fail("negative period start")
		} else if u.PeriodStart != 0 {
			u.PeriodAdded, u.PeriodRemoved = r.count(periodCap), r.count(periodCap)
		}
		if u.Demand = r.varint(); u.Demand < -1 || u.Demand > maxDemand {
			r.fail("demand %d out of range", u.Demand)
		}
		// Each bucket takes at least three bytes: a bound before allocating.
		if nb := r.uvarint(uint64(len(r.v) / 3)); nb > 0 && r.err == nil {
			u.Buckets = make([]BucketUsage, nb)
			b := r.varint()
			for j := range u.Buckets {
				if j > 0 {
					d := int64(r.uvarint(maxBucket))
					if d == 0 {
						r.fail("buckets out of order")
					}
					b += d
				}
				if b < 0 || b > maxBucket {
					r.fail("bucket %d out of range", b)
				}
				u.Buckets[j] = BucketUsage{Bucket: b, Added: r.count(MaxTokens), Removed: r.count(MaxTokens)}
				if r.err != nil {
					break
				}
			}
		}
		out = append(out, u)
	}
	if r.err != nil {
		return nil, r.err
	}
	return out, nil
}
