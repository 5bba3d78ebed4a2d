#include "textflag.h"

// func dotAVX2FMA(a, b []float32) float32
//
// Four independent 8-wide FMA accumulators (32 floats per iteration) hide the
// FMA latency; the two loads per FMA are then the limit. Loads are unaligned
// (VMOVUPS and memory operands need no alignment on VEX encodings). Only
// len(a) elements of either slice are read.
TEXT ·dotAVX2FMA(SB), NOSPLIT, $0-52
	MOVQ a_base+0(FP), SI
	MOVQ a_len+8(FP), CX
	MOVQ b_base+24(FP), DI
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	CMPQ CX, $32
	JLT  tail8

loop32:
	VMOVUPS     (SI), Y4
	VMOVUPS     32(SI), Y5
	VMOVUPS     64(SI), Y6
	VMOVUPS     96(SI), Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ        $128, SI
	ADDQ        $128, DI
	SUBQ        $32, CX
	CMPQ        CX, $32
	JGE         loop32

	// 0..31 left: up to three 8-wide steps, each into its own accumulator.
tail8:
	CMPQ        CX, $8
	JLT         reduce
	VMOVUPS     (SI), Y4
	VFMADD231PS (DI), Y4, Y1
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	CMPQ        CX, $8
	JLT         reduce
	VMOVUPS     (SI), Y5
	VFMADD231PS (DI), Y5, Y2
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	CMPQ        CX, $8
	JLT         reduce
	VMOVUPS     (SI), Y6
	VFMADD231PS (DI), Y6, Y3
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $8, CX

	// Fold the four accumulators into the four lanes of X0.
reduce:
	VADDPS       Y1, Y0, Y0
	VADDPS       Y3, Y2, Y2
	VADDPS       Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0

	// 0..7 left: one 4-wide step, then single floats into lane 0.
	CMPQ        CX, $4
	JLT         tail1
	VMOVUPS     (SI), X4
	VFMADD231PS (DI), X4, X0
	ADDQ        $16, SI
	ADDQ        $16, DI
	SUBQ        $4, CX

tail1:
	TESTQ       CX, CX
	JZ          hsum
	VMOVSS      (SI), X4
	VFMADD231SS (DI), X4, X0
	ADDQ        $4, SI
	ADDQ        $4, DI
	DECQ        CX
	JMP         tail1

	// Horizontal sum of the four lanes of X0.
hsum:
	VMOVHLPS  X0, X0, X1
	VADDPS    X1, X0, X0
	VMOVSHDUP X0, X1
	VADDSS    X1, X0, X0
	VZEROUPPER
	MOVSS     X0, ret+48(FP)
	RET

// func dotInt8AVX2(a, b []int8) int32
//
// len(a) is a multiple of 32, and no byte of a is -128. VPMADDUBSW multiplies
// unsigned by signed bytes, so each step multiplies |a| by b carrying a's
// sign (VPABSB, VPSIGNB: a*b = |a| * (sign(a)*b)) and adds adjacent products
// into 16 words (at most 2*127*127 = 32258, no saturation), then adds word
// pairs into 8 dwords (VPMADDWD by ones) and accumulates those; two
// accumulators for 64 bytes per iteration. Integer sums are exact, so the
// order of summation does not matter.
TEXT ·dotInt8AVX2(SB), NOSPLIT, $0-52
	MOVQ     a_base+0(FP), SI
	MOVQ     a_len+8(FP), CX
	MOVQ     b_base+24(FP), DI
	VPXOR    Y0, Y0, Y0
	VPXOR    Y1, Y1, Y1
	VPCMPEQW Y15, Y15, Y15
	VPSRLW   $15, Y15, Y15  // 1 in every word
	CMPQ     CX, $64
	JLT      i8tail

