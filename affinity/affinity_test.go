package affinity

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/store"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func stores(t *testing.T, c *clock) map[string]*Store {
	t.Helper()
	db, err := store.Open("", store.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	out := map[string]*Store{
		"badger": Open(Options{DB: db.DB, TTL: time.Hour, Now: c.now}),
		"memory": Open(Options{TTL: time.Hour, Now: c.now}),
	}
	for _, s := range out {
		t.Cleanup(func() { _ = s.Close() })
	}
	return out
}

func TestRememberLookupForget(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	for name, s := range stores(t, c) {
		t.Run(name, func(t *testing.T) {
			if _, ok := s.Lookup(ctx, "resp_1"); ok {
				t.Fatal("an unknown id was found")
			}
			if err := s.Remember(ctx, "resp_1", Owner{Consumer: "team-a", Backend: "east"}); err != nil {
				t.Fatal(err)
			}
			if o, ok := s.Lookup(ctx, "resp_1"); !ok || o.Consumer != "team-a" || o.Backend != "east" {
				t.Fatalf("lookup: %v %v", o, ok)
			}
			// A second claim on the same id does not change its owner.
			_ = s.Remember(ctx, "resp_1", Owner{Consumer: "team-b", Backend: "west"})
			if o, _ := s.Lookup(ctx, "resp_1"); o.Consumer != "team-a" {
				t.Fatalf("owner changed to %v", o)
			}
			if err := s.Forget(ctx, "resp_1"); err != nil {
				t.Fatal(err)
			}
			if _, ok := s.Lookup(ctx, "resp_1"); ok {
				t.Fatal("found after Forget")
			}
			_ = s.Remember(ctx, "resp_2", Owner{Consumer: "team-a", Backend: "east"})
			c.add(2 * time.Hour)
			if _, ok := s.Lookup(ctx, "resp_2"); ok {
				t.Fatal("found after its TTL")
			}
		})
	}
}

