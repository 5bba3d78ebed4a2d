package graph

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// haveAVX2FMA records whether this CPU can run dotAVX2FMA, before any test
// switches useAVX2FMA.
var haveAVX2FMA = useAVX2FMA

// dotKernel is one implementation Dot can run.
type dotKernel struct {
	name string
	asm  bool
}

// dotKernels lists the kernels this CPU can run, the portable one first.
func dotKernels() []dotKernel {
	ks := []dotKernel{{"go", false}}
	if haveAVX2FMA {
		ks = append(ks, dotKernel{"avx2fma", true})
	}
	return ks
}

// useKernel makes Dot run k until the returned function restores the CPU's
// choice. Tests using it must not run in parallel.
func useKernel(tb testing.TB, k dotKernel) (restore func()) {
	tb.Helper()
	if k.asm && !haveAVX2FMA {
		tb.Skip("CPU lacks AVX2 or FMA")
	}
	useAVX2FMA = k.asm
	return func() { useAVX2FMA = haveAVX2FMA }
}

func skipWithoutAsm(tb testing.TB) {
	tb.Helper()
	if !haveAVX2FMA {
		tb.Skip("CPU lacks AVX2 or FMA: only the portable kernel runs")
	}
}

// termScale is sum |a[i]*b[i]| in float64: the scale against which both
// kernels' rounding errors are bounded, whatever cancels in the sum itself.
func termScale(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += math.Abs(float64(a[i]) * float64(b[i]))
	}
	return s
}

// checkClose fails unless the two kernels' results for a and b agree within
// rel of the terms' scale (plus a few subnormal units for products that
// underflow differently with and without a fused multiply-add).
func checkClose(t *testing.T, a, b []float32, rel float64, what string) {
	t.Helper()
	asm, ref := dotAVX2FMA(a, b), dotGeneric(a, b)
	tol := rel*termScale(a, b) + float64(len(a)+1)*0x1p-149
	if d := math.Abs(float64(asm) - float64(ref)); !(d <= tol) {
		t.Fatalf("%s, len %d: avx2fma %v, go %v: differ by %g > %g", what, len(a), asm, ref, d, tol)
	}
}

// padded returns a slice of n values from gen starting at offset off of a
// larger slice whose other elements are NaN: a kernel that reads outside
// [off, off+n) and uses the value returns NaN. Extra further elements are
// left visible at the end (b longer than a).
func padded(n, off, extra int, gen func(i int) float32) []float32 {
	buf := make([]float32, off+n+extra+8)
	for i := range buf {
		buf[i] = float32(math.NaN())
	}
	for i := range n {
		buf[off+i] = gen(i)
	}
	return buf[off : off+n+extra]
}

func testLengths() []int {
	var ns []int
	for n := range 71 {
		ns = append(ns, n)
	}
	return append(ns, 384, 1536)
}

func TestDotKernelsAgree(t *testing.T) {
	skipWithoutAsm(t)
	r := rand.New(rand.NewPCG(20, 20))
	for _, n := range testLengths() {
		for off := range 8 {
			normal := func(int) float32 { return float32(r.NormFloat64()) }
			a := padded(n, off, 0, normal)
			b := padded(n, (off*3+1)%8, off, normal) // b longer than a by off
			checkClose(t, a, b, 1e-5, "normal")

			// Small integers: every product and partial sum is exact, so
			// the kernels must agree exactly with the integer dot product;
			// an element skipped or counted twice shows here.
			ia := padded(n, 7-off, 0, func(int) float32 { return float32(r.IntN(17) - 8) })
			ib := padded(n, off, 3, func(int) float32 { return float32(r.IntN(17) - 8) })
			var want int
			for i := range n {
				want += int(ia[i]) * int(ib[i])
			}
			if got, ref := dotAVX2FMA(ia, ib), dotGeneric(ia, ib); got != float32(want) || ref != float32(want) {
				t.Fatalf("integers, len %d, offset %d: avx2fma %v, go %v, want %d", n, off, got, ref, want)
			}

			// One-hot: only element i contributes.
			if n > 0 {
				i := r.IntN(n)
				oh := padded(n, off, 0, func(j int) float32 { return float32(min(1, max(0, 1-(j-i)*(j-i)))) })
				if got := dotAVX2FMA(oh, b); got != b[i] {
					t.Fatalf("one-hot %d of %d: got %v, want %v", i, n, got, b[i])
				}
			}
		}
	}
}

