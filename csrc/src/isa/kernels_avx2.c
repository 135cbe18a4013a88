/* AVX2 + FMA kernels: the shared SIMD kernels with 8-float vectors. */
#include "simd_avx2.h"
#include "kernels_simd.inc"
