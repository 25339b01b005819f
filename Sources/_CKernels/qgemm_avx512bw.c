// AVX-512BW int8 micro-kernel (CPUs without VNNI): up to 8 rows x 32 columns. vpmaddubsw would saturate
// its int16 pair sums with full-range uint8 x int8 (255 * 127 * 2 > 32767), so both operands are widened
// to int16 and multiplied with vpmaddwd, whose pair sums (at most 2 * 255 * 128) fit int32 exactly:
// even bytes of a group (k = 4g, 4g+2) in one multiply, odd bytes (4g+1, 4g+3) in another.
#include "CKernels.h"
#include "qgemm_internal.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#define MR 8
#define NV 2
#define TARGET __attribute__((target("avx512f,avx512bw")))
#define KERNEL_NAME sq_qgemm_kernel_avx512bw

/// One packed group as int16 words: `even` holds B[4g][c], B[4g+2][c] and `odd` B[4g+1][c], B[4g+3][c].
typedef struct { __m512i even, odd; } b_operand;
/// Four bytes of A zero-extended the same way.
typedef struct { __m512i even, odd; } a_operand;

static inline __attribute__((always_inline)) TARGET b_operand prepare_b(const int8_t *group) {
    __m512i bytes = _mm512_loadu_si512(group);
    b_operand b = {_mm512_srai_epi16(_mm512_slli_epi16(bytes, 8), 8), _mm512_srai_epi16(bytes, 8)};
    return b;
}

static inline __attribute__((always_inline)) TARGET a_operand prepare_a(int32_t word) {
    __m512i bytes = _mm512_set1_epi32(word);
    a_operand a = {_mm512_and_si512(bytes, _mm512_set1_epi16(0x00FF)), _mm512_srli_epi16(bytes, 8)};
    return a;
}

static inline __attribute__((always_inline)) TARGET __m512i multiply_add(__m512i acc, a_operand a, b_operand b) {
    return _mm512_add_epi32(acc, _mm512_add_epi32(_mm512_madd_epi16(a.even, b.even), _mm512_madd_epi16(a.odd, b.odd)));
}

#include "qgemm_tile_avx512.h"

#endif
