/*
 * step.c: one recurrent time step, fused: for a tile of hidden units,
 *   1. a = W_hh h_prev            (recurrent GEMM tile, all G gates)
 *   2. the cell's element-wise update on gx + a, written to y (and c):
 *
 *   RNN   h = act(gx + a)                       gx = W_ih x + b_ih + b_hh
 *   LSTM  i = s(gx_i + a_i)  f = s(gx_f + a_f)  g = tanh(gx_g + a_g)
 *         o = s(gx_o + a_o)  c = f*c_prev + i*g  h = o * tanh(c)
 *   GRU   r = s(gx_r + a_r)  z = s(gx_z + a_z)  gx_r, gx_z hold b_ih + b_hh,
 *         n = tanh(gx_n + r*(a_n + b_hn))        gx_n holds b_in only
 *         h = (1 - z)*n + z*h_prev
 * (s = sigmoid; numbering as in rnncore/reference.py.)
 */
#include "kernels.h"
#include "activations.h"

/* Post-GEMM update of units [u, u+ub) for one batch row; acc[g*RNC_UB + j]
 * holds a for gate g, unit u+j. */
RNC_INLINE void postgemm(const rnc_step *s, int64_t n, int64_t u, int ub,
                         const float *acc) {
    const int64_t H = s->H;
    const float *gx = s->gx + n * s->ld_gx + u;
    float *y = s->y + n * s->ld_y + u;
    switch (s->cell) {
    case RNC_CELL_RNN_TANH:
#pragma omp simd
        for (int j = 0; j < ub; j++) y[j] = rnc_tanh(gx[j] + acc[j]);
        break;
    case RNC_CELL_RNN_RELU:
#pragma omp simd
        for (int j = 0; j < ub; j++) y[j] = rnc_relu(gx[j] + acc[j]);
        break;
    case RNC_CELL_LSTM: {
        float *c = s->c + n * H + u;
#pragma omp simd
        for (int j = 0; j < ub; j++) {
            const float i = rnc_sigmoid(gx[j] + acc[j]);
            const float f = rnc_sigmoid(gx[H + j] + acc[RNC_UB + j]);
            const float g = rnc_tanh(gx[2 * H + j] + acc[2 * RNC_UB + j]);
            const float o = rnc_sigmoid(gx[3 * H + j] + acc[3 * RNC_UB + j]);
            const float ct = f * c[j] + i * g;
            c[j] = ct;
            y[j] = o * rnc_tanh(ct);
        }
        break;
    }
    case RNC_CELL_GRU: {
        const float *hp = s->h_prev + n * s->ld_hprev + u;
        const float *bhn = s->b_hn ? s->b_hn + u : NULL;
#pragma omp simd
        for (int j = 0; j < ub; j++) {
            const float r = rnc_sigmoid(gx[j] + acc[j]);
            const float z = rnc_sigmoid(gx[H + j] + acc[RNC_UB + j]);
            const float an = acc[2 * RNC_UB + j] + (bhn ? bhn[j] : 0.0f);
            const float nn = rnc_tanh(gx[2 * H + j] + r * an);
            y[j] = (1.0f - z) * nn + z * hp[j];
        }
        break;
    }
    }
}

/* acc[r][g][j] = sum_k h_prev[n+r, k] * w_hh_t[k, g*H + u + j] for mr rows. */
RNC_INLINE void recurrent_tile(const rnc_step *s, int64_t n, int mr, int64_t u,
                               int ub, float acc[RNC_MR][4 * RNC_UB]) {
    const int64_t H = s->H, G = s->G, GH = G * H;
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < 4 * RNC_UB; j++) acc[r][j] = 0.0f;
    for (int64_t k = 0; k < H; k++) {
        const float *w = s->w_hh_t + k * GH + u;
        for (int r = 0; r < mr; r++) {
            const float h = s->h_prev[(n + r) * s->ld_hprev + k];
            for (int64_t g = 0; g < G; g++) {
                float *ag = acc[r] + g * RNC_UB;
                const float *wg = w + g * H;
#pragma omp simd
                for (int j = 0; j < ub; j++) ag[j] += h * wg[j];
            }
        }
    }
}

void rnc_step_units(const rnc_step *s, int64_t u0, int64_t u1) {
    float acc[RNC_MR][4 * RNC_UB];
    for (int64_t n = 0; n < s->N; n += RNC_MR) {
        const int mr = s->N - n < RNC_MR ? (int)(s->N - n) : RNC_MR;
        for (int64_t u = u0; u < u1; u += RNC_UB) {
            const int ub = u1 - u < RNC_UB ? (int)(u1 - u) : RNC_UB;
            if (mr == RNC_MR && ub == RNC_UB) /* full tile: constant trip counts */
                recurrent_tile(s, n, RNC_MR, u, RNC_UB, acc);
            else
                recurrent_tile(s, n, mr, u, ub, acc);
            for (int r = 0; r < mr; r++) postgemm(s, n + r, u, ub, acc[r]);
        }
    }
}
