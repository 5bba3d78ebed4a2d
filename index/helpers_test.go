package index

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/llmgate/llmgate/internal/store"
)

const dim = 8

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// unit normalises v.
func unit(v []float32) []float32 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	n := float32(math.Sqrt(s))
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = x / n
	}
	return out
}

// axis is the unit vector along axis i (mod dim), tilted by tilt towards
// the next axis: distance to axis(i, 0) grows with tilt.
func axis(i int, tilt float32) []float32 {
	v := make([]float32, dim)
	v[i%dim] = 1
	v[(i+1)%dim] = tilt
	return unit(v)
}

// spread is a distinct unit vector for entry n: distinct entries are far
// apart enough for a threshold of 0.001.
func spread(n int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(math.Sin(float64((n+1)*(i+3)) * 1.7))
	}
	return unit(v)
}

func hashOf(sp Space, s string) [32]byte {
	return sha256.Sum256(fmt.Appendf(nil, "%s|%s|%s|%s", sp.Partition, sp.Route, sp.Shape, s))
}

func entry(sp Space, prompt string, vec []float32) *Entry {
	return &Entry{
		Space:    sp,
		Exact:    hashOf(sp, prompt),
		Prompt:   prompt,
		Vector:   vec,
		Response: fmt.Appendf(nil, `{"object":"chat.completion","prompt":%q}`, prompt),
	}
}

// open starts a Cache closed at the end of the test.
func open(t *testing.T, opts Options) *Cache {
	t.Helper()
	c, err := Open(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if opts.beforeLoad == nil {
		waitReady(t, c)
	}
	return c
}

func memDB(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open("", store.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// diskDB opens the database in dir. The test closes it, usually to open it
// again as a restarted node would.
func diskDB(t testing.TB, dir string) *store.DB {
	t.Helper()
	db, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// restartDB closes db, as a stopping node does, and returns a Cache opened
// over the database in dir again (closed, with the database, when the test
// ends).
func restartDB(t *testing.T, db *store.DB, dir string) *Cache {
	t.Helper()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = diskDB(t, dir)
	t.Cleanup(func() { db.Close() })
	return open(t, Options{DB: db.DB})
}

// onDisk reports whether id's key is in the database.
func onDisk(t *testing.T, db *badger.DB, id string) bool {
	t.Helper()
	err := db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(diskKey(id))
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

func waitReady(t *testing.T, c *Cache) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !c.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("cache not Ready after 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

func mustStore(t *testing.T, c *Cache, e *Entry) {
	t.Helper()
	if err := c.Store(context.Background(), e); err != nil {
		t.Fatalf("Store(%q): %v", e.Prompt, err)
	}
}
