/*
 * step.c: one time step of L stacked unidirectional layers (streaming
 * inference, rnncore's layer.step()): for l = 0 .. L-1,
 *
 *   h[l], c[l] = cell_l(x_l, h0[l], c0[l]),   x_0 = x,  x_l = h[l-1]
 *
 * each layer a T = 1 rnc_forward on its own packed weights, the new state
 * written straight into h[l] (for T = 1 the output row is the new state).
 */
#include "rnncore.h"

rnc_status rnc_forward_step(rnc_cell cell, int64_t L, int64_t N, int64_t I, int64_t H,
                            const rnc_fwd_args *layers, const float *x, const float *h0,
                            const float *c0, float *h, float *c, float *ws, int n_threads) {
    int lstm = cell == RNC_CELL_LSTM;
    if (!layers || !x || !h || !ws || L < 1 || N < 1 || I < 1 || H < 1 || (lstm && !c)
        || N > INT64_MAX / H || N * H > INT64_MAX / L)
        return RNC_ERR_INVALID_ARG;
    const int64_t state = N * H;
    for (int64_t l = 0; l < L; l++) {
        rnc_dims d = {1, N, l == 0 ? I : H, H, cell, 0};
        rnc_fwd_args a = layers[l];
        a.x = l == 0 ? x : h + (l - 1) * state;
        a.h0 = h0 ? h0 + l * state : NULL;
        a.c0 = lstm && c0 ? c0 + l * state : NULL;
        a.y = h + l * state;
        a.ldy = H;
        a.h_n = NULL;
        a.c_n = lstm ? c + l * state : NULL;
        a.ws = ws;
        a.batch_first = 0;
        a.reverse = 0;
        a.tape = NULL;
        a.lengths = NULL;
        rnc_status s = rnc_forward(&d, &a, n_threads);
        if (s != RNC_OK)
            return s;
    }
    return RNC_OK;
}
