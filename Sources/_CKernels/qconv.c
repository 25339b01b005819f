// Integer convolution straight on NCHW planes: output channels are the rows of the product and output
// positions its columns, so every result lands in its output plane, contiguous, with no transpose.
//
//     Y[m][i] = sum over r of W[m][r] * X[r][i]     (r: input channel, or (channel, tap) after im2col)
//
// X is packed once per call into blocks of 64 positions whose groups of four rows sit side by side (four
// bytes per position), which is exactly one vpdpbusd operand: 16 positions x 4 rows. W rows are
// broadcast four bytes at a time. The requantization (and an optional 256-entry code table) runs on each
// tile while it is in registers. The Swift `FusedQConvKernel.runReference` is the reference twin.
#include "CKernels.h"
#include "qconv_internal.h"
#include <string.h>

#define BLOCK 64

static inline size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

/// Width in positions of block `b` (64, the last one rounded up to 16).
static inline size_t block_width(size_t p, size_t b) {
    size_t left = p - b * BLOCK;
    return left >= BLOCK ? BLOCK : round_up(left, 16);
}

size_t sq_qconv_packed_size(size_t k, size_t p) {
    size_t groups = (k + 3) / 4;
    return groups * round_up(p, 16) * 4;
}

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#include <emmintrin.h>

/// Four rows of 16 bytes (zero rows past k) interleaved into 16 positions x 4 bytes.
static inline void pack16(const uint8_t *r0, const uint8_t *r1, const uint8_t *r2, const uint8_t *r3, __m128i flip,
                          uint8_t *out) {
    __m128i a0 = r0 ? _mm_xor_si128(_mm_loadu_si128((const __m128i *)r0), flip) : _mm_setzero_si128();
    __m128i a1 = r1 ? _mm_xor_si128(_mm_loadu_si128((const __m128i *)r1), flip) : _mm_setzero_si128();
    __m128i a2 = r2 ? _mm_xor_si128(_mm_loadu_si128((const __m128i *)r2), flip) : _mm_setzero_si128();
    __m128i a3 = r3 ? _mm_xor_si128(_mm_loadu_si128((const __m128i *)r3), flip) : _mm_setzero_si128();
    __m128i lo01 = _mm_unpacklo_epi8(a0, a1), hi01 = _mm_unpackhi_epi8(a0, a1);
    __m128i lo23 = _mm_unpacklo_epi8(a2, a3), hi23 = _mm_unpackhi_epi8(a2, a3);
    _mm_storeu_si128((__m128i *)out, _mm_unpacklo_epi16(lo01, lo23));
    _mm_storeu_si128((__m128i *)(out + 16), _mm_unpackhi_epi16(lo01, lo23));
    _mm_storeu_si128((__m128i *)(out + 32), _mm_unpacklo_epi16(hi01, hi23));
    _mm_storeu_si128((__m128i *)(out + 48), _mm_unpackhi_epi16(hi01, hi23));
}

/// Four rows of 64 bytes interleaved into 64 positions x 4 bytes: the unpacks work within 128-bit lanes,
/// so a 4 x 4 transpose of lanes puts the positions back in order.
static inline __attribute__((always_inline, target("avx512f,avx512bw"))) void store_interleaved64(
    __m512i a0, __m512i a1, __m512i a2, __m512i a3, uint8_t *out) {
    __m512i lo01 = _mm512_unpacklo_epi8(a0, a1), hi01 = _mm512_unpackhi_epi8(a0, a1);
    __m512i lo23 = _mm512_unpacklo_epi8(a2, a3), hi23 = _mm512_unpackhi_epi8(a2, a3);
    // Lane l of q0..q3 holds positions 16l + 0..3, 4..7, 8..11, 12..15.
    __m512i q0 = _mm512_unpacklo_epi16(lo01, lo23), q1 = _mm512_unpackhi_epi16(lo01, lo23);
    __m512i q2 = _mm512_unpacklo_epi16(hi01, hi23), q3 = _mm512_unpackhi_epi16(hi01, hi23);
    __m512i t0 = _mm512_shuffle_i64x2(q0, q1, 0x44), t1 = _mm512_shuffle_i64x2(q2, q3, 0x44);
    __m512i t2 = _mm512_shuffle_i64x2(q0, q1, 0xEE), t3 = _mm512_shuffle_i64x2(q2, q3, 0xEE);
    _mm512_storeu_si512(out, _mm512_shuffle_i64x2(t0, t1, 0x88));
    _mm512_storeu_si512(out + 64, _mm512_shuffle_i64x2(t0, t1, 0xDD));
    _mm512_storeu_si512(out + 128, _mm512_shuffle_i64x2(t2, t3, 0x88));
    _mm512_storeu_si512(out + 192, _mm512_shuffle_i64x2(t2, t3, 0xDD));
}

