package graph

import (
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

func TestZZExplore(t *testing.T) {
	if os.Getenv("EXPLORE") == "" {
		t.Skip()
	}
	n := 20000
	r := rand.New(rand.NewPCG(10, 10))
	vecs := make([][]float32, n)
	ref := NewFlat()
	for i := range vecs {
		vecs[i] = randUnit(r, 384)
		ref.Add(uint64(i), vecs[i])
	}
	qs := map[float64][][]float32{}
	for _, noise := range []float64{0.3, 0.5, 0.8} {
		for range 500 {
			qs[noise] = append(qs[noise], nearDup(r, vecs[r.IntN(n)], noise))
		}
	}
	for _, efc := range []int{40, 100, 200} {
		x := NewHNSW(Params{Seed: 3, EfConstruction: efc})
		st := time.Now()
		for i, v := range vecs {
			x.Add(uint64(i), v)
		}
		bt := time.Since(st)
		for _, ef := range []int{8, 16, 32, 64} {
			x.p.EfSearch = ef
			for _, noise := range []float64{0.3, 0.5, 0.8} {
				st := time.Now()
				rc := recallAt1(x, ref, qs[noise])
				_ = st
				t.Logf("efC=%d build=%v ef=%d noise=%.1f recall=%.3f", efc, bt, ef, noise, rc)
			}
		}
	}
}
