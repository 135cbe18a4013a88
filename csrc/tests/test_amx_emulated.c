/*
 * test_amx_emulated.c: the AMX int8 product (isa/qkernels_amx.c) run on any
 * x86-64 CPU, its tile instructions replaced by C loops with the semantics
 * of Intel's SDM (TILELOADD, TILESTORED, TILEZERO, TDPBUSD on the 16-row x
 * 64-byte tiles the kernel configures). What runs is the kernel's own
 * source: its loops, blocking, strides into the packed layout and its
 * zero-padded last k block, against the generic product on the same
 * packed weights, integer for integer. The rows past whole 16-row tiles go
 * to the VNNI table; here that table is the generic product.
 *
 * Build (tests/engine/test_c_library.py): cc -std=c99 -Icsrc/include
 * csrc/tests/test_amx_emulated.c, every csrc/src .c file and isa/kernels_generic.c, -lm
 * (no ISA flags, no RNC_HAVE_* defines: the library's dispatch offers the
 * generic path only and this file defines both int8 tables it names).
 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/qkernels.h"

/* ---- the emulated tile unit: 8 tiles of 16 rows x 64 bytes ------------ */

static uint8_t emu_tile[8][16][64];
static int emu_configured;

static void emu_load(int t, const void *base, int64_t stride) {
    for (int r = 0; r < 16; r++) memcpy(emu_tile[t][r], (const char *)base + r * stride, 64);
}
static void emu_store(int t, void *base, int64_t stride) {
    for (int r = 0; r < 16; r++) memcpy((char *)base + r * stride, emu_tile[t][r], 64);
}
/* C[m][n] += sum_{k < 16, r < 4} A[m][4k + r] (unsigned) * B[k][4n + r] (signed) */
static void emu_dpbusd(int c, int a, int b) {
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 16; n++) {
            int32_t acc;
            memcpy(&acc, emu_tile[c][m] + 4 * n, 4);
            for (int k = 0; k < 16; k++)
                for (int r = 0; r < 4; r++)
                    acc += (int32_t)emu_tile[a][m][4 * k + r] * (int8_t)emu_tile[b][k][4 * n + r];
            memcpy(emu_tile[c][m] + 4 * n, &acc, 4);
        }
}

#undef _tile_loadd
#undef _tile_stored
#undef _tile_zero
#undef _tile_dpbusd
#undef _tile_loadconfig
#undef _tile_release
#define _tile_loadd(t, base, stride) emu_load((t), (base), (stride))
#define _tile_stored(t, base, stride) emu_store((t), (base), (stride))
#define _tile_zero(t) memset(emu_tile[(t)], 0, sizeof emu_tile[0])
#define _tile_dpbusd(c, a, b) emu_dpbusd((c), (a), (b))
#define _tile_loadconfig(cfg) ((void)(cfg), emu_configured = 1)
#define _tile_release() (emu_configured = 0)

/* the table the AMX kernel hands its last M % 16 rows to */
static void gemm_tail(int64_t M, int64_t Kq, const uint8_t *A, int64_t lda, const int8_t *W,
                      int64_t ldw, int64_t np, int32_t *C, int64_t ldc) {
    rnc_qkernels_generic.gemm(M, Kq, A, lda, W, ldw, np, C, ldc);
}
const rnc_qkernels rnc_qkernels_avx512vnni = {"generic-as-vnni", 128, 127, gemm_tail, NULL, NULL, NULL};

#include "../src/isa/qkernels_amx.c"

/* ---- the check --------------------------------------------------------- */

static uint32_t rng_state = 12345;
static uint32_t next_u32(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}

/* every group of a [H, K] weight, M rows: AMX against generic; returns failures */
static int check(int64_t M, int64_t H, int64_t K) {
    const int64_t Kq = rnc_qk(K), lda = 4 * Kq + 12, Pg = rnc_padded(H) / RNC_QPANEL;
    int8_t *wq = malloc((size_t)(H * K));
    float *scale = malloc((size_t)H * sizeof(float));
    uint8_t *packed = malloc(rnc_qpacked_bytes(1, H, K));
    uint8_t *A = malloc((size_t)(M * lda));
    const int64_t ldc = RNC_QGROUP * RNC_QPANEL + 5;
    int32_t *c_amx = malloc((size_t)(M * ldc) * sizeof(int32_t));
    int32_t *c_ref = malloc((size_t)(M * ldc) * sizeof(int32_t));
    for (int64_t i = 0; i < H * K; i++) wq[i] = (int8_t)((int)(next_u32() % 255) - 127);
    for (int64_t i = 0; i < H; i++) scale[i] = 1.0f;
    for (int64_t i = 0; i < M * lda; i++) A[i] = (uint8_t)(next_u32() % 256);
    int bad = 0;
    if (rnc_qpack_weights(1, H, K, wq, scale, packed) != RNC_OK) {
        printf("FAIL rnc_qpack_weights H=%lld K=%lld\n", (long long)H, (long long)K);
        bad = 1;
    }
    for (int64_t p = 0; p < Pg && !bad;) {
        int64_t ldw, np;
        const int8_t *w = rnc_qgroup_panel(rnc_qpanels(packed), Pg, Kq, 0, p, &ldw, &np);
        memset(c_amx, 0x5a, (size_t)(M * ldc) * sizeof(int32_t));
        memset(c_ref, 0x5a, (size_t)(M * ldc) * sizeof(int32_t));
        rnc_qkernels_amx.gemm(M, Kq, A, lda, w, ldw, np, c_amx, ldc);
        rnc_qkernels_generic.gemm(M, Kq, A, lda, w, ldw, np, c_ref, ldc);
        if (memcmp(c_amx, c_ref, (size_t)(M * ldc) * sizeof(int32_t)) != 0 || emu_configured) {
            printf("FAIL amx M=%lld H=%lld K=%lld panels %lld+%lld\n", (long long)M,
                   (long long)H, (long long)K, (long long)p, (long long)np);
            bad = 1;
        }
        p += np;
    }
    free(wq), free(scale), free(packed), free(A), free(c_amx), free(c_ref);
    return bad;
}

int main(void) {
    static const int64_t Ms[] = {16, 17, 32, 33, 48, 64};
    static const int64_t Hs[] = {7, 17, 32, 48, 200};
    static const int64_t Ks[] = {1, 7, 64, 65, 130, 257};
    int cases = 0, failures = 0;
    for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
        for (size_t b = 0; b < sizeof Hs / sizeof *Hs; b++)
            for (size_t c = 0; c < sizeof Ks / sizeof *Ks; c++) {
                failures += check(Ms[a], Hs[b], Ks[c]);
                cases++;
            }
    printf("amx (emulated tiles): %d case(s), %d failure(s)\n", cases, failures);
    return failures != 0;
}