/// Four rows of 64 bytes (zero rows past k) interleaved into 64 positions x 4 bytes.
__attribute__((target("avx512f,avx512bw"))) static void pack64(const uint8_t *r0, const uint8_t *r1, const uint8_t *r2,
                                                               const uint8_t *r3, uint8_t flip, uint8_t *out) {
    const __m512i flips = _mm512_set1_epi8((char)flip);
    __m512i a0 = r0 ? _mm512_xor_si512(_mm512_loadu_si512(r0), flips) : _mm512_setzero_si512();
    __m512i a1 = r1 ? _mm512_xor_si512(_mm512_loadu_si512(r1), flips) : _mm512_setzero_si512();
    __m512i a2 = r2 ? _mm512_xor_si512(_mm512_loadu_si512(r2), flips) : _mm512_setzero_si512();
    __m512i a3 = r3 ? _mm512_xor_si512(_mm512_loadu_si512(r3), flips) : _mm512_setzero_si512();
    store_interleaved64(a0, a1, a2, a3, out);
}
#endif

void sq_qconv_pack(int level, const uint8_t *rows, size_t ld, size_t k, size_t p, uint8_t flip, uint8_t *packed,
                   int32_t *sums) {
    size_t groups = (k + 3) / 4, blocks = (p + BLOCK - 1) / BLOCK;
#if defined(__x86_64__) || defined(_M_X64)
    int wide = level >= SQ_QGEMM_LEVEL_AVX512BW && sq_cpu_detect().avx512bw;
#else
    (void)level;
#endif
    for (size_t b = 0; b < blocks; b++) {
        size_t width = block_width(p, b), first = b * BLOCK;
        uint8_t *block = packed + first * 4 * groups;
        for (size_t g = 0; g < groups; g++) {
            uint8_t *out = block + g * width * 4;
            const uint8_t *r[4];
            for (size_t j = 0; j < 4; j++) r[j] = 4 * g + j < k ? rows + (4 * g + j) * ld + first : NULL;
            size_t i = 0;
#if defined(__x86_64__) || defined(_M_X64)
            if (wide && width == BLOCK && first + BLOCK <= p) {
                pack64(r[0], r[1], r[2], r[3], flip, out);
                continue;
            }
            __m128i flips = _mm_set1_epi8((char)flip);
            for (; i + 16 <= width && first + i + 16 <= p; i += 16) {
                pack16(r[0] ? r[0] + i : NULL, r[1] ? r[1] + i : NULL, r[2] ? r[2] + i : NULL, r[3] ? r[3] + i : NULL,
                       flips, out + i * 4);
            }
#endif
            for (; i < width; i++) {
                for (size_t j = 0; j < 4; j++) {
                    out[i * 4 + j] = r[j] && first + i < p ? (uint8_t)(r[j][i] ^ flip) : 0;
                }
            }
        }
    }
    if (sums) {
        memset(sums, 0, p * sizeof(int32_t));
        for (size_t r = 0; r < k; r++) {
            const uint8_t *row = rows + r * ld;
            for (size_t i = 0; i < p; i++) sums[i] += (int32_t)(uint8_t)(row[i] ^ flip);
        }
    }
}

/// The scalar epilogue of one row segment (tails of the AVX2 kernel).
static inline void finish_scalar(const int32_t *acc, size_t count, size_t m, size_t first, const int32_t *offsets,
                                 const int32_t *zero_points, const int32_t *sums, const sq_qrequant *rq, void *y,
                                 size_t ldy) {
    for (size_t i = 0; i < count; i++) {
        uint32_t value = (uint32_t)acc[i] + (uint32_t)offsets[m];
        if (zero_points) value -= (uint32_t)zero_points[m] * (uint32_t)sums[first + i];
        if (rq) {
            // The code table, if any, is applied to the whole tile afterwards.
            ((uint8_t *)y)[m * ldy + first + i] = (uint8_t)sq_requantize_scalar((int32_t)value, rq, m);
        } else {
            ((int32_t *)y)[m * ldy + first + i] = (int32_t)value;
        }
    }
}

#if defined(__x86_64__) || defined(_M_X64)

// MARK: - Code tables

int sq_has_avx512vbmi(void) {
    static int cached = -1;
    if (cached < 0) {
        unsigned int eax, ebx, ecx, edx;
        int has = 0;
        if (sq_cpu_detect().avx512bw && __get_cpuid_max(0, 0) >= 7) {
            __cpuid_count(7, 0, eax, ebx, ecx, edx);
            has = (ecx >> 1) & 1;
        }
        // Benign race: every thread computes the same value.
        cached = has;
    }
    return cached;
}

