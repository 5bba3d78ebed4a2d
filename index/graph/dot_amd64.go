package graph

import "golang.org/x/sys/cpu"

// useAVX2FMA selects dotAVX2FMA, decided once when the package loads.
// HasAVX2 also requires the OS to save the YMM registers. Tests and
// benchmarks switch it to compare the kernels.
var useAVX2FMA = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// dotAVX2FMA returns the dot product of a and b[:len(a)]; the caller ensures
// len(b) >= len(a). It needs AVX2 and FMA (see useAVX2FMA).
//
//go:noescape
func dotAVX2FMA(a, b []float32) float32
