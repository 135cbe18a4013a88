/*
 * cells.c: what the drivers know of each cell kind (rnc_cell_info in
 * kernels.h). The equations and tape slots are in the cell's own source,
 * isa/cells/<cell>.inc.
 */
#include <string.h>

#include "kernels.h"

static const rnc_cell_info CELLS[RNC_N_CELLS] = {
    /*             gates slots has_c split slot bias_in dgh direct_h */
    [RNC_CELL_RNN_TANH] = {1, 0, 0, 0, 0, 0, 0, 0},
    [RNC_CELL_RNN_RELU] = {1, 0, 0, 0, 0, 0, 0, 0},
    [RNC_CELL_LSTM] = {4, 6, 1, 0, 0, 0, 0, 0},
    [RNC_CELL_GRU] = {3, 4, 0, 0, 0, 1, 1, 1},
    [RNC_CELL_GRU_RB] = {3, 4, 0, 1, 3, 0, 0, 1},
};

const rnc_cell_info *rnc_cell_info_of(rnc_cell cell) {
    return (int)cell >= 0 && (int)cell < RNC_N_CELLS ? &CELLS[cell] : NULL;
}

int rnc_cell_gates(rnc_cell cell) {
    const rnc_cell_info *c = rnc_cell_info_of(cell);
    return c ? c->gates : 0;
}

void rnc_fold_biases(const rnc_cell_info *cell, int G, int64_t H, const float *b_ih,
                     const float *b_hh, float *bias_x, float *b_last) {
    const int64_t Hp = rnc_padded(H);
    for (int g = 0; g < G; g++) {
        float *out = bias_x + g * Hp;
        const float *hh = b_hh && (!cell->last_bias_inside || g < G - 1) ? b_hh + g * H : NULL;
        if (b_ih) memcpy(out, b_ih + g * H, (size_t)H * sizeof(float));
        else memset(out, 0, (size_t)H * sizeof(float));
        for (int64_t u = 0; hh && u < H; u++) out[u] += hh[u];
        memset(out + H, 0, (size_t)(Hp - H) * sizeof(float));
    }
    memset(b_last, 0, (size_t)Hp * sizeof(float));
    if (cell->last_bias_inside && b_hh) memcpy(b_last, b_hh + (G - 1) * H, (size_t)H * sizeof(float));
}

int64_t rnc_folded_bias_floats(rnc_cell cell, int64_t H) {
    const int G = rnc_cell_gates(cell);
    if (G == 0 || H < 1 || H > ((int64_t)1 << 40)) return 0;
    return (G + 1) * rnc_padded(H);
}

rnc_status rnc_fold_bias(rnc_cell cell, int64_t H, const float *b_ih, const float *b_hh,
                         float *out) {
    if (!out || rnc_folded_bias_floats(cell, H) == 0) return RNC_ERR_INVALID_ARG;
    const int G = rnc_cell_gates(cell);
    rnc_fold_biases(rnc_cell_info_of(cell), G, H, b_ih, b_hh, out, out + G * rnc_padded(H));
    return RNC_OK;
}
