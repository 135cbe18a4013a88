/* AVX-512F kernels: the shared SIMD kernels with 16-float vectors. */
#include "simd_avx512.h"
#include "kernels_simd.inc"
