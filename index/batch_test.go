package index

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// cacheState is everything ApplyBatch must agree on with Apply: the
// digest, the versions (tombstones with their times), the entries as
// handed out, and the database's keys and values.
type cacheState struct {
	digest   Digest
	versions []Version
	entries  []string
	disk     []string
}

func stateOf(t *testing.T, c *Cache, db *badger.DB) cacheState {
	t.Helper()
	checkDigest(t, c)
	st := cacheState{digest: digest(t, c), versions: versions(t, c, allBuckets)}
	es, next, err := c.List(t.Context(), "", "", 1<<20, "")
	if err != nil || next != "" {
		t.Fatalf("List: %v, next %q", err, next)
	}
	for _, e := range es {
		st.entries = append(st.entries, fmt.Sprintf("%s %+v %x %q %d %d %d %s",
			e.ID, e.Space, e.Exact, e.Prompt, e.CreatedAt.UnixNano(), e.ExpiresAt.UnixNano(), e.Hits, e.Response))
	}
	err = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			st.disk = append(st.disk, fmt.Sprintf("%s=%x", it.Item().Key(), v))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (st cacheState) diff(o cacheState) string {
	switch {
	case st.digest != o.digest:
		return fmt.Sprintf("digests differ in buckets %v", st.digest.Diff(&o.digest))
	case !slices.Equal(st.versions, o.versions):
		return fmt.Sprintf("versions differ:\n%+v\n%+v", st.versions, o.versions)
	case !slices.Equal(st.entries, o.entries):
		return fmt.Sprintf("entries differ:\n%v\n%v", st.entries, o.entries)
	case !slices.Equal(st.disk, o.disk):
		return fmt.Sprintf("disks differ: %d and %d keys", len(st.disk), len(o.disk))
	}
	return ""
}

// countErrs is how many errors err joins.
func countErrs(err error) int {
	if err == nil {
		return 0
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return len(j.Unwrap())
	}
	return 1
}

// ApplyBatch leaves a cache as Apply of each change in order does.
func TestApplyBatchMatchesApply(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	dbA, dbB := memDB(t), memDB(t)
	one := open(t, Options{DB: dbA.DB, Now: clk.Now, Shards: 4})
	batch := open(t, Options{DB: dbB.DB, Now: clk.Now, Shards: 4})
	ctx := t.Context()

	spA, spB, spC, spD := Space{"team-a", "r", "s"}, Space{"team-b", "r", "s"}, Space{"team-c", "r", "s"}, Space{"team-d", "r", "t"}
	spP, spQ := Space{"team-p", "r", "s"}, Space{"team-q", "r", "s"}
	stored := func(e *Entry) Change { return Change{Kind: ChangeStored, Entry: e, At: e.CreatedAt} }

	held := replica(spA, "held", 1, now.Add(-time.Minute))
	gone := replica(spA, "gone", 2, now.Add(-time.Minute))
	holderNew := replica(spB, "x", 5, now.Add(-time.Minute))
	holderOld := replica(spB, "y", 7, now.Add(-3*time.Minute))
	before := []Change{
		stored(held),
		{Kind: ChangeDeleted, ID: gone.ID, At: now.Add(-30 * time.Second)},
		{Kind: ChangePurged, Partition: "team-p", At: now.Add(-10 * time.Second)},
		stored(holderNew),
		stored(holderOld),
	}

	covered := replica(spP, "covered", 3, now.Add(-20*time.Second)) // before the purge record
	fresh := replica(spP, "fresh", 4, now.Add(-5*time.Second))
	olderX := replica(spB, "x", 6, now.Add(-2*time.Minute))   // loses to holderNew
	newerY := replica(spB, "y", 8, now.Add(-time.Minute))     // replaces holderOld
	z1 := replica(spC, "z", 9, now.Add(-2*time.Minute))       // then z2 replaces it
	z2 := replica(spC, "z", 10, now.Add(-time.Minute))        //
	w2 := replica(spC, "w", 11, now.Add(-time.Minute))        // then w1 loses to it
	w1 := replica(spC, "w", 12, now.Add(-2*time.Minute))      //
	tie1 := replica(spC, "tie", 20, now.Add(-time.Minute))    // same CreatedAt: the higher ID wins
	tie2 := replica(spC, "tie", 21, now.Add(-time.Minute))    //
	dup := replica(spD, "dup", 13, now.Add(-time.Minute))     // twice in the batch
	expired := replica(spD, "exp", 14, now.Add(-2*time.Hour)) // expired an hour ago
	zero := replica(spD, "zero", 15, now)                     // times from At and TTL
	zero.CreatedAt, zero.ExpiresAt = time.Time{}, time.Time{}
	d1 := replica(spD, "deleted after", 16, now.Add(-time.Minute))
	d2 := replica(spD, "deleted before", 17, now.Add(-time.Minute))
	q1 := replica(spQ, "purged after", 18, now.Add(-time.Minute))
	q2 := replica(spQ, "purge covers", 19, now.Add(-time.Minute))
	q3 := replica(spQ, "after the purge", 22, now)

	batch1 := []Change{
		stored(held), stored(gone), stored(covered), stored(fresh), stored(olderX), stored(newerY),
		stored(z1), stored(z2), stored(w2), stored(w1), stored(tie1), stored(tie2),
		stored(dup), stored(expired), {Kind: ChangeStored, Entry: zero, At: now.Add(-time.Minute)},
		stored(d1), {Kind: ChangeDeleted, ID: d1.ID, At: now},
		{Kind: ChangeDeleted, ID: d2.ID, At: now}, stored(d2),
		{Kind: ChangeStored}, // malformed: no entry
		stored(q1), {Kind: ChangePurged, Partition: "team-q", At: now.Add(-30 * time.Second)}, stored(q2), stored(q3),
		stored(dup),
		{Kind: ChangeStored, Entry: &Entry{ID: "x"}}, // malformed: bad ID
		{Kind: 9}, // malformed: unknown kind
	}
	// Enough entries that every shard gets several chunks.
	var bulk []*Entry
	for i := range 600 {
		e := replica(Space{fmt.Sprintf("bulk-%d", i%8), "r", "s"}, fmt.Sprintf("bulk %d", i), 100+i, now.Add(-time.Duration(i)*time.Second))
		bulk = append(bulk, e)
		batch1 = append(batch1, stored(e))
	}
	// The same Exact hash as a bulk entry: older loses, newer replaces.
	batch1 = append(batch1,
		stored(replica(bulk[3].Space, "bulk 3", 5000, now.Add(-time.Hour+time.Minute))),
		stored(replica(bulk[4].Space, "bulk 4", 5001, now)))

	batch2 := slices.Clone(batch1) // idempotent
	batch2 = append(batch2,
		stored(replica(spC, "z", 30, now)),                     // replaces z2
		stored(replica(spC, "w", 31, now.Add(-3*time.Minute))), // loses to w2
		stored(replica(spB, "x", 32, now)),                     // replaces holderNew
	)

	for _, ch := range before {
		mustApply(t, one, ch)
		if err := batch.ApplyBatch(ctx, []Change{ch}); err != nil {
			t.Fatal(err)
		}
	}
	for i, changes := range [][]Change{batch1, batch2} {
		var errs []error
		for _, ch := range changes {
			if err := one.Apply(ctx, ch); err != nil {
				errs = append(errs, err)
			}
		}
		err := batch.ApplyBatch(ctx, changes)
		if got, want := countErrs(err), len(errs); got != want || want != 3 {
			t.Fatalf("batch %d: ApplyBatch reported %d errors (%v), Apply %d", i+1, got, err, want)
		}
		if d := stateOf(t, one, dbA.DB).diff(stateOf(t, batch, dbB.DB)); d != "" {
			t.Fatalf("after batch %d: %s", i+1, d)
		}
		if i == 0 {
			// The reference itself did what the cases say.
			want := map[string]bool{
				held.ID: true, gone.ID: false, covered.ID: false, fresh.ID: true, olderX.ID: false,
				newerY.ID: true, holderOld.ID: false, z1.ID: false, z2.ID: true, w1.ID: false, w2.ID: true,
				tie1.ID: false, tie2.ID: true, dup.ID: true, expired.ID: false, zero.ID: true,
				d1.ID: false, d2.ID: false, q1.ID: false, q2.ID: false, q3.ID: true,
				bulk[3].ID: true, bulk[4].ID: false,
			}
			for id, in := range want {
				if _, ok := batch.Get(ctx, id); ok != in {
					t.Errorf("entry %s held: %v, want %v", id, ok, in)
				}
				if onDisk(t, dbB.DB, id) != in {
					t.Errorf("entry %s on disk: %v, want %v", id, !in, in)
				}
			}
			if got, ok := batch.Get(ctx, zero.ID); !ok || !got.CreatedAt.Equal(now.Add(-time.Minute)) || !got.ExpiresAt.Equal(now.Add(-time.Minute+time.Hour)) {
				t.Errorf("entry with zero times = %+v", got)
			}
			vs := versions(t, batch, []uint8{byte(mustParse(t, covered.ID))})
			if !slices.Contains(vs, Version{ID: covered.ID, CreatedAt: now.Add(-10 * time.Second).UnixNano(), Deleted: true}) {
				t.Errorf("entry refused by the purge record not tombstoned: %+v", vs)
			}
		}
	}
	if _, _, ok := batch.LookupSemantic(ctx, bulk[7].Space, bulk[7].Vector, bulk[7].Prompt, 1e-4); !ok {
		t.Fatal("batched entry not found by its vector")
	}
}

// Entries applied in a batch are on disk: a restart brings every one back.
func TestApplyBatchRestart(t *testing.T) {
	dir := t.TempDir()
	db := diskDB(t, dir)
	c, err := Open(t.Context(), Options{DB: db.DB})
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, c)
	now := time.Now()
	r := rand.New(rand.NewPCG(1, 2))
	var changes []Change
	var es []*Entry
	for i := range 1000 {
		e := replica(Space{fmt.Sprintf("team-%d", i%7), "r", "s"}, fmt.Sprintf("q%d", i), i, now.Add(-time.Duration(i)*time.Millisecond))
		// Random vectors: spread's repeat within 1000 entries.
		e.Vector = make([]float32, 32)
		for j := range e.Vector {
			e.Vector[j] = float32(r.NormFloat64())
		}
		e.Vector = unit(e.Vector)
		e.Response = bytes.Repeat([]byte{'x'}, 1100) // in the value log, as real answers are
		changes = append(changes, Change{Kind: ChangeStored, Entry: e})
		es = append(es, e)
	}
	if err := c.ApplyBatch(t.Context(), changes); err != nil {
		t.Fatal(err)
	}
	checkAll(t, c, es)
	d := digest(t, c)
	c.Close()
	c2 := restartDB(t, db, dir)
	checkAll(t, c2, es)
	if digest(t, c2) != d {
		t.Fatal("digest changed across the restart")
	}
}

