package graph

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"unsafe"
)

// maxLevel caps node levels. With M ≥ 2 a level above 16 has probability
// below 2^-16 per node at M = 2 and is astronomically rare at M = 16; the cap
// only guards the uint8 level field against a pathological random draw.
const maxLevel = 16

// HNSW is a hierarchical navigable small world graph (Malkov & Yashunin,
// "Efficient and robust approximate nearest neighbor search using
// Hierarchical Navigable Small World graphs", 2016/2018).
//
// Layout: a node lives in an internal slot (a uint32 below 2^30: the beam
// keeps two flags above a slot). Slot s owns row s of the vector slab vecs,
// its int8 copy (row s of q8) with its scale qs[s] (unless
// Params.Float32Walk; see quant.go), its external id ids[s], its level, a
// fixed block of 1+2M links on layer 0 (count first; row s of the slab
// links0, which leaves no growth slack) and, only when its level is above 0,
// a block of level*(1+M) links in the small upper slab.
// External ids map to slots through one map. This keeps the per-entry
// overhead beyond the vector itself near 8 bytes per layer-0 link, instead of
// the pointers and per-node maps of a node-object design.
//
// Invariants:
//   - every live id has exactly one live slot, and slot[ids[s]] == s for it;
//   - links point to existing slots (live or tombstoned), never to the node
//     itself, without duplicates, at most M per upper layer and 2M on layer 0;
//   - entry is a slot whose level is top; it may be tombstoned: tombstones
//     stay in the graph and are walked through, so the graph stays connected,
//     but they are never returned;
//   - tombstones are at most a quarter of the slots after every call: past
//     that the graph is rebuilt from the live slots (see compact), and an
//     index whose last live entry is deleted is emptied at once.
//
// Determinism: levels come from a PCG generator seeded with Params.Seed, and
// nothing iterates a map, so the same calls give the same graph and results.
// Searches count among the calls: an Add of a vector searched recently
// starts from that search's distances (seeds.go).
// The int8 walk's sums are exact integers, the same with either kernel; the
// float32 walk (and Search's re-rank) holds only on CPUs that run the same
// Dot kernel, the kernels rounding differently.
//
// Not safe for concurrent use, not even Search with Search: searches share
// scratch buffers. The owner (one actor) serialises every call.
type HNSW struct {
	p   Params
	m0  int     // link capacity on layer 0: 2*M
	ml  float64 // level multiplier 1/ln(M)
	rng *rand.Rand

	dim    int           // vector length, fixed by the first Add of an empty index
	vecs   slab[float32] // slot s: row s
	q8     slab[int8]    // slot s: row s, its vector quantized (see quant.go)
	qs     []float32     // slot → scale of its int8 copy
	ids    []uint64      // slot → external id
	levels []uint8       // slot → top layer of the node
	links0 slab[uint32]  // slot s: row s, its count first, then m0 slots
	upOff  []uint32      // slot → offset in up of its layer-1 block (if level > 0)
	up     []uint32      // blocks of 1+M per upper layer, count first
	dead   []uint64      // bitset of tombstoned slots
	slot   map[uint64]uint32
	tombs  int
	entry  uint32
	top    int    // level of entry; -1 when the graph is empty
	gen    uint32 // bumped when slots are renumbered (compact, reset)

	// seeded remembers the beams of recent searches for the inserts of the
	// same vectors (see seeds.go).
	seeded    seedRing
	seedItems []item
	record    bool // searchLayer appends every distance it computes to visited
	visited   []item

	// Search scratch, reused so that a search allocates only its result.
	mark  []uint32 // visit epoch per slot
	epoch uint32
	beam  beam
	found []item
	pick  []item
	prune []item    // candidates of link's re-selection
	qq    []int8    // the query, quantized
	next  []uint32  // searchLayer: the unvisited neighbours of one node
	ptrs  []*int8   // their int8 vectors
	dots  []int32   // their dot products with the query
	dists []float32 // their distances to it
}

