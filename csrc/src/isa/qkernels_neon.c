/*
 * qkernels_neon.c: the int8 product on AArch64 Advanced SIMD (baseline
 * Armv8.0: every AArch64 CPU; no flags), for CPUs without the dot-product
 * instructions (Cortex-A53/A72, Graviton 1; qkernels_neon_dotprod.c has
 * the SDOT kernel). Chosen by qdispatch.c with the neon fp32 path.
 *
 * With q = u - 128 in [-127, 127] and Wq in [-127, 127]: SMULL / SMULL2
 * multiply 8 signed byte pairs into int16 (|q w| <= 16129: exact) and
 * SADALP adds neighbouring int16 pairs into int32 lanes: no saturation
 * anywhere, the same integers as every other path (offset 0: the kernel
 * sums q_k Wq[j, k] itself). 16 weight bytes (4 outputs x 4 k) against the
 * 4 activation bytes of a k group repeated 4 times: SMULL takes outputs
 * 4c, 4c+1, SMULL2 outputs 4c+2, 4c+3, and each int32 lane holds half of
 * one output's sum (k = 0,1 or 2,3), added at the end (ADDP).
 */
#include <arm_neon.h>
#include <string.h>

#include "../qkernels.h"
#include "../qrows.inc"

static inline __attribute__((always_inline)) void tile(const int MR, int64_t Kq,
                                                       const uint8_t *A, int64_t lda,
                                                       const int8_t *W, int64_t ldw,
                                                       int32_t *C, int64_t ldc) {
    int32x4_t lo[2][4], hi[2][4]; /* [row][c]: outputs 4c, 4c+1 / 4c+2, 4c+3, two halves each */
    for (int m = 0; m < MR; m++)
        for (int c = 0; c < 4; c++) lo[m][c] = hi[m][c] = vdupq_n_s32(0);
    for (int64_t kq = 0; kq < Kq; kq++) {
        int8x16_t q[2];
        for (int m = 0; m < MR; m++) {
            uint32_t a4;
            memcpy(&a4, A + m * lda + 4 * kq, 4);
            q[m] = vreinterpretq_s8_u8(veorq_u8(vreinterpretq_u8_u32(vdupq_n_u32(a4)), vdupq_n_u8(0x80)));
        }
        for (int c = 0; c < 4; c++) {
            const int8x16_t w = vld1q_s8(W + kq * ldw + 16 * c);
            for (int m = 0; m < MR; m++) {
                lo[m][c] = vpadalq_s16(lo[m][c], vmull_s8(vget_low_s8(w), vget_low_s8(q[m])));
                hi[m][c] = vpadalq_s16(hi[m][c], vmull_high_s8(w, q[m]));
            }
        }
    }
    for (int m = 0; m < MR; m++)
        for (int c = 0; c < 4; c++)
            vst1q_s32(C + m * ldc + 4 * c, vpaddq_s32(lo[m][c], hi[m][c]));
}

static void tile_2(int64_t Kq, const uint8_t *A, int64_t lda, const int8_t *W, int64_t ldw,
                   int32_t *C, int64_t ldc) {
    tile(2, Kq, A, lda, W, ldw, C, ldc);
}
static void tile_1(int64_t Kq, const uint8_t *A, int64_t lda, const int8_t *W, int64_t ldw,
                   int32_t *C, int64_t ldc) {
    tile(1, Kq, A, lda, W, ldw, C, ldc);
}

/* rows in pairs (16 accumulators of 32 registers), a last odd row alone */
static void gemm_neon(int64_t M, int64_t Kq, const uint8_t *A, int64_t lda, const int8_t *W,
                      int64_t ldw, int64_t np, int32_t *C, int64_t ldc) {
    for (int64_t m0 = 0; m0 < M; m0 += 2)
        for (int64_t p = 0; p < np; p++) {
            const uint8_t *a = A + m0 * lda;
            int32_t *c = C + m0 * ldc + p * RNC_QPANEL;
            if (m0 + 2 <= M) tile_2(Kq, a, lda, W + p * 64, ldw, c, ldc);
            else tile_1(Kq, a, lda, W + p * 64, ldw, c, ldc);
        }
}

const rnc_qkernels rnc_qkernels_neon = {"neon", 0, 127, gemm_neon, quantize_row, dequant_row, NULL};
