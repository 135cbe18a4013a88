/*
 * dispatch.c: choose the kernel table once. Order of preference: avx512,
 * avx2 (x86-64), neon (AArch64), generic; a path is used only if it was compiled, the CPU and OS
 * support it, and RNNCORE_DISABLE_ISA does not name it.
 */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

typedef struct {
    const char *name;
    const rnc_kernels *table;
    int (*cpu_ok)(void);
} isa_entry;

static int always(void) { return 1; }

static const isa_entry ISAS[] = {
#ifdef RNC_HAVE_AVX512
    {"avx512", &rnc_kernels_avx512, rnc_cpu_has_avx512f},
#endif
#ifdef RNC_HAVE_AVX2
    {"avx2", &rnc_kernels_avx2, rnc_cpu_has_avx2_fma},
#endif
#ifdef RNC_HAVE_NEON
    {"neon", &rnc_kernels_neon, rnc_cpu_has_neon},
#endif
    {"generic", &rnc_kernels_generic, always},
};
#define N_ISAS (sizeof ISAS / sizeof ISAS[0])

static const rnc_kernels *active = NULL;

/* Is `name` an item of the comma-separated list `list`? */
static int listed(const char *list, const char *name) {
    const size_t len = strlen(name);
    for (const char *p = list; p && *p;) {
        while (*p == ',' || *p == ' ') p++;
        const char *end = p;
        while (*end && *end != ',' && *end != ' ') end++;
        if ((size_t)(end - p) == len && strncmp(p, name, len) == 0) return 1;
        p = end;
    }
    return 0;
}

static const isa_entry *find(const char *name) {
    for (size_t i = 0; i < N_ISAS; i++)
        if (strcmp(ISAS[i].name, name) == 0) return &ISAS[i];
    return NULL;
}

int rnc_isa_available(const char *name) {
    if (!name) return 0;
    const isa_entry *e = find(name);
    if (!e) return 0;
    if (e->table == &rnc_kernels_generic) return 1; /* can never be disabled */
    return e->cpu_ok() && !listed(getenv("RNNCORE_DISABLE_ISA"), name);
}

void rnc_init(void) {
    if (active) return;
    for (size_t i = 0; i < N_ISAS; i++)
        if (rnc_isa_available(ISAS[i].name)) {
            active = ISAS[i].table;
            return;
        }
}

const rnc_kernels *rnc_active_kernels(void) {
    rnc_init();
    return active;
}

const char *rnc_isa_name(void) { return rnc_active_kernels()->name; }

const char *rnc_compiled_isas(void) {
    return ""
#ifdef RNC_HAVE_AVX512
           "avx512,"
#endif
#ifdef RNC_HAVE_AVX2
           "avx2,"
#endif
#ifdef RNC_HAVE_NEON
           "neon,"
#endif
           "generic";
}

rnc_status rnc_set_isa(const char *name) {
    if (!rnc_isa_available(name)) return RNC_ERR_UNSUPPORTED;
    active = find(name)->table;
    return RNC_OK;
}