// item is a slot with its distance to the current query (or base node).
type item struct {
	d float32
	s uint32
}

// NewHNSW returns an empty graph. Zero fields of p take their defaults.
func NewHNSW(p Params) *HNSW {
	p = p.withDefaults()
	seed := uint64(p.Seed)
	return &HNSW{
		p:    p,
		m0:   2 * p.M,
		ml:   1 / math.Log(float64(p.M)),
		rng:  rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		slot: map[uint64]uint32{},
		top:  -1,
	}
}

// Len implements Index.
func (h *HNSW) Len() int { return len(h.slot) }

// Add implements Index. A re-added id is tombstoned under its old slot and
// inserted afresh, so a stale vector can never be found under the id and no
// link is rewritten in place. vec is copied. Add panics when vec is empty or
// its length differs from the vectors already held: a caller bug that would
// otherwise silently corrupt distances.
func (h *HNSW) Add(id uint64, vec []float32) {
	if len(vec) == 0 {
		panic("graph: HNSW.Add of an empty vector")
	}
	if len(h.ids) == 0 {
		h.dim = len(vec)
	} else if len(vec) != h.dim {
		panic(fmt.Sprintf("graph: HNSW.Add of a %d-dim vector into a %d-dim index", len(vec), h.dim))
	}
	if old, ok := h.slot[id]; ok {
		h.kill(old)
	}
	s := h.newSlot(id, vec, h.randomLevel())
	h.insert(s, vecHash(vec))
	h.maybeCompact()
}

// Delete implements Index. The slot stays in the graph as a tombstone.
func (h *HNSW) Delete(id uint64) {
	s, ok := h.slot[id]
	if !ok {
		return
	}
	delete(h.slot, id)
	h.kill(s)
	h.maybeCompact()
}

// Vector implements Index.
func (h *HNSW) Vector(id uint64) ([]float32, bool) {
	s, ok := h.slot[id]
	if !ok {
		return nil, false
	}
	return slices.Clone(h.vec(s)), true
}

// Search implements Index. It descends the upper layers greedily (a beam of
// one) and searches layer 0 with a beam of max(EfSearch, k). A query whose
// length differs from the index's vectors matches nothing.
func (h *HNSW) Search(q []float32, k int) []Match {
	if k <= 0 || len(h.slot) == 0 || len(q) != h.dim {
		return nil
	}
	qv := qvec{f: q}
	if !h.p.Float32Walk {
		h.qq = slices.Grow(h.qq[:0], h.dim)[:h.dim]
		qv = qvec{q: h.qq, scale: quantize(h.qq, q)}
	}
	ep := h.descend(qv, 0)
	h.record, h.visited = true, h.visited[:0]
	found := h.searchLayer(qv, []item{ep}, max(h.p.EfSearch, k), 0, true)
	h.record = false
	h.seeded.remember(vecHash(q), h.gen, h.visited, seedCapacity(len(h.ids)))
	if !h.p.Float32Walk {
		// The walk's distances are approximate: re-rank the beam by the
		// float32 vectors, so that what is returned is exact and in exact
		// order. Each vector (1.5 KB at 384-d) is in no cache in a large graph:
		// the next ones load while this one is compared.
		const ahead = 2
		for _, it := range found[:min(ahead, len(found))] {
			h.prefetchVec(it.s)
		}
		for i, it := range found {
			if i+ahead < len(found) {
				h.prefetchVec(found[i+ahead].s)
			}
			found[i].d = h.dist(q, it.s)
		}
		sortNearlySorted(found)
	}
	out := make([]Match, 0, min(k, len(found)))
	for _, it := range found[:min(k, len(found))] {
		out = append(out, Match{ID: h.ids[it.s], Distance: it.d})
	}
	return out
}

// kill tombstones slot s. The caller has already unmapped or remapped its id.
func (h *HNSW) kill(s uint32) {
	h.dead[s/64] |= 1 << (s % 64)
	h.tombs++
}

