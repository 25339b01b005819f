// FP32 GEMM driver: B packing, the blocked loop nest, level dispatch, and the portable micro-kernel.
//
// Loop nest (BLIS order): for each block of SQ_SGEMM_NC columns, for each K block of SQ_SGEMM_KC rows
// (the packed B block, KC x NC, stays in L2), for each chunk of up to MR rows of op(A) (read in place;
// MR x KC stays in L1), sweep the micro-kernel over the block's B panels.
#include "CKernels.h"
#include "sgemm_internal.h"

#include <stdlib.h>
#include <string.h>

/// A prefetch into L2 where the compiler offers one (a hint: never faults, may do nothing).
static inline void prefetch_l2(const void *p) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p, 0, 2);
#else
    (void)p;
#endif
}

// MARK: - Level selection

int sq_sgemm_best_level(void) {
#if defined(__x86_64__) || defined(_M_X64)
    sq_cpu_features f = sq_cpu_detect();
    if (f.avx512f) return SQ_SGEMM_LEVEL_AVX512;
    if (f.avx2) return SQ_SGEMM_LEVEL_AVX2;
#endif
    return SQ_SGEMM_LEVEL_PORTABLE;
}

int sq_sgemm_resolve_level(int requested) {
    int best = sq_sgemm_best_level();
    if (requested < 0 || requested > best) return best;
    return requested;
}

static const sq_sgemm_kernel *kernel_for(int level) {
#if defined(__x86_64__) || defined(_M_X64)
    switch (sq_sgemm_resolve_level(level)) {
    case SQ_SGEMM_LEVEL_AVX512: return &sq_sgemm_kernel_avx512;
    case SQ_SGEMM_LEVEL_AVX2: return &sq_sgemm_kernel_avx2;
    default: break;
    }
#else
    (void)level;
#endif
    return &sq_sgemm_kernel_portable;
}

// MARK: - Packing

static size_t round_up_panel(size_t n) { return (n + SQ_SGEMM_PANEL - 1) / SQ_SGEMM_PANEL * SQ_SGEMM_PANEL; }

size_t sq_sgemm_packed_b_count(size_t n, size_t k) { return round_up_panel(n) * k; }

/// Packs rows [k0, k0+kc) and columns [n0, n0+ncols) of op(B) into panels (layout in sgemm_internal.h).
static void pack_b_block(int trans_b, const float *b, size_t ldb, size_t k0, size_t kc, size_t n0,
                         size_t ncols, float *dst) {
    for (size_t p = 0; p * SQ_SGEMM_PANEL < ncols; p++) {
        size_t c0 = n0 + p * SQ_SGEMM_PANEL;
        size_t width = ncols - p * SQ_SGEMM_PANEL;
        if (width > SQ_SGEMM_PANEL) width = SQ_SGEMM_PANEL;
        float *panel = dst + p * SQ_SGEMM_PANEL * kc;
        if (!trans_b) {
            const float *src = b + k0 * ldb + c0;
            if (width == SQ_SGEMM_PANEL) {
                for (size_t k = 0; k < kc; k++) memcpy(panel + k * SQ_SGEMM_PANEL, src + k * ldb, sizeof(float) * SQ_SGEMM_PANEL);
            } else {
                for (size_t k = 0; k < kc; k++) {
                    float *row = panel + k * SQ_SGEMM_PANEL;
                    size_t c = 0;
                    for (; c < width; c++) row[c] = src[k * ldb + c];
                    for (; c < SQ_SGEMM_PANEL; c++) row[c] = 0.0f;
                }
            }
        } else {
            // op(B)[k][c] = B[c][k]: read each source row contiguously, write with stride 16.
            for (size_t c = 0; c < width; c++) {
                const float *src = b + (c0 + c) * ldb + k0;
                for (size_t k = 0; k < kc; k++) panel[k * SQ_SGEMM_PANEL + c] = src[k];
            }
            for (size_t c = width; c < SQ_SGEMM_PANEL; c++)
                for (size_t k = 0; k < kc; k++) panel[k * SQ_SGEMM_PANEL + c] = 0.0f;
        }
    }
}

