package affinity

import (
	"context"
	"sync"
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
