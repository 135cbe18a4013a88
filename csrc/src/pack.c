/*
 * pack.c: PyTorch weight layout [G*H, K] -> the panel layout of kernels.h,
 * done once when weights are set.
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
    memset(dst, 0, total * sizeof(float));
    for (int64_t g = 0; g < G; g++)
        for (int64_t p = 0; p < P; p++) {
            float *panel = dst + (g * P + p) * K * RNC_PANEL;
            for (int64_t j = 0; j < RNC_PANEL && p * RNC_PANEL + j < H; j++) {
                const float *row = src + (g * H + p * RNC_PANEL + j) * K;
                for (int64_t k = 0; k < K; k++) panel[k * RNC_PANEL + j] = row[k];
            }
        }
    return RNC_OK;
}
