/* status.c: status strings, build facts and the thread-count convention. */
#include "kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

const char *rnc_status_str(rnc_status s) {
    switch (s) {
    case RNC_OK: return "ok";
    case RNC_ERR_INVALID_ARG: return "invalid argument";
    case RNC_ERR_NO_MEMORY: return "out of memory";
    case RNC_ERR_UNSUPPORTED: return "unsupported";
    }
    return "unknown status";
}

int rnc_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int rnc_default_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

#ifdef _OPENMP
/* omp_get_num_procs() asks the kernel for the affinity mask on every call
 * (libgomp), a syscall per kernel call that one-step streaming calls feel;
 * the processor count is read once. A race between two first callers writes
 * the same value. */
static int num_procs(void) {
    static volatile int procs = 0;
    if (procs == 0) procs = omp_get_num_procs();
    return procs;
}
#endif

int rnc_resolve_threads(int n_threads) {
#ifdef _OPENMP
    /* more threads than 4 per processor only cost; a huge request (a typo,
     * set_num_threads(10**6)) must not make the runtime abort creating them */
    const int limit = 4 * num_procs();
    const int n = n_threads > 0 ? n_threads : omp_get_max_threads();
    return n < limit ? n : limit;
#else
    (void)n_threads;
    return 1;
#endif
}
