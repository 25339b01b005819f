// AVX-512F SGEMM micro-kernel: up to 12 rows x 32 columns (24 ZMM accumulators, two B vectors, one
// broadcast of A at a time). Compiled per function with target("avx512f"), so
// the package needs no global ISA flags; the driver calls it only when sq_cpu_detect() reports AVX-512F.
#include "sgemm_internal.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#define MR 12
#define PREFETCH_ROWS 64
#define TARGET __attribute__((target("avx512f")))

static inline __attribute__((always_inline)) TARGET void tile(
    const int rows, const int wide, const int kmajor, const float *a, size_t ars, size_t aks, const float *b,
    size_t kc, float *c, size_t ldc, size_t cols, float alpha, float beta, int load_c) {
    __m512 acc0[MR], acc1[MR];
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) {
        if (r < rows) { acc0[r] = _mm512_setzero_ps(); acc1[r] = _mm512_setzero_ps(); }
    }
    const float *b1 = b + SQ_SGEMM_PANEL * kc;
    for (size_t k = 0; k < kc; k++) {
        // Packed weights of a large model come from memory, not cache: fetch 64 rows (4 KB) ahead. A
        // prefetch past the panel's end is harmless (prefetches never fault).
        _mm_prefetch((const char *)(b + (k + PREFETCH_ROWS) * SQ_SGEMM_PANEL), _MM_HINT_T0);
        if (wide) _mm_prefetch((const char *)(b1 + (k + PREFETCH_ROWS) * SQ_SGEMM_PANEL), _MM_HINT_T0);
        // Weights read by rows (a Conv's, a MatMul's A) stream from memory: while this chunk of rows
        // works, fetch the next chunk's rows (they follow these ones), one line of each per 16 k. On the
        // last chunk the addresses pass the end of A, which prefetches may do.
        if (!kmajor && (k & 15) == 0) {
#pragma clang loop unroll(full)
            for (int r = 0; r < MR; r++)
                if (r < rows) _mm_prefetch((const char *)(a + (size_t)(rows + r) * ars + k), _MM_HINT_T0);
        }
        __m512 vb0 = _mm512_loadu_ps(b + k * SQ_SGEMM_PANEL);
        __m512 vb1 = wide ? _mm512_loadu_ps(b1 + k * SQ_SGEMM_PANEL) : _mm512_setzero_ps();
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            if (r < rows) {
                __m512 va = _mm512_set1_ps(kmajor ? a[k * aks + (size_t)r] : a[(size_t)r * ars + k]);
                acc0[r] = _mm512_fmadd_ps(va, vb0, acc0[r]);
                if (wide) acc1[r] = _mm512_fmadd_ps(va, vb1, acc1[r]);
            }
        }
    }
    __mmask16 mask0 = cols >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << cols) - 1u);
    __mmask16 mask1 = cols >= 32 ? (__mmask16)0xFFFF : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1u) : 0;
    __m512 valpha = _mm512_set1_ps(alpha), vbeta = _mm512_set1_ps(beta);
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) {
        if (r < rows) {
            float *crow = c + (size_t)r * ldc;
            __m512 v0 = _mm512_mul_ps(valpha, acc0[r]);
            if (load_c) v0 = _mm512_fmadd_ps(vbeta, _mm512_maskz_loadu_ps(mask0, crow), v0);
            _mm512_mask_storeu_ps(crow, mask0, v0);
            if (wide) {
                __m512 v1 = _mm512_mul_ps(valpha, acc1[r]);
                if (load_c) v1 = _mm512_fmadd_ps(vbeta, _mm512_maskz_loadu_ps(mask1, crow + 16), v1);
                _mm512_mask_storeu_ps(crow + 16, mask1, v1);
            }
        }
    }
}

#define ARGS b, kc, c, ldc, cols, alpha, beta, load_c
#define CASE(R)                                                                             \
    case R:                                                                                 \
        if (kmajor) {                                                                       \
            if (wide) tile(R, 1, 1, a, 1, aks, ARGS); else tile(R, 0, 1, a, 1, aks, ARGS);  \
        } else {                                                                            \
            if (wide) tile(R, 1, 0, a, ars, 1, ARGS); else tile(R, 0, 0, a, ars, 1, ARGS);  \
        }                                                                                   \
        break;

static TARGET void tile_any(const float *a, size_t ars, size_t aks, const float *b, size_t kc, float *c,
                            size_t ldc, size_t rows, size_t cols, float alpha, float beta, int load_c) {
    // A 16-column tail reads only its own panel: the neighbour may not exist.
    int wide = cols > 16;
    int kmajor = ars == 1;
    switch (rows) {
    CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6)
    CASE(7) CASE(8) CASE(9) CASE(10) CASE(11)
    default: CASE(MR)
    }
}

const sq_sgemm_kernel sq_sgemm_kernel_avx512 = {MR, 2 * SQ_SGEMM_PANEL, tile_any};

#endif
