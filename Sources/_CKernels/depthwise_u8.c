// Depthwise integer convolution rows: uint8 inputs (already padded with the zero point) times int32
// tap weights (already minus their zero point), summed per output in wrapping int32. The Swift loop in
// IntegerConvolution+GEMM.swift is the reference twin.
#include "CKernels.h"
#include "qconv_internal.h"
#include <string.h>

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

// MARK: - Whole planes with the requantization fused (sq_qdepthwise)

/// Loads 8 outputs' inputs for one tap as int32 lanes (AVX2): bytes x[0], x[stride], ..., of which `count`
/// are wanted; strides 1 and 2 read at most 16 bytes (the scratch plane has slack past its end).
static inline __attribute__((always_inline, target("avx2"))) __m256i load8(const uint8_t *x, size_t stride,
                                                                          size_t count) {
    if (stride == 1) return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)x));
    if (stride == 2) {
        __m128i words = _mm_and_si128(_mm_loadu_si128((const __m128i *)x), _mm_set1_epi16(0x00FF));
        return _mm256_cvtepu8_epi32(_mm_packus_epi16(words, words));
    }
    int32_t values[8] = {0};
    for (size_t i = 0; i < count; i++) values[i] = x[i * stride];
    return _mm256_loadu_si256((const __m256i *)values);
}

/// Sixteen outputs' inputs for any stride (AVX-512): strides 1 and 2 through `load16`, others gathered.
static inline __attribute__((always_inline, target("avx512f,avx512bw"))) __m512i load16_any(const uint8_t *x,
                                                                                          size_t stride, size_t count) {
    if (stride <= 2) return load16(x, stride, count);
    int32_t values[16] = {0};
    for (size_t i = 0; i < count; i++) values[i] = x[i * stride];
    return _mm512_loadu_si512(values);
}

/// The sum over taps for 16 outputs of row `top`.
static inline __attribute__((always_inline, target("avx512f,avx512bw"))) __m512i taps16(
    const uint8_t *top, size_t row_step, const sq_qwindow *g, const int32_t *w, size_t o, size_t count, int32_t bias) {
    __m512i sum = _mm512_set1_epi32(bias);
    for (size_t i = 0; i < g->kernel_h; i++) {
        const uint8_t *row = top + i * row_step + o * g->stride_w;
        for (size_t j = 0; j < g->kernel_w; j++) {
            __m512i values = load16_any(row + j * g->dilation_w, g->stride_w, count);
            sum = _mm512_add_epi32(sum, _mm512_mullo_epi32(values, _mm512_set1_epi32(w[i * g->kernel_w + j])));
        }
    }
    return sum;
}

SQ_TARGET_AVX512 static void plane_avx512(const uint8_t *padded, size_t padded_w, const sq_qwindow *g,
                                          const int32_t *w, int32_t bias, const sq_qrequant *rq, size_t channel,
                                          void *y) {
    size_t row_step = g->dilation_h * padded_w;
    for (size_t oh = 0; oh < g->output_h; oh++) {
        const uint8_t *top = padded + oh * g->stride_h * padded_w;
        size_t base = oh * g->output_w;
        if (rq) {
            sq_rq512 r = sq_rq512_load(rq, channel);
            for (size_t o = 0; o < g->output_w; o += 16) {
                size_t count = g->output_w - o < 16 ? g->output_w - o : 16;
                __mmask16 mask = count >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << count) - 1u);
                __m512i sum = taps16(top, row_step, g, w, o, count, bias);
                _mm_mask_storeu_epi8((uint8_t *)y + base + o, mask, sq_rq512_bytes16(sum, &r));
            }
        } else {
            for (size_t o = 0; o < g->output_w; o += 16) {
                size_t count = g->output_w - o < 16 ? g->output_w - o : 16;
                __mmask16 mask = count >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << count) - 1u);
                _mm512_mask_storeu_epi32((int32_t *)y + base + o, mask, taps16(top, row_step, g, w, o, count, bias));
            }
        }
    }
}

/// Whether the VNNI plane kernel takes this geometry: each row's taps in groups of four, one byte
/// permute of a 64-byte load per group and 16 outputs (15 strides + 3 dilations within the load).
static int vnni_plane_fits(const sq_qwindow *g) {
    size_t quads = (g->kernel_w + 3) / 4;
    return g->kernel_h <= 64 && quads <= 16 && g->kernel_h * quads <= 64 && 15 * g->stride_w + 3 * g->dilation_w <= 63;
}

