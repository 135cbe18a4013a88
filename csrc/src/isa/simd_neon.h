/* simd_neon.h: the vector vocabulary of kernels_simd.inc for AArch64
 * Advanced SIMD (NEON, 4 floats; baseline on every AArch64 CPU, so no
 * flags). Compiled only into isa/kernels_neon.c.
 *
 * Semantics follow the x86 headers where kernels_simd.inc relies on them:
 * vmin / vmax use SSE's rule (a < b ? a : b, so the SECOND operand comes
 * back when either is NaN), not FMIN / FMAX (NaN if either is NaN); the
 * comments of kernels_simd.inc (the RNN relu, the exp clamp, the softmax
 * max) are written against that rule. No FSCALE in NEON: the portable exp
 * (VHAVE_SCALEF unset). */
#include <arm_neon.h>

#define ISA_NAME "neon"
#define ISA_SUFFIX(f) f##_neon
#define VW 4
/* 32 vector registers, as AVX-512: 12 x 2 accumulators + 2 panel vectors +
 * 1 broadcast = 27. The tile is 12 x 8 floats (CW = 2 * VW), so a 32-float
 * panel takes four column chunks. */
#define VREGS 32
#define GEMM_TILES(X) X(8) X(12)   /* blocking.c picks 12; 8 for the tuning sweep */
#define GEMM_MR 12   /* the table's tile before blocking.c chooses */

typedef float32x4_t vf;
typedef uint32x4_t vm;

#define vload(p) vld1q_f32(p)
#define vstore(p, v) vst1q_f32(p, v)
#define vset1(x) vdupq_n_f32(x)
#define vzero() vdupq_n_f32(0.0f)
#define vfma(a, b, c) vfmaq_f32(c, a, b)  /* a*b + c, one rounding */
#define vfnma(a, b, c) vfmsq_f32(c, a, b) /* c - a*b, one rounding */
#define vadd(a, b) vaddq_f32(a, b)
#define vsub(a, b) vsubq_f32(a, b)
#define vmul(a, b) vmulq_f32(a, b)
#define vdiv(a, b) vdivq_f32(a, b)
#define vmin(a, b) vbslq_f32(vcltq_f32(a, b), a, b) /* SSE minps: b for NaN */
#define vmax(a, b) vbslq_f32(vcgtq_f32(a, b), a, b) /* SSE maxps: b for NaN */
#define vabs(a) vabsq_f32(a)
#define vlt(a, b) vcltq_f32(a, b)
#define vgt(a, b) vcgtq_f32(a, b)
#define visnan(a) vmvnq_u32(vceqq_f32(a, a))
#define vsel(m, t, f) vbslq_f32(m, t, f) /* m ? t : f */
#define vround_trunc(a) vcvtq_f32_s32(vcvtq_s32_f32(a))
/* 2^n for integral n in [-126, 127], from the float n */
#define vpow2i(n) vreinterpretq_f32_s32(vshlq_n_s32( \
    vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23))
