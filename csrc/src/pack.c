/*
 * pack.c: PyTorch weight layout [G*H, K] -> the panel layout of kernels.h,
 * done when weights are set (an optimizer step sets them all: the element
 * by element scatter packed a 2 x 512 LSTM's 4.2 M weights in 17 ms).
 */
#include <string.h>

#include "kernels.h"

size_t rnc_packed_floats(rnc_cell cell, int64_t H, int64_t K) {
    const int G = rnc_cell_gates(cell);
    const int64_t lim = rnc_float_limit();
    if (G == 0 || H < 1 || K < 1 || H > lim / 2) return 0; /* H/2 bound: rnc_padded(H) fits */
    const int64_t total = rnc_mul_checked(rnc_mul_checked(G, rnc_padded(H), lim), K, lim);
    return total < 0 ? 0 : (size_t)total;
}

rnc_status rnc_pack_weights(rnc_cell cell, int64_t H, int64_t K, const float *src, float *dst) {
    const size_t total = rnc_packed_floats(cell, H, K);
    if (!src || !dst || total == 0) return RNC_ERR_INVALID_ARG;
    const int64_t G = rnc_cell_gates(cell), Hp = rnc_padded(H), P = Hp / RNC_PANEL;
    for (int64_t g = 0; g < G; g++)
        for (int64_t p = 0; p < P; p++) {
            float *panel = dst + (g * P + p) * K * RNC_PANEL;
            const float *rows = src + (g * H + p * RNC_PANEL) * K;
            if ((p + 1) * RNC_PANEL <= H) { /* a whole panel: gemm.c's 4 x 4 transposes */
                rnc_pack_a(RNC_PANEL, K, (rnc_mat){rows, K, 1}, RNC_PANEL, panel);
                continue;
            }
            memset(panel, 0, (size_t)(K * RNC_PANEL) * sizeof(float)); /* zero past H */
            for (int64_t j = 0; p * RNC_PANEL + j < H; j++) {
                const float *row = rows + j * K;
                for (int64_t k = 0; k < K; k++) panel[k * RNC_PANEL + j] = row[k];
            }
        }
    return RNC_OK;
}
