package cluster

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeQuota records what reaches it and sends what it is told to.
type fakeQuota struct {
	mu       sync.Mutex
	news     [][]byte // returned once by the next Outgoing(false)
	reliable [][]byte
	full     []byte // returned by Outgoing(true)
	merged   [][]byte
	peers    []string
}

func (q *fakeQuota) Outgoing(_ context.Context, full bool, maxPacket int) ([][]byte, [][]byte, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if full {
		if q.full == nil {
			return nil, nil, nil
		}
		return [][]byte{q.full}, nil, nil
	}
	for _, p := range q.news {
		if len(p) > maxPacket {
			return nil, nil, fmt.Errorf("packet of %d bytes > %d", len(p), maxPacket)
		}
	}
	p, r := q.news, q.reliable
	q.news, q.reliable = nil, nil
	return p, r, nil
}

func (q *fakeQuota) Merge(_ context.Context, payload []byte) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.merged = append(q.merged, slices.Clone(payload))
	return nil
}

func (q *fakeQuota) SetPeers(names []string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.peers = slices.Clone(names)
}

func (q *fakeQuota) send(packet, reliable []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if packet != nil {
		q.news = append(q.news, packet)
	}
	if reliable != nil {
		q.reliable = append(q.reliable, reliable)
	}
}

func (q *fakeQuota) has(payload string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, m := range q.merged {
		if string(m) == payload {
			return true
		}
	}
	return false
}

func (q *fakeQuota) peerNames() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.peers)
}

// fakeCache is a set of IDs with creation times and tombstones. Its payloads
// are lines "S id created" and "D id".
type fakeCache struct {
	mu       sync.Mutex
	live     map[string]int64
	dead     map[string]bool
	exported int
}

func newFakeCache() *fakeCache {
	return &fakeCache{live: map[string]int64{}, dead: map[string]bool{}}
}

func stored(id string, created int64) []byte { return fmt.Appendf(nil, "S %s %d\n", id, created) }

func (f *fakeCache) Apply(_ context.Context, payload []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, line := range strings.Split(strings.TrimSpace(string(payload)), "\n") {
		fields := strings.Fields(line)
		switch {
		case len(fields) == 3 && fields[0] == "S":
			if f.dead[fields[1]] {
				continue
			}
			n, _ := strconv.ParseInt(fields[2], 10, 64)
			f.live[fields[1]] = n
		case len(fields) == 2 && fields[0] == "D":
			delete(f.live, fields[1])
			f.dead[fields[1]] = true
		default:
			return fmt.Errorf("bad line %q", line)
		}
	}
	return nil
}

func bucketOf(id string) uint8 {
	h := fnv.New64a()
	h.Write([]byte(id))
	return uint8(h.Sum64())
}

func mix(id string, v int64) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", id, v)
	return h.Sum64()
}

func (f *fakeCache) Digest(context.Context) (Digest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var d Digest
	for id, c := range f.live {
		d[bucketOf(id)] ^= mix(id, c)
	}
	for id := range f.dead {
		d[bucketOf(id)] ^= mix(id, -1)
	}
	return d, nil
}

func (f *fakeCache) Versions(_ context.Context, buckets []uint8) ([]Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var vs []Version
	for id, c := range f.live {
		if slices.Contains(buckets, bucketOf(id)) {
			vs = append(vs, Version{ID: id, CreatedAt: c})
		}
	}
	for id := range f.dead {
		if slices.Contains(buckets, bucketOf(id)) {
			vs = append(vs, Version{ID: id, Deleted: true})
		}
	}
	return vs, nil
}

func (f *fakeCache) Export(_ context.Context, ids []string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b []byte
	for _, id := range ids {
		if c, ok := f.live[id]; ok {
			b = append(b, stored(id, c)...)
			f.exported++
		}
	}
	return b, nil
}

func (f *fakeCache) Delete(_ context.Context, tombstones []Version) error {
	var b []byte
	for _, v := range tombstones {
		b = fmt.Appendf(b, "D %s\n", v.ID)
	}
	return f.Apply(context.Background(), b)
}

func (f *fakeCache) size() (live, dead int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.live), len(f.dead)
}

func (f *fakeCache) exports() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.exported
}