/// Per (kernel row, group of four taps) a word of four int8 weights (zeros past the row's end), or 0 when
/// some weight does not fit int8 (then the generic kernel runs).
static int pack_tap_words(const sq_qwindow *g, const int32_t *w, int32_t *words) {
    size_t quads = (g->kernel_w + 3) / 4;
    for (size_t i = 0; i < g->kernel_h; i++) {
        for (size_t q = 0; q < quads; q++) {
            uint32_t word = 0;
            for (size_t t = 0; t < 4 && 4 * q + t < g->kernel_w; t++) {
                int32_t value = w[i * g->kernel_w + 4 * q + t];
                if (value < -128 || value > 127) return 0;
                word |= (uint32_t)(uint8_t)(int8_t)value << (8 * t);
            }
            words[i * quads + q] = (int32_t)word;
        }
    }
    return 1;
}

/// The plane loop of `plane_vnni`, inlined with constant kernel heights, tap groups and requantization
/// form for the common cases. The input is read in place: a load of 64 bytes at column
/// `o·stride − pad_left` is masked to the columns inside the row, the others reading the zero point, and
/// rows outside the plane read `blank` (the zero point throughout), so the padding costs no copy and the
/// tap loop no branch. Columns of 64 outputs run outermost, so their masks are made once for all rows.
/// The sums of a row's 64 outputs are formed first (independent chains), then requantized, gathered in
/// one register, looked up in the table once and stored once.
static inline __attribute__((always_inline)) SQ_TARGET_VBMI void plane_vnni_rows(
    const uint8_t *x, const uint8_t *blank, const sq_qwindow *g, uint8_t flip, uint8_t x_zero, const __m512i *weights,
    __m512i index, int32_t bias, const sq_qrequant *rq, const sq_rq512 *requant, const sq_table512 *tables, void *y,
    const size_t kernel_h, const size_t quads, const int narrow) {
    const ptrdiff_t width = (ptrdiff_t)g->input_w, quad_step = 4 * (ptrdiff_t)g->dilation_w;
    const ptrdiff_t chunk_step = 16 * (ptrdiff_t)g->stride_w;
    const __m512i flips = _mm512_set1_epi8((char)flip);
    // Masked-off bytes read this, which the flip turns into the zero point.
    const __m512i fill = _mm512_set1_epi8((char)(x_zero ^ flip));
    for (size_t first = 0; first < g->output_w; first += 64) {
        size_t count = g->output_w - first < 64 ? g->output_w - first : 64, chunks = (count + 15) / 16;
        const ptrdiff_t column = (ptrdiff_t)(first * g->stride_w) - (ptrdiff_t)g->pad_left;
        __mmask64 inside[4][16];
        for (size_t c = 0; c < 4; c++) {
            for (size_t q = 0; q < quads; q++) {
                ptrdiff_t start = column + (ptrdiff_t)c * chunk_step + (ptrdiff_t)q * quad_step;
                inside[c][q] = (__mmask64)sq_bit_range(-start, width - start);
            }
        }
        __mmask64 store = count >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << count) - 1);
        for (size_t oh = 0; oh < g->output_h; oh++) {
            size_t base = oh * g->output_w + first;
            const uint8_t *rows[64];
            for (size_t i = 0; i < kernel_h; i++) {
                ptrdiff_t ih = (ptrdiff_t)(oh * g->stride_h + i * g->dilation_h) - (ptrdiff_t)g->pad_top;
                // As an address: the loads below may start before the row (those bytes are masked off).
                rows[i] = (ih >= 0 && ih < (ptrdiff_t)g->input_h ? x + (size_t)ih * g->input_w : blank);
            }
            __m512i sums[4];
            for (size_t c = 0; c < 4; c++) {
                sums[c] = _mm512_set1_epi32(bias);
                if (c >= chunks) continue;
                for (size_t q = 0; q < quads; q++) {
                    uintptr_t start = (uintptr_t)(column + (ptrdiff_t)c * chunk_step + (ptrdiff_t)q * quad_step);
                    for (size_t i = 0; i < kernel_h; i++) {
                        // Only the bytes inside the row are read (masked loads do not fault elsewhere).
                        __m512i bytes = _mm512_mask_loadu_epi8(fill, inside[c][q], (const void *)((uintptr_t)rows[i] + start));
                        bytes = _mm512_xor_si512(bytes, flips);
                        sums[c] = _mm512_dpbusd_epi32(sums[c], _mm512_permutexvar_epi8(index, bytes), weights[i * quads + q]);
                    }
                }
            }
            if (!rq) {
                for (size_t c = 0; c < 4; c++) {
                    if (c >= chunks) continue;
                    size_t left = count - 16 * c;
                    __mmask16 mask = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
                    _mm512_mask_storeu_epi32((int32_t *)y + base + 16 * c, mask, sums[c]);
                }
                continue;
            }
            __m512i codes = _mm512_setzero_si512();
            if (chunks == 4 && narrow && requant->n.pack) {
                codes = sq_rq512_narrow64(sums[0], sums[1], sums[2], sums[3], &requant->n);
            } else {
                for (size_t c = 0; c < 4; c++) {
                    if (c >= chunks) continue;
                    __m128i bytes = narrow ? sq_rq512_narrow16(sums[c], requant) : sq_rq512_bytes16(sums[c], requant);
                    codes = _mm512_mask_broadcast_i32x4(codes, (__mmask16)(0xFu << (4 * c)), bytes);
                }
            }
            if (rq->table) codes = sq_table512_lookup(codes, tables);
            _mm512_mask_storeu_epi8((uint8_t *)y + base, store, codes);
        }
    }
}

