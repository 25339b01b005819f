// Byte matrix transpose for the integer convolution (planes <-> channels-last). 16 x 16 blocks go
// through four rounds of SSE2 unpacks (8-, 16-, 32-, 64-bit interleaves); SSE2 is part of x86-64, so no
// target attribute is needed. Edges and other CPUs use the plain loop.
#include "CKernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <emmintrin.h>

static void transpose_block(const uint8_t *src, size_t src_stride, uint8_t *dst, size_t dst_stride, __m128i flip) {
    __m128i r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(src + (size_t)i * src_stride)), flip);
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm_unpacklo_epi8(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm_unpackhi_epi8(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 2; j++) {
            r[4 * i + 2 * j] = _mm_unpacklo_epi16(t[4 * i + j], t[4 * i + j + 2]);
            r[4 * i + 2 * j + 1] = _mm_unpackhi_epi16(t[4 * i + j], t[4 * i + j + 2]);
        }
    }
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < 4; j++) {
            t[8 * i + 2 * j] = _mm_unpacklo_epi32(r[8 * i + j], r[8 * i + j + 4]);
            t[8 * i + 2 * j + 1] = _mm_unpackhi_epi32(r[8 * i + j], r[8 * i + j + 4]);
        }
    }
    for (int j = 0; j < 8; j++) {
        r[2 * j] = _mm_unpacklo_epi64(t[j], t[j + 8]);
        r[2 * j + 1] = _mm_unpackhi_epi64(t[j], t[j + 8]);
    }
    for (int i = 0; i < 16; i++) _mm_storeu_si128((__m128i *)(dst + (size_t)i * dst_stride), r[i]);
}
#endif

void sq_transpose_u8(const uint8_t *src, size_t rows, size_t cols, size_t src_stride, uint8_t *dst,
                     size_t dst_stride, uint8_t flip) {
    size_t full_rows = 0, full_cols = 0;
#if defined(__x86_64__) || defined(_M_X64)
    full_rows = rows / 16 * 16;
    full_cols = cols / 16 * 16;
    __m128i vflip = _mm_set1_epi8((char)flip);
    for (size_t i = 0; i < full_rows; i += 16)
        for (size_t j = 0; j < full_cols; j += 16)
            transpose_block(src + i * src_stride + j, src_stride, dst + j * dst_stride + i, dst_stride, vflip);
#endif
    // Right edge (all rows), then bottom edge (the full columns).
    for (size_t i = 0; i < rows; i++)
        for (size_t j = full_cols; j < cols; j++) dst[j * dst_stride + i] = src[i * src_stride + j] ^ flip;
    for (size_t i = full_rows; i < rows; i++)
        for (size_t j = 0; j < full_cols; j++) dst[j * dst_stride + i] = src[i * src_stride + j] ^ flip;
}
