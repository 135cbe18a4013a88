/*
 * qlinear.c: the int8 building blocks shared by every CPU path (row
 * quantisation, dequantisation, weight packing; the scheme is stated in
 * rnncore_int8.h and the packed layout in qkernels.h), the generic C
 * product, and rnc_qlinear, a linear layer on int8 weights (a language
 * model's decoder):
 *
 *   1. every row of x quantized (rows split over the team), barrier
 *   2. for each of this thread's int8 panels of outputs, row blocks of
 *      QLINEAR_ROWS: int32 products (kernels: gemm), dequantised into y.
 *
 * Integer sums are exact, so results do not depend on the thread count or
 * the CPU path; only the float dequantisation rounds, in one fixed order.
 */
#include <math.h>
#include <string.h>

#include "qkernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define QLINEAR_ROWS 64

#include "qrows.inc"

size_t rnc_qpacked_bytes(int64_t G, int64_t H, int64_t K) {
    if (G < 1 || G > 4 || H < 1 || K < 1 || K > RNC_Q_MAX_K || H > ((int64_t)1 << 40)) return 0;
    const int64_t rows = G * rnc_padded(H);
    const int64_t panels = rnc_mul_checked(rows, 4 * rnc_qk(K), INT64_MAX / 2);
    if (panels < 0 || (uint64_t)panels + 8 * (uint64_t)rows > (uint64_t)SIZE_MAX) return 0;
    return (size_t)(panels + 8 * rows);
}

rnc_status rnc_qpack_weights(int64_t G, int64_t H, int64_t K, const int8_t *wq,
                             const float *scale, uint8_t *dst) {
    if (!wq || !scale || !dst || rnc_qpacked_bytes(G, H, K) == 0) return RNC_ERR_INVALID_ARG;
    const int64_t Hp = rnc_padded(H), Kq = rnc_qk(K), Pg = Hp / RNC_QPANEL;
    for (int64_t i = 0; i < G * H; i++)
        if (!(scale[i] >= 0.0f && scale[i] <= 3.40282347e38f)) return RNC_ERR_INVALID_ARG;
    for (int64_t i = 0; i < G * H * K; i++)
        if (wq[i] == -128) return RNC_ERR_INVALID_ARG;
    int8_t *panels = (int8_t *)dst;
    memset(dst, 0, rnc_qpacked_bytes(G, H, K));
    int32_t colsum[1]; /* written through memcpy: dst need not be 4-byte aligned */
    float sw[1];
    uint8_t *cs = dst + rnc_qpanel_bytes(G, H, K), *sc = cs + 4 * G * Hp;
    for (int64_t g = 0; g < G; g++)
        for (int64_t u = 0; u < H; u++) {
            const int8_t *row = wq + (g * H + u) * K;
            int64_t ldw, left;
            int8_t *panel = panels + rnc_qgroup_offset(Pg, Kq, g, u / RNC_QPANEL, &ldw, &left);
            const int64_t j = u % RNC_QPANEL;
            int32_t s = 0;
            for (int64_t k = 0; k < K; k++) {
                panel[(k / 4) * ldw + j * 4 + k % 4] = row[k];
                s += row[k];
            }
            colsum[0] = s;
            sw[0] = scale[g * H + u];
            memcpy(cs + 4 * (g * Hp + u), colsum, 4);
            memcpy(sc + 4 * (g * Hp + u), sw, 4);
        }
    return RNC_OK;
}

/* The generic path's product: plain loops (the reference of the SIMD ones). */
static void gemm_generic(int64_t M, int64_t Kq, const uint8_t *A, int64_t lda, const int8_t *W,
                         int64_t ldw, int64_t np, int32_t *C, int64_t ldc) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t p = 0; p < np; p++) {
            int32_t acc[RNC_QPANEL] = {0};
            const int8_t *w = W + p * 4 * RNC_QPANEL;
            const uint8_t *a = A + m * lda;
            for (int64_t kq = 0; kq < Kq; kq++)
                for (int j = 0; j < RNC_QPANEL; j++)
                    for (int r = 0; r < 4; r++)
                        acc[j] += (int32_t)a[4 * kq + r] * w[kq * ldw + j * 4 + r];
            memcpy(C + m * ldc + p * RNC_QPANEL, acc, sizeof acc);
        }
}

const rnc_qkernels rnc_qkernels_generic = {"generic", 128, 127, gemm_generic, quantize_row,
                                           dequant_row, NULL};

/* ---------------------------------------------------------------- rnc_qlinear */

/* Panels per product call: one group of the packed layout (8 x 16
 * outputs), so that a one-row product (a generation step's decoder) takes
 * the kernels' widest one-row tile, 8 independent sums in flight, rather
 * than one chain of dependent adds. */
#define QLINEAR_PANELS RNC_QGROUP

/* Workspace: quantized rows [M][Kp] | scales [M] | per thread, int32
 * [QLINEAR_ROWS][QLINEAR_PANELS * RNC_QPANEL]. */
static int64_t qrow_bytes(int64_t K) { return 4 * rnc_qk(K); }
#define QBLOCK_INTS (QLINEAR_ROWS * QLINEAR_PANELS * RNC_QPANEL)

