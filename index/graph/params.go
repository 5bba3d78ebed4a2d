package graph

// Params configures HNSW and the Coder adapter. Zero fields take the defaults
// of DefaultParams, so Params{} is a good configuration.
type Params struct {
	// M is the number of links a node keeps on each upper layer; layer 0,
	// where every search ends, keeps 2*M. More links raise recall and memory
	// (4 bytes per link). Default 16.
	M int
	// EfConstruction is the beam width of the search that finds a new node's
	// neighbours. A wider beam builds a better graph, more slowly. Default 200.
	// The Coder adapter ignores it (coder/hnsw inserts with EfSearch).
	EfConstruction int
	// EfSearch is the beam width of Search on layer 0 (raised to k when k is
	// larger): recall against latency. Default 64, from measurement on 384-d
	// near-duplicate queries: vectors near a 24-d subspace (like real
	// embeddings) give top-1 recall 1.000 at 100k entries from EfSearch 16
	// up; uniformly random vectors, the worst case, give ≥ 0.99 up to 20k
	// entries but 0.88 at 100k (0.97 at 128, 0.99 at 256, each doubling
	// about doubling latency). coder/hnsw v0.6.1 ignores it in effect.
	EfSearch int
	// Seed seeds the random levels of new nodes: the same Seed and the same
	// sequence of calls build the same graph and give the same results.
	Seed int64
}

// DefaultParams returns M 16, EfConstruction 200, EfSearch 64, Seed 0.
func DefaultParams() Params {
	return Params{M: 16, EfConstruction: 200, EfSearch: 64}
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