SQ_TARGET_VBMI static void lookup_vbmi(const uint8_t *table, const uint8_t *x, uint8_t *y, size_t n) {
    sq_table512 t = sq_table512_load(table);
    for (size_t i = 0; i < n; i += 64) {
        size_t left = n - i;
        __mmask64 mask = left >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << left) - 1);
        _mm512_mask_storeu_epi8(y + i, mask, sq_table512_lookup(_mm512_maskz_loadu_epi8(mask, x + i), &t));
    }
}
#endif

static void lookup_scalar(const uint8_t *table, const uint8_t *x, uint8_t *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = table[x[i]];
}

int sq_lookup_u8(int level, const uint8_t *table, const uint8_t *x, uint8_t *y, size_t n) {
    if (level < SQ_QGEMM_LEVEL_AVX2) return 0;
#if defined(__x86_64__) || defined(_M_X64)
    if (level >= SQ_QGEMM_LEVEL_AVX512BW && sq_has_avx512vbmi()) {
        lookup_vbmi(table, x, y, n);
        return 1;
    }
#endif
    lookup_scalar(table, x, y, n);
    return 1;
}

/// Applies a code table to the freshly written rows of a tile.
static inline void apply_table(int level, const sq_qrequant *rq, uint8_t *y, size_t ldy, size_t m, size_t rows,
                               size_t first, size_t count) {
    if (!rq || !rq->table) return;
    for (size_t r = 0; r < rows; r++) {
        uint8_t *row = y + (m + r) * ldy + first;
        sq_lookup_u8(level, rq->table, row, row, count);
    }
}

#if defined(__x86_64__) || defined(_M_X64)

// MARK: - AVX-512 VNNI

#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))
#define VNNI_MR 6
/// Packed activation bytes of a tile of blocks (half of a 48 KiB L1), and the rows of a band: four row tiles.
#define TILE_BYTES (24 * 1024)
#define BAND_ROWS (4 * VNNI_MR)

static inline __attribute__((always_inline)) VNNI_TARGET int32_t load_word(const int8_t *w) {
    int32_t word;
    memcpy(&word, w, 4);
    return word;
}

/// `acc − zero_point · sums[first…]` for 16 positions (count of them real).
static inline __attribute__((always_inline)) VNNI_TARGET __m512i corrected16(__m512i acc, int32_t zero_point,
                                                                            const int32_t *sums, size_t first,
                                                                            size_t count) {
    if (zero_point == 0) return acc;
    __mmask16 mask = count >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << count) - 1u);
    __m512i s = _mm512_maskz_loadu_epi32(mask, sums + first);
    return _mm512_sub_epi32(acc, _mm512_mullo_epi32(s, _mm512_set1_epi32(zero_point)));
}

