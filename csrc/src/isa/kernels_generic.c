/* The portable kernels: the shared SIMD kernels over portable C vectors of
 * 4 floats (no ISA flags; the path every CPU can run). */
#include "simd_generic.h"
#include "kernels_simd.inc"
