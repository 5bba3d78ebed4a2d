package index

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/llmgate/llmgate/index/graph"
)

func TestEncodeDecodeEntry(t *testing.T) {
	e := entry(Space{"team-a/eu", "gpt-4o", "shape"}, "dialog\nwith lines", spread(3))
	e.ID = "0123456789abcdef"
	e.CreatedAt = time.Unix(1700000000, 123456789)
	e.ExpiresAt = e.CreatedAt.Add(time.Hour)
	e.Hits = 42
	e.Norm = NormHash(e.Space, "dialog\nwith lines")
	got, err := decodeEntry(e.ID, encodeEntry(e))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, e) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, e)
	}
	exactOnly := &Entry{ID: e.ID, CreatedAt: e.CreatedAt, ExpiresAt: e.ExpiresAt}
	got, err = decodeEntry(e.ID, encodeEntry(exactOnly))
	if err != nil || !reflect.DeepEqual(got, exactOnly) {
		t.Fatalf("round trip of an empty entry: %+v, %v", got, err)
	}
	b := encodeEntry(e)
	for n := range len(b) {
		if _, err := decodeEntry(e.ID, b[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes decoded without error", n, len(b))
		}
	}
}

func FuzzDecodeEntry(f *testing.F) {
	e := entry(teamA, "q", spread(1))
	e.CreatedAt, e.ExpiresAt = time.Unix(1, 0), time.Unix(2, 0)
	f.Add(encodeEntry(e))
	f.Add([]byte{entryFormat})
	f.Add([]byte{entryFormat, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeEntry("0000000000000001", b)
		if err != nil {
			return
		}
		again, err := decodeEntry("0000000000000001", encodeEntry(got))
		if err != nil || !reflect.DeepEqual(got, again) {
			t.Fatalf("decoded entry does not round-trip: %v", err)
		}
	})
}

// storeN stores n entries, each in its own Space among a few, and returns
// them.
func storeN(t *testing.T, c *Cache, n int) []*Entry {
	t.Helper()
	var es []*Entry
	for i := range n {
		e := entry(Space{fmt.Sprintf("team-%d", i%5), "r", fmt.Sprintf("s%d", i%2)}, fmt.Sprintf("q%d", i), spread(i))
		mustStore(t, c, e)
		es = append(es, e)
	}
	return es
}

// checkAll asserts that every entry answers by exact and semantic lookup.
func checkAll(t *testing.T, c *Cache, es []*Entry) {
	t.Helper()
	ctx := t.Context()
	for _, e := range es {
		got, ok := c.LookupExact(ctx, e.Space, e.Exact)
		if !ok || got.ID != e.ID || string(got.Response) != string(e.Response) || !got.CreatedAt.Equal(e.CreatedAt) {
			t.Fatalf("entry %s (%q) lost by the exact tier after restart: %v", e.ID, e.Prompt, got)
		}
		got, d, ok := c.LookupSemantic(ctx, e.Space, e.Vector, e.Prompt, 1e-4)
		if !ok || got.ID != e.ID {
			t.Fatalf("entry %s lost by the semantic tier after restart (got %v at %v)", e.ID, got, d)
		}
	}
	if st := c.Stats(); st.Entries != int64(len(es)) {
		t.Fatalf("entries after restart = %d, want %d", st.Entries, len(es))
	}
}