func TestReplication(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	a, b := Open(Options{Now: c.now}), Open(Options{Now: c.now})
	defer a.Close()
	defer b.Close()
	_ = a.Remember(ctx, "resp_x", Owner{Consumer: "team-a", Backend: "east"})
	send := func(full bool) {
		ps, err := a.Outgoing(ctx, full)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if err := b.Merge(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(false)
	if o, ok := b.Lookup(ctx, "resp_x"); !ok || o.Backend != "east" {
		t.Fatalf("not replicated: %v %v", o, ok)
	}
	if ps, _ := a.Outgoing(ctx, false); len(ps) != 0 {
		t.Fatal("changes sent twice")
	}
	// A tombstone travels too, and a late copy of the record does not revive it.
	_ = a.Forget(ctx, "resp_x")
	send(false)
	send(true)
	if _, ok := b.Lookup(ctx, "resp_x"); ok {
		t.Fatal("deleted on a, still found on b")
	}
	_ = b.Merge(ctx, []byte(`[{"id":"resp_x","c":"team-a","b":"east","at":1,"exp":99999999999999}]`))
	if _, ok := b.Lookup(ctx, "resp_x"); ok {
		t.Fatal("a late copy revived a deleted id")
	}
	// A node that joins later catches up with a full exchange.
	late := Open(Options{Now: c.now})
	defer late.Close()
	_ = a.Remember(ctx, "resp_y", Owner{Consumer: "team-b", Backend: "west"})
	ps, _ := a.Outgoing(ctx, true)
	for _, p := range ps {
		_ = late.Merge(ctx, p)
	}
	if o, ok := late.Lookup(ctx, "resp_y"); !ok || o.Consumer != "team-b" {
		t.Fatalf("catch-up: %v %v", o, ok)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(`[{"id":"resp_1","c":"a","b":"e","at":1,"exp":2}]`)
	f.Add(`[{"id":"","del":true}]`)
	f.Fuzz(func(t *testing.T, payload string) {
		s := Open(Options{})
		defer s.Close()
		_ = s.Merge(context.Background(), []byte(payload))
		_, _ = decode([]byte(payload))
	})
}

// TestCatchUpCarriesEveryRecord: push/pull carries, besides the last day's
// changes, the whole set page by page, so a node that was away longer than
// a day learns every unexpired id and tombstone, none expired, and no
// exchange carries more than the last day plus one page.
func TestCatchUpCarriesEveryRecord(t *testing.T) {
	ctx := context.Background()
	const page, old, fresh = 300, 1000, 50
	for _, name := range []string{"badger", "memory"} {
		t.Run(name, func(t *testing.T) {
			c := &clock{t: time.Unix(1_700_000_000, 0)}
			opts := Options{TTL: 10 * 24 * time.Hour, Now: c.now, Page: page}
			if name == "badger" {
				db, err := store.Open("", store.Options{InMemory: true})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = db.Close() })
				opts.DB = db.DB
			}
			a := Open(opts)
			defer a.Close()
			b := Open(Options{TTL: 10 * 24 * time.Hour, Now: c.now})
			defer b.Close()
			// Expire after 3 days (a record merged with its own expiry),
			// then old records, a tombstone, then the last day's.
			short := fmt.Sprintf(`[{"id":"resp_short","c":"team-a","b":"east","at":%d,"exp":%d}]`, c.now().UnixMilli(), c.now().Add(72*time.Hour).UnixMilli())
			if err := a.Merge(ctx, []byte(short)); err != nil {
				t.Fatal(err)
			}
			for i := range old {
				if err := a.Remember(ctx, fmt.Sprintf("resp_old_%04d", i), Owner{Consumer: "team-a", Backend: "east"}); err != nil {
					t.Fatal(err)
				}
			}
			_ = a.Forget(ctx, "resp_old_0007")
			if err := a.flush(ctx); err != nil {
				t.Fatal(err)
			}
			c.add(4 * 24 * time.Hour) // b was away: none of this reached it
			for i := range fresh {
				_ = a.Remember(ctx, fmt.Sprintf("resp_new_%04d", i), Owner{Consumer: "team-b", Backend: "west"})
			}
			if err := a.flush(ctx); err != nil {
				t.Fatal(err)
			}
			_, _ = a.Outgoing(ctx, false) // the news went to the others, not to b

			known := func() int {
				n := 0
				for i := range old {
					if _, ok := b.Lookup(ctx, fmt.Sprintf("resp_old_%04d", i)); ok {
						n++
					}
				}
				return n
			}
			exchange := func() {
				ps, err := a.Outgoing(ctx, true)
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, p := range ps {
					rs, err := decode(p)
					if err != nil {
						t.Fatal(err)
					}
					n += len(rs)
					if err := b.Merge(ctx, p); err != nil {
						t.Fatal(err)
					}
				}
				if n > fresh+page {
					t.Fatalf("one exchange carried %d records, more than the last day's %d and a page of %d", n, fresh, page)
				}
			}
			exchange()
			if _, ok := b.Lookup(ctx, "resp_new_0000"); !ok {
				t.Fatal("the last day's ids are not in the first exchange")
			}
			if n := known(); n >= old-1 {
				t.Fatalf("one exchange carried all %d old ids: not paged", n)
			}
			// Old ids + fresh ones + the tombstone, a page at a time.
			for range (old + fresh + page - 1) / page {
				exchange()
			}
			if n := known(); n != old-1 {
				t.Fatalf("after a full round b knows %d of the %d live old ids", n, old-1)
			}
			if _, ok := b.Lookup(ctx, "resp_old_0007"); ok {
				t.Fatal("the tombstone did not travel")
			}
			if err := b.Remember(ctx, "resp_old_0007", Owner{Consumer: "team-z", Backend: "east"}); err != nil {
				t.Fatal(err)
			}
			if _, ok := b.Lookup(ctx, "resp_old_0007"); ok {
				t.Fatal("b did not keep the tombstone: a deleted id was claimed again")
			}
			if _, ok := b.Lookup(ctx, "resp_short"); ok {
				t.Fatal("an expired record travelled")
			}
			// The cursor wraps: the next round starts over.
			exchange()
		})
	}
}

// TestRememberIsQueued: with a database a creation is queued and written
// in the background: found at once, the first claim still wins while
// queued, a deletion while queued wins over the write, the cluster hears of
// it once written, and Close writes what is still queued.
func TestRememberIsQueued(t *testing.T) {
	ctx := context.Background()
	s, db, dir := onDisk(t)
	for i := range 500 {
		if err := s.Remember(ctx, fmt.Sprintf("resp_%03d", i), Owner{Consumer: "team-a", Backend: "east"}); err != nil {
			t.Fatal(err)
		}
		if o, ok := s.Lookup(ctx, fmt.Sprintf("resp_%03d", i)); !ok || o.Consumer != "team-a" {
			t.Fatalf("resp_%03d not found right after Remember: %v %v", i, o, ok)
		}
	}
	_ = s.Remember(ctx, "resp_000", Owner{Consumer: "team-b", Backend: "west"})
	if err := s.Forget(ctx, "resp_499"); err != nil {
		t.Fatal(err)
	}
	if err := s.flush(ctx); err != nil {
		t.Fatal(err)
	}
	if o, _ := s.Lookup(ctx, "resp_000"); o.Consumer != "team-a" {
		t.Fatalf("a second claim changed the owner: %v", o)
	}
	if _, ok := s.Lookup(ctx, "resp_499"); ok {
		t.Fatal("a creation written after its deletion revived it")
	}
	ps, err := s.Outgoing(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	sent := map[string]bool{}
	for _, p := range ps {
		rs, _ := decode(p)
		for _, r := range rs {
			sent[r.ID] = true
		}
	}
	if len(sent) != 500 { // 499 creations (one was deleted first) and the tombstone
		t.Fatalf("the cluster heard of %d ids, want 500", len(sent))
	}
	// Queued, then closed at once: the queue is written before Close returns.
	for i := range 300 {
		_ = s.Remember(ctx, fmt.Sprintf("resp_late_%03d", i), Owner{Consumer: "team-a", Backend: "east"})
	}
	s = restart(t, s, db, dir)
	for i := range 300 {
		if _, ok := s.Lookup(ctx, fmt.Sprintf("resp_late_%03d", i)); !ok {
			t.Fatalf("resp_late_%03d queued before Close was lost", i)
		}
	}
}

// A backend that reuses an id after its owner record was written cannot
// take it over: not once written, not after a restart, not twice in one
// replicated payload.
func TestFirstOwnerStaysOncePersisted(t *testing.T) {
	ctx := context.Background()
	s, db, dir := onDisk(t)
	first := Owner{Consumer: "team-a", Backend: "east"}
	if err := s.Remember(ctx, "resp_reused", first); err != nil {
		t.Fatal(err)
	}
	if err := s.flush(ctx); err != nil {
		t.Fatal(err)
	}
	_, _ = s.Outgoing(ctx, false)
	_ = s.Remember(ctx, "resp_reused", Owner{Consumer: "team-b", Backend: "west"})
	if err := s.flush(ctx); err != nil {
		t.Fatal(err)
	}
	if o, _ := s.Lookup(ctx, "resp_reused"); o != first {
		t.Fatalf("a second claim after the first was written changed the owner: %v", o)
	}
	if ps, _ := s.Outgoing(ctx, false); len(ps) != 0 {
		t.Fatalf("a claim that changed nothing was sent to the cluster: %s", ps)
	}
	// Two claims in one payload from another node: the first stays.
	now := time.Now()
	twice, _ := json.Marshal([]record{
		{ID: "resp_merged", Owner: first, At: now.UnixMilli(), Expires: now.Add(time.Hour).UnixMilli()},
		{ID: "resp_merged", Owner: Owner{Consumer: "team-b", Backend: "west"}, At: now.UnixMilli(), Expires: now.Add(time.Hour).UnixMilli()},
	})
	if err := s.Merge(ctx, twice); err != nil {
		t.Fatal(err)
	}
	if o, _ := s.Lookup(ctx, "resp_merged"); o != first {
		t.Fatalf("the second claim of one payload won: %v", o)
	}
	s = restart(t, s, db, dir)
	_ = s.Remember(ctx, "resp_reused", Owner{Consumer: "team-c", Backend: "west"})
	if err := s.flush(ctx); err != nil {
		t.Fatal(err)
	}
	if o, _ := s.Lookup(ctx, "resp_reused"); o != first {
		t.Fatalf("a claim after a restart changed the owner: %v", o)
	}
}

// onDisk opens a Store over a new database in a temporary directory; the
// test closes both (restart does).
func onDisk(t *testing.T) (*Store, *store.DB, string) {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return Open(Options{DB: db.DB}), db, dir
}

// restart closes s and its database as a stopping node does, reopens both
// from dir, and returns the new Store (closed, with its database, when the
// test ends).
func restart(t *testing.T, s *Store, db *store.DB, dir string) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s = Open(Options{DB: db.DB})
	t.Cleanup(func() { s.Close() })
	return s
}

// TestCreationDuringCloseIsRefusedNotLost: once Close has begun, a creation
// is refused; before, one that came after the writer's last drain (while
// Close waited for the loader) was acknowledged and never written.
func TestCreationDuringCloseIsRefusedNotLost(t *testing.T) {
	ctx := context.Background()
	s, db, dir := onDisk(t)
	s.stopCreations() // Close's first step
	<-s.writerDone
	err := s.Remember(ctx, "resp_late", Owner{Consumer: "a", Backend: "b"})
	if done, terr := s.TryRemember("resp_later", Owner{Consumer: "a", Backend: "b"}); done || terr == nil {
		t.Errorf("TryRemember during Close = %v, %v; want refused", done, terr)
	}
	s = restart(t, s, db, dir)
	_, found := s.Lookup(ctx, "resp_late")
	if err == nil && !found {
		t.Fatal("Remember during Close returned nil, but the record was never persisted")
	}
	if err == nil {
		t.Error("Remember during Close was accepted")
	}
}

// TestCloseEndsUnderSteadyCreations: creations that keep coming do not keep
// Close's last drain from ending.
func TestCloseEndsUnderSteadyCreations(t *testing.T) {
	s, db, _ := onDisk(t)
	defer db.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_ = s.Remember(context.Background(), fmt.Sprintf("resp_%d_%d", g, i), Owner{Consumer: "a", Backend: "b"})
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Error("Close did not end within 10 s while creations kept coming")
	}
	close(stop)
	wg.Wait()
	<-closed
}

