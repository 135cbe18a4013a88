/*
 * qkernels_amx.c: the int8 product on AMX (the tile registers and TMUL's
 * tdpbusd; compiled with -mamx-tile -mamx-int8 and the AVX-512 VNNI flags;
 * chosen at run time by qdispatch.c where the CPU has AMX-INT8 and the OS
 * grants the tile state).
 *
 * tdpbusd C += A B on tiles: A 16 rows x 64 unsigned bytes (16 rows of x,
 * 64 k), B 16 rows x 64 signed bytes, row kq holding 16 outputs x 4 k, C 16
 * x 16 int32 sums: 16 x 16 x 64 multiply-adds an instruction, 16 times
 * vpdpbusd's 64 x 16, exact (the same u8 x s8 products into int32 lanes, so
 * the sums are vpdpbusd's, bit for bit). B's layout is one 64-k block of an
 * int8 panel (qkernels.h: [kq][j][r], 64 bytes a kq, the k groups a
 * group's width * 64 bytes apart: the tile load's stride) as it is packed:
 * the weights load without a repack.
 *
 * Tiles: tmm0-3 the sums of a block of 2 x 16 rows x 2 panels, tmm4-5 the
 * two row tiles of A, tmm6-7 the two panels' B: per 64 k, 4 tile loads for
 * 4 tdpbusd. Panel pairs outer, row blocks inner: a pair's weights (2 x Kq x
 * 64 bytes) are read from L2 once and from L1 by each further row block.
 * A last K block of fewer than 16 kq is copied into zero-padded 16 x 64
 * buffers (zero weight rows: their products add 0). Rows past the last
 * whole 16 (M % 16, a batch-1 step's one row) go to the VNNI tiles, whose
 * one-row tile streams the weights at the L2's rate; a 16-row tile would do
 * 16 times the arithmetic to read the same bytes.
 */
#include <immintrin.h>
#include <string.h>

#include "../qkernels.h"
#include "../qrows.inc"

/* built with this file wherever it is (setup.py: the same compiler flags
 * and more); the ISA sources compile without the RNC_HAVE_Q* macros */
extern const rnc_qkernels rnc_qkernels_avx512vnni;

#define AMX_ROWS 16 /* rows of A (and of C) per tile */
#define AMX_KQ 16   /* 4-byte k groups per tile: 64 bytes of a row */

