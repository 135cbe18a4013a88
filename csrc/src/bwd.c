/*
 * bwd.c: backward pass (BPTT) of one layer-direction, after a forward pass
 * that filled a tape (the activated gates of every step, see kernels.h).
 *
 * For every cell kind: the cell's backward equations are in
 * isa/cells/<cell>.inc (cell.backward, per step, from the last processed
 * step back to the first), what this driver needs to know of the cell in
 * rnc_cell_info (cells.c). Per step, with dh the total gradient reaching h_t
 * (dy_t plus what flows back from step t+1), the cell gives dGx (the
 * gradient of the gates' input-side pre-activation W_ih x + b), dGh (the
 * state side, its own buffer for cells with distinct_dgh, else dGx), the
 * running bias sums and its direct part of dh_prev; then
 *   dh_prev (+)= dGh_t W_hh                    one packed GEMM per step
 * (a split cell: q = dG_last W_last, then cell.backward_split, then the
 * other gates' product; two barriers). With an LSTM projection (h_t =
 * W_hr m_t, m_t = o * tanh(c_t), R state units) the cell's dh is dm = dh_t
 * W_hr, one more packed GEMM a step (and a second barrier), and dW_hr +=
 * dh^T M after the loop. After the loop, over all T*N rows at once:
 *   dx = dGx W_ih     dW_ih += dGx^T X     dW_hh += dGh^T H_prev
 *   (a split cell's last gate: dW_last += dG_last^T S, S the tape's s_t)
 *   db_ih += sum_rows dGx                  db_hh += sum_rows dGh
 *
 * Threads: one OpenMP team. As in the forward, each thread owns a fixed slice
 * of hidden-unit panels: the element-wise pass of its units and the columns
 * of dh_prev for those units, so one barrier per step publishes dG_t. The
 * whole-sequence GEMMs then split their output columns (rnc_gemm_part). Every
 * element has one summation order whatever the team size, so the results are
 * identical for every thread count.
 *
 * Workspace (floats, 8-byte aligned; R the state width, rnc_state_width):
 *   bias sums [2*G*H doubles] | zeros [max(Hp, Rp)]
 *   | wT [Rp*G*H] (W_hh packed as panels of dh_prev columns)
 *   | dGx [T*N*G*H] | dGh [T*N*G*H] (distinct_dgh only) | h_prev [T*N*R]
 *   | dh [N*Rp] | dc [N*Hp] | q [N*Hp] (split cells: dG_last W_last; projection: dm)
 *   | packed dGh_t [2 * packed N x G*H]
 *   | projection: W_hr panels [Hp*R] | dh_t [T*N*R] | m_t [T*N*H] | packed dh_t
 *   | per thread: GEMM blocks.
 * Rows of dGx, dGh and h_prev are in the row order of x (see rnncore.h).
 */
#include <stdint.h>
#include <string.h>

#include "kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct {
    int64_t bsum, zeros, wT, dgx, dgh, hprev, dh, dc, q, apack, whr, dht, mrows, dpack, per_thread;
} bwd_layout;

