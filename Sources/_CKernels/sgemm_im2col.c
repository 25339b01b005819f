// im2col written straight into the packed-B layout of sgemm_internal.h, so a convolution's patch
// matrix goes to the SGEMM once (no separate column buffer and no second packing pass).
#include "CKernels.h"
#include "sgemm_internal.h"

#include <stdlib.h>
#include <string.h>

/// Writes `count` values into packed columns [column, column + count) of one packed row (`row` points
/// at that row inside panel 0; panel p is `panel_stride` floats further): src[i * stride], or zeros
/// when `src` is NULL. Pieces are split at panel boundaries.
static void put_columns(float *row, size_t panel_stride, size_t column, size_t count, const float *src,
                        size_t stride) {
    while (count > 0) {
        size_t lane = column % SQ_SGEMM_PANEL;
        size_t take = SQ_SGEMM_PANEL - lane;
        if (take > count) take = count;
        float *dst = row + column / SQ_SGEMM_PANEL * panel_stride + lane;
        if (!src) {
            memset(dst, 0, sizeof(float) * take);
        } else if (stride == 1) {
            memcpy(dst, src, sizeof(float) * take);
            src += take;
        } else {
            for (size_t i = 0; i < take; i++) dst[i] = src[i * stride];
            src += take * stride;
        }
        column += take;
        count -= take;
    }
}

/// The outputs o in [0, output) whose tap lands inside the input (input = o * stride + offset), as
/// [*low, *high).
static void valid_outputs(size_t input, size_t output, size_t stride, ptrdiff_t offset, size_t *low, size_t *high) {
    ptrdiff_t s = (ptrdiff_t)stride;
    ptrdiff_t lo = offset >= 0 ? 0 : (-offset + s - 1) / s;
    ptrdiff_t last = (ptrdiff_t)input - 1 - offset;  // o * stride <= last
    ptrdiff_t hi = last < 0 ? 0 : last / s + 1;
    if (hi > (ptrdiff_t)output) hi = (ptrdiff_t)output;
    if (lo > hi) lo = hi;
    *low = (size_t)lo;
    *high = (size_t)hi;
}

size_t sq_im2col_packed_count(size_t channels, const sq_window3d *g, size_t row_begin, size_t row_end) {
    size_t depth = channels * g->kernel[0] * g->kernel[1] * g->kernel[2];
    return sq_sgemm_packed_b_count((row_end - row_begin) * g->output[2], depth);
}

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

/// Bit i of the low 8 bits moved to bit 2i (the mask of the even lanes a stride-2 row reads).
static inline __mmask16 spread_even(unsigned bits) {
    bits = (bits | bits << 4) & 0x0F0Fu;
    bits = (bits | bits << 2) & 0x3333u;
    bits = (bits | bits << 1) & 0x5555u;
    return (__mmask16)bits;
}

/// One output row's columns for one tap, AVX-512F: per piece of up to 16 lanes (split at panel
/// boundaries) one masked load (stride 1) or masked gather, then one masked store. Lanes whose tap
/// falls in the padding (ow outside [w_lo, w_hi)) are masked off, which also keeps the load from
/// touching memory outside the input row, and are stored as zeros.
__attribute__((target("avx512f"))) static void put_row_avx512(float *row, size_t panel_stride, size_t column,
                                                               size_t width, const float *src, ptrdiff_t first,
                                                               size_t stride, size_t w_lo, size_t w_hi) {
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i steps = _mm512_mullo_epi32(lanes, _mm512_set1_epi32((int)stride));
    const __m512i evens = _mm512_add_epi32(lanes, lanes);
    size_t o = 0;
    while (o < width) {
        size_t lane = column % SQ_SGEMM_PANEL;
        size_t take = SQ_SGEMM_PANEL - lane;
        if (take > width - o) take = width - o;
        float *dst = row + column / SQ_SGEMM_PANEL * panel_stride + lane;
        __mmask16 mask = (__mmask16)((1u << take) - 1u);
        size_t lo = w_lo > o ? w_lo - o : 0, hi = w_hi > o ? w_hi - o : 0;
        if (hi > take) hi = take;
        __mmask16 valid = lo < hi ? (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u)) : 0;
        __m512 v = _mm512_setzero_ps();
        if (valid) {
            // Input element of output column o: src[first + o * stride]; masked lanes never touch memory.
            const float *base = src + first + (ptrdiff_t)(o * stride);
            if (stride == 1) {
                v = _mm512_maskz_loadu_ps(valid, base);
            } else if (stride == 2) {
                // Two loads of 16 and the even elements picked: gathers are several times slower.
                __mmask16 low = spread_even((unsigned)valid & 0xFFu), high = spread_even((unsigned)valid >> 8);
                __m512 v0 = _mm512_maskz_loadu_ps(low, base), v1 = _mm512_maskz_loadu_ps(high, base + 16);
                v = _mm512_maskz_permutex2var_ps(valid, v0, evens, v1);
            } else {
                v = _mm512_mask_i32gather_ps(v, valid, steps, base, 4);
            }
        }
        _mm512_mask_storeu_ps(dst, mask, v);
        column += take;
        o += take;
    }
}

