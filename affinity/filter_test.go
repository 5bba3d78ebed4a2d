package affinity

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/store"
)

// TestFilterHasEveryIDAdded: no id added and unexpired is ever "certainly
// absent", across generations started by time and by size; few others are
// "possible".
func TestFilterHasEveryIDAdded(t *testing.T) {
	f := newIDFilter(8 * time.Minute) // a generation per minute
	f.ready = true
	now := int64(1_000_000_000)
	const n = 200_000
	for i := range n {
		if i%20_000 == 0 {
			now += 30_000 // half a generation's span
		}
		f.add("resp_"+strconv.Itoa(i), now+int64(time.Hour/time.Millisecond), now)
	}
	if len(f.gens) < 3 {
		t.Fatalf("%d generations for ids added over 5 minutes, sizes growing", len(f.gens))
	}
	for i := range n {
		if f.absent("resp_" + strconv.Itoa(i)) {
			t.Fatalf("resp_%d was added and is reported absent", i)
		}
	}
	possible := 0
	for i := range n {
		if !f.absent("other_" + strconv.Itoa(i)) {
			possible++
		}
	}
	if rate := float64(possible) / n; rate > 0.05 {
		t.Fatalf("%.1f%% of new ids would read the database", 100*rate)
	}
}

// TestFilterDropsExpiredGenerations: a generation goes once all its ids
// expired, and not before.
func TestFilterDropsExpiredGenerations(t *testing.T) {
	f := newIDFilter(8 * time.Minute)
	f.ready = true
	minute := int64(time.Minute / time.Millisecond)
	now := int64(1_000_000_000)
	f.add("resp_old", now+10*minute, now)
	f.add("resp_long", now+60*minute, now+1) // same generation, lives longer
	now += 2 * minute
	f.add("resp_new", now+10*minute, now)
	now += 11 * minute // resp_old expired, resp_long not
	f.add("resp_newer", now+10*minute, now)
	if f.absent("resp_long") || f.absent("resp_new") || f.absent("resp_newer") {
		t.Fatal("an unexpired id's generation was dropped")
	}
	now += 50 * minute // all but resp_newer's generation expired
	f.add("resp_last", now+10*minute, now)
	if len(f.gens) != 2 || f.ids != 2 {
		t.Fatalf("%d generations holding %d ids after the first two expired", len(f.gens), f.ids)
	}
}

// TestFilterNotReadyReadsTheDatabase: until the ids the database held are
// in, and past the filter's bound, every check reads it.
func TestFilterNotReadyReadsTheDatabase(t *testing.T) {
	f := newIDFilter(time.Hour)
	if f.absent("resp_x") {
		t.Fatal("a filter not yet loaded reported an id absent")
	}
	// Nor one that would outgrow its memory bound.
	f.ready, f.room = true, maxFilterIDs
	f.add("resp_y", 1<<50, 1)
	if !f.off || f.absent("resp_z") || len(f.gens) != 0 {
		t.Fatal("a filter past its bound still answered")
	}
}

// waitFilterReady waits until s has loaded the ids its database held.
func waitFilterReady(t *testing.T, s *Store) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.written.Lock()
		ready := s.filter.ready
		s.written.Unlock()
		if ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the owner filter was not loaded within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFirstOwnerCheckSkipsReadsOfNewIDs: with the ids persisted before a
