/*
 * qkernels_neon_dotprod.c: the int8 product with the Armv8.2 dot-product
 * instructions (FEAT_DotProd: Graviton 2/3/4, Ampere Altra, Apple M1 and
 * later, Cortex-A76 and later), compiled with -march=armv8.2-a+dotprod and
 * chosen by qdispatch.c only where the CPU reports them (Linux AT_HWCAP
 * HWCAP_ASIMDDP, macOS hw.optional.arm.FEAT_DotProd), unless
 * RNNCORE_DISABLE_ISA names "neon_dotprod". (GCC 12 cannot inline
 * vdotq_s32 into a function marked target("+dotprod"): hence a file of its
 * own, as kernels_avx512.c.)
 *
 * SDOT adds four signed byte products into each int32 lane: 16 weight bytes
 * (4 outputs x 4 k) against the 4 activation bytes q = u - 128 of a k group
 * repeated 4 times give the 4 outputs' sums over that group exactly (|sum|
 * <= 4 * 127 * 127). Offset 0, the same integers as every other path.
 */
#include <arm_neon.h>
#include <string.h>

#include "../qkernels.h"
#include "../qrows.inc"

static inline __attribute__((always_inline)) void tile(const int MR, const int NP, int64_t Kq,
                                                       const uint8_t *A, int64_t lda,
                                                       const int8_t *W, int64_t ldw,
                                                       int32_t *C, int64_t ldc) {
    int32x4_t acc[4][2][4]; /* [row][panel][c]: outputs 4c .. 4c+3 */
    for (int m = 0; m < MR; m++)
        for (int p = 0; p < NP; p++)
            for (int c = 0; c < 4; c++) acc[m][p][c] = vdupq_n_s32(0);
    for (int64_t kq = 0; kq < Kq; kq++) {
        int8x16_t q[4];
        for (int m = 0; m < MR; m++) {
            uint32_t a4;
            memcpy(&a4, A + m * lda + 4 * kq, 4);
            q[m] = vreinterpretq_s8_u8(veorq_u8(vreinterpretq_u8_u32(vdupq_n_u32(a4)), vdupq_n_u8(0x80)));
        }
        for (int p = 0; p < NP; p++)
            for (int c = 0; c < 4; c++) {
                const int8x16_t w = vld1q_s8(W + kq * ldw + p * 64 + 16 * c);
                for (int m = 0; m < MR; m++) acc[m][p][c] = vdotq_s32(acc[m][p][c], w, q[m]);
            }
    }
    for (int m = 0; m < MR; m++)
        for (int p = 0; p < NP; p++)
            for (int c = 0; c < 4; c++) vst1q_s32(C + m * ldc + p * RNC_QPANEL + 4 * c, acc[m][p][c]);
}

#define TILE(MR, NP)                                                                     \
    static void tile_##MR##_##NP(int64_t Kq, const uint8_t *A, int64_t lda,             \
                                 const int8_t *W, int64_t ldw, int32_t *C, int64_t ldc) { \
        tile(MR, NP, Kq, A, lda, W, ldw, C, ldc);                                          \
    }
TILE(4, 1)
TILE(1, 2)
TILE(1, 1)

/* rows in tiles of 4 x 1 panel (16 accumulators of 32), the 1-3 left one by
 * one over pairs of panels */
static void gemm_dotprod(int64_t M, int64_t Kq, const uint8_t *A, int64_t lda, const int8_t *W,
                         int64_t ldw, int64_t np, int32_t *C, int64_t ldc) {
    int64_t m0 = 0;
    for (; m0 + 4 <= M; m0 += 4)
        for (int64_t p = 0; p < np; p++)
            tile_4_1(Kq, A + m0 * lda, lda, W + p * 64, ldw, C + m0 * ldc + p * RNC_QPANEL, ldc);
    for (; m0 < M; m0++) {
        int64_t p = 0;
        for (; p + 2 <= np; p += 2)
            tile_1_2(Kq, A + m0 * lda, lda, W + p * 64, ldw, C + m0 * ldc + p * RNC_QPANEL, ldc);
        for (; p < np; p++)
            tile_1_1(Kq, A + m0 * lda, lda, W + p * 64, ldw, C + m0 * ldc + p * RNC_QPANEL, ldc);
    }
}

const rnc_qkernels rnc_qkernels_neon_dotprod = {"neon_dotprod", 0, 127, gemm_dotprod, quantize_row,
                                                 dequant_row, NULL};
