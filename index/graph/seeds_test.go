package graph

import (
	"fmt"
	"math/rand/v2"
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
// insert), finds what exact search finds, with either walk.
func TestHNSWRecallMissPath(t *testing.T) {
	n := recallEntries()
	vecs := promptVectors(n+500, 21)
	for _, walk := range []bool{false, true} {
		t.Run(fmt.Sprintf("float32walk=%v", walk), func(t *testing.T) {
			x, ref := NewHNSW(Params{Float32Walk: walk}), NewFlat()
			for i, v := range vecs[:n] {
				x.Search(v, 1)
				x.Add(uint64(i), v)
				ref.Add(uint64(i), v)
			}
			checkInvariants(t, x)
			r := rand.New(rand.NewPCG(22, 22))
			queries := make([][]float32, 500)
			for i := range queries {
				queries[i] = nearDup(r, vecs[r.IntN(n)], 0.1)
			}
			if got := recallAt1(x, ref, queries); got < 0.99 {
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
	seeds := x.seeds(vecHash(q), walkVec(q))
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
	if again := x.seeds(vecHash(q), walkVec(q)); again != nil {
		t.Fatalf("a search was used twice: %v", again)
	}

	x.Search(q, 8)
	if seeds := x.seeds(vecHash(q), walkVec(randUnit(r, 16))); seeds != nil {
		t.Fatalf("a search seeded the insert of another vector with its hash: %v", seeds)
	}
	x.Search(q, 8)
	for id := range uint64(150) { // past a quarter: compacts
		x.Delete(id)
	}
	if seeds := x.seeds(vecHash(q), walkVec(q)); seeds != nil {
		t.Fatalf("a search remembered before a compaction seeded after it: %v", seeds)
	}
	v := randUnit(r, 16)
	if seeds := x.seeds(vecHash(v), walkVec(v)); seeds != nil {
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
