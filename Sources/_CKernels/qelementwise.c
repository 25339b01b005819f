// Quantized Add and Mul between DequantizeLinear and QuantizeLinear, on codes: each operand is
// dequantized with DequantizeLinear's float32 arithmetic, combined with one float32 add or multiply,
// divided by the output scale and rounded half to even as QuantizeLinear does, so the result equals the
// unfused operators bit for bit. The operations are the vector forms of exactly those float32 steps,
// written as intrinsics (never contracted into fused multiply-adds). The Swift loop of
// `FusedQBinaryKernel` is the reference twin.
#include "CKernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <string.h>

uint64_t sq_sum_u8(const uint8_t *x, size_t n, uint8_t flip) {
    // psadbw against zero adds eight bytes into each 64-bit half.
    const __m128i flips = _mm_set1_epi8((char)flip), zero = _mm_setzero_si128();
    __m128i total = _mm_setzero_si128();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i bytes = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(x + i)), flips);
        total = _mm_add_epi64(total, _mm_sad_epu8(bytes, zero));
    }
    uint64_t sum = (uint64_t)_mm_cvtsi128_si64(total) + (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(total, total));
    for (; i < n; i++) sum += (uint8_t)(x[i] ^ flip);
    return sum;
}

/// 1.5 * 2^23: adding it to |v| < 2^22 leaves round_half_even(v) in the low mantissa bits.
#define ROUNDING_MAGIC 12582912.0f
#define ROUNDING_BITS 0x4B400000

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl")))

static inline __attribute__((always_inline)) AVX512_TARGET __m512 dequantize16(__m128i bytes, int is_signed,
                                                                              __m512i zero, __m512 scale) {
    __m512i codes = is_signed ? _mm512_cvtepi8_epi32(bytes) : _mm512_cvtepu8_epi32(bytes);
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(codes, zero)), scale);
}

AVX512_TARGET static void binary_avx512(int multiply, const uint8_t *a, const uint8_t *b, size_t b_step, size_t n,
                                        const sq_qbinary *p, uint8_t *y) {
    const __m512i za = _mm512_set1_epi32(p->a_zero), zb = _mm512_set1_epi32(p->b_zero);
    const __m512 sa = _mm512_set1_ps(p->a_scale), sb = _mm512_set1_ps(p->b_scale), sy = _mm512_set1_ps(p->y_scale);
    const __m512 low = _mm512_set1_ps((float)p->y_lower - (float)p->y_zero - 1);
    const __m512 high = _mm512_set1_ps((float)p->y_upper - (float)p->y_zero + 1);
    const __m512 magic = _mm512_set1_ps(ROUNDING_MAGIC);
    const __m512i bits = _mm512_set1_epi32(ROUNDING_BITS), zy = _mm512_set1_epi32(p->y_zero);
    const __m512i lower = _mm512_set1_epi32(p->y_lower), upper = _mm512_set1_epi32(p->y_upper);
    __m512 constant = _mm512_setzero_ps();
    if (b_step == 0) constant = dequantize16(_mm_set1_epi8((char)b[0]), p->b_signed, zb, sb);
    for (size_t i = 0; i < n; i += 16) {
        size_t left = n - i;
        __mmask16 mask = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
        __m512 x = dequantize16(_mm_maskz_loadu_epi8(mask, a + i), p->a_signed, za, sa);
        __m512 w = b_step ? dequantize16(_mm_maskz_loadu_epi8(mask, b + i), p->b_signed, zb, sb) : constant;
        __m512 v = _mm512_div_ps(multiply ? _mm512_mul_ps(x, w) : _mm512_add_ps(x, w), sy);
        // max returns its second operand for NaN: NaN goes to the low end, as in the reference.
        __m512 bounded = _mm512_min_ps(_mm512_max_ps(v, low), high);
        __m512i code = _mm512_sub_epi32(_mm512_castps_si512(_mm512_add_ps(bounded, magic)), bits);
        code = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(code, zy), lower), upper);
        _mm_mask_storeu_epi8(y + i, mask, _mm512_cvtepi32_epi8(code));
    }
}

