/*
 * cpu_features.c: what the CPU and the OS support, read once by rnc_init().
 * A feature counts only when CPUID reports it AND the OS saves the register
 * state it needs (XGETBV: XMM|YMM for AVX2, plus opmask|ZMM for AVX-512).
 * Also the data cache sizes that blocking.c derives the GEMM blocking from.
 */
#define _GNU_SOURCE /* sysconf's cache sizes (glibc) */
#include "kernels.h"

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

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

/* Sizes of the L1 data, L2 and L3 caches from the deterministic cache
 * parameters leaf (Intel 4, AMD 0x8000001D: the same format): subleaf i
 * describes one cache, size = ways * partitions * line * sets, of one
 * instance (L1d and L2: one core's; L3: shared by a core complex). 0 when
 * the leaf is missing. */
static void cpuid_caches(int64_t size[4]) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return;
    const unsigned int max_basic = a;
    const int amd = (b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163) || /* AuthenticAMD */
                    (b == 0x6f677948 && d == 0x6e65476e && c == 0x656e6975);   /* HygonGenuine */
    unsigned int leaf = 4;
    if (amd) {
        const unsigned int max_ext = __get_cpuid_max(0x80000000u, 0);
        if (max_ext < 0x8000001Du) return;
        __cpuid(0x80000001u, a, b, c, d);
        if (!((c >> 22) & 1)) return; /* TOPOEXT: leaf 0x8000001D present */
        leaf = 0x8000001Du;
    } else if (max_basic < 4) {
        return;
    }
    for (unsigned int i = 0; i < 16; i++) {
        __cpuid_count(leaf, i, a, b, c, d);
        const unsigned int type = a & 0x1f, level = (a >> 5) & 0x7;
        if (type == 0) break;          /* no more caches */
        if (type == 2 || level > 3) continue; /* instruction caches */
        const int64_t bytes = (int64_t)((b >> 22) + 1) * (((b >> 12) & 0x3ff) + 1) *
                              ((b & 0xfff) + 1) * ((int64_t)c + 1);
        if (size[level] == 0) size[level] = bytes;
    }
}
#else
static int detect(void) { return 0; }
static void cpuid_caches(int64_t size[4]) { (void)size; }
#endif

const char *rnc_cpu_caches(int64_t *l1d, int64_t *l2, int64_t *l3) {
    int64_t size[4] = {0, 0, 0, 0};
    const char *source = "cpuid";
    cpuid_caches(size);
#if defined(_SC_LEVEL1_DCACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE) && defined(_SC_LEVEL3_CACHE_SIZE)
    if (size[1] <= 0 || size[2] <= 0) { /* glibc: from CPUID too, or from /sys elsewhere */
        const long s1 = sysconf(_SC_LEVEL1_DCACHE_SIZE), s2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
        const long s3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
        if (s1 > 0 && s2 > 0) {
            size[1] = s1, size[2] = s2, size[3] = s3 > 0 ? s3 : 0;
            source = "sysconf";
        }
    }
#endif
    if (size[1] <= 0 || size[2] <= 0) { /* safe defaults: small caches, small blocks */
        size[1] = 32 << 10, size[2] = 256 << 10, size[3] = 8 << 20;
        source = "default";
    }
    *l1d = size[1];
    *l2 = size[2];
    *l3 = size[3] > 0 ? size[3] : size[2]; /* no L3: the L2 is the last level */
    return source;
}

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
