// The float output stage of the fused int8 GEMM, vectorised: zero-point corrections, scaling, bias and
// clamp over a tile of int32 sums in one pass, in the order and roundings of the Swift stages
// (`FusedInt8GEMM.correct`, then `FloatOutputStage`), which are its reference twins:
//
//     a = acc[i][j] + offsets[j] - zero_points[j] * row_sums[i]      (wrapping int32)
//     v = (float)a * scales[j], then + bias[j]                        (two roundings, no fused multiply-add)
//     y[i][j] = v < lower ? lower : (v > upper ? upper : v)
#include "CKernels.h"

#pragma clang fp contract(off)

static inline float output_one(int32_t corrected, float scale, float bias, int has_bias, float lower, float upper) {
    float v = (float)corrected * scale;
    if (has_bias) v = v + bias;
    return v < lower ? lower : (v > upper ? upper : v);
}

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

__attribute__((target("avx512f"))) static void float_output_avx512(
    const int32_t *acc, size_t ldc, size_t rows, size_t cols, const int32_t *offsets, const int32_t *zero_points,
    const int32_t *row_sums, const float *scales, const float *bias, float lower, float upper, float *y, size_t ldy) {
    const __m512 lo = _mm512_set1_ps(lower), hi = _mm512_set1_ps(upper);
    for (size_t i = 0; i < rows; i++) {
        const int32_t *row = acc + i * ldc;
        float *out = y + i * ldy;
        const __m512i row_sum = _mm512_set1_epi32(zero_points ? row_sums[i] : 0);
        for (size_t j = 0; j < cols; j += 16) {
            size_t left = cols - j < 16 ? cols - j : 16;
            __mmask16 mask = (__mmask16)((1u << left) - 1u);
            __m512i a = _mm512_add_epi32(_mm512_maskz_loadu_epi32(mask, row + j), _mm512_maskz_loadu_epi32(mask, offsets + j));
            if (zero_points)
                a = _mm512_sub_epi32(a, _mm512_mullo_epi32(_mm512_maskz_loadu_epi32(mask, zero_points + j), row_sum));
            __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(a), _mm512_maskz_loadu_ps(mask, scales + j));
            if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, bias + j));
            // Ordered comparisons, as the scalar ternaries: NaN stays NaN.
            v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, lo, _CMP_LT_OQ), v, lo);
            v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, hi, _CMP_GT_OQ), v, hi);
            _mm512_mask_storeu_ps(out + j, mask, v);
        }
    }
}
#endif

int sq_qgemm_float_output(int level, const int32_t *acc, size_t ldc, size_t rows, size_t cols, const int32_t *offsets,
                          const int32_t *zero_points, const int32_t *row_sums, const float *scales, const float *bias,
                          float lower, float upper, float *y, size_t ldy) {
#if defined(__x86_64__) || defined(_M_X64)
    if (level == SQ_QUANTIZE_LEVEL_AVX512 && sq_cpu_detect().avx512f) {
        float_output_avx512(acc, ldc, rows, cols, offsets, zero_points, row_sums, scales, bias, lower, upper, y, ldy);
        return 1;
    }
#endif
    if (level != SQ_QUANTIZE_LEVEL_PORTABLE) return 0;
    for (size_t i = 0; i < rows; i++) {
        int32_t row_term = zero_points ? row_sums[i] : 0;
        for (size_t j = 0; j < cols; j++) {
            uint32_t a = (uint32_t)acc[i * ldc + j] + (uint32_t)offsets[j];
            if (zero_points) a -= (uint32_t)zero_points[j] * (uint32_t)row_term;
            y[i * ldy + j] = output_one((int32_t)a, scales[j], bias ? bias[j] : 0, bias != 0, lower, upper);
        }
    }
    return 1;
}