// TestReusedBuffersCarryEachChangeOnce: the writer's queue and Outgoing's
// changes reuse the previous round's arrays; rounds of creations, each
// persisted and sent, must each reach the cluster exactly once, with the
// right owner, and a payload already returned must not change when the
// next round reuses what it was built from.
func TestReusedBuffersCarryEachChangeOnce(t *testing.T) {
	ctx := context.Background()
	s, _, _ := onDisk(t)
	var kept [][]byte
	var keptCopies []string
	for round := range 5 {
		for i := range 20 + round*7 {
			id := fmt.Sprintf("resp_%d_%03d", round, i)
			if err := s.Remember(ctx, id, Owner{Consumer: fmt.Sprintf("team-%d", round), Backend: "east"}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.flush(ctx); err != nil {
			t.Fatal(err)
		}
		ps, err := s.Outgoing(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		sent := map[string]string{}
		for _, p := range ps {
			rs, err := decode(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				if _, twice := sent[r.ID]; twice {
					t.Fatalf("round %d: %s sent twice", round, r.ID)
				}
				sent[r.ID] = r.Consumer
			}
			kept, keptCopies = append(kept, p), append(keptCopies, string(p))
		}
		if len(sent) != 20+round*7 {
			t.Fatalf("round %d: %d ids sent, want %d", round, len(sent), 20+round*7)
		}
		for id, c := range sent {
			if want := fmt.Sprintf("team-%d", round); c != want || id[5] != byte('0'+round) {
				t.Fatalf("round %d: %s sent as %s's", round, id, c)
			}
			if o, ok := s.Lookup(ctx, id); !ok || o.Consumer != c {
				t.Fatalf("round %d: %s looked up as %v %v", round, id, o, ok)
			}
		}
	}
	for i, p := range kept {
		if string(p) != keptCopies[i] {
			t.Fatalf("payload %d changed after it was returned", i)
		}
	}
}

func TestReusedScratchPersistsEachBatchAsGiven(t *testing.T) {
	ctx := context.Background()
	s, db, dir := onDisk(t)
	// Batches of different sizes, with strings longer and shorter than
	// the previous batch's: each record must persist as given, not with
	// a byte or an entry of an earlier batch.
	want := map[string]Owner{}
	for round, size := range []int{40, 3, 17, 1, 60, 8} {
		for i := range size {
			id := fmt.Sprintf("resp_%02d_%0*d", round, 1+(i*7+round)%23, i)
			o := Owner{Consumer: fmt.Sprintf("c%0*d", 1+(round*5+i)%19, round), Backend: fmt.Sprintf("b%0*d", 1+(i+round)%11, i)}
			if i%4 == 1 {
				o.Origin = fmt.Sprintf("resp_origin_%0*d", 1+i%9, round)
			}
			if err := s.Remember(ctx, id, o); err != nil {
				t.Fatal(err)
			}
			want[id] = o
		}
		if err := s.flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Forget(ctx, "resp_00_1_0"); err != nil {
		t.Fatal(err)
	}
	delete(want, "resp_00_1_0")
	s = restart(t, s, db, dir) // every look-up reads the database
	for id, o := range want {
		if got, ok := s.Lookup(ctx, id); !ok || got != o {
			t.Fatalf("%s: looked up as %+v %v, want %+v", id, got, ok, o)
		}
	}
	if _, ok := s.Lookup(ctx, "resp_00_1_0"); ok {
		t.Fatal("a forgotten id came back")
	}
}

// sentRecords returns the records (tombstones included) that s's Outgoing
// hands the cluster: the news, or with full the push/pull state.
func sentRecords(t *testing.T, s *Store, full bool) []record {
	t.Helper()
	ps, err := s.Outgoing(context.Background(), full)
	if err != nil {
		t.Fatal(err)
	}
	var out []record
	for _, p := range ps {
		rs, err := decode(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rs...)
	}
	return out
}

// sentIDs is the set of sentRecords' ids.
func sentIDs(t *testing.T, s *Store, full bool) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	for _, r := range sentRecords(t, s, full) {
		ids[r.ID] = true
	}
	return ids
}

func TestAloneEncodesNoNewsKeepsTheLastSecondsAndPushPullStillCarriesAll(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC).UnixNano())
	s := Open(Options{DB: db.DB, Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	t.Cleanup(func() { _ = s.Close(); _ = db.Close() })
	remember := func(ids ...string) {
		t.Helper()
		for _, id := range ids {
			if err := s.Remember(ctx, id, Owner{Consumer: "team-a", Backend: "east"}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	remember("resp_before") // no SetPeers yet: queued
	s.SetPeers(nil)
	remember("resp_alone_old")
	if got := sentIDs(t, s, false); len(got) != 0 {
		t.Fatalf("alone, news carried %v", got)
	}
	clock.Add(int64(aloneNewsKept + time.Second))
	remember("resp_alone_1", "resp_alone_2")
	if err := s.Forget(ctx, "resp_alone_2"); err != nil {
		t.Fatal(err)
	}
	if got := sentIDs(t, s, false); len(got) != 0 { // and drops what is older than aloneNewsKept
		t.Fatalf("alone, news carried %v", got)
	}
	if got := sentIDs(t, s, true); !got["resp_before"] || !got["resp_alone_old"] || !got["resp_alone_1"] || !got["resp_alone_2"] {
		t.Fatalf("push/pull carried %v, want every id (the tombstone too)", got)
	}
	s.SetPeers([]string{"node-b"})
	remember("resp_with_peer")
	want := map[string]bool{"resp_alone_1": true, "resp_alone_2": true, "resp_with_peer": true}
	if got := sentIDs(t, s, false); !maps.Equal(got, want) {
		t.Fatalf("with a peer, news carried %v, want %v (the last seconds' while alone, and the new one)", got, want)
	}
	if o, ok := s.Lookup(ctx, "resp_alone_1"); !ok || o.Consumer != "team-a" {
		t.Fatalf("a record made while alone looked up as %+v %v", o, ok)
	}
}

// joinGapStore is a node alone that has served 25,000 responses in the
// last day: more than push/pull's recent changes carry (fullMaxRecords, the
// oldest first), so a newer change reaches a joining peer only by the news
// or many exchanges later.
func joinGapStore(t *testing.T, opts Options) *Store {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open("", store.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	opts.DB = db.DB
	s := Open(opts)
	t.Cleanup(func() { _ = s.Close(); _ = db.Close() })
	s.SetPeers(nil)
	for i := range 25000 {
		if err := s.Remember(ctx, fmt.Sprintf("resp_a%06d", i), Owner{Consumer: "team-a", Backend: "east"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.flush(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// A peer joins a node alone: memberlist's push/pull reads the node's state,
// then the join reaches SetPeers. A response persisted in between (queued
// before, written after the push/pull read the database) must reach the
// peer by the news sent once it is live.
func TestRecordPersistedWhileAPeerJoinsIsInTheNews(t *testing.T) {
	ctx := context.Background()
	// A long gathering window orders the writer after the push/pull.
	s := joinGapStore(t, Options{writeDelay: 300 * time.Millisecond})
	const id = "resp_z_created_at_join" // the newest: sorts last, as time-ordered ids do
	if err := s.Remember(ctx, id, Owner{Consumer: "team-a", Backend: "east"}); err != nil {
		t.Fatal(err)
	}
	if sentIDs(t, s, true)[id] { // the join's push/pull
		t.Fatal("precondition: the record was persisted before the join's push/pull")
	}
	_ = sentIDs(t, s, false) // a flush tick, still alone
	if err := s.flush(ctx); err != nil {
		t.Fatal(err)
	}
	s.SetPeers([]string{"node-b"})
	if !sentIDs(t, s, false)[id] {
		t.Fatalf("%s, persisted while the peer was joining, is not in the news once the peer is live", id)
	}
}

// The same for a deletion made while the peer joins: its tombstone must be
// in the news once the peer is live, or the peer keeps serving follow-ups
// on a deleted response.
func TestDeletionWhileAPeerJoinsIsInTheNews(t *testing.T) {
	ctx := context.Background()
	s := joinGapStore(t, Options{})
	const id = "resp_z_deleted_at_join"
	if err := s.Remember(ctx, id, Owner{Consumer: "team-a", Backend: "east"}); err != nil {
		t.Fatal(err)
	}
	if err := s.flush(ctx); err != nil {
		t.Fatal(err)
	}
	_ = sentIDs(t, s, true)  // the join's push/pull: the record, live
	_ = sentIDs(t, s, false) // a flush tick, still alone
	if err := s.Forget(ctx, id); err != nil {
		t.Fatal(err)
	}
	s.SetPeers([]string{"node-b"})
	for _, r := range sentRecords(t, s, false) {
		if r.ID == id && r.Deleted {
			return
		}
	}
	t.Fatalf("the tombstone of %s, deleted while the peer was joining, is not in the news once the peer is live", id)
}