i8loop:
	VMOVDQU    (SI), Y2
	VMOVDQU    (DI), Y3
	VMOVDQU    32(SI), Y4
	VMOVDQU    32(DI), Y5
	VPSIGNB    Y2, Y3, Y3
	VPABSB     Y2, Y2
	VPSIGNB    Y4, Y5, Y5
	VPABSB     Y4, Y4
	VPMADDUBSW Y3, Y2, Y2
	VPMADDUBSW Y5, Y4, Y4
	VPMADDWD   Y15, Y2, Y2
	VPMADDWD   Y15, Y4, Y4
	VPADDD     Y2, Y0, Y0
	VPADDD     Y4, Y1, Y1
	ADDQ       $64, SI
	ADDQ       $64, DI
	SUBQ       $64, CX
	CMPQ       CX, $64
	JGE        i8loop

i8tail:
	CMPQ       CX, $32
	JLT        i8reduce
	VMOVDQU    (SI), Y2
	VMOVDQU    (DI), Y3
	VPSIGNB    Y2, Y3, Y3
	VPABSB     Y2, Y2
	VPMADDUBSW Y3, Y2, Y2
	VPMADDWD   Y15, Y2, Y2
	VPADDD     Y2, Y0, Y0

i8reduce:
	VPADDD       Y1, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPADDD       X1, X0, X0
	VPSHUFD      $0x4e, X0, X1
	VPADDD       X1, X0, X0
	VPSHUFD      $0xb1, X0, X1
	VPADDD       X1, X0, X0
	VMOVD        X0, AX
	VZEROUPPER
	MOVL         AX, ret+48(FP)
	RET

// func dotsInt8AVX2(q []int8, vecs []*int8, out []int32)
//
// out[i] = dot(q, the len(q) bytes at vecs[i]), for every i: the neighbours
// of one node in a graph walk. len(q) is a multiple of 32 and no byte of q is
// -128. The vectors of a large graph are rarely in cache, so every line of
// every vector is prefetched first: their misses then overlap instead of each
// dot product waiting on its own.
TEXT ·dotsInt8AVX2(SB), NOSPLIT, $0-72
	MOVQ q_base+0(FP), R8
	MOVQ q_len+8(FP), R9
	MOVQ vecs_base+24(FP), R11
	MOVQ vecs_len+32(FP), R12
	MOVQ out_base+48(FP), R13
	XORQ BX, BX

prefetch:
	CMPQ BX, R12
	JGE  compute
	MOVQ (R11)(BX*8), SI
	MOVQ R9, CX

prefetchline:
	PREFETCHT0 (SI)
	ADDQ       $64, SI
	SUBQ       $64, CX
	JG         prefetchline
	INCQ       BX
	JMP        prefetch

compute:
	VPCMPEQW Y15, Y15, Y15
	VPSRLW   $15, Y15, Y15 // 1 in every word
	XORQ     BX, BX

next:
	CMPQ  BX, R12
	JGE   done
	MOVQ  (R11)(BX*8), DI
	MOVQ  R8, SI
	MOVQ  R9, CX
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	CMPQ  CX, $64
	JLT   tail

loop:
	VMOVDQU    (SI), Y2
	VMOVDQU    (DI), Y3
	VMOVDQU    32(SI), Y4
	VMOVDQU    32(DI), Y5
	VPSIGNB    Y2, Y3, Y3
	VPABSB     Y2, Y2
	VPSIGNB    Y4, Y5, Y5
	VPABSB     Y4, Y4
	VPMADDUBSW Y3, Y2, Y2
	VPMADDUBSW Y5, Y4, Y4
	VPMADDWD   Y15, Y2, Y2
	VPMADDWD   Y15, Y4, Y4
	VPADDD     Y2, Y0, Y0
	VPADDD     Y4, Y1, Y1
	ADDQ       $64, SI
	ADDQ       $64, DI
	SUBQ       $64, CX
	CMPQ       CX, $64
	JGE        loop

tail:
	CMPQ       CX, $32
	JLT        reduce
	VMOVDQU    (SI), Y2
	VMOVDQU    (DI), Y3
	VPSIGNB    Y2, Y3, Y3
	VPABSB     Y2, Y2
	VPMADDUBSW Y3, Y2, Y2
	VPMADDWD   Y15, Y2, Y2
	VPADDD     Y2, Y0, Y0

