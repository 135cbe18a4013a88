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

double rnc_probe_peak_gflops(int n_threads, double seconds) {
    if (seconds <= 0) return -1;
    const rnc_kernels *K = rnc_active_kernels();
    const int nt = rnc_resolve_threads(n_threads);
    double flops = 0, elapsed = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) reduction(+ : flops) reduction(max : elapsed)
#endif
    {
        const int64_t chunk = 1 << 16;
        const double t0 = now();
        double t = t0;
        int64_t rounds = 0;
        while (t - t0 < seconds) {
            sink = K->probe_fma(chunk);
            rounds += chunk;
            t = now();
        }
        flops = (double)rounds * K->probe_flops_per_iter;
        elapsed = t - t0;
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
        sink = K->probe_read(buf + lo, hi - lo); /* warm the cache level */
        const double t0 = now();
        double t = t0;
        int64_t reads = 0;
        while (t - t0 < seconds) {
            sink = K->probe_read(buf + lo, hi - lo);
            reads++;
            t = now();
        }
        bytes = (double)reads * (double)(hi - lo) * sizeof(float);
        elapsed = t - t0;
    }
    (void)nt;
    return bytes / elapsed * 1e-9;
}
