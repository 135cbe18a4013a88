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
 *     GRU_RB  G = 3 the same with the reset gate before the product (ONNX's
 *                   default linear_before_reset = 0, Keras reset_after=False):
 *                   n = tanh(W_in x + b_in + W_hn (r * h_prev) + b_hn)
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
    RNC_CELL_GRU = 3,
    RNC_CELL_GRU_RB = 4
} rnc_cell;

/* Number of gates G of a cell kind (1, 4 or 3), or 0 for an unknown kind. */
int rnc_cell_gates(rnc_cell cell);

typedef struct {
    int64_t T, N, I, H; /* time steps, batch, input features, hidden units; all >= 1 */
    rnc_cell cell;
    int64_t proj;       /* LSTM only: 0, or R >= 1, PyTorch's proj_size (see below) */
} rnc_dims;

/*
 * LSTM with a projection (rnc_dims.proj = R > 0; PyTorch's proj_size): the
 * state h is R wide, h_t = W_hr (o * tanh(c_t)) with W_hr [R, H]; c stays H
 * wide. Then everything that is h-sized is R-sized: h0, h_n, dh0, dh_n [N, R],
 * y and dy rows of R floats, w_hh [4H, R] (packed with K = R).
 */

/*
 * Forward pass of one layer-direction over a whole sequence.
 *
 * Rows: a "row" is the feature vector of one (t, n) pair. Its index is
 *   row(t, n) = t * N + n   (time-major, batch_first == 0)
 *   row(t, n) = n * T + t   (batch-major, batch_first != 0)
 * x and y are both addressed this way.
 *
 * Weights are passed packed: rnc_pack_weights() turns PyTorch's [G*H, K]
 * layout into the panel layout of the micro-kernels, once, when the weights are
 * set (never per call).
 */
typedef struct {
    const float *x;              /* T*N rows of I floats, contiguous                 */
    const float *h0;             /* [N, H], or NULL for zeros                        */
    const float *c0;             /* [N, H], or NULL for zeros; LSTM only             */
    const float *w_ih_p;         /* weight_ih packed: rnc_packed_floats(cell, H, I)  */
    const float *w_hh_p;         /* weight_hh packed: rnc_packed_floats(cell, H, H)  */
    const float *b_ih, *b_hh;    /* [G*H] each, or NULL for zeros                    */
    float *y;                    /* row r occupies y[r*ldy .. r*ldy + H): H floats   */
    int64_t ldy;                 /* row stride of y in floats, >= H                  */
    float *h_n;                  /* [N, H], or NULL                                  */
    float *c_n;                  /* [N, H], or NULL; LSTM only                       */
    float *ws;                   /* rnc_fwd_workspace_floats(d) floats               */
    int batch_first;             /* row order of x and y, see above                  */
    int reverse;                 /* 1: run from t = T-1 down to 0                    */
    float *tape;                 /* NULL (inference), or rnc_tape_floats(d) floats   */
                                 /* that rnc_backward reads (training); must be NULL */
                                 /* when rnc_tape_floats(d) is 0 (RNN cells)         */
    const int64_t *lengths;      /* NULL, or [N] steps of each sequence, see below   */
    const float *peephole;       /* LSTM: NULL, or [3*H] p_i, p_f, p_o (see below)   */
    int input_forget;            /* LSTM: 1 couples the forget gate: f = 1 - i       */
    const float *w_hr_p;         /* with d->proj: W_hr [R, H] packed as one gate of  */
                                 /* R units: rnc_packed_floats(RNN_TANH, R, H)       */
    int walk_back;               /* 1: the first step reads its weights last to      */
                                 /* first (see below); 0 otherwise. No result changes */
    const float *bias_folded;    /* NULL, or b_ih and b_hh as rnc_fold_bias folds    */
                                 /* them (b_ih, b_hh then unread): see below         */
} rnc_fwd_args;

