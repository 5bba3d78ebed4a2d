package index

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/llmgate/llmgate/index/graph"
)

var teamA = Space{Partition: "team-a", Route: "gpt-4o", Shape: "s1"}

func TestExactTier(t *testing.T) {
	c := open(t, Options{})
	ctx := t.Context()
	e := entry(teamA, "what is the capital of France?", axis(0, 0))
	mustStore(t, c, e)
	if e.ID == "" || e.CreatedAt.IsZero() || e.ExpiresAt.Sub(e.CreatedAt) != time.Hour {
		t.Fatalf("Store did not fill ID/CreatedAt/ExpiresAt(+1h default): %+v", e)
	}
	tests := []struct {
		name string
		sp   Space
		h    [32]byte
		hit  bool
	}{
		{"same request is a hit", teamA, e.Exact, true},
		{"other request is a miss", teamA, hashOf(teamA, "other"), false},
		{"zero hash is a miss", teamA, [32]byte{}, false},
		{"same hash in other partition is a miss", Space{"team-b", "gpt-4o", "s1"}, e.Exact, false},
		{"same hash on other route is a miss", Space{"team-a", "gpt-4", "s1"}, e.Exact, false},
		{"same hash with other shape is a miss", Space{"team-a", "gpt-4o", "s2"}, e.Exact, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := c.LookupExact(ctx, tt.sp, tt.h)
			if ok != tt.hit {
				t.Fatalf("hit = %v, want %v", ok, tt.hit)
			}
			if ok && (got.ID != e.ID || string(got.Response) != string(e.Response)) {
				t.Fatalf("got entry %s %q, want %s", got.ID, got.Response, e.ID)
			}
		})
	}
	st := c.Stats()
	if st.ExactHits != 1 || st.Hits != 1 || st.Misses != 0 {
		t.Fatalf("stats = %+v; want 1 exact hit, exact misses not counted", st)
	}
}

func TestSemanticTier(t *testing.T) {
	guard := func(q, cand string) (bool, string) {
		if q == "negated" {
			return false, "negation"
		}
		return true, ""
	}
	c := open(t, Options{Check: guard})
	ctx := t.Context()
	e := entry(teamA, "cached", axis(0, 0))
	mustStore(t, c, e)
	near, far := axis(0, 0.1), axis(0, 1)
	tests := []struct {
		name     string
		sp       Space
		vec      []float32
		prompt   string
		hit      bool
		maxDist  float32
		wantDist float32
	}{
		{"identical vector is a hit", teamA, axis(0, 0), "q", true, 0.1, 0},
		{"near vector within threshold is a hit", teamA, near, "q", true, 0.1, graph.Distance(near, axis(0, 0))},
		{"far vector beyond threshold is a miss", teamA, far, "q", false, 0.1, 0},
		{"guard veto is a miss", teamA, axis(0, 0), "negated", false, 0.1, 0},
		{"other tenant is a miss", Space{"team-b", "gpt-4o", "s1"}, axis(0, 0), "q", false, 0.1, 0},
		{"other route is a miss", Space{"team-a", "gpt-4", "s1"}, axis(0, 0), "q", false, 0.1, 0},
		{"other shape is a miss", Space{"team-a", "gpt-4o", "s2"}, axis(0, 0), "q", false, 0.1, 0},
		{"other dimension is a miss", teamA, unit([]float32{1, 0, 0, 0}), "q", false, 0.1, 0},
		{"empty vector is a miss", teamA, nil, "q", false, 0.1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, d, ok := c.LookupSemantic(ctx, tt.sp, tt.vec, tt.prompt, tt.maxDist)
			if ok != tt.hit {
				t.Fatalf("hit = %v (distance %v), want %v", ok, d, tt.hit)
			}
			if ok && (got.ID != e.ID || d-tt.wantDist > 1e-6 || tt.wantDist-d > 1e-6) {
				t.Fatalf("got %s at %v, want %s at %v", got.ID, d, e.ID, tt.wantDist)
			}
		})
	}
	st := c.Stats()
	if st.SemanticHits != 2 || st.Hits != 2 || st.Misses != 7 {
		t.Fatalf("stats = %+v, want 2 semantic hits and 7 misses", st)
	}
	if got, _ := c.Get(ctx, e.ID); got.Hits != 2 {
		t.Fatalf("entry hits = %d, want 2", got.Hits)
	}
}

