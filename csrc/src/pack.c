/*
 * pack.c: PyTorch weight layout [G*H, K] -> the panel layout of kernels.h,
 * done once when weights are set.
 */
#include <string.h>

#include "kernels.h"

size_t rnc_packed_floats(rnc_cell cell, int64_t H, int64_t K) {
    const int G = rnc_cell_gates(cell);
    if (G == 0 || H < 1 || K < 1) return 0;
    const int64_t Hp = rnc_padded(H);
    const int64_t limit = (int64_t)((SIZE_MAX < (uint64_t)INT64_MAX ? SIZE_MAX : INT64_MAX) /
                                    sizeof(float));
    if (Hp > limit / G || K > limit / (G * Hp)) return 0;
    return (size_t)(G * Hp * K);
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
