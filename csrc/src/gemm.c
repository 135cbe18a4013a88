/*
 * gemm.c: a general single-precision GEMM, C (+)= A B, for the backward pass
 * (input and state gradients over a whole sequence, weight gradients), built
 * on the same packed micro-kernel as the forward (rnc_kernels.gemm_panel).
 *
 * Blocking (BLIS order), the sizes from blocking.c (rnc_blk, derived from
 * the caches): for each group of NC columns (panels of 32), for each block
 * of KC rows of K: pack those rows of B (NC x KC fills L2); for each block
 * of MC rows of A: pack it (an eighth of L2) and run the micro-kernel over
 * the group's panels (it walks each panel in chunks of kchunk rows of K that
 * stay in L1 while the row tiles pass). With a group of half of L2 A was
 * packed twice for 512 columns, and packing took 8% of an LSTM training
 * step. Scratch is sized for the largest blocking rnc_set_blocking accepts.
 */
#include <string.h>

#include "kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define RNC_PACK_SSE 1
#endif
#if defined(__GNUC__) || defined(__clang__)
#define PACK_INLINE static inline __attribute__((always_inline))
#else
#define PACK_INLINE static inline
#endif

int64_t rnc_gemm_scratch_floats(void) {
    /* packed B group | packed A block | one edge panel of C */
    return RNC_GROUP_FLOATS_MAX + RNC_MC_MAX * RNC_KC_MAX + RNC_MC_MAX * RNC_PANEL;
}

void rnc_pack_b_panel(int64_t kc, int64_t Nc, rnc_mat B, int64_t k0, int64_t col, float *Bp) {
    const int64_t w = Nc - col < RNC_PANEL ? Nc - col : RNC_PANEL;
    for (int64_t k = 0; k < kc; k++) {
        const float *row = B.p + (k0 + k) * B.rs + col * B.cs;
        float *dst = Bp + k * RNC_PANEL;
        if (B.cs == 1) {
            memcpy(dst, row, (size_t)w * sizeof(float));
        } else {
            for (int64_t j = 0; j < w; j++) dst[j] = row[j * B.cs];
        }
        for (int64_t j = w; j < RNC_PANEL; j++) dst[j] = 0.0f;
    }
}

/* One tile of mt rows: tile[k*mt + r] = A(r, k), k-major. Inlined with a
 * constant mt for full tiles, so that the r loop becomes vector moves: with a
 * run-time mt (and memcpy calls of 48 bytes for A^T) packing took 10-17% of
 * a 2048 x 512 x 2240 GEMM. */
PACK_INLINE void pack_tile(const int mt, int64_t K, const float *a, int64_t rs, int64_t cs,
                           float *tile) {
    if (mt == 1 && cs == 1) { /* a batch-1 step's h: one contiguous row (the
                               * run-time-mt gather below was 7.6 % of an RNN
                               * h256 N = 1 forward, Zen 5) */
        memcpy(tile, a, (size_t)K * sizeof(float));
        return;
    }
    if (rs == 1) { /* A^T: the mt rows of a k are adjacent */
        for (int64_t k = 0; k < K; k++)
            for (int r = 0; r < mt; r++) tile[k * mt + r] = a[k * cs + r];
        return;
    }
    int64_t k = 0;
#ifdef RNC_PACK_SSE
    /* rows along k (cs = 1): 4 x 4 blocks transposed in registers, 0.16 ns
     * a float against 0.46 for the scalar gather below (96 x 512 blocks);
     * the rows past the last multiple of 4 (mt = 6, 10, 14) gathered */
    const int m4 = mt / 4 * 4;
    if (cs == 1 && m4 > 0)
        for (; k + 4 <= K; k += 4) {
            for (int r = m4; r < mt; r++)
                for (int j = 0; j < 4; j++) tile[(k + j) * mt + r] = a[r * rs + k + j];
            for (int r = 0; r < m4; r += 4) {
                __m128 r0 = _mm_loadu_ps(a + r * rs + k), r1 = _mm_loadu_ps(a + (r + 1) * rs + k);
                __m128 r2 = _mm_loadu_ps(a + (r + 2) * rs + k), r3 = _mm_loadu_ps(a + (r + 3) * rs + k);
                _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
                _mm_storeu_ps(tile + k * mt + r, r0);
                _mm_storeu_ps(tile + (k + 1) * mt + r, r1);
                _mm_storeu_ps(tile + (k + 2) * mt + r, r2);
                _mm_storeu_ps(tile + (k + 3) * mt + r, r3);
            }
        }
#endif
    {
        for (; k < K; k++)
            for (int r = 0; r < mt; r++) tile[k * mt + r] = a[r * rs + k * cs];
    }
}