/// Unit strides with the output plane the size of the input plane (the "same" 3x3 convolutions of
/// CNNs): column j of tap t then reads the input at j + shift[t], so each panel is one masked load and
/// one store, the masks (taps falling in the padding) made once per call. Returns 0 without writing
/// when the geometry does not fit or the mask table would be large.
__attribute__((target("avx512f"))) static int im2col_same_avx512(const float *x, size_t channels,
                                                                 const sq_window3d *g, size_t row_begin,
                                                                 size_t row_end, float *packed) {
    enum { MAX_MASKS = 16384 };
    for (int a = 0; a < 3; a++)
        if (g->stride[a] != 1 || g->input[a] != g->output[a]) return 0;
    size_t width = g->output[2], rows_per_plane = g->output[1];
    size_t n = (row_end - row_begin) * width;
    size_t panels = (n + SQ_SGEMM_PANEL - 1) / SQ_SGEMM_PANEL;
    size_t taps = g->kernel[0] * g->kernel[1] * g->kernel[2];
    if (taps * panels > MAX_MASKS) return 0;
    __mmask16 masks[MAX_MASKS];
    ptrdiff_t shifts[MAX_MASKS / 16 + 1];
    if (taps > MAX_MASKS / 16) return 0;
    size_t plane = g->input[0] * g->input[1] * g->input[2];
    size_t t = 0;
    for (size_t kd = 0; kd < g->kernel[0]; kd++)
        for (size_t kh = 0; kh < g->kernel[1]; kh++)
            for (size_t kw = 0; kw < g->kernel[2]; kw++, t++) {
                ptrdiff_t dd = (ptrdiff_t)(kd * g->dilation[0]) - g->pad_begin[0];
                ptrdiff_t dh = (ptrdiff_t)(kh * g->dilation[1]) - g->pad_begin[1];
                ptrdiff_t dw = (ptrdiff_t)(kw * g->dilation[2]) - g->pad_begin[2];
                shifts[t] = (dd * (ptrdiff_t)g->input[1] + dh) * (ptrdiff_t)width + dw;
                __mmask16 *tap_masks = masks + t * panels;
                for (size_t p = 0; p < panels; p++) tap_masks[p] = 0;
                size_t od = row_begin / rows_per_plane, oh = row_begin % rows_per_plane;
                for (size_t column = 0; column < n; column += width) {
                    ptrdiff_t id = (ptrdiff_t)od + dd, ih = (ptrdiff_t)oh + dh;
                    if (id >= 0 && id < (ptrdiff_t)g->input[0] && ih >= 0 && ih < (ptrdiff_t)g->input[1])
                        for (size_t ow = 0; ow < width; ow++) {
                            ptrdiff_t iw = (ptrdiff_t)ow + dw;
                            if (iw >= 0 && iw < (ptrdiff_t)width) {
                                size_t j = column + ow;
                                tap_masks[j / SQ_SGEMM_PANEL] |= (__mmask16)(1u << (j % SQ_SGEMM_PANEL));
                            }
                        }
                    if (++oh == rows_per_plane) { oh = 0; od++; }
                }
            }
    size_t depth = channels * taps;
    size_t npad = panels * SQ_SGEMM_PANEL;
    const float *first = x + row_begin * width;
    for (size_t c = 0, k = 0; c < channels; c++) {
        for (t = 0; t < taps; t++, k++) {
            size_t k0 = k / SQ_SGEMM_KC * SQ_SGEMM_KC;
            size_t kc = depth - k0 < SQ_SGEMM_KC ? depth - k0 : SQ_SGEMM_KC;
            size_t panel_stride = SQ_SGEMM_PANEL * kc;
            float *row = packed + k0 * npad + (k - k0) * SQ_SGEMM_PANEL;
            // Masked-off lanes (padding, and the columns past n) are stored as zeros and never read.
            const float *src = first + c * plane + shifts[t];
            const __mmask16 *tap_masks = masks + t * panels;
            for (size_t p = 0; p < panels; p++)
                _mm512_storeu_ps(row + p * panel_stride,
                                 _mm512_maskz_loadu_ps(tap_masks[p], src + p * SQ_SGEMM_PANEL));
        }
    }
    return 1;
}
#endif

/// One output row's columns for one tap, plain C (the same values as the AVX-512 variant).
static void put_row_portable(float *row, size_t panel_stride, size_t column, size_t width, const float *src,
                             ptrdiff_t first, size_t stride, size_t w_lo, size_t w_hi) {
    put_columns(row, panel_stride, column, w_lo, NULL, 0);
    if (w_hi > w_lo)
        put_columns(row, panel_stride, column + w_lo, w_hi - w_lo, src + first + (ptrdiff_t)(w_lo * stride), stride);
    put_columns(row, panel_stride, column + w_hi, width - w_hi, NULL, 0);
}

