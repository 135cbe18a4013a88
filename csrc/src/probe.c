/*
 * probe.c: what this machine can do, measured, for the benchmarks' "% of
 * peak" and roofline floors: FMA throughput and read bandwidth of a buffer,
 * with the active CPU path's widest vectors.
 */
#define _POSIX_C_SOURCE 199309L
#include <time.h>

#include "kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Sink for probe results, so the compiler cannot drop the work. */
static volatile float sink;

/* One unit of probe work on the active kernels: FMA rounds, or a read of
 * buf[0, n). */
typedef struct {
    const rnc_kernels *K;
    const float *buf; /* NULL: FMA probe */
    int64_t n;
} probe_work;

#define FMA_ROUNDS_PER_CALL (1 << 16)

static void work_once(const probe_work *w) {
    sink = w->buf ? w->K->probe_read(w->buf, w->n) : w->K->probe_fma(FMA_ROUNDS_PER_CALL);
}

/* Repeat w for `seconds` in this thread; returns the calls made, sets *elapsed. */
static int64_t repeat_for(const probe_work *w, double seconds, double *elapsed) {
    const double t0 = now();
    double t = t0;
    int64_t calls = 0;
    while (t - t0 < seconds) {
        work_once(w);
        calls++;
        t = now();
    }
    *elapsed = t - t0;
    return calls;
}

double rnc_probe_peak_gflops(int n_threads, double seconds) {
    if (seconds <= 0) return -1;
    const probe_work w = {rnc_active_kernels(), NULL, 0};
    const int nt = rnc_resolve_threads(n_threads);
    double flops = 0, elapsed = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) reduction(+ : flops) reduction(max : elapsed)
#endif
    {
        const int64_t calls = repeat_for(&w, seconds, &elapsed);
        flops = (double)calls * FMA_ROUNDS_PER_CALL * w.K->probe_flops_per_iter;
    }
    (void)nt;
    return flops / elapsed * 1e-9;
}

double rnc_probe_read_gbps(const float *buf, int64_t n, int n_threads, double seconds) {
    if (!buf || n < 1 || seconds <= 0) return -1;
    const rnc_kernels *K = rnc_active_kernels();
    const int nt = rnc_resolve_threads(n_threads);
    double bytes = 0, elapsed = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) reduction(+ : bytes) reduction(max : elapsed)
#endif
    {
#ifdef _OPENMP
        const int tid = omp_get_thread_num(), team = omp_get_num_threads();
#else
        const int tid = 0, team = 1;
#endif
        const int64_t lo = n * tid / team, hi = n * (tid + 1) / team;
        const probe_work w = {K, buf + lo, hi - lo};
        work_once(&w); /* warm the cache level */
        bytes = (double)repeat_for(&w, seconds, &elapsed) * (double)(hi - lo) * sizeof(float);
    }
    (void)nt;
    return bytes / elapsed * 1e-9;
}
