/*
 * kernels.h: internal interfaces between the forward driver (fwd.c), the
 * run-time dispatch (dispatch.c) and the per-ISA kernels (isa/kernels_<isa>.c:
 * isa/kernels_simd.inc and the cells of isa/cells/ over each ISA's vector
 * vocabulary, isa/simd_<isa>.h: generic, avx2, avx512, neon). Not part of the
 * public API.
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
#define RNC_MR_MAX 16 /* the largest GEMM tile height of any ISA (rnc_tile) */

static inline int64_t rnc_padded(int64_t H) {
    return (H + RNC_PANEL - 1) / RNC_PANEL * RNC_PANEL;
}

/* Width of the state h (and of y): the projection R when d->proj > 0, else H. */
static inline int64_t rnc_state_width(const rnc_dims *d) {
    return d->proj > 0 ? d->proj : d->H;
}

/*
 * Cells. The drivers (fwd.c, bwd.c) never name a cell kind: they read its
 * description (cells.c) and call its kernels (one source per cell in
 * isa/cells/, compiled once per ISA into the tables below).
 */
typedef struct {
    int gates;           /* G: gate blocks of W_ih / W_hh rows                   */
    int tape_slots;      /* Hp-float slots per tape row (what backward reads)    */
    int has_c;           /* carries a cell state c (and takes the LSTM variants:
                            peepholes, input_forget, a projection)               */
    int split_last;      /* the last gate's recurrent product is W_last s_t with
                            s_t made from this step's other gates, so a second
                            GEMM after a barrier (GRU reset-before: s = r*h)     */
    int split_slot;      /* split_last: the tape slot holding s_t                */
    int last_bias_inside; /* the last gate's b_hh stays inside the cell (GRU:
                            n = tanh(.. + r*(W_hn h + b_hn))), not folded into gx */
    int distinct_dgh;    /* the state-side gradient of the gates differs from the
                            input side (GRU: dn*r against dn): its own buffer    */
    int direct_h;        /* h_t depends on h_{t-1} outside the product (GRU z),
                            so dh_prev accumulates onto the cell's direct part   */
} rnc_cell_info;

/* The description of `cell`, or NULL for an unknown kind (cells.c). */
const rnc_cell_info *rnc_cell_info_of(rnc_cell cell);

/* The biases of a step's gates, padded rows of Hp (cells.c): bias_x[g*Hp + u]
 * = b_ih + b_hh (b_hh left out of the last gate when the cell keeps it inside,
 * last_bias_inside), b_last[u] = that gate's b_hh (or 0), 0 past H; either
 * bias may be NULL (zeros). Once per forward call (fwd.c, qfwd.c): a
 * vectorisable loop, since one-step calls pay it every step (the scalar loop
 * with per-element branches was 5 % of an int8 LSTM step at H = 512). */
void rnc_fold_biases(const rnc_cell_info *cell, int G, int64_t H, const float *b_ih,
                     const float *b_hh, float *bias_x, float *b_last);

/* Tape slots per row: see rnc_cell_info (isa/cells/ lists each cell's). */
static inline int rnc_tape_slots(rnc_cell cell) {
    const rnc_cell_info *c = rnc_cell_info_of(cell);
    return c ? c->tape_slots : 0;
}

/* Post-GEMM element-wise update of one time step (equations in isa/cells/).
 * Rows n of this step: gx + n*ld_gx, acc + n*ld_acc (both padded gate rows),
 * h_prev + n*ld_hprev, y + n*ld_y, c + n*Hp. */
