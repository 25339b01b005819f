// Private to the NCHW integer convolution files (qconv.c, depthwise_u8.c): the fixed-point requantization
// of int32 accumulators to 8-bit codes, vectorised, bit for bit the Swift `ColumnRequantization`:
//
//     p = acc · mantissa                                   (int64)
//     q = clamp(((p + rounding + (p < 0 ? negative_mask : 0)) >> shift) + zero_point, lower, upper)
//
// then, when a table is given, q = table[q & 0xFF]. Lanes hold consecutive positions of one output
// channel, so the constants are broadcast once per channel.
#ifndef SWIFTQUANT_QCONV_INTERNAL_H
#define SWIFTQUANT_QCONV_INTERNAL_H

#include "CKernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#define SQ_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
#define SQ_TARGET_AVX2 __attribute__((target("avx2")))

/// What the narrow requantization of a channel needs (see `sq_rq512_scaled16`): 2·mantissa and 2^shift
/// (64-bit lanes), shift − 31, the index that gathers the high dwords of even and odd 64-bit products in
/// lane order; for `sq_rq512_narrow64`, whether the codes pack with saturating packs (1 when
/// lower...upper lies in 0...255, 2 when in −128...127, else 0), the zero point as int16 lanes, the bounds
/// as byte lanes, and the dword order that undoes the in-lane interleaving of the packs.
typedef struct {
    __m512i mantissa2, rounding2, high_dwords;
    __m128i shift_high;
    int pack;
    __m512i zero16, lower8, upper8, lane_order;
} sq_rq512n;

/// Whether channel c's requantization has the narrow form: a shift of 31...62 (a multiplier below 1)
/// with ties away from zero and a mantissa below 2^31, so every scaled value fits int32.
static inline int sq_rq_is_narrow(const sq_qrequant *rq, size_t c) {
    int64_t shift = rq->shift[c], mantissa = rq->mantissa[c];
    return shift >= 31 && shift <= 62 && rq->negative_mask[c] == -1 && rq->rounding[c] == (int64_t)1 << (shift - 1)
        && mantissa >= 0 && mantissa < ((int64_t)1 << 31);
}

