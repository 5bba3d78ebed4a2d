//go:build !amd64

package embed

// useAVX2 is false off amd64: addVec always runs addVecGeneric. A variable,
// as on amd64, so that tests can switch it.
var useAVX2 = false

func addVecAVX2(acc *[wordVecDim]float32, q *[wordVecDim]byte, w float32) {
	addVecGeneric(acc, q, w)
}