// An entry that cannot be persisted is never visible.
func TestApplyBatchPersistsFirst(t *testing.T) {
	dir := t.TempDir()
	db := diskDB(t, dir)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := badger.Open(badger.DefaultOptions(dir).WithReadOnly(true).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	c := open(t, Options{DB: ro})
	e := replica(teamA, "q", 1, time.Now())
	if err := c.ApplyBatch(t.Context(), []Change{{Kind: ChangeStored, Entry: e}}); err == nil {
		t.Fatal("ApplyBatch on a read-only database succeeded")
	}
	if _, ok := c.Get(t.Context(), e.ID); ok {
		t.Fatal("entry visible though not persisted")
	}
}

// An ended ctx stops ApplyBatch without wedging the actors.
func TestApplyBatchCanceled(t *testing.T) {
	c := open(t, Options{DB: memDB(t).DB})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var changes []Change
	for i := range 200 {
		changes = append(changes, Change{Kind: ChangeStored, Entry: replica(teamA, fmt.Sprintf("q%d", i), i, time.Now())})
	}
	// A message may still slip past the ended ctx (select picks at random).
	if err := c.ApplyBatch(ctx, changes); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("ApplyBatch with a canceled ctx: %v", err)
	}
	if err := c.ApplyBatch(t.Context(), changes); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Entries != 200 {
		t.Fatalf("entries = %d, want 200", st.Entries)
	}
	checkDigest(t, c)
}