typedef struct {
    int64_t H, Hp;
    const float *gx;     int64_t ld_gx;    /* input projection, folded biases */
    float *acc;          int64_t ld_acc;   /* W_hh h_prev; scratch: overwritten */
    const float *h_prev; int64_t ld_hprev; /* read by cells with direct_h     */
    float *y;            int64_t ld_y;     /* h_t                             */
    float *c;                              /* has_c: [N, Hp] c_prev in, c_t out */
    const float *b_last;                   /* last_bias_inside: [Hp] b_hh of the last gate */
    float *tape;         int64_t ld_tape;  /* NULL, or tape_slots * Hp floats a row */
    const float *peep;                     /* has_c: NULL or [3H] p_i, p_f, p_o */
    int coupled;                           /* has_c: input_forget (f = 1 - i)  */
    float *split;                          /* split_last: s_t rows of H floats */
} rnc_post;

/* Everything the element-wise backward pass of one step needs (bwd.c fills
 * it; the cell kernels read it). Rows: row(t, n) = t*row_t + n*row_n. */
typedef struct {
    int64_t N, H, Hp, GH;
    int64_t row_t, row_n;
    const float *y;  int64_t ldy;  /* h_t rows                                  */
    const float *dy; int64_t lddy; /* NULL, or the gradient of y                */
    const float *tape;             /* tape_slots * Hp floats a row              */
    const float *c0;               /* has_c: c_{-1} [N, H], or NULL for zeros   */
    const float *zeros;            /* [max(Hp, Rp)] zeros                       */
    const float *hprev;            /* [rows, H]: h_{t-1} of every row           */
    float *dgx, *dgh;              /* [rows, GH]: dG, input side and state side */
    float *dh, *dc;                /* [N, Hp]: in: the gradient from step t+1, out: to t-1 */
    double *bsum_x, *bsum_h;       /* [GH]: running column sums (bias gradients) */
    const float *peep;             /* has_c: NULL or [3H] peepholes              */
    int coupled;                   /* has_c: input_forget                        */
    double *psum;                  /* [3H]: running sums of peephole gradients   */
    float *m_rows;                 /* has_c with a projection: m_t = o*tanh(c_t)
                                      rows of H for dW_hr, else NULL            */
} rnc_bwd_step;

/* The kernels of one cell kind on one ISA. Units [u0, u1): u0 a multiple of
 * RNC_PANEL; u1 a multiple of RNC_PANEL or H. */
typedef struct {
    /* h_t (c_t) of rows [n0, n1) from gx_t and acc = W_hh h_{t-1}; for a
     * split cell, after the second product is in acc's last gate */
    void (*forward)(const rnc_post *p, int64_t n0, int64_t n1, int64_t u0, int64_t u1);
    /* split cells: the gates before the second product, and s_t into p->split */
    void (*forward_split)(const rnc_post *p, int64_t n0, int64_t n1, int64_t u0, int64_t u1);
    /* backward of step t for rows [0, rows): dG into dgx (dgh), bias sums, dh
     * (dc) to step t-1; first: t is the first step run (t_prev: the step
     * before t in forward order) */
    void (*backward)(const rnc_bwd_step *s, int64_t t, int first, int64_t t_prev,
                     int64_t rows, int64_t u0, int64_t u1);
    /* split cells, after q = dG_last W_last (rows of Hp): the rest of dG and
     * of dh (GRU reset-before: dA_r and r*q) */
    void (*backward_split)(const rnc_bwd_step *s, int64_t t, const float *q, int64_t rows,
                           int64_t u0, int64_t u1);
} rnc_cell_kernels;

#define RNC_N_CELLS 5 /* rnc_cell values 0 .. 4 */

/* One micro-kernel tile height of an ISA, with its two panel GEMMs (the
 * signatures of rnc_kernels.gemm_panel and gemm_panel_acc). */
typedef struct {
    int mr;
    void (*gemm_panel)(int64_t M, int64_t K, const float *Ap, const float *P,
                       const float *bias, float *C, int64_t ldc);
    void (*gemm_panel_acc)(int64_t M, int64_t K, const float *Ap, const float *P,
                           float *C, int64_t ldc);
} rnc_tile;

/* What blocking.c needs of an ISA: its vector registers and width, and its
 * compiled tile heights (kernels_simd.inc; n_tiles 0: the table's only). */
