/*
 * qfwd.c: forward pass of one layer-direction with int8 weights
 * (rnc_qforward; the scheme in rnncore_int8.h). The equations and the
 * numbered steps are fwd.c's; only the products change:
 *
 *   gx = deq(q(x_t) Wq_ih^T) + bias_x      every row of x quantized on its own
 *   a  = deq(q(h_{t-1}) Wq_hh^T)           per row of the batch, every step
 *   h_t, c_t = cell(gx_t, a)               the fp32 kernels' cell pass
 *                                          (rnc_kernels.cell[c].forward)
 *   split cells (GRU_RB): a_last = deq(q(s_t) Wq_last^T), s_t = r * h_{t-1}
 *   from cell.forward_split; projection: h_t = deq(q(m_t) Wq_hr^T)
 *
 * with deq(acc)[j] = (float)acc[j] * (s_row * sw[j]) (rnc_qkernels.dequant_row), so the
 * fp32 cell code is written once for both precisions.
 *
 * Threads: as fwd.c, each thread owns fixed panels of RNC_PANEL hidden
 * units (and of state units with a projection) for the whole sequence;
 * every thread quantizes the whole h_{t-1} rows it needs into its own
 * buffer (N * R values a step, against N * R * G * H / team multiply-adds
 * of its product; no barrier more per step), the rows of x of a chunk are
 * quantized once, split over the team. Integer products
 * are exact and every float is computed by one thread in one order, so the
 * result does not depend on the thread count.
 *
 * Workspace (bytes, each part 64-aligned; Hp, GHp as fwd.c, S = max(H, R),
 * Kx = 4*ceil(I/4), Ks = 4*ceil(S/4)):
 *   gx float [cs*N*GHp] | a float [N*GHp]
 *   | bias_x float [GHp] | b_last float [Hp] | c float [N*Hp] | zeros float [N*S]
 *   | b_last float [Hp] (cells with last_bias_inside)
 *   | m (a split cell's s_t, or the projection's m_t) float [N*H]
 *   | qx u8 [cs*N*Kx] | sx float [cs*N]
 *   | per thread: qh u8 [N*Ks] | sh float [N] | blk int32 [max(QROWS, N)*QPANELS*16]
 */
#include <string.h>

#include "qkernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define CHUNK_ROWS 192 /* rows of x per chunk of the input projection, as fwd.c */
#define QROWS 64       /* rows per product call of the input projection */
#define QPANELS RNC_QGROUP /* int8 panels (16 outputs) per product call at most: a group */

static int64_t chunk_steps(const rnc_dims *d) {
    const int64_t cs = (CHUNK_ROWS + d->N - 1) / d->N;
    return cs < d->T ? cs : d->T;
}

static int64_t up64(int64_t b) { return (b + 63) / 64 * 64; }

typedef struct {
    int64_t gx, acc, bias_x, b_last, c, zeros, m, qx, sx, thread0, per_thread, total;
} qlayout;

/* Byte offsets of the workspace parts; total -1 on overflow. */
static qlayout layout(const rnc_dims *d, int threads) {
    qlayout L;
    const int G = rnc_cell_gates(d->cell);
    const int64_t R = rnc_state_width(d), S = R > d->H ? R : d->H, Hp = rnc_padded(d->H);
    const int64_t GHp = G * Hp, N = d->N, cs = chunk_steps(d);
    const int64_t Kx = 4 * rnc_qk(d->I), Ks = 4 * rnc_qk(S);
    int64_t o = 0;
    L.gx = o;      o += up64(4 * cs * N * GHp);
    L.acc = o;     o += up64(4 * N * GHp);
    L.bias_x = o;  o += up64(4 * GHp);
    L.b_last = o;  o += up64(4 * Hp);
    L.c = o;       o += up64(4 * N * Hp);
    L.zeros = o;   o += up64(4 * N * S);
    L.m = o;       o += up64(4 * N * d->H);
    L.qx = o;      o += up64(cs * N * Kx);
    L.sx = o;      o += up64(4 * cs * N);
    L.thread0 = o;
    L.per_thread = up64(N * Ks) + up64(4 * N) + up64(4 * (N > QROWS ? N : QROWS) * QPANELS * RNC_QPANEL);
    L.total = o + L.per_thread * threads + 64; /* + 64: the caller's buffer is aligned here */
    return L;
}