/*
 * Folded biases: every forward starts by summing b_ih and b_hh (per gate,
 * the cell's rule: GRU keeps the last gate's b_hh apart) into a padded
 * copy. A caller making one-step calls on the same weights (layer.step())
 * folds once and passes the result as bias_folded: each call would read
 * b_ih and b_hh and write the copy, at H = 512 24 KB a call, which evict as
 * much of the weights from L2 (an int8 LSTM step at H = 512, Zen 5, this and
 * rnc_qforward no longer clearing its sums: 17.3 -> 16.8 us).
 * rnc_folded_bias_floats: the floats of the folded form (0 for bad
 * arguments); rnc_fold_bias: the fold, b_ih and b_hh [G*H] each or NULL
 * for zeros.
 */
int64_t rnc_folded_bias_floats(rnc_cell cell, int64_t H);
rnc_status rnc_fold_bias(rnc_cell cell, int64_t H, const float *b_ih, const float *b_hh,
                         float *out);

/*
 * Weight walk (rnc_fwd_args.walk_back): each step reads its weights panel
 * after panel, in alternate directions on alternate steps, so that where
 * they do not fit the cache a step starts on the panels the last one read
 * last, still cached. walk_back sets the first step's direction; a caller
 * making one step per call (layer.step()) flips it every call where
 * rnc_step_walk_alternates() says so. A first step walking backwards
 * runs its input projection after its recurrent product, backwards too
 * (the later chunks of a sequence run theirs first, forward).
 */

/*
 * LSTM variants (ONNX's LSTM attributes): with peepholes
 *   i = s(.. + p_i * c_prev)   f = s(.. + p_f * c_prev)   o = s(.. + p_o * c_t)
 * and with input_forget the forget gate is f = 1 - i (its weights unused).
 */

/*
 * Variable lengths (rnc_fwd_args.lengths, rnc_bwd_args.lengths): sequence n
 * runs for lengths[n] steps, 1 <= lengths[n] <= T, and the lengths must be
 * non-increasing in n (callers sort the batch; rnncore/engine/lengths.py does). Only
 * time-major and forward in time (batch_first = reverse = 0; a reverse
 * direction is a forward pass over each sequence reversed within its own
 * length). Step t computes only the lengths[n] > t rows, so the work follows
 * the number of real tokens; y rows past a sequence's end are set to 0, h_n
 * and c_n are taken at its last step.
 */

/* Floats of the tape a forward pass for training fills, T*N*S*Hp with S = 6
 * (LSTM), 4 (GRU, GRU_RB), 0 (RNN: backward needs only y); 0 for invalid dims. */
size_t rnc_tape_floats(const rnc_dims *d);

/*
 * Floats of workspace rnc_forward() needs for these dims and n_threads (pass
 * the same n_threads to both; <= 0 means the OpenMP default), or 0 when the
 * dims are invalid or the size overflows.
 */
size_t rnc_fwd_workspace_floats(const rnc_dims *d, int n_threads);

/*
 * rnc_forward: y, h_n, c_n = layer(x, h0, c0).
 *
 * Ownership: every buffer belongs to the caller; the call writes only y (the H
 * floats of each row), h_n, c_n and ws. Aliasing: outputs must not overlap
 * inputs or each other. Threads: up to n_threads (<= 0 means the OpenMP
 * default; at most 4 per processor; ignored in a serial build); small
 * problems run on fewer threads. The
 * result does not depend on n_threads. Status: RNC_ERR_INVALID_ARG for NULL
 * required pointers, sizes < 1 or overflowing, ldy < H; RNC_ERR_UNSUPPORTED for
 * an unknown cell. Never prints, aborts or exits.
 */
rnc_status rnc_forward(const rnc_dims *d, const rnc_fwd_args *a, int n_threads);

/*
 * rnc_forward_step: one time step of L stacked unidirectional layers
 * (streaming inference). Layer l reads x (l = 0) or layer l-1's new h,
 * starts from h0[l] / c0[l] and writes h[l] / c[l]; the top layer's output
 * is h[L-1]. layers[l] gives layer l's packed weights, biases and variant
 * (its x, y, h0, h_n, c0, c_n, ws, tape and lengths fields are ignored).
 *
 * x [N, I]; h0, c0 [L, N, H] or NULL for zeros (c0: LSTM only); h, c
 * [L, N, H] (c: LSTM only, else NULL); ws: rnc_fwd_workspace_floats of a
 * T = 1 layer with max(I, H) inputs. Status and threads as rnc_forward.
 */
