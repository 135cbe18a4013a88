/*
 * cpu_features.c: what the CPU and the OS support, read once by rnc_init().
 * A feature counts only when CPUID reports it AND the OS saves the register
 * state it needs (XGETBV: XMM|YMM for AVX2, plus opmask|ZMM for AVX-512).
 */
#include "kernels.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>

static unsigned long long xgetbv0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

/* bits: 1 avx2+fma usable, 2 avx512f usable */
static int detect(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx) return 0;
    const unsigned long long xcr0 = xgetbv0();
    const int os_ymm = (xcr0 & 0x6) == 0x6;    /* XMM, YMM state */
    const int os_zmm = (xcr0 & 0xe6) == 0xe6;  /* + opmask, ZMM_Hi256, Hi16_ZMM */
    if (__get_cpuid_max(0, 0) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    const int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1;
    int bits = 0;
    if (os_ymm && avx2 && fma) bits |= 1;
    if ((bits & 1) && os_zmm && avx512f) bits |= 2;
    return bits;
}
#else
static int detect(void) { return 0; }
#endif

int rnc_cpu_has_avx2_fma(void) { return detect() & 1; }
int rnc_cpu_has_avx512f(void) { return (detect() >> 1) & 1; }

/* Advanced SIMD (NEON) is part of the AArch64 base architecture: every
 * AArch64 CPU and OS has it, no run-time check is needed. */
int rnc_cpu_has_neon(void) {
#if defined(__aarch64__)
    return 1;
#else
    return 0;
#endif
}