// A vetoed nearest candidate lets the next one within the threshold answer.
func TestGuardFallsThroughToNextCandidate(t *testing.T) {
	c := open(t, Options{Check: func(q, cand string) (bool, string) { return cand != "nearest", "vetoed" }})
	mustStore(t, c, entry(teamA, "nearest", axis(0, 0)))
	second := entry(teamA, "second", axis(0, 0.2))
	mustStore(t, c, second)
	got, _, ok := c.LookupSemantic(t.Context(), teamA, axis(0, 0.05), "q", 0.1)
	if !ok || got.ID != second.ID {
		t.Fatalf("got %v %v, want the second candidate", got, ok)
	}
}

// NearestJudgeable prefers a candidate the guard accepts; when there is
// none, it offers the nearest one whose refusal a judge may settle, marked
// for the judge, and never one refused on a hard difference.
func TestNearestJudgeable(t *testing.T) {
	check := func(q, cand string) (bool, string) { return cand == "accepted", "vetoed" }
	judgeable := func(q, cand string) bool { return cand == "soft" }
	tests := []struct {
		name      string
		stored    []string // at increasing distances
		want      string   // "" for none
		wantJudge bool
	}{
		{"accepted candidate is served as before", []string{"soft", "accepted"}, "accepted", false},
		{"soft refusal goes to the judge", []string{"hard", "soft"}, "soft", true},
		{"hard refusals are never offered", []string{"hard", "hard"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := open(t, Options{Check: check, Judgeable: judgeable})
			for i, p := range tt.stored {
				mustStore(t, c, entry(teamA, p, axis(0, 0.1*float32(i+1))))
			}
			e, _, judge, ok := c.NearestJudgeable(t.Context(), teamA, axis(0, 0), "q", 0.5)
			if got := ""; ok {
				got = e.Prompt
				if got != tt.want || judge != tt.wantJudge {
					t.Fatalf("got %q judge %v, want %q judge %v", got, judge, tt.want, tt.wantJudge)
				}
			} else if tt.want != "" {
				t.Fatalf("no candidate, want %q", tt.want)
			}
			// Without a judge (NearestGuarded) a soft refusal is a miss.
			if e, _, ok := c.NearestGuarded(t.Context(), teamA, axis(0, 0), "q", 0.5); ok && e.Prompt != "accepted" {
				t.Fatalf("NearestGuarded returned %q", e.Prompt)
			}
		})
	}
}

func TestStoreReplacesSameExactHash(t *testing.T) {
	db := memDB(t)
	c := open(t, Options{DB: db.DB})
	first := entry(teamA, "q", axis(0, 0))
	mustStore(t, c, first)
	second := entry(teamA, "q", axis(0, 0))
	second.Response = []byte(`{"second":true}`)
	mustStore(t, c, second)
	got, ok := c.LookupExact(t.Context(), teamA, first.Exact)
	if !ok || got.ID != second.ID {
		t.Fatalf("exact lookup = %v, want the second entry", got)
	}
	if _, ok := c.Get(t.Context(), first.ID); ok || onDisk(t, db.DB, first.ID) {
		t.Fatal("replaced entry still in memory or on disk")
	}
	if st := c.Stats(); st.Entries != 1 {
		t.Fatalf("entries = %d, want 1", st.Entries)
	}
}

func TestInsert(t *testing.T) {
	c := open(t, Options{})
	ctx := t.Context()
	created := time.Now().Add(-time.Minute).Truncate(time.Second)
	e := entry(teamA, "q", axis(0, 0))
	e.ID, e.CreatedAt, e.Hits = "00000000000000aa", created, 7
	if err := c.Insert(ctx, e); err != nil {
		t.Fatal(err)
	}
	dup := *e
	dup.Response = []byte("changed")
	if err := c.Insert(ctx, &dup); err != nil {
		t.Fatal(err)
	}
	got, ok := c.Get(ctx, e.ID)
	if !ok || !got.CreatedAt.Equal(created) || string(got.Response) != string(e.Response) || got.Hits != 7 {
		t.Fatalf("Insert not idempotent on ID or did not keep fields: %+v", got)
	}
	older := entry(teamA, "q", axis(0, 0))
	older.ID, older.CreatedAt = "00000000000000bb", created.Add(-time.Second)
	if err := c.Insert(ctx, older); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.LookupExact(ctx, teamA, e.Exact); got.ID != e.ID {
		t.Fatalf("older replica replaced newer: exact hit %s", got.ID)
	}
	newer := entry(teamA, "q", axis(0, 0))
	newer.ID, newer.CreatedAt = "00000000000000cc", created.Add(time.Second)
	if err := c.Insert(ctx, newer); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.LookupExact(ctx, teamA, e.Exact); got.ID != newer.ID {
		t.Fatalf("newer replica did not win: exact hit %s", got.ID)
	}
	for _, bad := range []string{"", "xyz", "00000000000000AA", "0000000000000000a"} {
		e := entry(teamA, "bad", nil)
		e.ID = bad
		if err := c.Insert(ctx, e); err == nil {
			t.Errorf("Insert with id %q succeeded", bad)
		}
	}
}

