/*
 * linear.c: a linear layer with constant weights, y = x W^T (+ b), W packed
 * once by rnc_pack_weights as a single gate of Nout units (an ONNX graph's
 * MatMul or Gemm initializer, a decoder):
 *
 *   1. for each block of LINEAR_ROWS rows of x: pack them (rnc_pack_a)
 *   2.   for each of this thread's panels of RNC_PANEL outputs:
 *          y[rows, panel] = x_rows . panel (+ b[panel])   (kernels: gemm_panel)
 *
 * or, beyond LINEAR_GEMM_ROWS rows, in the GEMM's blocking on the same
 * packed weights (rnc_gemm_prepacked_part).
 *
 * The weights are read once per row block from their packed panels, instead
 * of being packed again by every call as rnc_gemm does with B: for a 35-row
 * x and a 512 x 10k weight that packing was most of the call (3.6 ms;
 * 20 MB of weights read as they are: about 0.5 ms at this machine's L3 / DRAM
 * bandwidth). Threads own fixed ranges of panels and every output element is
 * one thread's sum in one fixed order: results do not depend on the thread
 * count.
 */
#include <string.h>

#include "kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Rows per packed block of x: a multiple of every ISA's tile height (12, 6,
 * 4), as the forward's GEMM_ROW_BLOCK, so the row tiling is the same for any
 * thread count. */
#define LINEAR_ROWS 48

/* Above this many rows the product runs in the GEMM's order instead
 * (rnc_gemm_prepacked_part: for each group of 16 panels, 1 MB at K = 512,
 * kept in L2, every row block of x packed and swept over it), on the same
 * packed weights: a row block of 48 reads all the weights from L3 or memory
 * for only 24 flops a byte, and from 4 blocks on that cost more than packing
 * x again for each group (x [M, 512] @ [512, 10k], 1 thread, AMD Zen 5:
 * M = 384 31.0 ms in 48-row blocks, 28.0 in the GEMM's order; M = 2240
 * 213 / 165 ms; M = 192 within 5 %). Both orders sum every output in the
 * same order (K chunks of the same kernel), so the switch changes no
 * result. */
#define LINEAR_GEMM_ROWS (4 * LINEAR_ROWS)

static int64_t linear_scratch_floats(int64_t K) {
    /* packed rows of x, one panel of output rows, one panel of bias; or the
     * GEMM's packed block of x and edge panel */
    const int64_t own = rnc_packed_a_floats(LINEAR_ROWS, K) + LINEAR_ROWS * RNC_PANEL + RNC_PANEL;
    const int64_t gemm = rnc_gemm_prepacked_scratch_floats();
    return own > gemm ? own : gemm;
}

size_t rnc_linear_workspace_floats(int64_t K, int n_threads) {
    const int64_t lim = rnc_float_limit();
    if (K < 1 || K > lim / (2 * (LINEAR_ROWS + RNC_MR_MAX))) return 0;
    const int64_t total = rnc_mul_checked(linear_scratch_floats(K), rnc_resolve_threads(n_threads),
                                          lim);
    return total < 0 ? 0 : (size_t)total;
}

