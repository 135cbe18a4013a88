/*
 * fwd.c: forward pass of one layer-direction over a whole sequence, for
 * every cell kind: the cell's equations are in isa/cells/<cell>.inc, what
 * this driver needs to know of it in rnc_cell_info (cells.c). Each step is
 *   h_t, c_t = cell(gx_t, a),   a = W_hh h_{t-1},   gx = W_ih x + bias_x
 * where bias_x folds b_ih + b_hh (a cell with last_bias_inside keeps the
 * last gate's b_hh for itself: GRU's b_hn stays inside the reset product).
 * Steps, numbered as in rnncore/reference.py:
 *
 *   0. bias_x, padded state buffers
 *   for each step t (reversed when a->reverse):
 *   1.   every CHUNK_ROWS / N steps: gx = X W_ih^T + bias_x for the next chunk
 *        of steps, one GEMM over all their rows (for N = 1 and T <= 192: the
 *        whole sequence at once)
 *   2.   a = W_hh h_{t-1}            packed GEMM panels      (kernels: gemm_panel)
 *        h_t, c_t = cell(gx_t, a)    fused element-wise pass (kernels: cell.forward)
 *        a split cell (split_last) first makes s_t (cell.forward_split), and
 *        after a barrier its last gate's product is W_last s_t instead
 *      h_t is written straight into y; h_{t-1} is read back from y; with a
 *      tape (training), the activated gates of the step are kept there.
 *   2'.  LSTM with a projection (rnc_dims.proj = R): the cell writes
 *        m_t = o * tanh(c_t) to a buffer instead, and after a barrier
 *        h_t = W_hr m_t, one more packed GEMM of R units, goes into y.
 *   3. h_n = h at the last step, c_n = c at the last step.
 *
 * Threads: one OpenMP team for the whole call. Each thread owns a fixed slice
 * of hidden-unit panels for the whole sequence and computes exactly those
 * columns of gx (step 1) and of every h_t (step 2), so its slices of W_ih and
 * W_hh stay in its cache; one barrier per step publishes h_t (with a
 * projection: a second one publishes m_t, and each thread owns panels of
 * the R state units for step 2'). Each output
 * element is computed by one thread with a tiling that does not depend on the
 * team size, so results are identical for every thread
 * count. Denormals are flushed to zero inside the kernels (FTZ/DAZ on x86).
 *
 * Workspace (floats; Hp = H rounded up to RNC_PANEL, gate rows padded; R
 * the state width, rnc_state_width):
 *   gx [chunk*N*G*Hp] | a [N*G*Hp] | bias_x [G*Hp] | b_last [Hp] | c [N*Hp]
 *   | zeros [N*max(H, R)] | packed h_{t-1} [2 * packed N x R]
 *   | packed r*h_{t-1} or m_t [packed N x H] | r*h_{t-1} or m_t [N*H]
 *   | projection: W_hr m_t [N*Rp] | per thread: packed GEMM_ROW_BLOCK rows of x
 */
#include <string.h>

#include "kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Rows per work item of the input GEMM: a multiple of the tile height
 * blocking.c chooses (it picks an mr dividing 48: 12, 6, 4), so that the
 * blocks have no row tail; the tiling is the same for any number of threads. */
#define GEMM_ROW_BLOCK 48
/* Rows of x per chunk of the input projection (see chunk_steps). */
#define CHUNK_ROWS 192

/* Steps per chunk of the input projection: about CHUNK_ROWS rows, so that gx
 * stays in cache between its GEMM and its use (computing gx for the whole
 * sequence up front sent 26 MB through DRAM twice at lstm t100 n64 h256). */
static int64_t chunk_steps(const rnc_dims *d) {
    const int64_t cs = (CHUNK_ROWS + d->N - 1) / d->N;
    return cs < d->T ? cs : d->T;
}

/* Per-thread packed-A scratch: an input-GEMM row block of x. */
static int64_t apack_floats(const rnc_dims *d) {
    return rnc_packed_a_floats(GEMM_ROW_BLOCK, d->I);
}