func TestEntriesAreCopies(t *testing.T) {
	c := open(t, Options{})
	e := entry(teamA, "q", axis(0, 0))
	mustStore(t, c, e)
	e.Response[0] = 'X' // the caller keeps ownership of what it stored
	e.Vector[0] = 0
	got, _ := c.LookupExact(t.Context(), teamA, e.Exact)
	if got.Response[0] != '{' {
		t.Fatal("cache shares the stored Response with the caller")
	}
	got.Hits = 1000
	got.Prompt = "mutated"
	again, _ := c.Get(t.Context(), e.ID)
	if again.Prompt != "q" || again.Hits != 1 {
		t.Fatalf("mutating a returned entry changed the cache: %+v", again)
	}
}

func TestTTL(t *testing.T) {
	clk := newClock()
	db := memDB(t)
	c := open(t, Options{DB: db.DB, Now: clk.Now, TTL: time.Minute, SweepInterval: time.Hour})
	ctx := t.Context()
	short := entry(teamA, "short", axis(0, 0))
	mustStore(t, c, short)
	long := entry(teamA, "long", axis(3, 0))
	long.ExpiresAt = clk.Now().Add(time.Hour) // per-request TTL
	mustStore(t, c, long)

	if _, ok := c.LookupExact(ctx, teamA, short.Exact); !ok {
		t.Fatal("fresh entry missed")
	}
	clk.Advance(time.Minute)
	if _, ok := c.LookupExact(ctx, teamA, short.Exact); ok {
		t.Fatal("expired entry hit by exact lookup")
	}
	if _, _, ok := c.LookupSemantic(ctx, teamA, axis(0, 0), "short", 0.1); ok {
		t.Fatal("expired entry hit by semantic lookup")
	}
	if _, ok := c.Get(ctx, short.ID); ok {
		t.Fatal("expired entry returned by Get")
	}
	if _, ok := c.LookupExact(ctx, teamA, long.Exact); !ok {
		t.Fatal("entry with its own longer TTL expired with the default")
	}
	if err := c.sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Entries != 1 {
		t.Fatalf("after sweep entries = %d, want 1", st.Entries)
	}
	if onDisk(t, db.DB, short.ID) || !onDisk(t, db.DB, long.ID) {
		t.Fatal("sweep did not remove exactly the expired entry from disk")
	}
	// Storing something already expired is a no-op.
	old := entry(teamA, "old", nil)
	old.ExpiresAt = clk.Now().Add(-time.Second)
	mustStore(t, c, old)
	if _, ok := c.Get(ctx, old.ID); ok {
		t.Fatal("already-expired entry stored")
	}
}

// The periodic sweep runs on its own ticker.
func TestSweepRunsPeriodically(t *testing.T) {
	clk := newClock()
	c := open(t, Options{Now: clk.Now, TTL: time.Minute, SweepInterval: 5 * time.Millisecond})
	mustStore(t, c, entry(teamA, "q", axis(0, 0)))
	clk.Advance(2 * time.Minute)
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats().Entries != 0 {
		if time.Now().After(deadline) {
			t.Fatal("expired entry not swept")
		}
		time.Sleep(time.Millisecond)
	}
	if st := c.Stats(); st.Bytes != 0 {
		t.Fatalf("bytes = %d after sweeping everything", st.Bytes)
	}
}