func (h *HNSW) isDead(s uint32) bool { return h.dead[s/64]&(1<<(s%64)) != 0 }

func (h *HNSW) vec(s uint32) []float32 { return h.vecs.row(s) }

// prefetchVec asks for slot s's float32 vector without waiting for it.
func (h *HNSW) prefetchVec(s uint32) {
	v := h.vec(s)
	prefetch(unsafe.Pointer(&v[0]), uintptr(len(v))*4)
}

// prefetchWalk asks for slot s's vector as the walk compares it (its int8
// copy, or with Float32Walk the vector) without waiting for it.
func (h *HNSW) prefetchWalk(s uint32) {
	if h.p.Float32Walk {
		h.prefetchVec(s)
		return
	}
	r := h.q8.row(s)
	prefetch(unsafe.Pointer(&r[0]), uintptr(len(r)))
}

// dist is the cosine distance of q to slot s. A zero vector on either side
// has dot product 0 and so distance 1, never NaN.
func (h *HNSW) dist(q []float32, s uint32) float32 { return 1 - Dot(q, h.vec(s)) }

// qdists returns qdist(q, s) for each of slots, in a scratch slice valid
// until the next call: the same values, computed in one batch.
func (h *HNSW) qdists(q qvec, slots []uint32) []float32 {
	ds := slices.Grow(h.dists[:0], len(slots))[:len(slots)]
	h.dists = ds
	if h.p.Float32Walk {
		for i, s := range slots {
			ds[i] = h.dist(q.f, s)
		}
		return ds
	}
	dots := slices.Grow(h.dots[:0], len(slots))[:len(slots)]
	h.dots = dots
	ptrs := slices.Grow(h.ptrs[:0], len(slots))[:len(slots)]
	h.ptrs = ptrs
	for i, s := range slots {
		ptrs[i] = &h.q8.row(s)[0]
	}
	dotsInt8(q.q, ptrs, dots)
	clear(ptrs) // hold no pointer into a chunk a compaction may free
	for i, s := range slots {
		ds[i] = 1 - q.scale*h.qs[s]*float32(dots[i]) // as qdist
	}
	return ds
}

// qvec is a vector as the graph walk sees it: quantized (v ≈ scale*q), or
// with Params.Float32Walk the float32 vector f itself.
type qvec struct {
	q     []int8
	scale float32
	f     []float32
}

func (h *HNSW) qvecOf(s uint32) qvec {
	if h.p.Float32Walk {
		return qvec{f: h.vec(s)}
	}
	return qvec{q: h.q8.row(s), scale: h.qs[s]}
}

// qdist is the graph walk's distance from q to slot s: from their int8
// copies, within about 0.01 of dist; with Float32Walk, dist itself.
func (h *HNSW) qdist(q qvec, s uint32) float32 {
	if h.p.Float32Walk {
		return h.dist(q.f, s)
	}
	return 1 - q.scale*h.qs[s]*float32(dotInt8(q.q, h.q8.row(s)))
}

// links returns the link block of slot s on layer l: count first, then the
// capacity (2M on layer 0, M above).
func (h *HNSW) links(s uint32, l int) []uint32 {
	if l == 0 {
		return h.links0.row(s)
	}
	w := h.p.M + 1
	off := int(h.upOff[s]) + (l-1)*w
	return h.up[off : off+w]
}

func (h *HNSW) randomLevel() int {
	// 1-Float64() is in (0, 1], so the logarithm is finite.
	l := int(-math.Log(1-h.rng.Float64()) * h.ml)
	return min(l, maxLevel)
}

