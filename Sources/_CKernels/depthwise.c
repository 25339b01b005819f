// Direct convolution of one input plane with one filter plane (depthwise Conv):
// y[o] = bias + sum over taps of w[tap] * x[o * stride - pad + tap * dilation], taps in the padding
// skipped. The AVX-512 and AVX2 kernels keep up to 64 (32) outputs of a row in registers across all
// taps, reading a zero-padded copy of the plane whose rows are split by W-stride phase, so that every
// tap reads consecutive floats whatever the stride. Without that buffer (or on the portable level) the
// taps accumulate one by one, the row loop an AXPY vectorised per level or plain C.
#include "CKernels.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

/// Outputs o in [*lo, *hi) with 0 <= o * stride + offset < in.
static inline __attribute__((always_inline)) void valid_range(size_t out, size_t in, size_t stride, ptrdiff_t offset,
                                                             size_t *lo, size_t *hi) {
    ptrdiff_t s = (ptrdiff_t)stride;
    ptrdiff_t first = offset >= 0 ? 0 : (-offset + s - 1) / s;
    ptrdiff_t last_input = (ptrdiff_t)in - 1 - offset;  // o * stride <= last_input
    ptrdiff_t end = last_input < 0 ? 0 : last_input / s + 1;
    if (end > (ptrdiff_t)out) end = (ptrdiff_t)out;
    if (first > end) first = end;
    *lo = (size_t)first;
    *hi = (size_t)end;
}

typedef void (*axpy_fn)(float *y, const float *x, size_t n, float w);

/// The plane loop, shared by every level; `axpy` handles unit-stride rows.
static inline __attribute__((always_inline)) void plane(const float *x, const float *w, float *y,
                                                       const sq_window3d *g, axpy_fn axpy) {
    size_t tap = 0;
    for (size_t kd = 0; kd < g->kernel[0]; kd++) {
        size_t d_lo, d_hi;
        ptrdiff_t d_off = (ptrdiff_t)(kd * g->dilation[0]) - g->pad_begin[0];
        valid_range(g->output[0], g->input[0], g->stride[0], d_off, &d_lo, &d_hi);
        for (size_t kh = 0; kh < g->kernel[1]; kh++) {
            size_t h_lo, h_hi;
            ptrdiff_t h_off = (ptrdiff_t)(kh * g->dilation[1]) - g->pad_begin[1];
            valid_range(g->output[1], g->input[1], g->stride[1], h_off, &h_lo, &h_hi);
            for (size_t kw = 0; kw < g->kernel[2]; kw++, tap++) {
                size_t w_lo, w_hi;
                ptrdiff_t w_off = (ptrdiff_t)(kw * g->dilation[2]) - g->pad_begin[2];
                valid_range(g->output[2], g->input[2], g->stride[2], w_off, &w_lo, &w_hi);
                if (w_lo >= w_hi) continue;
                float weight = w[tap];
                size_t count = w_hi - w_lo;
                for (size_t od = d_lo; od < d_hi; od++) {
                    size_t id = (size_t)((ptrdiff_t)(od * g->stride[0]) + d_off);
                    for (size_t oh = h_lo; oh < h_hi; oh++) {
                        size_t ih = (size_t)((ptrdiff_t)(oh * g->stride[1]) + h_off);
                        const float *row = x + (id * g->input[1] + ih) * g->input[2];
                        // Input column of output w_lo.
                        const float *src = row + (ptrdiff_t)(w_lo * g->stride[2]) + w_off;
                        float *dst = y + (od * g->output[1] + oh) * g->output[2] + w_lo;
                        if (g->stride[2] == 1) {
                            axpy(dst, src, count, weight);
                        } else {
                            size_t sw = g->stride[2];
                            for (size_t i = 0; i < count; i++) dst[i] += weight * src[i * sw];
                        }
                    }
                }
            }
        }
    }
}

static void axpy_portable(float *y, const float *x, size_t n, float w) {
    for (size_t i = 0; i < n; i++) y[i] += w * x[i];
}

static void fill(float *y, const sq_window3d *g, float bias) {
    size_t count = g->output[0] * g->output[1] * g->output[2];
    for (size_t i = 0; i < count; i++) y[i] = bias;
}

static void plane_portable(const float *x, const float *w, float bias, float *y, const sq_window3d *g) {
    fill(y, g, bias);
    plane(x, w, y, g, axpy_portable);
}

