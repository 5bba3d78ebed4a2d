package graph

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/internal/embed"
)

// promptVectors returns the local embedder's vectors of n generated
// prompts (the cache's workload, as in testRecallEmbeddedPrompts).
func promptVectors(n int, seed uint64) [][]float32 {
	r := rand.New(rand.NewPCG(seed, seed))
	emb := embed.NewLocal()
	vocab := strings.Fields(`how do i what is the can you my our team service cluster deploy key token
model request error timeout retry cache memory latency region quota limit user account password email
file database table query index server client network proxy gateway build test release version update
install configure monitor alert log metric debug scale backup restore migrate secure rotate policy role
access group project budget cost invoice payment order customer product price search report schedule`)
	out := make([][]float32, n)
	for i := range out {
		words := make([]string, 0, 16)
		for range 8 + r.IntN(9) {
			words = append(words, vocab[r.IntN(len(vocab))])
		}
		out[i] = emb.Embed(strings.Join(words, " ") + "?")
	}
	return out
}

// TestHNSWRecallMissPath: a graph built as the cache builds it on misses,
// each Add preceded by a Search of the same vector (whose beam seeds the
// insert), finds what exact search finds, with either walk; and so does one
// built as under 64 concurrent misses, each Add 63 searches after its own
// (every insert seeded from a search the graph has changed since).
func TestHNSWRecallMissPath(t *testing.T) {
	n := recallEntries()
	vecs := promptVectors(n+500, 21)
	for _, c := range []struct {
		walk bool
		lag  int
	}{{false, 0}, {true, 0}, {false, 63}} {
		t.Run(fmt.Sprintf("float32walk=%v/lag=%d", c.walk, c.lag), func(t *testing.T) {
			x, ref := NewHNSW(Params{Float32Walk: c.walk}), NewFlat()
			for i := range n + c.lag {
				if i < n {
					x.Search(vecs[i], 1)
				}
				if j := i - c.lag; j >= 0 {
					x.Add(uint64(j), vecs[j])
					ref.Add(uint64(j), vecs[j])
				}
			}
			checkInvariants(t, x)
			r := rand.New(rand.NewPCG(22, 22))
			queries := make([][]float32, 500)
			for i := range queries {
				queries[i] = nearDup(r, vecs[r.IntN(n)], 0.1)
			}
			got := recallAt1(x, ref, queries)
			t.Logf("top-1 recall at %d entries: %.3f", n, got)
			if got < 0.99 {
				t.Fatalf("top-1 recall at %d entries = %.3f, want >= 0.99", n, got)
			}
		})
	}
}

// TestHNSWSeedsSkipWhatChanged: a remembered search gives only live slots
// of the current numbering: slots tombstoned since the search are skipped, a
// search is used once, a compaction voids every search remembered before
// it, and one remembered under the hash of another vector is refused.
func TestHNSWSeedsSkipWhatChanged(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 23))
	x := NewHNSW(Params{Seed: 4})
	for id := range uint64(400) {
		x.Add(id, randUnit(r, 16))
	}
	walkVec := func(v []float32) qvec {
		q := make([]int8, len(v))
		return qvec{q: q, scale: quantize(q, v)}
	}
	q := randUnit(r, 16)
	got := x.Search(q, 8)
	x.Delete(got[0].ID)
	x.Delete(got[1].ID)
	seeds, _ := x.seeds(vecHash(q), walkVec(q))
	if len(seeds) == 0 {
		t.Fatal("no seeds for the vector just searched")
	}
	for _, it := range seeds {
		if x.isDead(it.s) {
			t.Fatalf("seed slot %d is tombstoned", it.s)
		}
		if want := x.qdist(walkVec(q), it.s); it.d != want {
			t.Fatalf("seed slot %d has distance %v, the walk's is %v", it.s, it.d, want)
		}
	}
	if again, _ := x.seeds(vecHash(q), walkVec(q)); again != nil {
		t.Fatalf("a search was used twice: %v", again)
	}

	x.Search(q, 8)
	if seeds, _ := x.seeds(vecHash(q), walkVec(randUnit(r, 16))); seeds != nil {
		t.Fatalf("a search seeded the insert of another vector with its hash: %v", seeds)
	}
	x.Search(q, 8)
	for id := range uint64(150) { // past a quarter: compacts
		x.Delete(id)
	}
	if seeds, _ := x.seeds(vecHash(q), walkVec(q)); seeds != nil {
		t.Fatalf("a search remembered before a compaction seeded after it: %v", seeds)
	}
	v := randUnit(r, 16)
	if seeds, _ := x.seeds(vecHash(v), walkVec(v)); seeds != nil {
		t.Fatalf("a vector never searched got seeds: %v", seeds)
	}
}