void sq_sgemm_pack_b(int trans_b, size_t n, size_t k, const float *b, size_t ldb, float *packed) {
    size_t npad = round_up_panel(n);
    for (size_t k0 = 0; k0 < k; k0 += SQ_SGEMM_KC) {
        size_t kc = k - k0 < SQ_SGEMM_KC ? k - k0 : SQ_SGEMM_KC;
        pack_b_block(trans_b, b, ldb, k0, kc, 0, n, packed + k0 * npad);
    }
}

// MARK: - Driver

/// C = beta * C for the K == 0 case (beta == 0 writes zeros without reading C).
static void scale_c(size_t m, size_t n, float beta, float *c, size_t ldc) {
    for (size_t i = 0; i < m; i++) {
        float *row = c + i * ldc;
        if (beta == 0.0f) memset(row, 0, sizeof(float) * n);
        else if (beta != 1.0f) for (size_t j = 0; j < n; j++) row[j] *= beta;
    }
}

/// Source rows of B to prefetch into L2 while a block computes (the next block's, which come from memory
/// when B is a large activation): `rows` rows of `bytes` each, `stride` bytes apart.
typedef struct {
    const char *first;
    size_t rows, bytes, stride;
} prefetch_rows;

/// Issues the prefetches of `lines` more cache lines of `p`, advancing `*row` and `*offset`.
static void prefetch_some(const prefetch_rows *p, size_t lines, size_t *row, size_t *offset) {
    while (lines > 0 && *row < p->rows) {
        prefetch_l2(p->first + *row * p->stride + *offset);
        *offset += 64;
        if (*offset >= p->bytes) { *offset = 0; (*row)++; }
        lines--;
    }
}

/// One K block against one packed B block of `ncols` columns. `a` points at column k0 of op(A) row 0;
/// `c` at column n0 of row 0.
///
/// A is read in place (rows of A, or columns when transposed): a chunk of MR rows x KC stays in L1
/// across the block's tiles. Packing it k-major first was measured on Zen 5 for the BERT shapes and for
/// conv-sized ones (576 x 3136 x 64) and never paid; for narrow blocks (N = 32-64, attention) the copy
/// cost as much as the arithmetic.
///
/// With `epilogue` (on the last K block only), each chunk's rows get it right after their tiles, while
/// they are in L1; its biases are indexed from this block's row 0 and column `n0`.
/// `next` (may be NULL) is prefetched a share per chunk.
static void run_block(const sq_sgemm_kernel *kern, int level, int trans_a, size_t m, size_t ncols, size_t kc,
                      const float *a, size_t lda, const float *bblock, float alpha, float beta, int load_c,
                      float *c, size_t ldc, const sq_epilogue *epilogue, size_t n0, const prefetch_rows *next) {
    // Balanced chunks: M = 64 with MR = 12 runs six chunks of 10-11 rows rather than 5x12 + 4.
    size_t chunks = (m + (size_t)kern->mr - 1) / (size_t)kern->mr;
    size_t row_stride = trans_a ? 1 : lda, k_stride = trans_a ? lda : 1;
    size_t m0 = 0;
    size_t next_row = 0, next_offset = 0;
    size_t next_lines = next ? (next->rows * ((next->bytes + 63) / 64) + chunks - 1) / chunks : 0;
    for (size_t chunk = 0; chunk < chunks; chunk++) {
        if (next) prefetch_some(next, next_lines, &next_row, &next_offset);
        size_t m1 = (chunk + 1) * m / chunks;
        size_t rows = m1 - m0;
        const float *tile_a = trans_a ? a + m0 : a + m0 * lda;
        float *crow = c + m0 * ldc;
        for (size_t n = 0; n < ncols; n += (size_t)kern->nr) {
            size_t cols = ncols - n < (size_t)kern->nr ? ncols - n : (size_t)kern->nr;
            kern->tile(tile_a, row_stride, k_stride, bblock + n * kc, kc, crow + n, ldc, rows, cols, alpha, beta,
                       load_c);
        }
        if (epilogue) {
            sq_epilogue local = *epilogue;
            if (local.row_bias) local.row_bias += m0;
            if (local.column_bias) local.column_bias += n0;
            sq_apply_epilogue(level, crow, ldc, rows, ncols, &local);
        }
        m0 = m1;
    }
}

