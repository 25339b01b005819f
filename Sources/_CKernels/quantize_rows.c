// Per-row dynamic quantization (the `QuantizeRows` fused operator): one scale per row from the row's
// largest magnitude, then the codes. Every step is the float32 operation of the ONNX node it replaces
// (Abs, ReduceMax, Max, Div, Div, QuantizeLinear), so the results equal the unfused graph's bit for bit:
// divisions are true IEEE divisions, and rounding to int32 uses the default MXCSR mode, round half to
// even. The Swift `FusedQuantizeRowsKernel.runReference` is the reference twin.
#include "CKernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

/// Max(m, epsilon) / divisor with ONNX Max's NaN propagation, scalar on purpose: one value per row.
static float row_scale(float magnitude, float epsilon, float divisor) {
    float guarded = (magnitude < epsilon || epsilon != epsilon) ? epsilon : magnitude;
    return guarded / divisor;
}

/// round_half_even(clamp(v, low, high)) + zero for one lane; max_ss returns `low` for a NaN `v`.
static int32_t code_scalar(float x, float scale, float low, float high, int32_t zero) {
    __m128 v = _mm_div_ss(_mm_set_ss(x), _mm_set_ss(scale));
    __m128 bounded = _mm_min_ss(_mm_max_ss(v, _mm_set_ss(low)), _mm_set_ss(high));
    return _mm_cvtss_si32(bounded) + zero;
}

__attribute__((target("avx512f,avx512bw"))) static void quantize_rows_avx512(
    const float *x, size_t rows, size_t cols, float epsilon, float divisor, int32_t zero, int32_t lower,
    int32_t upper, uint8_t *codes, float *scales) {
    const __m512i sign = _mm512_set1_epi32(0x7FFFFFFF);
    const __m512 low = _mm512_set1_ps((float)(lower - zero)), high = _mm512_set1_ps((float)(upper - zero));
    const __m512i offset = _mm512_set1_epi32(zero);
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * cols;
        __m512 maximum = _mm512_set1_ps(-__builtin_inff());
        __mmask16 nan = 0;
        for (size_t k = 0; k < cols; k += 16) {
            size_t left = cols - k < 16 ? cols - k : 16;
            __mmask16 mask = (__mmask16)((1u << left) - 1u);
            __m512 magnitude = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(_mm512_maskz_loadu_ps(mask, row + k)), sign));
            nan |= _mm512_mask_cmp_ps_mask(mask, magnitude, magnitude, _CMP_UNORD_Q);
            maximum = _mm512_mask_max_ps(maximum, mask, magnitude, maximum);
        }
        float magnitude = nan ? __builtin_nanf("") : _mm512_reduce_max_ps(maximum);
        float scale = row_scale(magnitude, epsilon, divisor);
        scales[r] = scale;
        const __m512 s = _mm512_set1_ps(scale);
        for (size_t k = 0; k < cols; k += 16) {
            size_t left = cols - k < 16 ? cols - k : 16;
            __mmask16 mask = (__mmask16)((1u << left) - 1u);
            __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(mask, row + k), s);
            // max returns its second operand when the first is NaN: NaN becomes `low`.
            __m512 bounded = _mm512_min_ps(_mm512_max_ps(v, low), high);
            __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(bounded), offset);
            _mm512_mask_cvtepi32_storeu_epi8(codes + r * cols + k, mask, q);
        }
    }
}

__attribute__((target("avx2"))) static void quantize_rows_avx2(
    const float *x, size_t rows, size_t cols, float epsilon, float divisor, int32_t zero, int32_t lower,
    int32_t upper, uint8_t *codes, float *scales) {
    const __m256 sign = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const float lowValue = (float)(lower - zero), highValue = (float)(upper - zero);
    const __m256 low = _mm256_set1_ps(lowValue), high = _mm256_set1_ps(highValue);
    const __m256i offset = _mm256_set1_epi32(zero);
    const int is_signed = lower < 0;
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * cols;
        __m256 maximum = _mm256_set1_ps(-__builtin_inff());
        __m256 nan = _mm256_setzero_ps();
        size_t k = 0;
        for (; k + 8 <= cols; k += 8) {
            __m256 magnitude = _mm256_and_ps(_mm256_loadu_ps(row + k), sign);
            nan = _mm256_or_ps(nan, _mm256_cmp_ps(magnitude, magnitude, _CMP_UNORD_Q));
            maximum = _mm256_max_ps(magnitude, maximum);
        }
        float lanes[8];
        _mm256_storeu_ps(lanes, maximum);
        float magnitude = lanes[0];
        for (int i = 1; i < 8; i++) magnitude = lanes[i] > magnitude ? lanes[i] : magnitude;
        int sawNaN = _mm256_movemask_ps(nan) != 0;
        for (; k < cols; k++) {
            float value = __builtin_fabsf(row[k]);
            if (value != value) sawNaN = 1;
            else if (value > magnitude) magnitude = value;
        }
        float scale = row_scale(sawNaN ? __builtin_nanf("") : magnitude, epsilon, divisor);
        scales[r] = scale;
        const __m256 s = _mm256_set1_ps(scale);
        uint8_t *out = codes + r * cols;
        for (k = 0; k + 8 <= cols; k += 8) {
            __m256 v = _mm256_div_ps(_mm256_loadu_ps(row + k), s);
            __m256 bounded = _mm256_min_ps(_mm256_max_ps(v, low), high);
            __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(bounded), offset);
            __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
            __m128i bytes = is_signed ? _mm_packs_epi16(words, words) : _mm_packus_epi16(words, words);
            _mm_storel_epi64((__m128i *)(out + k), bytes);
        }
        for (; k < cols; k++) out[k] = (uint8_t)code_scalar(row[k], scale, lowValue, highValue, zero);
    }
}

int sq_quantize_rows(int level, const float *x, size_t rows, size_t cols, float epsilon, float divisor,
                     int32_t zero_point, int32_t lower, int32_t upper, uint8_t *codes, float *scales) {
    sq_cpu_features f = sq_cpu_detect();
    if (level >= SQ_SGEMM_LEVEL_AVX512 && f.avx512bw) {
        quantize_rows_avx512(x, rows, cols, epsilon, divisor, zero_point, lower, upper, codes, scales);
        return 1;
    }
    if (level >= SQ_SGEMM_LEVEL_AVX2 && f.avx2) {
        quantize_rows_avx2(x, rows, cols, epsilon, divisor, zero_point, lower, upper, codes, scales);
        return 1;
    }
    return 0;
}

#else
int sq_quantize_rows(int level, const float *x, size_t rows, size_t cols, float epsilon, float divisor,
                     int32_t zero_point, int32_t lower, int32_t upper, uint8_t *codes, float *scales) {
    (void)level; (void)x; (void)rows; (void)cols; (void)epsilon; (void)divisor; (void)zero_point; (void)lower;
    (void)upper; (void)codes; (void)scales;
    return 0;
}
#endif