// newSlot appends a node without links and maps id to it.
func (h *HNSW) newSlot(id uint64, vec []float32, level int) uint32 {
	if len(h.ids) >= beamSlots {
		panic("graph: HNSW is full (2^30 slots)") // the beam keeps flags above them
	}
	s := uint32(len(h.ids))
	if s == 0 {
		h.vecs = slab[float32]{width: len(vec)}
		h.q8 = slab[int8]{width: len(vec)}
		h.links0 = slab[uint32]{width: h.m0 + 1}
	}
	copy(h.vecs.add(), vec)
	if !h.p.Float32Walk {
		h.qs = append(h.qs, quantize(h.q8.add(), vec))
	}
	h.ids = append(h.ids, id)
	h.levels = append(h.levels, uint8(level))
	h.links0.add()
	h.upOff = append(h.upOff, 0)
	h.mark = append(h.mark, 0)
	if int(s)/64 >= len(h.dead) {
		h.dead = append(h.dead, 0)
	}
	h.dead[s/64] &^= 1 << (s % 64)
	h.allocUpper(s)
	h.slot[id] = s
	return s
}

func (h *HNSW) allocUpper(s uint32) {
	if h.levels[s] == 0 {
		return
	}
	h.upOff[s] = uint32(len(h.up))
	h.up = append(h.up, make([]uint32, int(h.levels[s])*(h.p.M+1))...)
}

// insert links slot s into the graph (the paper's Algorithm 1). hash is
// vecHash of its vector, whose remembered search beam, if any, seeds the
// layer-0 search (seeds.go); 0 when there is none to look for.
func (h *HNSW) insert(s uint32, hash uint64) {
	level := int(h.levels[s])
	if h.top < 0 {
		h.entry, h.top = s, level
		return
	}
	q := h.qvecOf(s)
	var seeds []item
	ef0 := h.p.EfConstruction // the layer-0 beam
	if hash != 0 {
		var easy bool
		if seeds, easy = h.seeds(hash, q); easy {
			ef0 = h.p.easyBeam()
		}
	}
	var eps []item
	if len(seeds) > 0 && level == 0 {
		eps = seeds // already near the goal: no descent
	} else {
		eps = []item{h.descend(q, level+1)}
	}
	for l := min(level, h.top); l >= 0; l-- {
		if l == 0 && level > 0 {
			eps = append(eps, seeds...) // eps is h.found, refilled below
		}
		// Tombstones count in the construction beam (they are walked
		// through), but links go to live nodes when there are any: a link
		// to a tombstone is dropped at the next compaction.
		ef := h.p.EfConstruction
		if l == 0 {
			ef = ef0
		}
		found := h.searchLayer(q, eps, ef, l, false)
		h.found = append(h.found[:0], found...)
		h.pick = h.pick[:0]
		for _, it := range h.found {
			if !h.isDead(it.s) {
				h.pick = append(h.pick, it)
			}
		}
		if len(h.pick) == 0 {
			h.pick = append(h.pick, h.found...)
		}
		sel := h.selectNeighbours(h.pick, h.p.M)
		b := h.links(s, l)
		b[0] = uint32(len(sel))
		for i, it := range sel {
			b[1+i] = it.s
		}
		for _, it := range sel {
			h.link(it.s, s, it.d, l)
		}
		eps = h.found
	}
	if level > h.top {
		h.entry, h.top = s, level
	}
}

// descend walks greedily (beam of one) from the entry point down to layer
// stop, tombstones included, and returns the closest node found.
func (h *HNSW) descend(q qvec, stop int) item {
	cur := item{h.qdist(q, h.entry), h.entry}
	for l := h.top; l >= stop; l-- {
		for changed := true; changed; {
			changed = false
			b := h.links(cur.s, l)
			ns := b[1 : 1+b[0]]
			for i, d := range h.qdists(q, ns) { // one batch: see dotsInt8
				if d < cur.d {
					cur, changed = item{d, ns[i]}, true
				}
			}
		}
	}
	return cur
}

