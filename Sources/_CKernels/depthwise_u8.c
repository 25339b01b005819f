// Depthwise integer convolution rows: uint8 inputs (already padded with the zero point) times int32
// tap weights (already minus their zero point), summed per output in wrapping int32. The Swift loop in
// IntegerConvolution+GEMM.swift is the reference twin.
#include "CKernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

/// Loads 16 outputs' inputs for one tap as int32 lanes: bytes x[0], x[stride], ..., of which `count`
/// are wanted (the rest read as 0 and are never stored).
static inline __attribute__((always_inline, target("avx512f,avx512bw"))) __m512i load16(const uint8_t *x, size_t stride,
                                                                                      size_t count) {
    if (stride == 1) {
        __mmask64 mask = (__mmask64)((1ull << count) - 1u);
        return _mm512_cvtepu8_epi32(_mm512_castsi512_si128(_mm512_maskz_loadu_epi8(mask, x)));
    }
    // Stride 2: 32 bytes as 16 words per 32-bit lane pair; the low word of each lane is the even byte.
    size_t bytes = 2 * count - 1;
    __mmask64 mask = (__mmask64)((1ull << bytes) - 1u);
    __m512i words = _mm512_cvtepu8_epi16(_mm512_castsi512_si256(_mm512_maskz_loadu_epi8(mask, x)));
    return _mm512_and_si512(words, _mm512_set1_epi32(0xFFFF));
}

__attribute__((target("avx512f,avx512bw"))) static void row_avx512(const uint8_t *x, size_t row_step, size_t kernel_h,
                                                                   size_t kernel_w, size_t stride, size_t dilation,
                                                                   const int32_t *w, size_t width, int32_t *acc) {
    for (size_t o = 0; o < width; o += 16) {
        size_t count = width - o < 16 ? width - o : 16;
        __m512i sum = _mm512_setzero_si512();
        for (size_t i = 0; i < kernel_h; i++) {
            for (size_t j = 0; j < kernel_w; j++) {
                __m512i values = load16(x + i * row_step + o * stride + j * dilation, stride, count);
                sum = _mm512_add_epi32(sum, _mm512_mullo_epi32(values, _mm512_set1_epi32(w[i * kernel_w + j])));
            }
        }
        _mm512_mask_storeu_epi32(acc + o, count >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << count) - 1u), sum);
    }
}

__attribute__((target("avx2"))) static void row_avx2(const uint8_t *x, size_t row_step, size_t kernel_h, size_t kernel_w,
                                                     size_t dilation, const int32_t *w, size_t width, int32_t *acc) {
    size_t o = 0;
    for (; o + 8 <= width; o += 8) {
        __m256i sum = _mm256_setzero_si256();
        for (size_t i = 0; i < kernel_h; i++) {
            for (size_t j = 0; j < kernel_w; j++) {
                __m128i bytes = _mm_loadl_epi64((const __m128i *)(x + i * row_step + o + j * dilation));
                sum = _mm256_add_epi32(sum, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(bytes), _mm256_set1_epi32(w[i * kernel_w + j])));
            }
        }
        _mm256_storeu_si256((__m256i *)(acc + o), sum);
    }
    for (; o < width; o++) {
        uint32_t sum = 0;
        for (size_t i = 0; i < kernel_h; i++)
            for (size_t j = 0; j < kernel_w; j++) sum += (uint32_t)w[i * kernel_w + j] * x[i * row_step + o + j * dilation];
        acc[o] = (int32_t)sum;
    }
}

int sq_depthwise_row_u8(int level, const uint8_t *x, size_t row_step, size_t kernel_h, size_t kernel_w, size_t stride,
                        size_t dilation, const int32_t *w, size_t width, int32_t *acc) {
    sq_cpu_features f = sq_cpu_detect();
    if (level >= SQ_QGEMM_LEVEL_AVX512BW && f.avx512bw && (stride == 1 || stride == 2)) {
        row_avx512(x, row_step, kernel_h, kernel_w, stride, dilation, w, width, acc);
        return 1;
    }
    if (level >= SQ_QGEMM_LEVEL_AVX2 && f.avx2 && stride == 1) {
        row_avx2(x, row_step, kernel_h, kernel_w, dilation, w, width, acc);
        return 1;
    }
    return 0;
}

#else
int sq_depthwise_row_u8(int level, const uint8_t *x, size_t row_step, size_t kernel_h, size_t kernel_w, size_t stride,
                        size_t dilation, const int32_t *w, size_t width, int32_t *acc) {
    (void)level; (void)x; (void)row_step; (void)kernel_h; (void)kernel_w; (void)stride; (void)dilation; (void)w;
    (void)width; (void)acc;
    return 0;
}
#endif
