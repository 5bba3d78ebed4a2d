#include "textflag.h"

// func addVecAVX2(acc *[100]float32, q *[100]byte, w float32)
//
// acc[k] += w * float32(int8(q[k])) for k < 100: each int8 sign-extended to
// int32 and converted (exactly), multiplied by w, then added to acc[k], in
// that order and rounded after each operation, as the scalar loop does
// (no FMA: a fused multiply-add would round once and give other bits).
TEXT ·addVecAVX2(SB), NOSPLIT, $0-20
	MOVQ         acc+0(FP), DI
	MOVQ         q+8(FP), SI
	VBROADCASTSS w+16(FP), Y0
	MOVQ         $12, CX

loop8:
	VPMOVSXBD (SI), Y1
	VCVTDQ2PS Y1, Y1
	VMULPS    Y0, Y1, Y1
	VADDPS    (DI), Y1, Y1
	VMOVUPS   Y1, (DI)
	ADDQ      $8, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       loop8

	// The last 4.
	VPMOVSXBD (SI), X1
	VCVTDQ2PS X1, X1
	VMULPS    X0, X1, X1
	VADDPS    (DI), X1, X1
	VMOVUPS   X1, (DI)
	VZEROUPPER
	RET