/// Rows [m_begin, m_end) of one block of `NV` vectors of 16 positions, the accumulators starting from the
/// rows' offsets. The `_table` variants (VBMI) map the codes through the output table in registers; the
/// others leave it to `apply_table`. `narrow` says every row's requantization has the narrow form and
/// packs (`all_narrow`): then full blocks load only those constants.
#define DEFINE_VNNI_BLOCK(NV, NAME, TARGET, USE_TABLE)                                                           \
    static TARGET void NAME(const int8_t *w, size_t ldw, size_t groups, const uint8_t *x, size_t first, size_t p, \
                            size_t m_begin, size_t m_end, const int32_t *offsets, const int32_t *zero_points,    \
                            const int32_t *sums, const sq_qrequant *rq, int narrow, void *y, size_t ldy) {      \
        const size_t stride = (NV) * 64;                                                                         \
        USE_TABLE(sq_table512 tables = sq_table512_load(rq->table);)                                             \
        for (size_t m = m_begin; m < m_end; m += VNNI_MR) {                                                      \
            size_t rows = m_end - m < VNNI_MR ? m_end - m : VNNI_MR;                                             \
            const int8_t *wr[VNNI_MR];                                                                           \
            for (size_t r = 0; r < VNNI_MR; r++) wr[r] = w + (m + (r < rows ? r : rows - 1)) * ldw;             \
            __m512i acc[VNNI_MR][NV];                                                                            \
            for (size_t r = 0; r < VNNI_MR; r++)                                                                 \
                for (size_t v = 0; v < (NV); v++)                                                                \
                    acc[r][v] = _mm512_set1_epi32(offsets[m + (r < rows ? r : rows - 1)]);                       \
            for (size_t g = 0; g < groups; g++) {                                                                \
                __m512i xv[NV];                                                                                  \
                for (size_t v = 0; v < (NV); v++) xv[v] = _mm512_loadu_si512(x + g * stride + v * 64);           \
                for (size_t r = 0; r < VNNI_MR; r++) {                                                           \
                    __m512i a = _mm512_set1_epi32(load_word(wr[r] + 4 * g));                                     \
                    for (size_t v = 0; v < (NV); v++) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], xv[v], a);      \
                }                                                                                                \
            }                                                                                                    \
            size_t count = p - first < (NV) * 16 ? p - first : (NV) * 16;                                        \
            /* Loops of constant trip counts with guards (not breaks), so they unroll and acc stays in registers. */ \
            for (size_t r = 0; r < VNNI_MR; r++) {                                                               \
                if (r >= rows) continue;                                                                         \
                const size_t row = m + r;                                                                        \
                const int32_t zero_point = zero_points ? zero_points[row] : 0;                                   \
                if (!rq) {                                                                                       \
                    for (size_t v = 0; v < (NV); v++) {                                                          \
                        if (v * 16 >= count) continue;                                                           \
                        size_t left = count - v * 16;                                                            \
                        __mmask16 mask = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);       \
                        __m512i value = corrected16(acc[r][v], zero_point, sums, first + v * 16, left);         \
                        _mm512_mask_storeu_epi32((int32_t *)y + row * ldy + first + v * 16, mask, value);       \
                    }                                                                                            \
                    continue;                                                                                    \
                }                                                                                                \
                /* The row's codes gathered in one register: one table lookup and one store for 64. */           \
                __m512i codes = _mm512_setzero_si512();                                                          \
                if ((NV) == 4 && narrow) {                                                                       \
                    sq_rq512n requant = sq_rq512n_load(rq, row, 1);                                              \
                    __m512i values[4];                                                                           \
                    for (size_t v = 0; v < 4; v++)                                                               \
                        values[v] = corrected16(acc[r][v % (NV)], zero_point, sums, first + v * 16,             \
                                                v * 16 < count ? count - v * 16 : 0);                            \
                    codes = sq_rq512_narrow64(values[0], values[1], values[2], values[3], &requant);             \
                } else {                                                                                         \
                    sq_rq512 requant = sq_rq512_load(rq, row);                                                   \
                    for (size_t v = 0; v < (NV); v++) {                                                          \
                        if (v * 16 >= count) continue;                                                           \
                        __m512i value = corrected16(acc[r][v], zero_point, sums, first + v * 16, count - v * 16); \
                        codes = _mm512_mask_broadcast_i32x4(codes, (__mmask16)(0xFu << (4 * v)),                 \
                                                            sq_rq512_bytes16(value, &requant));                  \
                    }                                                                                            \
                }                                                                                                \
                USE_TABLE(codes = sq_table512_lookup(codes, &tables);)                                           \
                __mmask64 mask = count >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << count) - 1);                    \
                _mm512_mask_storeu_epi8((uint8_t *)y + row * ldy + first, mask, codes);                          \
            }                                                                                                    \
            USE_TABLE(continue;)                                                                                 \
            apply_table(SQ_QGEMM_LEVEL_AVX512VNNI, rq, (uint8_t *)y, ldy, m, rows, first, count);               \
        }                                                                                                        \
    }

#define WITH_TABLE(...) __VA_ARGS__
#define WITHOUT_TABLE(...)

DEFINE_VNNI_BLOCK(1, block_vnni_1, VNNI_TARGET, WITHOUT_TABLE)
DEFINE_VNNI_BLOCK(2, block_vnni_2, VNNI_TARGET, WITHOUT_TABLE)
DEFINE_VNNI_BLOCK(3, block_vnni_3, VNNI_TARGET, WITHOUT_TABLE)
DEFINE_VNNI_BLOCK(4, block_vnni_4, VNNI_TARGET, WITHOUT_TABLE)
DEFINE_VNNI_BLOCK(1, block_vnni_table_1, SQ_TARGET_VBMI, WITH_TABLE)
DEFINE_VNNI_BLOCK(2, block_vnni_table_2, SQ_TARGET_VBMI, WITH_TABLE)
DEFINE_VNNI_BLOCK(3, block_vnni_table_3, SQ_TARGET_VBMI, WITH_TABLE)
DEFINE_VNNI_BLOCK(4, block_vnni_table_4, SQ_TARGET_VBMI, WITH_TABLE)

typedef void (*vnni_block_fn)(const int8_t *, size_t, size_t, const uint8_t *, size_t, size_t, size_t, size_t,
                              const int32_t *, const int32_t *, const int32_t *, const sq_qrequant *, int, void *, size_t);

/// Whether every channel of rows [m_begin, m_end) has the narrow requantization and codes that pack
/// (`sq_rq512_narrow64`), checked once per call rather than per row and block.
static int all_narrow(const sq_qrequant *rq, size_t m_begin, size_t m_end) {
    if (!rq) return 0;
    if (!(rq->lower >= 0 && rq->upper <= 255) && !(rq->lower >= -128 && rq->upper <= 127)) return 0;
    if (!rq->per_channel) return sq_rq_is_narrow(rq, 0);
    for (size_t c = m_begin; c < m_end; c++) {
        if (!sq_rq_is_narrow(rq, c)) return 0;
    }
    return 1;
}
static const vnni_block_fn vnni_blocks[2][4] = {
    {block_vnni_1, block_vnni_2, block_vnni_3, block_vnni_4},
    {block_vnni_table_1, block_vnni_table_2, block_vnni_table_3, block_vnni_table_4},
};

