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
func (c *Cache) Apply(ctx context.Context, ch Change) error {
	at := ch.At
	if at.IsZero() {
		at = c.opts.Now()
	}
	switch ch.Kind {
	case ChangeStored:
		if ch.Entry == nil {
			return errors.New("index: stored change without an entry")
		}
		e := *ch.Entry
		if e.CreatedAt.IsZero() {
			e.CreatedAt = at
		}
		if e.ExpiresAt.IsZero() {
			e.ExpiresAt = e.CreatedAt.Add(c.opts.TTL)
		}
		_, err := c.add(ctx, &e, true)
		return err
	case ChangeDeleted:
		if _, ok := parseID(ch.ID); !ok {
			return fmt.Errorf("index: deleted change with id %q", ch.ID)
		}
		_, _, err := c.deleteID(ctx, ch.ID, at)
		return err
	case ChangePurged:
		_, err := c.purge(ctx, ch.Partition, ch.Route, at, false)
		return err
	}
	return fmt.Errorf("index: unknown change kind %d", ch.Kind)
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
