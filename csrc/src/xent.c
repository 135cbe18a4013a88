/*
 * xent.c: log-softmax + cross-entropy over rows of logits, forward and
 * backward in one pass per row (the output layer of a language model: a 10k
 * vocabulary makes this a third of a training step's memory traffic if it is
 * spread over separate NumPy passes).
 *
 * For a row z of V logits and its target k:
 *   m = max_j z_j,  s = sum_j exp(z_j - m)          (no overflow: every term <= 1)
 *   loss = log(s) + m - z_k                           (= -log softmax(z)_k)
 *   dz_j = scale * (exp(z_j - m) / s - [j == k])     (d loss / dz, scaled)
 * Rows whose target is negative are skipped: loss 0, dz 0 (padding).
 */
#include "kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Rows per thread below which one thread does them all. */
#define XENT_MIN_ROWS_PER_THREAD 8

rnc_status rnc_softmax_xent(int64_t M, int64_t V, const float *z, int64_t ldz,
                            const int64_t *target, float *loss, float *dz, int64_t lddz,
                            float scale, int n_threads) {
    if (M < 1 || V < 1 || !z || !target || !loss || ldz < V || (dz && lddz < V))
        return RNC_ERR_INVALID_ARG;
    if (rnc_mul_checked(M, ldz, rnc_float_limit()) < 0 ||
        (dz && rnc_mul_checked(M, lddz, rnc_float_limit()) < 0))
        return RNC_ERR_INVALID_ARG;
    for (int64_t r = 0; r < M; r++)
        if (target[r] >= V) return RNC_ERR_INVALID_ARG;
    const rnc_kernels *K = rnc_active_kernels();
    int nt = rnc_resolve_threads(n_threads);
    if (nt > M / XENT_MIN_ROWS_PER_THREAD) nt = (int)(M / XENT_MIN_ROWS_PER_THREAD > 1 ? M / XENT_MIN_ROWS_PER_THREAD : 1);
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
#else
    (void)nt;
#endif
    for (int64_t r = 0; r < M; r++) {
        float *dz_r = dz ? dz + r * lddz : NULL;
        if (target[r] < 0) {
            loss[r] = 0.0f;
            for (int64_t j = 0; dz_r && j < V; j++) dz_r[j] = 0.0f;
            continue;
        }
        K->xent_row(V, z + r * ldz, target[r], loss + r, dz_r, scale);
    }
    return RNC_OK;
}
