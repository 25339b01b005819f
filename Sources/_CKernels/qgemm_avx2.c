// AVX2 int8 micro-kernel: up to 4 rows x 16 columns (one packed panel, two YMM halves of 8 columns).
// As on AVX-512BW, vpmaddubsw would saturate with full-range operands, so bytes are widened to int16
// and multiplied with vpmaddwd: even bytes of a group (k = 4g, 4g+2) in one multiply, odd in another.
#include "CKernels.h"
#include "qgemm_internal.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <string.h>

#define MR 4
#define TARGET __attribute__((target("avx2")))

/// One group of four k values over the panel's 16 columns: `bytes` (4, or the tail) of A per row.
#define GROUP_STEP(offset, a_column, bytes)                                                               \
    do {                                                                                                  \
        __m256i lo = _mm256_loadu_si256((const __m256i *)(b + (offset)));                                 \
        __m256i hi = _mm256_loadu_si256((const __m256i *)(b + (offset) + 32));                            \
        __m256i lo_even = _mm256_srai_epi16(_mm256_slli_epi16(lo, 8), 8), lo_odd = _mm256_srai_epi16(lo, 8); \
        __m256i hi_even = _mm256_srai_epi16(_mm256_slli_epi16(hi, 8), 8), hi_odd = _mm256_srai_epi16(hi, 8); \
        _Pragma("clang loop unroll(full)") for (int r = 0; r < MR; r++) {                                 \
            if (r < rows) {                                                                               \
                int32_t word = 0;                                                                         \
                memcpy(&word, a + (size_t)r * lda + (a_column), (bytes));                                 \
                __m256i x = _mm256_set1_epi32(word);                                                      \
                __m256i even = _mm256_and_si256(x, low_bytes), odd = _mm256_srli_epi16(x, 8);             \
                acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_add_epi32(_mm256_madd_epi16(even, lo_even), \
                                                                         _mm256_madd_epi16(odd, lo_odd)));  \
                acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_add_epi32(_mm256_madd_epi16(even, hi_even), \
                                                                         _mm256_madd_epi16(odd, hi_odd)));  \
            }                                                                                             \
        }                                                                                                 \
    } while (0)

static inline __attribute__((always_inline)) TARGET void tile(
    const int rows, const uint8_t *a, size_t lda, const int8_t *b, size_t kc, int32_t *c, size_t ldc, size_t cols,
    int accumulate) {
    __m256i acc[MR][2];
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    const __m256i low_bytes = _mm256_set1_epi16(0x00FF);
    const size_t groups = kc / 4, tail = kc & 3;
    for (size_t g = 0; g < groups; g++) GROUP_STEP(g * SQ_QGEMM_GROUP_BYTES, 4 * g, 4);
    // The last, partial group reads only the tail bytes of A; packed B is zero past k.
    if (tail) GROUP_STEP(groups * SQ_QGEMM_GROUP_BYTES, 4 * groups, tail);

    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i masks[2];
    for (int v = 0; v < 2; v++) {
        int left = (int)cols - 8 * v;
        masks[v] = _mm256_cmpgt_epi32(_mm256_set1_epi32(left < 0 ? 0 : left), lane);
    }
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) {
        if (r < rows) {
            int32_t *crow = c + (size_t)r * ldc;
            for (int v = 0; v < 2; v++) {
                __m256i value = acc[r][v];
                if (accumulate) value = _mm256_add_epi32(value, _mm256_maskload_epi32(crow + 8 * v, masks[v]));
                _mm256_maskstore_epi32(crow + 8 * v, masks[v], value);
            }
        }
    }
}

static TARGET void tile_any(const uint8_t *a, size_t lda, const int8_t *b, size_t ps, size_t kc, int32_t *c,
                            size_t ldc, size_t rows, size_t cols, int accumulate) {
    (void)ps;  // one panel per tile
    switch (rows) {
    case 1: tile(1, a, lda, b, kc, c, ldc, cols, accumulate); break;
    case 2: tile(2, a, lda, b, kc, c, ldc, cols, accumulate); break;
    case 3: tile(3, a, lda, b, kc, c, ldc, cols, accumulate); break;
    default: tile(MR, a, lda, b, kc, c, ldc, cols, accumulate); break;
    }
}

const sq_qgemm_kernel sq_qgemm_kernel_avx2 = {MR, SQ_QGEMM_PANEL, tile_any};

#endif
