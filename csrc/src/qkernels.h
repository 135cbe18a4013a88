/*
 * qkernels.h: internal interfaces of the int8 kernels (qlinear.c, qfwd.c,
 * qdispatch.c and the per-ISA isa/qkernels_<isa>.c). Not public API; the
 * scheme is stated in rnncore_int8.h.
 *
 * Packed int8 weights (rnc_qpack_weights) of a [G*H, K] weight, with Hp =
 * rnc_padded(H) (the fp32 gate-row padding, so that rows of gate
 * pre-activations use the fp32 kernels' layout), Kq = ceil(K / 4) and Pg =
 * Hp/16 panels of 16 output rows per gate:
 *   panels  int8, per gate g, groups of RNC_QGROUP panels (the last group
 *           of a gate narrower: w = min(RNC_QGROUP, Pg - 8b) panels, even,
 *           since Hp is a multiple of 32), each group [Kq][w][16][4]:
 *             group b of gate g at byte (g*Pg + 8b) * Kq*64, and in it
 *             [kq][i][j][r] = Wq[g*H + (8b + i)*16 + j][4*kq + r]
 *           (zero past H and past K). A kernel reading 8 panels (the VNNI
 *           one-row tile) then reads one stream of 512-byte rows, not 8
 *           streams 64*Kq bytes apart: 8 streams of 8 KB read 512 KB in
 *           3.0-3.25 us, one 2.04-2.15 us (1 thread, Zen 5, pure-read C
 *           loop; padding the stride between the 8 did not help).
 *   colsum  int32 [G*Hp]: sum_k Wq[row][k] (0 on padding)
 *   scale   float [G*Hp]: sw[row] (0 on padding)
 * at byte offsets 0, qpanel_bytes, qpanel_bytes + 4*G*Hp.
 *
 * Activations enter the kernels as bytes u = q + 128 (unsigned, what the
 * VNNI instruction multiplies), rows of lda >= 4*Kq bytes padded with 128
 * (q = 0), q in [-act_max, act_max] (the table's: 127, or 63 for avx2_7bit).
 * A kernel returns sum_k u_k Wq[j, k] (offset 128; exact: at most
 * 255 * 127 * 65535 < 2^31), from which the driver subtracts 128 *
 * colsum[j], sum_k (q_k + 64) Wq[j, k] (offset 64) or sum_k q_k Wq[j, k]
 * itself (offset 0): sum_k q_k Wq[j, k] exactly every way.
 */
#ifndef RNC_QKERNELS_H
#define RNC_QKERNELS_H

#include "kernels.h"
#include "rnncore_int8.h"

#define RNC_QPANEL 16 /* output rows per int8 panel */
#define RNC_QGROUP 8  /* panels per interleaved group (the layout above) */

static inline int64_t rnc_qk(int64_t K) { return (K + 3) / 4; }

static inline int64_t rnc_qpanel_bytes(int64_t G, int64_t H, int64_t K) {
    return G * rnc_padded(H) * rnc_qk(K) * 4;
}

typedef struct {
    const char *name;
    /* C[m*ldc + p*RNC_QPANEL + j] = sum_{k < 4*Kq} (A[m*lda + k] - 128 + offset) * W[p][k][j]
     * for m < M, p < np, j < RNC_QPANEL, panel p's 64 bytes of k group kq
     * at W + kq*ldw + 64*p (np panels of one group: rnc_qgroup_panel):
     * offset 128 sums the bytes u as they are (VNNI's u8 x s8), offset 64
     * sums q + 64 (avx2_7bit), offset 0 sums q = u - 128; the driver
     * subtracts offset * colsum[j]. */
    int32_t offset;
    /* activations are quantized to q in [-act_max, act_max]: 127, or 63
     * where the kernel needs 7-bit activations (rnncore_int8.h) */
    int32_t act_max;
    void (*gemm)(int64_t M, int64_t Kq, const uint8_t *A, int64_t lda, const int8_t *W,
                 int64_t ldw, int64_t np, int32_t *C, int64_t ldc);
    /* Quantize row v[0, K) into u[0, 4*rnc_qk(K)) (q + 128, padding 128;
     * |q| <= act_max); returns the row's scale sv. */
    float (*quantize_row)(int64_t K, const float *v, uint8_t *u);
    /* out[j] = (float)(C[j] - offset*colsum[j]) * (sv * sw[j]) (+ bias[j])
     * for j in [0, n): one row of gemm's sums dequantized (offset: this
     * table's); bias may be NULL. Both from qrows.inc: the same bits on
     * every table. */
    void (*dequant_row)(int64_t n, const int32_t *C, const int32_t *colsum, int32_t offset,
                        const float *sw, float sv, const float *bias, float *out);
    /* One row: gemm of np panels (M = 1) and dequant_row of its np*16 sums
     * in one pass, the same bits (NULL: the driver calls the two). A batch-1
     * step's 32 products of 8 panels spent 0.55 us of 19.5 in dequant_row
     * (perf, int8 LSTM H = 512, Zen 5): the sums stored, reloaded, and a
     * call each. */
    void (*row_dequant)(int64_t Kq, const uint8_t *a, const int8_t *W, int64_t ldw, int64_t np,
                        const int32_t *colsum, int32_t offset, const float *sw, float sv,
                        const float *bias, float *out);
} rnc_qkernels;

