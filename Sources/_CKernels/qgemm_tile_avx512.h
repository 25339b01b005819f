// The AVX-512 int8 micro-kernel shared by the AVX-512BW and AVX-512 VNNI levels, which differ only in
// how one group of four k values is multiplied and added. Include once per level after defining:
//   TARGET, MR (rows, 8), NV (16-column vectors, 2 or 3), KERNEL_NAME (the sq_qgemm_kernel to define),
//   b_operand / a_operand (types), and always-inline TARGET functions
//   b_operand prepare_b(const int8_t *group)   one packed group of 16 columns (64 bytes)
//   a_operand prepare_a(int32_t word)           four bytes of one row of A
//   __m512i multiply_add(__m512i acc, a_operand a, b_operand b)   acc + the 16 dot products of 4
// Private to the qgemm_avx512*.c files.
#include <immintrin.h>
#include <string.h>

/// One group of four k values: packed B at byte `offset` of each panel, `bytes` (4, or the tail) of A
/// from column `a_column` of every row.
#define SQ_QGEMM_GROUP_STEP(offset, a_column, bytes)                                         \
    do {                                                                                     \
        b_operand vb[NV];                                                                    \
        _Pragma("clang loop unroll(full)") for (int v = 0; v < NV; v++) {                    \
            if (v < nv) vb[v] = prepare_b(b + (size_t)v * ps + (offset));                   \
        }                                                                                    \
        _Pragma("clang loop unroll(full)") for (int r = 0; r < MR; r++) {                    \
            if (r < rows) {                                                                  \
                int32_t word = 0;                                                            \
                memcpy(&word, a + (size_t)r * lda + (a_column), (bytes));                    \
                a_operand va = prepare_a(word);                                              \
                _Pragma("clang loop unroll(full)") for (int v = 0; v < NV; v++) {            \
                    if (v < nv) acc[r][v] = multiply_add(acc[r][v], va, vb[v]);              \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    } while (0)

static inline __attribute__((always_inline)) TARGET void tile(
    const int rows, const int nv, const uint8_t *a, size_t lda, const int8_t *b, size_t ps, size_t kc, int32_t *c,
    size_t ldc, size_t cols, int accumulate) {
    __m512i acc[MR][NV];
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) {
#pragma clang loop unroll(full)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_si512();
    }
    const size_t groups = kc / 4, tail = kc & 3;
    for (size_t g = 0; g < groups; g++) SQ_QGEMM_GROUP_STEP(g * SQ_QGEMM_GROUP_BYTES, 4 * g, 4);
    // The last, partial group reads only the tail bytes of A; packed B is zero past k.
    if (tail) SQ_QGEMM_GROUP_STEP(groups * SQ_QGEMM_GROUP_BYTES, 4 * groups, tail);

    __mmask16 masks[NV];
#pragma clang loop unroll(full)
    for (int v = 0; v < NV; v++) {
        size_t left = cols > (size_t)v * 16 ? cols - (size_t)v * 16 : 0;
        masks[v] = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
    }
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) {
        if (r < rows) {
            int32_t *crow = c + (size_t)r * ldc;
#pragma clang loop unroll(full)
            for (int v = 0; v < NV; v++) {
                if (v < nv) {
                    __m512i value = acc[r][v];
                    if (accumulate) value = _mm512_add_epi32(value, _mm512_maskz_loadu_epi32(masks[v], crow + 16 * v));
                    _mm512_mask_storeu_epi32(crow + 16 * v, masks[v], value);
                }
            }
        }
    }
}

#define SQ_QGEMM_ARGS a, lda, b, ps, kc, c, ldc, cols, accumulate
#define SQ_QGEMM_ROWS(R)                                                     \
    case R:                                                                  \
        if (nv == 1) tile(R, 1, SQ_QGEMM_ARGS);                              \
        else if (nv == 2) tile(R, 2, SQ_QGEMM_ARGS);                         \
        else tile(R, NV, SQ_QGEMM_ARGS);                                     \
        break;

static TARGET void tile_any(const uint8_t *a, size_t lda, const int8_t *b, size_t ps, size_t kc, int32_t *c,
                            size_t ldc, size_t rows, size_t cols, int accumulate) {
    // Only the panels the columns touch are read: the next one may not exist.
    int nv = (int)((cols + 15) / 16);
    switch (rows) {
    SQ_QGEMM_ROWS(1) SQ_QGEMM_ROWS(2) SQ_QGEMM_ROWS(3) SQ_QGEMM_ROWS(4)
    SQ_QGEMM_ROWS(5) SQ_QGEMM_ROWS(6) SQ_QGEMM_ROWS(7)
    default: SQ_QGEMM_ROWS(MR)
    }
}

const sq_qgemm_kernel KERNEL_NAME = {MR, NV * SQ_QGEMM_PANEL, tile_any};