func TestRestartKeepsEntries(t *testing.T) {
	for _, closeCache := range []bool{true, false} {
		t.Run(fmt.Sprintf("cache closed first %v", closeCache), func(t *testing.T) {
			dir := t.TempDir()
			db := diskDB(t, dir)
			c, err := Open(t.Context(), Options{DB: db.DB})
			if err != nil {
				t.Fatal(err)
			}
			es := storeN(t, c, 300)
			expired := entry(teamA, "expired", spread(999))
			expired.ExpiresAt = time.Now().Add(50 * time.Millisecond)
			mustStore(t, c, expired)
			if closeCache {
				c.Close()
			} else {
				defer c.Close() // after the database is gone, as in a crash
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(60 * time.Millisecond)

			db = diskDB(t, dir)
			defer db.Close()
			c2 := open(t, Options{DB: db.DB})
			waitReady(t, c2)
			checkAll(t, c2, es)
			if _, ok := c2.Get(t.Context(), expired.ID); ok {
				t.Fatal("entry expired while down was loaded")
			}
		})
	}
}

// While loading, lookups miss without error; stores, deletes and purges work
// and are not undone by the load.
func TestLookupsMissWhileLoading(t *testing.T) {
	dir := t.TempDir()
	db := diskDB(t, dir)
	c, _ := Open(t.Context(), Options{DB: db.DB})
	es := storeN(t, c, 40)
	c.Close()
	db.Close()

	db = diskDB(t, dir)
	defer db.Close()
	gate := make(chan struct{})
	c = open(t, Options{DB: db.DB, beforeLoad: func() { <-gate }})
	ctx := t.Context()
	if c.Ready() {
		t.Fatal("Ready before loading")
	}
	for _, e := range es {
		if _, ok := c.LookupExact(ctx, e.Space, e.Exact); ok {
			t.Fatal("exact hit while loading")
		}
		if _, _, ok := c.LookupSemantic(ctx, e.Space, e.Vector, e.Prompt, 0.01); ok {
			t.Fatal("semantic hit while loading")
		}
	}
	fresh := entry(teamA, "stored while loading", axis(0, 0))
	mustStore(t, c, fresh)
	deleted := es[0]
	if _, err := c.Delete(ctx, deleted.ID); err != nil {
		t.Fatal(err)
	}
	var purged int
	for _, e := range es {
		if e.Space.Partition == "team-4" {
			purged++
		}
	}
	if _, err := c.Purge(ctx, "team-4", ""); err != nil {
		t.Fatal(err)
	}
	close(gate)
	waitReady(t, c)

	var kept []*Entry
	for _, e := range es[1:] {
		if e.Space.Partition != "team-4" {
			kept = append(kept, e)
		}
	}
	checkAll(t, c, append(kept, fresh))
	if _, ok := c.Get(ctx, deleted.ID); ok || onDisk(t, db.DB, deleted.ID) {
		t.Fatal("entry deleted while loading came back")
	}
	if st := c.Stats(); st.Misses != int64(len(es)) {
		t.Fatalf("misses = %d, want %d (one per semantic lookup while loading)", st.Misses, len(es))
	}
}

const crashEnv = "LLMGATE_INDEX_CRASH_DIR"

// TestCrashKeepsAcknowledgedEntries stores entries in a child process, kills
// it with SIGKILL once they are acknowledged, and finds them all.
func TestCrashKeepsAcknowledgedEntries(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(t, dir)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsAcknowledgedEntries$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	acked := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "stored") {
				acked <- true
				return
			}
		}
		acked <- false
	}()
	select {
	case ok := <-acked:
		if !ok {
			t.Fatal("child ended before storing")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("child did not store in time")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	db := diskDB(t, dir)
	defer db.Close()
	c := open(t, Options{DB: db.DB})
	waitReady(t, c)
	// The child's entries are deterministic but for their IDs and times.
	want := make([]*Entry, 0, 200)
	for i := range 200 {
		want = append(want, entry(Space{fmt.Sprintf("team-%d", i%5), "r", fmt.Sprintf("s%d", i%2)}, fmt.Sprintf("q%d", i), spread(i)))
	}
	ctx := t.Context()
	for _, e := range want {
		if _, ok := c.LookupExact(ctx, e.Space, e.Exact); !ok {
			t.Fatalf("acknowledged entry %q lost by kill -9", e.Prompt)
		}
		if _, _, ok := c.LookupSemantic(ctx, e.Space, e.Vector, e.Prompt, 1e-4); !ok {
			t.Fatalf("acknowledged entry %q lost by the semantic tier after kill -9", e.Prompt)
		}
	}
}

func crashChild(t *testing.T, dir string) {
	db := diskDB(t, dir)
	c, err := Open(t.Context(), Options{DB: db.DB})
	if err != nil {
		t.Fatal(err)
	}
	storeN(t, c, 200)
	fmt.Println("stored")
	time.Sleep(time.Minute) // killed here
}

// BenchmarkStoreParallel stores entries as a node's cache misses do: many
// at once, each with a 384-d vector and a 1,500-byte answer, on disk.
func BenchmarkStoreParallel(b *testing.B) {
	c := openOnDisk(b, Options{})
	vec := make([]float32, 384)
	for i := range vec {
		vec[i] = float32(i%7) - 3
	}
	vec = unit(vec)
	resp := make([]byte, 1500)
	var n atomic.Int64
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e := entry(Space{"team", "r", "s"}, fmt.Sprintf("prompt %d", n.Add(1)), nil)
			e.Vector, e.Response = vec, resp
			if err := c.Store(context.Background(), e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestConcurrentStoresSurviveRestart: stores made at once share commits
// (see commitLoop); every one that returned is on disk, and a restart
// finds them all.
func TestConcurrentStoresSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	db := diskDB(t, dir)
	c, err := Open(t.Context(), Options{DB: db.DB})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close() // after the database is gone, as in a crash
	es := make([]*Entry, 200)
	var wg sync.WaitGroup
	for i := range es {
		es[i] = entry(Space{fmt.Sprintf("team-%d", i%3), "r", "s"}, fmt.Sprintf("q%d", i), spread(i))
		wg.Go(func() {
			if err := c.Store(t.Context(), es[i]); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, e := range es {
		if !onDisk(t, db.DB, e.ID) {
			t.Fatalf("entry %s not on disk after its Store returned", e.ID)
		}
	}
	c2 := restartDB(t, db, dir)
	checkAll(t, c2, es)
}

// TestCommitBatchSplitsWhatOneTransactionCannotHold: entries that together
// exceed a transaction's size are committed in several, and one that no
// transaction takes fails alone.
func TestCommitBatchSplitsWhatOneTransactionCannotHold(t *testing.T) {
	// A 1 MB memtable holds transactions of about 150 KB; in memory, a
	// value above the threshold is refused.
	db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithMemTableSize(1 << 20).WithValueThreshold(64 << 10).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c := &Cache{opts: Options{DB: db}}
	var reqs []commitReq
	for i := range 40 {
		val := []byte(strings.Repeat("x", 10<<10))
		if i == 17 {
			val = []byte(strings.Repeat("y", 400<<10))
		}
		reqs = append(reqs, commitReq{de: badger.NewEntry(diskKey(formatID(uint64(i))), val)})
	}
	c.commitBatch(reqs)
	for i, r := range reqs {
		err := r.err
		switch {
		case i == 17 && err == nil:
			t.Fatal("the oversized entry was committed")
		case i == 17:
			continue
		case err != nil:
			t.Fatalf("entry %d: %v", i, err)
		}
		if err := db.View(func(txn *badger.Txn) error {
			_, err := txn.Get(diskKey(formatID(uint64(i))))
			return err
		}); err != nil {
			t.Fatalf("entry %d not committed: %v", i, err)
		}
	}
}

// TestStoreAsyncAnswersOnceStored: StoreAsync returns at once; its done is
// called once, after the entry is on disk and found by both tiers, and the
// entries of concurrent calls all come back after a restart. After Close,
// done gets ErrClosed.
func TestStoreAsyncAnswersOnceStored(t *testing.T) {
	dir := t.TempDir()
	db := diskDB(t, dir)
	var changes atomic.Int64
	c, err := Open(t.Context(), Options{DB: db.DB, NewGraph: func() graph.Index { return graph.NewFlat() }, OnChange: func(ch Change) {
		if ch.Kind == ChangeStored && ch.Entry.Vector != nil {
			changes.Add(1)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, c)
	es := make([]*Entry, 100)
	errs := make(chan error, len(es))
	for i := range es {
		es[i] = entry(Space{fmt.Sprintf("team-%d", i%3), "r", "s"}, fmt.Sprintf("q%d", i), spread(i))
		e := es[i]
		sp, exact, vec := e.Space, e.Exact, slices.Clone(e.Vector)
		c.StoreAsync(e, func(err error) {
			if err == nil {
				if derr := db.View(func(txn *badger.Txn) error { _, err := txn.Get(diskKey(e.ID)); return err }); derr != nil {
					err = fmt.Errorf("entry %s not on disk when done was called: %w", e.ID, derr)
				}
			}
			if err == nil {
				// The shard's actor may be the caller: look it up from
				// another goroutine.
				go func() {
					if _, ok := c.LookupExact(t.Context(), sp, exact); !ok {
						errs <- fmt.Errorf("entry %s not found by its hash when done was called", e.ID)
						return
					}
					if _, _, ok := c.NearestGuarded(t.Context(), sp, vec, "", 0.001); !ok {
						errs <- fmt.Errorf("entry %s not found by its vector when done was called", e.ID)
						return
					}
					errs <- nil
				}()
				return
			}
			errs <- err
		})
	}
	for range es {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := changes.Load(); n != int64(len(es)) {
		t.Errorf("OnChange told of %d stored entries with their vectors, want %d", n, len(es))
	}
	c.Close()
	closed := make(chan error, 1)
	c.StoreAsync(entry(Space{"team", "r", "s"}, "after close", nil), func(err error) { closed <- err })
	if err := <-closed; !errors.Is(err, ErrClosed) {
		t.Errorf("StoreAsync after Close: %v, want ErrClosed", err)
	}
	checkAll(t, restartDB(t, db, dir), es)
}

// TestStoreWhoseCallerGaveUpIsStored: a Store whose ctx ends before its
// commit returns the ctx's error, and its entry is still stored (on disk
// and in memory alike, never on disk alone).
func TestStoreWhoseCallerGaveUpIsStored(t *testing.T) {
	db := memDB(t)
	c := open(t, Options{DB: db.DB})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	e := entry(Space{"team", "r", "s"}, "given up", nil)
	if err := c.Store(ctx, e); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := c.LookupExact(t.Context(), e.Space, e.Exact); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the entry of a Store whose caller gave up never came in")
		}
		time.Sleep(time.Millisecond)
	}
	if !onDisk(t, db.DB, e.ID) {
		t.Fatal("the entry is in memory but not on disk")
	}
}
