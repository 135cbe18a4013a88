/*
 * qkernels_avx2.c: the int8 product on AVX2 (compiled with -mavx2 -mfma;
 * chosen at run time by qdispatch.c), for CPUs without VNNI.
 *
 * vpmaddubsw (u8 x s8 pairs summed into int16) saturates: 255 * 127 * 2 =
 * 64770 > 32767; the anchors avoid that with 7-bit activations
 * (reduce_range), which would make this path's integers differ from the
 * VNNI path's. Here both operands are widened to int16 instead
 * (vpmovsxbw / vpmovzxbw) and multiplied by vpmaddwd, whose pair sums are
 * int32: exact for any input, the same integers as every other path.
 * 16 weight bytes (4 outputs x 4 k) widen to one ymm; the 4 activation
 * bytes of a row, widened and repeated, pair with it, so each 32-bit lane
 * holds half of one output's sum (k = 0,1 or 2,3 of each group): the two
 * halves are added at the end. A tile is MR rows x NP panels (4 ymm per
 * panel and row; 16 registers: MR*NP <= 2).
 */
#include <immintrin.h>
#include <string.h>

#include "../qkernels.h"

static inline __attribute__((always_inline)) void tile(const int MR, const int NP, int64_t Kq,
                                                       const uint8_t *A, int64_t lda,
                                                       const int8_t *W, int32_t *C, int64_t ldc) {
    __m256i acc[2][2][4];
    const int64_t wstride = Kq * 64;
    for (int m = 0; m < MR; m++)
        for (int p = 0; p < NP; p++)
            for (int c = 0; c < 4; c++) acc[m][p][c] = _mm256_setzero_si256();
    for (int64_t kq = 0; kq < Kq; kq++) {
        __m256i a[2];
        for (int m = 0; m < MR; m++) {
            int32_t a4;
            memcpy(&a4, A + m * lda + 4 * kq, 4);
            a[m] = _mm256_cvtepu8_epi16(_mm_set1_epi32(a4));
        }
        for (int p = 0; p < NP; p++)
            for (int c = 0; c < 4; c++) {
                const __m256i w = _mm256_cvtepi8_epi16(
                    _mm_loadu_si128((const __m128i *)(const void *)(W + p * wstride + kq * 64 + 16 * c)));
                for (int m = 0; m < MR; m++)
                    acc[m][p][c] = _mm256_add_epi32(acc[m][p][c], _mm256_madd_epi16(w, a[m]));
            }
    }
    for (int m = 0; m < MR; m++)
        for (int p = 0; p < NP; p++)
            for (int c = 0; c < 4; c++) {
                /* lanes (2j, 2j+1) are the two halves of output 4c + j */
                int32_t h[8];
                _mm256_storeu_si256((__m256i *)(void *)h, acc[m][p][c]);
                int32_t *out = C + m * ldc + p * RNC_QPANEL + 4 * c;
                for (int j = 0; j < 4; j++) out[j] = h[2 * j] + h[2 * j + 1];
            }
}

static void tile_1_2(int64_t Kq, const uint8_t *A, int64_t lda, const int8_t *W, int32_t *C,
                     int64_t ldc) {
    tile(1, 2, Kq, A, lda, W, C, ldc);
}
static void tile_1_1(int64_t Kq, const uint8_t *A, int64_t lda, const int8_t *W, int32_t *C,
                     int64_t ldc) {
    tile(1, 1, Kq, A, lda, W, C, ldc);
}
static void tile_2_1(int64_t Kq, const uint8_t *A, int64_t lda, const int8_t *W, int32_t *C,
                     int64_t ldc) {
    tile(2, 1, Kq, A, lda, W, C, ldc);
}

static void gemm_avx2(int64_t M, int64_t Kq, const uint8_t *A, int64_t lda, const int8_t *W,
                      int64_t np, int32_t *C, int64_t ldc) {
    const int64_t wstride = Kq * 64;
    int64_t m0 = 0;
    for (; m0 + 2 <= M; m0 += 2)
        for (int64_t p = 0; p < np; p++)
            tile_2_1(Kq, A + m0 * lda, lda, W + p * wstride, C + m0 * ldc + p * RNC_QPANEL, ldc);
    if (m0 < M) {
        int64_t p = 0;
        for (; p + 2 <= np; p += 2)
            tile_1_2(Kq, A + m0 * lda, lda, W + p * wstride, C + m0 * ldc + p * RNC_QPANEL, ldc);
        for (; p < np; p++)
            tile_1_1(Kq, A + m0 * lda, lda, W + p * wstride, C + m0 * ldc + p * RNC_QPANEL, ldc);
    }
}

const rnc_qkernels rnc_qkernels_avx2 = {"avx2", gemm_avx2};
