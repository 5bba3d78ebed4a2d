package quota

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable clock safe to read from the actors.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }

// t0 is a bucket boundary in the middle of a day, a Wednesday.
var t0 = time.Date(2025, 6, 11, 12, 0, 0, 0, time.UTC)

// open starts a Limiter with an injected clock and in-memory state.
func open(t testing.TB, c *clock, limits map[string]Limits) *Limiter {
	t.Helper()
	l, err := Open(Options{Now: c.now, Shards: 4, NodeName: "n1"}, limits)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// reserve calls Reserve and fails the test on error.
func reserve(t testing.TB, l *Limiter, consumer, key string, tokens int64) (Reservation, Decision) {
	t.Helper()
	r, d, err := l.Reserve(context.Background(), consumer, key, tokens)
	if err != nil {
		t.Fatalf("Reserve(%q, %q, %d): %v", consumer, key, tokens, err)
	}
	if d.Allowed != r.Valid() {
		t.Fatalf("Reserve(%q, %q, %d): Allowed=%v but reservation valid=%v", consumer, key, tokens, d.Allowed, r.Valid())
	}
	return r, d
}

// status calls Status and fails the test if the consumer is unknown.
func status(t testing.TB, l *Limiter, consumer string) Status {
	t.Helper()
	st, ok := l.Status(context.Background(), consumer)
	if !ok {
		t.Fatalf("Status(%q): not found", consumer)
	}
	return st
}

// mergeUsage calls MergeUsage and fails the test on error.
func mergeUsage(t testing.TB, l *Limiter, us ...Usage) {
	t.Helper()
	if err := l.MergeUsage(context.Background(), us); err != nil {
		t.Fatal(err)
	}
}

// bucketAt is the totals of the bucket that holds at.
func bucketAt(at time.Time, added, removed int64) BucketUsage {
	return BucketUsage{Bucket: bucketOf(at), Added: added, Removed: removed}
}
