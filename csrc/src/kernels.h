/*
 * kernels.h: internal interfaces between the forward driver (fwd.c), the
 * run-time dispatch (dispatch.c) and the per-ISA kernels (kernels_generic.c,
 * isa/kernels_avx2.c, isa/kernels_avx512.c). Not part of the public API.
 *
 * Packed weights (rnc_pack_weights): a [G*H, K] PyTorch weight becomes panels
 * of RNC_PANEL hidden units of one gate, each panel K rows of RNC_PANEL
 * contiguous floats, zero-padded past H:
 *   packed[((g * P + p) * K + k) * RNC_PANEL + j] = W[g*H + p*RNC_PANEL + j][k]
 * with P = Hp / RNC_PANEL panels per gate and Hp = H rounded up to RNC_PANEL.
 * Gate pre-activations ("gates" rows) use the matching padded layout: gate g,
 * unit u of a row at [g*Hp + u].
 */
#ifndef RNC_KERNELS_H
#define RNC_KERNELS_H

#include "rnncore.h"

#define RNC_PANEL 32
#define RNC_MR_MAX 12 /* the largest GEMM tile height of any ISA */

static inline int64_t rnc_padded(int64_t H) {
    return (H + RNC_PANEL - 1) / RNC_PANEL * RNC_PANEL;
}

/* Post-GEMM element-wise update of one time step (see the equations in
 * fwd.c). Rows n of this step: gx + n*ld_gx, acc + n*ld_acc (both padded gate
 * rows), h_prev + n*ld_hprev, y + n*ld_y, c + n*Hp. */
typedef struct {
    rnc_cell cell;
    int64_t H, Hp;
    const float *gx;     int64_t ld_gx;    /* input projection, folded biases */
    float *acc;          int64_t ld_acc;   /* W_hh h_prev; scratch: overwritten */
    const float *h_prev; int64_t ld_hprev; /* read by GRU only                */
    float *y;            int64_t ld_y;     /* h_t                             */
    float *c;                              /* LSTM: [N, Hp] c_prev in, c_t out */
    const float *b_hn;                     /* GRU: [Hp] recurrent n-gate bias */
} rnc_post;

typedef struct {
    const char *name;
    int mr; /* rows per GEMM tile (<= RNC_MR_MAX) */
    /* Ap <- rows [0, M) of A (row m at A + m*lda, K floats) in tiles of mr
     * rows (the last tile: the rows left, mt), k-major inside a tile:
     * Ap[t*mr*K + k*mt + r] = A[(t*mr + r)*lda + k]. At most
     * rnc_packed_a_floats(M, K) floats. Packing makes the micro-kernel's
     * reads of A sequential whatever lda is (12 rows 4 KB apart all fall into
     * one L1 set: lstm h1024 n64 ran at 64% of peak unpacked, 88% packed). */
    void (*pack_a)(int64_t M, int64_t K, const float *A, int64_t lda, float *Ap);
    /* C[m, 0:RNC_PANEL) = bias[0:RNC_PANEL) (or 0) + sum_k A[m, k] * P[k*RNC_PANEL + j]
     * for m in [0, M), A packed by pack_a: one panel of packed weights. */
    void (*gemm_panel)(int64_t M, int64_t K, const float *Ap,
                       const float *P, const float *bias, float *C, int64_t ldc);
    /* Post-GEMM for rows [n0, n1) and units [u0, u1); u0 is a multiple of RNC_PANEL. */
    void (*postgemm)(const rnc_post *p, int64_t n0, int64_t n1, int64_t u0, int64_t u1);
    /* Machine probes (probe.c): `iters` rounds of 12 independent vector FMA
     * chains held in registers (probe_flops_per_iter flops a round); and a
     * read of buf[0, n) with the widest loads. Both return a value that keeps
     * the work alive. */
    float (*probe_fma)(int64_t iters);
    int probe_flops_per_iter;
    float (*probe_read)(const float *buf, int64_t n);
} rnc_kernels;

extern const rnc_kernels rnc_kernels_generic;
#ifdef RNC_HAVE_AVX2
extern const rnc_kernels rnc_kernels_avx2;
#endif
#ifdef RNC_HAVE_AVX512
extern const rnc_kernels rnc_kernels_avx512;
#endif

/* Largest float count the library hands out: its bytes fit both size_t and
 * int64_t. */
static inline int64_t rnc_float_limit(void) {
    const uint64_t by_size = (uint64_t)SIZE_MAX / sizeof(float);
    const uint64_t by_i64 = (uint64_t)INT64_MAX / sizeof(float);
    return (int64_t)(by_size < by_i64 ? by_size : by_i64);
}

/* a * b for non-negative a, b, or -1 when it exceeds limit. */
static inline int64_t rnc_mul_checked(int64_t a, int64_t b, int64_t limit) {
    if (a < 0 || b < 0) return -1;
    if (a != 0 && b > limit / a) return -1;
    return a * b;
}

/* Floats of packed A for M rows of K with tiles of up to RNC_MR_MAX rows. */
static inline int64_t rnc_packed_a_floats(int64_t M, int64_t K) {
    return (M + RNC_MR_MAX - 1) / RNC_MR_MAX * RNC_MR_MAX * K;
}

/* The table chosen by rnc_init() (dispatch.c). */
const rnc_kernels *rnc_active_kernels(void);

/* Threads a call may use: n_threads, or the OpenMP default when <= 0, at most
 * 4 per processor; 1 in a serial build (status.c). */
int rnc_resolve_threads(int n_threads);

/* CPU support, with the OS (XGETBV) check: cpu_features.c. */
int rnc_cpu_has_avx2_fma(void);
int rnc_cpu_has_avx512f(void);

#endif /* RNC_KERNELS_H */