/* Sizes of the workspace parts, or -1 in per_thread on overflow. */
static bwd_layout layout(const rnc_dims *d, int team) {
    bwd_layout l = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -1};
    const int G = rnc_cell_gates(d->cell);
    const int64_t lim = rnc_float_limit();
    const int64_t Hp = rnc_padded(d->H), GH = G * d->H;
    const int64_t R = rnc_state_width(d), Rp = rnc_padded(R);
    const int64_t rows = rnc_mul_checked(d->T, d->N, lim);
    /* bias sums (2 x GH doubles) and peephole sums (3 x H doubles), first in
     * ws (8-byte aligned) */
    l.bsum = 2 * (2 * GH + 3 * d->H);
    l.zeros = Hp > Rp ? Hp : Rp;
    l.wT = rnc_mul_checked(Rp, GH, lim);
    l.dgx = rnc_mul_checked(rows, GH, lim);
    l.dgh = rnc_cell_info_of(d->cell)->distinct_dgh ? l.dgx : 0;
    l.hprev = rnc_mul_checked(rows, R, lim);
    l.dh = rnc_mul_checked(d->N, Rp, lim);
    l.dc = l.q = rnc_mul_checked(d->N, Hp, lim); /* q: a split cell's dG_last W_last, or dm */
    l.apack = rnc_mul_checked(2 * (d->N + RNC_MR_MAX), GH, lim); /* two steps' packed dGh */
    if (d->proj > 0) {
        l.whr = rnc_mul_checked(Hp, R, lim);
        l.dht = l.hprev;
        l.mrows = rnc_mul_checked(rows, d->H, lim);
        l.dpack = rnc_mul_checked(d->N + RNC_MR_MAX, R, lim);
    }
    if (l.wT < 0 || l.dgx < 0 || l.hprev < 0 || l.dh < 0 || l.dc < 0 || l.apack < 0 ||
        l.whr < 0 || l.mrows < 0 || l.dpack < 0)
        return l;
    const int64_t scratch = rnc_gemm_scratch_floats();
    l.per_thread = rnc_mul_checked(scratch, team, lim) < 0 ? -1 : scratch;
    return l;
}

size_t rnc_bwd_workspace_floats(const rnc_dims *d, int n_threads) {
    if (rnc_fwd_workspace_floats(d, n_threads) == 0) return 0; /* dims valid, x/W addressable */
    const int G = rnc_cell_gates(d->cell);
    const int team = rnc_step_threads(d, G, n_threads);
    const bwd_layout l = layout(d, team);
    if (l.per_thread < 0) return 0;
    const int64_t parts[] = {l.bsum, l.zeros, l.wT, l.dgx, l.dgh, l.hprev, l.dh, l.dc, l.q,
                             l.apack, l.whr, l.dht, l.mrows, l.dpack, l.per_thread * team};
    const int64_t lim = rnc_float_limit();
    int64_t total = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (parts[i] > lim - total) return 0;
        total += parts[i];
    }
    return (size_t)total;
}

static rnc_status check_args(const rnc_dims *d, const rnc_bwd_args *a) {
    if (!a->x || !a->w_ih || !a->w_hh || !a->y || !a->dw_ih || !a->dw_hh || !a->ws)
        return RNC_ERR_INVALID_ARG;
    const int64_t R = rnc_state_width(d);
    if (a->ldy < R || (a->dy && a->lddy < R) || (a->dx && a->lddx < d->I))
        return RNC_ERR_INVALID_ARG;
    if ((d->proj > 0) != (a->w_hr != NULL) || (d->proj > 0) != (a->dw_hr != NULL))
        return RNC_ERR_INVALID_ARG;
    const rnc_cell_info *cell = rnc_cell_info_of(d->cell);
    if ((cell->tape_slots > 0) != (a->tape != NULL)) return RNC_ERR_INVALID_ARG;
    if (!cell->has_c && (a->c0 || a->dc_n || a->dc0)) return RNC_ERR_INVALID_ARG;
    if (!cell->has_c && (a->peephole || a->input_forget || a->dpeephole)) return RNC_ERR_INVALID_ARG;
    if ((a->peephole != NULL) != (a->dpeephole != NULL)) return RNC_ERR_INVALID_ARG;
    if (rnc_check_lengths(a->lengths, d->T, d->N, a->batch_first, a->reverse)) return RNC_ERR_INVALID_ARG;
    return RNC_OK;
}

/* What every thread of a backward call shares. */
typedef struct {
    const rnc_dims *d;
    const rnc_bwd_args *a;
    const rnc_kernels *K;
    const rnc_cell_info *cell;
    int G;
    bwd_layout l;
    const rnc_bwd_step *s;
    float *wT, *dgx, *dgh, *hprev, *dh, *dc, *q, *apack, *scratch;
    float *whr, *dht, *mrows, *dpack, *zeros; /* the projection's (see the top) */
    const double *bsum_x, *bsum_h, *psum;
} bwd_team;

