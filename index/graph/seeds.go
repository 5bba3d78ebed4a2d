package graph

import (
	"math"
	"slices"
)

// A cache miss searches the graph for the prompt's vector, asks upstream,
// then adds the same vector: the insert's layer-0 search (a beam of
// EfConstruction) walks the neighbourhood the miss's search (a beam of
// EfSearch) has just walked, computing many of the same distances again.
// HNSW therefore remembers, for its last seedBeams searches, every layer-0
// distance each computed, keyed by a hash of the query. An Add of a vector
// searched recently passes those as the entry points of its layer-0 search:
// the nearest EfConstruction of them start the beam, the rest are only
// marked visited (see searchLayer), and a level-0 node skips the descent.
// Fewer distances are computed (prompt vectors, 20,000 entries: 3,018 per
// insert unseeded, 2,217 seeded), and the beam ends with at least what it
// would have found from the descent's one entry point.
//
// A remembered search is only a hint, checked before use. Other calls may
// change the graph between the search and the add: its slots stay valid
// (slots are only appended) until a compaction or reset renumbers them,
// which bumps gen and so voids every remembered search; a slot tombstoned
// since is skipped. Against a hash collision, the distance to one of its
// slots is computed afresh and must be the remembered one exactly.

const (
	// seedBeams is how many recent searches are remembered at least, and
	// seedBeamsMax at most: one more per seedEntriesPerBeam entries of the
	// graph. A search between a miss's look-up and its store pushes the
	// look-up towards the ring's end, and a node serving 64 requests at a
	// time has about 63 of them: with 16 remembered, nearly every insert
	// under that load was unseeded (a descent and a full search). A graph
	// is one cache partition (consumer × route × shape by default), so a
	// node may hold thousands of them, most small: a remembered search is a
	// few hundred distances, 2–3 KB, so a graph of n entries keeps at most
	// n/128 of them (about 1 % of its own memory, ≈ 2 KB per entry) and a
	// small one 16 (≈ 40 KB) as before. A miss whose search has left the
	// ring by the time its answer is stored is inserted unseeded, as before
	// seeding existed.
	seedBeams          = 16
	seedBeamsMax       = 128
	seedEntriesPerBeam = 128
	// seedMax bounds the distances kept of one search (8 bytes each); a
	// layer-0 search at the default EfSearch computes a few hundred.
	seedMax = 1024
)

// seedCapacity is how many searches a graph of n slots remembers.
func seedCapacity(n int) int {
	return min(max(seedBeams, n/seedEntriesPerBeam), seedBeamsMax)
}

type seedBeam struct {
	h     uint64 // hash of the query; 0 = empty
	gen   uint32 // HNSW.gen when remembered
	items []item // the slots whose distance the search computed, with it
}

// seedRing is the remembered searches, replaced oldest first.
type seedRing struct {
	beams []seedBeam // grown one at a time up to the capacity
	next  int        // the oldest, once the ring is full
}

// vecHash hashes v's bits: FNV-1a over 64-bit words (two components each)
// in four interleaved lanes, the lanes then folded one into the next with the
// length and finished by a multiply-xorshift; it is never 0, which marks an
// empty beam. Each step of a lane is a bijection of its state, so vectors
// that differ in one component always hash differently. One lane over 32-bit
// words was a chain of 384 dependent multiplies for a 384-d vector, ≈ 1.5 µs
// taken twice per cache miss; four lanes of 48 run side by side.
func vecHash(v []float32) uint64 {
	const basis, prime = 14695981039346656037, 1099511628211
	h0, h1, h2, h3 := uint64(basis), uint64(basis^1), uint64(basis^2), uint64(basis^3)
	n := len(v)
	for ; len(v) >= 8; v = v[8:] {
		w := (*[8]float32)(v)
		h0 = (h0 ^ (uint64(math.Float32bits(w[0])) | uint64(math.Float32bits(w[1]))<<32)) * prime
		h1 = (h1 ^ (uint64(math.Float32bits(w[2])) | uint64(math.Float32bits(w[3]))<<32)) * prime
		h2 = (h2 ^ (uint64(math.Float32bits(w[4])) | uint64(math.Float32bits(w[5]))<<32)) * prime
		h3 = (h3 ^ (uint64(math.Float32bits(w[6])) | uint64(math.Float32bits(w[7]))<<32)) * prime
	}
	for _, x := range v {
		h0 = (h0 ^ uint64(math.Float32bits(x))) * prime
	}
	h := h0
	for _, x := range [...]uint64{h1, h2, h3, uint64(n)} {
		h = (h ^ x) * prime
	}
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 32
	return h | 1
}