size_t rnc_qlinear_workspace_bytes(int64_t M, int64_t K, int n_threads) {
    if (M < 1 || K < 1 || K > RNC_Q_MAX_K) return 0;
    const int64_t rows = rnc_mul_checked(M, qrow_bytes(K) + 4, INT64_MAX / 4);
    if (rows < 0) return 0;
    return (size_t)(rows + 64 + (int64_t)rnc_resolve_threads(n_threads) * QBLOCK_INTS * 4);
}

rnc_status rnc_qlinear(int64_t M, int64_t K, int64_t Nout, const float *x, int64_t ldx,
                       const uint8_t *w_q, const float *bias, float *y, int64_t ldy,
                       int32_t *acc, float *x_scale, void *ws, int n_threads) {
    if (M < 1 || K < 1 || Nout < 1 || !x || !w_q || !y || !ws || ldx < K || ldy < Nout ||
        rnc_qlinear_workspace_bytes(M, K, n_threads) == 0 || rnc_qpacked_bytes(1, Nout, K) == 0 ||
        ((uintptr_t)w_q & 3) || ((uintptr_t)ws & 3))
        return RNC_ERR_INVALID_ARG;
    const int64_t lim = rnc_float_limit();
    if (rnc_mul_checked(M, ldx, lim) < 0 || rnc_mul_checked(M, ldy, lim) < 0 ||
        rnc_mul_checked(M, Nout, lim) < 0)
        return RNC_ERR_INVALID_ARG;
    const rnc_qkernels *qk = rnc_active_qkernels();
    const int64_t Kq = rnc_qk(K), lda = qrow_bytes(K);
    const int64_t P = (Nout + RNC_QPANEL - 1) / RNC_QPANEL; /* panels with outputs */
    const int64_t Pp = rnc_padded(Nout) / RNC_QPANEL;        /* ... and packed */
    uint8_t *qx = (uint8_t *)ws;
    float *sx = (float *)(void *)(qx + ((M * lda + 63) / 64) * 64);
    int32_t *blocks = (int32_t *)(void *)(sx + M);
    const int8_t *panels = rnc_qpanels(w_q);
    const int32_t *colsum = rnc_qcolsum(w_q, 1, Nout, K);
    const float *sw = rnc_qscale(w_q, 1, Nout, K);
    int nt = rnc_resolve_threads(n_threads);
    const int64_t by_work = M * K * Nout / (1 << 22);
    if (nt > by_work) nt = (int)(by_work > 1 ? by_work : 1);
    const int64_t groups = (P + RNC_QGROUP - 1) / RNC_QGROUP;
    if (nt > groups) nt = (int)groups; /* threads take whole groups of panels */
    const unsigned int saved_csr = rnc_ftz_begin();
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
#ifdef _OPENMP
        const int tid = omp_get_thread_num(), team = omp_get_num_threads();
#else
        const int tid = 0, team = 1;
#endif
        const unsigned int csr = rnc_ftz_begin();
        int64_t r0, r1, p0, p1;
        rnc_split_range(M, team, tid, 1, &r0, &r1);
        for (int64_t m = r0; m < r1; m++) sx[m] = qk->quantize_row(K, x + m * ldx, qx + m * lda);
#ifdef _OPENMP
#pragma omp barrier
#endif
        rnc_split_range(P, team, tid, RNC_QGROUP, &p0, &p1);
        int32_t *C = blocks + (int64_t)tid * QBLOCK_INTS;
        const int64_t ldc = QLINEAR_PANELS * RNC_QPANEL;
        for (int64_t p = p0, np; p < p1; p += np) {
            int64_t ldw;
            const int8_t *w = rnc_qgroup_panel(panels, Pp, Kq, 0, p, &ldw, &np);
            if (np > p1 - p) np = p1 - p;
            const int64_t j0 = p * RNC_QPANEL;
            const int64_t cols = Nout - j0 < np * RNC_QPANEL ? Nout - j0 : np * RNC_QPANEL;
            for (int64_t m0 = 0; m0 < M; m0 += QLINEAR_ROWS) {
                const int64_t rows = M - m0 < QLINEAR_ROWS ? M - m0 : QLINEAR_ROWS;
                if (rows == 1 && !acc && qk->row_dequant && cols == np * RNC_QPANEL) {
                    qk->row_dequant(Kq, qx + m0 * lda, w, ldw, np, colsum + j0, qk->offset,
                                    sw + j0, sx[m0], bias ? bias + j0 : NULL, y + m0 * ldy + j0);
                    continue; /* (a generation step's decoder row: the whole panels fused) */
                }
                qk->gemm(rows, Kq, qx + m0 * lda, lda, w, ldw, np, C, ldc);
                for (int64_t r = 0; r < rows; r++) {
                    const int64_t m = m0 + r;
                    qk->dequant_row(cols, C + r * ldc, colsum + j0, qk->offset, sw + j0, sx[m],
                                    bias ? bias + j0 : NULL, y + m * ldy + j0);
                    if (acc)
                        for (int64_t j = 0; j < cols; j++)
                            acc[m * Nout + j0 + j] = C[r * ldc + j] - qk->offset * colsum[j0 + j];
                }
            }
        }
        rnc_ftz_end(csr);
    }
    if (x_scale) memcpy(x_scale, sx, (size_t)M * sizeof(float));
    rnc_ftz_end(saved_csr);
    return RNC_OK;
}