func TestMaxEntriesEvictsSoonestExpiring(t *testing.T) {
	clk := newClock()
	db := memDB(t)
	c := open(t, Options{DB: db.DB, Now: clk.Now, MaxEntries: 3, Shards: 4})
	ctx := t.Context()
	// Expiries out of storing order: 50m, 10m, 40m, 20m, 30m.
	mins := []int{50, 10, 40, 20, 30}
	var es []*Entry
	for i, m := range mins {
		e := entry(Space{fmt.Sprintf("p%d", i), "r", "s"}, fmt.Sprintf("q%d", i), axis(i, 0))
		e.ExpiresAt = clk.Now().Add(time.Duration(m) * time.Minute)
		mustStore(t, c, e)
		es = append(es, e)
	}
	if st := c.Stats(); st.Entries != 3 {
		t.Fatalf("entries = %d, want 3", st.Entries)
	}
	for i, e := range es {
		wantGone := mins[i] == 10 || mins[i] == 20
		_, inMem := c.Get(ctx, e.ID)
		_, _, semantic := c.LookupSemantic(ctx, e.Space, e.Vector, e.Prompt, 0.01)
		_, exact := c.LookupExact(ctx, e.Space, e.Exact)
		disk := onDisk(t, db.DB, e.ID)
		if wantGone == (inMem || semantic || exact || disk) {
			t.Errorf("entry expiring in %dm: in memory %v, semantic %v, exact %v, on disk %v; want evicted = %v",
				mins[i], inMem, semantic, exact, disk, wantGone)
		}
	}
}

func TestDeleteAndPurge(t *testing.T) {
	db := memDB(t)
	c := open(t, Options{DB: db.DB})
	ctx := t.Context()
	ids := map[Space][]string{}
	spaces := []Space{{"team-a", "r1", "s"}, {"team-a", "r2", "s"}, {"team-b", "r1", "s"}, {"team-b", "r2", "x"}}
	for i, sp := range spaces {
		for j := range 3 {
			e := entry(sp, fmt.Sprintf("q%d", j), spread(10*i+j))
			mustStore(t, c, e)
			ids[sp] = append(ids[sp], e.ID)
		}
	}
	victim := ids[spaces[0]][0]
	if ok, err := c.Delete(ctx, victim); !ok || err != nil {
		t.Fatalf("Delete = %v, %v", ok, err)
	}
	if _, ok := c.Get(ctx, victim); ok || onDisk(t, db.DB, victim) {
		t.Fatal("deleted entry still present")
	}
	if ok, _ := c.Delete(ctx, victim); ok {
		t.Fatal("second Delete reported found")
	}
	if ok, _ := c.Delete(ctx, "not-an-id"); ok {
		t.Fatal("Delete of a malformed id reported found")
	}
	tests := []struct {
		name             string
		partition, route string
		want             int
		gone             []Space
	}{
		{"by partition and route", "team-a", "r1", 2, spaces[:1]},
		{"by route", "", "r2", 6, []Space{spaces[1], spaces[3]}},
		{"everything else", "", "", 3, []Space{spaces[2]}},
		{"nothing left", "", "", 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := c.Purge(ctx, tt.partition, tt.route)
			if err != nil || n != tt.want {
				t.Fatalf("Purge = %d, %v; want %d", n, err, tt.want)
			}
			for _, sp := range tt.gone {
				for _, id := range ids[sp] {
					if _, ok := c.Get(ctx, id); ok || onDisk(t, db.DB, id) {
						t.Errorf("purged entry %s of %v still present", id, sp)
					}
				}
			}
		})
	}
	if st := c.Stats(); st.Entries != 0 || st.Bytes != 0 {
		t.Fatalf("stats after purging all = %+v", st)
	}
}

func TestListPagination(t *testing.T) {
	c := open(t, Options{Shards: 4})
	ctx := t.Context()
	want := map[string]Space{}
	for i := range 53 {
		sp := Space{fmt.Sprintf("team-%d", i%3), fmt.Sprintf("r%d", i%2), "s"}
		e := entry(sp, fmt.Sprintf("q%d", i), spread(i))
		mustStore(t, c, e)
		want[e.ID] = sp
	}
	tests := []struct {
		name             string
		partition, route string
		limit            int
	}{
		{"all, pages of 7", "", "", 7},
		{"all, one page", "", "", 1000},
		{"all, page size divides", "", "", 53},
		{"one partition", "team-1", "", 5},
		{"one route", "", "r0", 4},
		{"partition and route", "team-2", "r1", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			cursor := ""
			for pages := 0; ; pages++ {
				if pages > 100 {
					t.Fatal("pagination does not end")
				}
				page, next, err := c.List(ctx, tt.partition, tt.route, tt.limit, cursor)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) > tt.limit {
					t.Fatalf("page of %d > limit %d", len(page), tt.limit)
				}
				for _, e := range page {
					got = append(got, e.ID)
				}
				if next == "" {
					break
				}
				if next != page[len(page)-1].ID {
					t.Fatalf("next cursor %q is not the page's last id", next)
				}
				cursor = next
			}
			var exp []string
			for id, sp := range want {
				if (filter{partition: tt.partition, route: tt.route}).match(sp) {
					exp = append(exp, id)
				}
			}
			slices.Sort(exp)
			if !slices.Equal(got, exp) {
				t.Fatalf("listed %d ids (sorted: %v), want each of %d exactly once in id order", len(got), slices.IsSorted(got), len(exp))
			}
		})
	}
	if _, _, err := c.List(ctx, "", "", 10, "bogus"); err == nil {
		t.Fatal("bad cursor accepted")
	}
}

