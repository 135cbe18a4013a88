/*
 * kernels_generic.c: the portable path, plain C that the compiler vectorises
 * for the baseline ISA (SSE2 on x86-64). The equations are in fwd.c.
 */
#include "activations.h"
#include "kernels.h"

#define MR 4

/* C = bias + A P, or C += A P with accum (see kernels.h) */
static void gemm_tiles(int accum, int64_t M, int64_t K, const float *Ap,
                       const float *P, const float *bias, float *C, int64_t ldc) {
    for (int64_t m = 0; m < M; m += MR) {
        const int mr = M - m < MR ? (int)(M - m) : MR;
        const float *tile = Ap + m * K;
        float acc[MR][RNC_PANEL];
        for (int r = 0; r < mr; r++)
            for (int j = 0; j < RNC_PANEL; j++)
                acc[r][j] = accum ? C[(m + r) * ldc + j] : bias ? bias[j] : 0.0f;
        for (int64_t k = 0; k < K; k++) {
            const float *b = P + k * RNC_PANEL;
            for (int r = 0; r < mr; r++) {
                const float a = tile[k * mr + r];
#pragma omp simd
                for (int j = 0; j < RNC_PANEL; j++) acc[r][j] += a * b[j];
            }
        }
        for (int r = 0; r < mr; r++)
            for (int j = 0; j < RNC_PANEL; j++) C[(m + r) * ldc + j] = acc[r][j];
    }
}

static void gemm_panel(int64_t M, int64_t K, const float *Ap,
                       const float *P, const float *bias, float *C, int64_t ldc) {
    gemm_tiles(0, M, K, Ap, P, bias, C, ldc);
}

static void gemm_panel_acc(int64_t M, int64_t K, const float *Ap, const float *P,
                           float *C, int64_t ldc) {
    gemm_tiles(1, M, K, Ap, P, NULL, C, ldc);
}

void rnc_lstm_update(const rnc_post *p, const float *peep, int coupled, int64_t n0, int64_t n1,
                     int64_t u0, int64_t u1) {
    const int64_t Hp = p->Hp, H = p->H;
    for (int64_t n = n0; n < n1; n++) {
        const float *gx = p->gx + n * p->ld_gx, *a = p->acc + n * p->ld_acc;
        float *c = p->c + n * Hp, *y = p->y + n * p->ld_y;
        float *tp = p->tape ? p->tape + n * p->ld_tape : NULL;
#pragma omp simd
        for (int64_t u = u0; u < u1; u++) {
            const float cp = c[u];
            const float pi = peep ? peep[u] : 0.0f, pf = peep ? peep[H + u] : 0.0f;
            const float po = peep ? peep[2 * H + u] : 0.0f;
            const float i = rnc_sigmoid(gx[u] + a[u] + pi * cp);
            const float f = coupled ? 1.0f - i : rnc_sigmoid(gx[Hp + u] + a[Hp + u] + pf * cp);
            const float g = rnc_tanh(gx[2 * Hp + u] + a[2 * Hp + u]);
            const float ct = f * cp + i * g;
            const float o = rnc_sigmoid(gx[3 * Hp + u] + a[3 * Hp + u] + po * ct);
            const float tc = rnc_tanh(ct);
            c[u] = ct;
            y[u] = o * tc;
            if (tp) {
                tp[u] = i;
                tp[Hp + u] = f;
                tp[2 * Hp + u] = g;
                tp[3 * Hp + u] = o;
                tp[4 * Hp + u] = ct;
                tp[5 * Hp + u] = tc;
            }
        }
    }
}

static void postgemm(const rnc_post *p, int64_t n0, int64_t n1, int64_t u0, int64_t u1) {
    const int64_t Hp = p->Hp;
    if (p->cell == RNC_CELL_LSTM) {
        rnc_lstm_update(p, NULL, 0, n0, n1, u0, u1);
        return;
    }
    for (int64_t n = n0; n < n1; n++) {
        const float *gx = p->gx + n * p->ld_gx;
        const float *a = p->acc + n * p->ld_acc;
        float *y = p->y + n * p->ld_y;
        float *tp = p->tape ? p->tape + n * p->ld_tape : NULL;
        switch (p->cell) {
        case RNC_CELL_RNN_TANH:
#pragma omp simd
            for (int64_t u = u0; u < u1; u++) y[u] = rnc_tanh(gx[u] + a[u]);
            break;
        case RNC_CELL_RNN_RELU:
#pragma omp simd
            for (int64_t u = u0; u < u1; u++) y[u] = rnc_relu(gx[u] + a[u]);
            break;
        case RNC_CELL_LSTM: /* above */
            break;
        case RNC_CELL_GRU: {
            const float *hp = p->h_prev + n * p->ld_hprev;
#pragma omp simd
            for (int64_t u = u0; u < u1; u++) {
                const float r = rnc_sigmoid(gx[u] + a[u]);
                const float z = rnc_sigmoid(gx[Hp + u] + a[Hp + u]);
                const float an = a[2 * Hp + u] + p->b_hn[u];
                const float nn = rnc_tanh(gx[2 * Hp + u] + r * an);
                y[u] = (1.0f - z) * nn + z * hp[u];
                if (tp) {
                    tp[u] = r;
                    tp[Hp + u] = z;
                    tp[2 * Hp + u] = nn;
                    tp[3 * Hp + u] = an;
                }
            }
            break;
        }
        case RNC_CELL_GRU_RB: /* not here: fwd.c's gru_rb_gates and gru_rb_update */
            break;
        }
    }
}