typedef struct {
    int vregs, vw;
    const rnc_tile *tiles;
    int n_tiles;
} rnc_isa_gemm;

typedef struct {
    const char *name;
    int mr; /* rows per GEMM tile (<= RNC_MR_MAX); the active table's are blocking.c's choice */
    /* C[m, 0:RNC_PANEL) = bias[0:RNC_PANEL) (or 0) + sum_k A[m, k] * P[k*RNC_PANEL + j]
     * for m in [0, M), A packed by rnc_pack_a with this table's mr: one panel of packed weights. */
    void (*gemm_panel)(int64_t M, int64_t K, const float *Ap,
                       const float *P, const float *bias, float *C, int64_t ldc);
    /* C[m, 0:RNC_PANEL) += sum_k A[m, k] * P[k*RNC_PANEL + j]: the same
     * product accumulated into C (K-blocked GEMMs, gradient sums). */
    void (*gemm_panel_acc)(int64_t M, int64_t K, const float *Ap, const float *P,
                           float *C, int64_t ldc);
    /* every cell's kernels, indexed by rnc_cell */
    rnc_cell_kernels cell[RNC_N_CELLS];
    /* One row of the fused softmax cross-entropy (xent.c): loss = logsumexp(z)
     * - z[k]; with dz, dz = scale * (softmax(z) - onehot(k)) (dz may be z). */
    void (*xent_row)(int64_t V, const float *z, int64_t k, float *loss, float *dz, float scale);
    /* Machine probes (probe.c): `iters` rounds of 12 independent vector FMA
     * chains held in registers (probe_flops_per_iter flops a round); and a
     * read of buf[0, n) with the widest loads. Both return a value that keeps
     * the work alive. */
    float (*probe_fma)(int64_t iters);
    int probe_flops_per_iter;
    float (*probe_read)(const float *buf, int64_t n);
    /* One row of rnc_softmax (softmax.c): y = softmax(x), or log-softmax with
     * log_softmax != 0, over V floats; y may be x. next: the row after, V
     * floats to prefetch meanwhile, or NULL. */
    void (*softmax_row)(int64_t V, const float *x, float *y, int log_softmax, const float *next);
} rnc_kernels;

extern const rnc_kernels rnc_kernels_generic;
extern const rnc_isa_gemm rnc_isa_gemm_generic; /* its tiles (kernels_simd.inc) */
#ifdef RNC_HAVE_AVX2
extern const rnc_kernels rnc_kernels_avx2;
extern const rnc_isa_gemm rnc_isa_gemm_avx2;
#endif
#ifdef RNC_HAVE_AVX512
extern const rnc_kernels rnc_kernels_avx512;
extern const rnc_isa_gemm rnc_isa_gemm_avx512;
#endif
#ifdef RNC_HAVE_NEON
extern const rnc_kernels rnc_kernels_neon;
extern const rnc_isa_gemm rnc_isa_gemm_neon;
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

/* Threads a call may use: n_threads, or the OpenMP default when <= 0, at most
 * 4 per processor; 1 in a serial build (status.c). */
int rnc_resolve_threads(int n_threads);

/* [lo, hi) of `total` split into `parts`, boundaries on multiples of `align`. */
static inline void rnc_split_range(int64_t total, int parts, int part, int64_t align,
                                   int64_t *lo, int64_t *hi) {
    const int64_t blocks = (total + align - 1) / align;
    const int64_t b0 = blocks * part / parts, b1 = blocks * (part + 1) / parts;
    *lo = b0 * align < total ? b0 * align : total;
    *hi = b1 * align < total ? b1 * align : total;
}

/* Threads for a sequence of dims d: n_threads resolved, but no more than one
 * per RNC_PANEL hidden units and one per RNC_MIN_STEP_MACS of recurrent work
 * per step (below that a barrier per step costs more than the work it
 * shares); 1 in a serial build. */
