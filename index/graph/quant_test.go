package graph

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// int8Padded is padded for int8 vectors: bytes outside [off, off+n) are
// large, so a kernel that reads and uses them gets a different sum.
func int8Padded(n, off, extra int, gen func(i int) int8) []int8 {
	buf := make([]int8, off+n+extra+32)
	for i := range buf {
		buf[i] = -127
	}
	for i := range n {
		buf[off+i] = gen(i)
	}
	return buf[off : off+n+extra]
}

func dotInt8Want(a, b []int8) int32 {
	var s int64
	for i := range a {
		s += int64(a[i]) * int64(b[i])
	}
	return int32(s)
}

// int8Kernel is one implementation dotInt8 and dotsInt8 can run.
type int8Kernel struct{ name string }

// haveAVX2 and haveVNNI record what this CPU can run, before any test
// switches useAVX2 or useVNNI.
var haveAVX2, haveVNNI = useAVX2, useVNNI

// int8Kernels lists the kernels this CPU can run, the portable one first.
func int8Kernels() []int8Kernel {
	ks := []int8Kernel{{"go"}}
	if haveAVX2 {
		ks = append(ks, int8Kernel{"avx2"})
	}
	if haveVNNI {
		ks = append(ks, int8Kernel{"avx512vnni"})
	}
	return ks
}

// useInt8Kernel makes dotInt8 and dotsInt8 run k until the returned function
// restores the CPU's choice. Tests using it must not run in parallel.
func useInt8Kernel(tb testing.TB, k int8Kernel) (restore func()) {
	tb.Helper()
	restore = func() { useAVX2, useVNNI = haveAVX2, haveVNNI }
	switch k.name {
	case "go":
		useAVX2, useVNNI = false, false
	case "avx2":
		if !haveAVX2 {
			tb.Skip("CPU lacks AVX2")
		}
		useAVX2, useVNNI = true, false
	case "avx512vnni":
		if !haveVNNI {
			tb.Skip("CPU lacks AVX-512 VNNI")
		}
		useAVX2, useVNNI = haveAVX2, true
	default:
		tb.Fatalf("unknown int8 kernel %q", k.name)
	}
	return restore
}

// TestDotInt8KernelsAreExact: every kernel gives the exact integer dot
// product at every length and alignment, extremes included; a byte skipped,
// counted twice or read past the end shows here.
func TestDotInt8KernelsAreExact(t *testing.T) {
	r := rand.New(rand.NewPCG(30, 30))
	gens := map[string]func(int) int8{
		"random":       func(int) int8 { return int8(r.IntN(255) - 127) },
		"extreme":      func(i int) int8 { return []int8{127, -127}[i%2] },
		"all-127":      func(int) int8 { return 127 },
		"all-negative": func(int) int8 { return -127 },
	}
	for _, k := range int8Kernels() {
		t.Run(k.name, func(t *testing.T) {
			defer useInt8Kernel(t, k)()
			for name, gen := range gens {
				for _, n := range append(testLengths(), 4096) {
					for off := range 4 {
						a := int8Padded(n, off*5, 0, gen)
						b := int8Padded(n, 3-off, off, gen)
						want := dotInt8Want(a, b)
						if got := dotInt8Generic(a, b); got != want {
							t.Fatalf("%s, len %d: go kernel %d, want %d", name, n, got, want)
						}
						if got := dotInt8(a, b); got != want {
							t.Fatalf("%s, len %d: dotInt8 %d, want %d", name, n, got, want)
						}
					}
				}
			}
		})
	}
}

// FuzzDotsInt8 compares every kernel this CPU can run, batched and single,
// with the plain integer sum. The first byte picks the dimension (multiples
// of 32 reach the assembly, others its fallback), the rest are the query
// and the vectors, cyclically; -128, which quantize never writes and the
// AVX2 kernel does not take, becomes -127.
func FuzzDotsInt8(f *testing.F) {
	f.Add([]byte{12, 1, 2, 3})
	f.Add([]byte{0x80, 0x7f, 0x81, 0})
	f.Add(append([]byte{0x0b}, make([]byte, 3000)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		dims := []int{1, 5, 31, 32, 33, 64, 96, 128, 384, 416}
		dim := dims[int(data[0])%len(dims)]
		n := int(data[0]>>4) + 1 // vectors
		src := data[1:]
		buf := make([]int8, dim*(n+1))
		for i := range buf {
			buf[i] = max(int8(src[i%len(src)]^byte(i/len(src))), -127)
		}
		q := buf[:dim]
		ptrs := make([]*int8, n)
		want := make([]int32, n)
		for i := range ptrs {
			v := buf[(i+1)*dim : (i+2)*dim]
			ptrs[i], want[i] = &v[0], dotInt8Want(q, v)
		}
		for _, k := range int8Kernels() {
			restore := useInt8Kernel(t, k)
			out := make([]int32, n)
			dotsInt8(q, ptrs, out)
			for i := range out {
				v := buf[(i+1)*dim : (i+2)*dim]
				if one := dotInt8(q, v); out[i] != want[i] || one != want[i] {
					restore()
					t.Fatalf("%s, dim %d: vector %d: batch %d, single %d, want %d", k.name, dim, i, out[i], one, want[i])
				}
			}
			restore()
		}
	})
}

