/*
 * qdispatch.c: the int8 kernels that go with the active fp32 kernel table
 * (rnc_active_kernels()->name, so RNNCORE_DISABLE_ISA and rnc_set_isa steer
 * both): avx512 -> avx512vnni when the CPU has AVX-512 BW + VNNI and
 * RNNCORE_DISABLE_ISA does not name "avx512vnni", else avx2; avx2 -> avx2;
 * neon -> neon_dotprod when the CPU has the Armv8.2 dot products and
 * RNNCORE_DISABLE_ISA does not name "neon_dotprod", else neon; generic ->
 * generic. Looked up per call (a string compare): rnc_set_isa may switch
 * the fp32 table between calls.
 */
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
#else
int rnc_cpu_has_avx512vnni(void) { return 0; }
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

/* decided once: CPUID, the auxiliary vector and the environment do not change */
static int vnni_usable = -1, dotprod_usable = -1;

const rnc_qkernels *rnc_active_qkernels(void) {
    const char *fp32 = rnc_active_kernels()->name;
#if defined(RNC_HAVE_QAVX512VNNI) && defined(RNC_HAVE_AVX512)
    if (vnni_usable < 0)
        vnni_usable = rnc_cpu_has_avx512vnni() && !listed(getenv("RNNCORE_DISABLE_ISA"), "avx512vnni");
    if (strcmp(fp32, "avx512") == 0 && vnni_usable) return &rnc_qkernels_avx512vnni;
#endif
#if defined(RNC_HAVE_QAVX2) && (defined(RNC_HAVE_AVX2) || defined(RNC_HAVE_AVX512))
    if (strcmp(fp32, "avx512") == 0 || strcmp(fp32, "avx2") == 0) return &rnc_qkernels_avx2;
#endif
#if defined(RNC_HAVE_QNEON) && defined(RNC_HAVE_NEON)
    if (strcmp(fp32, "neon") == 0) {
#ifdef RNC_HAVE_QNEON_DOTPROD
        if (dotprod_usable < 0)
            dotprod_usable = rnc_cpu_has_neon_dotprod() &&
                             !listed(getenv("RNNCORE_DISABLE_ISA"), "neon_dotprod");
        if (dotprod_usable) return &rnc_qkernels_neon_dotprod;
#endif
        return &rnc_qkernels_neon;
    }
#endif
    (void)fp32;
    (void)vnni_usable;
    (void)dotprod_usable;
    (void)listed;
    return &rnc_qkernels_generic;
}

const char *rnc_qisa_name(void) { return rnc_active_qkernels()->name; }