size_t rnc_fwd_workspace_floats(const rnc_dims *d, int n_threads) {
    if (!d || d->T < 1 || d->N < 1 || d->I < 1 || d->H < 1) return 0;
    const int G = rnc_cell_gates(d->cell);
    if (G == 0 || d->proj < 0 || (d->proj > 0 && !rnc_cell_info_of(d->cell)->has_c)) return 0;
    const int64_t lim = rnc_float_limit();
    if (d->H > lim / 2 || d->N > lim / 2 || d->I > lim / 2 || d->proj > lim / 2) return 0;
    const int64_t R = rnc_state_width(d), Rp = rnc_padded(R), S = R > d->H ? R : d->H;
    const int64_t Hp = rnc_padded(d->H);
    const int64_t ghp = rnc_mul_checked(G, Hp, lim);
    const int64_t rows = rnc_mul_checked(d->T, d->N, lim);
    const int64_t gx = rows < 0 ? -1 : rnc_mul_checked(chunk_steps(d) * d->N, ghp, lim);
    const int64_t acc = rnc_mul_checked(d->N, ghp, lim);
    const int64_t nhp = rnc_mul_checked(d->N, Hp, lim);
    const int64_t pack_in = rnc_mul_checked((GEMM_ROW_BLOCK + RNC_MR_MAX), d->I, lim);
    /* >= hpack below */
    const int64_t pack_rec = rnc_mul_checked(6 * (d->N + RNC_MR_MAX), S + Rp, lim);
    /* the weights and x must be addressable too */
    if (ghp < 0 || gx < 0 || acc < 0 || nhp < 0 || pack_in < 0 || pack_rec < 0 ||
        rnc_mul_checked(ghp, d->I, lim) < 0 || rnc_mul_checked(ghp, R, lim) < 0 ||
        rnc_mul_checked(Rp, d->H, lim) < 0 || rnc_mul_checked(rows, d->I, lim) < 0 ||
        rnc_mul_checked(rows, R, lim) < 0)
        return 0;
    const int64_t packs = rnc_mul_checked(apack_floats(d), rnc_resolve_threads(n_threads), lim);
    /* zeros, two packed h_{t-1}, packed r*h_{t-1} (or m_t) and its rows, the
     * projection's output: <= pack_rec */
    const int64_t hpack = d->N * S + 2 * rnc_packed_a_floats(d->N, R) +
                          rnc_packed_a_floats(d->N, d->H) + d->N * d->H +
                          (d->proj > 0 ? d->N * Rp : 0);
    if (packs < 0 || gx > lim - acc - ghp - Hp - nhp - packs - hpack) return 0;
    return (size_t)(gx + acc + ghp + Hp + nhp + packs + hpack);
}

/* One chunk of the input projection: GEMM "jobs" of M uniformly strided
 * rows each (see input_chunk), split into row blocks and weight panels. */
typedef struct {
    int64_t jobs, M;        /* jobs of M rows                                 */
    const float *A;         /* job j, row m: A + j*a_job + m*lda              */
    int64_t a_job, lda;
    float *C;               /* job j, row m: C + j*c_job + m*ldc               */
    int64_t c_job, ldc;
} chunk_gemm;

/*
 * The rows of steps t in [t_lo, t_hi) as GEMM jobs with uniform strides,
 * written to gx_chunk row (t - t_lo)*N + n:
 *   time-major:              one job, rows t_lo*N .. t_hi*N contiguous;
 *   batch-first, N >= steps: one job per step t, its N rows T*I apart;
 *   batch-first, N <  steps: one job per sequence n, its steps contiguous.
 */
static chunk_gemm input_chunk(const rnc_fwd_args *a, int64_t T, int64_t N, int64_t I,
                              int64_t GHp, int64_t t_lo, int64_t t_hi, float *gx) {
    const int64_t steps = t_hi - t_lo;
    if (!a->batch_first)
        return (chunk_gemm){1, steps * N, a->x + t_lo * N * I, 0, I, gx, 0, GHp};
    if (N >= steps)
        return (chunk_gemm){steps, N, a->x + t_lo * I, I, T * I, gx, N * GHp, GHp};
    return (chunk_gemm){N, steps, a->x + t_lo * I, T * I, I, gx, GHp, N * GHp};
}