// remember keeps (a copy of, at most seedMax of) visited as the search of
// the query hashed h, replacing the oldest search remembered when capacity
// are. A ring below its capacity grows by one instead, the new beam going
// just before the oldest, so that the ring is still replaced oldest first.
func (r *seedRing) remember(h uint64, gen uint32, visited []item, capacity int) {
	var b *seedBeam
	if len(r.beams) < capacity {
		r.beams = slices.Insert(r.beams, r.next, seedBeam{})
		b = &r.beams[r.next]
		r.next++
	} else {
		r.next %= len(r.beams)
		b = &r.beams[r.next]
		r.next++
	}
	b.h, b.gen = h, gen
	b.items = append(b.items[:0], visited[:min(len(visited), seedMax)]...)
}

// take returns the search remembered for the query hashed h in generation
// gen, and forgets it; nil when there is none. The slice is valid until the
// next remember.
func (r *seedRing) take(h uint64, gen uint32) []item {
	for i := range r.beams {
		b := &r.beams[i]
		if b.h == h && b.gen == gen {
			b.h = 0
			return b.items
		}
	}
	return nil
}

// seeds returns the live slots whose distance to q (the vector being
// inserted, hashed hash) a remembered search computed, with those distances,
// as layer-0 entry points of its insert; nil when no search of it is
// remembered. The distances are the insert's own: the search quantized the
// query as newSlot quantizes the vector, and a slot's vector never changes
// within a generation. easy reports whether the neighbourhood they describe
// is one a narrower construction beam links as well (see easyContrast).
func (h *HNSW) seeds(hash uint64, q qvec) (eps []item, easy bool) {
	items := h.seeded.take(hash, h.gen)
	eps = h.seedItems[:0]
	nearest, sum := float32(math.Inf(1)), float32(0)
	for _, it := range items {
		if int(it.s) < len(h.ids) && !h.isDead(it.s) {
			eps = append(eps, it)
			nearest = min(nearest, it.d)
			sum += it.d
		}
	}
	h.seedItems = eps
	if len(eps) == 0 || h.qdist(q, eps[0].s) != eps[0].d {
		return nil, false // nothing left, or another vector's search
	}
	// Both comparisons are false for a NaN distance (min and the sum carry
	// it): such a neighbourhood is never easy. A nearest distance below zero
	// (int8 rounding of a duplicate) is not taken as easy either: the whole
	// beam is only slower, never worse.
	easy = len(eps) >= easyMinSeeds && nearest >= 0 && nearest < easyContrast*(sum/float32(len(eps)))
	return eps, easy
}

// A construction beam of EfConstruction pays where the graph is hard to
// navigate: where the new vector's nearest neighbours are barely nearer
// than everything else around it, as for uniformly random vectors in many
// dimensions (the worst case, see docs/configuration.md), and the beam must
// be wide to find which few are truly nearest. A neighbourhood whose nearest
// entry is clearly nearer than the rest is easy: templated or rephrased
// prompts sit in clusters of near duplicates, and a narrower beam finds the
// same neighbours. The seeded insert measures this on its own look-up's
// distances, the relative contrast of its neighbourhood (the nearest
// distance over the mean of those computed): below easyContrast, its layer-0
// search uses easyBeam of EfConstruction.
//
// Measured with `llmgate bench cache --parts index --build miss --sizes
// 100000 --queries 10000`: the contrast of the embedder's generated prompts
// is 0.60–0.74 (5th to 95th percentile), that of uniformly random 384-d
// vectors 0.80–0.86 (11 inserts in 30,000 easy). With 64 instead of 100 for
// the easy inserts, recall@1 is 0.645 against 0.647 on random vectors and
// 0.996 against 0.997 on prompts; a miss on the overhead benchmark's templated prompts costs
// about a fifth less graph CPU. An unseeded insert (a restore, a replicated
// entry, a rebuild) has no look-up to measure and uses the whole beam.
const (
	easyContrast = 0.75
	easyMinSeeds = 16 // fewer distances say too little about a neighbourhood
)

// easyBeam is the layer-0 construction beam of an easy seeded insert:
// EfConstruction scaled by 16/25 (64 for the default 100), no narrower than M.
func (p Params) easyBeam() int { return max(p.EfConstruction*16/25, p.M) }