/* Steps 0-3 for thread `tid` of `team` (see the top of this file). */
static void backward_thread(const bwd_team *x, int tid, int team) {
    const rnc_dims *d = x->d;
    const rnc_bwd_args *a = x->a;
    const rnc_kernels *K = x->K;
    const rnc_cell_kernels *ck = &K->cell[d->cell];
    const rnc_cell_info *cell = x->cell;
    const int G = x->G;
    const bwd_layout l = x->l;
    const int64_t T = d->T, N = d->N, I = d->I, H = d->H;
    const int64_t Hp = rnc_padded(H), P = Hp / RNC_PANEL, GH = G * H;
    const int64_t row_t = a->batch_first ? 1 : N, row_n = a->batch_first ? T : 1;
    float *wT = x->wT, *dgx = x->dgx, *dgh = x->dgh, *hprev = x->hprev, *dh = x->dh, *dc = x->dc;
    float *q = x->q;
    float *apack = x->apack, *scratch = x->scratch;
    const double *bsum_x = x->bsum_x, *bsum_h = x->bsum_h, *psum = x->psum;
    const unsigned int saved_csr = rnc_ftz_begin();
    float *my = scratch + tid * l.per_thread;
    int64_t p0, p1;
    rnc_split_range(P, team, tid, 1, &p0, &p1);
    const int64_t u0 = p0 * RNC_PANEL, u1 = p1 * RNC_PANEL < H ? p1 * RNC_PANEL : H;
    const int64_t R = rnc_state_width(d), Rp = rnc_padded(R);
    const int proj = d->proj > 0;
    int64_t q0, q1; /* its panels of state units (the same as p0, p1 without a projection) */
    rnc_split_range(Rp / RNC_PANEL, team, tid, 1, &q0, &q1);
    const int64_t v0 = q0 * RNC_PANEL, v1 = q1 * RNC_PANEL < R ? q1 * RNC_PANEL : R;

    /* 0. this thread's units: W_hh (W_hr) panels, h_prev rows, incoming
     * gradients. W_hh is packed here, per call, as panels of dh_prev columns
     * (the transpose of the forward's panels, which a GEMM over dGh_t cannot
     * read as B): rnc_pack_b_panel measured 0.06 % of an lstm h512 n64 t35
     * backward (perf, avx512), so neither a cached second packing nor a
     * dot-product kernel over the forward's panels would pay. */
    const rnc_mat w_hh = {a->w_hh, R, 1}; /* B of dh_prev = dGh_t W_hh: [GH, R] */
    for (int64_t qp = q0; qp < q1; qp++)
        rnc_pack_b_panel(GH, R, w_hh, 0, qp * RNC_PANEL, wT + qp * GH * RNC_PANEL);
    for (int64_t p = p0; p < p1 && proj; p++) /* B of dm = dh_t W_hr: [R, H] */
        rnc_pack_b_panel(R, H, (rnc_mat){a->w_hr, H, 1}, 0, p * RNC_PANEL, x->whr + p * R * RNC_PANEL);
    for (int64_t t = 0; t < T; t++) {
        const int first = a->reverse ? t == T - 1 : t == 0;
        const int64_t t_prev = a->reverse ? t + 1 : t - 1;
        for (int64_t n = 0; n < N; n++) {
            float *dst = hprev + (t * row_t + n * row_n) * R;
            const float *src = first ? (a->h0 ? a->h0 + n * R : NULL)
                                     : a->y + (t_prev * row_t + n * row_n) * a->ldy;
            if (v1 > v0) {
                if (src) memcpy(dst + v0, src + v0, (size_t)(v1 - v0) * sizeof(float));
                else memset(dst + v0, 0, (size_t)(v1 - v0) * sizeof(float));
            }
        }
    }
    for (int64_t n = 0; n < N && v1 > v0; n++) { /* padding [R, Rp) stays 0 */
        memset(dh + n * Rp + v0, 0, (size_t)(q1 * RNC_PANEL - v0) * sizeof(float));
        if (a->dh_n) memcpy(dh + n * Rp + v0, a->dh_n + n * R + v0, (size_t)(v1 - v0) * sizeof(float));
    }
    for (int64_t n = 0; n < N && u1 > u0; n++) { /* padding [H, Hp) stays 0 */
        memset(dc + n * Hp + u0, 0, (size_t)(p1 * RNC_PANEL - u0) * sizeof(float));
        if (a->dc_n) memcpy(dc + n * Hp + u0, a->dc_n + n * H + u0, (size_t)(u1 - u0) * sizeof(float));
    }

    /* 1. the reverse time loop. Each thread packs the dGh_t columns of
     * its own units right after computing them (in cache), into a buffer
     * shared by the team: packing all of dGh_t in every thread took 8% of
     * an lstm h256 training step. Two buffers alternate, so that a
     * thread's next step never overwrites what a slower one still reads. */
    const int64_t half = l.apack / 2;
    const int64_t T_run = a->lengths ? a->lengths[0] : T; /* later steps have no rows */
    for (int64_t step = T_run - 1; step >= 0; step--) {
        const int64_t t = a->reverse ? T - 1 - step : step;
        const int64_t t_prev = a->reverse ? t + 1 : t - 1;
        /* with lengths, rows [0, M) run at this step; the others keep their
         * dh_n (dc_n) until their own last step comes */
        const int64_t M = rnc_active_rows(a->lengths, N, step);
        float *packed = apack + (step & 1) * half;
        const int need_dh = step > 0 || a->dh0;
        if (cell->split_last) { /* three phases, two barriers */
            const int64_t KL = (G - 1) * H; /* the columns of the gates before the last */
            float *pn = apack, *prest = apack + rnc_packed_a_floats(N, H);
            const rnc_mat rows_t = {dgx + t * row_t * GH, row_n * GH, 1};
            if (u1 > u0) {
                ck->backward(x->s, t, step == 0, t_prev, M, u0, u1);
                rnc_pack_a_cols(M, H, u0, u1, (rnc_mat){rows_t.p + KL, rows_t.rs, 1}, K->mr, pn);
            }
#ifdef _OPENMP
#pragma omp barrier
#endif
            for (int64_t p = p0; p < p1; p++) /* q = dG_last W_last */
                K->gemm_panel(M, H, pn, wT + (p * GH + KL) * RNC_PANEL, NULL, q + p * RNC_PANEL, Hp);
            if (u1 > u0) {
                ck->backward_split(x->s, t, q, M, u0, u1);
                for (int64_t g = 0; g < G - 1 && need_dh; g++)
                    rnc_pack_a_cols(M, KL, g * H + u0, g * H + u1, rows_t, K->mr, prest);
            }
#ifdef _OPENMP
#pragma omp barrier
#endif
            for (int64_t p = p0; p < p1 && need_dh; p++) /* dh_prev += dG_rest W_rest */
                K->gemm_panel_acc(M, KL, prest, wT + p * GH * RNC_PANEL, dh + p * RNC_PANEL, Hp);
            continue;
        }
        if (proj) {
            /* 2'. dh_t = dh + dy_t for this thread's state units, kept for
             * dW_hr and packed; then dm = dh_t W_hr for its cell units */
            for (int64_t n = 0; n < M && v1 > v0; n++) {
                const int64_t row = t * row_t + n * row_n;
                const float *dyr = a->dy ? a->dy + row * a->lddy : x->zeros;
                float *dst = x->dht + row * R;
                const float *dhn = dh + n * Rp;
                for (int64_t v = v0; v < v1; v++) dst[v] = dhn[v] + dyr[v];
            }
            if (v1 > v0)
                rnc_pack_a_cols(M, R, v0, v1, (rnc_mat){x->dht + t * row_t * R, row_n * R, 1},
                                K->mr, x->dpack);
#ifdef _OPENMP
#pragma omp barrier
#endif
            for (int64_t p = p0; p < p1; p++)
                K->gemm_panel(M, R, x->dpack, x->whr + p * R * RNC_PANEL, NULL, q + p * RNC_PANEL, Hp);
        }
        if (u1 > u0) { /* (with a projection the cell also writes m_t rows, for dW_hr) */
            ck->backward(x->s, t, step == 0, t_prev, M, u0, u1);
            const rnc_mat rows_t = {dgh + t * row_t * GH, row_n * GH, 1};
            for (int64_t g = 0; g < G && need_dh; g++)
                rnc_pack_a_cols(M, GH, g * H + u0, g * H + u1, rows_t, K->mr, packed);
        }
#ifdef _OPENMP
#pragma omp barrier
#endif
        if (need_dh && q1 > q0) { /* dh_prev = dGh_t W_hh (+ the cell's direct part) */
            for (int64_t i = q0; i < q1; i++) { /* alternate directions, as fwd.c's step */
                const int64_t qp = step & 1 ? q1 - 1 - (i - q0) : i;
                const float *panel = wT + qp * GH * RNC_PANEL;
                if (cell->direct_h) K->gemm_panel_acc(M, GH, packed, panel, dh + qp * RNC_PANEL, Rp);
                else K->gemm_panel(M, GH, packed, panel, NULL, dh + qp * RNC_PANEL, Rp);
            }
        }
    }
    for (int64_t n = 0; n < N && v1 > v0 && a->dh0; n++)
        memcpy(a->dh0 + n * R + v0, dh + n * Rp + v0, (size_t)(v1 - v0) * sizeof(float));
    for (int64_t n = 0; n < N && u1 > u0 && a->dc0; n++)
        memcpy(a->dc0 + n * H + u0, dc + n * Hp + u0, (size_t)(u1 - u0) * sizeof(float));
    /* (the loop's last barrier made dGx, dGh and h_prev complete) */

    /* 2. whole-sequence GEMMs, over the rows of the steps that ran (with
     * lengths the rest are padding: dG is 0 there) */
    const int64_t run_rows = T_run * N;
    const rnc_mat dGx = {dgx, GH, 1}, dGx_T = {dgx, 1, GH}, dGh_T = {dgh, 1, GH};
    if (a->dx)
        rnc_gemm_part(K, run_rows, I, GH, dGx, (rnc_mat){a->w_ih, I, 1}, a->dx, a->lddx,
                      a->dx_accumulate, my, tid, team);
    rnc_gemm_part(K, GH, I, run_rows, dGx_T, (rnc_mat){a->x, I, 1}, a->dw_ih, I, 1, my, tid, team);
    if (cell->split_last) { /* rows of the other gates: dG^T h_prev; the last: dG_last^T s_t */
        const int64_t slots = cell->tape_slots * Hp, KL = (G - 1) * H;
        rnc_gemm_part(K, KL, H, run_rows, dGh_T, (rnc_mat){hprev, H, 1}, a->dw_hh, H, 1,
                      my, tid, team);
        rnc_gemm_part(K, H, H, run_rows, (rnc_mat){dgh + KL, 1, GH},
                      (rnc_mat){a->tape + cell->split_slot * Hp, slots, 1}, a->dw_hh + KL * H, H, 1,
                      my, tid, team);
    } else {
        rnc_gemm_part(K, GH, R, run_rows, dGh_T, (rnc_mat){hprev, R, 1}, a->dw_hh, R, 1, my, tid, team);
    }
    if (proj) /* dW_hr += dH^T M */
        rnc_gemm_part(K, R, H, run_rows, (rnc_mat){x->dht, 1, R}, (rnc_mat){x->mrows, H, 1},
                      a->dw_hr, H, 1, my, tid, team);

    /* 3. bias gradients, summed by the element-wise passes; with
     * last_bias_inside the last gate's b_hh has its own sum (GRU: dn * r),
     * the other columns of dGh equal dGx's */
    for (int64_t g = 0; g < G; g++)
        for (int64_t u = u0; u < u1; u++) {
            const int64_t j = g * H + u;
            const double h_part = cell->last_bias_inside && g == G - 1 ? bsum_h[j] : bsum_x[j];
            if (a->db_ih) a->db_ih[j] += (float)bsum_x[j];
            if (a->db_hh) a->db_hh[j] += (float)h_part;
        }
    for (int64_t g = 0; g < 3 && a->dpeephole; g++) /* peephole gradients, own units */
        for (int64_t u = u0; u < u1; u++) a->dpeephole[g * H + u] += (float)psum[g * H + u];
    rnc_ftz_end(saved_csr);
}

