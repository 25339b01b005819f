// float16 <-> float32 conversion of whole buffers with AVX-512F's vcvtph2ps / vcvtps2ph (round to nearest
// even, as IEEE conversion and Swift's Float16(_:) do). Swift's own conversions run a software routine per
// element on x86-64 (the baseline has no F16C), which made every float16 model pay more for the widening
// and narrowing around each operator than for the operator. `ReducedPrecision` keeps the Swift loop as the
// reference twin and as the fallback when these return 0.
#include "CKernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

__attribute__((target("avx512f"))) static void widen_avx512(const uint16_t *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i half = _mm256_loadu_si256((const __m256i *)(x + i));
        _mm512_storeu_ps(y + i, _mm512_cvtph_ps(half));
    }
    if (i < n) {
        // The tail goes through a zeroed copy: a 16-bit masked load would need AVX-512BW.
        __mmask16 mask = (__mmask16)((1u << (n - i)) - 1);
        uint16_t tail[16] = {0};
        for (size_t j = 0; j < n - i; j++) tail[j] = x[i + j];
        _mm512_mask_storeu_ps(y + i, mask, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)tail)));
    }
}

__attribute__((target("avx512f"))) static void narrow_avx512(const float *x, uint16_t *y, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i half = _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_storeu_si256((__m256i *)(y + i), half);
    }
    if (i < n) {
        __mmask16 mask = (__mmask16)((1u << (n - i)) - 1);
        __m256i half = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(mask, x + i),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        uint16_t tail[16];
        _mm256_storeu_si256((__m256i *)tail, half);
        for (size_t j = 0; j < n - i; j++) y[i + j] = tail[j];
    }
}
#endif

int sq_f16_to_f32(const uint16_t *x, float *y, size_t n) {
#if defined(__x86_64__) || defined(_M_X64)
    if (sq_cpu_detect().avx512f) {
        widen_avx512(x, y, n);
        return 1;
    }
#endif
    (void)x, (void)y, (void)n;
    return 0;
}

int sq_f32_to_f16(const float *x, uint16_t *y, size_t n) {
#if defined(__x86_64__) || defined(_M_X64)
    if (sq_cpu_detect().avx512f) {
        narrow_avx512(x, y, n);
        return 1;
    }
#endif
    (void)x, (void)y, (void)n;
    return 0;
}
