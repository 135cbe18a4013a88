/*
 * cells.c: what the drivers know of each cell kind (rnc_cell_info in
 * kernels.h). The equations and tape slots are in the cell's own source,
 * isa/cells/<cell>.inc.
 */
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
