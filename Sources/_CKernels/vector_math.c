// Vectorised float32 math for the elementwise kernels: exp, erf, exact Gelu, softmax rows, and the GEMM
// epilogue (bias and activation applied to results while they are in cache).
//
// The functions are written once, on clang vector types, in vector_math_body.h, which this file
// includes once per level: 4-float vectors without a target attribute (the baseline SIMD: portable
// C semantics), 8-float vectors with target("avx2,fma") and 16-float vectors with target("avx512f").
// Levels use the SGEMM numbering. They differ only by FMA contraction and summation width (an ulp or
// so), never by algorithm.
//
// Accuracy (float32, measured against 40-digit values over dense grids of [0, 5] and [1e-30, 1]):
// - exp: 2^n * e^r with |r| <= ln2/2 and a degree-6 polynomial; within 1 ulp on [-103, 88.7];
//   results below the subnormal range are 0, large x gives +inf, NaN stays NaN.
// - erf: for |x| < 0.921875, x * P(x^2) (P of degree 5, fitted minimax for relative error); for
//   0.921875 <= |x| < 3.925, 1 - exp(-x^2 + G(|x| - 2.4)) (G of degree 8, fitted to log erfc(x) + x^2,
//   a smooth function whose Horner sum has no cancellation); beyond, +-1 (erfc is below half an ulp of
//   1 there). Within 2 ulp and 1.1e-7 absolute; NaN stays NaN, +-inf gives +-1.
// The coefficients were fitted for this file (Lawson-weighted least squares on Chebyshev nodes).
#include "CKernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define VM_LANES 4
#define VM_TARGET
#define VM(name) name##_portable
#include "vector_math_body.h"
#undef VM_LANES
#undef VM_TARGET
#undef VM

#if defined(__x86_64__) || defined(_M_X64)
#define VM_LANES 8
#define VM_TARGET __attribute__((target("avx2,fma")))
#define VM(name) name##_avx2
#include "vector_math_body.h"
#undef VM_LANES
#undef VM_TARGET
#undef VM

#define VM_LANES 16
#define VM_TARGET __attribute__((target("avx512f")))
#define VM(name) name##_avx512
#include "vector_math_body.h"
#undef VM_LANES
#undef VM_TARGET
#undef VM

#define DISPATCH(NAME, ...)                                         \
    switch (sq_sgemm_resolve_level(level)) {                        \
    case SQ_SGEMM_LEVEL_AVX512: NAME##_avx512(__VA_ARGS__); return; \
    case SQ_SGEMM_LEVEL_AVX2: NAME##_avx2(__VA_ARGS__); return;     \
    default: NAME##_portable(__VA_ARGS__); return;                  \
    }
#else
#define DISPATCH(NAME, ...) (void)level; NAME##_portable(__VA_ARGS__);
#endif

void sq_vec_exp(int level, const float *x, float *y, size_t n) { DISPATCH(map_exp, x, y, n) }
void sq_vec_erf(int level, const float *x, float *y, size_t n) { DISPATCH(map_erf, x, y, n) }
void sq_vec_gelu(int level, const float *x, float *y, size_t n) { DISPATCH(map_gelu, x, y, n) }

void sq_softmax_rows(int level, const float *x, float *y, size_t rows, size_t length, int logarithmic) {
    DISPATCH(softmax, x, y, rows, length, logarithmic)
}

void sq_copy_strided(int level, float *dst, const float *src, size_t count, size_t stride) {
    DISPATCH(copy_strided, dst, src, count, stride)
}

void sq_apply_epilogue(int level, float *c, size_t ldc, size_t rows, size_t cols, const sq_epilogue *e) {
    if (!e || rows == 0 || cols == 0) return;
    if (!e->row_bias && !e->column_bias && e->activation == SQ_ACTIVATION_NONE) return;
    DISPATCH(epilogue, c, ldc, rows, cols, e)
}
