/*
 * qkernels_avx2.c: the int8 product on AVX2 (compiled with -mavx2 -mfma;
 * chosen at run time by qdispatch.c), for CPUs without VNNI.
 *
 * vpmaddubsw multiplies unsigned by signed bytes and sums pairs into int16,
 * saturating: on the bytes u = q + 128 that VNNI takes, 255 * 127 * 2 = 64770
 * > 32767. The anchors avoid that with 7-bit activations (reduce_range),
 * which would make this path's integers differ from the others'. Here the
 * sign moves to the weight instead (as ggml's AVX2 dot products do): with
 * q = u - 128 in [-127, 127] and Wq in [-127, 127] (rnc_qpack_weights
 * refuses -128),
 *   vpmaddubsw(|q|, vpsignb(w, q)) = |q| * sign(q) * w = q * w,
 * a pair at most 2 * 127 * 127 = 32258 in magnitude: no saturation, then
 * vpmaddwd by 1 sums the pairs into int32. The kernel returns sum_k q_k
 * Wq[j, k] (offset 0 in the table: the driver subtracts no 128 * colsum), the
 * same integers as every other path. 32 weight bytes (8 outputs x 4 k) make
 * one ymm of 8 whole sums; the 4 activation bytes of a k group, repeated 8
 * times, pair with it.
 *
 * Against the previous kernel (both operands widened to int16, vpmaddwd:
 * 16 multiply-adds per 3 instructions against 32 per 4 here), one row
 * against a 2048 x 512 weight, Zen 3: 41.5 -> 26.0 us (best of 30); a
 * 4-row tile 24.3 -> 19.7 us per row.
 *
 * avx2_7bit (the default table without VNNI): activations quantized to
 * q in [-63, 63] (the anchors' reduce_range), so u' = q + 64 in [1, 127] and
 *   vpmaddubsw(u', w), a pair at most 2 * 127 * 127 = 32258: no saturation
 * and no vpsignb: 32 multiply-adds per 3 instructions. The kernel returns
 * sum_k (q_k + 64) Wq[j, k] (offset 64). On Zen 3 vpsignb shares the two
 * pipes of the integer multiplies; without it a 2 x 2 tile over 60 rows
 * of a 2048 x 512 weight ran 12.6 us a row against 18.1 (the 8-bit 4 x 1
 * tile 18.6; C microbenchmark, best of 30). The 7-bit 4 x 1 tile ran 17.3,
 * so these rows go in pairs. A batch-1 row (1 x 2, 1 MB from L3) is bound
 * by the stream either way: 19.4 against 19.8 us.
 */
#include <immintrin.h>
#include <string.h>

#include "../qkernels.h"
#include "../qrows.inc"

static inline __attribute__((always_inline)) void tile(const int BITS, const int MR,
                                                       const int NP, int64_t Kq,
                                                       const uint8_t *A, int64_t lda,
                                                       const int8_t *W, int64_t ldw,
                                                       int32_t *C, int64_t ldc) {
    __m256i acc[4][2][2]; /* [row][panel][half: outputs 0-7, 8-15] */
    const __m256i ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8((char)0x80);
    const __m256i sixty4 = _mm256_set1_epi8(64);
    for (int m = 0; m < MR; m++)
        for (int p = 0; p < NP; p++)
            for (int h = 0; h < 2; h++) acc[m][p][h] = _mm256_setzero_si256();
    for (int64_t kq = 0; kq < Kq; kq++) {
        __m256i q[4], aq[4];
        for (int m = 0; m < MR; m++) {
            int32_t a4;
            memcpy(&a4, A + m * lda + 4 * kq, 4);
            if (BITS == 7) { /* u - 64 = q + 64 in [1, 127] */
                aq[m] = _mm256_sub_epi8(_mm256_set1_epi32(a4), sixty4);
            } else {
                q[m] = _mm256_xor_si256(_mm256_set1_epi32(a4), flip); /* u - 128 */
                aq[m] = _mm256_abs_epi8(q[m]);
            }
        }
        for (int p = 0; p < NP; p++)
            for (int h = 0; h < 2; h++) {
                const __m256i w = _mm256_loadu_si256(
                    (const __m256i *)(const void *)(W + kq * ldw + p * 64 + 32 * h));
                for (int m = 0; m < MR; m++) {
                    const __m256i pairs =
                        BITS == 7 ? _mm256_maddubs_epi16(aq[m], w)
                              : _mm256_maddubs_epi16(aq[m], _mm256_sign_epi8(w, q[m]));
                    acc[m][p][h] = _mm256_add_epi32(acc[m][p][h], _mm256_madd_epi16(pairs, ones));
                }
            }
    }
    for (int m = 0; m < MR; m++)
        for (int p = 0; p < NP; p++)
            for (int h = 0; h < 2; h++)
                _mm256_storeu_si256((__m256i *)(void *)(C + m * ldc + p * RNC_QPANEL + 8 * h),
                                    acc[m][p][h]);
}