/* pack_tile with a constant mt for every tile height of blocking.c's choices */
#define PACK_TILE(mt, K, a, rs, cs, tile)                               \
    switch (mt) {                                                       \
    case 14: pack_tile(14, K, a, rs, cs, tile); break;                  \
    case 12: pack_tile(12, K, a, rs, cs, tile); break;                  \
    case 10: pack_tile(10, K, a, rs, cs, tile); break;                  \
    case 8: pack_tile(8, K, a, rs, cs, tile); break;                    \
    case 6: pack_tile(6, K, a, rs, cs, tile); break;                    \
    case 5: pack_tile(5, K, a, rs, cs, tile); break;                    \
    case 4: pack_tile(4, K, a, rs, cs, tile); break;                    \
    default: pack_tile(mt, K, a, rs, cs, tile); break;                  \
    }

void rnc_pack_a_cols(int64_t M, int64_t K, int64_t k0, int64_t k1, rnc_mat A, int mr, float *Ap) {
    for (int64_t m = 0; m < M; m += mr) {
        const int mt = M - m < mr ? (int)(M - m) : mr;
        const float *a = A.p + m * A.rs + k0 * A.cs;
        float *tile = Ap + m * K + k0 * mt;
        PACK_TILE(mt, k1 - k0, a, A.rs, A.cs, tile);
    }
}

void rnc_pack_a(int64_t M, int64_t K, rnc_mat A, int mr, float *Ap) {
    for (int64_t m = 0; m < M; m += mr) {
        const int mt = M - m < mr ? (int)(M - m) : mr;
        float *tile = Ap + m * K;
        const float *a = A.p + m * A.rs;
        PACK_TILE(mt, K, a, A.rs, A.cs, tile);
    }
}

int64_t rnc_gemm_prepacked_scratch_floats(void) {
    /* packed A block | one edge panel of C */
    return RNC_MC_MAX * RNC_KC_MAX + RNC_MC_MAX * RNC_PANEL;
}

/* rnc_gemm_part, and rnc_gemm_prepacked_part with Bp_all (B's panels packed
 * once, rnc_pack_weights' layout: panel q's row k at (q*K + k)*RNC_PANEL) and
 * bias (added once, in the first K block, by the micro-kernel). */
static void gemm_part_impl(const rnc_kernels *kern, int64_t M, int64_t Nc, int64_t K,
                           rnc_mat A, rnc_mat B, const float *Bp_all, const float *bias,
                           float *C, int64_t ldc, int accumulate, float *scratch, int part,
                           int parts) {
    const int64_t P = (Nc + RNC_PANEL - 1) / RNC_PANEL;
    const int64_t KC = rnc_blk.kc, MC = rnc_blk.mc, NCP = rnc_blk.nc / RNC_PANEL;
    const int col_parts = parts < P ? parts : (int)P;
    const int row_parts = parts / col_parts;
    if (part >= col_parts * row_parts) return;
    int64_t p0, p1, m_lo, m_hi;
    rnc_split_range(P, col_parts, part % col_parts, 1, &p0, &p1);
    rnc_split_range(M, row_parts, part / col_parts, MC, &m_lo, &m_hi);

    float *Bp = Bp_all ? NULL : scratch;
    float *Ap = Bp_all ? scratch : Bp + RNC_GROUP_FLOATS_MAX;
    float *edge = Ap + RNC_MC_MAX * RNC_KC_MAX;
    float edge_bias[RNC_PANEL]; /* the last, partial panel's bias, zero-padded */
    if (bias && Nc % RNC_PANEL) {
        memset(edge_bias, 0, sizeof edge_bias);
        memcpy(edge_bias, bias + (P - 1) * RNC_PANEL, (size_t)(Nc % RNC_PANEL) * sizeof(float));
    }
    for (int64_t jp = p0; jp < p1; jp += NCP) {
        const int64_t np = p1 - jp < NCP ? p1 - jp : NCP;
        for (int64_t k0 = 0; k0 < K; k0 += KC) {
            const int64_t kc = K - k0 < KC ? K - k0 : KC;
            const int acc = accumulate || k0 > 0;
            for (int64_t q = 0; !Bp_all && q < np; q++)
                rnc_pack_b_panel(kc, Nc, B, k0, (jp + q) * RNC_PANEL, Bp + q * kc * RNC_PANEL);
            for (int64_t m0 = m_lo; m0 < m_hi; m0 += MC) {
                const int64_t mc = m_hi - m0 < MC ? m_hi - m0 : MC;
                const rnc_mat Ablk = {A.p + m0 * A.rs + k0 * A.cs, A.rs, A.cs};
                rnc_pack_a(mc, kc, Ablk, kern->mr, Ap);
                for (int64_t q = 0; q < np; q++) {
                    const int64_t col = (jp + q) * RNC_PANEL;
                    const int64_t w = Nc - col < RNC_PANEL ? Nc - col : RNC_PANEL;
                    const float *Pq = Bp_all ? Bp_all + ((jp + q) * K + k0) * RNC_PANEL
                                             : Bp + q * kc * RNC_PANEL;
                    const float *bq = !bias ? NULL : w == RNC_PANEL ? bias + col : edge_bias;
                    float *Cq = C + m0 * ldc + col;
                    if (w == RNC_PANEL) {
                        if (acc) kern->gemm_panel_acc(mc, kc, Ap, Pq, Cq, ldc);
                        else kern->gemm_panel(mc, kc, Ap, Pq, bq, Cq, ldc);
                        continue;
                    }
                    /* last, partial panel: through a full-width buffer, since
                     * the micro-kernel always writes RNC_PANEL columns */
                    if (acc)
                        for (int64_t r = 0; r < mc; r++) {
                            memcpy(edge + r * RNC_PANEL, Cq + r * ldc, (size_t)w * sizeof(float));
                            memset(edge + r * RNC_PANEL + w, 0, (size_t)(RNC_PANEL - w) * sizeof(float));
                        }
                    if (acc) kern->gemm_panel_acc(mc, kc, Ap, Pq, edge, RNC_PANEL);
                    else kern->gemm_panel(mc, kc, Ap, Pq, bq, edge, RNC_PANEL);
                    for (int64_t r = 0; r < mc; r++)
                        memcpy(Cq + r * ldc, edge + r * RNC_PANEL, (size_t)w * sizeof(float));
                }
            }
        }
    }
}