// restart loaded, a new id's first-owner check reads nothing (bar the
// filter's rare false positives), and a persisted id's check still reads
// the record and keeps its first owner.
func TestFirstOwnerCheckSkipsReadsOfNewIDs(t *testing.T) {
	ctx := context.Background()
	s, db, dir := onDisk(t)
	first := Owner{Consumer: "team-a", Backend: "east"}
	const n = 3000
	for i := range n {
		if err := s.Remember(ctx, "resp_"+strconv.Itoa(i), first); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.flush(ctx); err != nil {
		t.Fatal(err)
	}
	s = restart(t, s, db, dir)
	waitFilterReady(t, s)
	for i := range n {
		_ = s.Remember(ctx, "resp_"+strconv.Itoa(i), Owner{Consumer: "team-b", Backend: "west"})
	}
	if err := s.flush(ctx); err != nil {
		t.Fatal(err)
	}
	if r := s.reads.Load(); r != n {
		t.Fatalf("%d reads for %d claims of persisted ids: each must read the record", r, n)
	}
	for i := range n {
		if o, _ := s.Lookup(ctx, "resp_"+strconv.Itoa(i)); o != first {
			t.Fatalf("resp_%d's owner became %v", i, o)
		}
	}
	for i := range n {
		if err := s.Remember(ctx, "resp_new_"+strconv.Itoa(i), first); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.flush(ctx); err != nil {
		t.Fatal(err)
	}
	if r := s.reads.Load() - n; r > n/20 {
		t.Fatalf("%d of %d new ids read the database", r, n)
	}
	if o, ok := s.Lookup(ctx, "resp_new_7"); !ok || o != first {
		t.Fatalf("a new id was not remembered: %v %v", o, ok)
	}
}

var encodeCases = []record{
	{ID: "resp_1", Owner: Owner{Consumer: "team-a", Backend: "east"}, At: 1796584302000, Expires: 1799176302000},
	{ID: "resp_2", Owner: Owner{Consumer: "c", Backend: "b", Origin: "resp_1"}, At: -1, Expires: 0},
	{ID: "resp_3", At: 5, Expires: 6, Deleted: true},
	{ID: "a\"<b>&\\\x01", Owner: Owner{Consumer: "café", Backend: "\u2028"}},
	{ID: "\xff", Owner: Owner{Origin: "x>y"}},
}

// TestEncodeIsMarshal: a record is sent to the cluster as json.Marshal
// writes it.
func TestEncodeIsMarshal(t *testing.T) {
	for _, r := range encodeCases {
		want, _ := json.Marshal(r)
		if got := r.appendJSON(nil); !bytes.Equal(got, want) {
			t.Errorf("encode %s, json.Marshal %s", got, want)
		}
	}
}

func FuzzEncodeIsMarshal(f *testing.F) {
	for _, r := range encodeCases {
		f.Add(r.ID, r.Consumer, r.Backend, r.Origin, r.At, r.Expires, r.Deleted)
	}
	f.Fuzz(func(t *testing.T, id, c, b, o string, at, exp int64, del bool) {
		r := record{ID: id, Owner: Owner{Consumer: c, Backend: b, Origin: o}, At: at, Expires: exp, Deleted: del}
		want, _ := json.Marshal(r)
		if got := r.appendJSON(nil); !bytes.Equal(got, want) {
			t.Fatalf("encode %s, json.Marshal %s", got, want)
		}
	})
}

// TestValueRoundTrip: a record's persisted value reads back as the record
// under its key's id, and a value persisted as JSON by earlier versions
// still reads.
func TestValueRoundTrip(t *testing.T) {
	for _, r := range encodeCases {
		got, err := decodeValue(r.ID, r.appendValue(nil))
		if err != nil || got != r {
			t.Errorf("%+v read back as %+v, %v", r, got, err)
		}
		if len(r.ID) > 0 && r.ID[0] < 0x80 {
			old, _ := json.Marshal(r)
			if got, err := decodeValue(r.ID, old); err != nil || got != r {
				t.Errorf("JSON value %s read as %+v, %v", old, got, err)
			}
		}
	}
	small := record{ID: "resp_BXIHL2PG72GNQT3VRZ3C3BLSY5", Owner: Owner{Consumer: "team-a", Backend: "east"}, At: 1796584302000, Expires: 1799176302000}
	if v, j := small.appendValue(nil), small.appendJSON(nil); len(v)*3 > len(j) {
		t.Errorf("value of %d bytes, JSON %d", len(v), len(j))
	}
	for _, bad := range []string{"", "\x01", "\x02\x00\x02\x02\x00\x00\x00", "\x01\x02\x02\x02\x00\x00\x00", "\x01\x00\x02\x02\x05ab\x00\x00", "\x01\x00\x02\x02\x00\x00\x00\x00", "{"} {
		if _, err := decodeValue("resp_1", []byte(bad)); err == nil {
			t.Errorf("value %q read", bad)
		}
	}
}

func FuzzValueRoundTrip(f *testing.F) {
	for _, r := range encodeCases {
		f.Add(r.ID, r.Consumer, r.Backend, r.Origin, r.At, r.Expires, r.Deleted, r.appendValue(nil))
	}
	f.Fuzz(func(t *testing.T, id, c, b, o string, at, exp int64, del bool, raw []byte) {
		r := record{ID: id, Owner: Owner{Consumer: c, Backend: b, Origin: o}, At: at, Expires: exp, Deleted: del}
		if got, err := decodeValue(id, r.appendValue(nil)); err != nil || got != r {
			t.Fatalf("%+v read back as %+v, %v", r, got, err)
		}
		if got, err := decodeValue(id, raw); err == nil { // any bytes: an error, never a panic
			if again, err := decodeValue(id, got.appendValue(nil)); err != nil || again != got {
				t.Fatalf("value %q read as %+v, which reads back as %+v, %v", raw, got, again, err)
			}
		}
	})
}

// TestTryRememberNeverWaits: TryRemember queues a creation while the
// writer keeps up, and reports (without waiting) when maxPending creations
// are not yet persisted, where Remember waits as long as its context
// allows and goes on once the writer made room.
func TestTryRememberNeverWaits(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open("", store.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const bound = 64
	s := Open(Options{DB: db.DB, maxPending: bound})
	defer s.Close()
	o := Owner{Consumer: "team-a", Backend: "east"}
	if done, err := s.TryRemember("resp_0", o); !done || err != nil {
		t.Fatalf("TryRemember on an idle store: %v %v", done, err)
	}
	if got, ok := s.Lookup(ctx, "resp_0"); !ok || got != o {
		t.Fatalf("a tried creation is not found: %v %v", got, ok)
	}
	if err := s.flush(ctx); err != nil {
		t.Fatal(err)
	}
	s.written.Lock() // the writer cannot persist anything
	for i := range bound {
		if done, _ := s.TryRemember("resp_b"+strconv.Itoa(i), o); !done {
			s.written.Unlock()
			t.Fatalf("creation %d under the bound not queued", i)
		}
	}
	if done, err := s.TryRemember("resp_b0", o); !done || err != nil {
		s.written.Unlock()
		t.Fatalf("an id queued already is not taken as done: %v %v", done, err)
	}
	if done, err := s.TryRemember("resp_full", o); done || err != nil {
		s.written.Unlock()
		t.Fatalf("TryRemember with the bound reached: %v %v", done, err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := s.Remember(short, "resp_full", o); err == nil {
		s.written.Unlock()
		t.Fatal("Remember behind a stuck writer returned before its deadline without queueing")
	}
	if _, ok := s.Lookup(ctx, "resp_full"); ok {
		s.written.Unlock()
		t.Fatal("a creation refused for want of room is found")
	}
	s.written.Unlock()
	if err := s.Remember(ctx, "resp_full", o); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Lookup(ctx, "resp_full"); !ok {
		t.Fatal("the creation made once the writer caught up is not found")
	}
	mem := Open(Options{})
	defer mem.Close()
	if done, err := mem.TryRemember("resp_m", o); done || err != nil {
		t.Fatalf("TryRemember without a database: %v %v", done, err)
	}
}