rnc_status rnc_forward_step(rnc_cell cell, int64_t L, int64_t N, int64_t I, int64_t H,
                            const rnc_fwd_args *layers, const float *x, const float *h0,
                            const float *c0, float *h, float *c, float *ws, int n_threads);

/*
 * Backward pass (BPTT) of one layer-direction, after rnc_forward with a tape.
 *
 * x, h0, c0, y/ldy, batch_first and reverse exactly as in the forward call;
 * the weights in PyTorch's layout (not packed): w_ih [G*H, I], w_hh [G*H, H].
 * dy: gradient of the loss with respect to y (rows as y, stride lddy), or
 * NULL for zero; dh_n, dc_n: [N, H] gradients with respect to h_n and c_n, or
 * NULL for zero.
 *
 * Writes (or, with dx_accumulate, adds to) dx rows (stride lddx; NULL to skip)
 * and writes dh0, dc0 ([N, H]; NULL to skip). ADDS the parameter gradients to
 * dw_ih [G*H, I], dw_hh [G*H, H] and, when not NULL, db_ih, db_hh [G*H], so
 * gradients of several calls accumulate as in PyTorch.
 *
 * Results are deterministic for a given n_threads (and in fact identical for
 * every n_threads: each element has one fixed summation order).
 */
typedef struct {
    const float *x, *h0, *c0;      /* as in rnc_fwd_args                            */
    const float *w_ih, *w_hh;      /* [G*H, I], [G*H, H], PyTorch's layout           */
    const float *y;  int64_t ldy;  /* the forward output of this call                */
    const float *tape;             /* filled by the forward; NULL for RNN cells      */
    const float *dy; int64_t lddy; /* or NULL                                         */
    const float *dh_n, *dc_n;      /* or NULL                                         */
    float *dx;       int64_t lddx; /* or NULL                                         */
    int dx_accumulate;             /* 1: dx += (a second direction of the same input) */
    float *dh0, *dc0;              /* or NULL                                         */
    float *dw_ih, *dw_hh;          /* accumulated                                     */
    float *db_ih, *db_hh;          /* accumulated, or NULL                            */
    float *ws;                     /* rnc_bwd_workspace_floats(d, n_threads) floats,  */
                                   /* 8-byte aligned (it holds doubles)               */
    int batch_first, reverse;
    const int64_t *lengths;        /* as in the forward call (NULL: all T)            */
    const float *peephole;         /* as in the forward call                          */
    int input_forget;              /* as in the forward call                          */
    float *dpeephole;              /* with peephole: [3*H], accumulated               */
    const float *w_hr;             /* with d->proj: [R, H], PyTorch's layout          */
    float *dw_hr;                  /* with d->proj: [R, H], accumulated               */
} rnc_bwd_args;

size_t rnc_bwd_workspace_floats(const rnc_dims *d, int n_threads);
rnc_status rnc_backward(const rnc_dims *d, const rnc_bwd_args *a, int n_threads);

/*
 * Log-softmax + cross-entropy, fused, over M rows of V logits (row r at
 * z + r*ldz): loss[r] = logsumexp(z_r) - z_r[target[r]] (nats), stable for
 * any magnitude; when dz is not NULL also dz_r = scale * (softmax(z_r) -
 * onehot(target[r])) (row stride lddz; dz may be z itself, overwritten).
 * Rows with target[r] < 0 are padding: loss 0, dz 0. RNC_ERR_INVALID_ARG for
 * a target >= V or bad sizes. Threads over rows; deterministic.
 */
rnc_status rnc_softmax_xent(int64_t M, int64_t V, const float *z, int64_t ldz,
                            const int64_t *target, float *loss, float *dz, int64_t lddz,
                            float scale, int n_threads);

/*
 * The backward pass of an embedding lookup: for r = 0 .. M-1 in order,
 * dst[index[r]] += src[r] (rows of E floats; src row r at src + r*ld_src,
 * dst row v at dst + v*ld_dst, V rows). float32 adds in row order: the sums
 * of NumPy's np.add.at(dst, index, src), bit for bit, for every thread
 * count. M = 0 does nothing. RNC_ERR_INVALID_ARG (nothing written) for an
 * index outside [0, V) or bad sizes.
 */
