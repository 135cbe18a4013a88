/* simd_generic.h: the vector vocabulary of kernels_simd.inc in portable C,
 * with the vector extension of GCC and Clang: 4-float vectors, which the
 * compiler maps to the baseline ISA's registers (SSE2 on x86-64, NEON on
 * arm64) or to scalar code. Compiled only into isa/kernels_generic.c, with
 * no ISA flags. Comparisons give lanes of all ones or zeros; vmin / vmax
 * follow x86's rule (the second operand when either is NaN), as the other
 * vocabularies do. */
#include <stdint.h>
#include <string.h>

#define ISA_NAME "generic"
#define ISA_SUFFIX(f) f##_generic
#define VW 4
/* 16 registers assumed (SSE2's xmm; arm64's baseline has 32). One tile
 * height: 4 x 2 accumulators + 2 panel vectors + 1 broadcast = 11 (6 rows
 * would fit, but another height regroups the sums of the row tails, and the
 * portable path is the one kept bit for bit). */
#define VREGS 16
#define GEMM_TILES(X) X(4)
#define GEMM_MR 4   /* the table's tile before blocking.c chooses */

typedef float vf __attribute__((vector_size(16)));
typedef int32_t vi __attribute__((vector_size(16)));
typedef vi vm;

static inline vf vload(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf vset1(float x) { return (vf){x, x, x, x}; }
#define vzero() vset1(0.0f)
#define vfma(a, b, c) ((a) * (b) + (c))   /* a*b + c (two roundings: no FMA in the baseline) */
#define vfnma(a, b, c) ((c) - (a) * (b))  /* c - a*b */
#define vadd(a, b) ((a) + (b))
#define vsub(a, b) ((a) - (b))
#define vmul(a, b) ((a) * (b))
#define vdiv(a, b) ((a) / (b))
#define vlt(a, b) ((vm)((a) < (b)))
#define vgt(a, b) ((vm)((a) > (b)))
#define visnan(a) ((vm)((a) != (a)))
static inline vf vsel(vm m, vf t, vf f) { /* m ? t : f, lane by lane */
    return (vf)(((vi)t & m) | ((vi)f & ~m));
}
#define vmin(a, b) vsel(vlt(a, b), a, b)
#define vmax(a, b) vsel(vgt(a, b), a, b)
#define vabs(a) ((vf)((vi)(a) & (vi){0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff}))
#define vround_trunc(a) __builtin_convertvector(__builtin_convertvector(a, vi), vf)
/* 2^n for integral n in [-126, 127], from the float n */
#define vpow2i(n) ((vf)((__builtin_convertvector(n, vi) + 127) << 23))
