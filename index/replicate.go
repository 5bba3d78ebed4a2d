package index

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// ChangeKind says what a Change did.
type ChangeKind uint8

const (
	ChangeStored  ChangeKind = iota + 1 // an entry was stored
	ChangeDeleted                       // an entry was deleted by ID
	ChangePurged                        // a partition and route were purged
)

func (k ChangeKind) String() string {
	switch k {
	case ChangeStored:
		return "stored"
	case ChangeDeleted:
		return "deleted"
	case ChangePurged:
		return "purged"
	}
	return fmt.Sprintf("ChangeKind(%d)", uint8(k))
}

// Change is one local change to the cache, as it is replicated: reported
// by Options.OnChange on its origin, shipped with AppendChange and
// DecodeChange, and applied on the other nodes with Apply.
type Change struct {
	Kind ChangeKind
	// Entry is the stored entry with its Vector (ChangeStored). It is
	// shared: read-only.
	Entry *Entry
	// ID is the deleted entry's (ChangeDeleted).
	ID string
	// Partition and Route select the purged entries (ChangePurged); ""
	// matches all, as in Purge.
	Partition, Route string
	// At is when the change happened on its origin: the entry's CreatedAt,
	// or the time of the delete or purge (its cut-off). Zero means now.
	At time.Time
}

// Apply applies a change made on another node. It is idempotent, and
// Options.OnChange does not hear of it.
//
//   - ChangeStored inserts the entry as Insert does (ID, CreatedAt,
//     ExpiresAt and the Vector kept; no re-embedding). An entry already
//     held, whose ID is tombstoned, created at or before a purge that
//     covers it, or older than the entry holding its Exact hash, is
//     dropped without error. ch.Entry is not modified.
//   - ChangeDeleted removes the entry and tombstones its ID, so that it
//     never comes back (also across restarts) while it could be alive on
//     any node: until the later of its ExpiresAt and At + TTL.
//   - ChangePurged removes the matching entries created at or before At,
//     tombstoning each, and refuses such entries for TTL after At.
//
// ApplyBatch applies many changes at once, faster.
func (c *Cache) Apply(ctx context.Context, ch Change) error {
	if err := checkChange(ch); err != nil {
		return err
	}
	return c.apply(ctx, ch)
}

// apply is Apply of a change checkChange accepted.
func (c *Cache) apply(ctx context.Context, ch Change) error {
	at := ch.At
	if at.IsZero() {
		at = c.opts.Now()
	}
	switch ch.Kind {
	case ChangeStored:
		_, err := c.add(ctx, c.replicated(ch, at), true)
		return err
	case ChangeDeleted:
		_, _, err := c.deleteID(ctx, ch.ID, at)
		return err
	default: // ChangePurged
		_, err := c.purge(ctx, ch.Partition, ch.Route, at, false)
		return err
	}
}

// replicated is the copy of a stored change's entry that a peer adds: its
// zero CreatedAt is ch.At, or now when that is zero too, and its zero
// ExpiresAt TTL after CreatedAt. ch.Entry is not modified.
func (c *Cache) replicated(ch Change, now time.Time) *Entry {
	e := *ch.Entry
	if e.CreatedAt.IsZero() {
		e.CreatedAt = ch.At
		if e.CreatedAt.IsZero() {
			e.CreatedAt = now
		}
	}
	if e.ExpiresAt.IsZero() {
		e.ExpiresAt = e.CreatedAt.Add(c.ttl())
	}
	return &e
}

// checkChange is the error Apply returns for ch's shape alone, before it
// touches the cache; nil if ch is well formed.
func checkChange(ch Change) error {
	switch ch.Kind {
	case ChangeStored:
		if ch.Entry == nil {
			return errors.New("index: stored change without an entry")
		}
		if _, ok := parseID(ch.Entry.ID); !ok {
			return fmt.Errorf("index: entry id %q is not 16 lowercase hex digits", ch.Entry.ID)
		}
	case ChangeDeleted:
		if _, ok := parseID(ch.ID); !ok {
			return fmt.Errorf("index: deleted change with id %q", ch.ID)
		}
	case ChangePurged:
	default:
		return fmt.Errorf("index: unknown change kind %d", ch.Kind)
	}
	return nil
}

// Chunk sizes of ApplyBatch's messages to an actor. Checking an entry
// against the tombstones and purge records is a few map lookups. Adding one
// may insert its vector into an HNSW graph, about 0.3 ms at 384 dimensions
// and 20,000 entries, so adds go 64 to a message (some 20 ms), between
// which the shard's lookups get their turn.
const (
	checkChunk = 1024
	addChunk   = 64
)