typedef void (*put_row_fn)(float *row, size_t panel_stride, size_t column, size_t width, const float *src,
                           ptrdiff_t first, size_t stride, size_t w_lo, size_t w_hi);

void sq_im2col_packed(int level, const float *x, size_t channels, const sq_window3d *g, size_t row_begin,
                      size_t row_end, float *packed) {
    put_row_fn put_row = put_row_portable;
#if defined(__x86_64__) || defined(_M_X64)
    // Gathers take 32-bit lane offsets: wide strides stay on the portable path.
    if (sq_sgemm_resolve_level(level) >= SQ_SGEMM_LEVEL_AVX512) {
        if (im2col_same_avx512(x, channels, g, row_begin, row_end, packed)) return;
        if (g->stride[2] <= 65536) put_row = put_row_avx512;
    }
#else
    (void)level;
#endif
    size_t width = g->output[2];
    size_t n = (row_end - row_begin) * width;
    size_t npad = (n + SQ_SGEMM_PANEL - 1) / SQ_SGEMM_PANEL * SQ_SGEMM_PANEL;
    size_t taps = g->kernel[0] * g->kernel[1] * g->kernel[2];
    size_t depth = channels * taps;
    size_t plane = g->input[0] * g->input[1] * g->input[2];
    if (n == 0 || depth == 0) return;
    // Padding lanes of the last panel are read by the micro-kernels (and never stored); zeros keep
    // them from holding NaN or denormals.
    size_t tail = n % SQ_SGEMM_PANEL;
    // Divisions are slow next to the copies of narrow rows: the valid output ranges and input
    // offsets of every tap are worked out once, and (od, oh) advance by counting.
    for (size_t c = 0, k = 0; c < channels; c++) {
        const float *xc = x + c * plane;
        for (size_t kd = 0; kd < g->kernel[0]; kd++) {
            ptrdiff_t d_off = (ptrdiff_t)(kd * g->dilation[0]) - g->pad_begin[0];
            size_t d_lo, d_hi;
            valid_outputs(g->input[0], g->output[0], g->stride[0], d_off, &d_lo, &d_hi);
            for (size_t kh = 0; kh < g->kernel[1]; kh++) {
                ptrdiff_t h_off = (ptrdiff_t)(kh * g->dilation[1]) - g->pad_begin[1];
                size_t h_lo, h_hi;
                valid_outputs(g->input[1], g->output[1], g->stride[1], h_off, &h_lo, &h_hi);
                for (size_t kw = 0; kw < g->kernel[2]; kw++, k++) {
                    ptrdiff_t w_off = (ptrdiff_t)(kw * g->dilation[2]) - g->pad_begin[2];
                    size_t w_lo, w_hi;
                    valid_outputs(g->input[2], width, g->stride[2], w_off, &w_lo, &w_hi);
                    size_t k0 = k / SQ_SGEMM_KC * SQ_SGEMM_KC;
                    size_t kc = depth - k0 < SQ_SGEMM_KC ? depth - k0 : SQ_SGEMM_KC;
                    size_t panel_stride = SQ_SGEMM_PANEL * kc;
                    float *row = packed + k0 * npad + (k - k0) * SQ_SGEMM_PANEL;
                    if (tail) memset(row + n / SQ_SGEMM_PANEL * panel_stride + tail, 0,
                                     sizeof(float) * (SQ_SGEMM_PANEL - tail));
                    size_t od = row_begin / g->output[1], oh = row_begin % g->output[1];
                    for (size_t column = 0; column < n; column += width) {
                        if (od < d_lo || od >= d_hi || oh < h_lo || oh >= h_hi) {
                            put_columns(row, panel_stride, column, width, NULL, 0);
                        } else {
                            size_t id = (size_t)((ptrdiff_t)(od * g->stride[0]) + d_off);
                            size_t ih = (size_t)((ptrdiff_t)(oh * g->stride[1]) + h_off);
                            put_row(row, panel_stride, column, width, xc + (id * g->input[1] + ih) * g->input[2],
                                    w_off, g->stride[2], w_lo, w_hi);
                        }
                        if (++oh == g->output[1]) { oh = 0; od++; }
                    }
                }
            }
        }
    }
}

/// The calling thread's patch buffer, grown on demand and kept: a fresh allocation of this size per
/// call is mapped anew and page-faults on every first write.
static _Thread_local float *scratch;
static _Thread_local size_t scratch_capacity;

float *sq_im2col_scratch(size_t count) {
    if (count <= scratch_capacity) return scratch;
    free(scratch);
    scratch = NULL;
    scratch_capacity = 0;
    void *p = NULL;
    if (posix_memalign(&p, 64, sizeof(float) * count) != 0) return NULL;
    scratch = p;
    scratch_capacity = count;
    return scratch;
}