extern const rnc_qkernels rnc_qkernels_generic;
#ifdef RNC_HAVE_QAVX2
extern const rnc_qkernels rnc_qkernels_avx2_7bit; /* 7-bit activations: the default without VNNI */
extern const rnc_qkernels rnc_qkernels_avx2;      /* 8-bit, the same integers as every path */
#endif
#ifdef RNC_HAVE_QAVX512VNNI
extern const rnc_qkernels rnc_qkernels_avx512vnni;
#endif
#ifdef RNC_HAVE_QAMX
extern const rnc_qkernels rnc_qkernels_amx; /* rows past whole 16-row tiles: avx512vnni's */
#endif
#ifdef RNC_HAVE_QNEON
extern const rnc_qkernels rnc_qkernels_neon;
#endif
#ifdef RNC_HAVE_QNEON_DOTPROD
extern const rnc_qkernels rnc_qkernels_neon_dotprod;
#endif

/* The int8 table that goes with the active fp32 table (qdispatch.c). */
const rnc_qkernels *rnc_active_qkernels(void);

/* Rows below this absolute maximum quantize to zero (rnncore_int8.h). */
#define RNC_Q_TINY 7.8886090522101181e-31f /* 2^-100 */

/* Panel p of gate g in packed panels (Pg panels a gate, Kq k groups):
 * the byte offset of its first 64 bytes; *ldw gets the bytes between its k
 * groups (its group's width * 64) and *left the panels from p to its
 * group's end. */
static inline int64_t rnc_qgroup_offset(int64_t Pg, int64_t Kq, int64_t g, int64_t p,
                                        int64_t *ldw, int64_t *left) {
    const int64_t b0 = p / RNC_QGROUP * RNC_QGROUP;
    const int64_t w = Pg - b0 < RNC_QGROUP ? Pg - b0 : RNC_QGROUP;
    *ldw = 64 * w;
    *left = b0 + w - p;
    return (g * Pg + b0) * Kq * 64 + (p - b0) * 64;
}

static inline const int8_t *rnc_qgroup_panel(const int8_t *panels, int64_t Pg, int64_t Kq,
                                             int64_t g, int64_t p, int64_t *ldw, int64_t *left) {
    return panels + rnc_qgroup_offset(Pg, Kq, g, p, ldw, left);
}

static inline const int8_t *rnc_qpanels(const uint8_t *w) { return (const int8_t *)w; }
static inline const int32_t *rnc_qcolsum(const uint8_t *w, int64_t G, int64_t H, int64_t K) {
    return (const int32_t *)(const void *)(w + rnc_qpanel_bytes(G, H, K));
}
static inline const float *rnc_qscale(const uint8_t *w, int64_t G, int64_t H, int64_t K) {
    return (const float *)(const void *)(w + rnc_qpanel_bytes(G, H, K) + 4 * G * rnc_padded(H));
}

/* CPU support of AVX-512 BW + VNNI, with the OS check; of AMX-INT8 with
 * the OS's grant of the tile state (Linux: arch_prctl); of the AArch64
 * dot-product instructions (qdispatch.c). */
int rnc_cpu_has_avx512vnni(void);
int rnc_cpu_has_amx_int8(void);
int rnc_cpu_has_neon_dotprod(void);

#endif /* RNC_QKERNELS_H */
