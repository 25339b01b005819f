// AVX2 + FMA SGEMM micro-kernel: up to 6 rows x 16 columns (12 YMM accumulators, two B vectors, one
// broadcast). Compiled per function with target("avx2,fma"); the driver calls it only when
// sq_cpu_detect() reports both.
#include "sgemm_internal.h"

#include <stdint.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#define MR 6
#define PREFETCH_ROWS 64
#define TARGET __attribute__((target("avx2,fma")))

/// Lane masks for a partial 8-float store: entries [8 - n, 16 - n) have n leading -1s.
static const int32_t lane_mask_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

static inline __attribute__((always_inline)) TARGET void store_row(
    float *crow, __m256 acc, size_t width, __m256 valpha, __m256 vbeta, int load_c) {
    __m256 v = _mm256_mul_ps(valpha, acc);
    if (width >= 8) {
        if (load_c) v = _mm256_fmadd_ps(vbeta, _mm256_loadu_ps(crow), v);
        _mm256_storeu_ps(crow, v);
    } else if (width > 0) {
        __m256i mask = _mm256_loadu_si256((const __m256i *)(lane_mask_table + 8 - width));
        if (load_c) v = _mm256_fmadd_ps(vbeta, _mm256_maskload_ps(crow, mask), v);
        _mm256_maskstore_ps(crow, mask, v);
    }
}

static inline __attribute__((always_inline)) TARGET void tile(
    const int rows, const int kmajor, const float *a, size_t ars, size_t aks, const float *b, size_t kc, float *c,
    size_t ldc, size_t cols, float alpha, float beta, int load_c) {
    __m256 acc0[MR], acc1[MR];
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) {
        if (r < rows) { acc0[r] = _mm256_setzero_ps(); acc1[r] = _mm256_setzero_ps(); }
    }
    for (size_t k = 0; k < kc; k++) {
        // Fetch packed B 64 rows ahead (see the AVX-512 kernel).
        _mm_prefetch((const char *)(b + (k + PREFETCH_ROWS) * SQ_SGEMM_PANEL), _MM_HINT_T0);
        __m256 vb0 = _mm256_loadu_ps(b + k * SQ_SGEMM_PANEL);
        __m256 vb1 = _mm256_loadu_ps(b + k * SQ_SGEMM_PANEL + 8);
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            if (r < rows) {
                __m256 va = _mm256_broadcast_ss(kmajor ? a + k * aks + (size_t)r : a + (size_t)r * ars + k);
                acc0[r] = _mm256_fmadd_ps(va, vb0, acc0[r]);
                acc1[r] = _mm256_fmadd_ps(va, vb1, acc1[r]);
            }
        }
    }
    __m256 valpha = _mm256_set1_ps(alpha), vbeta = _mm256_set1_ps(beta);
    size_t width1 = cols > 8 ? cols - 8 : 0;
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) {
        if (r < rows) {
            float *crow = c + (size_t)r * ldc;
            store_row(crow, acc0[r], cols, valpha, vbeta, load_c);
            store_row(crow + 8, acc1[r], width1, valpha, vbeta, load_c);
        }
    }
}

#define ARGS b, kc, c, ldc, cols, alpha, beta, load_c
#define CASE(R)                                                                 \
    case R:                                                                     \
        if (kmajor) tile(R, 1, a, 1, aks, ARGS); else tile(R, 0, a, ars, 1, ARGS); \
        break;

static TARGET void tile_any(const float *a, size_t ars, size_t aks, const float *b, size_t kc, float *c,
                            size_t ldc, size_t rows, size_t cols, float alpha, float beta, int load_c) {
    int kmajor = ars == 1;
    switch (rows) {
    CASE(1) CASE(2) CASE(3) CASE(4) CASE(5)
    default: CASE(MR)
    }
}

const sq_sgemm_kernel sq_sgemm_kernel_avx2 = {MR, SQ_SGEMM_PANEL, tile_any};

#endif