#define RNC_MIN_STEP_MACS 65536
static inline int rnc_step_threads(const rnc_dims *d, int G, int n_threads) {
#ifdef _OPENMP
    int nt = rnc_resolve_threads(n_threads);
    const int64_t by_work = d->N * G * d->H * d->H / RNC_MIN_STEP_MACS;
    const int64_t by_units = rnc_padded(d->H) / RNC_PANEL;
    if (nt > by_work) nt = (int)(by_work > 1 ? by_work : 1);
    if (nt > by_units) nt = (int)by_units;
    return nt;
#else
    (void)d; (void)G; (void)n_threads;
    return 1;
#endif
}

/* Denormals flushed to zero (FTZ/DAZ) inside the kernels of a thread:
 * saved = rnc_ftz_begin(); ...; rnc_ftz_end(saved). x86: MXCSR; AArch64:
 * FPCR.FZ (bit 24, flushes denormal inputs and results); no-op elsewhere. */
#if defined(__x86_64__) || defined(_M_X64) || defined(__SSE__)
#include <xmmintrin.h>
static inline unsigned int rnc_ftz_begin(void) {
    const unsigned int saved = _mm_getcsr();
    _mm_setcsr(saved | 0x8040u);
    return saved;
}
static inline void rnc_ftz_end(unsigned int saved) { _mm_setcsr(saved); }
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
static inline unsigned int rnc_ftz_begin(void) {
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    __asm__ volatile("msr fpcr, %0" : : "r"(fpcr | (UINT64_C(1) << 24)));
    return (unsigned int)fpcr;
}
static inline void rnc_ftz_end(unsigned int saved) {
    const uint64_t fpcr = saved; /* FPCR's defined bits are all below 32 */
    __asm__ volatile("msr fpcr, %0" : : "r"(fpcr));
}
#else
static inline unsigned int rnc_ftz_begin(void) { return 0; }
static inline void rnc_ftz_end(unsigned int saved) { (void)saved; }
#endif

/* A strided matrix: element (i, j) at p[i*rs + j*cs]. */
typedef struct {
    const float *p;
    int64_t rs, cs;
} rnc_mat;

/*
 * General GEMM on the active micro-kernels (gemm.c): C[M, Nc] = A[M, K] B[K, Nc]
 * (accumulate: C +=), C row-major with stride ldc and exactly Nc columns.
 * Called by every thread of a team with its `part` of `parts`; the parts split
 * the columns in panels of RNC_PANEL (and the rows when there are fewer
 * panels than parts). Each element is summed in the same order (K blocks of
 * RNC_GEMM_KC) for any split, so results do not depend on the team. scratch:
 * rnc_gemm_scratch_floats() floats per thread.
 */
void rnc_gemm_part(const rnc_kernels *kern, int64_t M, int64_t Nc, int64_t K,
                   rnc_mat A, rnc_mat B, float *C, int64_t ldc, int accumulate,
                   float *scratch, int part, int parts);
int64_t rnc_gemm_scratch_floats(void);
/* The same GEMM (C = A B + bias, no accumulate) on a B packed once by
 * rnc_pack_weights (one gate of Nc units: Bp [Nc/RNC_PANEL panels][K][RNC_PANEL],
 * zero-padded), with bias [Nc] or NULL added by the micro-kernel: the order
 * of sums of every element is rnc_gemm_part's. scratch:
 * rnc_gemm_prepacked_scratch_floats() floats per thread. */
void rnc_gemm_prepacked_part(const rnc_kernels *kern, int64_t M, int64_t Nc, int64_t K,
                             rnc_mat A, const float *Bp, const float *bias, float *C,
                             int64_t ldc, float *scratch, int part, int parts);
int64_t rnc_gemm_prepacked_scratch_floats(void);

/* Ap <- rows [0, M) x cols [0, K) of A in tiles of mr rows (the last tile:
 * the rows left, mt), k-major inside a tile:
 *   Ap[t*mr*K + k*mt + r] = A(t*mr + r, k)
 * (gemm.c). Packing makes the micro-kernel's reads of A sequential whatever
 * the strides (12 rows 4 KB apart all fall into one L1 set: lstm h1024 n64
 * ran at 64% of peak unpacked, 88% packed). At most rnc_packed_a_floats(M, K)
 * floats. */
