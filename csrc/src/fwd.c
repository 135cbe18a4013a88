/*
 * fwd.c: forward pass of one layer-direction over a whole sequence.
 *
 *   0. bias_x = b_ih + b_hh (GRU: the n block takes b_in only; b_hn stays
 *      inside the reset product)
 *   1. gx = X W_ih^T + bias_x   one GEMM over all T*N rows, in x's row order
 *   2. for each step t (reversed when a->reverse):
 *        h_t, c_t = cell(gx_t, h_{t-1}, c_{t-1})   see step.c
 *      h_t is written straight into y; h_{t-1} is read back from y.
 *   3. h_n = h at the last step, c_n = c at the last step.
 *
 * Threads: one OpenMP team for the whole call. Step 1 splits rows; step 2 gives
 * each thread a fixed slice of hidden units for the whole sequence (its slice
 * of W_hh stays in its cache), with one barrier per step. Every output element
 * is computed by one thread in a fixed order, so results do not depend on the
 * thread count.
 *
 * Workspace (floats): gx [T*N*G*H] | bias_x [G*H] | c [N*H] | zeros [N*H]
 */
#include <string.h>

#include "kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Rows of x per work item of the input GEMM. */
#define GEMM_ROW_BLOCK 16
/* Below this many multiply-adds per recurrent step a barrier costs more than
 * the work it shares, so the call runs on one thread. */
#define MIN_STEP_MACS_PER_THREAD 16384

int rnc_cell_gates(rnc_cell cell) {
    switch (cell) {
    case RNC_CELL_RNN_TANH:
    case RNC_CELL_RNN_RELU: return 1;
    case RNC_CELL_LSTM: return 4;
    case RNC_CELL_GRU: return 3;
    }
    return 0;
}

/* a * b for non-negative a, b, or -1 when it exceeds limit. */
static int64_t mul_checked(int64_t a, int64_t b, int64_t limit) {
    if (a < 0 || b < 0) return -1;
    if (a != 0 && b > limit / a) return -1;
    return a * b;
}

/* Largest float count we hand out: bytes must fit in both size_t and int64. */
static int64_t float_limit(void) {
    const uint64_t by_size = (uint64_t)SIZE_MAX / sizeof(float);
    const uint64_t by_i64 = (uint64_t)INT64_MAX / sizeof(float);
    return (int64_t)(by_size < by_i64 ? by_size : by_i64);
}

size_t rnc_fwd_workspace_floats(const rnc_dims *d) {
    if (!d || d->T < 1 || d->N < 1 || d->I < 1 || d->H < 1) return 0;
    const int G = rnc_cell_gates(d->cell);
    if (G == 0) return 0;
    const int64_t lim = float_limit();
    const int64_t gh = mul_checked(G, d->H, lim);
    const int64_t rows = mul_checked(d->T, d->N, lim);
    const int64_t gx = mul_checked(rows, gh, lim);
    const int64_t nh = mul_checked(d->N, d->H, lim);
    /* the input and recurrent weights must be addressable too */
    if (gh < 0 || gx < 0 || nh < 0 || mul_checked(gh, d->I, lim) < 0 ||
        mul_checked(gh, d->H, lim) < 0 || mul_checked(rows, d->I, lim) < 0)
        return 0;
    if (gx > lim - gh - 2 * nh) return 0;
    return (size_t)(gx + gh + 2 * nh);
}

static int choose_threads(const rnc_dims *d, int G, int n_threads) {
#ifdef _OPENMP
    int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    const int64_t macs = d->N * G * d->H * d->H;
    const int64_t by_work = macs / MIN_STEP_MACS_PER_THREAD;
    const int64_t by_units = (d->H + RNC_UB - 1) / RNC_UB;
    if (nt > by_work) nt = (int)(by_work > 1 ? by_work : 1);
    if (nt > by_units) nt = (int)by_units;
    return nt;
#else
    (void)d; (void)G; (void)n_threads;
    return 1;
#endif
}

/* [lo, hi) of `total` split into `parts`, boundaries on multiples of `align`. */
static void split_range(int64_t total, int parts, int part, int64_t align,
                        int64_t *lo, int64_t *hi) {
    const int64_t blocks = (total + align - 1) / align;
    int64_t b0 = blocks * part / parts, b1 = blocks * (part + 1) / parts;
    *lo = b0 * align < total ? b0 * align : total;
    *hi = b1 * align < total ? b1 * align : total;
}

