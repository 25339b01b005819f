// Requantization of int32 sums to 8-bit values with the ONNX reference's float64 arithmetic, vectorized.
// Rounding half to even is (x + 1.5 * 2^52) - 1.5 * 2^52 in the default rounding mode (exact for
// |x| < 2^51; products are clamped to +-2^40 first, which also maps +-inf there and, through max's
// operand order, NaN to -2^40). Every later step is on integers below 2^41, exact in doubles.
// The Swift `requantize` is the reference twin.
#include "CKernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#define LIMIT 1099511627776.0
#define ROUNDING_SHIFT 6755399441055744.0

__attribute__((target("avx512f"))) static void requantize_avx512(
    const int32_t *acc, size_t count, const int32_t *bias, size_t bias_step, const double *multiplier,
    size_t multiplier_step, int32_t zero_point, int32_t lower, int32_t upper, uint8_t *out) {
    const __m512d limit = _mm512_set1_pd(LIMIT), negative_limit = _mm512_set1_pd(-LIMIT);
    const __m512d shift = _mm512_set1_pd(ROUNDING_SHIFT), zero = _mm512_set1_pd((double)zero_point);
    const __m512d low = _mm512_set1_pd((double)lower), high = _mm512_set1_pd((double)upper);
    for (size_t i = 0; i < count; i += 8) {
        size_t left = count - i < 8 ? count - i : 8;
        __mmask16 mask = (__mmask16)((1u << left) - 1u);
        __m256i sums = _mm512_castsi512_si256(_mm512_maskz_loadu_epi32(mask, acc + i));
        if (bias) {
            __m256i b = bias_step ? _mm512_castsi512_si256(_mm512_maskz_loadu_epi32(mask, bias + i))
                                  : _mm256_set1_epi32(bias[0]);
            sums = _mm256_add_epi32(sums, b);  // wraps, as the reference's &+
        }
        __m512d m = multiplier_step ? _mm512_maskz_loadu_pd((__mmask8)mask, multiplier + i) : _mm512_set1_pd(multiplier[0]);
        __m512d scaled = _mm512_mul_pd(_mm512_cvtepi32_pd(sums), m);
        // max returns its second operand when the first is NaN.
        __m512d bounded = _mm512_min_pd(_mm512_max_pd(scaled, negative_limit), limit);
        __m512d rounded = _mm512_sub_pd(_mm512_add_pd(bounded, shift), shift);
        __m512d clamped = _mm512_min_pd(_mm512_max_pd(_mm512_add_pd(rounded, zero), low), high);
        __m512i values = _mm512_zextsi256_si512(_mm512_cvtpd_epi32(clamped));
        _mm512_mask_cvtepi32_storeu_epi8(out + i, mask, values);
    }
}

__attribute__((target("avx2"))) static void requantize_avx2(
    const int32_t *acc, size_t count, const int32_t *bias, size_t bias_step, const double *multiplier,
    size_t multiplier_step, int32_t zero_point, int32_t lower, int32_t upper, uint8_t *out) {
    const __m256d limit = _mm256_set1_pd(LIMIT), negative_limit = _mm256_set1_pd(-LIMIT);
    const __m256d shift = _mm256_set1_pd(ROUNDING_SHIFT), zero = _mm256_set1_pd((double)zero_point);
    const __m256d low = _mm256_set1_pd((double)lower), high = _mm256_set1_pd((double)upper);
    size_t i = 0;
    for (; i + 4 <= count; i += 4) {
        __m128i sums = _mm_loadu_si128((const __m128i *)(acc + i));
        if (bias) sums = _mm_add_epi32(sums, bias_step ? _mm_loadu_si128((const __m128i *)(bias + i)) : _mm_set1_epi32(bias[0]));
        __m256d m = multiplier_step ? _mm256_loadu_pd(multiplier + i) : _mm256_set1_pd(multiplier[0]);
        __m256d scaled = _mm256_mul_pd(_mm256_cvtepi32_pd(sums), m);
        __m256d bounded = _mm256_min_pd(_mm256_max_pd(scaled, negative_limit), limit);
        __m256d rounded = _mm256_sub_pd(_mm256_add_pd(bounded, shift), shift);
        __m256d clamped = _mm256_min_pd(_mm256_max_pd(_mm256_add_pd(rounded, zero), low), high);
        __m128i values = _mm256_cvtpd_epi32(clamped);
        // Low byte of each int32 lane.
        __m128i bytes = _mm_shuffle_epi8(values, _mm_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
        int32_t packed = _mm_cvtsi128_si32(bytes);
        __builtin_memcpy(out + i, &packed, 4);
    }
    for (; i < count; i++) {
        // The same steps on one lane for the tail.
        int32_t sum = (int32_t)((uint32_t)acc[i] + (bias ? (uint32_t)bias[bias_step ? i : 0] : 0u));
        __m128d scaled = _mm_mul_sd(_mm_set_sd((double)sum), _mm_set_sd(multiplier[multiplier_step ? i : 0]));
        __m128d bounded = _mm_min_sd(_mm_max_sd(scaled, _mm_set_sd(-LIMIT)), _mm_set_sd(LIMIT));
        __m128d rounded = _mm_sub_sd(_mm_add_sd(bounded, _mm_set_sd(ROUNDING_SHIFT)), _mm_set_sd(ROUNDING_SHIFT));
        __m128d clamped = _mm_min_sd(_mm_max_sd(_mm_add_sd(rounded, _mm_set_sd((double)zero_point)), _mm_set_sd((double)lower)),
                                     _mm_set_sd((double)upper));
        out[i] = (uint8_t)_mm_cvtsd_si32(clamped);
    }
}

int sq_requantize_u8(int level, const int32_t *acc, size_t count, const int32_t *bias, size_t bias_step,
                     const double *multiplier, size_t multiplier_step, int32_t zero_point, int32_t lower,
                     int32_t upper, uint8_t *out) {
    sq_cpu_features f = sq_cpu_detect();
    if (level >= SQ_QGEMM_LEVEL_AVX512BW && f.avx512bw) {
        requantize_avx512(acc, count, bias, bias_step, multiplier, multiplier_step, zero_point, lower, upper, out);
        return 1;
    }
    if (level >= SQ_QGEMM_LEVEL_AVX2 && f.avx2) {
        requantize_avx2(acc, count, bias, bias_step, multiplier, multiplier_step, zero_point, lower, upper, out);
        return 1;
    }
    return 0;
}

#else
int sq_requantize_u8(int level, const int32_t *acc, size_t count, const int32_t *bias, size_t bias_step,
                     const double *multiplier, size_t multiplier_step, int32_t zero_point, int32_t lower,
                     int32_t upper, uint8_t *out) {
    (void)level; (void)acc; (void)count; (void)bias; (void)bias_step; (void)multiplier; (void)multiplier_step;
    (void)zero_point; (void)lower; (void)upper; (void)out;
    return 0;
}
#endif