void rnc_pack_a(int64_t M, int64_t K, rnc_mat A, int mr, float *Ap);
/* Only columns [k0, k1) of the same packing (Ap laid out for all K): threads
 * that produced different columns of A pack them in parallel. */
void rnc_pack_a_cols(int64_t M, int64_t K, int64_t k0, int64_t k1, rnc_mat A, int mr, float *Ap);

/* Bp[k*RNC_PANEL + j] = B(k0 + k, col + j) for k < kc, j < min(RNC_PANEL,
 * Nc - col); zero past Nc. One panel of packed B. */
void rnc_pack_b_panel(int64_t kc, int64_t Nc, rnc_mat B, int64_t k0, int64_t col, float *Bp);

/* Variable lengths (see rnncore.h): 0 when `lengths` (may be NULL) is valid
 * for T, N, batch_first and reverse, else -1. */
static inline int rnc_check_lengths(const int64_t *lengths, int64_t T, int64_t N,
                                    int batch_first, int reverse) {
    if (!lengths) return 0;
    if (batch_first || reverse || lengths[0] > T || lengths[N - 1] < 1) return -1;
    for (int64_t n = 1; n < N; n++)
        if (lengths[n] > lengths[n - 1]) return -1;
    return 0;
}

/* Rows still running at step s: the n with lengths[n] > s (all N without
 * lengths); lengths non-increasing, so they are rows [0, result). */
static inline int64_t rnc_active_rows(const int64_t *lengths, int64_t N, int64_t s) {
    if (!lengths) return N;
    int64_t lo = 0, hi = N; /* lengths[lo-1] > s >= lengths[hi] */
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (lengths[mid] > s) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* The table chosen by rnc_init() (dispatch.c): a copy of the ISA's table
 * with the tile (mr, gemm_panel, gemm_panel_acc) that blocking.c chose. */
const rnc_kernels *rnc_active_kernels(void);
/* The active ISA's facts for blocking.c (dispatch.c). */
const rnc_isa_gemm *rnc_active_isa_gemm(void);
const rnc_kernels *rnc_active_kernels_table(void); /* the ISA's own, unmodified */
/* Install the tile of height mr of the active ISA: 0, or -1 if none. */
int rnc_use_tile(int mr);

/* The blocking in use (blocking.c; see rnc_blocking in rnncore.h), read by
 * the GEMMs on every call. rnc_blocking_derive: from the caches and the
 * active ISA, by rnc_init() and rnc_set_isa(). Bounds of what
 * rnc_set_blocking accepts, which size every scratch buffer, so that a
 * workspace sized before a change stays big enough after it: */
extern rnc_blocking rnc_blk;
void rnc_blocking_derive(void);
#define RNC_KCHUNK_MAX 1024
/* K segment of a 1-3 row tail tile (kernels_simd.inc); KC is a multiple */
#define RNC_TAIL_KSEG 128
#define RNC_KC_MAX 1024
#define RNC_MC_MAX 256
#define RNC_PREFETCH_MAX 256 /* panel rows (32 KB) */
#define RNC_GROUP_FLOATS_MAX (1 << 19) /* packed B group: NC x KC floats, 2 MB */

/* Cache sizes (cpu_features.c): L1d, L2 of one core, one L3, in bytes; the
 * source ("cpuid", "sysconf" or "default") returned. */
const char *rnc_cpu_caches(int64_t *l1d, int64_t *l2, int64_t *l3);


/* CPU support, with the OS (XGETBV) check: cpu_features.c. */
int rnc_cpu_has_avx2_fma(void);
int rnc_cpu_has_avx512f(void);
int rnc_cpu_has_neon(void); /* 1 on AArch64, where Advanced SIMD is baseline */

#endif /* RNC_KERNELS_H */