/// The narrow constants of a channel (`narrow` as `sq_rq_is_narrow` says; 0 gives unused zeros).
static inline __attribute__((always_inline)) SQ_TARGET_AVX512 sq_rq512n sq_rq512n_load(const sq_qrequant *rq,
                                                                                        size_t channel, int narrow) {
    size_t c = rq->per_channel ? channel : 0;
    int64_t shift = rq->shift[c];
    sq_rq512n r;
    r.mantissa2 = _mm512_set1_epi64(2 * rq->mantissa[c]);
    r.rounding2 = _mm512_set1_epi64(narrow ? (int64_t)1 << shift : 0);
    r.high_dwords = _mm512_setr_epi32(1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
    r.shift_high = _mm_cvtsi64_si128(narrow ? shift - 31 : 0);
    r.pack = rq->lower >= 0 && rq->upper <= 255 ? 1 : (rq->lower >= -128 && rq->upper <= 127 ? 2 : 0);
    r.zero16 = _mm512_set1_epi16((short)rq->zero_point);
    r.lower8 = _mm512_set1_epi8((char)rq->lower);
    r.upper8 = _mm512_set1_epi8((char)rq->upper);
    r.lane_order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return r;
}

/// One channel's requantization constants in AVX-512 registers.
typedef struct {
    __m512i mantissa, rounding, negative_mask, zero_point, lower, upper;
    /// The clamp moved before the zero point (lower - z, upper - z) and the zero point, as int32 lanes.
    __m512i lower32, upper32, zero32;
    __m128i shift;
    /// Whether `sq_rq_is_narrow`, and the narrow form's constants.
    int narrow;
    sq_rq512n n;
} sq_rq512;

static inline __attribute__((always_inline)) SQ_TARGET_AVX512 sq_rq512 sq_rq512_load(const sq_qrequant *rq,
                                                                                      size_t channel) {
    size_t c = rq->per_channel ? channel : 0;
    sq_rq512 r;
    r.mantissa = _mm512_set1_epi64(rq->mantissa[c]);
    r.rounding = _mm512_set1_epi64(rq->rounding[c]);
    r.negative_mask = _mm512_set1_epi64(rq->negative_mask[c]);
    r.shift = _mm_cvtsi64_si128(rq->shift[c]);
    r.zero_point = _mm512_set1_epi64(rq->zero_point);
    r.lower = _mm512_set1_epi64(rq->lower);
    r.upper = _mm512_set1_epi64(rq->upper);
    r.lower32 = _mm512_set1_epi32(rq->lower - rq->zero_point);
    r.upper32 = _mm512_set1_epi32(rq->upper - rq->zero_point);
    r.zero32 = _mm512_set1_epi32(rq->zero_point);
    r.narrow = sq_rq_is_narrow(rq, c);
    r.n = sq_rq512n_load(rq, channel, r.narrow);
    return r;
}

/// The narrow requantization before the zero point and clamp, for sixteen accumulators. Ties round away
/// from zero, so (acc·M + 2^(s−1)) >> s = sign(acc) · ((|acc|·M + 2^(s−1)) >> s); doubling both terms
/// puts bits s−31... of the unsigned magnitude sum in the high dword (|acc| ≤ 2^31 and 2M < 2^32, so
/// the sum stays below 2^64), which one permute gathers and one 32-bit shift finishes.
static inline __attribute__((always_inline)) SQ_TARGET_AVX512 __m512i sq_rq512_scaled16(__m512i acc, const sq_rq512n *r) {
    __m512i magnitude = _mm512_abs_epi32(acc);  // |INT32_MIN| reads as 2^31 unsigned
    __m512i even = _mm512_add_epi64(_mm512_mul_epu32(magnitude, r->mantissa2), r->rounding2);
    __m512i odd = _mm512_add_epi64(_mm512_mul_epu32(_mm512_srli_epi64(magnitude, 32), r->mantissa2), r->rounding2);
    __m512i q = _mm512_srl_epi32(_mm512_permutex2var_epi32(even, r->high_dwords, odd), r->shift_high);
    return _mm512_mask_sub_epi32(q, _mm512_movepi32_mask(acc), _mm512_setzero_si512(), q);
}

/// Sixteen accumulators to sixteen code bytes when `narrow`: the scaled values fit int32, so the clamp
/// runs on int32 lanes before the zero point is added (so nothing wraps).
static inline __attribute__((always_inline)) SQ_TARGET_AVX512 __m128i sq_rq512_narrow16(__m512i acc, const sq_rq512 *r) {
    __m512i q = _mm512_min_epi32(_mm512_max_epi32(sq_rq512_scaled16(acc, &r->n), r->lower32), r->upper32);
    return _mm512_cvtepi32_epi8(_mm512_add_epi32(q, r->zero32));
}

/// Sixty-four accumulators (four vectors of consecutive positions) to 64 code bytes when `narrow` and
/// `pack`: saturating packs to int16, a saturating add of the zero point, a saturating pack to bytes
/// and the byte clamp give clamp(q + z, lower, upper) exactly, since every saturation happens outside
/// lower...upper and on the same side. The packs interleave within 128-bit lanes; one permute restores
/// the order.
static inline __attribute__((always_inline)) SQ_TARGET_AVX512 __m512i sq_rq512_narrow64(__m512i a, __m512i b, __m512i c,
                                                                                      __m512i d, const sq_rq512n *r) {
    __m512i ab = _mm512_adds_epi16(_mm512_packs_epi32(sq_rq512_scaled16(a, r), sq_rq512_scaled16(b, r)), r->zero16);
    __m512i cd = _mm512_adds_epi16(_mm512_packs_epi32(sq_rq512_scaled16(c, r), sq_rq512_scaled16(d, r)), r->zero16);
    __m512i bytes = r->pack == 1
        ? _mm512_max_epu8(_mm512_min_epu8(_mm512_packus_epi16(ab, cd), r->upper8), r->lower8)
        : _mm512_max_epi8(_mm512_min_epi8(_mm512_packs_epi16(ab, cd), r->upper8), r->lower8);
    return _mm512_permutexvar_epi32(r->lane_order, bytes);
}

/// Eight int64 lanes (sign-extended accumulators) to clamped codes, still int64.
static inline __attribute__((always_inline)) SQ_TARGET_AVX512 __m512i sq_rq512_codes8(__m512i acc, const sq_rq512 *r) {
    // vpmuldq: the low 32 bits of each lane, signed; the mantissa is below 2^31.
    __m512i p = _mm512_mul_epi32(acc, r->mantissa);
    __m512i t = _mm512_add_epi64(_mm512_add_epi64(p, r->rounding),
                                 _mm512_and_si512(_mm512_srai_epi64(p, 63), r->negative_mask));
    __m512i q = _mm512_add_epi64(_mm512_sra_epi64(t, r->shift), r->zero_point);
    return _mm512_min_epi64(_mm512_max_epi64(q, r->lower), r->upper);
}

/// Sixteen accumulators to sixteen code bytes.
static inline __attribute__((always_inline)) SQ_TARGET_AVX512 __m128i sq_rq512_bytes16(__m512i acc, const sq_rq512 *r) {
    if (r->narrow) return sq_rq512_narrow16(acc, r);
    __m512i low = sq_rq512_codes8(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(acc)), r);
    __m512i high = sq_rq512_codes8(_mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(acc, 1)), r);
    __m512i words = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(low)), _mm512_cvtepi64_epi32(high), 1);
    return _mm512_cvtepi32_epi8(words);
}

