package index

import (
	"cmp"
	"container/heap"
	"context"
	"slices"
	"time"

	"github.com/llmgate/llmgate/index/graph"
)

// shard owns the entries of the Spaces that hash to it. Only its run
// goroutine touches its fields; everyone else sends it closures.
type shard struct {
	c     *Cache
	inbox chan func(*shard)

	entries map[uint64]*record       // id → record
	exact   map[[32]byte]uint64      // request hash → id (hashes include the Space)
	graphs  map[graphKey]graph.Index // one graph per Space and vector length
	expiry  expiryHeap               // every record, soonest ExpiresAt first

	// While the cache loads (not Ready), deletes and purges are remembered
	// so that the loader does not bring back what they removed.
	tombstones map[uint64]struct{}
	purges     []filter
}

// record is one entry as the shard holds it. e is never changed after the
// record is made, so copies of it can be handed out; hits and at belong to
// the actor.
type record struct {
	id   uint64
	e    *Entry // without its Vector: the graph holds the only copy in memory
	dim  int    // the vector's length, naming its graph; 0 = exact tier only
	size int64  // e's bytes, vector included, for Stats
	hits uint64
	at   int // index in the expiry heap
}

// graphKey names a graph: vectors of different lengths (an embedder changed
// between restarts) never share one, so Search never sees mismatched sizes.
type graphKey struct {
	sp  Space
	dim int
}

// expiry orders eviction: soonest ExpiresAt, then lower id.
type expiry struct {
	at time.Time
	id uint64
}

func (x expiry) before(y expiry) bool {
	if c := x.at.Compare(y.at); c != 0 {
		return c < 0
	}
	return x.id < y.id
}

// candidate is a semantic match handed to the caller for the guard.
type candidate struct {
	id uint64
	e  *Entry
	d  float32
}

// filter selects entries for Purge and List; "" matches all.
type filter struct {
	partition, route string
	before           time.Time // Purge: entries created at or before this time
}

func (f filter) match(sp Space) bool {
	return (f.partition == "" || f.partition == sp.Partition) && (f.route == "" || f.route == sp.Route)
}

func newShard(c *Cache) *shard {
	return &shard{
		c:          c,
		inbox:      make(chan func(*shard), 64),
		entries:    map[uint64]*record{},
		exact:      map[[32]byte]uint64{},
		graphs:     map[graphKey]graph.Index{},
		tombstones: map[uint64]struct{}{},
	}
}

func (s *shard) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case op := <-s.inbox:
			op(s)
		}
	}
}

func (s *shard) now() time.Time { return s.c.opts.Now() }

func live(r *record, now time.Time) bool { return r.e.ExpiresAt.After(now) }

// view is the copy of r handed out.
func view(r *record) *Entry {
	cp := *r.e
	cp.Hits = r.hits
	return &cp
}

// lookupExact finds h; the Space is checked too, so that a caller mixing
// up hashes still never crosses Spaces.
func (s *shard) lookupExact(sp Space, h [32]byte) *Entry {
	id, ok := s.exact[h]
	if !ok {
		return nil
	}
	r := s.entries[id]
	if r.e.Space != sp || !live(r, s.now()) {
		return nil
	}
	r.hits++
	return view(r)
}

// nearest returns the live entries among the Candidates nearest to vec in
// sp's graph that lie within threshold, nearest first.
func (s *shard) nearest(sp Space, vec []float32, threshold float32) []candidate {
	g := s.graphs[graphKey{sp, len(vec)}]
	if g == nil {
		return nil
	}
	now := s.now()
	var out []candidate
	for _, m := range g.Search(vec, s.c.opts.Candidates) {
		r := s.entries[m.ID]
		if !(m.Distance <= threshold) || r == nil || !live(r, now) { // NaN is no match
			continue
		}
		out = append(out, candidate{id: m.ID, e: view(r), d: m.Distance})
	}
	return out
}

func (s *shard) hit(id uint64) {
	if r, ok := s.entries[id]; ok {
		r.hits++
	}
}

// add inserts e (owned by the shard from now on) under id and returns the
// IDs whose disk keys are now stale: entries it replaced, or e's own when e
// lost. Store (neither replica nor loaded) always wins; replicated and
// loaded entries are idempotent on id and, against an entry with the same
// Exact hash, the later (CreatedAt, id) wins.
func (s *shard) add(id uint64, e *Entry, replica, loaded bool) (stale []string) {
	if loaded {
		if _, ok := s.tombstones[id]; ok {
			return []string{e.ID}
		}
		for _, f := range s.purges {
			if f.match(e.Space) && !e.CreatedAt.After(f.before) {
				return []string{e.ID}
			}
		}
	}
	if _, ok := s.entries[id]; ok {
		if replica || loaded {
			return nil
		}
		s.remove(id) // same key, rewritten by the caller: not stale
	}
	if e.Exact != ([32]byte{}) {
		if old, ok := s.exact[e.Exact]; ok {
			o := s.entries[old].e
			if (replica || loaded) && cmp.Or(e.CreatedAt.Compare(o.CreatedAt), cmp.Compare(id, old)) < 0 {
				return []string{e.ID}
			}
			s.remove(old)
			stale = append(stale, o.ID)
		}
		s.exact[e.Exact] = id
	}
	r := &record{id: id, e: e, hits: e.Hits, size: e.size()}
	s.entries[id] = r
	if len(e.Vector) > 0 {
		r.dim = len(e.Vector)
		k := graphKey{e.Space, r.dim}
		g := s.graphs[k]
		if g == nil {
			g = s.c.opts.NewGraph()
			s.graphs[k] = g
		}
		g.Add(id, e.Vector)
		// The graph copied the vector; a second copy per entry would double
		// the cache's largest cost. Disk keeps it for restarts and peers.
		slim := *e
		slim.Vector = nil
		r.e = &slim
	}
	heap.Push(&s.expiry, r)
	s.c.entries.Add(1)
	s.c.bytes.Add(r.size)
	return stale
}

