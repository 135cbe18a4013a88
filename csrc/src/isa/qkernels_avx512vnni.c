/*
 * qkernels_avx512vnni.c: the int8 product on AVX-512 VNNI (compiled with
 * -mavx512f -mavx512bw -mavx512vnni; chosen at run time by qdispatch.c).
 *
 * vpdpbusd multiplies 4 unsigned activation bytes by 4 signed weight bytes
 * and adds the 4 products to a 32-bit lane, without saturation: one
 * instruction per 64 weight bytes (16 outputs x 4 k). A tile is MR rows x
 * NP panels of MR*NP zmm accumulators; the 4 activation bytes of a row are
 * broadcast to every lane and shared by the NP panels, each 64-byte weight
 * load by the MR rows. One row gets 8 panels (8 chains in flight: a
 * single chain waits on the instruction's latency), up to 4 rows get 4.
 */
#include <immintrin.h>
#include <string.h>

#include "../qkernels.h"
#include "../qrows.inc"

static inline __attribute__((always_inline)) void tile(const int MR, const int NP, int64_t Kq,
                                                       const uint8_t *A, int64_t lda,
                                                       const int8_t *W, int64_t ldw, int32_t *C,
                                                       int64_t ldc) {
    __m512i acc[4][8];
#pragma GCC unroll 4
    for (int m = 0; m < MR; m++)
#pragma GCC unroll 8
        for (int p = 0; p < NP; p++) acc[m][p] = _mm512_setzero_si512();
    for (int64_t kq = 0; kq < Kq; kq++) {
        __m512i w[8];
#pragma GCC unroll 8
        for (int p = 0; p < NP; p++) w[p] = _mm512_loadu_si512((const void *)(W + kq * ldw + p * 64));
#pragma GCC unroll 4
        for (int m = 0; m < MR; m++) {
            int32_t a4;
            memcpy(&a4, A + m * lda + 4 * kq, 4);
            const __m512i a = _mm512_set1_epi32(a4);
#pragma GCC unroll 8
            for (int p = 0; p < NP; p++) acc[m][p] = _mm512_dpbusd_epi32(acc[m][p], a, w[p]);
        }
    }
#pragma GCC unroll 4
    for (int m = 0; m < MR; m++)
#pragma GCC unroll 8
        for (int p = 0; p < NP; p++)
            _mm512_storeu_si512((void *)(C + m * ldc + p * RNC_QPANEL), acc[m][p]);
}

#define TILE(MR, NP)                                                                          \
    static void tile_##MR##_##NP(int64_t Kq, const uint8_t *A, int64_t lda, const int8_t *W, \
                                 int64_t ldw, int32_t *C, int64_t ldc) {                      \
        tile(MR, NP, Kq, A, lda, W, ldw, C, ldc);                                             \
    }
TILE(1, 8) TILE(1, 4) TILE(1, 2) TILE(1, 1) TILE(2, 4) TILE(2, 1) TILE(3, 4) TILE(3, 1)
TILE(4, 4) TILE(4, 1)

typedef void (*tile_fn)(int64_t, const uint8_t *, int64_t, const int8_t *, int64_t, int32_t *,
                        int64_t);

/* Rows in fours (4 x 4 panels, 16 accumulators), the 1-3 left as 3, 2 or 1
 * rows x 4 panels; a single row takes the widest tile that fits, 8, 4, 2
 * panels (a group's last panels: the layout's groups are 2-8 wide). */
static void gemm_vnni(int64_t M, int64_t Kq, const uint8_t *A, int64_t lda, const int8_t *W,
                      int64_t ldw, int64_t np, int32_t *C, int64_t ldc) {
    static const tile_fn wide[5] = {NULL, tile_1_8, tile_2_4, tile_3_4, tile_4_4};
    static const tile_fn one[5] = {NULL, tile_1_1, tile_2_1, tile_3_1, tile_4_1};
    static const int width[5] = {0, 8, 4, 4, 4};
    for (int64_t m0 = 0; m0 < M; m0 += 4) {
        const int mr = M - m0 < 4 ? (int)(M - m0) : 4;
        const uint8_t *a = A + m0 * lda;
        int32_t *c = C + m0 * ldc;
        int64_t p = 0;
        for (; p + width[mr] <= np; p += width[mr])
            wide[mr](Kq, a, lda, W + p * 64, ldw, c + p * RNC_QPANEL, ldc);
        if (mr == 1 && p + 4 <= np) {
            tile_1_4(Kq, a, lda, W + p * 64, ldw, c + p * RNC_QPANEL, ldc);
            p += 4;
        }
        if (mr == 1 && p + 2 <= np) {
            tile_1_2(Kq, a, lda, W + p * 64, ldw, c + p * RNC_QPANEL, ldc);
            p += 2;
        }
        for (; p < np; p++) one[mr](Kq, a, lda, W + p * 64, ldw, c + p * RNC_QPANEL, ldc);
    }
}