func TestSearch(t *testing.T) {
	c := open(t, Options{Check: func(string, string) (bool, string) { return false, "never" }})
	ctx := t.Context()
	a := entry(Space{"team-a", "r", "s1"}, "a", axis(0, 0))
	b := entry(Space{"team-a", "r", "s2"}, "b", axis(0, 0.3))
	other := entry(Space{"team-b", "r", "s1"}, "other", axis(0, 0))
	for _, e := range []*Entry{a, b, other} {
		mustStore(t, c, e)
	}
	got := c.Search(ctx, Space{Partition: "team-a", Route: "r"}, axis(0, 0), 5)
	if len(got) != 2 || got[0].ID != a.ID || got[1].ID != b.ID || got[0].Prompt != "a" {
		t.Fatalf("search across shapes = %+v, want a then b (guard not applied, team-b excluded)", got)
	}
	got = c.Search(ctx, Space{"team-a", "r", "s2"}, axis(0, 0), 5)
	if len(got) != 1 || got[0].ID != b.ID {
		t.Fatalf("search in one shape = %+v, want b", got)
	}
	if got := c.Search(ctx, Space{Partition: "team-a", Route: "r"}, axis(0, 0), 1); len(got) != 1 {
		t.Fatalf("k=1 returned %d", len(got))
	}
}

func TestStatsBytes(t *testing.T) {
	c := open(t, Options{})
	e := entry(teamA, "12345", axis(0, 0))
	e.Response = []byte("0123456789")
	mustStore(t, c, e)
	if st := c.Stats(); st.Entries != 1 || st.Bytes != int64(5+10+4*dim) {
		t.Fatalf("stats = %+v, want 1 entry of %d bytes", st, 5+10+4*dim)
	}
	c.Miss()
	if st := c.Stats(); st.Misses != 1 {
		t.Fatalf("Miss not counted: %+v", st)
	}
}

