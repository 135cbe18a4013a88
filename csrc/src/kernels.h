/*
 * kernels.h: internal interfaces between the forward driver (fwd.c), the
 * GEMM (gemm.c) and the recurrent step (step.c). Not part of the public API.
 */
#ifndef RNC_KERNELS_H
#define RNC_KERNELS_H

#include "rnncore.h"

/* Register tile of both GEMMs: RNC_MR rows x up to RNC_NB columns. */
#define RNC_MR 4
#define RNC_NB 64
/* Hidden units per tile of the recurrent step (per gate). */
#define RNC_UB 16

/*
 * C[m, j] = bias[j] + sum_k A[m, k] * B[k, j]  for rows m in [m0, m1), j < ncol.
 * A rows at A + m*lda (K floats), B rows at B + k*ldb (ncol floats), C rows at
 * C + m*ldc. bias may be NULL (zeros).
 */
void rnc_gemm_rows(int64_t m0, int64_t m1, int64_t K, int64_t ncol,
                   const float *A, int64_t lda, const float *B, int64_t ldb,
                   const float *bias, float *C, int64_t ldc);

/* Everything one recurrent step reads and writes, for all N batch rows. */
typedef struct {
    rnc_cell cell;
    int64_t N, H, G;
    const float *h_prev; int64_t ld_hprev; /* row n at h_prev + n*ld_hprev  */
    const float *gx;     int64_t ld_gx;    /* input projection incl. folded biases */
    float *y;            int64_t ld_y;     /* output h_t                     */
    float *c;                              /* LSTM: [N, H] c_prev in, c_t out */
    const float *w_hh_t;                   /* [H, G*H]                        */
    const float *b_hn;                     /* GRU: [H] recurrent n-gate bias, or NULL */
} rnc_step;

/* One time step for hidden units [u0, u1) of every gate and every batch row:
 * recurrent GEMM tile, then the fused element-wise update. */
void rnc_step_units(const rnc_step *s, int64_t u0, int64_t u1);

#endif /* RNC_KERNELS_H */