/// Depthwise plane with AVX-512 VNNI and VBMI: for 16 outputs and one group of four taps of a kernel row,
/// vpermb gathers each output's four input bytes (x[o * stride + t * dilation]) into its lane and one
/// vpdpbusd adds their products with the four weights, exactly (u8 x s8 into int32). Codes go through
/// the output table in registers.
SQ_TARGET_VBMI static void plane_vnni(const uint8_t *x, const uint8_t *blank, const sq_qwindow *g, uint8_t flip,
                                      uint8_t x_zero, const int32_t *words, int32_t bias, const sq_qrequant *rq,
                                      size_t channel, void *y) {
    size_t quads = (g->kernel_w + 3) / 4;
    uint8_t pattern[64];
    for (size_t o = 0; o < 16; o++)
        for (size_t t = 0; t < 4; t++) pattern[4 * o + t] = (uint8_t)(o * g->stride_w + t * g->dilation_w);
    const __m512i index = _mm512_loadu_si512(pattern);
    __m512i weights[64];
    for (size_t i = 0; i < g->kernel_h * quads; i++) weights[i] = _mm512_set1_epi32(words[i]);
    sq_rq512 requant;
    sq_table512 tables;
    if (rq) requant = sq_rq512_load(rq, channel);
    if (rq && rq->table) tables = sq_table512_load(rq->table);
    if (g->kernel_h == 3 && quads == 1 && rq && requant.narrow) {
        plane_vnni_rows(x, blank, g, flip, x_zero, weights, index, bias, rq, &requant, &tables, y, 3, 1, 1);
    } else {
        plane_vnni_rows(x, blank, g, flip, x_zero, weights, index, bias, rq, &requant, &tables, y, g->kernel_h,
                        quads, 0);
    }
}

SQ_TARGET_AVX2 static void plane_avx2(const uint8_t *padded, size_t padded_w, const sq_qwindow *g, const int32_t *w,
                                      int32_t bias, const sq_qrequant *rq, size_t channel, void *y) {
    size_t row_step = g->dilation_h * padded_w;
    sq_rq256 r;
    if (rq) r = sq_rq256_load(rq, channel);
    for (size_t oh = 0; oh < g->output_h; oh++) {
        const uint8_t *top = padded + oh * g->stride_h * padded_w;
        size_t base = oh * g->output_w;
        for (size_t o = 0; o < g->output_w; o += 8) {
            size_t count = g->output_w - o < 8 ? g->output_w - o : 8;
            __m256i sum = _mm256_set1_epi32(bias);
            for (size_t i = 0; i < g->kernel_h; i++) {
                const uint8_t *row = top + i * row_step + o * g->stride_w;
                for (size_t j = 0; j < g->kernel_w; j++) {
                    __m256i values = load8(row + j * g->dilation_w, g->stride_w, count);
                    sum = _mm256_add_epi32(sum, _mm256_mullo_epi32(values, _mm256_set1_epi32(w[i * g->kernel_w + j])));
                }
            }
            if (rq) {
                uint8_t bytes[16];
                _mm_storeu_si128((__m128i *)bytes, sq_rq256_bytes8(sum, &r));
                memcpy((uint8_t *)y + base + o, bytes, count);
            } else {
                int32_t values[8];
                _mm256_storeu_si256((__m256i *)values, sum);
                memcpy((int32_t *)y + base + o, values, count * sizeof(int32_t));
            }
        }
    }
}
#endif

static size_t padded_height(const sq_qwindow *g) {
    return g->output_h == 0 ? 0 : (g->output_h - 1) * g->stride_h + (g->kernel_h - 1) * g->dilation_h + 1;
}

static size_t padded_width(const sq_qwindow *g) {
    return g->output_w == 0 ? 0 : (g->output_w - 1) * g->stride_w + (g->kernel_w - 1) * g->dilation_w + 1;
}