// TestQuantizeKeepsVectors: a unit vector's int8 copy times its scale is
// within half a step of every component, and degenerate vectors (zero,
// infinite, NaN components) quantize to something finite.
func TestQuantizeKeepsVectors(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 31))
	for range 200 {
		v := randUnit(r, 384)
		q := make([]int8, len(v))
		s := quantize(q, v)
		for i, x := range v {
			if d := math.Abs(float64(x) - float64(s)*float64(q[i])); d > float64(s)/2*1.0001 {
				t.Fatalf("component %d: %v quantized to %d*%v, off by %g", i, x, q[i], s, d)
			}
		}
		// The approximate dot product of two vectors stays close to the
		// exact one: what the graph walk relies on.
		w := randUnit(r, 384)
		qw := make([]int8, len(w))
		sw := quantize(qw, w)
		approx := float64(s) * float64(sw) * float64(dotInt8(q, qw))
		if d := math.Abs(approx - float64(Dot(v, w))); d > 0.01 {
			t.Fatalf("approximate dot %g, exact %g", approx, Dot(v, w))
		}
	}
	inf, nan := float32(math.Inf(-1)), float32(math.NaN())
	for _, v := range [][]float32{{0, 0, 0}, {1, inf, 0}, {nan, 0.5, -1}, {nan, nan}} {
		q := make([]int8, len(v))
		s := quantize(q, v)
		if s != s || s > math.MaxFloat32 {
			t.Fatalf("quantize(%v): scale %v", v, s)
		}
		if v[0] != v[0] && q[0] != 0 {
			t.Fatalf("quantize(%v): NaN component became %d", v, q[0])
		}
	}
}

var dotInt8Sink int32

func BenchmarkDotInt8x384(b *testing.B) {
	r := rand.New(rand.NewPCG(23, 23))
	x, y := make([]int8, 384), make([]int8, 384)
	quantize(x, randUnit(r, 384))
	quantize(y, randUnit(r, 384))
	for _, k := range int8Kernels() {
		b.Run("kernel="+k.name, func(b *testing.B) {
			defer useInt8Kernel(b, k)()
			b.SetBytes(2 * 384)
			for b.Loop() {
				dotInt8Sink += dotInt8(x, y)
			}
		})
	}
}

// BenchmarkDotsInt8x384 is the graph walk's batch: the 32 neighbours of a
// layer-0 node, at random rows of a slab of 100,000 384-byte vectors (38 MB,
// far beyond the caches, as in a large graph).
func BenchmarkDotsInt8x384(b *testing.B) {
	const dim, rows, batch = 384, 100_000, 32
	r := rand.New(rand.NewPCG(24, 24))
	slab := make([]int8, dim*rows)
	for i := range slab {
		slab[i] = int8(r.IntN(255) - 127)
	}
	q := make([]int8, dim)
	quantize(q, randUnit(r, dim))
	ptrs := make([][]*int8, 1024)
	for i := range ptrs {
		ptrs[i] = make([]*int8, batch)
		for j := range ptrs[i] {
			ptrs[i][j] = &slab[r.IntN(rows)*dim]
		}
	}
	out := make([]int32, batch)
	for _, k := range int8Kernels() {
		b.Run("kernel="+k.name, func(b *testing.B) {
			defer useInt8Kernel(b, k)()
			b.SetBytes(batch * dim)
			for i := 0; b.Loop(); i++ {
				dotsInt8(q, ptrs[i%len(ptrs)], out)
			}
		})
	}
}

// TestDotsInt8IsDotInt8: the batched kernels give each slot's exact dot
// product, at every dimension (the assembly takes multiples of 32), for
// slots in any order, repeated and at both ends of the slab.
func TestDotsInt8IsDotInt8(t *testing.T) {
	for _, k := range int8Kernels() {
		t.Run(k.name, func(t *testing.T) {
			defer useInt8Kernel(t, k)()
			testDotsInt8(t)
		})
	}
}

