/* status.c: status strings and build facts. */
#include "rnncore.h"

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