// MARK: - AVX2

#define AVX2_MR 4

static inline __attribute__((always_inline)) SQ_TARGET_AVX2 void finish8_avx2(
    __m256i acc, size_t m, size_t first, size_t count, const int32_t *offsets, const int32_t *zero_points,
    const int32_t *sums, const sq_qrequant *rq, void *y, size_t ldy) {
    if (count < 8) {
        int32_t values[8];
        _mm256_storeu_si256((__m256i *)values, acc);
        finish_scalar(values, count, m, first, offsets, zero_points, sums, rq, y, ldy);
        return;
    }
    acc = _mm256_add_epi32(acc, _mm256_set1_epi32(offsets[m]));
    if (zero_points && zero_points[m] != 0) {
        __m256i s = _mm256_loadu_si256((const __m256i *)(sums + first));
        acc = _mm256_sub_epi32(acc, _mm256_mullo_epi32(s, _mm256_set1_epi32(zero_points[m])));
    }
    if (rq) {
        sq_rq256 r = sq_rq256_load(rq, m);
        _mm_storel_epi64((__m128i *)((uint8_t *)y + m * ldy + first), sq_rq256_bytes8(acc, &r));
    } else {
        _mm256_storeu_si256((__m256i *)((int32_t *)y + m * ldy + first), acc);
    }
}

