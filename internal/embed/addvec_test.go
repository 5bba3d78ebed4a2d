package embed

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestAddVecKernelIsGeneric runs the word-vector accumulation the processor
// runs (addVec: AVX2 on amd64 when present) against addVecGeneric on every
// word of the table, with weights across the float32 range and running sums
// of both signs, and wants the same bits: persisted vectors are compared
// with new ones.
func TestAddVecKernelIsGeneric(t *testing.T) {
	wv, ok := parseTable(wordvecBin)
	if !ok {
		t.Fatal("the embedded word-vector table does not parse")
	}
	if !useAVX2 {
		t.Log("no AVX2 here: addVec runs addVecGeneric")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	weights := []float32{1, -1, 0.01, 0.99, 1e-30, 3e30, float32(math.SmallestNonzeroFloat32), -0.3333333}
	for i := range wv.n {
		var got, want [wordVecDim]float32
		for k := range got {
			got[k] = float32(rng.NormFloat64()) * 1e-3
			want[k] = got[k]
		}
		w := weights[i%len(weights)] * float32(rng.Float64()+0.5)
		wv.addVec(&got, i, w)
		ws := w * math.Float32frombits(le32(wv.scales[4*i:]))
		addVecGeneric(&want, (*[wordVecDim]byte)(wv.vecs[wordVecDim*i:]), ws)
		for k := range got {
			if math.Float32bits(got[k]) != math.Float32bits(want[k]) {
				t.Fatalf("word %d, weight %g: element %d is %g (%#x), want %g (%#x)", i, w, k, got[k], math.Float32bits(got[k]), want[k], math.Float32bits(want[k]))
			}
		}
	}
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// BenchmarkAddVec is one word's vector added to the running sum.
func BenchmarkAddVec(b *testing.B) {
	wv, _ := parseTable(wordvecBin)
	var acc [wordVecDim]float32
	i := 0
	for b.Loop() {
		wv.addVec(&acc, i%wv.n, 0.5)
		i += 7919
	}
}
