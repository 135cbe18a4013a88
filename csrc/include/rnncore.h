/*
 * rnncore.h: the whole public C API of the rnncore kernels.
 *
 * Plain structs of dimensions and pointers, a status enum, caller-owned memory.
 * No Python or NumPy headers: the kernels build and run from plain C.
 *
 * Conventions (fixed here and in rnncore/reference.py; identical to PyTorch):
 *   Dimension letters: T time, N batch, I input features, H hidden units, G gates.
 *   Gates are stored as contiguous blocks of H per row ([.., G*H]):
 *     RNN   G = 1   h = act(W_ih x + b_ih + W_hh h_prev + b_hh), act = tanh | relu
 *     LSTM  G = 4   gate order i, f, g, o
 *     GRU   G = 3   gate order r, z, n; the reset gate multiplies the recurrent
 *                   product ("linear before reset"):
 *                   n = tanh(W_in x + b_in + r * (W_hn h_prev + b_hn))
 *                   h = (1 - z) * n + z * h_prev
 */
#ifndef RNNCORE_H
#define RNNCORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RNC_VERSION "0.1.0"

typedef enum {
    RNC_OK = 0,
    RNC_ERR_INVALID_ARG = -1, /* NULL pointer, non-positive size, size overflow */
    RNC_ERR_NO_MEMORY = -2,
    RNC_ERR_UNSUPPORTED = -3  /* unknown cell kind */
} rnc_status;

/* Static strings, never freed. */
const char *rnc_status_str(rnc_status s);

typedef enum {
    RNC_CELL_RNN_TANH = 0,
    RNC_CELL_RNN_RELU = 1,
    RNC_CELL_LSTM = 2,
    RNC_CELL_GRU = 3
} rnc_cell;

/* Number of gates G of a cell kind (1, 4 or 3), or 0 for an unknown kind. */
int rnc_cell_gates(rnc_cell cell);

typedef struct {
    int64_t T, N, I, H; /* time steps, batch, input features, hidden units; all >= 1 */
    rnc_cell cell;
} rnc_dims;

/*
 * Forward pass of one layer-direction over a whole sequence.
 *
 * Rows: a "row" is the feature vector of one (t, n) pair. Its index is
 *   row(t, n) = t * N + n   (time-major, batch_first == 0)
 *   row(t, n) = n * T + t   (batch-major, batch_first != 0)
 * x and y are both addressed this way.
 *
 * Weights are passed transposed with respect to PyTorch's storage ("packed"):
 *   w_ih_t[k * G*H + j] = weight_ih[j][k]    ([I, G*H], row-major)
 *   w_hh_t[k * G*H + j] = weight_hh[j][k]    ([H, G*H], row-major)
 * rnc_pack_weight() produces this layout from PyTorch's.
 */
typedef struct {
    const float *x;              /* T*N rows of I floats, contiguous                 */
    const float *h0;             /* [N, H], or NULL for zeros                        */
    const float *c0;             /* [N, H], or NULL for zeros; LSTM only             */
    const float *w_ih_t;         /* [I, G*H]                                         */
    const float *w_hh_t;         /* [H, G*H]                                         */
    const float *b_ih, *b_hh;    /* [G*H] each, or NULL for zeros                    */
    float *y;                    /* row r occupies y[r*ldy .. r*ldy + H): H floats   */
    int64_t ldy;                 /* row stride of y in floats, >= H                  */
    float *h_n;                  /* [N, H], or NULL                                  */
    float *c_n;                  /* [N, H], or NULL; LSTM only                       */
    float *ws;                   /* rnc_fwd_workspace_floats(d) floats               */
    int batch_first;             /* row order of x and y, see above                  */
    int reverse;                 /* 1: run from t = T-1 down to 0                    */
} rnc_fwd_args;

/*
 * Floats of workspace rnc_forward() needs for these dims, or 0 when the dims
 * are invalid or the size overflows.
 */
size_t rnc_fwd_workspace_floats(const rnc_dims *d);

/*
 * rnc_forward: y, h_n, c_n = layer(x, h0, c0).
 *
 * Ownership: every buffer belongs to the caller; the call writes only y (the H
 * floats of each row), h_n, c_n and ws. Aliasing: outputs must not overlap
 * inputs or each other. Threads: up to n_threads (<= 0 means the OpenMP
 * default; ignored in a serial build); small problems run on one thread. The
 * result does not depend on n_threads. Status: RNC_ERR_INVALID_ARG for NULL
 * required pointers, sizes < 1 or overflowing, ldy < H; RNC_ERR_UNSUPPORTED for
 * an unknown cell. Never prints, aborts or exits.
 */
rnc_status rnc_forward(const rnc_dims *d, const rnc_fwd_args *a, int n_threads);

/* dst[k * rows + j] = src[j * cols + k]: [rows, cols] -> [cols, rows]. */
rnc_status rnc_pack_weight(int64_t rows, int64_t cols, const float *src, float *dst);

/* 1 when built with OpenMP, else 0. */
int rnc_has_openmp(void);

/* Threads OpenMP would use by default (omp_get_max_threads), 1 in a serial build. */
int rnc_default_threads(void);

#ifdef __cplusplus
}
#endif

#endif /* RNNCORE_H */