// ApplyBatch applies changes made on other nodes, with the outcome of Apply
// on each in order: it is as idempotent, drops the same entries (held,
// tombstoned, covered by a purge record, losing to the holder of their
// Exact hash, expired), tombstones the same, and Options.OnChange hears of
// none of them. It is faster for many entries: each run of consecutive
// ChangeStored is checked by the shards, persisted in one Badger WriteBatch
// rather than a transaction per entry, and only once committed added to
// the shards, each shard's entries in chunks and the shards in parallel.
// Deletes and purges go one by one through Apply.
//
// A malformed change (one Apply rejects) is skipped and reported in the
// returned error, and the others are applied; a disk failure, the end of
// ctx or Close stops the batch. Two details differ from Apply one by one:
// of changes with the same entry ID in a run only the first unexpired one
// counts (one disk key holds one entry; peers only ever repeat an entry),
// and MaxEntries evicts once after the run rather than after each entry.
func (c *Cache) ApplyBatch(ctx context.Context, changes []Change) error {
	var errs []error
	for len(changes) > 0 {
		n := 0
		for n < len(changes) && changes[n].Kind == ChangeStored {
			n++
		}
		if n == 0 {
			ch := changes[0]
			changes = changes[1:]
			if err := checkChange(ch); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := c.apply(ctx, ch); err != nil {
				return errors.Join(append(errs, err)...)
			}
			continue
		}
		bad, err := c.applyStored(ctx, changes[:n])
		errs = append(errs, bad...)
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		changes = changes[n:]
	}
	return errors.Join(errs...)
}

// pending is an entry of ApplyBatch on its way to its shard.
type pending struct {
	id uint64
	e  *Entry
}

// applyStored applies a run of ChangeStored as ApplyBatch describes. It
// returns the errors of malformed changes, and the error that stopped it.
func (c *Cache) applyStored(ctx context.Context, run []Change) (bad []error, err error) {
	now := c.opts.Now()
	work := make([][]pending, len(c.shards))
	seen := make(map[uint64]struct{}, len(run))
	for _, ch := range run {
		if err := checkChange(ch); err != nil {
			bad = append(bad, err)
			continue
		}
		id, _ := parseID(ch.Entry.ID)
		e := c.replicated(ch, now)
		if !e.ExpiresAt.After(now) {
			continue
		}
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		// The shard keeps Response but not Vector (its graph copies it), so
		// only Response is copied to leave ch.Entry the caller's.
		e.Response = slices.Clone(e.Response)
		i := c.shardOf(e.Space).idx
		work[i] = append(work[i], pending{id, e})
	}

	// Check first, so that refused entries cost no disk write; add checks
	// again. A refusal by a purge record tombstones the entry, as in Apply.
	type checked struct {
		in []pending
		ks []killed
	}
	verdicts, err := chunked(ctx, c, work, checkChunk, func(s *shard, part []pending) checked {
		var v checked
		for _, p := range part {
			why, k := s.refuse(p.id, p.e, true)
			if why == admitted {
				v.in = append(v.in, p)
			}
			if k != nil {
				v.ks = append(v.ks, *k)
			}
		}
		return v
	})
	if err != nil {
		return bad, err
	}
	admitted := make([][]pending, len(c.shards))
	var in []*Entry
	var ks []killed
	for i, vs := range verdicts {
		for _, v := range vs {
			admitted[i] = append(admitted[i], v.in...)
			for _, p := range v.in {
				in = append(in, p.e)
			}
			ks = append(ks, v.ks...)
		}
	}

	// On disk before any lookup can return them.
	if err := c.persistAll(in); err != nil {
		return bad, err
	}

	type result struct {
		stale []string
		ks    []killed
		added bool
	}
	results, err := chunked(ctx, c, admitted, addChunk, func(s *shard, part []pending) result {
		var r result
		for _, p := range part {
			stale, k, ok := s.add(p.id, p.e, true, false)
			r.stale = append(r.stale, stale...)
			if k != nil {
				r.ks = append(r.ks, *k)
			}
			r.added = r.added || ok
		}
		return r
	})
	if err != nil {
		return bad, err
	}
	var stale []string
	added := false
	for _, rs := range results {
		for _, r := range rs {
			stale = append(stale, r.stale...)
			ks = append(ks, r.ks...)
			added = added || r.added
		}
	}
	if err := c.deleteKeys(stale); err != nil {
		return bad, err
	}
	if err := c.settle(ctx, ks); err != nil {
		return bad, err
	}
	if added {
		return bad, c.evict(ctx)
	}
	return bad, nil
}

// settle finishes tombstones that holder shards recorded: each ID's
// counting shard gets its copy, the disk the tombstone, and the entries'
// keys go.
func (c *Cache) settle(ctx context.Context, ks []killed) error {
	if len(ks) == 0 {
		return nil
	}
	n := uint64(len(c.shards))
	var to [][]killed
	for _, k := range ks {
		if cs := k.id % n; !k.hasSpace || cs != k.space%n {
			if to == nil {
				to = make([][]killed, n)
			}
			to[cs] = append(to[cs], k)
		}
	}
	var raced [][]string // entries with these IDs that came in meanwhile
	if to != nil {
		raced = make([][]string, n)
		err := c.each(ctx, func(i int, s *shard) {
			for _, k := range to[i] {
				if gone, _ := s.tombstone(k); gone != "" {
					raced[i] = append(raced[i], gone)
				}
			}
		})
		if err != nil {
			return err
		}
	}
	return c.writeTombs(ks, slices.Concat(raced...))
}