func TestDotKernelsAgreeRandom(t *testing.T) {
	skipWithoutAsm(t)
	r := rand.New(rand.NewPCG(21, 21))
	for range 2000 {
		n := r.IntN(600)
		scale := math.Pow(2, float64(r.IntN(40)-20))
		gen := func(int) float32 { return float32(r.NormFloat64() * scale) }
		a := padded(n, r.IntN(8), 0, gen)
		b := padded(n, r.IntN(8), r.IntN(20), gen)
		checkClose(t, a, b, 1e-5, "random")
	}
	// Unit vectors, as the graph compares them.
	for range 200 {
		checkClose(t, randUnit(r, 384), randUnit(r, 384), 1e-5, "unit")
	}
}

// TestDotUsesSelectedKernel: Dot runs whichever kernel is selected, and keeps
// its contract (b cut to len(a), a short b panics) with either.
func TestDotUsesSelectedKernel(t *testing.T) {
	r := rand.New(rand.NewPCG(22, 22))
	a, b := randUnit(r, 100), randUnit(r, 103)
	for _, k := range dotKernels() {
		t.Run(k.name, func(t *testing.T) {
			defer useKernel(t, k)()
			want := dotGeneric(a, b[:100])
			if k.asm {
				want = dotAVX2FMA(a, b[:100])
			}
			if got := Dot(a, b); got != want {
				t.Fatalf("Dot = %v, want %v", got, want)
			}
			if got := Dot(nil, nil); got != 0 {
				t.Fatalf("Dot(nil, nil) = %v", got)
			}
			defer func() {
				if recover() == nil {
					t.Fatal("Dot with len(b) < len(a) did not panic")
				}
			}()
			Dot(b, a[:100:100])
		})
	}
}

func FuzzDot(f *testing.F) {
	le := func(vs ...float32) []byte {
		var out []byte
		for _, v := range vs {
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v))
		}
		return out
	}
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	f.Add(le(), uint8(0))
	f.Add(le(1, 2, 3, 4, 5, 6, 7, 8, 9), uint8(1))
	f.Add(le(1, -1, inf, 2, 3, 0), uint8(2))
	f.Add(le(nan, 1, 2, 3), uint8(3))
	f.Add(le(math.MaxFloat32, 2, math.MaxFloat32, -2), uint8(4))
	f.Add(le(0x1p-140, 0x1p-10, 1e-30, 1e-20, -0x1p-149, 3), uint8(5))
	f.Add(make([]byte, 8*77), uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, off uint8) {
		skipWithoutAsm(t)
		// The first half of the floats is a, the rest (as long or one
		// longer) b, both placed at an offset of 0..7 floats.
		vs := make([]float32, len(data)/4)
		for i := range vs {
			vs[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
		}
		n := len(vs) / 2
		o := int(off % 8)
		a := padded(n, o, 0, func(i int) float32 { return vs[i] })
		b := padded(len(vs)-n, 7-o, 0, func(i int) float32 { return vs[n+i] })
		asm, ref := dotAVX2FMA(a, b), dotGeneric(a, b)
		for i := range n {
			if a[i] != a[i] || b[i] != b[i] {
				// NaN propagates whatever the order of summation.
				if asm == asm || ref == ref {
					t.Fatalf("NaN input: avx2fma %v, go %v, want NaN from both", asm, ref)
				}
				return
			}
		}
		// Infinite inputs, or terms so large that a partial sum may
		// overflow in one order and not the other, have no common answer.
		if s := termScale(a, b); !(s <= math.MaxFloat32/4) {
			return
		}
		// Each kernel's error is below about (terms per accumulator +
		// reduction steps) units of rounding of the scale; the generic
		// kernel's chains are the longer, len/4 plus a few.
		checkClose(t, a, b, max(1e-5, float64(n+32)*0x1p-24), "fuzz")
	})
}

var dotSink float32

func BenchmarkDot384(b *testing.B) {
	r := rand.New(rand.NewPCG(23, 23))
	x, y := randUnit(r, 384), randUnit(r, 384)
	for _, k := range dotKernels() {
		b.Run("kernel="+k.name, func(b *testing.B) {
			defer useKernel(b, k)()
			b.SetBytes(2 * 4 * 384)
			for b.Loop() {
				dotSink += Dot(x, y)
			}
		})
	}
}