/* One row of NP panels, dequantised as it leaves the registers: qrows.inc's
 * dequant_row lane by lane, (float)(C - offset * colsum) * (sv * sw) (+ bias),
 * the same operations in the same order (no contraction: -std=c99), so the
 * same bits. */
static inline __attribute__((always_inline)) void row_tile(
    const int NP, const int BIAS, int64_t Kq, const uint8_t *a, const int8_t *W, int64_t ldw,
    const int32_t *colsum, int32_t offset, const float *sw, float sv, const float *bias,
    float *out) {
    __m512i acc[8];
#pragma GCC unroll 8
    for (int p = 0; p < NP; p++) acc[p] = _mm512_setzero_si512();
    for (int64_t kq = 0; kq < Kq; kq++) {
        int32_t a4;
        memcpy(&a4, a + 4 * kq, 4);
        const __m512i x = _mm512_set1_epi32(a4);
#pragma GCC unroll 8
        for (int p = 0; p < NP; p++)
            acc[p] = _mm512_dpbusd_epi32(acc[p], x,
                                         _mm512_loadu_si512((const void *)(W + kq * ldw + p * 64)));
    }
    const __m512i off = _mm512_set1_epi32(offset);
    const __m512 s = _mm512_set1_ps(sv);
#pragma GCC unroll 8
    for (int p = 0; p < NP; p++) {
        const __m512i cs = _mm512_loadu_si512((const void *)(colsum + 16 * p));
        const __m512 sums = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[p], _mm512_mullo_epi32(off, cs)));
        __m512 v = _mm512_mul_ps(sums, _mm512_mul_ps(s, _mm512_loadu_ps(sw + 16 * p)));
        if (BIAS) v = _mm512_add_ps(v, _mm512_loadu_ps(bias + 16 * p));
        _mm512_storeu_ps(out + 16 * p, v);
    }
}

#define ROW(NP, BIAS)                                                                           \
    static void row_##NP##_##BIAS(int64_t Kq, const uint8_t *a, const int8_t *W, int64_t ldw,  \
                                  const int32_t *colsum, int32_t offset, const float *sw,      \
                                  float sv, const float *bias, float *out) {                   \
        row_tile(NP, BIAS, Kq, a, W, ldw, colsum, offset, sw, sv, bias, out);                 \
    }
ROW(8, 0) ROW(8, 1) ROW(4, 0) ROW(4, 1) ROW(2, 0) ROW(2, 1) ROW(1, 0) ROW(1, 1)

typedef void (*row_fn)(int64_t, const uint8_t *, const int8_t *, int64_t, const int32_t *, int32_t,
                       const float *, float, const float *, float *);

/* the widest of 8, 4, 2, 1 panels that fits, as gemm_vnni's one row */
static void row_dequant_vnni(int64_t Kq, const uint8_t *a, const int8_t *W, int64_t ldw,
                             int64_t np, const int32_t *colsum, int32_t offset, const float *sw,
                             float sv, const float *bias, float *out) {
    static const row_fn rows[2][4] = {{row_8_0, row_4_0, row_2_0, row_1_0},
                                      {row_8_1, row_4_1, row_2_1, row_1_1}};
    static const int widths[4] = {8, 4, 2, 1};
    int64_t p = 0;
    for (int i = 0; i < 4; i++)
        for (; p + widths[i] <= np; p += widths[i]) {
            const int64_t j = p * RNC_QPANEL;
            rows[bias != NULL][i](Kq, a, W + p * 64, ldw, colsum + j, offset, sw + j, sv,
                                  bias ? bias + j : NULL, out + j);
        }
}

const rnc_qkernels rnc_qkernels_avx512vnni = {"avx512vnni", 128, 127, gemm_vnni, quantize_row,
                                              dequant_row, row_dequant_vnni};
