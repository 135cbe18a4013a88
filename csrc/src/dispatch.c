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
    const rnc_isa_gemm *gemm; /* registers and GEMM tiles, for blocking.c */
} isa_entry;

static int always(void) { return 1; }

static const isa_entry ISAS[] = {
#ifdef RNC_HAVE_AVX512
    {"avx512", &rnc_kernels_avx512, rnc_cpu_has_avx512f, &rnc_isa_gemm_avx512},
#endif
#ifdef RNC_HAVE_AVX2
    {"avx2", &rnc_kernels_avx2, rnc_cpu_has_avx2_fma, &rnc_isa_gemm_avx2},
#endif
#ifdef RNC_HAVE_NEON
    {"neon", &rnc_kernels_neon, rnc_cpu_has_neon, &rnc_isa_gemm_neon},
#endif
    {"generic", &rnc_kernels_generic, always, &rnc_isa_gemm_generic},
};
#define N_ISAS (sizeof ISAS / sizeof ISAS[0])

static const isa_entry *active_isa = NULL;
static const rnc_kernels *active = NULL;
static rnc_kernels active_copy; /* the ISA's table with the chosen tile */

static void activate(const isa_entry *e) {
    active_isa = e;
    active_copy = *e->table;
    rnc_blocking_derive(); /* picks the tile (rnc_use_tile) and the blocks */
    active = &active_copy; /* last: rnc_init() is done once this is set */
}

const rnc_isa_gemm *rnc_active_isa_gemm(void) { return active_isa->gemm; }
const rnc_kernels *rnc_active_kernels_table(void) { return active_isa->table; }

int rnc_use_tile(int mr) {
    const rnc_isa_gemm *g = active_isa->gemm;
    if (g->n_tiles == 0) return mr == active_isa->table->mr ? 0 : -1;
    for (int i = 0; i < g->n_tiles; i++)
        if (g->tiles[i].mr == mr) {
            active_copy.mr = mr;
            active_copy.gemm_panel = g->tiles[i].gemm_panel;
            active_copy.gemm_panel_acc = g->tiles[i].gemm_panel_acc;
            return 0;
        }
    return -1;
}

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
            activate(&ISAS[i]);
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
    activate(find(name));
    return RNC_OK;
}
