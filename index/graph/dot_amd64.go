package graph

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// useAVX2FMA selects dotAVX2FMA, decided once when the package loads.
// HasAVX2 also requires the OS to save the YMM registers. Tests and
// benchmarks switch it to compare the kernels.
var useAVX2FMA = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// dotAVX2FMA returns the dot product of a and b[:len(a)]; the caller ensures
// len(b) >= len(a). It needs AVX2 and FMA (see useAVX2FMA).
//
//go:noescape
func dotAVX2FMA(a, b []float32) float32

// useAVX2 selects dotInt8AVX2, which needs AVX2 alone.
var useAVX2 = cpu.X86.HasAVX2

// useVNNI selects dotsInt8VNNI for the int8 kernels. AVX-512 VNNI's
// VPDPBUSD does in one instruction what dotsInt8AVX2 needs four for, on twice
// the bytes. HasAVX512 (implied by the others) also requires the OS to save
// the ZMM registers.
var useVNNI = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512VNNI

// dotInt8AVX2 returns the dot product of a and b[:len(a)]; len(a) is a
// multiple of 32, no byte of a is -128, and the caller ensures len(b) >= len(a). It needs AVX2.
//
//go:noescape
func dotInt8AVX2(a, b []int8) int32

// dotsInt8AVX2 sets out[i] to the dot product of q and the len(q) bytes at
// vecs[i], for every i < len(vecs). len(q) is a multiple of 32 and no byte of
// q is -128; the caller ensures len(out) >= len(vecs). It needs AVX2.
//
//go:noescape
func dotsInt8AVX2(q []int8, vecs []*int8, out []int32)

// dotsInt8VNNI is dotsInt8AVX2 on AVX-512 VNNI (see useVNNI), with the same
// contract.
//
//go:noescape
func dotsInt8VNNI(q []int8, vecs []*int8, out []int32)

// prefetch asks the CPU to bring the n > 0 bytes at p into its caches
// without waiting for them, so that their loads overlap with other work.
//
//go:noescape
func prefetch(p unsafe.Pointer, n uintptr)

// useAVX512 selects countLE for the beam's place; POPCNT comes with every
// AVX-512 CPU, and x/sys/cpu checks it all the same.
var useAVX512 = cpu.X86.HasAVX512F && cpu.X86.HasPOPCNT

// countLE returns how many elements of ds are no greater than x (NaN
// being greater than everything). It needs AVX-512F (see useAVX512).
//
//go:noescape
func countLE(ds []float32, x float32) int

// dotInt8VNNI is dotInt8AVX2 on AVX-512 VNNI (see useVNNI): the dot
// product of a and b[:len(a)], len(a) a multiple of 32, any bytes.
//
//go:noescape
func dotInt8VNNI(a, b []int8) int32