// TestHNSWInvariantsUnderSeededChurn: searches before adds (seeded
// inserts), with re-adds, deletes and compactions in between, keep every
// structural invariant.
func TestHNSWInvariantsUnderSeededChurn(t *testing.T) {
	for _, walk := range []bool{false, true} {
		t.Run(fmt.Sprintf("float32walk=%v", walk), func(t *testing.T) {
			r := rand.New(rand.NewPCG(24, 24))
			x := NewHNSW(Params{M: 6, EfConstruction: 40, Seed: 8, Float32Walk: walk})
			var pending [][]float32 // searched, not yet added, as misses in flight
			for op := range 5000 {
				switch k := r.IntN(4); {
				case k == 0:
					x.Delete(uint64(r.IntN(800)))
				case k == 1 || len(pending) == 0:
					v := randUnit(r, 12)
					x.Search(v, 1)
					pending = append(pending, v)
				default:
					i := r.IntN(len(pending))
					x.Add(uint64(r.IntN(800)), pending[i])
					pending = append(pending[:i], pending[i+1:]...)
				}
				if op%500 == 0 {
					checkInvariants(t, x)
				}
			}
			checkInvariants(t, x)
		})
	}
}

// BenchmarkMissInsert is the cache-miss path's graph work: a Search, then
// an Add of a new prompt vector into a graph of 20,000. seeded searches the
// vector it adds (its distances seed the insert); unseeded searches a stored
// vector instead, a search of the same size whose distances the insert
// cannot use. Run it with a fixed -benchtime (e.g. 3000x): the graph grows
// with every iteration.
func BenchmarkMissInsert(b *testing.B) {
	const n = 20_000
	vecs := promptVectors(n+20_000, 25)
	for _, walk := range []bool{true, false} {
		for _, seeded := range []bool{true, false} {
			b.Run(fmt.Sprintf("float32walk=%v/seeded=%v", walk, seeded), func(b *testing.B) {
				x := NewHNSW(Params{Float32Walk: walk})
				for i, v := range vecs[:n] {
					x.Add(uint64(i), v)
				}
				fresh := vecs[n:]
				for i := 0; b.Loop(); i++ {
					v := fresh[i%len(fresh)]
					if seeded {
						x.Search(v, 1)
					} else {
						x.Search(vecs[i%n], 1)
					}
					x.Add(uint64(n+i), v)
				}
			})
		}
	}
}

// TestSeedRingReplacesOldestFirst: the ring keeps the capacity most recent
// searches, also across a growth of its capacity after it wrapped.
func TestSeedRingReplacesOldestFirst(t *testing.T) {
	var r seedRing
	remembered := func() []uint64 {
		var hs []uint64
		for _, b := range r.beams {
			hs = append(hs, b.h)
		}
		slices.Sort(hs)
		return hs
	}
	h := uint64(0)
	for _, step := range []struct{ capacity, searches int }{{4, 10}, {6, 3}, {6, 1}, {9, 2}, {9, 9}, {5, 2}} {
		for range step.searches {
			h++
			r.remember(h, 0, nil, step.capacity)
		}
		n := len(r.beams)
		var want []uint64
		for i := h - uint64(n) + 1; i <= h; i++ {
			want = append(want, i)
		}
		if got := remembered(); !slices.Equal(got, want) {
			t.Fatalf("after search %d at capacity %d: remembered %v, want the %d latest %v", h, step.capacity, got, n, want)
		}
	}
	if len(r.beams) != 9 {
		t.Fatalf("the ring holds %d searches, want 9 (it never shrinks)", len(r.beams))
	}
}

// TestHNSWSeedsOutliveConcurrentSearches: in a graph of 16,384 entries a
// search still seeds its insert after 100 other searches in between (a
// node serving many misses at once), where a small graph remembers 16.
func TestHNSWSeedsOutliveConcurrentSearches(t *testing.T) {
	if seedCapacity(16_384) < 101 || seedCapacity(100) != seedBeams {
		t.Fatalf("capacities %d at 16,384 entries and %d at 100", seedCapacity(16_384), seedCapacity(100))
	}
	r := rand.New(rand.NewPCG(24, 24))
	x := NewHNSW(Params{M: 4, EfConstruction: 4, EfSearch: 4, Seed: 5}) // cheap to build
	for id := range uint64(16_384) {
		v := make([]float32, 8)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		x.Add(id, normalise(v))
	}
	walkVec := func(v []float32) qvec {
		q := make([]int8, len(v))
		return qvec{q: q, scale: quantize(q, v)}
	}
	q := randUnit(r, 8)
	x.Search(q, 1)
	for range 100 {
		x.Search(randUnit(r, 8), 1)
	}
	if seeds, _ := x.seeds(vecHash(q), walkVec(q)); len(seeds) == 0 {
		t.Fatal("a search 100 searches ago no longer seeds its insert")
	}
}