/* LDTILECFG's 64-byte operand, palette 1 */
typedef struct {
    uint8_t palette_id, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

static void configure(void) {
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette_id = 1;
    for (int t = 0; t < 8; t++) { /* every tile 16 rows x 64 bytes */
        cfg.rows[t] = AMX_ROWS;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
}

/* C[r*16 + i][p*16 + j] for r < RB row tiles, p < PB panels = the sums over
 * k < 4*Kq of A's rows against panels W + 64*p (k groups ldw bytes apart:
 * B's row stride). */
static inline __attribute__((always_inline)) void block(const int RB, const int PB, int64_t Kq,
                                                        const uint8_t *A, int64_t lda,
                                                        const int8_t *W, int64_t ldw,
                                                        int32_t *C, int64_t ldc) {
    _tile_zero(0);
    if (PB > 1) _tile_zero(1);
    if (RB > 1) _tile_zero(2);
    if (RB > 1 && PB > 1) _tile_zero(3);
    const int64_t Kfull = Kq / AMX_KQ * AMX_KQ;
    for (int64_t kq = 0; kq < Kfull; kq += AMX_KQ) {
        _tile_loadd(4, A + 4 * kq, lda);
        _tile_loadd(6, W + kq * ldw, ldw);
        _tile_dpbusd(0, 4, 6);
        if (PB > 1) {
            _tile_loadd(7, W + 64 + kq * ldw, ldw);
            _tile_dpbusd(1, 4, 7);
        }
        if (RB > 1) {
            _tile_loadd(5, A + AMX_ROWS * lda + 4 * kq, lda);
            _tile_dpbusd(2, 5, 6);
            if (PB > 1) _tile_dpbusd(3, 5, 7);
        }
    }
    if (Kfull < Kq) { /* the last (Kq - Kfull) kq, zero-padded to 16 */
        const int64_t kt = Kq - Kfull;
        uint8_t a[2][AMX_ROWS * 64];
        int8_t b[2][AMX_KQ * 64];
        memset(a, 0, sizeof a);
        memset(b, 0, sizeof b);
        for (int r = 0; r < RB; r++)
            for (int i = 0; i < AMX_ROWS; i++)
                memcpy(a[r] + i * 64, A + (r * AMX_ROWS + i) * lda + 4 * Kfull, (size_t)(4 * kt));
        for (int p = 0; p < PB; p++)
            for (int64_t r = 0; r < kt; r++) memcpy(b[p] + 64 * r, W + 64 * p + (Kfull + r) * ldw, 64);
        _tile_loadd(4, a[0], 64);
        _tile_loadd(6, b[0], 64);
        _tile_dpbusd(0, 4, 6);
        if (PB > 1) {
            _tile_loadd(7, b[1], 64);
            _tile_dpbusd(1, 4, 7);
        }
        if (RB > 1) {
            _tile_loadd(5, a[1], 64);
            _tile_dpbusd(2, 5, 6);
            if (PB > 1) _tile_dpbusd(3, 5, 7);
        }
    }
    const int64_t ldc_bytes = ldc * 4;
    _tile_stored(0, C, ldc_bytes);
    if (PB > 1) _tile_stored(1, C + RNC_QPANEL, ldc_bytes);
    if (RB > 1) _tile_stored(2, C + AMX_ROWS * ldc, ldc_bytes);
    if (RB > 1 && PB > 1) _tile_stored(3, C + AMX_ROWS * ldc + RNC_QPANEL, ldc_bytes);
}

static void gemm_amx(int64_t M, int64_t Kq, const uint8_t *A, int64_t lda, const int8_t *W,
                     int64_t ldw, int64_t np, int32_t *C, int64_t ldc) {
    const int64_t Mt = M / AMX_ROWS; /* whole row tiles */
    if (Mt > 0) {
        configure();
        for (int64_t p = 0; p < np; p += 2) {
            const int pb = np - p > 1 ? 2 : 1;
            for (int64_t t = 0; t < Mt; t += 2) {
                const int rb = Mt - t > 1 ? 2 : 1;
                const uint8_t *a = A + t * AMX_ROWS * lda;
                const int8_t *w = W + p * 64;
                int32_t *c = C + t * AMX_ROWS * ldc + p * RNC_QPANEL;
                if (rb == 2 && pb == 2) block(2, 2, Kq, a, lda, w, ldw, c, ldc);
                else if (rb == 2) block(2, 1, Kq, a, lda, w, ldw, c, ldc);
                else if (pb == 2) block(1, 2, Kq, a, lda, w, ldw, c, ldc);
                else block(1, 1, Kq, a, lda, w, ldw, c, ldc);
            }
        }
        _tile_release(); /* the tile state back to its init state: no save on switches */
    }
    const int64_t m0 = Mt * AMX_ROWS;
    if (m0 < M) rnc_qkernels_avx512vnni.gemm(M - m0, Kq, A + m0 * lda, lda, W, ldw, np, C + m0 * ldc,
                                                ldc);
}

/* one row: VNNI's (a 16-row tile would do 16 times the arithmetic) */
static void row_dequant_amx(int64_t Kq, const uint8_t *a, const int8_t *W, int64_t ldw, int64_t np,
                            const int32_t *colsum, int32_t offset, const float *sw, float sv,
                            const float *bias, float *out) {
    rnc_qkernels_avx512vnni.row_dequant(Kq, a, W, ldw, np, colsum, offset, sw, sv, bias, out);
}

const rnc_qkernels rnc_qkernels_amx = {"amx", 128, 127, gemm_amx, quantize_row, dequant_row,
                                       row_dequant_amx};
