package graph

// Params configures HNSW and the Coder adapter. Zero fields take the defaults
// of DefaultParams, so Params{} is a good configuration.
type Params struct {
	// M is the number of links a node keeps on each upper layer; layer 0,
	// where every search ends, keeps 2*M. More links raise recall and memory
	// (4 bytes per link). Default 16.
	M int
	// EfConstruction is the beam width of the search that finds a new node's
	// neighbours. A wider beam builds a better graph, more slowly. Default
	// 100: 200 gave the same recall at every EfSearch measured, building
	// about a third slower. An Add seeded by its own Search whose
	// neighbourhood is easy uses 16/25 of it on layer 0 (see easyContrast).
	// The Coder adapter ignores it (coder/hnsw inserts with EfSearch).
	EfConstruction int
	// EfSearch is the beam width of Search on layer 0 (raised to k when k is
	// larger): recall against latency, each doubling about doubling the
	// latency. Default 32, from `llmgate bench cache` on 384-d near-duplicate
	// queries at 100k entries: the local embedder's vectors of prompts give
	// top-1 recall 0.999 at 32 and at 64, vectors near a 24-d subspace 1.000
	// from 16 up. Uniformly random vectors, which no embedder produces, are
	// the worst case: 0.72 at 32, 0.88 at 64, 0.99 at 256. coder/hnsw v0.6.1
	// ignores it in effect.
	EfSearch int
	// Float32Walk walks the graph on the float32 vectors themselves instead
	// of int8 copies of them (see quant.go). It saves the copies, one byte
	// per dimension per entry (384 B for the local embedder), and makes
	// inserts and look-ups slower: a cache whose every request misses spends
	// about a third more CPU per request. Results are exact either way: an
	// int8 walk re-ranks its final beam by the float32 vectors. Default
	// false.
	Float32Walk bool
	// Seed seeds the random levels of new nodes: the same Seed and the same
	// sequence of calls build the same graph and give the same results.
	Seed int64
}

// DefaultParams returns M 16, EfConstruction 100, EfSearch 32, Seed 0.
func DefaultParams() Params {
	return Params{M: 16, EfConstruction: 100, EfSearch: 32}
}

func (p Params) withDefaults() Params {
	def := DefaultParams()
	if p.M <= 0 {
		p.M = def.M
	}
	// Fewer than 2 links per node cannot form a navigable graph, and level
	// generation divides by ln(M).
	p.M = max(p.M, 2)
	if p.EfConstruction <= 0 {
		p.EfConstruction = def.EfConstruction
	}
	p.EfConstruction = max(p.EfConstruction, p.M)
	if p.EfSearch <= 0 {
		p.EfSearch = def.EfSearch
	}
	return p
}