rnc_status rnc_forward(const rnc_dims *d, const rnc_fwd_args *a, int n_threads) {
    if (!d || !a) return RNC_ERR_INVALID_ARG;
    const int G = rnc_cell_gates(d->cell);
    if (G == 0) return RNC_ERR_UNSUPPORTED;
    if (rnc_fwd_workspace_floats(d) == 0) return RNC_ERR_INVALID_ARG;
    if (!a->x || !a->w_ih_t || !a->w_hh_t || !a->y || !a->ws || a->ldy < d->H)
        return RNC_ERR_INVALID_ARG;
    if (d->cell != RNC_CELL_LSTM && (a->c0 || a->c_n)) return RNC_ERR_INVALID_ARG;

    const int64_t T = d->T, N = d->N, I = d->I, H = d->H, GH = G * H;
    /* row(t, n) = t * row_t + n * row_n */
    const int64_t row_t = a->batch_first ? 1 : N, row_n = a->batch_first ? T : 1;

    float *gx = a->ws;
    float *bias_x = gx + T * N * GH;
    float *c = bias_x + GH;
    float *zeros = c + N * H;

    /* 0. folded biases */
    for (int64_t j = 0; j < GH; j++) {
        const int recurrent_in_gx = d->cell != RNC_CELL_GRU || j < 2 * H;
        bias_x[j] = (a->b_ih ? a->b_ih[j] : 0.0f) +
                    (a->b_hh && recurrent_in_gx ? a->b_hh[j] : 0.0f);
    }
    memset(zeros, 0, (size_t)(N * H) * sizeof(float));
    if (d->cell == RNC_CELL_LSTM) {
        if (a->c0) memcpy(c, a->c0, (size_t)(N * H) * sizeof(float));
        else memset(c, 0, (size_t)(N * H) * sizeof(float));
    }

    const int64_t M = T * N;
    const int64_t row_blocks = (M + GEMM_ROW_BLOCK - 1) / GEMM_ROW_BLOCK;
    const int nt = choose_threads(d, G, n_threads);

#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
#ifdef _OPENMP
        const int tid = omp_get_thread_num(), team = omp_get_num_threads();
#else
        const int tid = 0, team = 1;
        (void)nt;
#endif
        /* 1. input projection */
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t b = 0; b < row_blocks; b++) {
            const int64_t m0 = b * GEMM_ROW_BLOCK;
            const int64_t m1 = m0 + GEMM_ROW_BLOCK < M ? m0 + GEMM_ROW_BLOCK : M;
            rnc_gemm_rows(m0, m1, I, GH, a->x, I, a->w_ih_t, GH, bias_x, gx, GH);
        }
        /* (implicit barrier: gx complete) */

        /* 2. recurrence: this thread's hidden units for the whole sequence */
        int64_t u0, u1;
        split_range(H, team, tid, RNC_UB, &u0, &u1);
        rnc_step s = {d->cell, N, H, G, NULL, 0, NULL, 0, NULL, 0, c, a->w_hh_t,
                      d->cell == RNC_CELL_GRU && a->b_hh ? a->b_hh + 2 * H : NULL};
        for (int64_t step = 0; step < T; step++) {
            const int64_t t = a->reverse ? T - 1 - step : step;
            const int64_t t_prev = a->reverse ? t + 1 : t - 1;
            if (step == 0) {
                s.h_prev = a->h0 ? a->h0 : zeros;
                s.ld_hprev = H;
            } else {
                s.h_prev = a->y + t_prev * row_t * a->ldy;
                s.ld_hprev = row_n * a->ldy;
            }
            s.gx = gx + t * row_t * GH;
            s.ld_gx = row_n * GH;
            s.y = a->y + t * row_t * a->ldy;
            s.ld_y = row_n * a->ldy;
            if (u0 < u1) rnc_step_units(&s, u0, u1);
#ifdef _OPENMP
#pragma omp barrier
#endif
        }
    }

    /* 3. final states */
    const int64_t t_last = a->reverse ? 0 : T - 1;
    if (a->h_n)
        for (int64_t n = 0; n < N; n++)
            memcpy(a->h_n + n * H, a->y + (t_last * row_t + n * row_n) * a->ldy,
                   (size_t)H * sizeof(float));
    if (a->c_n) memcpy(a->c_n, c, (size_t)(N * H) * sizeof(float));
    return RNC_OK;
}

rnc_status rnc_pack_weight(int64_t rows, int64_t cols, const float *src, float *dst) {
    if (!src || !dst || rows < 1 || cols < 1 || mul_checked(rows, cols, float_limit()) < 0)
        return RNC_ERR_INVALID_ARG;
    for (int64_t j = 0; j < rows; j++)
        for (int64_t k = 0; k < cols; k++) dst[k * rows + j] = src[j * cols + k];
    return RNC_OK;
}