// TestCloseWhileABatchIsBeingAdded: a Close while the committer's message
// to a shard still waits in its inbox answers the batch's callers with
// ErrClosed, and the actor that runs the message after does not read the
// committer's batch, which the committer has by then cleared (before, it
// dereferenced a cleared entry and took the process down).
func TestCloseWhileABatchIsBeingAdded(t *testing.T) {
	for iter := range 20 {
		c, err := Open(context.Background(), Options{Shards: 1})
		if err != nil {
			t.Fatal(err)
		}
		s := c.shards[0]
		block, running := make(chan struct{}), make(chan struct{})
		s.inbox <- op{f: func(*shard) { close(running); <-block }}
		<-running
		answered := make(chan error, 1)
		c.StoreAsync(entry(Space{"team", "r", "s"}, "q", spread(iter)), func(err error) { answered <- err })
		deadline := time.Now().Add(5 * time.Second)
		for len(s.inbox) == 0 { // the committer's message is queued
			if time.Now().After(deadline) {
				t.Fatal("the committer's message never reached the shard")
			}
			time.Sleep(100 * time.Microsecond)
		}
		closed := make(chan struct{})
		go func() { c.Close(); close(closed) }()
		if err := <-answered; !errors.Is(err, ErrClosed) {
			t.Fatalf("store answered %v, want ErrClosed", err)
		}
		time.Sleep(2 * time.Millisecond) // the committer clears its batch
		close(block)                     // the actor may now run the message
		<-closed
		time.Sleep(time.Millisecond)
	}
}