func TestClosedCacheFailsSoftly(t *testing.T) {
	c := open(t, Options{})
	e := entry(teamA, "q", axis(0, 0))
	mustStore(t, c, e)
	c.Close()
	ctx := t.Context()
	if _, ok := c.LookupExact(ctx, teamA, e.Exact); ok {
		t.Fatal("closed cache hit")
	}
	if _, _, ok := c.LookupSemantic(ctx, teamA, e.Vector, "q", 1); ok {
		t.Fatal("closed cache hit")
	}
	if err := c.Store(ctx, entry(teamA, "x", nil)); err == nil {
		t.Fatal("Store on a closed cache succeeded")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCanceledContextNeverWedgesActor(t *testing.T) {
	c := open(t, Options{Shards: 1})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for range 200 {
		c.LookupExact(ctx, teamA, hashOf(teamA, "q"))
		c.Store(ctx, entry(teamA, "q", axis(0, 0)))
	}
	mustStore(t, c, entry(teamA, "after", axis(1, 0)))
	if _, ok := c.LookupExact(t.Context(), teamA, hashOf(teamA, "after")); !ok {
		t.Fatal("actor stuck after canceled calls")
	}
}

func TestConcurrentUse(t *testing.T) {
	db := memDB(t)
	c := open(t, Options{DB: db.DB, MaxEntries: 150, Shards: 4})
	ctx := t.Context()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 120 {
				sp := Space{fmt.Sprintf("team-%d", g%4), "r", fmt.Sprintf("s%d", i%3)}
				n := g*1000 + i
				e := entry(sp, fmt.Sprintf("q%d", n), spread(n))
				if err := c.Store(ctx, e); err != nil {
					t.Error(err)
					return
				}
				c.LookupExact(ctx, sp, e.Exact)
				c.LookupSemantic(ctx, sp, e.Vector, e.Prompt, 0.05)
				switch i % 20 {
				case 0:
					c.Delete(ctx, e.ID)
				case 7:
					c.List(ctx, sp.Partition, "", 10, "")
				case 13:
					c.Search(ctx, Space{Partition: sp.Partition, Route: "r"}, e.Vector, 3)
				case 19:
					if g == 0 {
						c.Purge(ctx, "team-3", "")
					}
				}
				_ = c.Stats()
			}
		})
	}
	wg.Wait()
	all, next, err := c.List(ctx, "", "", 1000, "")
	if err != nil || next != "" {
		t.Fatal(err, next)
	}
	st := c.Stats()
	if int64(len(all)) != st.Entries || st.Entries > 150 {
		t.Fatalf("listed %d, stats say %d entries (max 150)", len(all), st.Entries)
	}
	var bytes int64
	for _, e := range all {
		if e.Vector != nil {
			t.Errorf("entry %s handed out with its vector: the graph holds the only copy", e.ID)
		}
		bytes += e.size() + 4*dim // the vector lives in the graph
		if !onDisk(t, db.DB, e.ID) {
			t.Errorf("live entry %s not on disk", e.ID)
		}
	}
	if bytes != st.Bytes {
		t.Fatalf("bytes stat %d, entries sum to %d", st.Bytes, bytes)
	}
}

func TestNormalizedTier(t *testing.T) {
	c := open(t, Options{})
	ctx := t.Context()
	e := entry(teamA, "What is the capital of France?", axis(0, 0))
	e.Norm = NormHash(teamA, "what is the capital of france")
	mustStore(t, c, e)
	tests := []struct {
		name string
		sp   Space
		h    [32]byte
		hit  bool
	}{
		{"same normalised text is a hit", teamA, NormHash(teamA, "what is the capital of france"), true},
		{"other normalised text is a miss", teamA, NormHash(teamA, "what is the capital of spain"), false},
		{"the exact key is not a normalised key", teamA, e.Exact, false},
		{"same text in another partition is a miss", Space{"team-b", "gpt-4o", "s1"}, NormHash(Space{"team-b", "gpt-4o", "s1"}, "what is the capital of france"), false},
		{"zero hash is a miss", teamA, [32]byte{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := c.LookupNormalized(ctx, tt.sp, tt.h)
			if ok != tt.hit {
				t.Fatalf("hit = %v, want %v", ok, tt.hit)
			}
			if ok && got.ID != e.ID {
				t.Fatalf("got entry %s, want %s", got.ID, e.ID)
			}
		})
	}
	if st := c.Stats(); st.NormalizedHits != 1 || st.Hits != 1 {
		t.Fatalf("stats = %+v; want 1 normalised hit", st)
	}
	if _, err := c.Delete(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.LookupNormalized(ctx, teamA, e.Norm); ok {
		t.Fatal("a deleted entry still answers the normalised tier")
	}
}

// TestLookupKeyed: the exact tier answers first, the normalised tier when
// the exact one finds nothing the caller accepts; every entry found counts
// a hit of its tier, whether accepted or not.
func TestLookupKeyed(t *testing.T) {
	c := open(t, Options{})
	ctx := t.Context()
	e := entry(teamA, "What is the capital of France?", axis(0, 0))
	e.Norm = NormHash(teamA, "what is the capital of france")
	mustStore(t, c, e)
	other := entry(teamA, "what is the capital of France", axis(1, 0)) // same normalised text, stored later
	other.Norm = e.Norm
	mustStore(t, c, other)
	all := func(*Entry) bool { return true }
	notE := func(x *Entry) bool { return x.ID != e.ID }
	none := func(*Entry) bool { return false }
	tests := []struct {
		name             string
		exact, norm      [32]byte
		accept           func(*Entry) bool
		want             string // "" = miss
		normalized       bool
		exactHits, nHits int64
	}{
		{"exact key answers", e.Exact, e.Norm, all, e.ID, false, 1, 0},
		{"exact entry refused: the normalised tier answers", e.Exact, e.Norm, notE, other.ID, true, 1, 1},
		{"no exact entry: the normalised tier answers", hashOf(teamA, "unknown"), e.Norm, all, other.ID, true, 0, 1},
		{"zero exact key: the normalised tier answers", [32]byte{}, e.Norm, all, other.ID, true, 0, 1},
		{"exact entry refused, no normalised key: a miss", e.Exact, [32]byte{}, notE, "", false, 1, 0},
		{"both refused: a miss counting both hits", e.Exact, e.Norm, none, "", false, 1, 1},
		{"both unknown: a miss", hashOf(teamA, "unknown"), NormHash(teamA, "unknown"), all, "", false, 0, 0},
		{"both zero: a miss", [32]byte{}, [32]byte{}, all, "", false, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := c.Stats()
			got, normalized, ok := c.LookupKeyed(ctx, teamA, tt.exact, tt.norm, tt.accept)
			switch {
			case ok != (tt.want != ""):
				t.Fatalf("hit = %v, want %v", ok, tt.want != "")
			case ok && (got.ID != tt.want || normalized != tt.normalized):
				t.Fatalf("got %s (normalized %v), want %s (normalized %v)", got.ID, normalized, tt.want, tt.normalized)
			}
			after := c.Stats()
			if ex, n := after.ExactHits-before.ExactHits, after.NormalizedHits-before.NormalizedHits; ex != tt.exactHits || n != tt.nHits || after.Hits-before.Hits != ex+n {
				t.Fatalf("counted %d exact and %d normalised hits (%d in all), want %d and %d", ex, n, after.Hits-before.Hits, tt.exactHits, tt.nHits)
			}
		})
	}
}

