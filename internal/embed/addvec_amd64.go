package embed

import "golang.org/x/sys/cpu"

// useAVX2 selects addVecAVX2, decided once when the package loads.
var useAVX2 = cpu.X86.HasAVX2

// addVecAVX2 is addVecGeneric eight elements at a time: the same multiply,
// then the same add, rounded per element as the scalar loop rounds them,
// so the sums are the same bits. It needs AVX2 (see useAVX2).
//
//go:noescape
func addVecAVX2(acc *[wordVecDim]float32, q *[wordVecDim]byte, w float32)

// addVecAVX2 is written for 100 dimensions (12 steps of 8, then 4).
const (
	_ = uint(wordVecDim - 100)
	_ = uint(100 - wordVecDim)
)
