// LayerNormalization over contiguous float32 rows, vectorised. The arithmetic is that of the Swift
// `LayerNormalizationKernel` (its reference twin), operation for operation, except that the two sums are
// accumulated in 16 lanes and then added lane by lane (a different association, within a few ulps):
//
//     pivot = x[0];  shift = sum(x - pivot) / d;  mean = pivot + shift
//     c = (x - pivot) - shift;  var = sum(c * c) / d;  inv = 1 / sqrt(var + epsilon)
//     y = ((c * inv) * gamma) + beta
//
// Centring on the row's first element keeps the digits of rows with a large common offset.
#include "CKernels.h"

#include <math.h>

#pragma clang fp contract(off)

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

__attribute__((target("avx512f"))) static void layer_norm_avx512(
    const float *x, float *y, size_t rows, size_t d, const float *gamma, const float *beta, float epsilon,
    float *means, float *inverses) {
    for (size_t r = 0; r < rows; r++) {
        const float *in = x + r * d;
        float *out = y + r * d;
        const __m512 pivot = _mm512_set1_ps(in[0]);
        __m512 sum = _mm512_setzero_ps();
        for (size_t i = 0; i < d; i += 16) {
            __mmask16 mask = d - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (d - i)) - 1u);
            sum = _mm512_mask_add_ps(sum, mask, sum, _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, in + i), pivot));
        }
        float shift = _mm512_reduce_add_ps(sum) / (float)d;
        const __m512 shifts = _mm512_set1_ps(shift);
        __m512 squares = _mm512_setzero_ps();
        for (size_t i = 0; i < d; i += 16) {
            __mmask16 mask = d - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (d - i)) - 1u);
            __m512 c = _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, in + i), pivot), shifts);
            squares = _mm512_mask_add_ps(squares, mask, squares, _mm512_mul_ps(c, c));
        }
        float variance = _mm512_reduce_add_ps(squares) / (float)d;
        float inverse = 1.0f / sqrtf(variance + epsilon);
        const __m512 inv = _mm512_set1_ps(inverse);
        for (size_t i = 0; i < d; i += 16) {
            __mmask16 mask = d - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (d - i)) - 1u);
            __m512 c = _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, in + i), pivot), shifts);
            __m512 v = _mm512_mul_ps(_mm512_mul_ps(c, inv), _mm512_maskz_loadu_ps(mask, gamma + i));
            _mm512_mask_storeu_ps(out + i, mask, _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, beta + i)));
        }
        if (means) means[r] = in[0] + shift;
        if (inverses) inverses[r] = inverse;
    }
}
#endif

int sq_layer_norm_rows(int level, const float *x, float *y, size_t rows, size_t d, const float *gamma,
                       const float *beta, float epsilon, float *means, float *inverses) {
    if (d == 0) return 1;
#if defined(__x86_64__) || defined(_M_X64)
    if (level == SQ_QUANTIZE_LEVEL_AVX512 && sq_cpu_detect().avx512f) {
        layer_norm_avx512(x, y, rows, d, gamma, beta, epsilon, means, inverses);
        return 1;
    }
#endif
    (void)level;
    return 0;
}