// crash stops c the way a kill -9 would look to the others: no leave.
func (c *Cluster) crash() {
	c.closeOnce.Do(func() {
		c.cancel()
		c.events.close()
		_ = c.ml.Shutdown()
		c.wg.Wait()
	})
}

type testNode struct {
	*Cluster
	q *fakeQuota
	c *fakeCache
}

// freeAddr returns a loopback host:port free for TCP and UDP at the moment.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err == nil {
			u.Close()
			return addr
		}
	}
	t.Fatal("no free port")
	return ""
}

func start(t *testing.T, name, bind string, join []string, mod func(*Options)) *testNode {
	t.Helper()
	n := &testNode{q: &fakeQuota{}, c: newFakeCache()}
	opts := Options{
		Name: name, Bind: bind, Join: join, Quota: n.q, Cache: n.c,
		FlushInterval: 10 * time.Millisecond, SyncInterval: time.Hour,
		JoinBackoffMax: 200 * time.Millisecond, Timeout: 2 * time.Second,
	}
	if mod != nil {
		mod(&opts)
	}
	c, err := Start(opts)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	n.Cluster = c
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return n
}

func eventually(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func states(c *Cluster) map[string]string {
	out := map[string]string{}
	for _, m := range c.Members() {
		out[m.Name] = m.State
	}
	return out
}

func allAlive(n int, cs ...*testNode) func() bool {
	return func() bool {
		for _, c := range cs {
			st := states(c.Cluster)
			alive := 0
			for _, s := range st {
				if s == "alive" {
					alive++
				}
			}
			if alive != n {
				return false
			}
		}
		return true
	}
}

func TestJoinInEitherOrder(t *testing.T) {
	for _, seedFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("seed_first=%v", seedFirst), func(t *testing.T) {
			addrA, addrB := freeAddr(t), freeAddr(t)
			var a, b *testNode
			if seedFirst {
				a = start(t, "a", addrA, nil, nil)
				b = start(t, "b", addrB, []string{addrA}, nil)
			} else {
				// b's seed is not up yet: b serves alone and keeps trying.
				b = start(t, "b", addrB, []string{addrA}, nil)
				time.Sleep(300 * time.Millisecond)
				if st := states(b.Cluster); len(st) != 1 {
					t.Fatalf("b alone should list itself only: %v", st)
				}
				a = start(t, "a", addrA, nil, nil)
			}
			eventually(t, 20*time.Second, "both see two alive members", allAlive(2, a, b))
			if got := a.q.peerNames(); !slices.Equal(got, []string{"b"}) {
				t.Errorf("a's quota peers = %v, want [b]", got)
			}
			if m := a.Members(); m[0].Name != "a" || m[0].Addr != addrA {
				t.Errorf("a lists itself first with its address: %+v", m)
			}
		})
	}
}

func TestQuotaNewsReachPeers(t *testing.T) {
	a := start(t, "a", freeAddr(t), nil, nil)
	b := start(t, "b", freeAddr(t), []string{a.Addr()}, nil)
	eventually(t, 20*time.Second, "joined", allAlive(2, a, b))
	a.q.send([]byte("usage-1"), []byte("limits-1"))
	eventually(t, 20*time.Second, "b merges a's packet and reliable payload", func() bool {
		return b.q.has("usage-1") && b.q.has("limits-1")
	})
	// Push/pull carries the full state.
	a.q.mu.Lock()
	a.q.full = []byte("full-state")
	a.q.mu.Unlock()
	c := start(t, "c", freeAddr(t), []string{a.Addr()}, nil)
	eventually(t, 20*time.Second, "c gets a's full state when joining", func() bool { return c.q.has("full-state") })
}