/* dims an int8 forward accepts (every size small enough for the byte
 * arithmetic above to stay far from overflow) */
static int qdims_ok(const rnc_dims *d) {
    if (!d || d->T < 1 || d->N < 1 || d->I < 1 || d->H < 1) return 0;
    const int G = rnc_cell_gates(d->cell);
    if (G == 0 || d->proj < 0 ||
        (d->proj > 0 && (!rnc_cell_info_of(d->cell)->has_c || d->proj >= d->H)))
        return 0;
    if (d->I > RNC_Q_MAX_K || d->H > RNC_Q_MAX_K) return 0;
    const int64_t lim = (int64_t)1 << 40; /* bytes of any one part */
    const int64_t rows = rnc_mul_checked(d->T, d->N, lim);
    return rows > 0 && rnc_mul_checked(rows, 4 * (d->I > d->H ? d->I : d->H), lim) > 0 &&
           rnc_mul_checked(4 * d->N, 4 * (int64_t)G * rnc_padded(d->H), lim) > 0 &&
           rnc_mul_checked(CHUNK_ROWS + d->N, 4 * (int64_t)G * rnc_padded(d->H), lim) > 0;
}

size_t rnc_qfwd_workspace_bytes(const rnc_dims *d, int n_threads) {
    if (!qdims_ok(d)) return 0;
    const qlayout L = layout(d, rnc_resolve_threads(n_threads));
    return L.total < 0 || (uint64_t)L.total > (uint64_t)SIZE_MAX ? 0 : (size_t)L.total;
}

typedef struct {
    const rnc_dims *d;
    const rnc_qfwd_args *a;
    const rnc_kernels *K;
    const rnc_qkernels *Q;
    qlayout L;
    uint8_t *base;
    const float *bias_x, *b_last; /* folded: a->bias_folded's, or the workspace's */
    int64_t cs, row_t, row_n;
} qteam;

#define PART(type, name) ((type *)(void *)(x->base + x->L.name))

/* out rows n < M (stride ldo) at columns g*Hp + [u0, u1) for gates g in
 * [g0, g1) = deq(q(rows) W^T) (+ bias at the same columns): q rows in qa
 * (stride lda, scales s), W packed for (G, Hw, K), Hp = rnc_padded(Hw),
 * u0 and u1 multiples of RNC_QPANEL; blk: int32 scratch for M rows of
 * QPANELS panels. The product goes a block at a time (the panels of one
 * packed group inside [u0, u1)), each dequantized while its sums are in L1:
 * with a gate's whole 512 columns, the 64-row sums (128 KB) went out to
 * L2 and back, and the dequantisation took 12.6 % of an int8 LSTM forward
 * at N = 64 on AMX (perf, Xeon, 1 thread).
 * backwards != 0 walks the blocks last to first (fwd.c's serpentine: the
 * recurrent products alternate directions step by step, so that a step
 * starts on the blocks the last one left in cache; each block makes its
 * own outputs, so the order changes no result). */
static void qproduct(const rnc_qkernels *Q, int64_t M, const uint8_t *qa, int64_t lda,
                     const float *s, const uint8_t *w, int64_t G, int64_t Hw, int64_t K,
                     int64_t g0, int64_t g1, int64_t u0, int64_t u1, int32_t *blk, float *out,
                     int64_t ldo, const float *bias, int backwards) {
    const int64_t Hp = rnc_padded(Hw), Kq = rnc_qk(K), Pg = Hp / RNC_QPANEL;
    const int8_t *panels = rnc_qpanels(w);
    const int32_t *colsum = rnc_qcolsum(w, G, Hw, K);
    const float *sw = rnc_qscale(w, G, Hw, K);
    if (u1 <= u0 || M < 1) return;
    const int64_t pa = u0 / RNC_QPANEL, pb = u1 / RNC_QPANEL; /* panels of each gate */
    for (int64_t i = 0; i < g1 - g0; i++) {
        const int64_t g = backwards ? g1 - 1 - i : g0 + i;
        for (int64_t p = backwards ? pb : pa; backwards ? p > pa : p < pb;) {
            int64_t ps, pe, ldw, left; /* the block: panels [ps, pe) of one group */
            if (backwards) {
                pe = p;
                ps = (pe - 1) / RNC_QGROUP * RNC_QGROUP;
                if (ps < pa) ps = pa;
                p = ps;
            } else {
                ps = p;
                pe = ps / RNC_QGROUP * RNC_QGROUP + RNC_QGROUP;
                if (pe > pb) pe = pb;
                p = pe;
            }
            const int8_t *wp = rnc_qgroup_panel(panels, Pg, Kq, g, ps, &ldw, &left);
            const int64_t cols = (pe - ps) * RNC_QPANEL, col = g * Hp + ps * RNC_QPANEL;
            if (M == 1 && Q->row_dequant) {
                Q->row_dequant(Kq, qa, wp, ldw, pe - ps, colsum + col, Q->offset, sw + col, s[0],
                               bias ? bias + col : NULL, out + col);
                continue;
            }
            Q->gemm(M, Kq, qa, lda, wp, ldw, pe - ps, blk, cols);
            for (int64_t n = 0; n < M; n++)
                Q->dequant_row(cols, blk + n * cols, colsum + col, Q->offset, sw + col, s[n],
                               bias ? bias + col : NULL, out + n * ldo + col);
        }
    }
}