/// A zero-padded copy of the input plane covering every position a window touches, so the kernels below
/// load without bounds checks. Each padded row is stored as `stride` phase rows: phase q holds padded
/// columns q, q + stride, q + 2 stride, ... Output column o of tap offset t (= kw * dilation) reads padded
/// column o * stride + t, which is element o + t / stride of phase t % stride: consecutive outputs read
/// consecutive floats. Phase rows get SLACK extra zero floats so a full vector may run past the last
/// output column. The buffer is per thread and kept (planes are small).
enum { SLACK = 16 };
static _Thread_local float *padded_buffer;
static _Thread_local size_t padded_capacity;
static _Thread_local sq_window3d padded_geometry;
static _Thread_local int padded_valid;

typedef struct {
    const float *base;   ///< padded position (0, 0, 0) = input position (-pad_begin...)
    size_t row;          ///< floats per padded row (stride phase rows)
    size_t phase;        ///< floats per phase row
    size_t rows;         ///< padded rows per padded slice (H extent)
    const char *next;    ///< memory to prefetch while this plane computes (the next channel's input), or NULL
    size_t next_bytes;
} padded_plane;

enum { MAX_TAPS_W = 64 };

/// Offset of each W tap's first float from the start of a padded row (tap offset kw * dilation lands in
/// phase (kw * dilation) % stride); kernels wider than MAX_TAPS_W do not take the padded path.
static inline __attribute__((always_inline)) void tap_offsets(const padded_plane *p, const sq_window3d *g,
                                                             size_t *offsets) {
    for (size_t kw = 0; kw < g->kernel[2]; kw++) {
        size_t t = kw * g->dilation[2];
        offsets[kw] = (t % g->stride[2]) * p->phase + t / g->stride[2];
    }
}

/// Returns 0 when no buffer could be had (the caller then falls back to the bounds-checked loop).
/// Inlined into each level's caller, so that the stride-2 split vectorises for that level.
static inline __attribute__((always_inline)) int make_padded(const float *x, const sq_window3d *g,
                                                            padded_plane *out) {
    size_t extent[3];
    for (int a = 0; a < 3; a++) {
        extent[a] = (g->output[a] - 1) * g->stride[a] + (g->kernel[a] - 1) * g->dilation[a] + 1;
    }
    size_t stride = g->stride[2];
    size_t phase = (extent[2] + stride - 1) / stride + SLACK;
    size_t row = stride * phase;
    size_t need = extent[0] * extent[1] * row;
    if (need > padded_capacity) {
        free(padded_buffer);
        padded_buffer = NULL;
        padded_capacity = 0;
        padded_valid = 0;
        void *p = NULL;
        if (posix_memalign(&p, 64, need * sizeof(float)) != 0) return 0;
        padded_buffer = p;
        padded_capacity = need;
    }
    // The copy below rewrites only the interior, so the zero border survives from one plane to the next
    // of the same geometry: clear the buffer only when the geometry changes.
    if (!padded_valid || memcmp(&padded_geometry, g, sizeof *g) != 0) {
        memset(padded_buffer, 0, need * sizeof(float));
        padded_geometry = *g;
        padded_valid = 1;
    }
    for (size_t d = 0; d < extent[0]; d++) {
        ptrdiff_t id = (ptrdiff_t)d - g->pad_begin[0];
        if (id < 0 || id >= (ptrdiff_t)g->input[0]) continue;
        for (size_t h = 0; h < extent[1]; h++) {
            ptrdiff_t ih = (ptrdiff_t)h - g->pad_begin[1];
            if (ih < 0 || ih >= (ptrdiff_t)g->input[1]) continue;
            // Columns of this padded row that hold input: input column = w - pad_begin[2].
            ptrdiff_t first = g->pad_begin[2] > 0 ? g->pad_begin[2] : 0;
            ptrdiff_t skip = g->pad_begin[2] < 0 ? -g->pad_begin[2] : 0;  // input columns left of the window
            ptrdiff_t count = (ptrdiff_t)g->input[2] - skip;
            if (count > (ptrdiff_t)extent[2] - first) count = (ptrdiff_t)extent[2] - first;
            if (count <= 0) continue;
            float *dst = padded_buffer + (d * extent[1] + h) * row;
            const float *src = x + ((size_t)id * g->input[1] + (size_t)ih) * g->input[2] + skip;
            if (stride == 1) {
                memcpy(dst + first, src, (size_t)count * sizeof(float));
            } else if (stride == 2) {
                // Source columns alternate between the two phases, starting with first's parity.
                float *even = dst + ((size_t)first % 2) * phase + (size_t)first / 2;
                float *odd = dst + ((size_t)first + 1) % 2 * phase + ((size_t)first + 1) / 2;
                ptrdiff_t pairs = count / 2;
                for (ptrdiff_t j = 0; j < pairs; j++) {
                    even[j] = src[2 * j];
                    odd[j] = src[2 * j + 1];
                }
                if (count % 2) even[pairs] = src[2 * pairs];
            } else {
                // Phase by phase: column first + q + j * stride goes to phase (first + q) % stride.
                for (size_t q = 0; q < stride && (ptrdiff_t)q < count; q++) {
                    size_t column = (size_t)first + q;
                    float *target = dst + (column % stride) * phase + column / stride;
                    for (ptrdiff_t i = (ptrdiff_t)q, j = 0; i < count; i += (ptrdiff_t)stride, j++) target[j] = src[i];
                }
            }
        }
    }
    out->base = padded_buffer;
    out->row = row;
    out->phase = phase;
    out->rows = extent[1];
    out->next = NULL;
    out->next_bytes = 0;
    return 1;
}

