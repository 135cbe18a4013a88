/*
 * softmax.c: softmax and log-softmax over the rows of a matrix (an ONNX
 * graph's Softmax / LogSoftmax over the last axis: a language model's
 * 10k-word head). For a row x of V floats:
 *   1. m = max_j x_j                       (NaN rows: NaN reaches s below)
 *   2. s = sum_j exp(x_j - m)              (every term <= 1: no overflow)
 *   3. softmax:     y_j = exp(x_j - m) / s
 *      log-softmax: y_j = (x_j - m) - log(s)
 * as NumPy computes it in float32 (z = x - max, then exp, sum, log): rows
 * with NaN or +inf, and rows all -inf, come out all NaN; -inf entries give 0
 * (softmax) and -inf (log-softmax). One row at a time, so that passes 2 and
 * 3 read it from cache (a 10k-float row is 40 KB); threads over rows, each
 * row one thread's, so results do not depend on the thread count.
 */
#include "kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Elements per thread below which one thread does all the rows (a fork costs
 * a few microseconds, a row of 2^16 elements about 20). */
#define SOFTMAX_MIN_PER_THREAD (1 << 16)

rnc_status rnc_softmax(int64_t M, int64_t V, const float *x, int64_t ldx, float *y, int64_t ldy,
                       int log_softmax, int n_threads) {
    if (M < 1 || V < 1 || !x || !y || ldx < V || ldy < V) return RNC_ERR_INVALID_ARG;
    const int64_t lim = rnc_float_limit();
    if (rnc_mul_checked(M, ldx, lim) < 0 || rnc_mul_checked(M, ldy, lim) < 0)
        return RNC_ERR_INVALID_ARG;
    { /* only exact in-place overlap is allowed */
        const uintptr_t xa = (uintptr_t)x, ya = (uintptr_t)y;
        const uintptr_t x_end = xa + (uintptr_t)((M - 1) * ldx + V) * sizeof(float);
        const uintptr_t y_end = ya + (uintptr_t)((M - 1) * ldy + V) * sizeof(float);
        if (xa == ya ? ldx != ldy : (ya < x_end && xa < y_end)) return RNC_ERR_INVALID_ARG;
    }
    const rnc_kernels *K = rnc_active_kernels();
    int nt = rnc_resolve_threads(n_threads);
    const int64_t by_work = M * V / SOFTMAX_MIN_PER_THREAD;
    if (nt > by_work) nt = (int)(by_work > 1 ? by_work : 1);
    if (nt > M) nt = (int)M;
    const unsigned int saved_csr = rnc_ftz_begin();
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const unsigned int csr = rnc_ftz_begin();
        int64_t r0, r1;
        rnc_split_range(M, omp_get_num_threads(), omp_get_thread_num(), 1, &r0, &r1);
        for (int64_t r = r0; r < r1; r++)
            K->softmax_row(V, x + r * ldx, y + r * ldy, log_softmax, r + 1 < r1 ? x + (r + 1) * ldx : NULL);
        rnc_ftz_end(csr);
    }
#else
    (void)nt;
    for (int64_t r = 0; r < M; r++)
        K->softmax_row(V, x + r * ldx, y + r * ldy, log_softmax, r + 1 < M ? x + (r + 1) * ldx : NULL);
#endif
    rnc_ftz_end(saved_csr);
    return RNC_OK;
}
