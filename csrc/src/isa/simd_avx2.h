/* simd_avx2.h: the vector vocabulary of kernels_simd.inc for AVX2 + FMA
 * (8 floats). Compiled only into isa/kernels_avx2.c. */
#include <immintrin.h>
#include <stdint.h>

#define ISA_NAME "avx2"
#define ISA_SUFFIX(f) f##_avx2
#define VW 8
/* 16 ymm registers. Tile heights compiled (blocking.c picks the largest
 * that fits: 6 x 2 accumulators + 2 panel vectors + 1 broadcast = 15); 8
 * and 12 do not fit (19 and 27) and are there for the tuning sweep, which
 * shows what spilling costs. */
#define VREGS 16
#define GEMM_TILES(X) X(4) X(5) X(6) X(8) X(12)
#define GEMM_MR 6   /* the table's tile before blocking.c chooses */

typedef __m256 vf;
typedef __m256 vm;

#define vload(p) _mm256_loadu_ps(p)
#define vstore(p, v) _mm256_storeu_ps(p, v)
#define vset1(x) _mm256_set1_ps(x)
#define vzero() _mm256_setzero_ps()
#define vfma(a, b, c) _mm256_fmadd_ps(a, b, c)
#define vfnma(a, b, c) _mm256_fnmadd_ps(a, b, c)
#define vadd(a, b) _mm256_add_ps(a, b)
#define vsub(a, b) _mm256_sub_ps(a, b)
#define vmul(a, b) _mm256_mul_ps(a, b)
#define vdiv(a, b) _mm256_div_ps(a, b)
#define vmin(a, b) _mm256_min_ps(a, b)
#define vmax(a, b) _mm256_max_ps(a, b)
#define vabs(a) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a)
#define vlt(a, b) _mm256_cmp_ps(a, b, _CMP_LT_OQ)
#define vgt(a, b) _mm256_cmp_ps(a, b, _CMP_GT_OQ)
#define visnan(a) _mm256_cmp_ps(a, a, _CMP_UNORD_Q)
#define vsel(m, t, f) _mm256_blendv_ps(f, t, m)
#define vround_trunc(a) _mm256_cvtepi32_ps(_mm256_cvttps_epi32(a))
#define vpow2i(n) _mm256_castsi256_ps(_mm256_slli_epi32( \
    _mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23))
/* p[0, w) += lanes of v in double: full vectors converted 4 lanes at a time */
#define VHAVE_ACCD 1
static inline void vaccd(double *p, vf v, int64_t w) {
    if (w == VW) {
        _mm256_storeu_pd(p, _mm256_add_pd(_mm256_loadu_pd(p), _mm256_cvtps_pd(_mm256_castps256_ps128(v))));
        _mm256_storeu_pd(p + 4, _mm256_add_pd(_mm256_loadu_pd(p + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))));
        return;
    }
    float tmp[VW];
    vstore(tmp, v);
    for (int64_t i = 0; i < w; i++) p[i] += tmp[i];
}