/* 1. the chunk of cs steps from step: its rows of x quantized (split over
 * the team), then gx for this thread's units [u0, u_end), blocks walked
 * last to first with backwards; the chunk's first time step returned. With
 * lengths every row is computed (padding rows of x are 0). */
static int64_t quantized_chunk(const qteam *x, int64_t step, int64_t T_run, int tid, int team,
                               int64_t u0, int64_t u_end, int32_t *blk, int backwards) {
    const rnc_dims *d = x->d;
    const rnc_qfwd_args *a = x->a;
    const rnc_qkernels *Q = x->Q;
    const int G = rnc_cell_gates(d->cell);
    const int64_t T = d->T, N = d->N, I = d->I, H = d->H, GHp = G * rnc_padded(H);
    const int64_t Kx = 4 * rnc_qk(I), cs = x->cs;
    float *gx = PART(float, gx), *sx = PART(float, sx);
    uint8_t *qx = PART(uint8_t, qx);
    const int64_t s1 = step + cs < T_run ? step + cs : T_run, steps = s1 - step;
    const int64_t t_lo = a->reverse ? T - s1 : step;
    int64_t r0, r1;
    rnc_split_range(steps * N, team, tid, 1, &r0, &r1);
    for (int64_t i = r0; i < r1; i++) {
        const int64_t tt = t_lo + i / N, n = i % N;
        sx[i] = Q->quantize_row(I, a->x + (tt * x->row_t + n * x->row_n) * I, qx + i * Kx);
    }
#ifdef _OPENMP
#pragma omp barrier
#endif
    for (int64_t i0 = 0; i0 < steps * N && u0 < u_end; i0 += QROWS) {
        const int64_t rows = steps * N - i0 < QROWS ? steps * N - i0 : QROWS;
        qproduct(Q, rows, qx + i0 * Kx, Kx, sx + i0, a->w_ih_q, G, H, I, 0, G, u0, u_end, blk,
                 gx + i0 * GHp, GHp, x->bias_x, backwards);
    }
    return t_lo;
}