#define SQ_TARGET_VBMI __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx512vbmi")))

/// A 256-byte code table in four registers: vpermi2b picks from two of them by the low seven bits of each
/// index byte, the high bit chooses the pair.
typedef struct {
    __m512i t0, t1, t2, t3;
} sq_table512;

static inline __attribute__((always_inline)) SQ_TARGET_VBMI sq_table512 sq_table512_load(const uint8_t *table) {
    sq_table512 t;
    t.t0 = _mm512_loadu_si512(table);
    t.t1 = _mm512_loadu_si512(table + 64);
    t.t2 = _mm512_loadu_si512(table + 128);
    t.t3 = _mm512_loadu_si512(table + 192);
    return t;
}

/// table[byte] for each of 64 bytes.
static inline __attribute__((always_inline)) SQ_TARGET_VBMI __m512i sq_table512_lookup(__m512i index, const sq_table512 *t) {
    __m512i low = _mm512_permutex2var_epi8(t->t0, index, t->t1), high = _mm512_permutex2var_epi8(t->t2, index, t->t3);
    return _mm512_mask_blend_epi8(_mm512_movepi8_mask(index), low, high);
}

/// table[byte] for each of 16 bytes.
static inline __attribute__((always_inline)) SQ_TARGET_VBMI __m128i sq_table512_lookup16(__m128i codes, const sq_table512 *t) {
    return _mm512_castsi512_si128(sq_table512_lookup(_mm512_castsi128_si512(codes), t));
}

/// Whether the CPU has AVX-512 VBMI (byte permutes) with usable ZMM state.
int sq_has_avx512vbmi(void);

/// One channel's constants in AVX2 registers.
typedef struct {
    __m256i mantissa, rounding, negative_mask, zero_point, lower, upper;
    __m128i shift;
} sq_rq256;