// remove takes id out of the maps, its graph and the heap; it returns the
// removed entry or nil.
func (s *shard) remove(id uint64) *Entry {
	r, ok := s.entries[id]
	if !ok {
		return nil
	}
	delete(s.entries, id)
	if cur, ok := s.exact[r.e.Exact]; ok && cur == id {
		delete(s.exact, r.e.Exact)
	}
	if r.dim > 0 {
		k := graphKey{r.e.Space, r.dim}
		if g := s.graphs[k]; g != nil {
			g.Delete(id)
			if g.Len() == 0 {
				delete(s.graphs, k)
			}
		}
	}
	heap.Remove(&s.expiry, r.at)
	s.c.entries.Add(-1)
	s.c.bytes.Add(-r.size)
	return view(r)
}

// soonest is the shard's next entry to evict.
func (s *shard) soonest() (expiry, bool) {
	if len(s.expiry) == 0 {
		return expiry{}, false
	}
	r := s.expiry[0]
	return expiry{r.e.ExpiresAt, r.id}, true
}

// expire removes the entries expired at now and returns their IDs.
func (s *shard) expire(now time.Time) []string {
	var ids []string
	for len(s.expiry) > 0 && !live(s.expiry[0], now) {
		ids = append(ids, s.remove(s.expiry[0].id).ID)
	}
	return ids
}

func (s *shard) get(id uint64) *Entry {
	r, ok := s.entries[id]
	if !ok || !live(r, s.now()) {
		return nil
	}
	return view(r)
}

func (s *shard) delete(id uint64) bool {
	if !s.c.Ready() {
		s.tombstones[id] = struct{}{}
	}
	return s.remove(id) != nil
}

func (s *shard) purge(f filter) []string {
	if !s.c.Ready() {
		s.purges = append(s.purges, f)
	}
	var ids []string
	for id, r := range s.entries {
		if f.match(r.e.Space) {
			ids = append(ids, s.remove(id).ID)
		}
	}
	return ids
}

// loaded forgets the deletes and purges remembered while loading.
func (s *shard) loaded() {
	clear(s.tombstones)
	s.purges = nil
}

// list returns the first limit live entries matching f with id > after (when
// hasAfter), in id order, and whether more follow.
func (s *shard) list(f filter, after uint64, hasAfter bool, limit int) ([]*Entry, bool) {
	now := s.now()
	var rs []*record
	for id, r := range s.entries {
		if (!hasAfter || id > after) && f.match(r.e.Space) && live(r, now) {
			rs = append(rs, r)
		}
	}
	slices.SortFunc(rs, func(a, b *record) int { return cmp.Compare(a.id, b.id) })
	more := len(rs) > limit
	rs = rs[:min(limit, len(rs))]
	out := make([]*Entry, len(rs))
	for i, r := range rs {
		out[i] = view(r)
	}
	return out, more
}

// search returns the k nearest live entries to vec in sp (every Shape of
// sp's partition and route when sp.Shape is "").
func (s *shard) search(sp Space, vec []float32, k int) []SearchMatch {
	now := s.now()
	var out []SearchMatch
	for key, g := range s.graphs {
		if key.dim != len(vec) || key.sp.Partition != sp.Partition || key.sp.Route != sp.Route ||
			(sp.Shape != "" && key.sp.Shape != sp.Shape) {
			continue
		}
		for _, m := range g.Search(vec, k) {
			if r := s.entries[m.ID]; r != nil && live(r, now) {
				out = append(out, SearchMatch{ID: r.e.ID, Distance: m.Distance, Prompt: r.e.Prompt})
			}
		}
	}
	slices.SortFunc(out, func(a, b SearchMatch) int {
		return cmp.Or(cmp.Compare(a.Distance, b.Distance), cmp.Compare(a.ID, b.ID))
	})
	return out[:min(k, len(out))]
}

// expiryHeap is a min-heap of records by expiry; records know their index.
type expiryHeap []*record

func (h expiryHeap) Len() int { return len(h) }
func (h expiryHeap) Less(i, j int) bool {
	return expiry{h[i].e.ExpiresAt, h[i].id}.before(expiry{h[j].e.ExpiresAt, h[j].id})
}
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].at, h[j].at = i, j
}
func (h *expiryHeap) Push(x any) {
	r := x.(*record)
	r.at = len(*h)
	*h = append(*h, r)
}
func (h *expiryHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return r
}