static void qforward_thread(const qteam *x, int tid, int team) {
    const rnc_dims *d = x->d;
    const rnc_qfwd_args *a = x->a;
    const rnc_kernels *K = x->K;
    const rnc_qkernels *Q = x->Q;
    const int G = rnc_cell_gates(d->cell);
    const rnc_cell_info *cell = rnc_cell_info_of(d->cell);
    const rnc_cell_kernels *ck = &K->cell[d->cell];
    const int64_t T = d->T, N = d->N, H = d->H;
    const int64_t Hp = rnc_padded(H), GHp = G * Hp;
    const int64_t R = rnc_state_width(d), Rp = rnc_padded(R), S = R > H ? R : H;
    const int64_t Ks = 4 * rnc_qk(S);
    const int proj = d->proj > 0, split_last = cell->split_last;
    const int64_t cs = x->cs, row_t = x->row_t, row_n = x->row_n;
    float *gx = PART(float, gx), *acc = PART(float, acc);
    float *m = PART(float, m), *zeros = PART(float, zeros);
    uint8_t *mine = x->base + x->L.thread0 + (int64_t)tid * x->L.per_thread;
    uint8_t *qh = mine;
    float *sh = (float *)(void *)(mine + up64(N * Ks));
    int32_t *blk = (int32_t *)(void *)(mine + up64(N * Ks) + up64(4 * N));
    const unsigned int saved_csr = rnc_ftz_begin();
    int64_t p0, p1, q0, q1;
    rnc_split_range(Hp / RNC_PANEL, team, tid, 1, &p0, &p1);
    const int64_t u0 = p0 * RNC_PANEL, u_end = p1 * RNC_PANEL; /* padded units this thread computes */
    const int64_t u1 = u_end < H ? u_end : H;                    /* ... and updates */
    rnc_split_range(Rp / RNC_PANEL, team, tid, 1, &q0, &q1);
    const int64_t v0 = q0 * RNC_PANEL, v_end = q1 * RNC_PANEL, v1 = v_end < R ? v_end : R;
    rnc_post post = {H, Hp, NULL, GHp, acc, GHp, NULL, 0, NULL, 0, PART(float, c),
                     x->b_last, NULL, 0, a->peephole, a->input_forget, m};
    int64_t t_lo = 0;
    const int64_t T_run = a->lengths ? a->lengths[0] : T;
    for (int64_t step = 0; step < T_run; step++) {
        const int64_t t = a->reverse ? T - 1 - step : step;
        const int64_t rows_now = rnc_active_rows(a->lengths, N, step);
        /* the products' walk (qproduct), alternating step by step from the
         * caller's a->walk_back; as fwd.c, a first step walking back runs
         * its input product last, backwards */
        const int backwards = (int)((step + (a->walk_back != 0)) & 1);
        const int chunk = step % cs == 0, chunk_last = chunk && step == 0 && backwards;
        if (chunk && !chunk_last) t_lo = quantized_chunk(x, step, T_run, tid, team, u0, u_end, blk, 0);
        /* 2. recurrent product for this thread's units */
        const float *h_prev;
        int64_t ld_hprev;
        if (step == 0) {
            h_prev = a->h0 ? a->h0 : zeros;
            ld_hprev = R;
        } else {
            const int64_t t_prev = a->reverse ? t + 1 : t - 1;
            h_prev = a->y + t_prev * row_t * a->ldy;
            ld_hprev = row_n * a->ldy;
        }
        post.h_prev = h_prev;
        post.ld_hprev = ld_hprev;
        float *y_t = a->y + t * row_t * a->ldy;
        const int64_t ld_y = row_n * a->ldy;
        post.y = proj ? m : y_t;
        post.ld_y = proj ? H : ld_y;
        if (u0 < u_end) {
            for (int64_t n = 0; n < rows_now; n++)
                sh[n] = Q->quantize_row(R, h_prev + n * ld_hprev, qh + n * Ks);
            qproduct(Q, rows_now, qh, Ks, sh, a->w_hh_q, G, H, R, 0, split_last ? G - 1 : G, u0,
                     u_end, blk, acc, GHp, NULL, backwards);
        }
        if (chunk_last) t_lo = quantized_chunk(x, step, T_run, tid, team, u0, u_end, blk, 1);
        post.gx = gx + (t - t_lo) * N * GHp;
        if (split_last) {
            /* s_t (r * h_{t-1}) from the other gates, then its product with
             * the last gate after a barrier (every unit of s_t is needed) */
            if (u0 < u1) ck->forward_split(&post, 0, rows_now, u0, u1);
#ifdef _OPENMP
#pragma omp barrier
#endif
            for (int64_t n = 0; n < rows_now && u0 < u_end; n++)
                sh[n] = Q->quantize_row(H, m + n * H, qh + n * Ks);
            qproduct(Q, rows_now, qh, Ks, sh, a->w_hh_q, G, H, H, G - 1, G, u0, u_end, blk, acc,
                     GHp, NULL, backwards);
        }
        if (u0 < u1) ck->forward(&post, 0, rows_now, u0, u1);
        if (proj) { /* 2'. h_t = deq(q(m_t) Wq_hr^T) for this thread's state units */
#ifdef _OPENMP
#pragma omp barrier
#endif
            if (v0 < v_end) {
                for (int64_t n = 0; n < rows_now; n++)
                    sh[n] = Q->quantize_row(H, m + n * H, qh + n * Ks);
                qproduct(Q, rows_now, qh, Ks, sh, a->w_hr_q, 1, R, H, 0, 1, v0, v_end, blk, acc,
                         Rp, NULL, backwards);
                for (int64_t n = 0; n < rows_now && v0 < v1; n++)
                    memcpy(y_t + n * ld_y + v0, acc + n * Rp + v0, (size_t)(v1 - v0) * sizeof(float));
            }
        }
#ifdef _OPENMP
#pragma omp barrier
#endif
    }
    rnc_ftz_end(saved_csr);
}