func testDotsInt8(t *testing.T) {
	t.Helper()
	r := rand.New(rand.NewPCG(32, 32))
	for _, dim := range []int{1, 12, 31, 32, 48, 64, 96, 160, 384, 416, 1536} {
		const n = 50
		vecs := make([]int8, n*dim)
		for i := range vecs {
			vecs[i] = int8(r.IntN(255) - 127)
		}
		q := make([]int8, dim)
		for i := range q {
			q[i] = int8(r.IntN(255) - 127)
		}
		for _, slots := range [][]uint32{nil, {0}, {n - 1}, {3, 3, 0, n - 1, 17}, {49, 48, 1, 2, 5, 8, 13, 21, 34, 40, 41, 42, 43, 44, 45, 46, 47}} {
			out := make([]int32, len(slots)+1)
			out[len(slots)] = 12345 // not written
			ptrs := make([]*int8, len(slots))
			for i, s := range slots {
				ptrs[i] = &vecs[int(s)*dim]
			}
			dotsInt8(q, ptrs, out)
			for i, s := range slots {
				if want := dotInt8Want(q, vecs[int(s)*dim:int(s+1)*dim]); out[i] != want {
					t.Fatalf("dim %d, slots %v: out[%d] = %d, want %d", dim, slots, i, out[i], want)
				}
			}
			if out[len(slots)] != 12345 {
				t.Fatalf("dim %d: dotsInt8 wrote past its slots", dim)
			}
		}
	}
}

// TestQuantizeRoundsToNearest: every component goes to the nearest step
// (halves away from zero, as math.Round), the largest to ±127.
func TestQuantizeRoundsToNearest(t *testing.T) {
	r := rand.New(rand.NewPCG(33, 33))
	for range 500 {
		v := randUnit(r, 1+r.IntN(400))
		q := make([]int8, len(v))
		s := quantize(q, v)
		inv := 127 / (s * 127)
		for i, x := range v {
			if want := int8(math.Round(float64(x * inv))); q[i] != want && math.Abs(float64(x*inv)-math.Trunc(float64(x*inv))) != 0.5 {
				t.Fatalf("component %v (x%v = %v): quantized to %d, want %d", x, inv, x*inv, q[i], want)
			}
			if q[i] == -128 {
				t.Fatalf("component %v quantized to -128", x)
			}
		}
	}
	q := make([]int8, 4)
	quantize(q, []float32{0.5, -1, 0.25, 1})
	if want := []int8{64, -127, 32, 127}; !slices.Equal(q, want) {
		t.Fatalf("quantize = %v, want %v", q, want)
	}
}

// quantizeRef is quantize written plainly, with a branch per sign.
func quantizeRef(dst []int8, v []float32) float32 {
	var m float32
	for _, x := range v {
		if x < 0 {
			x = -x
		}
		if x > m {
			m = x
		}
	}
	if m == 0 || m > math.MaxFloat32 {
		clear(dst)
		return 0
	}
	inv := 127 / m
	for i, x := range v {
		switch f := x * inv; {
		case f >= 0:
			dst[i] = int8(f + 0.5)
		case f < 0:
			dst[i] = int8(f - 0.5)
		default:
			dst[i] = 0
		}
	}
	return m / 127
}

// TestQuantizeMatchesPlainRounding: the branch-free quantize gives the
// plain version's bytes and scale, halves (which round away from zero),
// negative zero, NaN and the extremes included.
func TestQuantizeMatchesPlainRounding(t *testing.T) {
	r := rand.New(rand.NewPCG(32, 32))
	nan := float32(math.NaN())
	cases := [][]float32{
		{1, -1, 0.5 / 127, -0.5 / 127, 1.5 / 127, -1.5 / 127, 126.5 / 127, -126.5 / 127},
		{float32(math.Copysign(0, -1)), 0.25, -0.25, nan, -1},
		{-1, 0, 0, 0},
		{math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32},
	}
	for range 500 {
		cases = append(cases, randUnit(r, 1+r.IntN(400)))
	}
	for range 100 {
		v := make([]float32, 64)
		for i := range v {
			v[i] = float32(r.IntN(255)-127) / 2 / 127 // many exact halves
		}
		cases = append(cases, v)
	}
	for _, v := range cases {
		got, want := make([]int8, len(v)), make([]int8, len(v))
		gs, ws := quantize(got, v), quantizeRef(want, v)
		if gs != ws || !slices.Equal(got, want) {
			t.Fatalf("quantize(%v) = %v × %v, want %v × %v", v, got, gs, want, ws)
		}
	}
}

func BenchmarkQuantize384(b *testing.B) {
	v := randUnit(rand.New(rand.NewPCG(33, 33)), 384)
	q := make([]int8, len(v))
	for b.Loop() {
		quantize(q, v)
	}
}