// searchLayer is the paper's Algorithm 2: a best-first beam search on layer l
// from eps, keeping the ef nearest nodes found (see beam). With liveOnly,
// tombstones are expanded (they keep the graph navigable) but not kept as
// results. It returns the results nearest first, in a scratch slice valid
// until the next search.
func (h *HNSW) searchLayer(q qvec, eps []item, ef, l int, liveOnly bool) []item {
	h.epoch++
	if h.epoch == 0 { // wrapped: old marks could collide with new epochs
		clear(h.mark)
		h.epoch = 1
	}
	bm := &h.beam
	bm.reset(ef)
	for _, ep := range eps {
		if h.mark[ep.s] == h.epoch {
			continue
		}
		h.mark[ep.s] = h.epoch
		if h.record {
			h.visited = append(h.visited, ep)
		}
		// An entry point no nearer than ef others is only marked: the
		// farthest result only comes nearer, so it could never be expanded
		// nor kept. A seeded insert (seeds.go) passes hundreds.
		if !bm.refuses(ep.d) {
			bm.add(ep, liveOnly && h.isDead(ep.s))
		}
	}
	for {
		c, ok := bm.take()
		if !ok {
			break
		}
		b := h.links(c.s, l)
		if l == 0 {
			// The node expanded after c is most often the one nearest
			// now: its link row (in no cache in a large graph) loads
			// while c's neighbours' distances are computed.
			if p, ok := bm.peek(); ok {
				r := h.links0.row(p.s)
				prefetch(unsafe.Pointer(&r[0]), uintptr(len(r))*4)
			}
		}
		next := h.next[:0]
		for _, n := range b[1 : 1+b[0]] {
			if h.mark[n] != h.epoch {
				h.mark[n] = h.epoch
				next = append(next, n)
			}
		}
		h.next = next
		ds := h.qdists(q, next)
		for i, n := range next {
			d := ds[i]
			if h.record {
				h.visited = append(h.visited, item{d, n})
			}
			if !bm.refuses(d) {
				bm.add(item{d, n}, liveOnly && h.isDead(n))
			}
		}
	}
	h.pick = bm.results(h.pick[:0])
	return h.pick
}

// selectNeighbours is the paper's Algorithm 4 without extending or keeping
// pruned candidates (as hnswlib does): walking the candidates nearest first,
// keep one only if it is closer to the base than to every node already kept.
// This spreads links across directions instead of spending them all inside
// one cluster, which is what keeps clustered data navigable. cands must be
// sorted nearest first; the result reuses its backing array.
//
// Whether a candidate is kept does not depend on the order in which the kept
// nodes are compared with it, so the one that rejected the previous
// candidate is compared first: candidates come nearest first, and those in
// one direction are mostly rejected by the same kept node. On templated
// prompts an insert computes 269 distances here instead of 306, and keeps
// the same nodes.
func (h *HNSW) selectNeighbours(cands []item, m int) []item {
	if len(cands) <= m {
		return cands
	}
	kept := cands[:0]
	last := 0 // the kept node that rejected the last candidate rejected
	for i, c := range cands {
		if len(kept) >= m {
			break
		}
		// The next candidate's vector (in no nearer cache than L2 after
		// the search that found it) loads while this one is compared.
		if i+1 < len(cands) {
			h.prefetchWalk(cands[i+1].s)
		}
		cv := h.qvecOf(c.s)
		// !(x < d), not x >= d: a NaN distance rejects nothing, as in the
		// loop below.
		good := last >= len(kept) || !(h.qdist(cv, kept[last].s) < c.d)
		for j := 0; good && j < len(kept); j++ {
			if j != last && h.qdist(cv, kept[j].s) < c.d {
				good, last = false, j
			}
		}
		if good {
			kept = append(kept, c)
		}
	}
	return kept
}