#if defined(__x86_64__) || defined(_M_X64)
static inline __attribute__((always_inline, target("avx2,fma"))) void axpy_avx2(float *y, const float *x, size_t n,
                                                                               float w) {
    __m256 vw = _mm256_set1_ps(w);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(vw, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += w * x[i];
}

/// The AVX2 form of the padded-plane kernel below: rows in chunks of 32 columns (four YMM vectors), two
/// rows at a time.
static __attribute__((target("avx2,fma"))) void plane_avx2_padded(const padded_plane *p, const float *w,
                                                                      float bias, float *y, const sq_window3d *g) {
    enum { CHUNK = 32, VECTORS = CHUNK / 8 };
    static const int32_t lanes[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    const size_t out_w = g->output[2];
    size_t offsets[MAX_TAPS_W];
    tap_offsets(p, g, offsets);
    for (size_t c0 = 0; c0 < out_w; c0 += CHUNK) {
        const size_t width = out_w - c0 < CHUNK ? out_w - c0 : CHUNK;
        __m256i store_mask[VECTORS];
        for (int v = 0; v < VECTORS; v++) {
            size_t valid = width > 8 * (size_t)v ? width - 8 * (size_t)v : 0;
            if (valid > 8) valid = 8;
            store_mask[v] = _mm256_loadu_si256((const __m256i *)(lanes + 8 - valid));
        }
        const int vectors = (int)((width + 7) / 8);
        for (size_t od = 0; od < g->output[0]; od++) {
            for (size_t oh = 0; oh < g->output[1]; oh += 2) {
                const int pair = oh + 1 < g->output[1];
                float *dst = y + (od * g->output[1] + oh) * out_w + c0;
                __m256 acc[2][VECTORS];
#pragma clang loop unroll(full)
                for (int v = 0; v < VECTORS; v++) acc[0][v] = acc[1][v] = _mm256_set1_ps(bias);
                const float *tap_weight = w;
                for (size_t kd = 0; kd < g->kernel[0]; kd++) {
                    size_t pd = od * g->stride[0] + kd * g->dilation[0];
                    for (size_t kh = 0; kh < g->kernel[1]; kh++) {
                        size_t ph = oh * g->stride[1] + kh * g->dilation[1];
                        const float *row0 = p->base + (pd * p->rows + ph) * p->row + c0;
                        const float *row1 = pair ? row0 + g->stride[1] * p->row : row0;
                        for (size_t kw = 0; kw < g->kernel[2]; kw++) {
                            __m256 weight = _mm256_set1_ps(*tap_weight++);
                            const float *src0 = row0 + offsets[kw], *src1 = row1 + offsets[kw];
#pragma clang loop unroll(full)
                            for (int v = 0; v < VECTORS; v++) {
                                if (v < vectors) {
                                    acc[0][v] = _mm256_fmadd_ps(weight, _mm256_loadu_ps(src0 + 8 * v), acc[0][v]);
                                    acc[1][v] = _mm256_fmadd_ps(weight, _mm256_loadu_ps(src1 + 8 * v), acc[1][v]);
                                }
                            }
                        }
                    }
                }
#pragma clang loop unroll(full)
                for (int v = 0; v < VECTORS; v++) _mm256_maskstore_ps(dst + 8 * v, store_mask[v], acc[0][v]);
                if (pair) {
#pragma clang loop unroll(full)
                    for (int v = 0; v < VECTORS; v++) _mm256_maskstore_ps(dst + out_w + 8 * v, store_mask[v], acc[1][v]);
                }
            }
        }
    }
}

static __attribute__((target("avx2,fma"))) void plane_avx2(const float *x, const float *w, float bias, float *y,
                                                          const sq_window3d *g) {
    padded_plane p;
    if (g->kernel[2] <= MAX_TAPS_W && make_padded(x, g, &p)) {
        plane_avx2_padded(&p, w, bias, y, g);
    } else {
        fill(y, g, bias);
        plane(x, w, y, g, axpy_avx2);
    }
}

static inline __attribute__((always_inline, target("avx512f"))) void axpy_avx512(float *y, const float *x, size_t n,
                                                                                float w) {
    __m512 vw = _mm512_set1_ps(w);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(vw, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 mask = (__mmask16)((1u << (n - i)) - 1u);
        __m512 v = _mm512_fmadd_ps(vw, _mm512_maskz_loadu_ps(mask, x + i), _mm512_maskz_loadu_ps(mask, y + i));
        _mm512_mask_storeu_ps(y + i, mask, v);
    }
}

/// Each output row is computed in chunks of up to 64 columns held in four ZMM accumulators across every
/// tap, reading the zero-padded plane, so the output is read and written once instead of once per tap.
static __attribute__((target("avx512f"))) void plane_avx512_padded(const padded_plane *p, const float *w,
                                                                       float bias, float *y, const sq_window3d *g) {
    enum { CHUNK = 64, VECTORS = CHUNK / 16 };
    const size_t out_w = g->output[2];
    size_t offsets[MAX_TAPS_W];
    tap_offsets(p, g, offsets);
    for (size_t c0 = 0; c0 < out_w; c0 += CHUNK) {
        const size_t width = out_w - c0 < CHUNK ? out_w - c0 : CHUNK;
        __mmask16 store_mask[VECTORS];
        for (int v = 0; v < VECTORS; v++) {
            size_t lanes = width > 16 * (size_t)v ? width - 16 * (size_t)v : 0;
            store_mask[v] = (__mmask16)(lanes >= 16 ? 0xFFFF : (1u << lanes) - 1u);
        }
        const int vectors = (int)((width + 15) / 16);
        // The input was copied already: fetch the next plane into L2 while this one computes, a share
        // of its lines per pair of output rows (a CNN's planes come from memory, one after another).
        const char *next = c0 == 0 ? p->next : NULL;
        size_t pairs = g->output[0] * ((g->output[1] + 1) / 2);
        size_t lines_per_pair = (p->next_bytes / 64 + pairs) / (pairs ? pairs : 1);
        const char *next_end = next ? next + p->next_bytes : NULL;
        for (size_t od = 0; od < g->output[0]; od++) {
            // Two output rows at a time: eight independent accumulator chains hide the FMA latency.
            for (size_t oh = 0; oh < g->output[1]; oh += 2) {
                for (size_t line = 0; next && line < lines_per_pair && next < next_end; line++, next += 64)
                    _mm_prefetch(next, _MM_HINT_T1);
                const int pair = oh + 1 < g->output[1];
                float *dst = y + (od * g->output[1] + oh) * out_w + c0;
                // Starting from the bias rather than loading y: a load overlapping the previous row's masked
                // store cannot be forwarded and stalls.
                __m512 acc[2][VECTORS];
#pragma clang loop unroll(full)
                for (int v = 0; v < VECTORS; v++) acc[0][v] = acc[1][v] = _mm512_set1_ps(bias);
                const float *tap_weight = w;
                for (size_t kd = 0; kd < g->kernel[0]; kd++) {
                    size_t pd = od * g->stride[0] + kd * g->dilation[0];
                    for (size_t kh = 0; kh < g->kernel[1]; kh++) {
                        size_t ph = oh * g->stride[1] + kh * g->dilation[1];
                        const float *row0 = p->base + (pd * p->rows + ph) * p->row + c0;
                        // The second output row reads `stride` padded rows further down (stays in the buffer).
                        const float *row1 = pair ? row0 + g->stride[1] * p->row : row0;
                        for (size_t kw = 0; kw < g->kernel[2]; kw++) {
                            __m512 weight = _mm512_set1_ps(*tap_weight++);
                            const float *src0 = row0 + offsets[kw], *src1 = row1 + offsets[kw];
#pragma clang loop unroll(full)
                            for (int v = 0; v < VECTORS; v++) {
                                if (v < vectors) {
                                    acc[0][v] = _mm512_fmadd_ps(weight, _mm512_loadu_ps(src0 + 16 * v), acc[0][v]);
                                    acc[1][v] = _mm512_fmadd_ps(weight, _mm512_loadu_ps(src1 + 16 * v), acc[1][v]);
                                }
                            }
                        }
                    }
                }
#pragma clang loop unroll(full)
                for (int v = 0; v < VECTORS; v++) _mm512_mask_storeu_ps(dst + 16 * v, store_mask[v], acc[0][v]);
                if (pair) {
#pragma clang loop unroll(full)
                    for (int v = 0; v < VECTORS; v++) _mm512_mask_storeu_ps(dst + out_w + 16 * v, store_mask[v], acc[1][v]);
                }
            }
        }
    }
}

/// Per-thread channels-last buffer of the channel-block kernel.
static _Thread_local float *block_buffer;
static _Thread_local size_t block_capacity;

enum { BLOCK_COLUMNS = 8, MAX_BLOCK_TAPS = 64 };

/// Depthwise convolution of 2-D planes with the channels as vector lanes: 16 planes at a time are
/// gathered into a zero-padded channels-last buffer ([row][column][16]), each output position is a
/// 16-lane sum over the taps (weights held in registers, BLOCK_COLUMNS outputs of a row at a time for
/// independent FMA chains), and the results are scattered back. The taps are summed from the bias in
/// the same order as the plane kernels. Returns 0 when the geometry does not suit it.
static __attribute__((target("avx512f"))) int channels_avx512(const float *x, const float *w, const float *bias,
                                                             float *y, size_t channels, const sq_window3d *g) {
    const size_t in_h = g->input[1], in_w = g->input[2], out_h = g->output[1], out_w = g->output[2];
    const size_t k_h = g->kernel[1], k_w = g->kernel[2], taps = k_h * k_w;
    const size_t s_h = g->stride[1], s_w = g->stride[2], d_h = g->dilation[1], d_w = g->dilation[2];
    if (g->input[0] != 1 || g->kernel[0] != 1 || g->output[0] != 1 || taps > MAX_BLOCK_TAPS) return 0;
    const size_t in_plane = in_h * in_w, out_plane = out_h * out_w;
    // 32-bit gather and scatter offsets.
    if (in_plane * 16 > 0x7FFFFFFF || out_plane * 16 > 0x7FFFFFFF) return 0;
    const size_t e_h = (out_h - 1) * s_h + (k_h - 1) * d_h + 1, e_w = (out_w - 1) * s_w + (k_w - 1) * d_w + 1;
    const size_t need = e_h * e_w * 16;
    if (need > block_capacity) {
        free(block_buffer);
        block_buffer = NULL;
        block_capacity = 0;
        void *p = NULL;
        if (posix_memalign(&p, 64, need * sizeof(float)) != 0) return 0;
        block_buffer = p;
        block_capacity = need;
    }
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i in_index = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)in_plane));
    const __m512i out_index = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)out_plane));
    const __m512i tap_index = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)taps));
    for (size_t c0 = 0; c0 < channels; c0 += 16) {
        const size_t lanes = channels - c0 < 16 ? channels - c0 : 16;
        const __mmask16 mask = (__mmask16)(lanes == 16 ? 0xFFFF : (1u << lanes) - 1u);
        memset(block_buffer, 0, need * sizeof(float));
        for (size_t eh = 0; eh < e_h; eh++) {
            ptrdiff_t ih = (ptrdiff_t)eh - g->pad_begin[1];
            if (ih < 0 || ih >= (ptrdiff_t)in_h) continue;
            for (size_t ew = 0; ew < e_w; ew++) {
                ptrdiff_t iw = (ptrdiff_t)ew - g->pad_begin[2];
                if (iw < 0 || iw >= (ptrdiff_t)in_w) continue;
                const float *source = x + c0 * in_plane + (size_t)ih * in_w + (size_t)iw;
                _mm512_store_ps(block_buffer + (eh * e_w + ew) * 16,
                                _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mask, in_index, source, 4));
            }
        }
        __m512 weights[MAX_BLOCK_TAPS];
        for (size_t t = 0; t < taps; t++)
            weights[t] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mask, tap_index, w + c0 * taps + t, 4);
        const __m512 start = bias ? _mm512_maskz_loadu_ps(mask, bias + c0) : _mm512_setzero_ps();
        // The next 16 planes (the next block here or in the caller's next call) into L2 while this block
        // computes, a share per output row; past the input's end the prefetches are harmless.
        const char *next = (const char *)(x + (c0 + 16) * in_plane);
        size_t next_lines = 16 * in_plane * sizeof(float) / 64, lines_per_row = next_lines / out_h + 1;
        for (size_t oh = 0; oh < out_h; oh++) {
            for (size_t line = 0; line < lines_per_row && next_lines > 0; line++, next_lines--, next += 64)
                _mm_prefetch(next, _MM_HINT_T1);
            for (size_t ow0 = 0; ow0 < out_w; ow0 += BLOCK_COLUMNS) {
                const size_t columns = out_w - ow0 < BLOCK_COLUMNS ? out_w - ow0 : BLOCK_COLUMNS;
                __m512 acc[BLOCK_COLUMNS];
#pragma clang loop unroll(full)
                for (int i = 0; i < BLOCK_COLUMNS; i++) acc[i] = start;
                for (size_t kh = 0; kh < k_h; kh++) {
                    const float *row = block_buffer + ((oh * s_h + kh * d_h) * e_w + ow0 * s_w) * 16;
                    for (size_t kw = 0; kw < k_w; kw++) {
                        const __m512 weight = weights[kh * k_w + kw];
                        const float *tap = row + kw * d_w * 16;
#pragma clang loop unroll(full)
                        for (int i = 0; i < BLOCK_COLUMNS; i++) {
                            if ((size_t)i < columns)
                                acc[i] = _mm512_fmadd_ps(weight, _mm512_load_ps(tap + (size_t)i * s_w * 16), acc[i]);
                        }
                    }
                }
#pragma clang loop unroll(full)
                for (int i = 0; i < BLOCK_COLUMNS; i++) {
                    if ((size_t)i < columns)
                        _mm512_mask_i32scatter_ps(y + c0 * out_plane + oh * out_w + ow0 + (size_t)i, mask, out_index,
                                                  acc[i], 4);
                }
            }
        }
    }
    return 1;
}

