/* AArch64 NEON kernels: the shared SIMD kernels with 4-float vectors. */
#include "simd_neon.h"
#include "kernels_simd.inc"
