// Per-row dynamic quantization of a MatMul. `sq_quantize_rows` (the `QuantizeRows` fused operator): one
// scale per row from the row's largest magnitude, then the codes. `sq_row_scaled_output` (the end of
// `RowScaledQMatMul`): int32 sums to floats scaled per column and per row. Every step is the float32
// operation of the ONNX node it replaces (Abs, ReduceMax, Max, Div, Div, QuantizeLinear; Cast, Mul, Mul,
// Add), one rounding each, so the results equal the unfused graph's bit for bit: divisions are true IEEE
// divisions, rounding to int32 uses the default MXCSR mode (half to even), and products and sums are
// separate instructions (never fused). The Swift kernels' loops are the reference twins.
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

// MARK: - Row- and column-scaled outputs

__attribute__((target("avx512f"))) static void row_scaled_output_avx512(
    const int32_t *tile, size_t ldt, size_t rows, size_t cols, const int32_t *offsets, const int32_t *zero_points,
    const int32_t *row_sums, const float *column_scales, const float *row_scales, const float *bias, int row_first,
    float *y, size_t ldy) {
    for (size_t i = 0; i < rows; i++) {
        const __m512 row_scale = _mm512_set1_ps(row_scales[i]);
        const __m512i row_sum = _mm512_set1_epi32(zero_points ? row_sums[i] : 0);
        for (size_t j = 0; j < cols; j += 16) {
            size_t left = cols - j < 16 ? cols - j : 16;
            __mmask16 mask = (__mmask16)((1u << left) - 1u);
            __m512i acc = _mm512_add_epi32(_mm512_maskz_loadu_epi32(mask, tile + i * ldt + j),
                                           _mm512_maskz_loadu_epi32(mask, offsets + j));
            if (zero_points)
                acc = _mm512_sub_epi32(acc, _mm512_mullo_epi32(_mm512_maskz_loadu_epi32(mask, zero_points + j), row_sum));
            __m512 column_scale = _mm512_maskz_loadu_ps(mask, column_scales + j);
            __m512 value = _mm512_cvtepi32_ps(acc);
            value = row_first ? _mm512_mul_ps(_mm512_mul_ps(value, row_scale), column_scale)
                              : _mm512_mul_ps(_mm512_mul_ps(value, column_scale), row_scale);
            if (bias) value = _mm512_add_ps(value, _mm512_maskz_loadu_ps(mask, bias + j));
            _mm512_mask_storeu_ps(y + i * ldy + j, mask, value);
        }
    }
}

__attribute__((target("avx2"))) static void row_scaled_output_avx2(
    const int32_t *tile, size_t ldt, size_t rows, size_t cols, const int32_t *offsets, const int32_t *zero_points,
    const int32_t *row_sums, const float *column_scales, const float *row_scales, const float *bias, int row_first,
    float *y, size_t ldy) {
    for (size_t i = 0; i < rows; i++) {
        const __m256 row_scale = _mm256_set1_ps(row_scales[i]);
        const int32_t sum = zero_points ? row_sums[i] : 0;
        const __m256i row_sum = _mm256_set1_epi32(sum);
        size_t j = 0;
        for (; j + 8 <= cols; j += 8) {
            __m256i acc = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(tile + i * ldt + j)),
                                           _mm256_loadu_si256((const __m256i *)(offsets + j)));
            if (zero_points)
                acc = _mm256_sub_epi32(acc, _mm256_mullo_epi32(_mm256_loadu_si256((const __m256i *)(zero_points + j)), row_sum));
            __m256 column_scale = _mm256_loadu_ps(column_scales + j);
            __m256 value = _mm256_cvtepi32_ps(acc);
            value = row_first ? _mm256_mul_ps(_mm256_mul_ps(value, row_scale), column_scale)
                              : _mm256_mul_ps(_mm256_mul_ps(value, column_scale), row_scale);
            if (bias) value = _mm256_add_ps(value, _mm256_loadu_ps(bias + j));
            _mm256_storeu_ps(y + i * ldy + j, value);
        }
        for (; j < cols; j++) {
            // The same steps on one lane; the int32 arithmetic wraps as the vector lanes do.
            uint32_t wrapped = (uint32_t)tile[i * ldt + j] + (uint32_t)offsets[j];
            if (zero_points) wrapped -= (uint32_t)zero_points[j] * (uint32_t)sum;
            __m128 value = _mm_cvtsi32_ss(_mm_setzero_ps(), (int32_t)wrapped);
            __m128 first = _mm_set_ss(row_first ? row_scales[i] : column_scales[j]);
            __m128 second = _mm_set_ss(row_first ? column_scales[j] : row_scales[i]);
            value = _mm_mul_ss(_mm_mul_ss(value, first), second);
            if (bias) value = _mm_add_ss(value, _mm_set_ss(bias[j]));
            y[i * ldy + j] = _mm_cvtss_f32(value);
        }
    }
}

int sq_row_scaled_output(int level, const int32_t *tile, size_t ldt, size_t rows, size_t cols, const int32_t *offsets,
                         const int32_t *zero_points, const int32_t *row_sums, const float *column_scales,
                         const float *row_scales, const float *bias, int row_scale_first, float *y, size_t ldy) {
    sq_cpu_features f = sq_cpu_detect();
    if (level >= SQ_SGEMM_LEVEL_AVX512 && f.avx512f) {
        row_scaled_output_avx512(tile, ldt, rows, cols, offsets, zero_points, row_sums, column_scales, row_scales, bias,
                                 row_scale_first, y, ldy);
        return 1;
    }
    if (level >= SQ_SGEMM_LEVEL_AVX2 && f.avx2) {
        row_scaled_output_avx2(tile, ldt, rows, cols, offsets, zero_points, row_sums, column_scales, row_scales, bias,
                               row_scale_first, y, ldy);
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

int sq_row_scaled_output(int level, const int32_t *tile, size_t ldt, size_t rows, size_t cols, const int32_t *offsets,
                         const int32_t *zero_points, const int32_t *row_sums, const float *column_scales,
                         const float *row_scales, const float *bias, int row_scale_first, float *y, size_t ldy) {
    (void)level; (void)tile; (void)ldt; (void)rows; (void)cols; (void)offsets; (void)zero_points; (void)row_sums;
    (void)column_scales; (void)row_scales; (void)bias; (void)row_scale_first; (void)y; (void)ldy;
    return 0;
}
#endif
