/*
 * gemm.c: the input projection, C = A B + bias, as a register-tiled loop the
 * compiler vectorises (inner loop over contiguous columns of B and C).
 *
 * Tile: RNC_MR rows of A times RNC_NB columns of B, accumulated over all of K
 * in a local array; the K x RNC_NB panel of B is reused by every row tile.
 */
#include "kernels.h"
#include "activations.h" /* RNC_INLINE */

RNC_INLINE void gemm_tile(int mr, int nb, int64_t K, const float *A, int64_t lda,
                          const float *B, int64_t ldb, const float *bias,
                          float *C, int64_t ldc) {
    float acc[RNC_MR][RNC_NB];
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nb; j++) acc[r][j] = bias ? bias[j] : 0.0f;
    for (int64_t k = 0; k < K; k++) {
        const float *b = B + k * ldb;
        for (int r = 0; r < mr; r++) {
            const float a = A[r * lda + k];
#pragma omp simd
            for (int j = 0; j < nb; j++) acc[r][j] += a * b[j];
        }
    }
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nb; j++) C[r * ldc + j] = acc[r][j];
}

void rnc_gemm_rows(int64_t m0, int64_t m1, int64_t K, int64_t ncol,
                   const float *A, int64_t lda, const float *B, int64_t ldb,
                   const float *bias, float *C, int64_t ldc) {
    for (int64_t j0 = 0; j0 < ncol; j0 += RNC_NB) {
        const int nb = ncol - j0 < RNC_NB ? (int)(ncol - j0) : RNC_NB;
        const float *bj = bias ? bias + j0 : NULL;
        for (int64_t m = m0; m < m1; m += RNC_MR) {
            const int mr = m1 - m < RNC_MR ? (int)(m1 - m) : RNC_MR;
            const float *a = A + m * lda;
            float *c = C + m * ldc + j0;
            if (mr == RNC_MR && nb == RNC_NB) /* full tile: constant trip counts */
                gemm_tile(RNC_MR, RNC_NB, K, a, lda, B + j0, ldb, bj, c, ldc);
            else
                gemm_tile(mr, nb, K, a, lda, B + j0, ldb, bj, c, ldc);
        }
    }
}