/// The epilogue alone on columns [n_begin, n_end) (K == 0: C is only scaled). Its column bias is
/// indexed from column 0.
static void epilogue_columns(int level, size_t m, size_t n_begin, size_t n_end, float *c, size_t ldc,
                             const sq_epilogue *epilogue) {
    if (!epilogue) return;
    sq_epilogue local = *epilogue;
    if (local.column_bias) local.column_bias += n_begin;
    sq_apply_epilogue(level, c + n_begin, ldc, m, n_end - n_begin, &local);
}

void sq_sgemm_packed(int level, int trans_a, size_t m, size_t n, size_t k, float alpha, const float *a,
                     size_t lda, const float *packed_b, size_t n_begin, size_t n_end, float beta, float *c,
                     size_t ldc) {
    sq_sgemm_packed_fused(level, trans_a, m, n, k, alpha, a, lda, packed_b, n_begin, n_end, beta, c, ldc, NULL);
}

void sq_sgemm_packed_fused(int level, int trans_a, size_t m, size_t n, size_t k, float alpha, const float *a,
                           size_t lda, const float *packed_b, size_t n_begin, size_t n_end, float beta, float *c,
                           size_t ldc, const sq_epilogue *epilogue) {
    if (n_end > n) n_end = n;
    if (m == 0 || n_begin >= n_end) return;
    level = sq_sgemm_resolve_level(level);
    if (k == 0) {
        scale_c(m, n_end - n_begin, beta, c + n_begin, ldc);
        epilogue_columns(level, m, n_begin, n_end, c, ldc, epilogue);
        return;
    }
    const sq_sgemm_kernel *kern = kernel_for(level);
    size_t npad = round_up_panel(n);
    for (size_t n0 = n_begin; n0 < n_end; n0 += SQ_SGEMM_NC) {
        size_t ncols = n_end - n0 < SQ_SGEMM_NC ? n_end - n0 : SQ_SGEMM_NC;
        for (size_t k0 = 0; k0 < k; k0 += SQ_SGEMM_KC) {
            size_t kc = k - k0 < SQ_SGEMM_KC ? k - k0 : SQ_SGEMM_KC;
            const float *bblock = packed_b + k0 * npad + n0 * kc;
            const float *ablock = trans_a ? a + k0 * lda : a + k0;
            int first = k0 == 0;
            run_block(kern, level, trans_a, m, ncols, kc, ablock, lda, bblock, alpha, first ? beta : 1.0f,
                      first ? beta != 0.0f : 1, c + n0, ldc, k0 + kc == k ? epilogue : NULL, n0, NULL);
        }
    }
}

/// Per-thread B block buffer (SQ_SGEMM_KC x SQ_SGEMM_NC floats), allocated on first use and kept: GEMMs
/// run on a small pool of threads, and a malloc per call would page-fault on every large block.
static _Thread_local float *scratch_b;

void sq_sgemm(int level, int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha, const float *a,
              size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc) {
    sq_sgemm_fused(level, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, NULL);
}