void rnc_gemm_part(const rnc_kernels *kern, int64_t M, int64_t Nc, int64_t K,
                   rnc_mat A, rnc_mat B, float *C, int64_t ldc, int accumulate,
                   float *scratch, int part, int parts) {
    gemm_part_impl(kern, M, Nc, K, A, B, NULL, NULL, C, ldc, accumulate, scratch, part, parts);
}

void rnc_gemm_prepacked_part(const rnc_kernels *kern, int64_t M, int64_t Nc, int64_t K,
                             rnc_mat A, const float *Bp, const float *bias, float *C,
                             int64_t ldc, float *scratch, int part, int parts) {
    const rnc_mat none = {NULL, 0, 0};
    gemm_part_impl(kern, M, Nc, K, A, none, Bp, bias, C, ldc, 0, scratch, part, parts);
}

/* Threads of a public GEMM: at most one per 2 MFLOP (below that the fork
 * costs more than the work it shares) and per column panel or row block. */
static int gemm_threads(int64_t M, int64_t N, int64_t K, int n_threads) {
    int nt = rnc_resolve_threads(n_threads);
    const int64_t by_work = M * N * K / (1 << 20);
    const int64_t by_blocks = ((N + RNC_PANEL - 1) / RNC_PANEL) * ((M + rnc_blk.mc - 1) / rnc_blk.mc);
    if (nt > by_work) nt = (int)(by_work > 1 ? by_work : 1);
    if (nt > by_blocks) nt = (int)by_blocks;
    return nt;
}

int64_t rnc_gemm_workspace_floats(int n_threads) {
    return rnc_gemm_scratch_floats() * rnc_resolve_threads(n_threads);
}

rnc_status rnc_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t a_rs, int64_t a_cs,
                    const float *B, int64_t b_rs, int64_t b_cs, float *C, int64_t ldc,
                    int accumulate, float *scratch, int n_threads) {
    if (M < 1 || N < 1 || K < 1 || !A || !B || !C || !scratch || ldc < N)
        return RNC_ERR_INVALID_ARG;
    const int64_t limit = rnc_float_limit();
    if (rnc_mul_checked(M, ldc, limit) < 0 || rnc_mul_checked(M, K, limit) < 0 ||
        rnc_mul_checked(K, N, limit) < 0)
        return RNC_ERR_INVALID_ARG;
    const rnc_kernels *kern = rnc_active_kernels();
    const rnc_mat a = {A, a_rs, a_cs}, b = {B, b_rs, b_cs};
    const int nt = gemm_threads(M, N, K, n_threads);
    const int64_t per = rnc_gemm_scratch_floats();
    const unsigned int saved_csr = rnc_ftz_begin();
#ifdef _OPENMP
    if (nt > 1) {
#pragma omp parallel num_threads(nt)
        {
            const unsigned int csr = rnc_ftz_begin();
            const int tid = omp_get_thread_num(), team = omp_get_num_threads();
            rnc_gemm_part(kern, M, N, K, a, b, C, ldc, accumulate, scratch + tid * per, tid, team);
            rnc_ftz_end(csr);
        }
    } else
#endif
        rnc_gemm_part(kern, M, N, K, a, b, C, ldc, accumulate, scratch, 0, 1);
#ifndef _OPENMP
    (void)nt; (void)per;
#endif
    rnc_ftz_end(saved_csr);
    return RNC_OK;
}