static void linear_part(const rnc_kernels *kern, int64_t M, int64_t K, int64_t Nout,
                        const float *x, int64_t ldx, const float *w_p, const float *bias,
                        float *y, int64_t ldy, float *scratch, int part, int parts) {
    const int64_t P = rnc_padded(Nout) / RNC_PANEL;
    int64_t p0, p1;
    rnc_split_range(P, parts, part, 1, &p0, &p1);
    if (p0 >= p1) return;
    float *ap = scratch, *tail = ap + rnc_packed_a_floats(LINEAR_ROWS, K);
    float *tail_bias = tail + LINEAR_ROWS * RNC_PANEL;
    const int64_t last = P - 1, tail_cols = Nout - last * RNC_PANEL;
    if (bias && p1 == P) {  /* the last panel's bias, padded to a whole panel */
        memset(tail_bias, 0, RNC_PANEL * sizeof(float));
        memcpy(tail_bias, bias + last * RNC_PANEL, (size_t)tail_cols * sizeof(float));
    }
    for (int64_t m0 = 0; m0 < M; m0 += LINEAR_ROWS) {
        const int64_t rows = M - m0 < LINEAR_ROWS ? M - m0 : LINEAR_ROWS;
        /* 1. */
        rnc_pack_a(rows, K, (rnc_mat){x + m0 * ldx, ldx, 1}, kern->mr, ap);
        /* 2. */
        for (int64_t p = p0; p < p1; p++) {
            const float *panel = w_p + p * K * RNC_PANEL;
            if (p < last || tail_cols == RNC_PANEL) {
                kern->gemm_panel(rows, K, ap, panel, bias ? bias + p * RNC_PANEL : NULL,
                                 y + m0 * ldy + p * RNC_PANEL, ldy);
            } else {  /* a partial last panel: through a whole-panel buffer */
                kern->gemm_panel(rows, K, ap, panel, bias ? tail_bias : NULL, tail, RNC_PANEL);
                for (int64_t r = 0; r < rows; r++)
                    memcpy(y + (m0 + r) * ldy + p * RNC_PANEL, tail + r * RNC_PANEL,
                           (size_t)tail_cols * sizeof(float));
            }
        }
    }
}

rnc_status rnc_linear(int64_t M, int64_t K, int64_t Nout, const float *x, int64_t ldx,
                      const float *w_p, const float *bias, float *y, int64_t ldy, float *ws,
                      int n_threads) {
    if (M < 1 || K < 1 || Nout < 1 || !x || !w_p || !y || !ws || ldx < K || ldy < Nout ||
        rnc_linear_workspace_floats(K, n_threads) == 0 ||
        rnc_packed_floats(RNC_CELL_RNN_TANH, Nout, K) == 0)
        return RNC_ERR_INVALID_ARG;
    const int64_t lim = rnc_float_limit();
    if (rnc_mul_checked(M, ldx, lim) < 0 || rnc_mul_checked(M, ldy, lim) < 0)
        return RNC_ERR_INVALID_ARG;
    const rnc_kernels *kern = rnc_active_kernels();
    const int64_t P = rnc_padded(Nout) / RNC_PANEL, per = linear_scratch_floats(K);
    /* threads: at most one per 2 M multiply-adds and one per panel */
    int nt = rnc_resolve_threads(n_threads);
    const int64_t by_work = M * K * Nout / (1 << 21);
    if (nt > by_work) nt = (int)(by_work > 1 ? by_work : 1);
    if (nt > P) nt = (int)P;
    const int gemm_order = M > LINEAR_GEMM_ROWS;
    const rnc_mat xm = {x, ldx, 1};
    const unsigned int saved_csr = rnc_ftz_begin();
#ifdef _OPENMP
    if (nt > 1) {
#pragma omp parallel num_threads(nt)
        {
            const unsigned int csr = rnc_ftz_begin();
            const int tid = omp_get_thread_num(), team = omp_get_num_threads();
            if (gemm_order)
                rnc_gemm_prepacked_part(kern, M, Nout, K, xm, w_p, bias, y, ldy, ws + tid * per,
                                        tid, team);
            else
                linear_part(kern, M, K, Nout, x, ldx, w_p, bias, y, ldy, ws + tid * per, tid,
                            team);
            rnc_ftz_end(csr);
        }
    } else
#endif
    if (gemm_order)
        rnc_gemm_prepacked_part(kern, M, Nout, K, xm, w_p, bias, y, ldy, ws, 0, 1);
    else
        linear_part(kern, M, K, Nout, x, ldx, w_p, bias, y, ldy, ws, 0, 1);
#ifndef _OPENMP
    (void)per;
#endif
    rnc_ftz_end(saved_csr);
    return RNC_OK;
}