/* What every thread of a forward call shares. */
typedef struct {
    const rnc_dims *d;
    const rnc_fwd_args *a;
    const rnc_kernels *K;
    const rnc_cell_info *cell;
    int G;
    int64_t cs, row_t, row_n;
    float *gx, *acc;
    const float *bias_x, *b_last; /* folded: a->bias_folded's, or the workspace's */
    float *c, *zeros, *hpack;
    int64_t hpack_half, rhpack_floats;
    float *rhpack, *hproj, *apack;
} fwd_team;

/* C rows [M] at this thread's columns (panels [p0, p1) of every gate) =
 * A W_ih^T + bias_x: row blocks of GEMM_ROW_BLOCK, each packed once, then
 * the panels, last to first with backwards. */
static void project_rows(const fwd_team *x, int64_t M, const float *A, int64_t lda, float *C,
                         int64_t ldc, int64_t p0, int64_t p1, float *my_pack, int backwards) {
    const rnc_kernels *K = x->K;
    const int64_t I = x->d->I, P = rnc_padded(x->d->H) / RNC_PANEL;
    const int64_t mine = p1 - p0, n_panels = x->G * mine;
    for (int64_t m0 = 0; m0 < M && mine > 0; m0 += GEMM_ROW_BLOCK) {
        const int64_t rows = M - m0 < GEMM_ROW_BLOCK ? M - m0 : GEMM_ROW_BLOCK;
        rnc_pack_a(rows, I, (rnc_mat){A + m0 * lda, lda, 1}, K->mr, my_pack);
        for (int64_t i = 0; i < n_panels; i++) {
            const int64_t j = backwards ? n_panels - 1 - i : i, panel = j / mine * P + p0 + j % mine;
            K->gemm_panel(rows, I, my_pack, x->a->w_ih_p + panel * I * RNC_PANEL,
                          x->bias_x + panel * RNC_PANEL, C + m0 * ldc + panel * RNC_PANEL, ldc);
        }
    }
}

/* 1. The input projection of the chunk of cs steps from `step`, for this
 * thread's panels [p0, p1) only: it later reads just those columns of gx,
 * so no barrier is needed, and only its slices of W_ih and W_hh share its
 * L2 (splitting rows instead made every thread stream all of W_ih: lstm
 * n64 h256 at 2 threads, 55 -> 37 ms). Returns the chunk's first time step
 * (gx row (t - t_lo) * N + n holds step t). */
static int64_t input_projection(const fwd_team *x, int64_t step, int64_t T_run, int64_t p0,
                                int64_t p1, float *my_pack, int backwards) {
    const rnc_fwd_args *a = x->a;
    const int64_t T = x->d->T, N = x->d->N, I = x->d->I, cs = x->cs;
    const int64_t GHp = x->G * rnc_padded(x->d->H);
    if (a->lengths) {
        /* 1'. with lengths (time-major, forward): the running rows of each
         * step of the chunk, one GEMM job a step */
        const int64_t s1 = step + cs < T_run ? step + cs : T_run;
        for (int64_t s = step; s < s1; s++)
            project_rows(x, rnc_active_rows(a->lengths, N, s), a->x + s * N * I, I,
                         x->gx + (s - step) * N * GHp, GHp, p0, p1, my_pack, backwards);
        return step;
    }
    const int64_t s1 = step + cs < T ? step + cs : T;
    const int64_t t_lo = a->reverse ? T - s1 : step;
    const chunk_gemm cg = input_chunk(a, T, N, I, GHp, t_lo, t_lo + (s1 - step), x->gx);
    for (int64_t j = 0; j < cg.jobs; j++)
        project_rows(x, cg.M, cg.A + j * cg.a_job, cg.lda, cg.C + j * cg.c_job, cg.ldc, p0, p1,
                     my_pack, backwards);
    return t_lo;
}

