/*
 * bench_row_gemv.c: is the batch-1 tile the limit at N = 1? One row times
 * K x 32-float panels (the packed W_hh layout of csrc/src/pack.c), the way
 * the AVX-512 1-row tile runs it (4 accumulator sets over interleaved k, 2
 * vectors a panel row: 8 FMA chains), against the same over two panels at
 * once (two streams, 16 chains) and a pure read of the same bytes (8 add
 * chains). Sizes: the W_hh of RNN / GRU / LSTM at H = 256, an LSTM at
 * H = 512 and its K = 512 GRU (768 KB, 1 MB, 3 MB, 4 MB). Prints the best
 * of 2000 calls and the mean of a loop of 500. Not part of the build:
 *
 *   gcc -O3 -mavx512f -mfma benchmarks/bench_row_gemv.c -o /tmp/row_gemv && /tmp/row_gemv
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* y[32p, 32p + 32) = sum_k x[k] * P_p[k][0, 32), panel p at W + p * K * 32,
 * NP panels a pass (NP sequential streams), 4 accumulator sets over
 * interleaved k and 2 vectors per panel row, as the 1-row tile */
static inline __attribute__((always_inline)) void panels(const int NP, int K, int np, const float *x,
                                                         const float *W, float *y) {
    int p = 0;
    for (; p + NP <= np; p += NP) {
        __m512 a[2][4][2];
        for (int q = 0; q < NP; q++)
            for (int s = 0; s < 4; s++) a[q][s][0] = a[q][s][1] = _mm512_setzero_ps();
        for (int k = 0; k < K; k += 4) {
#pragma GCC unroll 4
            for (int s = 0; s < 4; s++) {
                const __m512 b = _mm512_set1_ps(x[k + s]);
#pragma GCC unroll 2
                for (int q = 0; q < NP; q++) {
                    const float *P = W + (size_t)(p + q) * K * 32 + (k + s) * 32;
                    a[q][s][0] = _mm512_fmadd_ps(b, _mm512_load_ps(P), a[q][s][0]);
                    a[q][s][1] = _mm512_fmadd_ps(b, _mm512_load_ps(P + 16), a[q][s][1]);
                }
            }
        }
        for (int q = 0; q < NP; q++) {
            for (int s = 1; s < 4; s++) {
                a[q][0][0] = _mm512_add_ps(a[q][0][0], a[q][s][0]);
                a[q][0][1] = _mm512_add_ps(a[q][0][1], a[q][s][1]);
            }
            _mm512_store_ps(y + (p + q) * 32, a[q][0][0]);
            _mm512_store_ps(y + (p + q) * 32 + 16, a[q][0][1]);
        }
    }
    if (p < np) panels(1, K, np - p, x, W + (size_t)p * K * 32, y + p * 32);
}

__attribute__((noinline)) static void one_stream(int K, int np, const float *x, const float *W, float *y) {
    panels(1, K, np, x, W, y);
}

__attribute__((noinline)) static void two_streams(int K, int np, const float *x, const float *W, float *y) {
    panels(2, K, np, x, W, y);
}

/* every byte read once, 8 add chains */
__attribute__((noinline)) static void read_only(size_t n, const float *W, float *y) {
    __m512 a[8];
    for (int i = 0; i < 8; i++) a[i] = _mm512_setzero_ps();
    for (size_t i = 0; i < n; i += 128)
        for (int j = 0; j < 8; j++) a[j] = _mm512_add_ps(a[j], _mm512_load_ps(W + i + 16 * j));
    for (int j = 1; j < 8; j++) a[0] = _mm512_add_ps(a[0], a[j]);
    _mm512_store_ps(y, _mm512_add_ps(a[0], _mm512_load_ps(y))); /* a sum the loop cannot drop */
}

int main(void) {
    static const int Ks[] = {256, 256, 256, 512, 512}, Js[] = {256, 768, 1024, 1536, 2048};
    for (int c = 0; c < 5; c++) {
        const int K = Ks[c], J = Js[c], np = J / 32;
        const size_t n = (size_t)K * J;
        float *W = aligned_alloc(64, n * 4), *x = aligned_alloc(64, (size_t)K * 4),
              *y = aligned_alloc(64, (size_t)J * 4 + 64);
        for (size_t i = 0; i < n; i++) W[i] = (float)(i % 7) * 0.01f;
        for (int k = 0; k < K; k++) x[k] = 0.5f;
        double b1 = 1e9, b2 = 1e9, b3 = 1e9;
        for (int r = 0; r < 2000; r++) { /* interleaved: the host is shared */
            const double t0 = now();
            one_stream(K, np, x, W, y);
            const double t1 = now();
            two_streams(K, np, x, W, y);
            const double t2 = now();
            read_only(n, W, y);
            const double t3 = now();
            if (t1 - t0 < b1) b1 = t1 - t0;
            if (t2 - t1 < b2) b2 = t2 - t1;
            if (t3 - t2 < b3) b3 = t3 - t2;
        }
        double t0 = now();
        for (int r = 0; r < 500; r++) one_stream(K, np, x, W, y);
        const double m1 = (now() - t0) / 500;
        t0 = now();
        for (int r = 0; r < 500; r++) two_streams(K, np, x, W, y);
        const double m2 = (now() - t0) / 500;
        t0 = now();
        for (int r = 0; r < 500; r++) read_only(n, W, y);
        const double m3 = (now() - t0) / 500;
        printf("%5zu KB: best one stream %.2f us (%.0f GB/s), two %.2f (%.0f), read %.2f (%.0f) |"
               " loop mean %.2f / %.2f / %.2f us\n",
               n * 4 / 1024, b1 * 1e6, n * 4 / b1 / 1e9, b2 * 1e6, n * 4 / b2 / 1e9, b3 * 1e6,
               n * 4 / b3 / 1e9, m1 * 1e6, m2 * 1e6, m3 * 1e6);
        free(W), free(x), free(y);
    }
    return 0;
}
