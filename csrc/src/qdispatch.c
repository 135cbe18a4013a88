/*
 * qdispatch.c: the int8 kernels that go with the active fp32 kernel table
 * (rnc_active_kernels()->name, so RNNCORE_DISABLE_ISA and rnc_set_isa steer
 * both): avx512 -> amx when the CPU has AMX-INT8 and AVX-512 VNNI, the OS
 * grants the tile state and RNNCORE_DISABLE_ISA names neither "amx" nor
 * "avx512vnni", else avx512vnni when the CPU has AVX-512 BW + VNNI and
 * RNNCORE_DISABLE_ISA does not name "avx512vnni", else avx2_7bit (7-bit
 * activations) unless RNNCORE_DISABLE_ISA names "avx2_7bit", else avx2;
 * avx2 -> avx2_7bit, else avx2;
 * neon -> neon_dotprod when the CPU has the Armv8.2 dot products and
 * RNNCORE_DISABLE_ISA does not name "neon_dotprod", else neon; generic ->
 * generic. Looked up per call (a few string compares): rnc_set_isa may
 * switch the fp32 table between calls. rnc_set_qisa picks another of the
 * tables usable with the fp32 path (tests and benchmarks: amx against
 * avx512vnni against avx2 on one machine).
 */
#if defined(__linux__) && defined(__x86_64__)
#define _GNU_SOURCE /* syscall() under -std=c99 */
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__linux__) && defined(__aarch64__)
#include <sys/auxv.h>
#endif
#if defined(__APPLE__) && defined(__aarch64__)
#include <sys/sysctl.h>
#endif
#include <stdlib.h>
#include <string.h>

#include "qkernels.h"

int rnc_cpu_has_neon_dotprod(void) {
#if defined(__linux__) && defined(__aarch64__)
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__) && defined(__aarch64__)
    int v = 0;
    size_t len = sizeof v;
    return sysctlbyname("hw.optional.arm.FEAT_DotProd", &v, &len, NULL, 0) == 0 && v;
#else
    return 0;
#endif
}

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>

static unsigned long long xgetbv0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

int rnc_cpu_has_avx512vnni(void) {
    unsigned int a, b, c, d;
    if (!rnc_cpu_has_avx512f() || __get_cpuid_max(0, 0) < 7) return 0;
    if ((xgetbv0() & 0xe6) != 0xe6) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return ((b >> 30) & 1) /* AVX512BW */ && ((c >> 11) & 1) /* AVX512_VNNI */;
}

/* AMX-TILE + AMX-INT8 (CPUID 7.0 EDX bits 24, 25), XCR0's tile bits 17-18
 * set by the OS, and (Linux) the process's permission for the tile data:
 * arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), once, for every
 * thread of the process; where it is refused, no AMX. */
int rnc_cpu_has_amx_int8(void) {
#if defined(__linux__) && defined(__x86_64__)
    unsigned int a, b, c, d;
    if (__get_cpuid_max(0, 0) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    if (!((d >> 24) & 1) || !((d >> 25) & 1)) return 0;
    if ((xgetbv0() & 0x60000) != 0x60000) return 0;
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
#else
    return 0;
#endif
}
#else
int rnc_cpu_has_avx512vnni(void) { return 0; }
int rnc_cpu_has_amx_int8(void) { return 0; }
#endif

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

/* decided once: CPUID, the auxiliary vector and the environment do not
 * change (a race of two first calls writes the same value) */
static int vnni_usable = -1, amx_usable = -1, dotprod_usable = -1, seven_usable = -1;

/* cpu_has NULL: nothing to ask the CPU (a kernel choice, not an extension) */
static int usable(int *cached, int (*cpu_has)(void), const char *name) {
    if (*cached < 0)
        *cached = (!cpu_has || cpu_has()) && !listed(getenv("RNNCORE_DISABLE_ISA"), name);
    return *cached;
}

#define MAX_CANDIDATES 5

/* The int8 tables usable with the active fp32 path, the default first;
 * returns how many. */
static int candidates(const rnc_qkernels *out[MAX_CANDIDATES]) {
    const char *fp32 = rnc_active_kernels()->name;
    int n = 0;
#if defined(RNC_HAVE_QAVX512VNNI) && defined(RNC_HAVE_AVX512)
    if (strcmp(fp32, "avx512") == 0 && usable(&vnni_usable, rnc_cpu_has_avx512vnni, "avx512vnni")) {
#ifdef RNC_HAVE_QAMX
        if (usable(&amx_usable, rnc_cpu_has_amx_int8, "amx")) out[n++] = &rnc_qkernels_amx;
#endif
        out[n++] = &rnc_qkernels_avx512vnni;
    }
#endif
#if defined(RNC_HAVE_QAVX2) && (defined(RNC_HAVE_AVX2) || defined(RNC_HAVE_AVX512))
    if (strcmp(fp32, "avx512") == 0 || strcmp(fp32, "avx2") == 0) {
        if (usable(&seven_usable, NULL, "avx2_7bit")) out[n++] = &rnc_qkernels_avx2_7bit;
        out[n++] = &rnc_qkernels_avx2;
    }
#endif
#if defined(RNC_HAVE_QNEON) && defined(RNC_HAVE_NEON)
    if (strcmp(fp32, "neon") == 0) {
#ifdef RNC_HAVE_QNEON_DOTPROD
        if (usable(&dotprod_usable, rnc_cpu_has_neon_dotprod, "neon_dotprod"))
            out[n++] = &rnc_qkernels_neon_dotprod;
#endif
        out[n++] = &rnc_qkernels_neon;
    }
#endif
    if (n == 0) out[n++] = &rnc_qkernels_generic;
    (void)fp32;
    (void)usable;
    (void)vnni_usable;
    (void)amx_usable;
    (void)dotprod_usable;
    (void)seven_usable;
    return n;
}

/* rnc_set_qisa's choice ("": the default) */
static char chosen[32];

const rnc_qkernels *rnc_active_qkernels(void) {
    const rnc_qkernels *c[MAX_CANDIDATES];
    const int n = candidates(c);
    for (int i = 0; i < n && chosen[0]; i++)
        if (strcmp(c[i]->name, chosen) == 0) return c[i];
    return c[0];
}

const char *rnc_qisa_name(void) { return rnc_active_qkernels()->name; }

int rnc_qisa_act_max(void) { return rnc_active_qkernels()->act_max; }

const char *rnc_qisa_candidates(void) {
    static char list[MAX_CANDIDATES * 16];
    const rnc_qkernels *c[MAX_CANDIDATES];
    const int n = candidates(c);
    list[0] = 0;
    for (int i = 0; i < n; i++) {
        if (i) strcat(list, ",");
        strcat(list, c[i]->name);
    }
    return list;
}

rnc_status rnc_set_qisa(const char *name) {
    if (!name || !name[0]) {
        chosen[0] = 0;
        return RNC_OK;
    }
    const rnc_qkernels *c[MAX_CANDIDATES];
    const int n = candidates(c);
    for (int i = 0; i < n; i++)
        if (strcmp(c[i]->name, name) == 0) {
            memcpy(chosen, c[i]->name, strlen(c[i]->name) + 1);
            return RNC_OK;
        }
    return RNC_ERR_UNSUPPORTED;
}
