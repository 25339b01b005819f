// float32 -> 8-bit QuantizeLinear, per tensor or per channel along the last axis, vectorised.
//
// The arithmetic is the reference's, operation for operation: an IEEE division x / scale (vdivps, not a
// reciprocal), then round half to even by adding 1.5 * 2^23 in the default rounding mode and reading
// the low mantissa bits, then + zero point and saturation. Before rounding the quotient is clamped to
// [lower - 256, upper + 256]: one step or more beyond every code a zero point in [-128, 255] can reach,
// so no result changes, and NaN goes to the low end (max returns its second operand when the first is
// NaN), as in the reference. The Swift `FloatQuantization.referenceQuantize` is the reference twin.
#include "CKernels.h"

#include <string.h>

/// One element, exactly as the vector lanes compute it (tails and the portable level).
static inline int32_t quantize_one(float x, float scale, int32_t zero, float low, float high, int32_t lower,
                                   int32_t upper) {
    float v = x / scale;
    float bounded = v > high ? high : (v >= low ? v : low);
    float shifted = bounded + 12582912.0f;
    int32_t bits;
    memcpy(&bits, &shifted, 4);
    int32_t code = bits - 0x4B400000 + zero;
    return code < lower ? lower : (code > upper ? upper : code);
}

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

/// 16 quotients rounded and saturated to codes.
static inline __attribute__((always_inline, target("avx512f"))) __m512i quantize16(
    __m512 x, __m512 scale, __m512i zero, __m512 low, __m512 high, __m512i lower, __m512i upper) {
    __m512 bounded = _mm512_min_ps(_mm512_max_ps(_mm512_div_ps(x, scale), low), high);
    __m512i bits = _mm512_castps_si512(_mm512_add_ps(bounded, _mm512_set1_ps(12582912.0f)));
    __m512i code = _mm512_add_epi32(_mm512_sub_epi32(bits, _mm512_set1_epi32(0x4B400000)), zero);
    return _mm512_min_epi32(_mm512_max_epi32(code, lower), upper);
}

__attribute__((target("avx512f"))) static void quantize_avx512(
    const float *x, size_t rows, size_t channels, const float *scales, const int32_t *zeros, int32_t lower,
    int32_t upper, uint8_t *y) {
    const __m512 low = _mm512_set1_ps((float)(lower - 256)), high = _mm512_set1_ps((float)(upper + 256));
    const __m512i lo = _mm512_set1_epi32(lower), hi = _mm512_set1_epi32(upper);
    if (channels == 1) {
        const __m512 scale = _mm512_set1_ps(scales[0]);
        const __m512i zero = _mm512_set1_epi32(zeros[0]);
        size_t count = rows, i = 0;
        for (; i + 64 <= count; i += 64) {
            // Four independent divisions in flight.
            __m512i a = quantize16(_mm512_loadu_ps(x + i), scale, zero, low, high, lo, hi);
            __m512i b = quantize16(_mm512_loadu_ps(x + i + 16), scale, zero, low, high, lo, hi);
            __m512i c = quantize16(_mm512_loadu_ps(x + i + 32), scale, zero, low, high, lo, hi);
            __m512i d = quantize16(_mm512_loadu_ps(x + i + 48), scale, zero, low, high, lo, hi);
            _mm_storeu_si128((__m128i *)(y + i), _mm512_cvtepi32_epi8(a));
            _mm_storeu_si128((__m128i *)(y + i + 16), _mm512_cvtepi32_epi8(b));
            _mm_storeu_si128((__m128i *)(y + i + 32), _mm512_cvtepi32_epi8(c));
            _mm_storeu_si128((__m128i *)(y + i + 48), _mm512_cvtepi32_epi8(d));
        }
        for (; i < count; i += 16) {
            size_t left = count - i < 16 ? count - i : 16;
            __mmask16 mask = (__mmask16)((1u << left) - 1u);
            __m512i q = quantize16(_mm512_maskz_loadu_ps(mask, x + i), scale, zero, low, high, lo, hi);
            _mm512_mask_cvtepi32_storeu_epi8(y + i, mask, q);
        }
        return;
    }
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * channels;
        uint8_t *out = y + r * channels;
        for (size_t j = 0; j < channels; j += 16) {
            size_t left = channels - j < 16 ? channels - j : 16;
            __mmask16 mask = (__mmask16)((1u << left) - 1u);
            // Masked-off lanes divide 0 by 1.
            __m512 scale = _mm512_mask_loadu_ps(_mm512_set1_ps(1.0f), mask, scales + j);
            __m512i zero = _mm512_maskz_loadu_epi32(mask, zeros + j);
            __m512i q = quantize16(_mm512_maskz_loadu_ps(mask, row + j), scale, zero, low, high, lo, hi);
            _mm512_mask_cvtepi32_storeu_epi8(out + j, mask, q);
        }
    }
}
#endif

int sq_quantize_f32(int level, const float *x, size_t rows, size_t channels, const float *scales,
                    const int32_t *zeros, int32_t lower, int32_t upper, uint8_t *y) {
    if (channels == 0) return 1;
#if defined(__x86_64__) || defined(_M_X64)
    if (level == SQ_QUANTIZE_LEVEL_AVX512 && sq_cpu_detect().avx512f) {
        quantize_avx512(x, rows, channels, scales, zeros, lower, upper, y);
        return 1;
    }
#endif
    if (level == SQ_QUANTIZE_LEVEL_PORTABLE) {
        const float low = (float)(lower - 256), high = (float)(upper + 256);
        for (size_t r = 0; r < rows; r++) {
            for (size_t j = 0; j < channels; j++) {
                size_t i = r * channels + j;
                y[i] = (uint8_t)quantize_one(x[i], scales[j], zeros[j], low, high, lower, upper);
            }
        }
        return 1;
    }
    return 0;
}

#if defined(__x86_64__) || defined(_M_X64)
__attribute__((target("avx512f"))) static void range_avx512(const float *x, size_t n, float *low, float *high) {
    // vminps(a, b) returns b when either is NaN: with the running value second, NaN elements are skipped.
    __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        lo = _mm512_min_ps(v, lo);
        hi = _mm512_max_ps(v, hi);
    }
    if (i < n) {
        __mmask16 mask = (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(mask, x + i);  // masked lanes read 0, inside the range already
        lo = _mm512_min_ps(v, lo);
        hi = _mm512_max_ps(v, hi);
    }
    *low = _mm512_reduce_min_ps(lo);
    *high = _mm512_reduce_max_ps(hi);
}
#endif

int sq_range_with_zero_f32(int level, const float *x, size_t n, float *low, float *high) {
#if defined(__x86_64__) || defined(_M_X64)
    if (level == SQ_QUANTIZE_LEVEL_AVX512 && sq_cpu_detect().avx512f) {
        range_avx512(x, n, low, high);
        return 1;
    }
#endif
    if (level == SQ_QUANTIZE_LEVEL_PORTABLE) {
        float lo = 0, hi = 0;
        for (size_t i = 0; i < n; i++) {
            if (x[i] < lo) lo = x[i];
            if (x[i] > hi) hi = x[i];
        }
        *low = lo;
        *high = hi;
        return 1;
    }
    return 0;
}