// Digest summarises the live entries and tombstones for anti-entropy: per
// bucket (the low byte of the uint64 ID), the XOR of a 64-bit mix of (ID,
// CreatedAt) over live entries and of (ID, a tombstone marker) over
// tombstones. Two nodes holding the same entries and tombstones have equal
// Digests; a bucket that differs holds a difference, which Versions of that
// bucket reveal.
type Digest [256]uint64

// Diff returns the buckets in which d and o differ, in order.
func (d *Digest) Diff(o *Digest) []uint8 {
	var out []uint8
	for i := range d {
		if d[i] != o[i] {
			out = append(out, uint8(i))
		}
	}
	return out
}

// Digest returns the cache's Digest. The shards keep it up to date as
// entries and tombstones come and go, so it costs one message per shard.
// Entries expired but not yet swept (up to SweepInterval) still count. It
// fails with ErrNotReady while loading.
func (c *Cache) Digest(ctx context.Context) (Digest, error) {
	if !c.Ready() {
		return Digest{}, ErrNotReady
	}
	parts := make([]Digest, len(c.shards))
	if err := c.each(ctx, func(i int, s *shard) { parts[i] = s.digest }); err != nil {
		return Digest{}, err
	}
	var d Digest
	for _, p := range parts {
		for i := range d {
			d[i] ^= p[i]
		}
	}
	return d, nil
}

// Version is an entry's or a tombstone's identity in anti-entropy.
type Version struct {
	ID string
	// CreatedAt is the entry's creation time, or for a tombstone the time
	// of the delete (Unix nanoseconds): pass it as the At of the
	// ChangeDeleted that copies the tombstone, so that nodes agree on how
	// long it lasts.
	CreatedAt int64
	Deleted   bool // a tombstone
}

// Versions lists the live entries and the tombstones in the given buckets,
// sorted by ID. Expired entries and tombstones past are left out. It fails
// with ErrNotReady while loading.
//
// A peer comparing them with its own fetches (Export, then Apply of
// ChangeStored) the live entries it lacks, unless it holds a tombstone for
// the ID, and applies (ChangeDeleted, At from CreatedAt) the tombstones it
// lacks.
func (c *Cache) Versions(ctx context.Context, buckets []uint8) ([]Version, error) {
	if !c.Ready() {
		return nil, ErrNotReady
	}
	var want [256]bool
	for _, b := range buckets {
		want[b] = true
	}
	parts := make([][]Version, len(c.shards))
	if err := c.each(ctx, func(i int, s *shard) { parts[i] = s.versions(&want) }); err != nil {
		return nil, err
	}
	out := slices.Concat(parts...)
	slices.SortFunc(out, func(a, b Version) int {
		return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.CreatedAt, b.CreatedAt))
	})
	return out, nil
}

// Export returns the live entries among ids with their Vectors, for
// shipping to a peer (ChangeStored); IDs not held live are left out, and
// the order is not that of ids. With a DB the entries are read from it in
// one transaction; without one the vectors come from the graphs.
func (c *Cache) Export(ctx context.Context, ids []string) ([]*Entry, error) {
	nums := make([]uint64, 0, len(ids))
	for _, id := range ids {
		if n, ok := parseID(id); ok {
			nums = append(nums, n)
		}
	}
	if len(nums) == 0 {
		return nil, nil
	}
	fromGraph := c.opts.DB == nil
	parts := make([][]*Entry, len(c.shards))
	if err := c.each(ctx, func(i int, s *shard) { parts[i] = s.export(nums, fromGraph) }); err != nil {
		return nil, err
	}
	held := slices.Concat(parts...)
	if fromGraph {
		return held, nil
	}
	out := make([]*Entry, 0, len(held))
	err := c.opts.DB.View(func(txn *badger.Txn) error {
		for _, h := range held {
			item, err := txn.Get(diskKey(h.ID))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue // removed since the shard answered
			}
			if err != nil {
				return err
			}
			var e *Entry
			if err := item.Value(func(v []byte) (err error) {
				e, err = decodeEntry(h.ID, v)
				return err
			}); err != nil {
				c.log.Warn("cache entry unreadable, not exported", "id", h.ID, "err", err)
				continue
			}
			e.Hits = h.Hits
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index: exporting %d entries: %w", len(held), err)
	}
	return out, nil
}

// mix is the splitmix64 finaliser: a bijection on uint64 whose output
// bits each depend on every input bit.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// liveMix is a live entry's contribution to its bucket of the Digest.
func liveMix(id uint64, createdAt int64) uint64 {
	return mix(id ^ mix(uint64(createdAt)+0x9e3779b97f4a7c15))
}

// tombMix is a tombstone's contribution to its bucket of the Digest.
func tombMix(id uint64) uint64 { return mix(mix(id) ^ 0xd6e8feb86659fd93) }