// TestCloseRacingStoresAnswersEachOnceAndKeepsWhatItAcknowledged: Stores
// racing a Close are each answered exactly once, by the time Close returns
// (or at once, for a Store after it), nil or ErrClosed; every entry
// answered nil is on the disk for the next open.
func TestCloseRacingStoresAnswersEachOnceAndKeepsWhatItAcknowledged(t *testing.T) {
	for iter := range 10 {
		db := memDB(t)
		c, err := Open(context.Background(), Options{DB: db.DB, Shards: 4})
		if err != nil {
			t.Fatal(err)
		}
		const writers, each = 8, 40
		var mu sync.Mutex
		calls := map[string]int{}
		acked := map[string]bool{}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := range each {
					e := entry(Space{fmt.Sprint("p", (w+i)%5), "r", "s"}, fmt.Sprint("q", iter, w, i), spread(iter*1000+w*each+i))
					c.StoreAsync(e, func(err error) {
						mu.Lock()
						defer mu.Unlock()
						calls[e.ID]++
						switch {
						case err == nil:
							acked[e.ID] = true
						case !errors.Is(err, ErrClosed):
							t.Errorf("store %s: %v, want nil or ErrClosed", e.ID, err)
						}
					})
				}
			}()
		}
		close(start)
		time.Sleep(time.Duration(iter%4) * 200 * time.Microsecond)
		c.Close()
		wg.Wait() // every Store made: the last ones after Close
		mu.Lock()
		if len(calls) != writers*each {
			t.Fatalf("%d stores answered, want %d", len(calls), writers*each)
		}
		for id, n := range calls {
			if n != 1 {
				t.Fatalf("store %s answered %d times", id, n)
			}
		}
		ids := make([]string, 0, len(acked))
		for id := range acked {
			ids = append(ids, id)
		}
		mu.Unlock()
		again := open(t, Options{DB: db.DB})
		for _, id := range ids {
			if _, found := again.Get(context.Background(), id); !found {
				t.Fatalf("entry %s was acknowledged, then lost", id)
			}
		}
		again.Close()
	}
}

// TestStoreQueuedBeforeAPurgeIsPurged: an entry queued before a purge that
// covers it, and added after the purge ran (it waited behind another
// batch), is purged as if it had been stored first: peers refuse its copy
// and the next load drops it, so serving it would answer from a purged
// entry until a restart lost it.
func TestStoreQueuedBeforeAPurgeIsPurged(t *testing.T) {
	clk := newClock()
	db := memDB(t)
	hold, held := make(chan struct{}), make(chan struct{}, 1)
	first := true
	c := open(t, Options{DB: db.DB, Now: clk.Now, OnChange: func(ch Change) {
		if ch.Kind == ChangeStored && first {
			first = false
			held <- struct{}{}
			<-hold
		}
	}})
	go c.StoreAsync(entry(Space{"other", "r", "s"}, "a", spread(1)), func(error) {})
	<-held // the committer is busy with the previous batch
	e := entry(Space{"team", "r", "s"}, "b", spread(2))
	done := make(chan error, 1)
	c.StoreAsync(e, func(err error) { done <- err })
	clk.Advance(time.Second)
	if _, err := c.Purge(context.Background(), "team", ""); err != nil {
		t.Fatal(err)
	}
	close(hold)
	if err := <-done; err != nil {
		t.Errorf("store = %v, want nil (stored, then purged)", err)
	}
	if _, live := c.Get(context.Background(), e.ID); live {
		t.Error("the purged entry is served")
	}
	c.Close()
	if _, found := open(t, Options{DB: db.DB, Now: clk.Now}).Get(context.Background(), e.ID); found {
		t.Error("the purged entry is back after a restart")
	}
}
