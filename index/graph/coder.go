package graph

import (
	"cmp"
	"fmt"
	"math/rand"
	"slices"

	"github.com/coder/hnsw"
)

// Coder adapts github.com/coder/hnsw v0.6.1 to Index. It exists to be
// selectable and to be measured against in `llmgate bench cache`; HNSW is the
// default because v0.6.1 searches greedily (its EfSearch has no effect and
// its result heap drops the wrong element), so its top-1 recall on
// near-duplicate queries is poor (about 0.25 at 20k entries; see the bench).
//
// The adapter never calls the library in a way known to panic or corrupt it:
//   - every insert goes under a fresh internal key that is never reused
//     (v0.6.1 panics with "node not added" when a key is added twice);
//   - deletes are tombstones filtered out of results, and when tombstones
//     pass a quarter of the graph a fresh graph is built from the live
//     vectors (its own Delete leaves dangling edges and panics under churn);
//   - an index with nothing live holds no graph at all (searching a graph
//     whose nodes were all deleted panics);
//   - distances are this package's Distance (1 - dot): the library's cosine
//     gives NaN for zero vectors;
//   - vector lengths are checked before the library asserts (and panics);
//   - vectors are copied, since the library keeps the caller's slice, and
//     results are sorted, since the library does not sort them.
//
// Not deterministic even with a Seed: the library enters each layer through
// whichever node Go's map iteration yields first. Not safe for concurrent
// use; the owner serialises every call.
type Coder struct {
	p     Params
	g     *hnsw.Graph[uint64] // nil when nothing is live
	dim   int
	next  uint64            // next internal key
	key   map[uint64]uint64 // external id → internal key (live only)
	ext   map[uint64]uint64 // internal key → external id (live only)
	tombs int               // internal keys in g that are not live
}

// NewCoder returns an empty adapter. p.M and p.EfSearch go to the library
// (EfConstruction has no counterpart there); p.Seed seeds its level
// generator.
func NewCoder(p Params) *Coder {
	return &Coder{p: p.withDefaults(), key: map[uint64]uint64{}, ext: map[uint64]uint64{}}
}

func (c *Coder) newGraph() *hnsw.Graph[uint64] {
	g := hnsw.NewGraph[uint64]()
	g.M = c.p.M
	g.EfSearch = c.p.EfSearch
	g.Distance = Distance
	g.Rng = rand.New(rand.NewSource(c.p.Seed))
	return g
}

// Len implements Index.
func (c *Coder) Len() int { return len(c.key) }

// Add implements Index. It panics on an empty vector or one whose length
// differs from the vectors held, like HNSW.Add.
func (c *Coder) Add(id uint64, vec []float32) {
	if len(vec) == 0 {
		panic("graph: Coder.Add of an empty vector")
	}
	if c.g == nil {
		c.g, c.dim = c.newGraph(), len(vec)
	} else if len(vec) != c.dim {
		panic(fmt.Sprintf("graph: Coder.Add of a %d-dim vector into a %d-dim index", len(vec), c.dim))
	}
	if old, ok := c.key[id]; ok {
		delete(c.ext, old)
		c.tombs++
	}
	k := c.next
	c.next++
	c.key[id], c.ext[k] = k, id
	c.g.Add(hnsw.MakeNode(k, slices.Clone(vec)))
	c.maybeRebuild()
}

// Delete implements Index.
func (c *Coder) Delete(id uint64) {
	k, ok := c.key[id]
	if !ok {
		return
	}
	delete(c.key, id)
	delete(c.ext, k)
	c.tombs++
	c.maybeRebuild()
}

// Vector implements Index.
func (c *Coder) Vector(id uint64) ([]float32, bool) {
	k, ok := c.key[id]
	if !ok {
		return nil, false
	}
	v, ok := c.g.Lookup(k)
	return slices.Clone(v), ok
}

// Search implements Index. It asks the library for k plus (some of) the
// tombstones, drops the tombstones and sorts what is left.
func (c *Coder) Search(q []float32, k int) []Match {
	if k <= 0 || c.g == nil || len(c.key) == 0 || len(q) != c.dim {
		return nil
	}
	want := k + min(c.tombs, 2*k+16)
	var out []Match
	for _, n := range c.g.Search(q, want) {
		if id, ok := c.ext[n.Key]; ok {
			out = append(out, Match{ID: id, Distance: Distance(q, n.Value)})
		}
	}
	slices.SortFunc(out, func(a, b Match) int {
		return cmp.Or(cmp.Compare(a.Distance, b.Distance), cmp.Compare(a.ID, b.ID))
	})
	if len(out) > k {
		out = out[:k]
	}
	return out
}

// maybeRebuild drops the graph when nothing is live and rebuilds it from the
// live vectors, in insertion order, when tombstones pass a quarter of it.
func (c *Coder) maybeRebuild() {
	switch {
	case len(c.key) == 0:
		c.g, c.dim, c.tombs = nil, 0, 0
		clear(c.ext)
	case c.tombs*4 > len(c.key)+c.tombs:
		old := c.g
		keys := make([]uint64, 0, len(c.ext))
		for k := range c.ext {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		c.g = c.newGraph()
		for _, k := range keys {
			// Keys are fresh to the new graph, so they can be kept.
			vec, _ := old.Lookup(k)
			c.g.Add(hnsw.MakeNode(k, vec))
		}
		c.tombs = 0
	}
}