func TestReplicationAndCatchUp(t *testing.T) {
	// Small version chunks: they travel on separate connections and arrive
	// in any order.
	small := func(o *Options) { o.versionsPerChunk = 50 }
	a := start(t, "a", freeAddr(t), nil, small)
	b := start(t, "b", freeAddr(t), []string{a.Addr()}, small)
	eventually(t, 20*time.Second, "joined", allAlive(2, a, b))

	// Live replication: stores and a delete, batched.
	for i := range 50 {
		ch := stored(fmt.Sprintf("e%03d", i), int64(i))
		_ = a.c.Apply(context.Background(), ch)
		a.Replicate(ch)
	}
	_ = a.c.Delete(context.Background(), []Version{{ID: "e007", Deleted: true}})
	a.Replicate([]byte("D e007\n"))
	eventually(t, 20*time.Second, "b has a's 49 entries and the tombstone", func() bool {
		live, dead := b.c.size()
		return live == 49 && dead == 1
	})

	// A node that was away catches up when it joins, tombstones included.
	for i := range 2000 {
		_ = a.c.Apply(context.Background(), stored(fmt.Sprintf("x%04d", i), int64(i)))
	}
	_ = a.c.Delete(context.Background(), []Version{{ID: "x0001", Deleted: true}, {ID: "x0002", Deleted: true}})
	c := start(t, "c", freeAddr(t), []string{b.Addr()}, small)
	_ = c.c.Apply(context.Background(), stored("x0001", 1)) // c still has one that was deleted meanwhile
	eventually(t, 40*time.Second, "c caught up", func() bool {
		da, _ := a.c.Digest(context.Background())
		dc, _ := c.c.Digest(context.Background())
		return da == dc
	})
	if live, _ := c.c.size(); live != 2049-2 {
		t.Fatalf("c live = %d, want %d", live, 2047)
	}
	// b caught up from a too (b missed the 2000 written without replication).
	eventually(t, 40*time.Second, "b caught up", func() bool {
		da, _ := a.c.Digest(context.Background())
		db, _ := b.c.Digest(context.Background())
		return da == db
	})

	// Little changed, little moves: one new entry on a, a round from c moves one.
	before := a.c.exports()
	_ = a.c.Apply(context.Background(), stored("late", 99))
	c.pull(c.peerNamed("a"))
	if live, _ := c.c.size(); live != 2048 {
		t.Fatalf("after one more round c live = %d, want 2048", live)
	}
	if moved := a.c.exports() - before; moved != 1 {
		t.Fatalf("a exported %d entries for one change, want 1", moved)
	}
}

func TestLeaveAndFailure(t *testing.T) {
	a := start(t, "a", freeAddr(t), nil, nil)
	b := start(t, "b", freeAddr(t), []string{a.Addr()}, nil)
	c := start(t, "c", freeAddr(t), []string{a.Addr()}, nil)
	eventually(t, 20*time.Second, "joined", allAlive(3, a, b, c))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "a sees b left", func() bool { return states(a.Cluster)["b"] == "left" })

	// c dies without leaving.
	c.crash()
	eventually(t, 30*time.Second, "a sees c dead", func() bool { return states(a.Cluster)["c"] == "dead" })
	if got := a.q.peerNames(); len(got) != 0 {
		t.Errorf("a's quota peers after both went = %v", got)
	}
	// A request-side call never blocks, even with peers gone.
	done := make(chan struct{})
	go func() {
		for range 10000 {
			a.Replicate([]byte("S y 1\n"))
		}
		close(done)
	}()
	// A blocked call never returns; a slow machine under the race detector
	// only takes longer, so the bound is generous rather than a timing.
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Replicate blocked")
	}
}

func TestRestartUnderSameNameRejoins(t *testing.T) {
	addrB := freeAddr(t)
	a := start(t, "a", freeAddr(t), nil, nil)
	b := start(t, "b", addrB, []string{a.Addr()}, nil)
	eventually(t, 20*time.Second, "joined", allAlive(2, a, b))
	b.crash()
	eventually(t, 15*time.Second, "a sees b dead", func() bool { return states(a.Cluster)["b"] == "dead" })
	b2 := start(t, "b", addrB, []string{a.Addr()}, nil)
	eventually(t, 15*time.Second, "b is back alive on both", allAlive(2, a, b2))
}

