package graph

import (
	"math"
	"unsafe"
)

// The graph walks on int8 copies of the vectors. A 384-d vector is 384 bytes
// instead of 1,536, so four times as many fit in the CPU's caches, and the
// integer dot product of two of them is exact: it costs about half the
// instructions of the float32 kernel and gives the same answer on every CPU.
// Search re-ranks the beam it ends with by the float32 vectors, so the
// distances it returns, and their order, are exact.

// quantize writes v scaled into [-127, 127] to dst (len(v) values) and
// returns the scale s with v[i] ≈ s*dst[i]. Each vector gets its own scale,
// from its largest component, so a vector whose weight sits in a few
// components keeps its precision. A vector with no finite non-zero component
// (or with an infinite one) quantizes to zeros with scale 0; NaN components
// count as 0.
func quantize(dst []int8, v []float32) float32 {
	dst = dst[:len(v)]
	// Both loops are branch-free on the sign: a vector's signs are random,
	// and a mispredicted branch per component made quantizing a query cost
	// several microseconds.
	var m float32
	for _, x := range v {
		if a := math.Float32frombits(math.Float32bits(x) &^ signBit); a > m { // false for NaN
			m = a
		}
	}
	if m == 0 || m > math.MaxFloat32 {
		clear(dst)
		return 0
	}
	inv := 127 / m
	for i, x := range v {
		// Round half away from zero: add ±0.5 with f's sign, then truncate.
		// |f| is at most 127 give or take a rounding, which still truncates
		// to 127 after the half is added.
		f := x * inv
		r := f + math.Float32frombits(math.Float32bits(f)&signBit|half)
		if r != r { // NaN
			r = 0
		}
		dst[i] = int8(int32(r))
	}
	return m / 127
}

const (
	signBit = 1 << 31
	half    = 0x3f000000 // the bits of float32(0.5)
)

// dotInt8 is the dot product of two int8 vectors of equal length, neither
// holding -128 (quantize never writes it); only b[:len(a)] is read. With at most 2^17 elements the sum cannot overflow
// (127*127*2^17 < 2^31), and vectors are far shorter.
func dotInt8(a, b []int8) int32 {
	b = b[:len(a)]
	if useVNNI && len(a)%32 == 0 {
		return dotInt8VNNI(a, b)
	}
	if !useAVX2 {
		return dotInt8Generic(a, b)
	}
	n := len(a) &^ 31
	s := int32(0)
	if n > 0 {
		s = dotInt8AVX2(a[:n], b[:n])
	}
	if n < len(a) {
		s += dotInt8Generic(a[n:], b[n:])
	}
	return s
}

// dotInt8Generic is the portable kernel.
func dotInt8Generic(a, b []int8) int32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 int32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += int32(a[i]) * int32(b[i])
		s1 += int32(a[i+1]) * int32(b[i+1])
		s2 += int32(a[i+2]) * int32(b[i+2])
		s3 += int32(a[i+3]) * int32(b[i+3])
	}
	for ; i < len(a); i++ {
		s0 += int32(a[i]) * int32(b[i])
	}
	return s0 + s1 + s2 + s3
}

// dotsInt8 sets out[i] to dotInt8(q, the len(q) bytes at vecs[i]), for
// every i. It is the graph walk's inner loop: one call per expanded node, so
// that the CPU fetches all of its neighbours' vectors at once (see
// dotsInt8AVX2). Every vecs[i] must point at len(q) bytes.
func dotsInt8(q []int8, vecs []*int8, out []int32) {
	out = out[:len(vecs)]
	dim := len(q)
	if useVNNI && dim > 0 && dim%32 == 0 && len(vecs) > 0 {
		dotsInt8VNNI(q, vecs, out)
		return
	}
	if useAVX2 && dim > 0 && dim%32 == 0 && len(vecs) > 0 {
		dotsInt8AVX2(q, vecs, out)
		return
	}
	for i, p := range vecs {
		out[i] = dotInt8(q, unsafe.Slice(p, dim))
	}
}