/* Steps 1 and 2 for thread `tid` of `team` (see the top of this file). */
static void forward_thread(const fwd_team *x, int tid, int team) {
    const rnc_dims *d = x->d;
    const rnc_fwd_args *a = x->a;
    const rnc_kernels *K = x->K;
    const int G = x->G;
    const int64_t T = d->T, N = d->N, H = d->H;
    const int64_t Hp = rnc_padded(H), P = Hp / RNC_PANEL, GHp = G * Hp;
    const int64_t R = rnc_state_width(d), Rp = rnc_padded(R);
    const int proj = d->proj > 0;
    const int64_t cs = x->cs, row_t = x->row_t, row_n = x->row_n, hpack_half = x->hpack_half;
    float *gx = x->gx, *acc = x->acc, *c = x->c;
    const float *b_last = x->b_last;
    float *zeros = x->zeros, *hpack = x->hpack, *apack = x->apack, *rhpack = x->rhpack;
    float *m = rhpack + x->rhpack_floats; /* projection: m_t rows [N, H]; packed in rhpack */
    const unsigned int saved_csr = rnc_ftz_begin();
    float *my_pack = apack + tid * apack_floats(d);
    int64_t p0, p1; /* this thread's panels of hidden units, for the whole sequence */
    rnc_split_range(P, team, tid, 1, &p0, &p1);
    const int64_t u0 = p0 * RNC_PANEL, u1 = p1 * RNC_PANEL < H ? p1 * RNC_PANEL : H;
    int64_t q0, q1; /* its panels of state units (the same as p0, p1 without a projection) */
    rnc_split_range(Rp / RNC_PANEL, team, tid, 1, &q0, &q1);
    const int64_t v0 = q0 * RNC_PANEL, v1 = q1 * RNC_PANEL < R ? q1 * RNC_PANEL : R;
    const rnc_cell_kernels *ck = &K->cell[d->cell];
    float *split = rhpack + x->rhpack_floats; /* split cells: s_t rows [N, H]; packed in rhpack */
    rnc_post post = {H, Hp, NULL, GHp, acc, GHp, NULL, 0, NULL, 0, c, b_last, NULL, 0,
                     a->peephole, a->input_forget, split};
    const int64_t tape_row = x->cell->tape_slots * Hp;
    int64_t t_lo = 0; /* first time step held in gx */

    /* h_{t-1} is packed once per step, each thread packing the columns
     * it computed (still in cache) into a buffer shared by the team;
     * before, every thread packed all of it. Two buffers alternate so
     * that a thread's next step never overwrites what a slower one
     * still reads. */
    const rnc_mat h_init = {a->h0 ? a->h0 : zeros, R, 1};
    if (v0 < v1) rnc_pack_a_cols(N, R, v0, v1, h_init, K->mr, hpack);
#ifdef _OPENMP
#pragma omp barrier
#endif

    const int64_t T_run = a->lengths ? a->lengths[0] : T; /* later steps have no rows */
    for (int64_t step = 0; step < T_run; step++) {
        const int64_t t = a->reverse ? T - 1 - step : step;
        const int64_t rows_now = rnc_active_rows(a->lengths, N, step);
        /* the weights' walk, alternating step by step from the caller's
         * a->walk_back; a first step walking back (a one-step call) runs
         * its input projection after the recurrent product, backwards, so
         * that it walks all its weights one way (later chunks, in
         * sequences, stay first and forward) */
        const int backwards = (int)((step + (a->walk_back != 0)) & 1);
        const int chunk = step % cs == 0, chunk_last = chunk && step == 0 && backwards;
        if (chunk && !chunk_last) t_lo = input_projection(x, step, T_run, p0, p1, my_pack, 0);

        /* 2. recurrent step for this thread's units */
        if (step == 0) {
            post.h_prev = a->h0 ? a->h0 : zeros;
            post.ld_hprev = R;
        } else {
            const int64_t t_prev = a->reverse ? t + 1 : t - 1;
            post.h_prev = a->y + t_prev * row_t * a->ldy;
            post.ld_hprev = row_n * a->ldy;
        }
        float *y_t = a->y + t * row_t * a->ldy;
        const int64_t ld_y = row_n * a->ldy;
        post.y = proj ? m : y_t;
        post.ld_y = proj ? H : ld_y;
        if (a->tape) {
            post.tape = a->tape + t * row_t * tape_row;
            post.ld_tape = row_n * tape_row;
        }
        const float *h_packed = hpack + (step & 1) * hpack_half;
        const int split_last = x->cell->split_last;
        /* This thread's panels of W_hh, in alternate directions on alternate
         * steps: where its slice does not fit the cache, the panels a step
         * read last are the ones still cached, and the next step starts
         * there instead of evicting them first (each panel makes its own
         * outputs: the order changes no result). T = 100, N = 1, H = 512,
         * 1 thread, Xeon with a 2 MB L2 (W_hh 4 / 3 MB): LSTM 24.3 -> 19.9
         * ms, GRU 18.1 -> 14.1 (benchmarks/RESULTS.md, "serpentine"). */
        const int64_t mine = p1 - p0, n_panels = (split_last ? G - 1 : G) * mine;
        for (int64_t i = 0; i < n_panels; i++) {
            const int64_t j = backwards ? n_panels - 1 - i : i, g = j / mine, p = p0 + j % mine;
            K->gemm_panel(rows_now, R, h_packed, a->w_hh_p + (g * P + p) * R * RNC_PANEL, NULL,
                          acc + g * Hp + p * RNC_PANEL, GHp);
        }
        if (chunk_last) t_lo = input_projection(x, step, T_run, p0, p1, my_pack, 1);
        post.gx = gx + (t - t_lo) * N * GHp;
        post.ld_gx = GHp;
        if (split_last) {
            /* s_t from the other gates; then W_last s_t needs s_t of every
             * unit: a second GEMM after a barrier (two barriers a step) */
            if (u0 < u1) {
                ck->forward_split(&post, 0, rows_now, u0, u1);
                rnc_pack_a_cols(rows_now, H, u0, u1, (rnc_mat){split, H, 1}, K->mr, rhpack);
            }
#ifdef _OPENMP
#pragma omp barrier
#endif
            for (int64_t p = p0; p < p1; p++)
                K->gemm_panel(rows_now, H, rhpack, a->w_hh_p + ((G - 1) * P + p) * H * RNC_PANEL,
                              NULL, acc + (G - 1) * Hp + p * RNC_PANEL, GHp);
        }
        if (u0 < u1) {
            ck->forward(&post, 0, rows_now, u0, u1);
            if (proj) rnc_pack_a_cols(rows_now, H, u0, u1, (rnc_mat){m, H, 1}, K->mr, rhpack);
        }
        if (proj) { /* 2'. h_t = W_hr m_t for this thread's state units */
#ifdef _OPENMP
#pragma omp barrier
#endif
            for (int64_t q = q0; q < q1; q++)
                K->gemm_panel(rows_now, H, rhpack, a->w_hr_p + q * H * RNC_PANEL, NULL,
                              x->hproj + q * RNC_PANEL, Rp);
            for (int64_t n = 0; n < rows_now && v0 < v1; n++)
                memcpy(y_t + n * ld_y + v0, x->hproj + n * Rp + v0, (size_t)(v1 - v0) * sizeof(float));
        }
        if (v0 < v1 && step + 1 < T_run) /* h_t packed for the next step's rows */
            rnc_pack_a_cols(rnc_active_rows(a->lengths, N, step + 1), R, v0, v1,
                            (rnc_mat){y_t, ld_y, 1}, K->mr, hpack + ((step + 1) & 1) * hpack_half);
#ifdef _OPENMP
#pragma omp barrier
#endif
    }
    rnc_ftz_end(saved_csr);
}

