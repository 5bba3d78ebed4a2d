package index

import (
	"fmt"
	"testing"
	"time"
)

// heldKeysHidden lists, for every shard, the exact and norm hashes its maps
// hold that its key set says it does not hold: what would turn a hit into
// a miss. It runs on the actors.
func heldKeysHidden(t *testing.T, c *Cache) []string {
	t.Helper()
	out := make([][]string, len(c.shards))
	if err := c.each(t.Context(), func(i int, s *shard) {
		k := s.keys.Load()
		for _, id := range s.exact {
			if r := s.entries[id]; !k.mayHold(r.exact) {
				out[i] = append(out[i], "exact of "+formatID(id))
			}
		}
		for _, id := range s.norm {
			if r := s.entries[id]; !k.mayHold(r.norm) {
				out[i] = append(out[i], "norm of "+formatID(id))
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, o := range out {
		all = append(all, o...)
	}
	return all
}

// keyedEntry is entry with a normalised-tier hash as well.
func keyedEntry(sp Space, prompt string, i int) *Entry {
	e := entry(sp, prompt, spread(i))
	e.Norm = NormHash(sp, "norm "+prompt)
	return e
}

// TestKeySetNeverHidesAHeldHash stores, replaces, deletes, purges and
// expires entries through several rebuilds of the key sets (each grows past
// its first size, and removals outnumber what is held) and checks after
// each step that every hash the maps hold is in its shard's key set and
// that every entry held is still found by LookupKeyed.
func TestKeySetNeverHidesAHeldHash(t *testing.T) {
	clk := newClock()
	c := open(t, Options{Now: clk.Now, Shards: 2, TTL: time.Hour})
	ctx := t.Context()
	spaces := []Space{{"a", "r", "s"}, {"b", "r", "s"}, {"c", "q", "t"}}
	var held []*Entry
	check := func(step string) {
		t.Helper()
		if hidden := heldKeysHidden(t, c); len(hidden) > 0 {
			t.Fatalf("%s: %d held hashes hidden by the key set, e.g. %v", step, len(hidden), hidden[:min(3, len(hidden))])
		}
		for _, e := range held {
			got, _, ok := c.LookupKeyed(ctx, e.Space, e.Exact, e.Norm, func(*Entry) bool { return true })
			if !ok || got.ID != e.ID {
				t.Fatalf("%s: entry %s (%q) not found by LookupKeyed", step, e.ID, e.Prompt)
			}
		}
	}
	n := 0
	store := func(count int, ttl time.Duration) []*Entry {
		var es []*Entry
		for range count {
			sp := spaces[n%len(spaces)]
			e := keyedEntry(sp, fmt.Sprintf("prompt %d", n), n)
			if ttl > 0 {
				e.ExpiresAt = clk.Now().Add(ttl)
			}
			mustStore(t, c, e)
			es = append(es, e)
			n++
		}
		return es
	}
	held = store(1500, 0) // past several sizes of every shard's set
	check("after 1500 stores")

	// The same request stored again replaces its entry: same hashes.
	for i, e := range held[:100] {
		again := keyedEntry(e.Space, e.Prompt, i)
		mustStore(t, c, again)
		held[i] = again
	}
	check("after 100 replacements")

	// Deleting most entries rebuilds the sets without their hashes.
	for _, e := range held[200:] {
		if ok, err := c.Delete(ctx, e.ID); err != nil || !ok {
			t.Fatalf("Delete(%s) = %v, %v", e.ID, ok, err)
		}
	}
	held = held[:200]
	check("after 1300 deletes")

	short := store(600, time.Minute)
	held = append(held, short...)
	check("after 600 more stores")
	clk.Advance(2 * time.Minute)
	if err := c.sweep(ctx); err != nil {
		t.Fatal(err)
	}
	held = held[:200]
	check("after 600 expired")

	if _, err := c.Purge(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	kept := held[:0]
	for _, e := range held {
		if e.Space.Partition != "a" {
			kept = append(kept, e)
		}
	}
	held = kept
	check("after a purge")
	clk.Advance(time.Second) // stores made after the purge are not covered by it
	held = append(held, store(300, 0)...)
	check("after 300 stores more")
}

// TestKeySetAnswersMostMissesAlone checks that the key set does its job: of
// requests never stored (two hashes each, each asking the actor about one
// time in 270 when a set is built and one in 70 before it is rebuilt), at
// most one in twenty ask the actor (a set of one bit per hash, one bit of
// sixteen set, let 9-22 % through), and that removed hashes do not stay
// behind once removals outnumber what is held.
func TestKeySetAnswersMostMissesAlone(t *testing.T) {
	c := open(t, Options{Shards: 1})
	ctx := t.Context()
	sp := Space{"p", "r", "s"}
	var es []*Entry
	for i := range 3000 {
		e := keyedEntry(sp, fmt.Sprintf("stored %d", i), i)
		mustStore(t, c, e)
		es = append(es, e)
	}
	s := c.shardOf(sp)
	asked := func(prefix string) int {
		n := 0
		for i := range 4000 {
			q := fmt.Sprintf("%s %d", prefix, i)
			if s.mayHold(hashOf(sp, q), NormHash(sp, "norm "+q)) {
				n++
			}
		}
		return n
	}
	// Two hashes per request, each passing with odds of at most 1/70: at
	// most about 3 %.
	n := asked("absent")
	t.Logf("%d of 4000 absent requests would ask the actor", n)
	if n > 200 {
		t.Errorf("%d of 4000 absent requests would ask the actor; the key set filters too little", n)
	}
	for _, e := range es {
		if _, err := c.Delete(ctx, e.ID); err != nil {
			t.Fatal(err)
		}
	}
	stale := 0
	for _, e := range es {
		if s.mayHold(e.Exact, e.Norm) {
			stale++
		}
	}
	if stale > len(es)/4 {
		t.Errorf("%d of %d deleted requests still ask the actor: removals never rebuilt the key set", stale, len(es))
	}
}