rnc_status rnc_backward(const rnc_dims *d, const rnc_bwd_args *a, int n_threads) {
    if (!d || !a) return RNC_ERR_INVALID_ARG;
    const int G = rnc_cell_gates(d->cell);
    if (G == 0) return RNC_ERR_UNSUPPORTED;
    if (rnc_bwd_workspace_floats(d, n_threads) == 0) return RNC_ERR_INVALID_ARG;
    const rnc_status st = check_args(d, a);
    if (st != RNC_OK) return st;
    const rnc_kernels *K = rnc_active_kernels();
    const rnc_cell_info *cell = rnc_cell_info_of(d->cell);

    const int64_t T = d->T, N = d->N, H = d->H;
    const int64_t Hp = rnc_padded(H), GH = G * H;
    const int64_t row_t = a->batch_first ? 1 : N, row_n = a->batch_first ? T : 1;
    const int nt = rnc_step_threads(d, G, n_threads);
    const bwd_layout l = layout(d, nt);

    double *bsum_x = (double *)a->ws, *bsum_h = bsum_x + GH, *psum = bsum_h + GH;
    float *zeros = a->ws + l.bsum;
    float *wT = zeros + l.zeros;
    float *dgx = wT + l.wT;
    float *dgh = cell->distinct_dgh ? dgx + l.dgx : dgx;
    float *hprev = dgx + l.dgx + l.dgh;
    float *dh = hprev + l.hprev;
    float *dc = dh + l.dh;
    float *q = dc + l.dc;       /* split cells, projection: [N, Hp] */
    float *apack = q + l.q;     /* [2][packed N x GH]: dGh_t packed, by step parity */
    float *whr = apack + l.apack, *dht = whr + l.whr, *mrows = dht + l.dht;
    float *dpack = mrows + l.mrows;
    float *scratch = dpack + l.dpack; /* + tid * l.per_thread */

    if (((uintptr_t)a->ws) % sizeof(double)) return RNC_ERR_INVALID_ARG;
    memset(a->ws, 0, (size_t)(l.bsum + l.zeros) * sizeof(float));
    if (a->lengths) { /* padding rows: no gradient (dG = 0, dx = 0) */
        const int64_t run_rows = a->lengths[0] * N;
        memset(dgx, 0, (size_t)(run_rows * GH) * sizeof(float));
        if (dgh != dgx) memset(dgh, 0, (size_t)(run_rows * GH) * sizeof(float));
        if (d->proj > 0) { /* rows past a sequence's end enter dW_hr's sum as 0 */
            memset(dht, 0, (size_t)(run_rows * d->proj) * sizeof(float));
            memset(mrows, 0, (size_t)(run_rows * H) * sizeof(float));
        }
        for (int64_t r = run_rows; r < T * N && a->dx && !a->dx_accumulate; r++)
            memset(a->dx + r * a->lddx, 0, (size_t)d->I * sizeof(float));
    }
    /* with a projection the cell's incoming gradient is dm (in q), dy enters dh_t */
    const int proj = d->proj > 0;
    rnc_bwd_step s = {N, H, Hp, GH, row_t, row_n, a->y, a->ldy, proj ? NULL : a->dy,
                      a->lddy, a->tape, a->c0, zeros, hprev, dgx, dgh, proj ? q : dh, dc, bsum_x,
                      bsum_h, a->peephole, a->input_forget, psum, proj ? mrows : NULL};

    const bwd_team ctx = {d, a, K, cell, G, l, &s, wT, dgx, dgh, hprev, dh, dc, q, apack, scratch,
                          whr, dht, mrows, dpack, zeros, bsum_x, bsum_h, psum};
    /* a team of one runs without a parallel region (see fwd.c) */
#ifdef _OPENMP
    if (nt > 1) {
#pragma omp parallel num_threads(nt)
        backward_thread(&ctx, omp_get_thread_num(), omp_get_num_threads());
    } else
#else
    (void)nt;
#endif
        backward_thread(&ctx, 0, 1);
    return RNC_OK;
}