rnc_status rnc_scatter_add_rows(int64_t M, int64_t E, const int64_t *index, const float *src,
                                int64_t ld_src, float *dst, int64_t V, int64_t ld_dst,
                                int n_threads);

/*
 * Softmax (log_softmax = 0) or log-softmax (log_softmax != 0) of each of M
 * rows of V floats: row r of x at x + r*ldx, of y at y + r*ldy; y may be x
 * itself (in place, ldy = ldx), any other overlap is invalid. Computed as
 * NumPy does in float32, z = x - max(x), exp(z) / sum or z - log(sum):
 * rows holding NaN or +inf, and rows all -inf, give NaN. Threads over rows;
 * results do not depend on the thread count. RNC_ERR_INVALID_ARG for NULL
 * pointers, sizes < 1 or overflowing, short strides, partial overlap.
 */
rnc_status rnc_softmax(int64_t M, int64_t V, const float *x, int64_t ldx, float *y, int64_t ldy,
                       int log_softmax, int n_threads);

/*
 * General single-precision GEMM on the library's blocked kernels:
 * C[M, N] (+)= A[M, K] B[K, N], with A(i, k) at A[i*a_rs + k*a_cs] and
 * B(k, j) at B[k*b_rs + j*b_cs] (any strides: a transpose is a stride swap),
 * C row-major with row stride ldc >= N; accumulate != 0 adds to C. scratch:
 * rnc_gemm_workspace_floats(n_threads) floats. Results do not depend on the
 * thread count. For a language model's output layer (logits, and the
 * decoder's weight and input gradients).
 */
int64_t rnc_gemm_workspace_floats(int n_threads);
rnc_status rnc_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t a_rs, int64_t a_cs,
                    const float *B, int64_t b_rs, int64_t b_cs, float *C, int64_t ldc,
                    int accumulate, float *scratch, int n_threads);

/*
 * A linear layer with constant weights: y[M, Nout] = x[M, K] W^T (+ bias),
 * W [Nout, K] packed once by rnc_pack_weights(RNC_CELL_RNN_TANH, Nout, K)
 * (one gate of Nout units); x rows of stride ldx >= K, y rows of stride
 * ldy >= Nout, bias [Nout] or NULL. ws: rnc_linear_workspace_floats(K,
 * n_threads) floats (0 when K is out of range). Results do not depend on
 * n_threads. Status: RNC_ERR_INVALID_ARG for NULL pointers, sizes < 1 or
 * overflowing, short strides.
 */
size_t rnc_linear_workspace_floats(int64_t K, int n_threads);
rnc_status rnc_linear(int64_t M, int64_t K, int64_t Nout, const float *x, int64_t ldx,
                      const float *w_p, const float *bias, float *y, int64_t ldy, float *ws,
                      int n_threads);

/*
 * Packed weights. rnc_packed_floats: floats of the packed form of a [G*H, K]
 * weight of this cell (0 for invalid sizes). rnc_pack_weights: src [G*H, K]
 * row-major (PyTorch's layout) -> dst (caller-allocated, that many floats).
 */
size_t rnc_packed_floats(rnc_cell cell, int64_t H, int64_t K);
rnc_status rnc_pack_weights(rnc_cell cell, int64_t H, int64_t K, const float *src, float *dst);

/*
 * CPU paths. rnc_init() detects the CPU once (CPUID plus the OS XGETBV check),
 * honours RNNCORE_DISABLE_ISA (comma-separated: "avx512", "avx2", "neon") and
 * selects the best compiled path; it is idempotent and rnc_forward calls it
 * when needed. rnc_isa_name: the active path ("avx512", "avx2" or "generic"
 * on x86-64; "neon" or "generic" on AArch64).
 * rnc_compiled_isas: the paths in this build, comma-separated.
 * rnc_isa_available: 1 if `name` is compiled, supported by this CPU and not
 * disabled. rnc_set_isa: switch the active path (for tests and benchmarks; not
 * while other calls run); RNC_ERR_UNSUPPORTED if it is not available.
 */