size_t sq_qdepthwise_scratch_size(const sq_qwindow *g) {
    // Vector loads may run up to 64 bytes past the last window (their extra lanes are never stored); the
    // in-place kernel keeps one row of the zero point here.
    size_t padded = padded_height(g) * padded_width(g);
    return (padded > g->input_w ? padded : g->input_w) + 64;
}

/// The plane copied into `padded` (padded_h x padded_w), flipped, with `x_zero` outside the input.
static void pad_plane(const uint8_t *x, const sq_qwindow *g, uint8_t flip, uint8_t x_zero, uint8_t *padded) {
    size_t height = padded_height(g), width = padded_width(g);
    for (size_t row = 0; row < height; row++) {
        uint8_t *target = padded + row * width;
        ptrdiff_t ih = (ptrdiff_t)row - (ptrdiff_t)g->pad_top;
        if (ih < 0 || ih >= (ptrdiff_t)g->input_h) {
            memset(target, x_zero, width);
            continue;
        }
        // Padded columns [first, last) hold input columns [first - pad_left, last - pad_left); the padding
        // columns are few, so plain stores beat memset calls.
        size_t first = g->pad_left < width ? g->pad_left : width;
        size_t last = g->pad_left + g->input_w < width ? g->pad_left + g->input_w : width;
        for (size_t column = 0; column < first; column++) target[column] = x_zero;
        const uint8_t *source = x + (size_t)ih * g->input_w - g->pad_left;
        if (flip) {
            for (size_t column = first; column < last; column++) target[column] = source[column] ^ flip;
        } else {
            memcpy(target + first, source + first, last - first);
        }
        for (size_t column = last; column < width; column++) target[column] = x_zero;
    }
}

int sq_qdepthwise(int level, const uint8_t *x, size_t plane_stride, size_t channels, const sq_qwindow *g, uint8_t flip,
                  uint8_t x_zero, const int32_t *w, const int32_t *bias, uint8_t *scratch, const sq_qrequant *rq,
                  void *y, size_t out_stride) {
#if defined(__x86_64__) || defined(_M_X64)
    sq_cpu_features f = sq_cpu_detect();
    int avx512 = level >= SQ_QGEMM_LEVEL_AVX512BW && f.avx512bw;
    int avx2 = level >= SQ_QGEMM_LEVEL_AVX2 && f.avx2;
    if (!avx512 && !avx2) return 0;
    size_t taps = g->kernel_h * g->kernel_w, width = padded_width(g);
    size_t element = rq ? 1 : sizeof(int32_t);
    int vnni = level >= SQ_QGEMM_LEVEL_AVX512VNNI && f.avx512vnni && sq_has_avx512vbmi() && vnni_plane_fits(g);
    int32_t words[64];
    int blank_ready = 0;
    for (size_t c = 0; c < channels; c++) {
        void *target = (uint8_t *)y + c * out_stride * element;
        if (vnni && pack_tap_words(g, w + c * taps, words)) {
            // Reads the plane in place (rows outside it read the scratch, a row of the zero point); the
            // table, if any, is applied in registers.
            if (!blank_ready) {
                memset(scratch, x_zero ^ flip, g->input_w);
                blank_ready = 1;
            }
            plane_vnni(x + c * plane_stride, scratch, g, flip, x_zero, words, bias[c], rq, c, target);
            continue;
        }
        pad_plane(x + c * plane_stride, g, flip, x_zero, scratch);
        blank_ready = 0;
        if (avx512) {
            plane_avx512(scratch, width, g, w + c * taps, bias[c], rq, c, target);
        } else {
            plane_avx2(scratch, width, g, w + c * taps, bias[c], rq, c, target);
        }
        if (rq && rq->table) {
            uint8_t *codes = (uint8_t *)target;
            sq_lookup_u8(level, rq->table, codes, codes, g->output_h * g->output_w);
        }
    }
    return 1;
#else
    (void)level; (void)x; (void)plane_stride; (void)channels; (void)g; (void)flip; (void)x_zero; (void)w; (void)bias;
    (void)scratch; (void)rq; (void)y; (void)out_stride;
    return 0;
#endif
}

#if !defined(__x86_64__) && !defined(_M_X64)
int sq_depthwise_row_u8(int level, const uint8_t *x, size_t row_step, size_t kernel_h, size_t kernel_w, size_t stride,
                        size_t dilation, const int32_t *w, size_t width, int32_t *acc) {
    (void)level; (void)x; (void)row_step; (void)kernel_h; (void)kernel_w; (void)stride; (void)dilation; (void)w;
    (void)width; (void)acc;
    return 0;
}
#endif