static inline __attribute__((always_inline, target("avx2"))) __m256 dequantize8(__m128i bytes, int is_signed,
                                                                               __m256i zero, __m256 scale) {
    __m256i codes = is_signed ? _mm256_cvtepi8_epi32(bytes) : _mm256_cvtepu8_epi32(bytes);
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(codes, zero)), scale);
}

__attribute__((target("avx2"))) static void binary_avx2(int multiply, const uint8_t *a, const uint8_t *b, size_t b_step,
                                                        size_t n, const sq_qbinary *p, uint8_t *y) {
    const __m256i za = _mm256_set1_epi32(p->a_zero), zb = _mm256_set1_epi32(p->b_zero);
    const __m256 sa = _mm256_set1_ps(p->a_scale), sb = _mm256_set1_ps(p->b_scale), sy = _mm256_set1_ps(p->y_scale);
    const __m256 low = _mm256_set1_ps((float)p->y_lower - (float)p->y_zero - 1);
    const __m256 high = _mm256_set1_ps((float)p->y_upper - (float)p->y_zero + 1);
    const __m256 magic = _mm256_set1_ps(ROUNDING_MAGIC);
    const __m256i bits = _mm256_set1_epi32(ROUNDING_BITS), zy = _mm256_set1_epi32(p->y_zero);
    const __m256i lower = _mm256_set1_epi32(p->y_lower), upper = _mm256_set1_epi32(p->y_upper);
    // The low byte of each int32 lane, gathered into the low 4 bytes of each 128-bit half.
    const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    __m256 constant = _mm256_setzero_ps();
    if (b_step == 0) constant = dequantize8(_mm_set1_epi8((char)b[0]), p->b_signed, zb, sb);
    for (size_t i = 0; i < n; i += 8) {
        size_t count = n - i < 8 ? n - i : 8;
        uint8_t left[8] = {0}, right[8] = {0}, out[8];
        memcpy(left, a + i, count);
        if (b_step) memcpy(right, b + i, count);
        __m256 x = dequantize8(_mm_loadl_epi64((const __m128i *)left), p->a_signed, za, sa);
        __m256 w = b_step ? dequantize8(_mm_loadl_epi64((const __m128i *)right), p->b_signed, zb, sb) : constant;
        __m256 v = _mm256_div_ps(multiply ? _mm256_mul_ps(x, w) : _mm256_add_ps(x, w), sy);
        __m256 bounded = _mm256_min_ps(_mm256_max_ps(v, low), high);
        __m256i code = _mm256_sub_epi32(_mm256_castps_si256(_mm256_add_ps(bounded, magic)), bits);
        code = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(code, zy), lower), upper);
        __m256i picked = _mm256_shuffle_epi8(code, pick);
        uint32_t low4 = (uint32_t)_mm256_extract_epi32(picked, 0), high4 = (uint32_t)_mm256_extract_epi32(picked, 4);
        memcpy(out, &low4, 4);
        memcpy(out + 4, &high4, 4);
        memcpy(y + i, out, count);
    }
}

int sq_qbinary_u8(int level, int multiply, const uint8_t *a, const uint8_t *b, size_t b_step, size_t n,
                  const sq_qbinary *p, uint8_t *y) {
    sq_cpu_features f = sq_cpu_detect();
    if (level >= SQ_QGEMM_LEVEL_AVX512BW && f.avx512bw) {
        if (n) binary_avx512(multiply, a, b, b_step, n, p, y);
        return 1;
    }
    if (level >= SQ_QGEMM_LEVEL_AVX2 && f.avx2) {
        if (n) binary_avx2(multiply, a, b, b_step, n, p, y);
        return 1;
    }
    return 0;
}

#else
uint64_t sq_sum_u8(const uint8_t *x, size_t n, uint8_t flip) {
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) sum += (uint8_t)(x[i] ^ flip);
    return sum;
}

int sq_qbinary_u8(int level, int multiply, const uint8_t *a, const uint8_t *b, size_t b_step, size_t n,
                  const sq_qbinary *p, uint8_t *y) {
    (void)level; (void)multiply; (void)a; (void)b; (void)b_step; (void)n; (void)p; (void)y;
    return 0;
}
#endif