// TestVecHashTellsVectorsApart: vectors differing in one component, at any
// position (every lane and the tail), or only in length, hash differently;
// equal vectors hash equally, and never to 0.
func TestVecHashTellsVectorsApart(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 31))
	for _, dim := range []int{1, 3, 7, 8, 9, 16, 383, 384} {
		v := randUnit(r, dim)
		h := vecHash(v)
		if h == 0 || vecHash(slices.Clone(v)) != h {
			t.Fatalf("dim %d: hash %x, of a copy %x", dim, h, vecHash(slices.Clone(v)))
		}
		for i := range v {
			w := slices.Clone(v)
			w[i] = math.Nextafter32(w[i], 2)
			if vecHash(w) == h {
				t.Fatalf("dim %d: changing component %d leaves the hash", dim, i)
			}
		}
		if vecHash(append(slices.Clone(v), 0)) == h {
			t.Fatalf("dim %d: appending a zero leaves the hash", dim)
		}
	}
}

var vecHashSink uint64

// BenchmarkVecHash384 is the hash of a 384-d vector, taken twice per cache
// miss (its look-up and its insert).
func BenchmarkVecHash384(b *testing.B) {
	v := randUnit(rand.New(rand.NewPCG(32, 32)), 384)
	for b.Loop() {
		vecHashSink += vecHash(v)
	}
}

// TestEasyNeighbourhoods: a seeded insert narrows its layer-0 beam only where
// its look-up found the nearest entries clearly nearer than the rest:
// near-duplicate clusters (templated prompts), never uniformly random 384-d
// vectors, the documented worst case for recall; and never with too few
// distances to judge by.
func TestEasyNeighbourhoods(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 11))
	walkVec := func(v []float32) qvec {
		q := make([]int8, len(v))
		return qvec{q: q, scale: quantize(q, v)}
	}
	centres := make([][]float32, 30)
	for i := range centres {
		centres[i] = randUnit(r, 384)
	}
	tests := []struct {
		name     string
		vec      func() []float32
		entries  int
		wantEasy bool
	}{
		{"random 384-d vectors are hard", func() []float32 { return randUnit(r, 384) }, 3000, false},
		{"clusters of near duplicates are easy", func() []float32 { return nearDup(r, centres[r.IntN(len(centres))], 0.3) }, 3000, true},
		{"a handful of distances says nothing", func() []float32 { return nearDup(r, centres[0], 0.3) }, 8, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := NewHNSW(Params{Seed: 3})
			for id := range uint64(tt.entries) {
				x.Add(id, tt.vec())
			}
			easy := 0
			const queries = 200
			for range queries {
				q := tt.vec()
				x.Search(q, 4)
				if _, e := x.seeds(vecHash(q), walkVec(q)); e {
					easy++
				}
			}
			if tt.wantEasy && easy < queries*9/10 || !tt.wantEasy && easy > queries/100 { // random: about 4 in 10,000
				t.Errorf("%d of %d inserts easy, want easy %v", easy, queries, tt.wantEasy)
			}
		})
	}
}

// TestEasyInsertsKeepRecall: a graph of near-duplicate clusters built as
// misses build it (each vector searched, then added: the easy inserts'
// narrower beam) finds the exact nearest neighbour as often as one built
// with the whole beam for every insert.
func TestEasyInsertsKeepRecall(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 12))
	centres := make([][]float32, 50)
	for i := range centres {
		centres[i] = randUnit(r, 384)
	}
	n := recallEntries() / 2
	vecs := make([][]float32, n)
	for i := range vecs {
		vecs[i] = nearDup(r, centres[r.IntN(len(centres))], 0.4)
	}
	queries := make([][]float32, 500)
	for i := range queries {
		queries[i] = nearDup(r, vecs[r.IntN(n)], 0.15)
	}
	ref := NewFlat()
	seeded, whole := NewHNSW(Params{Seed: 4}), NewHNSW(Params{Seed: 4})
	for i, v := range vecs {
		ref.Add(uint64(i), v)
		seeded.Search(v, 4) // seeds the Add: easy in these clusters
		seeded.Add(uint64(i), v)
		whole.Add(uint64(i), v) // unseeded: the whole beam
	}
	got, want := recallAt1(seeded, ref, queries), recallAt1(whole, ref, queries)
	if got < want-0.01 {
		t.Errorf("recall@1 %.3f with easy inserts, %.3f with the whole beam", got, want)
	}
}
