// Direct convolution of one input plane with one filter plane (depthwise Conv): for every kernel tap,
// y[o] += w[tap] * x[o * stride - pad + tap * dilation] over the outputs whose tap lands inside x. The
// innermost loop runs along an output row; with unit stride it is an AXPY, vectorised per ISA level
// (AVX-512F / AVX2+FMA target attributes on the functions, chosen at run time) and plain C otherwise.
#include "CKernels.h"

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

static void plane_portable(const float *x, const float *w, float *y, const sq_window3d *g) {
    plane(x, w, y, g, axpy_portable);
}

#if defined(__x86_64__) || defined(_M_X64)
static inline __attribute__((always_inline, target("avx2,fma"))) void axpy_avx2(float *y, const float *x, size_t n,
                                                                               float w) {
    __m256 vw = _mm256_set1_ps(w);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(vw, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += w * x[i];
}

static __attribute__((target("avx2,fma"))) void plane_avx2(const float *x, const float *w, float *y,
                                                          const sq_window3d *g) {
    plane(x, w, y, g, axpy_avx2);
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

static __attribute__((target("avx512f"))) void plane_avx512(const float *x, const float *w, float *y,
                                                           const sq_window3d *g) {
    plane(x, w, y, g, axpy_avx512);
}
#endif

void sq_conv_depthwise_plane(int level, const float *x, const float *w, float *y, const sq_window3d *g) {
#if defined(__x86_64__) || defined(_M_X64)
    switch (sq_sgemm_resolve_level(level)) {
    case SQ_SGEMM_LEVEL_AVX512: plane_avx512(x, w, y, g); return;
    case SQ_SGEMM_LEVEL_AVX2: plane_avx2(x, w, y, g); return;
    default: break;
    }
#endif
    plane_portable(x, w, y, g);
}
