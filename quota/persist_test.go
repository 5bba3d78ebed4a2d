package quota

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/llmgate/llmgate/internal/store"
)

func openDB(t testing.TB, dir string) *store.DB {
	t.Helper()
	db, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func openWithDB(t testing.TB, db *store.DB, c *clock, limits map[string]Limits, interval time.Duration) *Limiter {
	t.Helper()
	l, err := Open(Options{DB: db.DB, Now: c.now, NodeName: "n1", SnapshotInterval: interval}, limits)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// reopen opens the database in dir and a Limiter over it, as a node does
// when it restarts; both are closed, the Limiter first, when the test ends.
func reopen(t testing.TB, dir string, c *clock, limits map[string]Limits) (*store.DB, *Limiter) {
	t.Helper()
	db := openDB(t, dir)
	t.Cleanup(func() { db.Close() })
	l := openWithDB(t, db, c, limits, time.Hour)
	t.Cleanup(func() { l.Close() })
	return db, l
}

var persistLimits = map[string]Limits{"a": {TPM: 1000, QuotaTokens: 10000, Period: Daily}}

func TestReopenRestoresCounters(t *testing.T) {
	dir := t.TempDir()
	c := newClock(t0)
	db := openDB(t, dir)
	l := openWithDB(t, db, c, persistLimits, time.Hour) // only Close snapshots
	reserve(t, l, "a", "", 300)
	r, _ := reserve(t, l, "a", "a/user:bob", 200)
	l.Settle(context.Background(), r, 150)
	mergeUsage(t, l, Usage{Origin: "n2", Consumer: "a", Buckets: []BucketUsage{bucketAt(t0, 50, 0)},
		PeriodStart: time.Date(2025, 6, 11, 0, 0, 0, 0, time.UTC).Unix(), PeriodAdded: 50})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	db.Close()

	c.add(20 * time.Second)
	_, l = reopen(t, dir, c, persistLimits)
	st := status(t, l, "a")
	if st.TPMUsed != 350 || st.QuotaUsed != 350 || st.ByNode["n1"] != 300 || st.ByNode["n2"] != 50 {
		t.Fatalf("restored status: %+v, want used 350 (n1 300, n2 50), quota 350", st)
	}
	if len(st.Keys) != 1 || st.Keys[0].TPMUsed != 150 || st.Keys[0].QuotaUsed != 150 {
		t.Fatalf("restored keys: %+v", st.Keys)
	}
	// The restored window still refuses and slides like the original.
	if _, d := reserve(t, l, "a", "", 700); d.Allowed || d.RetryAfter != 41*time.Second {
		t.Fatalf("reserve 700 after restart: %+v, want refused for 41s", d)
	}
}

func TestRestartDropsStaleBucketsAndPeriods(t *testing.T) {
	dir := t.TempDir()
	c := newClock(time.Date(2025, 6, 11, 23, 58, 0, 0, time.UTC))
	db := openDB(t, dir)
	l := openWithDB(t, db, c, persistLimits, time.Hour)
	reserve(t, l, "a", "", 300)
	l.Close()
	db.Close()

	c.add(time.Minute + 30*time.Second) // 23:59:30: window gone, same day
	db = openDB(t, dir)
	l = openWithDB(t, db, c, persistLimits, time.Hour)
	if st := status(t, l, "a"); st.TPMUsed != 0 || st.QuotaUsed != 300 {
		t.Fatalf("same day, window passed: %+v", st)
	}
	l.Close()
	db.Close()

	c.add(time.Minute) // next day
	db, l = reopen(t, dir, c, persistLimits)
	if st := status(t, l, "a"); st.TPMUsed != 0 || st.QuotaUsed != 0 {
		t.Fatalf("next day: %+v", st)
	}
	// The idle counter is deleted at the next snapshot.
	l.Close()
	if n := countKeys(t, db, prefixQuota); n != 0 {
		t.Fatalf("%d counters left in the database, want 0", n)
	}
}

func countKeys(t testing.TB, db *store.DB, prefix string) int {
	t.Helper()
	n := 0
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCrashKeepsLastSnapshot simulates kill -9: the data directory is copied
// while the Limiter and database are still open (what a crashed process
// leaves behind), and a new Limiter opens the copy.
func TestCrashKeepsLastSnapshot(t *testing.T) {
	dir := t.TempDir()
	c := newClock(t0)
	db := openDB(t, dir)
	defer db.Close()
	l := openWithDB(t, db, c, persistLimits, 20*time.Millisecond)
	defer l.Close()
	reserve(t, l, "a", "", 400)

	// Wait (bounded) for a snapshot to hold the reservation.
	deadline := time.Now().Add(5 * time.Second)
	for countKeys(t, db, prefixQuota) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no snapshot written within 5s at a 20ms interval")
		}
		time.Sleep(5 * time.Millisecond)
	}
	crashed := t.TempDir()
	copyDir(t, dir, crashed)

	db2 := openDB(t, crashed)
	defer db2.Close()
	l2 := openWithDB(t, db2, c, persistLimits, time.Hour)
	defer l2.Close()
	if st := status(t, l2, "a"); st.TPMUsed != 400 || st.QuotaUsed != 400 {
		t.Fatalf("after crash: %+v, want 400 used", st)
	}
}

func copyDir(t testing.TB, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || e.Name() == "LOCK" {
			continue
		}
		src, err := os.Open(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(to, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			t.Fatal(err)
		}
		src.Close()
		if err := dst.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSetLimitsPersists(t *testing.T) {
	dir := t.TempDir()
	c := newClock(t0)
	ctx := context.Background()
	db := openDB(t, dir)
	l := openWithDB(t, db, c, persistLimits, time.Hour)
	if _, err := l.SetLimits(ctx, "a", ptrTo(50), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := l.SetLimits(ctx, "a", nil, ptrTo(70)); err != nil {
		t.Fatal(err)
	}
	// Persisted synchronously: visible before any snapshot or Close.
	if n := countKeys(t, db, prefixLimits); n != 1 {
		t.Fatalf("%d limit records, want 1", n)
	}
	l.Close()
	db.Close()

	// The configuration changes its TPM and quota; the run-time changes win.
	_, l = reopen(t, dir, c, map[string]Limits{"a": {TPM: 9999, QuotaTokens: 9999, Period: Daily}, "b": {}})
	st := status(t, l, "a")
	if st.TPMLimit != 50 || st.QuotaLimit != 70 {
		t.Fatalf("after restart: tpm %d quota %d, want 50, 70", st.TPMLimit, st.QuotaLimit)
	}
	if _, d := reserve(t, l, "a", "", 51); d.Reason != ReasonTooLarge {
		t.Fatalf("51 tokens against a persisted TPM of 50: %+v", d)
	}
}

func TestSetLimitsOverridesOnlyWhatItSet(t *testing.T) {
	dir := t.TempDir()
	c := newClock(t0)
	db := openDB(t, dir)
	l := openWithDB(t, db, c, persistLimits, time.Hour)
	if _, err := l.SetLimits(context.Background(), "a", ptrTo(50), nil); err != nil {
		t.Fatal(err)
	}
	l.Close()
	db.Close()
	_, l = reopen(t, dir, c, map[string]Limits{"a": {TPM: 9999, QuotaTokens: 1234, Period: Daily}})
	if st := status(t, l, "a"); st.TPMLimit != 50 || st.QuotaLimit != 1234 {
		t.Fatalf("tpm %d quota %d, want 50 (run-time) and 1234 (configuration)", st.TPMLimit, st.QuotaLimit)
	}
}

func TestCorruptCounterIsAStartupError(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	err := db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(counterDBKey("a", "")), []byte{counterVersion, 0xff})
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(Options{DB: db.DB}, persistLimits)
	if err == nil || !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), "loading counters") {
		t.Fatalf("Open over a corrupt counter: err = %v", err)
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	c := newCounter("a", "k", "n1")
	c.periodStart = 1700000000
	base := bucketOf(t0)
	c.origins[0].w.advance(base)
	c.origins[0].w.v[base&ringMask] = pn{added: 50, removed: 8}
	c.origins[0].w.v[(base-63)&ringMask] = pn{added: 7}
	c.origins[0].periodStart, c.origins[0].period = c.periodStart, pn{added: 60, removed: 11}
	o := &c.origins[c.origin("n2")]
	o.w.advance(base + 2)
	o.w.v[(base+2)&ringMask] = pn{added: 5}
	o.periodStart, o.period = c.periodStart, pn{added: 5}
	got, err := decodeCounter("a", "k", "n1", c.encode(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got.periodStart != c.periodStart || len(got.origins) != 2 || got.windowSum(base) != 47 || got.periodSum() != 54 ||
		got.origins[0].w.at(base-63) != (pn{added: 7}) || got.origins[0].w.at(base) != (pn{added: 50, removed: 8}) ||
		got.origins[1].name != "n2" || got.origins[0].period != (pn{added: 60, removed: 11}) {
		t.Fatalf("round trip lost data: %+v", got)
	}
	// Written under another node name: the old local usage becomes a remote origin.
	renamed, err := decodeCounter("a", "k", "n9", c.encode(nil))
	if err != nil {
		t.Fatal(err)
	}
	if renamed.origins[0].name != "n9" || renamed.windowSum(base) != 47 || len(renamed.origins) != 3 {
		t.Fatalf("renamed node: %+v", renamed.origins)
	}
}

func FuzzDecodeCounter(f *testing.F) {
	c := newCounter("a", "", "n1")
	c.origins[0].w.advance(100)
	c.origins[0].w.v[100&ringMask] = pn{added: 3, removed: 1}
	f.Add(c.encode(nil))
	f.Add([]byte{counterVersion})
	f.Fuzz(func(t *testing.T, v []byte) {
		got, err := decodeCounter("a", "", "n1", v)
		if err != nil {
			return
		}
		again, err := decodeCounter("a", "", "n1", got.encode(nil))
		if err != nil {
			t.Fatalf("re-decoding an encoded counter: %v", err)
		}
		if again.periodSum() != got.periodSum() || again.windowSum(got.origins[0].w.head) != got.windowSum(got.origins[0].w.head) {
			t.Fatal("encode/decode not stable")
		}
	})
}

func TestReopenRestoresGrowOnlyTotalsAndRemoteOrigins(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := newClock(t0)
	db := openDB(t, dir)
	l := openWithDB(t, db, c, persistLimits, time.Hour)
	r, _ := reserve(t, l, "a", "", 800)
	l.Settle(ctx, r, 300)
	mergeUsage(t, l, Usage{Origin: "n2", Consumer: "a", Buckets: []BucketUsage{bucketAt(t0, 1024, 724)},
		PeriodStart: day0, PeriodAdded: 1024, PeriodRemoved: 724, Demand: 9})
	before, _, err := l.Outgoing(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	db.Close()

	_, l = reopen(t, dir, c, persistLimits)
	if st := status(t, l, "a"); st.TPMUsed != 600 || st.QuotaUsed != 600 || st.ByNode["n1"] != 300 || st.ByNode["n2"] != 300 {
		t.Fatalf("restored status: %+v", st)
	}
	after, _, err := l.Outgoing(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	// Demand is not persisted: compare totals only.
	for i := range before {
		before[i].Demand = -1
	}
	for i := range after {
		after[i].Demand = -1
	}
	sameUsages(t, after, before)
	// Replaying what the peer sent before the restart changes nothing.
	mergeUsage(t, l, Usage{Origin: "n2", Consumer: "a", Buckets: []BucketUsage{bucketAt(t0, 1024, 0)}, PeriodStart: day0, PeriodAdded: 1024})
	if st := status(t, l, "a"); st.TPMUsed != 600 || st.QuotaUsed != 600 {
		t.Fatalf("after a replay: %+v", st)
	}
}

// encodeV1 writes a counter as version 1 did: a net total per bucket and a
// net period total per origin.
func encodeV1(periodStart int64, origins ...v1Origin) []byte {
	buf := []byte{counterVersion1}
	buf = binary.AppendVarint(buf, periodStart)
	buf = binary.AppendUvarint(buf, uint64(len(origins)))
	for _, o := range origins {
		buf = binary.AppendUvarint(buf, uint64(len(o.name)))
		buf = append(buf, o.name...)
		buf = binary.AppendVarint(buf, o.period)
		buf = binary.AppendUvarint(buf, uint64(len(o.buckets)))
		for _, b := range o.buckets {
			buf = binary.AppendVarint(buf, b[0])
			buf = binary.AppendVarint(buf, b[1])
		}
	}
	return buf
}

type v1Origin struct {
	name    string
	period  int64
	buckets [][2]int64 // bucket, tokens
}

func TestVersion1SnapshotStillLoads(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	b := bucketOf(t0)
	v := encodeV1(day0,
		v1Origin{"n1", 500, [][2]int64{{b - 10, 200}, {b, 300}}},
		v1Origin{"n2", 70, [][2]int64{{b - 1, 70}}},
	)
	err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(counterDBKey("a", "")), v) })
	if err != nil {
		t.Fatal(err)
	}
	l := openWithDB(t, db, newClock(t0.Add(time.Second)), persistLimits, time.Hour)
	if st := status(t, l, "a"); st.TPMUsed != 570 || st.QuotaUsed != 570 || st.ByNode["n1"] != 500 || st.ByNode["n2"] != 70 {
		t.Fatalf("status from a version 1 snapshot: %+v", st)
	}
	// Settling below what version 1 counted works on the grow-only totals.
	r, _ := reserve(t, l, "a", "", 100)
	l.Settle(context.Background(), r, 40)
	if st := status(t, l, "a"); st.TPMUsed != 610 || st.QuotaUsed != 610 {
		t.Fatalf("after a settlement: %+v", st)
	}
	// The final snapshot is written in the current version.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	err = db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(counterDBKey("a", "")))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if v[0] != counterVersion {
				t.Errorf("snapshot version %d, want %d", v[0], counterVersion)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	// Negative net totals were never written: such a value is corrupt.
	if _, err := decodeCounter("a", "", "n1", encodeV1(0, v1Origin{"n1", -1, nil})); !errors.Is(err, errCorrupt) {
		t.Fatalf("negative version 1 total: err = %v", err)
	}
}