/* The fused softmax cross-entropy of one row (equations in xent.c): 16
 * float partial sums the compiler keeps in vectors, added in double (a single
 * double accumulator kept the loop scalar: 11 ns an element). */
static void xent_row(int64_t V, const float *z, int64_t k, float *loss, float *dz, float scale) {
    const float zk = z[k]; /* read before dz (which may be z) is overwritten */
    float m = -INFINITY;
    for (int64_t j = 0; j < V; j++) m = z[j] > m ? z[j] : m; /* a NaN reaches s below */
    float part[16] = {0}, e[16];
    int64_t j = 0;
    for (; j + 16 <= V; j += 16) {
#pragma omp simd
        for (int i = 0; i < 16; i++) {
            e[i] = rnc_exp(z[j + i] - m);
            part[i] += e[i];
        }
        if (dz) memcpy(dz + j, e, sizeof e);
    }
    double s = 0.0;
    for (; j < V; j++) {
        const float ej = rnc_exp(z[j] - m);
        if (dz) dz[j] = ej;
        s += ej;
    }
    for (int i = 0; i < 16; i++) s += part[i];
    *loss = (float)(log(s) + m - zk);
    if (dz) {
        const float inv = (float)(scale / s);
#pragma omp simd
        for (int64_t i = 0; i < V; i++) dz[i] *= inv;
        dz[k] -= scale;
    }
}

/* One row of rnc_softmax (equations in softmax.c): 16 float partial sums
 * of exp(x - m) in vectors, added in double, as xent_row. */
static void softmax_row(int64_t V, const float *x, float *y, int log_softmax, const float *next) {
    (void)next;
    float mp[16];
    for (int i = 0; i < 16; i++) mp[i] = -INFINITY;
    int64_t j = 0;
    for (; j + 16 <= V; j += 16) /* 1. m = max x (a NaN reaches s below) */
#pragma omp simd
        for (int i = 0; i < 16; i++) mp[i] = x[j + i] > mp[i] ? x[j + i] : mp[i];
    float m = -INFINITY;
    for (int i = 0; i < 16; i++) m = mp[i] > m ? mp[i] : m;
    for (; j < V; j++) m = x[j] > m ? x[j] : m;
    float part[16] = {0}, e[16]; /* 2. s = sum exp(x - m) */
    for (j = 0; j + 16 <= V; j += 16) {
#pragma omp simd
        for (int i = 0; i < 16; i++) {
            e[i] = rnc_exp(x[j + i] - m);
            part[i] += e[i];
        }
        if (!log_softmax) memcpy(y + j, e, sizeof e);
    }
    double s = 0.0;
    for (; j < V; j++) {
        const float ej = rnc_exp(x[j] - m);
        if (!log_softmax) y[j] = ej;
        s += ej;
    }
    for (int i = 0; i < 16; i++) s += part[i];
    if (log_softmax) { /* 3. */
        const float ls = (float)log(s);
#pragma omp simd
        for (int64_t i = 0; i < V; i++) y[i] = (x[i] - m) - ls;
    } else {
        const float inv = (float)(1.0 / s);
#pragma omp simd
        for (int64_t i = 0; i < V; i++) y[i] *= inv;
    }
}

static float probe_fma(int64_t iters) {
    float acc[12][4]; /* 12 SSE registers on the x86-64 baseline */
    for (int i = 0; i < 12; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = (float)i;
    for (int64_t k = 0; k < iters; k++)
        for (int i = 0; i < 12; i++)
#pragma omp simd
            for (int j = 0; j < 4; j++) acc[i][j] = acc[i][j] * 0.999f + 1e-3f;
    float total = 0.0f;
    for (int i = 0; i < 12; i++) total += acc[i][0];
    return total;
}

static float probe_read(const float *buf, int64_t n) {
    float s[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
#pragma omp simd
        for (int j = 0; j < 16; j++) s[j] += buf[i + j];
    float total = 0.0f;
    for (int j = 0; j < 16; j++) total += s[j];
    for (; i < n; i++) total += buf[i];
    return total;
}

const rnc_kernels rnc_kernels_generic = {"generic", MR, gemm_panel, gemm_panel_acc, postgemm, xent_row,
                                        probe_fma, 12 * 4 * 2, probe_read, softmax_row};