void sq_sgemm_fused(int level, int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha, const float *a,
                    size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc,
                    const sq_epilogue *epilogue) {
    if (m == 0 || n == 0) return;
    level = sq_sgemm_resolve_level(level);
    if (k == 0) {
        scale_c(m, n, beta, c, ldc);
        epilogue_columns(level, m, 0, n, c, ldc, epilogue);
        return;
    }
    if (!scratch_b) {
        void *p = NULL;
        if (posix_memalign(&p, 64, sizeof(float) * SQ_SGEMM_KC * SQ_SGEMM_NC) != 0) p = NULL;
        scratch_b = p;
    }
    if (!scratch_b) {
        // No memory for a block: fall back to a plain loop rather than failing.
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) {
                double sum = 0;
                for (size_t p = 0; p < k; p++) {
                    float av = trans_a ? a[p * lda + i] : a[i * lda + p];
                    float bv = trans_b ? b[j * ldb + p] : b[p * ldb + j];
                    sum += (double)av * bv;
                }
                float prior = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
                c[i * ldc + j] = alpha * (float)sum + prior;
            }
        epilogue_columns(level, m, 0, n, c, ldc, epilogue);
        return;
    }
    const sq_sgemm_kernel *kern = kernel_for(level);
    for (size_t n0 = 0; n0 < n; n0 += SQ_SGEMM_NC) {
        size_t ncols = n - n0 < SQ_SGEMM_NC ? n - n0 : SQ_SGEMM_NC;
        for (size_t k0 = 0; k0 < k; k0 += SQ_SGEMM_KC) {
            size_t kc = k - k0 < SQ_SGEMM_KC ? k - k0 : SQ_SGEMM_KC;
            pack_b_block(trans_b, b, ldb, k0, kc, n0, ncols, scratch_b);
            const float *ablock = trans_a ? a + k0 * lda : a + k0;
            int first = k0 == 0;
            // The next block's rows of B (this K block of the next columns, or the next K block).
            size_t next_n0 = k0 + kc < k ? n0 : n0 + SQ_SGEMM_NC, next_k0 = k0 + kc < k ? k0 + kc : 0;
            prefetch_rows next = {0};
            if (!trans_b && next_n0 < n) {
                size_t next_kc = k - next_k0 < SQ_SGEMM_KC ? k - next_k0 : SQ_SGEMM_KC;
                size_t next_cols = n - next_n0 < SQ_SGEMM_NC ? n - next_n0 : SQ_SGEMM_NC;
                next = (prefetch_rows){(const char *)(b + next_k0 * ldb + next_n0), next_kc, next_cols * sizeof(float),
                                       ldb * sizeof(float)};
            }
            run_block(kern, level, trans_a, m, ncols, kc, ablock, lda, scratch_b, alpha, first ? beta : 1.0f,
                      first ? beta != 0.0f : 1, c + n0, ldc, k0 + kc == k ? epilogue : NULL, n0,
                      next.first ? &next : NULL);
        }
    }
}

// MARK: - Portable micro-kernel (4 x 16, plain C; compilers vectorise it to the baseline SIMD)

#define PORTABLE_MR 4

static inline __attribute__((always_inline)) void tile_portable(
    const int rows, const float *a, size_t ars, size_t aks, const float *b, size_t kc, float *c, size_t ldc,
    size_t cols, float alpha, float beta, int load_c) {
    float acc[PORTABLE_MR][SQ_SGEMM_PANEL];
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < SQ_SGEMM_PANEL; j++) acc[r][j] = 0.0f;
    for (size_t k = 0; k < kc; k++) {
        const float *bk = b + k * SQ_SGEMM_PANEL;
        for (int r = 0; r < rows; r++) {
            float av = a[(size_t)r * ars + k * aks];
            for (int j = 0; j < SQ_SGEMM_PANEL; j++) acc[r][j] += av * bk[j];
        }
    }
    for (int r = 0; r < rows; r++) {
        float *crow = c + (size_t)r * ldc;
        for (size_t j = 0; j < cols; j++) {
            float v = alpha * acc[r][j];
            crow[j] = load_c ? v + beta * crow[j] : v;
        }
    }
}

static void tile_portable_any(const float *a, size_t ars, size_t aks, const float *b, size_t kc, float *c,
                              size_t ldc, size_t rows, size_t cols, float alpha, float beta, int load_c) {
    switch (rows) {
    case 1: tile_portable(1, a, ars, aks, b, kc, c, ldc, cols, alpha, beta, load_c); break;
    case 2: tile_portable(2, a, ars, aks, b, kc, c, ldc, cols, alpha, beta, load_c); break;
    case 3: tile_portable(3, a, ars, aks, b, kc, c, ldc, cols, alpha, beta, load_c); break;
    default: tile_portable(4, a, ars, aks, b, kc, c, ldc, cols, alpha, beta, load_c); break;
    }
}

const sq_sgemm_kernel sq_sgemm_kernel_portable = {PORTABLE_MR, SQ_SGEMM_PANEL, tile_portable_any};