/// Rows [m_begin, m_end) of 16 positions (two vectors of 8) of a block whose groups are `stride` bytes
/// apart. Bytes are split into even and odd words so vpmaddwd multiplies exact 16-bit values.
static SQ_TARGET_AVX2 void tile_avx2(const int8_t *w, size_t ldw, size_t groups, const uint8_t *x, size_t stride,
                                     size_t first, size_t p, size_t m_begin, size_t m_end, const int32_t *offsets,
                                     const int32_t *zero_points, const int32_t *sums, const sq_qrequant *rq, void *y,
                                     size_t ldy) {
    const __m256i low_bytes = _mm256_set1_epi16(0x00FF);
    for (size_t m = m_begin; m < m_end; m += AVX2_MR) {
        size_t rows = m_end - m < AVX2_MR ? m_end - m : AVX2_MR;
        const int8_t *wr[AVX2_MR];
        for (size_t r = 0; r < AVX2_MR; r++) wr[r] = w + (m + (r < rows ? r : rows - 1)) * ldw;
        __m256i acc[AVX2_MR][2];
        for (size_t r = 0; r < AVX2_MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
        for (size_t g = 0; g < groups; g++) {
            __m256i even[2], odd[2];
            for (size_t v = 0; v < 2; v++) {
                __m256i bytes = _mm256_loadu_si256((const __m256i *)(x + g * stride + v * 32));
                even[v] = _mm256_and_si256(bytes, low_bytes);
                odd[v] = _mm256_srli_epi16(bytes, 8);
            }
            for (size_t r = 0; r < AVX2_MR; r++) {
                int32_t word;
                memcpy(&word, wr[r] + 4 * g, 4);
                __m256i a = _mm256_set1_epi32(word);
                __m256i a_even = _mm256_srai_epi16(_mm256_slli_epi16(a, 8), 8), a_odd = _mm256_srai_epi16(a, 8);
                for (size_t v = 0; v < 2; v++) {
                    acc[r][v] = _mm256_add_epi32(acc[r][v], _mm256_add_epi32(_mm256_madd_epi16(even[v], a_even),
                                                                             _mm256_madd_epi16(odd[v], a_odd)));
                }
            }
        }
        for (size_t r = 0; r < rows; r++) {
            for (size_t v = 0; v < 2; v++) {
                size_t start = first + v * 8;
                if (start >= p) break;
                size_t count = p - start < 8 ? p - start : 8;
                finish8_avx2(acc[r][v], m + r, start, count, offsets, zero_points, sums, rq, y, ldy);
            }
        }
        size_t count = p - first < 16 ? p - first : 16;
        apply_table(SQ_QGEMM_LEVEL_AVX2, rq, (uint8_t *)y, ldy, m, rows, first, count);
    }
}
#endif

int sq_qconv_gemm(int level, const int8_t *w, size_t ldw, size_t k, const uint8_t *packed, size_t p, size_t m_begin,
                  size_t m_end, size_t block_begin, size_t block_end, const int32_t *offsets,
                  const int32_t *zero_points, const int32_t *sums, const sq_qrequant *rq, void *y, size_t ldy) {
#if defined(__x86_64__) || defined(_M_X64)
    sq_cpu_features f = sq_cpu_detect();
    size_t groups = (k + 3) / 4;
    int vnni = level >= SQ_QGEMM_LEVEL_AVX512VNNI && f.avx512vnni;
    int avx2 = level >= SQ_QGEMM_LEVEL_AVX2 && f.avx2;
    if (!vnni && !avx2) return 0;
    if (m_begin >= m_end) return 1;
    if (vnni) {
        // Blocks whose packed bytes fit a tile in L1 are run one band of rows at a time across the tile, so
        // a few output rows are written in long runs (which the prefetchers follow) instead of every row
        // 64 bytes per block: shallow products into outputs not in cache are bound by those stores.
        int table = rq && rq->table && sq_has_avx512vbmi(), narrow = all_narrow(rq, m_begin, m_end);
        size_t tile = groups > 0 ? TILE_BYTES / (groups * BLOCK * 4) : 1;  /* K = 0: the sums are the offsets */
        if (tile < 1) tile = 1;
        size_t band = tile > 1 ? BAND_ROWS : m_end - m_begin;
        for (size_t t = block_begin; t < block_end; t += tile) {
            size_t t_end = t + tile < block_end ? t + tile : block_end;
            for (size_t m = m_begin; m < m_end; m += band) {
                size_t m_stop = m + band < m_end ? m + band : m_end;
                for (size_t b = t; b < t_end; b++) {
                    size_t first = b * BLOCK, width = block_width(p, b);
                    vnni_blocks[table][width / 16 - 1](w, ldw, groups, packed + first * 4 * groups, first, p, m, m_stop,
                                                       offsets, zero_points, sums, rq, narrow, y, ldy);
                }
            }
        }
        return 1;
    }
    for (size_t b = block_begin; b < block_end; b++) {
        size_t first = b * BLOCK, width = block_width(p, b);
        const uint8_t *x = packed + first * 4 * groups;
        for (size_t i = 0; i < width && first + i < p; i += 16) {
            tile_avx2(w, ldw, groups, x + i * 4, width * 4, first + i, p, m_begin, m_end, offsets, zero_points, sums, rq,
                      y, ldy);
        }
    }
    return 1;
#else
    (void)level; (void)w; (void)ldw; (void)k; (void)packed; (void)p; (void)m_begin; (void)m_end; (void)block_begin;
    (void)block_end; (void)offsets; (void)zero_points; (void)sums; (void)rq; (void)y; (void)ldy;
    return 0;
#endif
}

// MARK: - Packing straight from the planes

/// Most (tap, output row) runs a 64-position block can meet: beyond this the rows go through
/// `sq_qconv_im2col` and `sq_qconv_pack` instead.
#define WINDOW_RUNS 1024

int sq_qconv_window_packable(int level, const sq_qwindow *g) {
#if defined(__x86_64__) || defined(_M_X64)
    if (level < SQ_QGEMM_LEVEL_AVX512BW || !sq_cpu_detect().avx512bw || g->output_w == 0) return 0;
    if (g->stride_w != 1 && !(g->stride_w == 2 && sq_has_avx512vbmi())) return 0;
    size_t rows_per_block = (BLOCK + g->output_w - 1) / g->output_w + 1;
    return g->kernel_h * g->kernel_w * rows_per_block <= WINDOW_RUNS;
#else
    (void)level; (void)g;
    return 0;
#endif
}

#if defined(__x86_64__) || defined(_M_X64)
/// One (tap, output row) run of a block: the lanes it fills, the address of lane 0 relative to the
/// channel's plane, and for width stride 2 the even source bytes of those lanes in the two 64-byte halves.
typedef struct {
    uint64_t lanes, even_low, even_high;
    ptrdiff_t offset;
} window_run;

/// The runs of a block, per tap (`run_begin[q]...run_begin[q + 1]`): with width stride `stride_w` the
/// positions of one output row read input bytes that far apart, so each (tap, output row) run is one
/// masked load (stride 1) or two (stride 2) whose lanes are the block's positions.
static size_t window_runs(const sq_qwindow *g, size_t first, size_t count, window_run *runs, size_t *run_begin) {
    const size_t taps = g->kernel_h * g->kernel_w;
    const size_t row_first = first / g->output_w, row_end = (first + count - 1) / g->output_w + 1;
    const ptrdiff_t stride = (ptrdiff_t)g->stride_w;
    size_t total = 0;
    for (size_t q = 0; q < taps; q++) {
        run_begin[q] = total;
        size_t i = q / g->kernel_w, j = q % g->kernel_w;
        for (size_t oh = row_first; oh < row_end; oh++) {
            ptrdiff_t ih = (ptrdiff_t)(oh * g->stride_h + i * g->dilation_h) - (ptrdiff_t)g->pad_top;
            if (ih < 0 || ih >= (ptrdiff_t)g->input_h) continue;
            // Lane l is output column l − row_start, which reads input column (l − row_start)·stride + shift.
            ptrdiff_t row_start = (ptrdiff_t)(oh * g->output_w) - (ptrdiff_t)first;
            ptrdiff_t shift = (ptrdiff_t)(j * g->dilation_w) - (ptrdiff_t)g->pad_left;
            ptrdiff_t first_column = shift >= 0 ? 0 : (-shift + stride - 1) / stride;
            ptrdiff_t end_column = (ptrdiff_t)g->input_w - shift <= 0 ? 0 : ((ptrdiff_t)g->input_w - shift - 1) / stride + 1;
            if (end_column > (ptrdiff_t)g->output_w) end_column = (ptrdiff_t)g->output_w;
            ptrdiff_t low = row_start + first_column, high = row_start + end_column;
            if (high > (ptrdiff_t)count) high = (ptrdiff_t)count;
            uint64_t lanes = sq_bit_range(low, high);
            if (!lanes) continue;
            window_run *run = &runs[total++];
            run->lanes = lanes;
            run->offset = ih * (ptrdiff_t)g->input_w - row_start * stride + shift;
            run->even_low = sq_bit_range(2 * low, 2 * high) & 0x5555555555555555ull;
            run->even_high = sq_bit_range(2 * low - 64, 2 * high - 64) & 0x5555555555555555ull;
        }
    }
    run_begin[taps] = total;
    return total;
}

/// One block from its runs; lanes outside every run, or over padding, keep the padding byte. The loads'
/// addresses may lie outside the plane; the masked-off bytes are not read. `LOAD_ROW` fills `v` from the
/// runs of tap q over the plane at `plane`.
#define DEFINE_PACK_WINDOW(NAME, TARGET, LOAD_ROW)                                                               \
    TARGET static void NAME(const uint8_t *x, size_t plane_stride, size_t channels, const sq_qwindow *g,         \
                            uint8_t flip, uint8_t pad, size_t first, size_t count, uint8_t *block) {             \
        const size_t taps = g->kernel_h * g->kernel_w, k = channels * taps, groups = (k + 3) / 4;                \
        const size_t width = block_width(first + count, first / BLOCK);                                          \
        window_run runs[WINDOW_RUNS];                                                                            \
        size_t run_begin[WINDOW_RUNS / 2 + 1];                                                                   \
        window_runs(g, first, count, runs, run_begin);                                                           \
        const __m512i flips = _mm512_set1_epi8((char)flip), fill = _mm512_set1_epi8((char)(pad ^ flip));         \
        const __mmask64 real = count >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << count) - 1);                     \
        uint8_t tail[256];                                                                                       \
        for (size_t gi = 0; gi < groups; gi++) {                                                                 \
            __m512i rows[4];                                                                                     \
            for (size_t t = 0; t < 4; t++) {                                                                     \
                size_t r = 4 * gi + t;                                                                           \
                if (r >= k) {                                                                                    \
                    rows[t] = _mm512_setzero_si512();                                                            \
                    continue;                                                                                    \
                }                                                                                                \
                size_t c = r / taps, q = r % taps;                                                               \
                uintptr_t plane = (uintptr_t)(x + c * plane_stride);                                             \
                __m512i v = fill;                                                                                \
                LOAD_ROW                                                                                         \
                rows[t] = _mm512_maskz_mov_epi8(real, _mm512_xor_si512(v, flips));                               \
            }                                                                                                    \
            uint8_t *out = block + gi * width * 4;                                                               \
            if (width == BLOCK) {                                                                                \
                store_interleaved64(rows[0], rows[1], rows[2], rows[3], out);                                    \
            } else {                                                                                             \
                store_interleaved64(rows[0], rows[1], rows[2], rows[3], tail);                                   \
                memcpy(out, tail, width * 4);                                                                    \
            }                                                                                                    \
        }                                                                                                        \
    }