#define TILE(BITS, MR, NP)                                                                  \
    static void tile##BITS##_##MR##_##NP(int64_t Kq, const uint8_t *A, int64_t lda,          \
                                      const int8_t *W, int64_t ldw, int32_t *C,           \
                                      int64_t ldc) {                                      \
        tile(BITS, MR, NP, Kq, A, lda, W, ldw, C, ldc);                                       \
    }
TILE(8, 4, 1)
TILE(8, 2, 2)
TILE(8, 2, 1)
TILE(8, 1, 2)
TILE(8, 1, 1)
TILE(7, 2, 2)
TILE(7, 2, 1)
TILE(7, 1, 2)
TILE(7, 1, 1)

typedef void (*tile_fn)(int64_t, const uint8_t *, int64_t, const int8_t *, int64_t, int32_t *,
                        int64_t);

/* rows in tiles of quad x 1 panel (quad NULL: none), the rest in 2 x 2
 * and 1 x 2 (and a last odd panel alone); each output is one tile's sum
 * whatever M */
static inline __attribute__((always_inline)) void gemm_tiles(
    tile_fn quad, tile_fn t22, tile_fn t21, tile_fn t12, tile_fn t11, int64_t M, int64_t Kq,
    const uint8_t *A, int64_t lda, const int8_t *W, int64_t ldw, int64_t np, int32_t *C,
    int64_t ldc) {
    int64_t m0 = 0;
    for (; quad && m0 + 4 <= M; m0 += 4)
        for (int64_t p = 0; p < np; p++)
            quad(Kq, A + m0 * lda, lda, W + p * 64, ldw, C + m0 * ldc + p * RNC_QPANEL, ldc);
    for (; m0 < M;) {
        const int two = m0 + 2 <= M;
        int64_t p = 0;
        for (; p + 2 <= np; p += 2) {
            const uint8_t *a = A + m0 * lda;
            int32_t *c = C + m0 * ldc + p * RNC_QPANEL;
            if (two) t22(Kq, a, lda, W + p * 64, ldw, c, ldc);
            else t12(Kq, a, lda, W + p * 64, ldw, c, ldc);
        }
        for (; p < np; p++) {
            const uint8_t *a = A + m0 * lda;
            int32_t *c = C + m0 * ldc + p * RNC_QPANEL;
            if (two) t21(Kq, a, lda, W + p * 64, ldw, c, ldc);
            else t11(Kq, a, lda, W + p * 64, ldw, c, ldc);
        }
        m0 += two ? 2 : 1;
    }
}

static void gemm_avx2(int64_t M, int64_t Kq, const uint8_t *A, int64_t lda, const int8_t *W,
                      int64_t ldw, int64_t np, int32_t *C, int64_t ldc) {
    gemm_tiles(tile8_4_1, tile8_2_2, tile8_2_1, tile8_1_2, tile8_1_1, M, Kq, A, lda, W, ldw, np,
               C, ldc);
}

static void gemm_avx2_7bit(int64_t M, int64_t Kq, const uint8_t *A, int64_t lda,
                           const int8_t *W, int64_t ldw, int64_t np, int32_t *C,
                           int64_t ldc) {
    gemm_tiles(NULL, tile7_2_2, tile7_2_1, tile7_1_2, tile7_1_1, M, Kq, A, lda, W, ldw, np, C,
               ldc);
}

static float quantize_row7(int64_t K, const float *v, uint8_t *u) {
    return quantize_row_max(K, v, u, 63.0f);
}

const rnc_qkernels rnc_qkernels_avx2_7bit = {"avx2_7bit", 64, 63, gemm_avx2_7bit, quantize_row7,
                                             dequant_row, NULL};
const rnc_qkernels rnc_qkernels_avx2 = {"avx2", 0, 127, gemm_avx2, quantize_row, dequant_row,
                                        NULL};