void rnc_init(void);
const char *rnc_isa_name(void);
const char *rnc_compiled_isas(void);
int rnc_isa_available(const char *name);
rnc_status rnc_set_isa(const char *name);

/*
 * GEMM blocking (blocking.c), derived by rnc_init() and rnc_set_isa() from
 * the caches and the active path's vector registers; rnc_get_blocking()
 * says what was detected and chosen, and `why` gives the rule of each choice
 * (one line each). Caches: CPUID leaf 4 (Intel) / 0x8000001D (AMD), else
 * sysconf, else 32 KB / 256 KB / 8 MB; RNNCORE_CACHE="L1,L2,L3" (bytes, with
 * optional K / M / G suffixes) overrides them, so that one machine makes
 * another CPU's choices. A bad RNNCORE_CACHE is ignored and cache_error says
 * why (never an abort).
 * rnc_set_blocking (tuning sweeps, tests; not while other calls run): the
 * tile height mr (one of rnc_gemm_tile_rows), the micro-kernel's K chunk,
 * and gemm.c's KC (a multiple of 128), MC (rows, a multiple of mr) and NC
 * (columns, a multiple of 32); 0 derives that value again from the rule;
 * prefetch: the panel rows (128 bytes each) that tiles of 1-2 rows prefetch
 * ahead (0-256; 0: none), < 0 derives it.
 * RNC_ERR_INVALID_ARG for a value out of range (then nothing changes).
 * Results are identical for every kchunk, KC, MC and NC; the tile height
 * regroups the sums of the rows it leaves in a tail of 1-3 rows (float32
 * rounding of a K-term sum).
 */
typedef struct {
    int64_t l1d, l2, l3;       /* bytes: L1 data and L2 of one core, one L3    */
    const char *cache_source;  /* "RNNCORE_CACHE", "cpuid", "sysconf", "default" */
    const char *cache_error;   /* why RNNCORE_CACHE was ignored, or ""        */
    int vregs, vector_floats;  /* the active path's vector registers, width    */
    int mr, tile_cols;         /* micro-kernel tile: mr rows x tile_cols columns */
    int64_t kchunk;            /* micro-kernel: K rows of a panel kept in L1   */
    int64_t kc, mc, nc;        /* gemm.c: K block, A rows block, B columns group */
    int64_t prefetch;          /* 1-2 row tiles: panel rows prefetched ahead, 0 = none */
    const char *why;
} rnc_blocking;
const rnc_blocking *rnc_get_blocking(void);
rnc_status rnc_set_blocking(int mr, int64_t kchunk, int64_t kc, int64_t mc, int64_t nc,
                            int64_t prefetch);
/* 1 when one-step calls whose weights take weight_bytes should alternate
 * rnc_fwd_args.walk_back from call to call (blocking.c, "walk"), else 0. */
int rnc_step_walk_alternates(int64_t weight_bytes);
/* The tile heights compiled for the active path: writes up to cap, returns the count. */
int rnc_gemm_tile_rows(int *out, int cap);

/*
 * Machine probes for the benchmarks, on the active CPU path, with n_threads
 * threads (<= 0: the OpenMP default) each running for about `seconds`.
 * rnc_probe_peak_gflops: sustained FP32 FMA throughput, GFLOP/s summed over
 * the threads. rnc_probe_read_gbps: read bandwidth of buf[0, n) (caller-owned;
 * each thread reads its own contiguous share, so a buffer that fits a cache
 * level measures that level), GB/s summed. Both return -1 on bad arguments.
 */
double rnc_probe_peak_gflops(int n_threads, double seconds);
double rnc_probe_read_gbps(const float *buf, int64_t n, int n_threads, double seconds);

/* 1 when built with OpenMP, else 0. */
int rnc_has_openmp(void);

/* Threads OpenMP would use by default (omp_get_max_threads), 1 in a serial build. */
int rnc_default_threads(void);

#ifdef __cplusplus
}
#endif

#endif /* RNNCORE_H */