reduce:
	VPADDD       Y1, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPADDD       X1, X0, X0
	VPSHUFD      $0x4e, X0, X1
	VPADDD       X1, X0, X0
	VPSHUFD      $0xb1, X0, X1
	VPADDD       X1, X0, X0
	VMOVD        X0, AX
	MOVL         AX, (R13)(BX*4)
	INCQ         BX
	JMP          next

done:
	VZEROUPPER
	RET

// func dotsInt8VNNI(q []int8, vecs []*int8, out []int32)
//
// dotsInt8AVX2's contract, on AVX-512 VNNI: VPDPBUSD multiplies 64 unsigned
// bytes by 64 signed bytes and adds each group of four products into a dword,
// exactly (no saturation, no intermediate words). q is signed, so it is
// biased: q^0x80 is q+128 read as unsigned, and
//     dot(q, v) = dot(q+128, v) - 128*sum(v),
// the second term being VPDPBUSD of 0x80 bytes by v. |sum| < 255*127*len(q)
// fits a dword for any vector the graph holds. len(q) is a multiple of 32: 64
// bytes per step, then at most one 32-byte step. As dotsInt8AVX2, every line
// of every vector is prefetched first.
TEXT ·dotsInt8VNNI(SB), NOSPLIT, $0-72
	MOVQ q_base+0(FP), R8
	MOVQ q_len+8(FP), R9
	MOVQ vecs_base+24(FP), R11
	MOVQ vecs_len+32(FP), R12
	MOVQ out_base+48(FP), R13
	XORQ BX, BX

vprefetch:
	CMPQ BX, R12
	JGE  vcompute
	MOVQ (R11)(BX*8), SI
	MOVQ R9, CX

vprefetchline:
	PREFETCHT0 (SI)
	ADDQ       $64, SI
	SUBQ       $64, CX
	JG         vprefetchline
	INCQ       BX
	JMP        vprefetch

vcompute:
	MOVL         $0x80808080, AX
	VPBROADCASTD AX, Z31 // 0x80 in every byte
	XORQ         BX, BX

vnext:
	CMPQ   BX, R12
	JGE    vdone
	MOVQ   (R11)(BX*8), DI
	MOVQ   R8, SI
	MOVQ   R9, CX
	VPXORD Z0, Z0, Z0 // dot(q+128, v)
	VPXORD Z1, Z1, Z1 // 128*sum(v)
	CMPQ   CX, $64
	JLT    vtail

vloop:
	VMOVDQU8 (DI), Z3
	VPXORD   (SI), Z31, Z2
	VPDPBUSD Z3, Z2, Z0
	VPDPBUSD Z3, Z31, Z1
	ADDQ     $64, SI
	ADDQ     $64, DI
	SUBQ     $64, CX
	CMPQ     CX, $64
	JGE      vloop

vtail:
	CMPQ     CX, $32
	JLT      vreduce
	// 256-bit loads zero the upper halves of Z2 and Z3, whose products
	// then add 0; a 256-bit VPDPBUSD would zero the accumulators' upper
	// halves instead.
	VMOVDQU8 (DI), Y3
	VPXORD   (SI), Y31, Y2
	VPDPBUSD Z3, Z2, Z0
	VPDPBUSD Z3, Z31, Z1

vreduce:
	VPSUBD         Z1, Z0, Z0
	VEXTRACTI64X4  $1, Z0, Y1
	VPADDD         Y1, Y0, Y0
	VEXTRACTI128   $1, Y0, X1
	VPADDD         X1, X0, X0
	VPSHUFD        $0x4e, X0, X1
	VPADDD         X1, X0, X0
	VPSHUFD        $0xb1, X0, X1
	VPADDD         X1, X0, X0
	VMOVD          X0, AX
	MOVL           AX, (R13)(BX*4)
	INCQ           BX
	JMP            vnext

vdone:
	VZEROUPPER
	RET

