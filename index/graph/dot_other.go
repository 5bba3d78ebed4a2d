//go:build !amd64

package graph

// useAVX2FMA is false off amd64: Dot always runs dotGeneric. A variable, not
// a constant, so that tests can switch kernels on every architecture.
var useAVX2FMA = false

// dotAVX2FMA is never selected off amd64; it exists so that Dot compiles.
func dotAVX2FMA(a, b []float32) float32 { return dotGeneric(a, b) }
