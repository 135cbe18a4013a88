/*
 * bench_bf16_gemv.c: would bf16 weights pay here? One LSTM step's products
 * at I = H = 512 (y[2048] = W[2048, 512] x, twice: W_ih and W_hh) at N = 1,
 * and a 64-row block (N = 64), with the weights in fp32 (FMA), bf16
 * (AVX-512 BF16 vdpbf16ps: 32 multiply-adds an instruction) and int8
 * (AVX-512 VNNI vpdpbusd: 64), each layout as the kernels would stream it
 * (16-wide output panels). Prints the best and median time of each, the
 * three interleaved (the machine is shared). Not part of the build:
 *
 *   gcc -O3 -mavx512f -mavx512bw -mavx512bf16 -mavx512vnni benchmarks/bench_bf16_gemv.c -o /tmp/bf16 && /tmp/bf16
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define K 512
#define J 4096 /* W_ih and W_hh of an LSTM step: 2 x 4H rows */
#define REPS 41

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* rows m < M of x (K floats each) times 16-row panels: panel p, k: 16 values */
static void gemv_f32(int M, const float *x, const float *W, float *y) {
    for (int p = 0; p < J / 16; p++)
        for (int m = 0; m < M; m += 4) {
            __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            const float *w = W + (size_t)p * K * 16;
            for (int k = 0; k < K; k++) {
                const __m512 wv = _mm512_loadu_ps(w + k * 16);
                for (int r = 0; r < 4 && m + r < M; r++)
                    a[r] = _mm512_fmadd_ps(_mm512_set1_ps(x[(m + r) * K + k]), wv, a[r]);
            }
            for (int r = 0; r < 4 && m + r < M; r++) _mm512_storeu_ps(y + (size_t)(m + r) * J + p * 16, a[r]);
        }
}

/* bf16 pairs: panel p, k/2: 16 x (2 bf16) */
static void gemv_bf16(int M, const uint32_t *x2, const uint32_t *W, float *y) {
    for (int p = 0; p < J / 16; p++)
        for (int m = 0; m < M; m += 4) {
            __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            const uint32_t *w = W + (size_t)p * (K / 2) * 16;
            for (int k = 0; k < K / 2; k++) {
                const __m512bh wv = (__m512bh)_mm512_loadu_si512(w + k * 16);
                for (int r = 0; r < 4 && m + r < M; r++)
                    a[r] = _mm512_dpbf16_ps(a[r], (__m512bh)_mm512_set1_epi32((int)x2[(m + r) * (K / 2) + k]), wv);
            }
            for (int r = 0; r < 4 && m + r < M; r++) _mm512_storeu_ps(y + (size_t)(m + r) * J + p * 16, a[r]);
        }
}

/* int8 quads: panel p, k/4: 16 x (4 int8) */
static void gemv_i8(int M, const uint32_t *x4, const int8_t *W, int32_t *y) {
    for (int p = 0; p < J / 16; p++)
        for (int m = 0; m < M; m += 4) {
            __m512i a[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
            const int8_t *w = W + (size_t)p * K * 16;
            for (int k = 0; k < K / 4; k++) {
                const __m512i wv = _mm512_loadu_si512(w + k * 64);
                for (int r = 0; r < 4 && m + r < M; r++)
                    a[r] = _mm512_dpbusd_epi32(a[r], _mm512_set1_epi32((int)x4[(m + r) * (K / 4) + k]), wv);
            }
            for (int r = 0; r < 4 && m + r < M; r++) _mm512_storeu_si512(y + (size_t)(m + r) * J + p * 16, a[r]);
        }
}

static int cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void) {
    float *Wf = aligned_alloc(64, sizeof(float) * J * K), *x = aligned_alloc(64, 4 * 64 * K);
    uint32_t *Wb = aligned_alloc(64, 2 * J * K), *xb = aligned_alloc(64, 2 * 64 * K);
    int8_t *Wi = aligned_alloc(64, J * K);
    uint32_t *xi = aligned_alloc(64, 64 * K);
    float *y = aligned_alloc(64, sizeof(float) * 64 * J);
    for (size_t i = 0; i < (size_t)J * K; i++) Wf[i] = (float)((i * 7) % 13) / 13.0f - 0.5f;
    memset(Wb, 0x3c, 2 * (size_t)J * K);
    memset(Wi, 3, (size_t)J * K);
    for (int i = 0; i < 64 * K; i++) x[i] = 0.01f * (float)(i % 17);
    memset(xb, 0x3c, 2 * 64 * K);
    memset(xi, 5, 64 * K);
    const int Ms[2] = {1, 64};
    for (int mi = 0; mi < 2; mi++) {
        const int M = Ms[mi];
        double t[3][REPS];
        for (int r = 0; r < REPS; r++) {
            const int iters = M == 1 ? 50 : 2;
            double t0 = now();
            for (int i = 0; i < iters; i++) gemv_f32(M, x, Wf, y);
            double t1 = now();
            for (int i = 0; i < iters; i++) gemv_bf16(M, xb, Wb, y);
            double t2 = now();
            for (int i = 0; i < iters; i++) gemv_i8(M, xi, Wi, (int32_t *)y);
            double t3 = now();
            t[0][r] = (t1 - t0) / iters * 1e6;
            t[1][r] = (t2 - t1) / iters * 1e6;
            t[2][r] = (t3 - t2) / iters * 1e6;
        }
        const char *names[3] = {"fp32 (FMA)", "bf16 (vdpbf16ps)", "int8 (vpdpbusd)"};
        for (int b = 0; b < 3; b++) {
            qsort(t[b], REPS, sizeof(double), cmp);
            printf("N=%2d %-17s best %8.1f us  median %8.1f us  (weights %d KB)\n", M, names[b],
                   t[b][0], t[b][REPS / 2], (b == 0 ? 4 : b == 1 ? 2 : 1) * J * K / 1024);
        }
    }
    return 0;
}
