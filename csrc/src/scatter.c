/*
 * scatter.c: rows of src added into the rows of dst that an index names,
 * the backward pass of an embedding lookup (x = E[ids]  =>  dE[ids[r]] +=
 * dx[r]):
 *
 *   for r = 0 .. M-1 in order:  dst[index[r], 0:E) += src[r, 0:E)
 *
 * float32 adds in row order, so a row that several r name gets the same sum,
 * bit for bit, as NumPy's np.add.at(dst, index, src). Threads own ranges of
 * dst rows and each scans the whole index for its own: every dst row is
 * still summed by one thread in r order, so the result does not depend on
 * the thread count. Against np.add.at (ufunc.at's per-element loop), 2240
 * rows of 512 into a 10k x 512 gradient (benchmarks/bench_lm.py's
 * embedding), Zen 4, 1 thread, medians of 15: 12.8 -> 1.1 ms.
 */

#include "kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Floats added per thread below which one thread does them all. */
#define SCATTER_MIN_FLOATS_PER_THREAD (1 << 16)

static void scatter_part(int64_t M, int64_t E, const int64_t *index, const float *src,
                         int64_t ld_src, float *dst, int64_t ld_dst, int64_t v0, int64_t v1) {
    for (int64_t r = 0; r < M; r++) {
        const int64_t v = index[r];
        if (v < v0 || v >= v1) continue;
        float *d = dst + v * ld_dst;
        const float *s = src + r * ld_src;
        for (int64_t j = 0; j < E; j++) d[j] += s[j];
    }
}

rnc_status rnc_scatter_add_rows(int64_t M, int64_t E, const int64_t *index, const float *src,
                                int64_t ld_src, float *dst, int64_t V, int64_t ld_dst,
                                int n_threads) {
    if (M < 0 || E < 1 || V < 1 || ld_src < E || ld_dst < E || (M > 0 && (!index || !src)) || !dst)
        return RNC_ERR_INVALID_ARG;
    const int64_t lim = rnc_float_limit();
    if ((M > 0 && rnc_mul_checked(M, ld_src, lim) < 0) || rnc_mul_checked(V, ld_dst, lim) < 0)
        return RNC_ERR_INVALID_ARG;
    for (int64_t r = 0; r < M; r++) /* every index checked before anything is written */
        if (index[r] < 0 || index[r] >= V) return RNC_ERR_INVALID_ARG;
    int nt = rnc_resolve_threads(n_threads);
    const int64_t work = M * E / SCATTER_MIN_FLOATS_PER_THREAD;
    if (nt > work) nt = work > 1 ? (int)work : 1;
    if (nt > V) nt = (int)V;
#ifdef _OPENMP
    if (nt > 1) {
#pragma omp parallel num_threads(nt)
        {
            int64_t v0, v1;
            rnc_split_range(V, omp_get_num_threads(), omp_get_thread_num(), 1, &v0, &v1);
            scatter_part(M, E, index, src, ld_src, dst, ld_dst, v0, v1);
        }
        return RNC_OK;
    }
#endif
    scatter_part(M, E, index, src, ld_src, dst, ld_dst, 0, V);
    return RNC_OK;
}