rnc_status rnc_qforward(const rnc_dims *d, const rnc_qfwd_args *a, int n_threads) {
    if (!d || !a || !qdims_ok(d)) return RNC_ERR_INVALID_ARG;
    const int G = rnc_cell_gates(d->cell);
    const int64_t R = rnc_state_width(d);
    if (!a->x || !a->w_ih_q || !a->w_hh_q || !a->y || !a->ws || a->ldy < R ||
        (d->proj > 0) != (a->w_hr_q != NULL))
        return RNC_ERR_INVALID_ARG;
    if (((uintptr_t)a->w_ih_q | (uintptr_t)a->w_hh_q | (uintptr_t)a->w_hr_q) & 3)
        return RNC_ERR_INVALID_ARG;
    const rnc_cell_info *cell = rnc_cell_info_of(d->cell);
    if (!cell->has_c && (a->c0 || a->c_n || a->peephole || a->input_forget))
        return RNC_ERR_INVALID_ARG;
    if (d->proj > 0 && (a->peephole || a->input_forget)) return RNC_ERR_INVALID_ARG;
    if (rnc_check_lengths(a->lengths, d->T, d->N, a->batch_first, a->reverse))
        return RNC_ERR_INVALID_ARG;
    const int64_t T = d->T, N = d->N, H = d->H, Hp = rnc_padded(H), GHp = G * Hp;
    const int64_t S = R > H ? R : H;
    const int nt = rnc_step_threads(d, G, n_threads);
    qteam ctx;
    ctx.d = d;
    ctx.a = a;
    ctx.K = rnc_active_kernels();
    ctx.Q = rnc_active_qkernels();
    ctx.L = layout(d, rnc_resolve_threads(n_threads));
    ctx.base = (uint8_t *)a->ws + ((64 - (uintptr_t)a->ws % 64) % 64);
    ctx.cs = chunk_steps(d);
    ctx.row_t = a->batch_first ? 1 : N;
    ctx.row_n = a->batch_first ? T : 1;
    const qteam *x = &ctx;

    /* 0. folded biases (fwd.c's) and padded states. acc and m need no
     * clearing: every step writes the columns it reads (its products cover
     * [u0, u_end) of every gate they make, before the cell pass). */
    if (a->bias_folded) {
        ctx.bias_x = a->bias_folded;
        ctx.b_last = a->bias_folded + GHp;
    } else {
        float *bias_x = PART(float, bias_x), *b_last = PART(float, b_last);
        rnc_fold_biases(cell, G, H, a->b_ih, a->b_hh, bias_x, b_last);
        ctx.bias_x = bias_x;
        ctx.b_last = b_last;
    }
    float *c = PART(float, c);
    memset(c, 0, (size_t)(N * Hp) * sizeof(float));
    if (cell->has_c && a->c0)
        for (int64_t n = 0; n < N; n++) memcpy(c + n * Hp, a->c0 + n * H, (size_t)H * sizeof(float));
    if (!a->h0) memset(PART(float, zeros), 0, (size_t)(N * S) * sizeof(float));

#ifdef _OPENMP
    if (nt > 1) {
#pragma omp parallel num_threads(nt)
        qforward_thread(&ctx, omp_get_thread_num(), omp_get_num_threads());
    } else
#else
    (void)nt;
#endif
        qforward_thread(&ctx, 0, 1);

    /* 3. final states, as fwd.c */
    for (int64_t n = 0; n < N && a->lengths; n++)
        for (int64_t t = a->lengths[n]; t < T; t++)
            memset(a->y + (t * N + n) * a->ldy, 0, (size_t)R * sizeof(float));
    if (a->h_n)
        for (int64_t n = 0; n < N; n++) {
            const int64_t t_last = a->lengths ? a->lengths[n] - 1 : a->reverse ? 0 : T - 1;
            memcpy(a->h_n + n * R, a->y + (t_last * ctx.row_t + n * ctx.row_n) * a->ldy,
                   (size_t)R * sizeof(float));
        }
    if (a->c_n)
        for (int64_t n = 0; n < N; n++) memcpy(a->c_n + n * H, c + n * Hp, (size_t)H * sizeof(float));
    return RNC_OK;
}