// func prefetch(p unsafe.Pointer, n uintptr)
//
// Asks for every cache line of the n > 0 bytes at p, without waiting for
// them: PREFETCHT0 of each 64-byte step and of the last byte, so that a
// range straddling one more line than n/64 is covered.
TEXT ·prefetch(SB), NOSPLIT, $0-16
	MOVQ       p+0(FP), AX
	MOVQ       n+8(FP), CX
	LEAQ       -1(AX)(CX*1), DX // the last byte

prefetchstep:
	PREFETCHT0 (AX)
	ADDQ       $64, AX
	CMPQ       AX, DX
	JLE        prefetchstep
	PREFETCHT0 (DX)
	RET

// func countLE(ds []float32, x float32) int
//
// The number of elements of ds no greater than x (NaN counts as greater):
// 16 compared per step into a mask whose bits are counted; the last 0..15
// by a masked load, which reads nothing past the slice.
TEXT ·countLE(SB), NOSPLIT, $0-40
	MOVQ         ds_base+0(FP), SI
	MOVQ         ds_len+8(FP), CX
	VBROADCASTSS x+24(FP), Z0
	XORQ         AX, AX

countstep:
	CMPQ    CX, $16
	JLT     counttail
	VCMPPS  $13, (SI), Z0, K1 // x >= ds[i], ordered
	KMOVW   K1, BX
	POPCNTL BX, BX
	ADDQ    BX, AX
	ADDQ    $64, SI
	SUBQ    $16, CX
	JMP     countstep

counttail:
	TESTQ    CX, CX
	JZ       countdone
	MOVL     $1, BX
	SHLL     CX, BX
	DECL     BX // the low CX bits
	KMOVW    BX, K2
	VMOVUPS.Z (SI), K2, Z1
	VCMPPS   $13, Z1, Z0, K2, K1
	KMOVW    K1, BX
	POPCNTL  BX, BX
	ADDQ     BX, AX

countdone:
	VZEROUPPER
	MOVQ AX, ret+32(FP)
	RET

// func dotInt8VNNI(a, b []int8) int32
//
// dotsInt8VNNI's arithmetic for one pair, without its prefetching and
// pointer table: a is the biased operand. len(a) is a multiple of 32 and the
// caller ensures len(b) >= len(a).
TEXT ·dotInt8VNNI(SB), NOSPLIT, $0-52
	MOVQ         a_base+0(FP), SI
	MOVQ         a_len+8(FP), CX
	MOVQ         b_base+24(FP), DI
	MOVL         $0x80808080, AX
	VPBROADCASTD AX, Z31
	VPXORD       Z0, Z0, Z0
	VPXORD       Z1, Z1, Z1
	CMPQ         CX, $64
	JLT          v1tail

v1loop:
	VMOVDQU8 (DI), Z3
	VPXORD   (SI), Z31, Z2
	VPDPBUSD Z3, Z2, Z0
	VPDPBUSD Z3, Z31, Z1
	ADDQ     $64, SI
	ADDQ     $64, DI
	SUBQ     $64, CX
	CMPQ     CX, $64
	JGE      v1loop

v1tail:
	CMPQ     CX, $32
	JLT      v1reduce
	VMOVDQU8 (DI), Y3 // zeroes the upper half, as in dotsInt8VNNI
	VPXORD   (SI), Y31, Y2
	VPDPBUSD Z3, Z2, Z0
	VPDPBUSD Z3, Z31, Z1

v1reduce:
	VPSUBD        Z1, Z0, Z0
	VEXTRACTI64X4 $1, Z0, Y1
	VPADDD        Y1, Y0, Y0
	VEXTRACTI128  $1, Y0, X1
	VPADDD        X1, X0, X0
	VPSHUFD       $0x4e, X0, X1
	VPADDD        X1, X0, X0
	VPSHUFD       $0xb1, X0, X1
	VPADDD        X1, X0, X0
	VMOVD         X0, AX
	VZEROUPPER
	MOVL          AX, ret+48(FP)
	RET
