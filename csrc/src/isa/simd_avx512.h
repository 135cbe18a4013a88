/* simd_avx512.h: the vector vocabulary of kernels_simd.inc for AVX-512F
 * (16 floats). Compiled only into isa/kernels_avx512.c. */
#include <immintrin.h>
#include <stdint.h>

#define ISA_NAME "avx512"
#define ISA_SUFFIX(f) f##_avx512
#define VW 16        /* floats per vector */
/* 32 zmm registers. Tile heights compiled (blocking.c picks one by its
 * rule: mr x 2 accumulators + 2 panel vectors + 1 broadcast <= 32, so up to
 * 14; the others are there for the tuning sweep). */
#define VREGS 32
#define GEMM_TILES(X) X(8) X(10) X(12) X(14)
#define GEMM_MR 12   /* the table's tile before blocking.c chooses */

typedef __m512 vf;
typedef __mmask16 vm;

#define vload(p) _mm512_loadu_ps(p)
#define vstore(p, v) _mm512_storeu_ps(p, v)
#define vset1(x) _mm512_set1_ps(x)
#define vzero() _mm512_setzero_ps()
#define vfma(a, b, c) _mm512_fmadd_ps(a, b, c)   /* a*b + c */
#define vfnma(a, b, c) _mm512_fnmadd_ps(a, b, c) /* c - a*b */
#define vadd(a, b) _mm512_add_ps(a, b)
#define vsub(a, b) _mm512_sub_ps(a, b)
#define vmul(a, b) _mm512_mul_ps(a, b)
#define vdiv(a, b) _mm512_div_ps(a, b)
#define vmin(a, b) _mm512_min_ps(a, b)
#define vmax(a, b) _mm512_max_ps(a, b)
#define vabs(a) _mm512_abs_ps(a)
#define vlt(a, b) _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ)
#define vgt(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)
#define visnan(a) _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q)
#define vsel(m, t, f) _mm512_mask_blend_ps(m, f, t) /* m ? t : f */
#define vround_trunc(a) _mm512_cvtepi32_ps(_mm512_cvttps_epi32(a))
/* exp building blocks only AVX-512 has: round to nearest integer, and
 * a * 2^n with IEEE overflow to inf and underflow to 0 */
#define VHAVE_SCALEF 1
#define vround_nearest(a) _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define vscalef(a, n) _mm512_scalef_ps(a, n)
/* 2^n for integral n in [-126, 127], from the float n */
#define vpow2i(n) _mm512_castsi512_ps(_mm512_slli_epi32( \
    _mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(127)), 23))
/* partial vectors through lane masks (kernels_simd.inc: vloadn, vstoren) */
#define VHAVE_PARTIAL 1
#define vlanes(w) ((__mmask16)((1u << (w)) - 1u)) /* w in [1, 16] */
#define vloadn(p, w) _mm512_maskz_loadu_ps(vlanes(w), p)
#define vstoren(p, v, w) _mm512_mask_storeu_ps(p, vlanes(w), v)
/* p[0, w) += lanes of v in double, 8 lanes at a time */
#define VHAVE_ACCD 1
static inline void vaccd(double *p, vf v, int64_t w) {
    const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    const __mmask8 mlo = (__mmask8)(w >= 8 ? 0xffu : (1u << w) - 1u);
    const __mmask8 mhi = (__mmask8)(w >= 16 ? 0xffu : w > 8 ? (1u << (w - 8)) - 1u : 0u);
    _mm512_mask_storeu_pd(p, mlo, _mm512_add_pd(_mm512_maskz_loadu_pd(mlo, p), lo));
    if (mhi) _mm512_mask_storeu_pd(p + 8, mhi, _mm512_add_pd(_mm512_maskz_loadu_pd(mhi, p + 8), hi));
}