DEFINE_PACK_WINDOW(pack_window_stride1, __attribute__((target("avx512f,avx512bw"))),
    for (size_t run = run_begin[q]; run < run_begin[q + 1]; run++) {
        v = _mm512_mask_loadu_epi8(v, runs[run].lanes, (const void *)(plane + (uintptr_t)runs[run].offset));
    })

// Stride 2: the even bytes of 128 (two masked loads) gathered by one byte permute.
DEFINE_PACK_WINDOW(pack_window_stride2, __attribute__((target("avx512f,avx512bw,avx512vbmi"))),
    const __m512i evens = _mm512_set_epi8(126, 124, 122, 120, 118, 116, 114, 112, 110, 108, 106, 104, 102, 100, 98, 96,
                                          94, 92, 90, 88, 86, 84, 82, 80, 78, 76, 74, 72, 70, 68, 66, 64,
                                          62, 60, 58, 56, 54, 52, 50, 48, 46, 44, 42, 40, 38, 36, 34, 32,
                                          30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    for (size_t run = run_begin[q]; run < run_begin[q + 1]; run++) {
        const window_run *w = &runs[run];
        uintptr_t at = plane + (uintptr_t)w->offset;
        __m512i low = _mm512_maskz_loadu_epi8(w->even_low, (const void *)at);
        __m512i high = _mm512_maskz_loadu_epi8(w->even_high, (const void *)(at + 64));
        v = _mm512_mask_mov_epi8(v, w->lanes, _mm512_permutex2var_epi8(low, evens, high));
    })
#endif

void sq_qconv_pack_window(int level, const uint8_t *x, size_t plane_stride, size_t channels, const sq_qwindow *g,
                          uint8_t flip, uint8_t pad, size_t block_begin, size_t block_end, uint8_t *packed) {
#if defined(__x86_64__) || defined(_M_X64)
    if (!sq_qconv_window_packable(level, g)) return;
    size_t p = g->output_h * g->output_w, groups = (channels * g->kernel_h * g->kernel_w + 3) / 4;
    for (size_t b = block_begin; b < block_end; b++) {
        size_t first = b * BLOCK, count = p - first < BLOCK ? p - first : BLOCK;
        uint8_t *block = packed + first * 4 * groups;
        if (g->stride_w == 1) {
            pack_window_stride1(x, plane_stride, channels, g, flip, pad, first, count, block);
        } else {
            pack_window_stride2(x, plane_stride, channels, g, flip, pad, first, count, block);
        }
    }
#else
    (void)level; (void)x; (void)plane_stride; (void)channels; (void)g; (void)flip; (void)pad; (void)block_begin;
    (void)block_end; (void)packed;
#endif
}

// MARK: - im2col

void sq_qconv_im2col(const uint8_t *x, size_t plane_stride, size_t channels, const sq_qwindow *g, uint8_t flip,
                     uint8_t pad, uint8_t *rows) {
    size_t positions = g->output_h * g->output_w, plane = g->input_h * g->input_w;
    uint8_t *row = rows;
    for (size_t c = 0; c < channels; c++) {
        const uint8_t *source = x + c * plane_stride;
        for (size_t i = 0; i < g->kernel_h; i++) {
            for (size_t j = 0; j < g->kernel_w; j++, row += positions) {
                // Output columns whose tap lands inside the row: 0 <= ow * stride + shift < input_w.
                ptrdiff_t shift = (ptrdiff_t)(j * g->dilation_w) - (ptrdiff_t)g->pad_left;
                ptrdiff_t sw = (ptrdiff_t)g->stride_w, width = (ptrdiff_t)g->input_w, ow_count = (ptrdiff_t)g->output_w;
                ptrdiff_t begin = shift >= 0 ? 0 : (-shift + sw - 1) / sw;
                ptrdiff_t end = width - shift <= 0 ? 0 : (width - shift - 1) / sw + 1;
                if (end > ow_count) end = ow_count;
                if (begin > end) begin = end;
                for (size_t oh = 0; oh < g->output_h; oh++) {
                    uint8_t *out = row + oh * g->output_w;
                    ptrdiff_t ih = (ptrdiff_t)(oh * g->stride_h + i * g->dilation_h) - (ptrdiff_t)g->pad_top;
                    if (ih < 0 || ih >= (ptrdiff_t)g->input_h) {
                        memset(out, pad, g->output_w);
                        continue;
                    }
                    // Padding runs are a column or two: plain stores beat memset calls.
                    for (ptrdiff_t ow = 0; ow < begin; ow++) out[ow] = pad;
                    for (ptrdiff_t ow = end; ow < ow_count; ow++) out[ow] = pad;
                    const uint8_t *in = source + (size_t)ih * g->input_w;
                    ptrdiff_t ow = begin;
                    if (sw == 1) {
                        for (; ow < end; ow++) out[ow] = in[ow + shift] ^ flip;
                        continue;
                    }
#if defined(__x86_64__) || defined(_M_X64)
                    if (sw == 2) {
                        // Even bytes of 32: mask the odd ones off each word, pack the words back to bytes.
                        const __m128i low = _mm_set1_epi16(0x00FF), flips = _mm_set1_epi8((char)flip);
                        size_t offset = (size_t)ih * g->input_w;
                        for (; ow + 16 <= end && offset + (size_t)(2 * ow + shift) + 32 <= plane; ow += 16) {
                            const uint8_t *from = in + 2 * ow + shift;
                            __m128i a = _mm_and_si128(_mm_loadu_si128((const __m128i *)from), low);
                            __m128i b = _mm_and_si128(_mm_loadu_si128((const __m128i *)(from + 16)), low);
                            _mm_storeu_si128((__m128i *)(out + ow), _mm_xor_si128(_mm_packus_epi16(a, b), flips));
                        }
                    }
#endif
                    for (; ow < end; ow++) out[ow] = in[ow * sw + shift] ^ flip;
                }
            }
        }
    }
}