rnc_status rnc_forward(const rnc_dims *d, const rnc_fwd_args *a, int n_threads) {
    if (!d || !a) return RNC_ERR_INVALID_ARG;
    const int G = rnc_cell_gates(d->cell);
    if (G == 0) return RNC_ERR_UNSUPPORTED;
    if (rnc_fwd_workspace_floats(d, n_threads) == 0) return RNC_ERR_INVALID_ARG;
    const rnc_cell_info *cell = rnc_cell_info_of(d->cell);
    const int64_t R = rnc_state_width(d), Rp = rnc_padded(R);
    if (!a->x || !a->w_ih_p || !a->w_hh_p || !a->y || !a->ws || a->ldy < R ||
        (d->proj > 0) != (a->w_hr_p != NULL))
        return RNC_ERR_INVALID_ARG;
    if (!cell->has_c && (a->c0 || a->c_n)) return RNC_ERR_INVALID_ARG;
    if (a->tape && cell->tape_slots == 0) return RNC_ERR_INVALID_ARG;
    if (rnc_check_lengths(a->lengths, d->T, d->N, a->batch_first, a->reverse)) return RNC_ERR_INVALID_ARG;
    if (!cell->has_c && (a->peephole || a->input_forget)) return RNC_ERR_INVALID_ARG;
    const rnc_kernels *K = rnc_active_kernels();

    const int64_t T = d->T, N = d->N, H = d->H;
    const int64_t Hp = rnc_padded(H), GHp = G * Hp;
    const int64_t cs = chunk_steps(d);
    /* row(t, n) = t * row_t + n * row_n */
    const int64_t row_t = a->batch_first ? 1 : N, row_n = a->batch_first ? T : 1;

    float *gx = a->ws;
    float *acc = gx + cs * N * GHp;
    float *bias_x = acc + N * GHp;
    float *b_last = bias_x + GHp;
    float *c = b_last + Hp;
    float *zeros = c + N * Hp;
    const int64_t S = R > H ? R : H;
    float *hpack = zeros + N * S; /* [2][packed N x R]: h_{t-1} packed, by step parity */
    const int64_t hpack_half = rnc_packed_a_floats(N, R), rhpack_floats = rnc_packed_a_floats(N, H);
    /* split cells: s_t (GRU_RB: r * h_{t-1}), packed | its rows [N, H];
     * projection: m_t likewise */
    float *rhpack = hpack + 2 * hpack_half;
    float *hproj = rhpack + rhpack_floats + N * H; /* projection: W_hr m_t [N, Rp] */
    float *apack = hproj + (d->proj > 0 ? N * Rp : 0); /* + tid * apack_floats(d) */

    /* 0. folded biases (the caller's, or folded here) and padded states
     * (padding stays exactly 0) */
    if (!a->bias_folded) rnc_fold_biases(cell, G, H, a->b_ih, a->b_hh, bias_x, b_last);
    const float *bias_in = a->bias_folded ? a->bias_folded : bias_x;
    const float *b_last_in = a->bias_folded ? a->bias_folded + GHp : b_last;
    memset(c, 0, (size_t)(N * Hp) * sizeof(float));
    if (cell->has_c && a->c0)
        for (int64_t n = 0; n < N; n++) memcpy(c + n * Hp, a->c0 + n * H, (size_t)H * sizeof(float));
    if (!a->h0) memset(zeros, 0, (size_t)(N * S) * sizeof(float));

    const int nt = rnc_step_threads(d, G, n_threads);
    const fwd_team ctx = {d, a, K, cell, G, cs, row_t, row_n, gx, acc, bias_in, b_last_in, c, zeros,
                          hpack, hpack_half, rhpack_floats, rhpack, hproj, apack};
    /* a team of one runs without a parallel region: libgomp pays futex
     * syscalls even for one thread, which one-step calls (step()) feel */
#ifdef _OPENMP
    if (nt > 1) {
#pragma omp parallel num_threads(nt)
        forward_thread(&ctx, omp_get_thread_num(), omp_get_num_threads());
    } else
#else
    (void)nt;
#endif
        forward_thread(&ctx, 0, 1);

    /* 3. final states (with lengths: at each sequence's last step; the rows
     * past its end are zeroed) */
    const int64_t tape_row = cell->tape_slots * Hp;
    for (int64_t n = 0; n < N && a->lengths; n++)
        for (int64_t t = a->lengths[n]; t < T; t++) {
            memset(a->y + (t * N + n) * a->ldy, 0, (size_t)R * sizeof(float));
            if (a->tape) memset(a->tape + (t * N + n) * tape_row, 0, (size_t)tape_row * sizeof(float));
        }
    if (a->h_n)
        for (int64_t n = 0; n < N; n++) {
            const int64_t t_last = a->lengths ? a->lengths[n] - 1 : a->reverse ? 0 : T - 1;
            memcpy(a->h_n + n * R, a->y + (t_last * row_t + n * row_n) * a->ldy,
                   (size_t)R * sizeof(float));
        }
    if (a->c_n)
        for (int64_t n = 0; n < N; n++) memcpy(a->c_n + n * H, c + n * Hp, (size_t)H * sizeof(float));
    return RNC_OK;
}

size_t rnc_tape_floats(const rnc_dims *d) {
    if (rnc_fwd_workspace_floats(d, 1) == 0) return 0; /* invalid or overflowing dims */
    const int64_t lim = rnc_float_limit();
    const int64_t row = rnc_tape_slots(d->cell) * rnc_padded(d->H);
    const int64_t n = rnc_mul_checked(rnc_mul_checked(d->T, d->N, lim), row, lim);
    return n < 0 ? 0 : (size_t)n;
}
