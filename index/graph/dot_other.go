//go:build !amd64

package graph

import "unsafe"

// useAVX2FMA is false off amd64: Dot always runs dotGeneric. A variable, not
// a constant, so that tests can switch kernels on every architecture.
var useAVX2FMA = false

// dotAVX2FMA is never selected off amd64; it exists so that Dot compiles.
func dotAVX2FMA(a, b []float32) float32 { return dotGeneric(a, b) }

// useAVX2 is false off amd64: dotInt8 always runs dotInt8Generic.
var useAVX2 = false

// dotInt8AVX2 is never selected off amd64; it exists so that dotInt8 compiles.
func dotInt8AVX2(a, b []int8) int32 { return dotInt8Generic(a, b) }

// dotsInt8AVX2 is never selected off amd64; it exists so that dotsInt8
// compiles.
func dotsInt8AVX2(q []int8, vecs []*int8, out []int32) {
	panic("graph: dotsInt8AVX2 off amd64")
}

// useVNNI is false off amd64.
var useVNNI = false

// dotsInt8VNNI is never selected off amd64; it exists so that dotsInt8
// compiles.
func dotsInt8VNNI(q []int8, vecs []*int8, out []int32) {
	panic("graph: dotsInt8VNNI off amd64")
}

// prefetch is a no-op off amd64.
func prefetch(p unsafe.Pointer, n uintptr) {}

// useAVX512 is false off amd64: the beam places items by binary search.
var useAVX512 = false

// countLE is never selected off amd64; it exists so that beam.place
// compiles.
func countLE(ds []float32, x float32) int { return placeGeneric(ds, x) }

// dotInt8VNNI is never selected off amd64; it exists so that dotInt8
// compiles.
func dotInt8VNNI(a, b []int8) int32 { return dotInt8Generic(a, b) }