// link adds the edge from → to on layer l, d being their distance. A full
// list is re-selected with the heuristic among its live links plus the new
// one, so a node's links stay diverse and tombstones lose their links first.
func (h *HNSW) link(from, to uint32, d float32, l int) {
	b := h.links(from, l)
	capacity := len(b) - 1
	n := int(b[0])
	if n < capacity {
		b[1+n] = to
		b[0]++
		return
	}
	live := h.next[:0] // free: searchLayer is done with it
	for _, o := range b[1 : 1+n] {
		if !h.isDead(o) {
			live = append(live, o)
		}
	}
	h.next = live
	cands := append(h.prune[:0], item{d, to})
	for i, d := range h.qdists(h.qvecOf(from), live) {
		cands = append(cands, item{d, live[i]})
	}
	slices.SortFunc(cands, cmpItem)
	h.prune = cands
	sel := h.selectNeighbours(cands, capacity)
	b[0] = uint32(len(sel))
	for i, it := range sel {
		b[1+i] = it.s
	}
}

// sortNearlySorted sorts items by cmpItem, by insertion: the re-ranked beam
// is in the order of the int8 distances, which the exact ones change only a
// little, so each item moves a few places at most. The result is the one
// slices.SortFunc with cmpItem gives (a total order: slots are unique).
func sortNearlySorted(a []item) {
	for i := 1; i < len(a); i++ {
		x := a[i]
		j := i
		for ; j > 0 && (a[j-1].d > x.d || a[j-1].d == x.d && a[j-1].s > x.s); j-- {
			a[j] = a[j-1]
		}
		a[j] = x
	}
}

func cmpItem(a, b item) int {
	switch {
	case a.d < b.d:
		return -1
	case a.d > b.d:
		return 1
	}
	return int(a.s) - int(b.s)
}

// maybeCompact empties the index when nothing is live, and rebuilds it from
// the live slots when tombstones pass a quarter of all slots. Tombstones cost
// memory and search time (they are walked but not returned) and their links
// age as the graph changes around them; the quarter bounds both, and a
// rebuild after N/3 deletes of N live entries costs about three inserts per
// delete, amortised.
func (h *HNSW) maybeCompact() {
	switch {
	case len(h.slot) == 0:
		h.reset()
	case h.tombs*4 > len(h.ids):
		h.compact()
	}
}

// reset drops every slot but keeps the parameters and the random stream.
func (h *HNSW) reset() {
	h.dim, h.tombs, h.top, h.entry, h.epoch = 0, 0, -1, 0, 0
	h.gen++ // remembered searches name slots that no longer exist
	h.ids, h.levels, h.upOff, h.up, h.dead, h.mark = nil, nil, nil, nil, nil, nil
	h.vecs, h.q8, h.links0, h.qs = slab[float32]{}, slab[int8]{}, slab[uint32]{}, nil
	h.slot = map[uint64]uint32{}
}

// compact moves the live slots down over the tombstones, in slot order, and
// re-inserts them into an empty graph with their old levels. It works in
// place (a slot only ever moves to a lower index), so it needs no second
// copy of the vectors; the pause is that of building the live set anew, which
// the owner should bound by keeping shards small enough.
func (h *HNSW) compact() {
	n := uint32(0)
	for s := range uint32(len(h.ids)) {
		if h.isDead(s) {
			continue
		}
		if n != s {
			copy(h.vec(n), h.vec(s))
			if !h.p.Float32Walk {
				copy(h.q8.row(n), h.q8.row(s))
				h.qs[n] = h.qs[s]
			}
			h.ids[n], h.levels[n] = h.ids[s], h.levels[s]
			h.slot[h.ids[n]] = n
		}
		n++
	}
	h.vecs.truncate(int(n))
	if !h.p.Float32Walk {
		h.q8.truncate(int(n))
		h.qs = h.qs[:n]
	}
	h.ids, h.levels = h.ids[:n], h.levels[:n]
	h.links0.truncate(int(n))
	for _, c := range h.links0.chunks {
		clear(c)
	}
	h.upOff, h.mark = h.upOff[:n], h.mark[:n]
	clear(h.mark)
	h.epoch = 0
	h.dead = h.dead[:(n+63)/64]
	clear(h.dead)
	h.up = h.up[:0]
	h.tombs, h.top = 0, -1
	h.gen++ // remembered searches name slots by their old numbers
	for s := range n {
		h.allocUpper(s)
		h.insert(s, 0)
	}
}