static inline __attribute__((always_inline)) SQ_TARGET_AVX2 sq_rq256 sq_rq256_load(const sq_qrequant *rq, size_t channel) {
    size_t c = rq->per_channel ? channel : 0;
    sq_rq256 r;
    r.mantissa = _mm256_set1_epi64x(rq->mantissa[c]);
    r.rounding = _mm256_set1_epi64x(rq->rounding[c]);
    r.negative_mask = _mm256_set1_epi64x(rq->negative_mask[c]);
    r.shift = _mm_cvtsi64_si128(rq->shift[c]);
    r.zero_point = _mm256_set1_epi64x(rq->zero_point);
    r.lower = _mm256_set1_epi64x(rq->lower);
    r.upper = _mm256_set1_epi64x(rq->upper);
    return r;
}

/// Four int64 lanes to clamped codes. AVX2 has no 64-bit arithmetic shift or min/max: the shift runs
/// on the one's complement of negative lanes (floor division either way), the clamp through compares.
static inline __attribute__((always_inline)) SQ_TARGET_AVX2 __m256i sq_rq256_codes4(__m256i acc, const sq_rq256 *r) {
    __m256i p = _mm256_mul_epi32(acc, r->mantissa);
    __m256i sign = _mm256_cmpgt_epi64(_mm256_setzero_si256(), p);
    __m256i t = _mm256_add_epi64(_mm256_add_epi64(p, r->rounding), _mm256_and_si256(sign, r->negative_mask));
    __m256i t_sign = _mm256_cmpgt_epi64(_mm256_setzero_si256(), t);
    __m256i shifted = _mm256_xor_si256(_mm256_srl_epi64(_mm256_xor_si256(t, t_sign), r->shift), t_sign);
    __m256i q = _mm256_add_epi64(shifted, r->zero_point);
    q = _mm256_blendv_epi8(q, r->lower, _mm256_cmpgt_epi64(r->lower, q));
    return _mm256_blendv_epi8(q, r->upper, _mm256_cmpgt_epi64(q, r->upper));
}

/// Eight accumulators to eight code bytes (the low 8 bytes of the result).
static inline __attribute__((always_inline)) SQ_TARGET_AVX2 __m128i sq_rq256_bytes8(__m256i acc, const sq_rq256 *r) {
    __m256i low = sq_rq256_codes4(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(acc)), r);
    __m256i high = sq_rq256_codes4(_mm256_cvtepi32_epi64(_mm256_extracti128_si256(acc, 1)), r);
    // The low byte of every 64-bit lane: bytes 0 and 8 of each 128-bit half.
    const __m256i pick = _mm256_setr_epi8(0, 8, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 8, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    __m256i lb = _mm256_shuffle_epi8(low, pick), hb = _mm256_shuffle_epi8(high, pick);
    uint32_t l = (uint32_t)(uint16_t)_mm256_extract_epi16(lb, 0) | ((uint32_t)(uint16_t)_mm256_extract_epi16(lb, 8) << 16);
    uint32_t h = (uint32_t)(uint16_t)_mm256_extract_epi16(hb, 0) | ((uint32_t)(uint16_t)_mm256_extract_epi16(hb, 8) << 16);
    return _mm_cvtsi64_si128((long long)((uint64_t)l | ((uint64_t)h << 32)));
}

#endif

/// Bits [low, high) of a 64-bit mask (empty when high <= low), e.g. the lanes of a masked load.
static inline uint64_t sq_bit_range(ptrdiff_t low, ptrdiff_t high) {
    if (low < 0) low = 0;
    if (high > 64) high = 64;
    if (high <= low) return 0;
    uint64_t upper = high >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << high) - 1);
    return upper & ~(((uint64_t)1 << low) - 1);
}

/// The scalar form (tails, portable builds).
static inline int32_t sq_requantize_scalar(int32_t acc, const sq_qrequant *rq, size_t channel) {
    size_t c = rq->per_channel ? channel : 0;
    int64_t p = (int64_t)acc * rq->mantissa[c];
    int64_t t = p + rq->rounding[c] + (p < 0 ? rq->negative_mask[c] : 0);
    int64_t q = (t >> rq->shift[c]) + rq->zero_point;
    return (int32_t)(q < rq->lower ? rq->lower : (q > rq->upper ? rq->upper : q));
}

#endif