// TestSetLimitsAppliesToTheRunningCache: a smaller max_entries evicts the
// soonest-expiring entries at once (memory and disk); a new TTL gives new
// entries their expiry and leaves stored ones theirs.
func TestSetLimitsAppliesToTheRunningCache(t *testing.T) {
	clk := newClock()
	db := memDB(t)
	c := open(t, Options{DB: db.DB, Now: clk.Now, TTL: time.Hour, Shards: 4})
	ctx := t.Context()
	var es []*Entry
	for i, m := range []int{50, 10, 40, 20, 30} {
		e := entry(Space{fmt.Sprintf("p%d", i), "r", "s"}, fmt.Sprintf("q%d", i), axis(i, 0))
		e.ExpiresAt = clk.Now().Add(time.Duration(m) * time.Minute)
		mustStore(t, c, e)
		es = append(es, e)
	}
	if err := c.SetLimits(ctx, 5*time.Minute, 2); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Entries != 2 {
		t.Fatalf("entries = %d after max_entries went to 2", st.Entries)
	}
	for i, keep := range []bool{true, false, true, false, false} {
		_, inMem := c.Get(ctx, es[i].ID)
		if disk := onDisk(t, db.DB, es[i].ID); inMem != keep || disk != keep {
			t.Errorf("entry %d: in memory %v, on disk %v; want kept = %v", i, inMem, disk, keep)
		}
	}
	fresh := entry(Space{"p9", "r", "s"}, "q9", axis(9, 0))
	mustStore(t, c, fresh)
	if want := clk.Now().Add(5 * time.Minute); !fresh.ExpiresAt.Equal(want) {
		t.Errorf("a new entry expires at %v, want the new TTL's %v", fresh.ExpiresAt, want)
	}
	if got, ok := c.Get(ctx, es[0].ID); !ok || !got.ExpiresAt.Equal(es[0].ExpiresAt) {
		t.Errorf("a stored entry's expiry changed: %v", got)
	}
	if st := c.Stats(); st.Entries != 2 {
		t.Errorf("entries = %d: the new max_entries holds for new stores", st.Entries)
	}
	if err := c.SetLimits(ctx, 0, -1); err == nil {
		t.Error("a negative max_entries was taken")
	}
}

// BenchmarkLookupKeyedMiss is a cache miss's look-up of the exact and
// normalised tiers, neither holding the request: the shard's key set
// answers it without a message to the actor.
func BenchmarkLookupKeyedMiss(b *testing.B) {
	c, err := Open(b.Context(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	sp := Space{"team", "r", "s"}
	exact, norm := hashOf(sp, "q"), NormHash(sp, "q")
	accept := func(*Entry) bool { return true }
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := c.LookupKeyed(b.Context(), sp, exact, norm, accept); ok {
			b.Fatal("hit")
		}
	}
}
