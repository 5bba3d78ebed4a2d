package index

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/llmgate/llmgate/index/graph"
	"github.com/llmgate/llmgate/internal/store"
)

// recorder collects the changes reported to OnChange.
type recorder struct {
	mu  sync.Mutex
	chs []Change
}

func (r *recorder) record(ch Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.chs = append(r.chs, ch)
}

func (r *recorder) take() []Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.chs
	r.chs = nil
	return out
}

// replica is an entry as another node would ship it.
func replica(sp Space, prompt string, n int, created time.Time) *Entry {
	e := entry(sp, prompt, spread(n))
	e.ID = formatID(uint64(n)*0x9e3779b97f4a7c15 + 1)
	e.CreatedAt = created
	e.ExpiresAt = created.Add(time.Hour)
	return e
}

func mustApply(t *testing.T, c *Cache, ch Change) {
	t.Helper()
	if err := c.Apply(t.Context(), ch); err != nil {
		t.Fatalf("Apply(%v): %v", ch.Kind, err)
	}
}

func digest(t *testing.T, c *Cache) Digest {
	t.Helper()
	d, err := c.Digest(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// allBuckets is every bucket, for Versions.
var allBuckets = func() []uint8 {
	b := make([]uint8, 256)
	for i := range b {
		b[i] = uint8(i)
	}
	return b
}()

func versions(t *testing.T, c *Cache, buckets []uint8) []Version {
	t.Helper()
	vs, err := c.Versions(t.Context(), buckets)
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// checkDigest asserts that the incrementally kept digest equals one
// computed from the shards' state.
func checkDigest(t *testing.T, c *Cache) {
	t.Helper()
	parts := make([]Digest, len(c.shards))
	err := c.each(t.Context(), func(i int, s *shard) {
		d := &parts[i]
		for id, r := range s.entries {
			d[byte(id)] ^= liveMix(id, r.created.UnixNano())
		}
		for id := range s.tombs {
			if s.counts(id) {
				d[byte(id)] ^= tombMix(id)
			}
		}
		if *d != s.digest {
			t.Errorf("shard %d: kept digest differs from its state", s.idx)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	var want Digest
	for _, d := range parts {
		for i := range want {
			want[i] ^= d[i]
		}
	}
	if got := digest(t, c); got != want {
		t.Fatal("Digest differs from the shards' state")
	}
}

func TestOnChange(t *testing.T) {
	clk := newClock()
	var rec recorder
	c := open(t, Options{Now: clk.Now, OnChange: rec.record})
	ctx := t.Context()

	e := entry(teamA, "q", axis(0, 0))
	mustStore(t, c, e)
	chs := rec.take()
	if len(chs) != 1 || chs[0].Kind != ChangeStored || chs[0].Entry.ID != e.ID ||
		!slices.Equal(chs[0].Entry.Vector, e.Vector) || !chs[0].At.Equal(e.CreatedAt) ||
		string(chs[0].Entry.Response) != string(e.Response) || !chs[0].Entry.ExpiresAt.Equal(e.ExpiresAt) {
		t.Fatalf("Store reported %+v", chs)
	}

	clk.Advance(time.Second)
	if ok, err := c.Delete(ctx, e.ID); !ok || err != nil {
		t.Fatal(ok, err)
	}
	unknown := "00000000000000ff"
	if ok, err := c.Delete(ctx, unknown); ok || err != nil {
		t.Fatal(ok, err)
	}
	c.Delete(ctx, e.ID)   // tombstoned already: nothing new
	c.Delete(ctx, "nope") // invalid: nothing
	chs = rec.take()
	want := []Change{
		{Kind: ChangeDeleted, ID: e.ID, At: clk.Now()},
		{Kind: ChangeDeleted, ID: unknown, At: clk.Now()},
	}
	if !slices.EqualFunc(chs, want, sameChange) {
		t.Fatalf("Deletes reported %+v, want %+v", chs, want)
	}

	if _, err := c.Purge(ctx, "team-a", "gpt-4o"); err != nil {
		t.Fatal(err)
	}
	chs = rec.take()
	if len(chs) != 1 || !sameChange(chs[0], Change{Kind: ChangePurged, Partition: "team-a", Route: "gpt-4o", At: clk.Now()}) {
		t.Fatalf("Purge reported %+v", chs)
	}

	// Nothing applied from a peer is reported.
	r := replica(teamA, "replicated", 1, clk.Now())
	mustApply(t, c, Change{Kind: ChangeStored, Entry: r})
	mustApply(t, c, Change{Kind: ChangeDeleted, ID: r.ID, At: clk.Now()})
	mustApply(t, c, Change{Kind: ChangePurged, Partition: "team-b", At: clk.Now()})
	if chs := rec.take(); len(chs) != 0 {
		t.Fatalf("applied changes reported: %+v", chs)
	}
}

func sameChange(a, b Change) bool {
	return a.Kind == b.Kind && a.ID == b.ID && a.Partition == b.Partition && a.Route == b.Route && a.At.Equal(b.At) &&
		(a.Entry == nil) == (b.Entry == nil)
}

func TestApply(t *testing.T) {
	clk := newClock()
	db := memDB(t)
	c := open(t, Options{DB: db.DB, Now: clk.Now})
	ctx := t.Context()
	now := clk.Now()

	t.Run("stored is idempotent", func(t *testing.T) {
		e := replica(teamA, "idem", 1, now.Add(-time.Minute))
		mustApply(t, c, Change{Kind: ChangeStored, Entry: e})
		d := digest(t, c)
		mustApply(t, c, Change{Kind: ChangeStored, Entry: e})
		if st := c.Stats(); st.Entries != 1 || digest(t, c) != d {
			t.Fatalf("second Apply changed the cache: %+v", st)
		}
		got, ok := c.LookupExact(ctx, teamA, e.Exact)
		if !ok || got.ID != e.ID || !got.CreatedAt.Equal(e.CreatedAt) || !got.ExpiresAt.Equal(e.ExpiresAt) {
			t.Fatalf("applied entry = %+v", got)
		}
		if _, _, ok := c.LookupSemantic(ctx, teamA, e.Vector, e.Prompt, 1e-4); !ok {
			t.Fatal("applied entry not found by its vector")
		}
	})

	t.Run("newer wins", func(t *testing.T) {
		sp := Space{"team-n", "r", "s"}
		old := replica(sp, "same", 2, now.Add(-2*time.Minute))
		newer := replica(sp, "same", 3, now.Add(-time.Minute))
		mustApply(t, c, Change{Kind: ChangeStored, Entry: newer})
		mustApply(t, c, Change{Kind: ChangeStored, Entry: old})
		if got, _ := c.LookupExact(ctx, sp, newer.Exact); got == nil || got.ID != newer.ID {
			t.Fatalf("older entry replaced the newer: %v", got)
		}
		if onDisk(t, db.DB, old.ID) {
			t.Fatal("losing entry left on disk")
		}
	})

	t.Run("stored after deleted is refused", func(t *testing.T) {
		e := replica(teamA, "deleted first", 4, now.Add(-time.Minute))
		mustApply(t, c, Change{Kind: ChangeDeleted, ID: e.ID, At: now})
		mustApply(t, c, Change{Kind: ChangeStored, Entry: e})
		if _, ok := c.Get(ctx, e.ID); ok || onDisk(t, db.DB, e.ID) {
			t.Fatal("tombstoned entry came back")
		}
		if err := c.Insert(ctx, e); err != nil {
			t.Fatal(err)
		}
		if _, ok := c.Get(ctx, e.ID); ok {
			t.Fatal("tombstoned entry came back by Insert")
		}
		local := entry(teamA, "local", nil)
		local.ID = e.ID
		if err := c.Store(ctx, local); err == nil {
			t.Fatal("Store of a tombstoned ID succeeded")
		}
		if _, ok := c.Get(ctx, e.ID); ok || onDisk(t, db.DB, e.ID) {
			t.Fatal("Store of a tombstoned ID left it in memory or on disk")
		}
	})

	t.Run("stored before a purge is refused", func(t *testing.T) {
		sp := Space{"team-p", "r", "s"}
		mustApply(t, c, Change{Kind: ChangePurged, Partition: "team-p", At: now})
		before := replica(sp, "before", 5, now.Add(-time.Second))
		after := replica(sp, "after", 6, now.Add(time.Second))
		other := replica(Space{"team-q", "r", "s"}, "other", 7, now.Add(-time.Second))
		for _, e := range []*Entry{before, after, other} {
			mustApply(t, c, Change{Kind: ChangeStored, Entry: e})
		}
		if _, ok := c.Get(ctx, before.ID); ok {
			t.Fatal("entry created before the purge came in")
		}
		for _, e := range []*Entry{after, other} {
			if _, ok := c.Get(ctx, e.ID); !ok {
				t.Fatalf("entry %q not covered by the purge refused", e.Prompt)
			}
		}
		// The refused entry is tombstoned, as on the nodes that purged it.
		vs := versions(t, c, []uint8{byte(mustParse(t, before.ID))})
		if !slices.Contains(vs, Version{ID: before.ID, CreatedAt: now.UnixNano(), Deleted: true}) {
			t.Fatalf("refused entry not tombstoned: %+v", vs)
		}
	})

	t.Run("purged keeps entries created after it", func(t *testing.T) {
		sp := Space{"team-r", "r", "s"}
		early := replica(sp, "early", 8, now.Add(-time.Minute))
		late := replica(sp, "late", 9, now.Add(time.Minute))
		mustApply(t, c, Change{Kind: ChangeStored, Entry: early})
		mustApply(t, c, Change{Kind: ChangeStored, Entry: late})
		mustApply(t, c, Change{Kind: ChangePurged, Partition: "team-r", Route: "r", At: now})
		if _, ok := c.Get(ctx, early.ID); ok || onDisk(t, db.DB, early.ID) {
			t.Fatal("entry created before the purge survived it")
		}
		if _, ok := c.Get(ctx, late.ID); !ok {
			t.Fatal("entry created after the purge's cut-off removed")
		}
	})

	t.Run("malformed changes are errors", func(t *testing.T) {
		for _, ch := range []Change{
			{},
			{Kind: 9},
			{Kind: ChangeStored},
			{Kind: ChangeStored, Entry: &Entry{ID: "x"}},
			{Kind: ChangeDeleted, ID: "x"},
		} {
			if err := c.Apply(ctx, ch); err == nil {
				t.Errorf("Apply(%+v) succeeded", ch)
			}
		}
	})
	checkDigest(t, c)
}

func mustParse(t *testing.T, id string) uint64 {
	t.Helper()
	n, ok := parseID(id)
	if !ok {
		t.Fatalf("bad id %q", id)
	}
	return n
}

// Tombstones and purge records survive a restart, and leave when past.
func TestTombstonesPersist(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	db := diskDB(t, dir)
	c, err := Open(t.Context(), Options{DB: db.DB, Now: clk.Now, TTL: time.Minute, SweepInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, c)
	now := clk.Now()
	held := replica(teamA, "held", 1, now.Add(-time.Second))
	held.ExpiresAt = now.Add(10 * time.Minute) // a longer per-request TTL
	mustApply(t, c, Change{Kind: ChangeStored, Entry: held})
	mustStore(t, c, entry(Space{"team-p", "r", "s"}, "purged", spread(2)))
	if ok, err := c.Delete(t.Context(), held.ID); !ok || err != nil {
		t.Fatal(ok, err)
	}
	unknown := replica(teamA, "never seen", 3, now.Add(-time.Second))
	mustApply(t, c, Change{Kind: ChangeDeleted, ID: unknown.ID, At: now})
	if _, err := c.Purge(t.Context(), "team-p", ""); err != nil {
		t.Fatal(err)
	}
	before := digest(t, c)
	c.Close()
	db.Close()

	db = diskDB(t, dir)
	defer db.Close()
	c = open(t, Options{DB: db.DB, Now: clk.Now, TTL: time.Minute, SweepInterval: time.Hour})
	if got := digest(t, c); got != before {
		t.Fatal("digest changed across a restart")
	}
	checkDigest(t, c)
	lateToPurge := replica(Space{"team-p", "r", "s"}, "late", 4, now.Add(-time.Second))
	for _, e := range []*Entry{held, unknown, lateToPurge} {
		mustApply(t, c, Change{Kind: ChangeStored, Entry: e})
		if _, ok := c.Get(t.Context(), e.ID); ok {
			t.Fatalf("entry %q came back after a restart", e.Prompt)
		}
	}

	// Past TTL, the unknown ID's tombstone and the purge record go (from
	// memory, the digest and disk); the held entry's lasts to its expiry.
	clk.Advance(2 * time.Minute)
	if err := c.sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkDigest(t, c)
	vs := versions(t, c, allBuckets)
	if !slices.ContainsFunc(vs, func(v Version) bool { return v.ID == held.ID && v.Deleted }) ||
		slices.ContainsFunc(vs, func(v Version) bool { return v.ID == unknown.ID }) {
		t.Fatalf("after TTL, versions = %+v; want only the held entry's tombstone", vs)
	}
	// The purge record lasted TTL, the life of entries with the default TTL;
	// a longer-lived one from before the purge is no longer refused.
	mustApply(t, c, Change{Kind: ChangeStored, Entry: replica(Space{"team-p", "r", "s"}, "old", 5, now.Add(-time.Second))})
	if st := c.Stats(); st.Entries != 1 {
		t.Fatal("purge record still refusing entries after TTL")
	}
	clk.Advance(10 * time.Minute)
	if err := c.sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(versions(t, c, allBuckets), func(v Version) bool { return v.ID == held.ID }) {
		t.Fatal("the held entry's tombstone outlived the entry's expiry")
	}
	// The entry refused for the purge is tombstoned until it expires.
	clk.Advance(time.Hour)
	if err := c.sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkDigest(t, c)
	if vs := versions(t, c, allBuckets); len(vs) != 0 || digest(t, c) != (Digest{}) {
		t.Fatalf("left after every expiry: %+v", vs)
	}
	err = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(store.PrefixTombstone)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			t.Errorf("key %q left on disk", it.Item().Key())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Two caches fed the same changes in different orders agree; a difference
// shows in exactly its bucket, Versions reveal it and Export carries it.
func TestDigest(t *testing.T) {
	for _, withDB := range []bool{true, false} {
		t.Run(fmt.Sprintf("db %v", withDB), func(t *testing.T) {
			clk := newClock()
			opts := func() Options {
				o := Options{Now: clk.Now, Shards: 3}
				if withDB {
					o.DB = memDB(t).DB
				}
				return o
			}
			a, b := open(t, opts()), open(t, opts())
			now := clk.Now()
			var chs []Change
			for i := range 60 {
				sp := Space{fmt.Sprintf("team-%d", i%3), "r", fmt.Sprintf("s%d", i%2)}
				prompt := fmt.Sprintf("q%d", i%50) // a few share a hash: newer wins
				e := replica(sp, prompt, i, now.Add(time.Duration(i-30)*time.Second))
				chs = append(chs, Change{Kind: ChangeStored, Entry: e, At: e.CreatedAt})
				if i%7 == 0 {
					chs = append(chs, Change{Kind: ChangeDeleted, ID: e.ID, At: now})
				}
			}
			chs = append(chs,
				Change{Kind: ChangeDeleted, ID: "00000000000000ff", At: now},
				Change{Kind: ChangePurged, Partition: "team-2", At: now})
			for _, ch := range chs {
				mustApply(t, a, ch)
			}
			r := rand.New(rand.NewPCG(1, 2))
			for _, i := range r.Perm(len(chs)) {
				mustApply(t, b, chs[i])
			}
			if digest(t, a) != digest(t, b) {
				t.Fatal("same changes in another order: digests differ")
			}
			if va, vb := versions(t, a, allBuckets), versions(t, b, allBuckets); !slices.Equal(va, vb) {
				t.Fatalf("versions differ:\n%v\n%v", va, vb)
			}
			checkDigest(t, a)
			checkDigest(t, b)

			extra := replica(Space{"team-0", "r", "s0"}, "only on a", 1000, now)
			mustApply(t, a, Change{Kind: ChangeStored, Entry: extra})
			da, db := digest(t, a), digest(t, b)
			bucket := byte(mustParse(t, extra.ID))
			if diff := da.Diff(&db); !slices.Equal(diff, []uint8{bucket}) {
				t.Fatalf("differing buckets %v, want [%d]", diff, bucket)
			}
			va, vb := versions(t, a, []uint8{bucket}), versions(t, b, []uint8{bucket})
			var missing []string
			for _, v := range va {
				if !slices.Contains(vb, v) {
					missing = append(missing, v.ID)
				}
			}
			if !slices.Equal(missing, []string{extra.ID}) {
				t.Fatalf("versions reveal %v, want [%s]", missing, extra.ID)
			}
			got, err := a.Export(t.Context(), append(missing, "00000000000000ff", "bad"))
			if err != nil || len(got) != 1 || !slices.Equal(got[0].Vector, extra.Vector) ||
				!got[0].CreatedAt.Equal(extra.CreatedAt) || string(got[0].Response) != string(extra.Response) {
				t.Fatalf("Export = %+v, %v", got, err)
			}
			mustApply(t, b, Change{Kind: ChangeStored, Entry: got[0]})
			if digest(t, a) != digest(t, b) {
				t.Fatal("digests differ after applying the exported entry")
			}
			if _, _, ok := b.LookupSemantic(t.Context(), extra.Space, extra.Vector, extra.Prompt, 1e-4); !ok {
				t.Fatal("exported entry lost its vector")
			}
		})
	}
}

func TestDigestWhileLoading(t *testing.T) {
	gate := make(chan struct{})
	defer close(gate)
	c := open(t, Options{DB: memDB(t).DB, beforeLoad: func() { <-gate }})
	if _, err := c.Digest(t.Context()); err != ErrNotReady {
		t.Fatalf("Digest while loading: %v, want ErrNotReady", err)
	}
	if _, err := c.Versions(t.Context(), allBuckets); err != ErrNotReady {
		t.Fatalf("Versions while loading: %v, want ErrNotReady", err)
	}
}

// catchUp runs one anti-entropy round from src into dst as the cluster
// does, and returns the number of entries exported and tombstones applied.
func catchUp(t testing.TB, src, dst *Cache) (exported, deleted int) {
	t.Helper()
	return catchUpWith(t, src, dst, applyBatch)
}

// An applier applies the entries of one Export to dst.
type applier func(ctx context.Context, dst *Cache, changes []Change) error

// applyBatch is what the node does with a payload of entries.
func applyBatch(ctx context.Context, dst *Cache, changes []Change) error {
	return dst.ApplyBatch(ctx, changes)
}

// applyEach applies the changes one by one.
func applyEach(ctx context.Context, dst *Cache, changes []Change) error {
	for _, ch := range changes {
		if err := dst.Apply(ctx, ch); err != nil {
			return err
		}
	}
	return nil
}

// applyParallel applies the changes one by one from 4 goroutines, as the
// node did before ApplyBatch.
func applyParallel(ctx context.Context, dst *Cache, changes []Change) error {
	next := make(chan Change)
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			for ch := range next {
				if err := dst.Apply(ctx, ch); err != nil && errs[i] == nil {
					errs[i] = err
				}
			}
		})
	}
	for _, ch := range changes {
		next <- ch
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}

func catchUpWith(t testing.TB, src, dst *Cache, apply applier) (exported, deleted int) {
	t.Helper()
	ctx := context.Background()
	ds, err := src.Digest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dd, err := dst.Digest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	buckets := ds.Diff(&dd)
	if len(buckets) == 0 {
		return 0, 0
	}
	vs, err := src.Versions(ctx, buckets)
	if err != nil {
		t.Fatal(err)
	}
	vd, err := dst.Versions(ctx, buckets)
	if err != nil {
		t.Fatal(err)
	}
	have := make(map[string]Version, len(vd))
	for _, v := range vd {
		have[v.ID] = v
	}
	var fetch []string
	for _, v := range vs {
		h, ok := have[v.ID]
		switch {
		case ok && h == v, ok && h.Deleted:
		case v.Deleted:
			if err := dst.Apply(ctx, Change{Kind: ChangeDeleted, ID: v.ID, At: time.Unix(0, v.CreatedAt)}); err != nil {
				t.Fatal(err)
			}
			deleted++
		default:
			fetch = append(fetch, v.ID)
		}
	}
	// Batches of the cluster's size (cluster.wantBatch).
	for batch := range slices.Chunk(fetch, 256) {
		es, err := src.Export(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		changes := make([]Change, len(es))
		for i, e := range es {
			changes[i] = Change{Kind: ChangeStored, Entry: e, At: e.CreatedAt}
		}
		if err := apply(ctx, dst, changes); err != nil {
			t.Fatal(err)
		}
		exported += len(es)
	}
	return exported, deleted
}

func TestCatchUp(t *testing.T) {
	a := open(t, Options{DB: memDB(t).DB})
	b := open(t, Options{DB: memDB(t).DB})
	ctx := t.Context()
	const n = 2000
	es := storeN(t, a, n)
	for _, e := range es[:10] {
		if _, err := a.Delete(ctx, e.ID); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	exported, deleted := catchUp(t, a, b)
	took := time.Since(start)
	if exported != n-10 || deleted != 10 {
		t.Fatalf("first catch-up moved %d entries and %d tombstones, want %d and 10", exported, deleted, n-10)
	}
	t.Logf("catch-up of %d entries took %v (%.0f entries/s)", exported, took, float64(exported)/took.Seconds())
	if digest(t, a) != digest(t, b) {
		t.Fatal("digests differ after catch-up")
	}
	if va, vb := versions(t, a, allBuckets), versions(t, b, allBuckets); !slices.Equal(va, vb) {
		t.Fatal("versions differ after catch-up")
	}
	checkAll(t, b, es[10:])
	checkDigest(t, b)

	// Five changes on a: the next round moves those and nothing else.
	for _, e := range es[10:12] {
		if _, err := a.Delete(ctx, e.ID); err != nil {
			t.Fatal(err)
		}
	}
	var fresh []*Entry
	for i := range 3 {
		e := entry(teamA, fmt.Sprintf("new %d", i), spread(n+i))
		mustStore(t, a, e)
		fresh = append(fresh, e)
	}
	if exported, deleted := catchUp(t, a, b); exported != 3 || deleted != 2 {
		t.Fatalf("second catch-up moved %d entries and %d tombstones, want 3 and 2", exported, deleted)
	}
	if digest(t, a) != digest(t, b) {
		t.Fatal("digests differ after the second catch-up")
	}
	if exported, deleted := catchUp(t, a, b); exported != 0 || deleted != 0 {
		t.Fatalf("third catch-up moved %d entries and %d tombstones, want none", exported, deleted)
	}
	checkAll(t, b, append(es[12:], fresh...))
}

// Replication runs alongside local use without breaking the digest.
func TestApplyConcurrentWithLocalChanges(t *testing.T) {
	c := open(t, Options{DB: memDB(t).DB, Shards: 4, MaxEntries: 300})
	ctx := t.Context()
	now := time.Now()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 80 {
				n := g*1000 + i
				sp := Space{fmt.Sprintf("team-%d", n%4), "r", "s"}
				e := replica(sp, fmt.Sprintf("q%d", n), n, now.Add(-time.Duration(i)*time.Millisecond))
				if g%2 == 0 {
					mustStore(t, c, entry(sp, fmt.Sprintf("local %d", n), spread(n)))
				}
				if err := c.Apply(ctx, Change{Kind: ChangeStored, Entry: e}); err != nil {
					t.Error(err)
					return
				}
				switch i % 10 {
				case 3:
					c.Apply(ctx, Change{Kind: ChangeDeleted, ID: e.ID, At: now})
				case 5:
					c.Delete(ctx, replica(sp, "", n-1, now).ID)
				case 9:
					if g == 1 {
						c.Apply(ctx, Change{Kind: ChangePurged, Partition: "team-1", At: now})
					}
				}
			}
		})
	}
	wg.Wait()
	checkDigest(t, c)
	vs := versions(t, c, allBuckets)
	for _, v := range vs {
		if _, ok := c.Get(ctx, v.ID); ok == v.Deleted {
			t.Fatalf("version %+v disagrees with Get", v)
		}
	}
}

// BenchmarkCatchUp measures a full catch-up of entries with 384-dim
// vectors between two caches on disk: Export from one, Apply to the other
// in batches of 256, by ApplyBatch or by Apply one by one (seq: in order;
// par: from 4 goroutines). flat: 10,000 entries into flat graphs; hnsw:
// 20,000 into HNSW graphs.
func BenchmarkCatchUp(b *testing.B) {
	for _, g := range []struct {
		name     string
		n        int
		newGraph func() graph.Index
	}{
		{"flat", 10_000, nil},
		{"hnsw", 20_000, func() graph.Index { return graph.NewHNSW(graph.Params{}) }},
	} {
		b.Run(g.name, func(b *testing.B) {
			src := catchUpSource(b, g.n)
			for _, a := range []struct {
				name  string
				apply applier
			}{{"batch", applyBatch}, {"seq", applyEach}, {"par", applyParallel}} {
				b.Run(a.name, func(b *testing.B) {
					for range b.N {
						b.StopTimer()
						dst := openOnDisk(b, Options{NewGraph: g.newGraph})
						b.StartTimer()
						if exported, _ := catchUpWith(b, src, dst, a.apply); exported != g.n {
							b.Fatalf("exported %d", exported)
						}
					}
					b.ReportMetric(float64(g.n*b.N)/b.Elapsed().Seconds(), "entries/s")
				})
			}
		})
	}
}

// openOnDisk opens a Cache on a new database in a temporary directory.
func openOnDisk(b *testing.B, opts Options) *Cache {
	db := diskDB(b, b.TempDir())
	b.Cleanup(func() { db.Close() })
	opts.DB = db.DB
	c, err := Open(context.Background(), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	for !c.Ready() {
		time.Sleep(time.Millisecond)
	}
	return c
}

// catchUpSource is a cache on disk holding n entries with random 384-dim
// vectors and 1,500-byte answers, in 5 partitions.
func catchUpSource(b *testing.B, n int) *Cache {
	src := openOnDisk(b, Options{})
	r := rand.New(rand.NewPCG(1, 1))
	es := make([]Change, n)
	for i := range n {
		e := entry(Space{fmt.Sprintf("team-%d", i%5), "r", "s"}, fmt.Sprintf("prompt %d", i), nil)
		e.ID = formatID(newID())
		e.CreatedAt = time.Now()
		e.Vector = make([]float32, 384)
		for j := range e.Vector {
			e.Vector[j] = float32(r.NormFloat64())
		}
		e.Vector = unit(e.Vector)
		e.Response = make([]byte, 1500)
		es[i] = Change{Kind: ChangeStored, Entry: e}
	}
	if err := src.ApplyBatch(context.Background(), es); err != nil {
		b.Fatal(err)
	}
	return src
}