static __attribute__((target("avx512f"))) void plane_avx512(const float *x, const float *w, float bias, float *y,
                                                           const sq_window3d *g) {
    padded_plane p;
    if (g->kernel[2] <= MAX_TAPS_W && make_padded(x, g, &p)) {
        // Prefetches never fault, so the plane after the last one is harmless.
        p.next = (const char *)(x + g->input[0] * g->input[1] * g->input[2]);
        p.next_bytes = g->input[0] * g->input[1] * g->input[2] * sizeof(float);
        plane_avx512_padded(&p, w, bias, y, g);
    } else {
        fill(y, g, bias);
        plane(x, w, y, g, axpy_avx512);
    }
}
#endif

int sq_conv_depthwise_channels(int level, const float *x, const float *w, const float *bias, float *y,
                               size_t channels, const sq_window3d *g) {
#if defined(__x86_64__) || defined(_M_X64)
    if (sq_sgemm_resolve_level(level) == SQ_SGEMM_LEVEL_AVX512) return channels_avx512(x, w, bias, y, channels, g);
#else
    (void)level; (void)x; (void)w; (void)bias; (void)y; (void)channels; (void)g;
#endif
    return 0;
}

void sq_conv_depthwise_plane(int level, const float *x, const float *w, float bias, float *y, const sq_window3d *g) {
#if defined(__x86_64__) || defined(_M_X64)
    switch (sq_sgemm_resolve_level(level)) {
    case SQ_SGEMM_LEVEL_AVX512: plane_avx512(x, w, bias, y, g); return;
    case SQ_SGEMM_LEVEL_AVX2: plane_avx2(x, w, bias, y, g); return;
    default: break;
    }
#endif
    plane_portable(x, w, bias, y, g);
}
