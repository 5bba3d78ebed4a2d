package index

import (
	"fmt"
	"testing"
	"time"
)

// TestInternalSpaces checks that the records a node keeps in an internal
// Space (verified-matching verdicts) ride on the cache's machinery without
// being cache entries for an operator.
func TestInternalSpaces(t *testing.T) {
	internal := Space{Partition: "·verify", Route: "·verify"}
	ordinary := Space{Partition: "team-a", Route: "chat", Shape: "s"}
	// fill stores three ordinary entries and two internal records (the
	// internal ones expiring first, as a verdict may), returning the
	// internal records.
	fill := func(t *testing.T, c *Cache, now time.Time) []*Entry {
		t.Helper()
		var out []*Entry
		for i := range 2 {
			e := &Entry{Space: internal, Prompt: fmt.Sprintf(`{"verdict":%d}`, i), Response: []byte("{}"), ExpiresAt: now.Add(time.Minute)}
			mustStore(t, c, e)
			out = append(out, e)
		}
		for i := range 3 {
			mustStore(t, c, entry(ordinary, fmt.Sprintf("q%d", i), spread(i)))
		}
		return out
	}
	held := func(t *testing.T, c *Cache, es []*Entry) int {
		n := 0
		for _, e := range es {
			if _, ok := c.Get(t.Context(), e.ID); ok {
				n++
			}
		}
		return n
	}
	tests := []struct {
		name  string
		max   int
		check func(t *testing.T, c *Cache, clk *clock, verdicts []*Entry)
	}{
		{"internal records are not counted as entries", 0, func(t *testing.T, c *Cache, _ *clock, _ []*Entry) {
			st := c.Stats()
			if st.Entries != 3 || st.InternalEntries != 2 || st.InternalBytes <= 0 {
				t.Fatalf("entries %d, internal %d (%d bytes); want 3, 2", st.Entries, st.InternalEntries, st.InternalBytes)
			}
			if want := 3 * entry(ordinary, "q0", spread(0)).size(); st.Bytes != want {
				t.Fatalf("bytes %d, want %d (ordinary entries only)", st.Bytes, want)
			}
		}},
		{"a listing of everything leaves internal records out", 0, func(t *testing.T, c *Cache, _ *clock, _ []*Entry) {
			list, _, err := c.List(t.Context(), "", "", 100, "")
			if err != nil || len(list) != 3 {
				t.Fatalf("List = %d entries, %v; want the 3 ordinary ones", len(list), err)
			}
			for _, e := range list {
				if e.Space.Internal() {
					t.Fatalf("listed internal record %s", e.ID)
				}
			}
		}},
		{"a listing naming the internal space shows its records", 0, func(t *testing.T, c *Cache, _ *clock, _ []*Entry) {
			for _, f := range [][2]string{{internal.Partition, internal.Route}, {internal.Partition, ""}, {"", internal.Route}} {
				if list, _, err := c.List(t.Context(), f[0], f[1], 100, ""); err != nil || len(list) != 2 {
					t.Fatalf("List(%q, %q) = %d records, %v; want 2", f[0], f[1], len(list), err)
				}
			}
		}},
		{"a purge of everything keeps internal records", 0, func(t *testing.T, c *Cache, _ *clock, vs []*Entry) {
			if n, err := c.Purge(t.Context(), "", ""); err != nil || n != 3 {
				t.Fatalf("Purge = %d, %v; want 3", n, err)
			}
			if n := held(t, c, vs); n != 2 {
				t.Fatalf("%d internal records left, want 2", n)
			}
			// The purge record must not refuse a verdict arriving from a
			// peer that was made before it either.
			late := &Entry{ID: "00000000000000aa", Space: internal, Prompt: "{}", Response: []byte("{}"),
				CreatedAt: c.opts.Now().Add(-time.Second), ExpiresAt: c.opts.Now().Add(time.Hour)}
			if err := c.Insert(t.Context(), late); err != nil {
				t.Fatal(err)
			}
			if _, ok := c.Get(t.Context(), late.ID); !ok {
				t.Fatal("replicated internal record refused by a purge of everything")
			}
		}},
		{"a purge naming the internal space removes its records", 0, func(t *testing.T, c *Cache, _ *clock, vs []*Entry) {
			if n, err := c.Purge(t.Context(), "", internal.Route); err != nil || n != 2 {
				t.Fatalf("Purge = %d, %v; want 2", n, err)
			}
			if n := held(t, c, vs); n != 0 {
				t.Fatalf("%d internal records left, want 0", n)
			}
			if st := c.Stats(); st.Entries != 3 || st.InternalEntries != 0 {
				t.Fatalf("entries %d, internal %d; want 3, 0", st.Entries, st.InternalEntries)
			}
		}},
		{"max_entries neither counts nor evicts internal records", 3, func(t *testing.T, c *Cache, _ *clock, vs []*Entry) {
			if n := held(t, c, vs); n != 2 {
				t.Fatalf("%d internal records left, want 2 (they expire first but are not evicted)", n)
			}
			if st := c.Stats(); st.Entries != 3 {
				t.Fatalf("entries %d, want 3: the ordinary entries fill max_entries", st.Entries)
			}
			mustStore(t, c, entry(ordinary, "q9", spread(9)))
			if st, n := c.Stats(), held(t, c, vs); st.Entries != 3 || n != 2 {
				t.Fatalf("after one more store: entries %d, internal records %d; want 3, 2", st.Entries, n)
			}
		}},
		{"internal records still expire", 0, func(t *testing.T, c *Cache, clk *clock, vs []*Entry) {
			clk.Advance(2 * time.Minute)
			if err := c.sweep(t.Context()); err != nil {
				t.Fatal(err)
			}
			if st, n := c.Stats(), held(t, c, vs); st.InternalEntries != 0 || n != 0 || st.Entries != 3 {
				t.Fatalf("after their expiry: internal %d (%d held), entries %d; want 0, 0, 3", st.InternalEntries, n, st.Entries)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			c := open(t, Options{DB: memDB(t).DB, Now: clk.Now, MaxEntries: tt.max, Shards: 4})
			vs := fill(t, c, clk.Now())
			tt.check(t, c, clk, vs)
		})
	}
}

// TestHashKeyCollisions checks that the exact and normalised tiers, keyed by
// a hash's first 64 bits, compare the whole hash: two hashes sharing those
// bits never answer for each other.
func TestHashKeyCollisions(t *testing.T) {
	sp := Space{Partition: "team-a", Route: "chat", Shape: "s"}
	h1 := hashOf(sp, "first")
	h2 := h1
	h2[31] ^= 1 // same key, another hash
	if hashKey(h1) != hashKey(h2) || h1 == h2 {
		t.Fatal("the test's hashes do not collide")
	}
	tests := []struct {
		name  string
		check func(t *testing.T, c *Cache)
	}{
		{"a hash sharing a held one's key misses", func(t *testing.T, c *Cache) {
			a := &Entry{Space: sp, Exact: h1, Norm: h1, Prompt: "first", Response: []byte("{}")}
			mustStore(t, c, a)
			if e, ok := c.LookupExact(t.Context(), sp, h2); ok {
				t.Fatalf("exact look-up of a colliding hash answered %s", e.ID)
			}
			if e, ok := c.LookupNormalized(t.Context(), sp, h2); ok {
				t.Fatalf("normalised look-up of a colliding hash answered %s", e.ID)
			}
			if e, ok := c.LookupExact(t.Context(), sp, h1); !ok || e.ID != a.ID {
				t.Fatalf("exact look-up of the held hash = %v, %v", e, ok)
			}
		}},
		{"a colliding entry is kept but its hash misses, and the first keeps answering", func(t *testing.T, c *Cache) {
			a := &Entry{Space: sp, Exact: h1, Norm: h1, Prompt: "first", Response: []byte("{}")}
			b := &Entry{Space: sp, Exact: h2, Norm: h2, Prompt: "second", Response: []byte("{}")}
			mustStore(t, c, a)
			mustStore(t, c, b)
			if _, ok := c.Get(t.Context(), b.ID); !ok {
				t.Fatal("the colliding entry was not kept")
			}
			if e, ok := c.LookupExact(t.Context(), sp, h1); !ok || e.ID != a.ID {
				t.Fatalf("exact look-up of the first hash = %v, %v; want %s", e, ok, a.ID)
			}
			if e, ok := c.LookupNormalized(t.Context(), sp, h1); !ok || e.ID != a.ID {
				t.Fatalf("normalised look-up of the first hash = %v, %v; want %s", e, ok, a.ID)
			}
			if e, ok := c.LookupExact(t.Context(), sp, h2); ok {
				t.Fatalf("exact look-up of the colliding hash answered %s", e.ID)
			}
			if e, ok := c.LookupNormalized(t.Context(), sp, h2); ok {
				t.Fatalf("normalised look-up of the colliding hash answered %s", e.ID)
			}
			if _, err := c.Delete(t.Context(), a.ID); err != nil {
				t.Fatal(err)
			}
			if e, ok := c.LookupExact(t.Context(), sp, h1); ok {
				t.Fatalf("exact look-up of the deleted hash answered %s", e.ID)
			}
			if _, ok := c.Get(t.Context(), b.ID); !ok {
				t.Fatal("deleting the first entry removed the colliding one")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, open(t, Options{Shards: 1}))
		})
	}
}