func TestEncryption(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	other := bytes.Repeat([]byte{9}, 32)
	withKey := func(k []byte) func(*Options) { return func(o *Options) { o.SecretKey = k } }
	a := start(t, "a", freeAddr(t), nil, withKey(key))
	b := start(t, "b", freeAddr(t), []string{a.Addr()}, withKey(key))
	eventually(t, 20*time.Second, "same key joins", allAlive(2, a, b))
	a.q.send([]byte("secret-usage"), nil)
	eventually(t, 20*time.Second, "encrypted packet arrives", func() bool { return b.q.has("secret-usage") })

	c := start(t, "c", freeAddr(t), []string{a.Addr()}, withKey(other))
	time.Sleep(time.Second)
	if st := states(c.Cluster); len(st) != 1 {
		t.Fatalf("a node with another key must not join: %v", st)
	}
	if _, ok := states(a.Cluster)["c"]; ok {
		t.Fatal("a lists the node with the wrong key")
	}
}

func TestStartRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no name", Options{Bind: "127.0.0.1:0"}, "name is required"},
		{"unencrypted on all interfaces", Options{Name: "x", Bind: "0.0.0.0:0"}, "refusing to gossip unencrypted"},
		{"hostname", Options{Name: "x", Bind: "example.com:1"}, "must be an IP"},
		{"bad port", Options{Name: "x", Bind: "127.0.0.1:99999"}, "bad port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Start(tc.opts)
			if err == nil {
				_ = c.Close(context.Background())
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
	// A port in use is an error, not a silent start.
	a := start(t, "a", freeAddr(t), nil, nil)
	if c, err := Start(Options{Name: "b", Bind: a.Addr()}); err == nil {
		_ = c.Close(context.Background())
		t.Fatal("second node on the same gossip port started")
	}
}

func TestConfigHashIsSeenByPeers(t *testing.T) {
	addrA := freeAddr(t)
	a := start(t, "a", addrA, nil, func(o *Options) { o.ConfigHash = "hash-a1" })
	b := start(t, "b", freeAddr(t), []string{addrA}, func(o *Options) { o.ConfigHash = "hash-b1" })
	eventually(t, 20*time.Second, "both see two alive members", allAlive(2, a, b))
	hashes := func(c *Cluster) map[string]string {
		out := map[string]string{}
		for _, m := range c.Members() {
			out[m.Name] = m.ConfigHash
		}
		return out
	}
	eventually(t, 20*time.Second, "each sees the other's hash at join", func() bool {
		return hashes(a.Cluster)["b"] == "hash-b1" && hashes(b.Cluster)["a"] == "hash-a1"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := a.SetConfigHash(ctx, "hash-a2"); err != nil {
		t.Fatal(err)
	}
	if got := hashes(a.Cluster)["a"]; got != "hash-a2" {
		t.Errorf("a's own hash = %q after the change", got)
	}
	eventually(t, 20*time.Second, "b sees a's new hash", func() bool { return hashes(b.Cluster)["a"] == "hash-a2" })
}

// countingQuota is a fakeQuota that notes when Outgoing(false) is called.
type countingQuota struct {
	*fakeQuota
	mu    sync.Mutex
	calls []time.Time
}

func (q *countingQuota) Outgoing(ctx context.Context, full bool, maxPacket int) ([][]byte, [][]byte, error) {
	if !full {
		q.mu.Lock()
		q.calls = append(q.calls, time.Now())
		q.mu.Unlock()
	}
	return q.fakeQuota.Outgoing(ctx, full, maxPacket)
}

// TestAloneNodeCollectsQuotaNewsSeldom: a node without peers collects its
// quota news (which costs its quota's actors a round trip each) only every
// aloneFlushTicks flush ticks, not every tick; it still collects it.
func TestAloneNodeCollectsQuotaNewsSeldom(t *testing.T) {
	const interval = 2 * time.Millisecond
	q := &countingQuota{fakeQuota: &fakeQuota{}}
	start(t, "a", freeAddr(t), nil, func(o *Options) { o.Quota, o.FlushInterval = q, interval })
	count := func() int {
		q.mu.Lock()
		defer q.mu.Unlock()
		return len(q.calls)
	}
	eventually(t, 20*time.Second, "two collections", func() bool { return count() >= 2 })
	q.mu.Lock()
	gap := q.calls[1].Sub(q.calls[0])
	q.mu.Unlock()
	// A ticker never ticks faster than its interval: every tick would
	// collect 2 ms apart or so.
	if gap < 10*interval {
		t.Fatalf("collected %v apart, want at least 10 ticks of %v", gap, interval)
	}
}
