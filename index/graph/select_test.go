package graph

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// selectNeighboursReference is selectNeighbours as it was before it compared
// first the kept node that rejected the previous candidate: each candidate
// against the kept nodes in their order, nearest to the base first.
func (h *HNSW) selectNeighboursReference(cands []item, m int) []item {
	if len(cands) <= m {
		return cands
	}
	kept := cands[:0]
	for _, c := range cands {
		if len(kept) >= m {
			break
		}
		good := true
		cv := h.qvecOf(c.s)
		for _, k := range kept {
			if h.qdist(cv, k.s) < c.d {
				good = false
				break
			}
		}
		if good {
			kept = append(kept, c)
		}
	}
	return kept
}

// TestSelectNeighboursKeepsWhatTheReferenceKeeps: on the construction beams
// of real inserts (templated-prompt-like clusters and uniform vectors, with
// either walk), the neighbours selected are those of the reference, in the
// same order, for the upper layers' M and layer 0's 2M.
func TestSelectNeighboursKeepsWhatTheReferenceKeeps(t *testing.T) {
	r := rand.New(rand.NewPCG(40, 40))
	sets := map[string][][]float32{"prompts": promptVectors(3000, 41)}
	uniform := make([][]float32, 3000)
	for i := range uniform {
		uniform[i] = randUnit(r, 64)
	}
	sets["uniform"] = uniform
	for _, name := range []string{"prompts", "uniform"} {
		for _, walk := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/float32walk=%v", name, walk), func(t *testing.T) {
				vecs := sets[name]
				x := NewHNSW(Params{Float32Walk: walk, Seed: 3})
				for i, v := range vecs[:2500] {
					x.Add(uint64(i), v)
				}
				checked := 0
				for _, v := range vecs[2500:] {
					q := qvec{f: v}
					if !walk {
						q8 := make([]int8, len(v))
						q = qvec{q: q8, scale: quantize(q8, v)}
					}
					ep := x.descend(q, 1)
					cands := slices.Clone(x.searchLayer(q, []item{ep}, 100, 0, false))
					for _, m := range []int{x.p.M, x.m0} {
						got := x.selectNeighbours(slices.Clone(cands), m)
						want := x.selectNeighboursReference(slices.Clone(cands), m)
						if !slices.Equal(got, want) {
							t.Fatalf("m %d: selected %v, the reference %v", m, got, want)
						}
						if len(got) < len(cands) {
							checked++
						}
					}
				}
				if checked == 0 {
					t.Fatal("no selection rejected anything: the test compares nothing")
				}
			})
		}
	}
}

// TestSelectNeighboursWithANaNDistanceKeepsWhatTheReferenceKeeps: a vector
// with a NaN component (the float32 walk; vectors from peers or disk are not
// checked for finiteness) has NaN distances, which reject nothing in the
// reference's comparisons; the first comparison with the last rejecter must
// not reject everything after such a node either.
func TestSelectNeighboursWithANaNDistanceKeepsWhatTheReferenceKeeps(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	x := NewHNSW(Params{Float32Walk: true, Seed: 3})
	for i := range 200 {
		x.Add(uint64(i), randUnit(r, 16))
	}
	v := randUnit(r, 16)
	v[3] = float32(math.NaN())
	q := qvec{f: v}
	cands := slices.Clone(x.searchLayer(q, []item{x.descend(q, 1)}, 100, 0, false))
	slots := func(its []item) []uint32 {
		var s []uint32
		for _, it := range its {
			s = append(s, it.s)
		}
		return s
	}
	got := slots(x.selectNeighbours(slices.Clone(cands), x.p.M))
	want := slots(x.selectNeighboursReference(slices.Clone(cands), x.p.M))
	if !slices.Equal(got, want) {
		t.Fatalf("of %d candidates selected %v, the reference %v", len(cands), got, want)
	}
}
