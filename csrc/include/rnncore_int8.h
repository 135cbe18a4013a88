/*
 * rnncore_int8.h: the public C API of rnncore's int8 inference kernels
 * (forward only). Include after rnncore.h (dims, cells, status).
 *
 * Scheme (as PyTorch's dynamic quantization, ONNX Runtime's
 * DynamicQuantizeLSTM, Marian's intgemm):
 *   weights   W[j, k] ~ sw[j] * Wq[j, k], Wq int8 in [-127, 127], one fp32
 *             scale per output row j (a per-tensor scale is the same scale
 *             repeated);
 *   activations, quantized at every product, one scale per row of the
 *             batch: for a row v of K floats, a = max_k |v_k| and
 *               sv = a / Q,  q_k = rint(v_k * (Q / a)) in [-Q, Q]
 *             with Q = 127, or Q = 63 on the avx2_7bit path (7-bit
 *             activations, as the anchors' reduce_range: what lets
 *             vpmaddubsw run without VNNI and without saturating; Q is
 *             rnc_qisa_act_max()) (float32 arithmetic, round half to even); rows with
 *             a < 2^-100 quantize to sv = 0, q = 0; rows holding NaN or
 *             +-inf to sv = NaN, q = 0 (their outputs are NaN);
 *   product   acc[j] = sum_k q_k Wq[j, k]  exactly, in int32 (K <= 65535);
 *   result    (float)acc[j] * (sv * sw[j])  in float32, then the fp32 bias,
 *             gates and cell state of rnncore.h's equations.
 * For a given Q the integers are the same on every CPU path (AMX, AVX-512
 * VNNI, AVX2, NEON with and without dot products, generic C) and for every
 * thread count; rnncore/reference.py (qlinear, qlayer_forward, act_max=Q)
 * computes the same numbers in NumPy.
 */
#ifndef RNNCORE_INT8_H
#define RNNCORE_INT8_H

#include "rnncore.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest K (input features, or state width) of an int8 product. */
#define RNC_Q_MAX_K 65535

/*
 * Packed int8 weights: a [G*H, K] int8 weight (values in [-127, 127]) and
 * its [G*H] fp32 row scales (finite, >= 0) in the kernels' layout, one
 * byte array (rnc_qpacked_bytes). 0 bytes for invalid sizes.
 * rnc_qpack_weights: RNC_ERR_INVALID_ARG for a -128, a negative or
 * non-finite scale, or bad sizes.
 */
size_t rnc_qpacked_bytes(int64_t G, int64_t H, int64_t K);
rnc_status rnc_qpack_weights(int64_t G, int64_t H, int64_t K, const int8_t *wq,
                             const float *scale, uint8_t *dst);

/*
 * rnc_qforward: one layer-direction over a whole sequence, as rnc_forward
 * (rows, batch_first, reverse, lengths, states, the LSTM variants and the
 * projection d->proj) with int8 weights: w_ih_q = rnc_qpack_weights(G, H, I),
 * w_hh_q = (G, H, R), w_hr_q = (1, R, H) with a projection. ws:
 * rnc_qfwd_workspace_bytes(d, n_threads) bytes. The result does not depend
 * on n_threads.
 */
typedef struct {
    const float *x;
    const float *h0, *c0;
    const uint8_t *w_ih_q, *w_hh_q, *w_hr_q;
    const float *b_ih, *b_hh;
    float *y;
    int64_t ldy;
    float *h_n, *c_n;
    void *ws;
    int batch_first, reverse;
    const int64_t *lengths;
    const float *peephole;
    int input_forget;
    int walk_back;  /* as rnc_fwd_args.walk_back */
    const float *bias_folded; /* as rnc_fwd_args.bias_folded */
} rnc_qfwd_args;

size_t rnc_qfwd_workspace_bytes(const rnc_dims *d, int n_threads);
rnc_status rnc_qforward(const rnc_dims *d, const rnc_qfwd_args *a, int n_threads);

/*
 * rnc_qlinear: y[M, Nout] = dequantised q(x) Wq^T (+ bias), w_q =
 * rnc_qpack_weights(1, Nout, K); x rows of stride ldx >= K, y rows of
 * stride ldy >= Nout. acc (may be NULL): [M, Nout] the int32 products
 * themselves; x_scale (may be NULL): [M] the rows' activation scales sv.
 * ws: rnc_qlinear_workspace_bytes(M, K, n_threads) bytes; w_q and ws
 * 4-byte aligned.
 */
size_t rnc_qlinear_workspace_bytes(int64_t M, int64_t K, int n_threads);
rnc_status rnc_qlinear(int64_t M, int64_t K, int64_t Nout, const float *x, int64_t ldx,
                       const uint8_t *w_q, const float *bias, float *y, int64_t ldy,
                       int32_t *acc, float *x_scale, void *ws, int n_threads);

/* The int8 path chosen with the fp32 path (rnc_isa_name): "amx" (AMX-INT8
 * tiles for whole 16-row blocks, avx512vnni for the other rows; the CPU has
 * AMX-INT8 and AVX-512 VNNI, the OS grants the tile state, the fp32 path is
 * avx512, RNNCORE_DISABLE_ISA names neither "amx" nor "avx512vnni"),
 * "avx512vnni" (AVX-512 VNNI + BW, unless RNNCORE_DISABLE_ISA names
 * "avx512vnni" or the fp32 path is not avx512), "avx2_7bit" (AVX2 or AVX-512
 * path active: 7-bit activations, unless RNNCORE_DISABLE_ISA names
 * "avx2_7bit"), "avx2" (8-bit activations), "neon_dotprod" (neon path, the CPU has the Armv8.2 dot products,
 * unless RNNCORE_DISABLE_ISA names "neon_dotprod"), "neon" (neon path), else
 * "generic"; or the path rnc_set_qisa chose, while it is usable with the
 * fp32 path. */
const char *rnc_qisa_name(void);

/* The activations' Q of the active int8 path (127, or 63 for avx2_7bit). */
int rnc_qisa_act_max(void);

/* The int8 paths usable with the active fp32 path, comma-separated, the
 * default first (a static buffer, valid until the next call). */
const char *rnc_qisa_candidates(void);

/* Use int8 path `name` (one of rnc_qisa_candidates()) while the fp32 path
 * offers it; NULL or "" returns to the default. RNC_ERR_UNSUPPORTED for a
 * path not offered. Not thread-safe against running calls (tests,
 * benchmarks). */
rnc_status rnc_set_qisa(const char *name);

#ifdef __cplusplus
}
#endif

#endif /* RNNCORE_INT8_H */
