// int8 GEMM driver (uint8 A x int8 B -> int32 C): level availability, B packing, the blocked loop nest,
// and a plain C tile used only when no SIMD level is available or scratch memory runs out.
//
// Loop nest (as for SGEMM): for each block of SQ_QGEMM_NC columns, for each block of SQ_QGEMM_KC rows of
// k (that block of packed B stays in L2), for each chunk of up to mr rows of A (read in
// place; mr x KC bytes stay in L1), sweep the micro-kernel over the block's panels.
#include "CKernels.h"
#include "qgemm_internal.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

// MARK: - Level availability

/// Linux hands out AMX tile state only on request (the tile data is 8 KB of context per thread), once
/// per process: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA).
static int request_amx_permission(void) {
#if defined(__linux__) && defined(SYS_arch_prctl)
    const long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18;
    return syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0;
#else
    return 0;
#endif
}

static int amx_permitted(void) {
    // 0 = not asked yet, 1 = granted, 2 = refused. Two threads may both ask; the answer is the same.
    static int state = 0;
    int seen = __atomic_load_n(&state, __ATOMIC_ACQUIRE);
    if (seen == 0) {
        seen = request_amx_permission() ? 1 : 2;
        __atomic_store_n(&state, seen, __ATOMIC_RELEASE);
    }
    return seen == 1;
}
#endif

int sq_qgemm_level_available(int level) {
#if defined(__x86_64__) || defined(_M_X64)
    sq_cpu_features f = sq_cpu_detect();
    switch (level) {
    case SQ_QGEMM_LEVEL_AVX2: return f.avx2;
    case SQ_QGEMM_LEVEL_AVX512BW: return f.avx512bw;
    case SQ_QGEMM_LEVEL_AVX512VNNI: return f.avx512vnni;
    case SQ_QGEMM_LEVEL_AMX: return f.amx_int8 && f.avx512vnni && amx_permitted();
    default: return 0;
    }
#else
    (void)level;
    return 0;
#endif
}

// MARK: - Packing

size_t sq_qgemm_packed_b_size(size_t n, size_t k) {
    return (n + SQ_QGEMM_PANEL - 1) / SQ_QGEMM_PANEL * sq_qgemm_panel_stride(k);
}

void sq_qgemm_pack_b(int transposed, size_t n, size_t k, const void *values, size_t ldb, uint8_t flip,
                     int8_t *packed) {
    const uint8_t *b = values;
    uint8_t *out = (uint8_t *)packed;
    size_t stride = sq_qgemm_panel_stride(k);
    memset(out, 0, sq_qgemm_packed_b_size(n, k));
    for (size_t p = 0; p * SQ_QGEMM_PANEL < n; p++) {
        size_t first = p * SQ_QGEMM_PANEL;
        size_t width = n - first < SQ_QGEMM_PANEL ? n - first : SQ_QGEMM_PANEL;
        uint8_t *panel = out + p * stride;
        if (transposed) {
            // B[kk][col] = values[col][kk]: each source row is one column, read contiguously.
            for (size_t c = 0; c < width; c++) {
                const uint8_t *src = b + (first + c) * ldb;
                for (size_t kk = 0; kk < k; kk++) panel[(kk >> 2) * SQ_QGEMM_GROUP_BYTES + c * 4 + (kk & 3)] = src[kk] ^ flip;
            }
        } else {
            for (size_t kk = 0; kk < k; kk++) {
                const uint8_t *src = b + kk * ldb + first;
                uint8_t *dst = panel + (kk >> 2) * SQ_QGEMM_GROUP_BYTES + (kk & 3);
                for (size_t c = 0; c < width; c++) dst[c * 4] = src[c] ^ flip;
            }
        }
    }
}

// MARK: - Plain C tile (fallback)

static void tile_plain(const uint8_t *a, size_t lda, const int8_t *b, size_t panel_stride, size_t kc, int32_t *c,
                       size_t ldc, size_t rows, size_t cols, int accumulate) {
    for (size_t r = 0; r < rows; r++) {
        for (size_t j = 0; j < cols; j++) {
            const int8_t *panel = b + (j / SQ_QGEMM_PANEL) * panel_stride + (j % SQ_QGEMM_PANEL) * 4;
            uint32_t sum = 0;  // unsigned: wraps like the int32 accumulators of the SIMD kernels
            for (size_t kk = 0; kk < kc; kk++)
                sum += (uint32_t)((int32_t)a[r * lda + kk] * panel[(kk >> 2) * SQ_QGEMM_GROUP_BYTES + (kk & 3)]);
            int32_t value = (int32_t)sum;
            c[r * ldc + j] = accumulate ? (int32_t)((uint32_t)c[r * ldc + j] + (uint32_t)value) : value;
        }
    }
}

static const sq_qgemm_kernel kernel_plain = {4, SQ_QGEMM_PANEL, tile_plain};

static const sq_qgemm_kernel *kernel_for(int level) {
#if defined(__x86_64__) || defined(_M_X64)
    // AMX falls back to VNNI here (for its row/column tails and when it lacks scratch memory).
    if (level >= SQ_QGEMM_LEVEL_AVX512VNNI && sq_qgemm_level_available(SQ_QGEMM_LEVEL_AVX512VNNI))
        return &sq_qgemm_kernel_avx512vnni;
    if (level >= SQ_QGEMM_LEVEL_AVX512BW && sq_qgemm_level_available(SQ_QGEMM_LEVEL_AVX512BW))
        return &sq_qgemm_kernel_avx512bw;
    if (level >= SQ_QGEMM_LEVEL_AVX2 && sq_qgemm_level_available(SQ_QGEMM_LEVEL_AVX2)) return &sq_qgemm_kernel_avx2;
#else
    (void)level;
#endif
    return &kernel_plain;
}

// MARK: - Driver

/// Columns [n0, n0 + ncols) with n0 a multiple of 16; `c0` points at C's column n0 of row 0.
static void run_blocks(const sq_qgemm_kernel *kern, size_t m, size_t k, const uint8_t *a, size_t lda,
                       const int8_t *packed_b, size_t n0, size_t ncols, int32_t *c0, size_t ldc) {
    size_t stride = sq_qgemm_panel_stride(k);
    // Balanced chunks: M = 20 with mr = 8 runs three chunks of 6-7 rows rather than 8 + 8 + 4.
    size_t chunks = (m + (size_t)kern->mr - 1) / (size_t)kern->mr;
    for (size_t nb = 0; nb < ncols; nb += SQ_QGEMM_NC) {
        size_t nc = ncols - nb < SQ_QGEMM_NC ? ncols - nb : SQ_QGEMM_NC;
        for (size_t k0 = 0; k0 < k; k0 += SQ_QGEMM_KC) {
            size_t kc = k - k0 < SQ_QGEMM_KC ? k - k0 : SQ_QGEMM_KC;
            const int8_t *block = packed_b + (n0 + nb) / SQ_QGEMM_PANEL * stride + k0 / 4 * SQ_QGEMM_GROUP_BYTES;
            size_t m0 = 0;
            for (size_t chunk = 0; chunk < chunks; chunk++) {
                size_t m1 = (chunk + 1) * m / chunks;
                for (size_t j = 0; j < nc; j += (size_t)kern->nr) {
                    size_t cols = nc - j < (size_t)kern->nr ? nc - j : (size_t)kern->nr;
                    kern->tile(a + m0 * lda + k0, lda, block + j / SQ_QGEMM_PANEL * stride, stride, kc,
                               c0 + m0 * ldc + nb + j, ldc, m1 - m0, cols, k0 > 0);
                }
                m0 = m1;
            }
        }
    }
}

/// Columns [n_begin, n_end) with n_begin a multiple of 16; `c0` points at C's column n_begin.
static void run_aligned(int level, size_t m, size_t n, size_t k, const uint8_t *a, size_t lda,
                        const int8_t *packed_b, size_t n_begin, size_t n_end, int32_t *c0, size_t ldc) {
#if defined(__x86_64__) || defined(_M_X64)
    if (level == SQ_QGEMM_LEVEL_AMX && sq_qgemm_level_available(SQ_QGEMM_LEVEL_AMX) &&
        sq_qgemm_amx(m, n, k, a, lda, packed_b, n_begin, n_end, c0 - n_begin, ldc))
        return;
#else
    (void)n;
#endif
    run_blocks(kernel_for(level), m, k, a, lda, packed_b, n_begin, n_end - n_begin, c0, ldc);
}

void sq_qgemm_u8s8(int level, size_t m, size_t n, size_t k, const uint8_t *a, size_t lda, const int8_t *packed_b,
                   size_t n_begin, size_t n_end, int32_t *c, size_t ldc) {
    if (n_end > n) n_end = n;
    if (m == 0 || n_begin >= n_end) return;
    if (k == 0) {
        for (size_t i = 0; i < m; i++) memset(c + i * ldc + n_begin, 0, sizeof(int32_t) * (n_end - n_begin));
        return;
    }
    size_t head = n_begin % SQ_QGEMM_PANEL;
    if (head) {
        // A start inside a panel: compute the whole panel into scratch and copy the wanted columns.
        size_t base = n_begin - head;
        size_t stop = base + SQ_QGEMM_PANEL < n_end ? base + SQ_QGEMM_PANEL : n_end;
        int32_t *scratch = malloc(sizeof(int32_t) * SQ_QGEMM_PANEL * m);
        if (scratch) {
            run_aligned(level, m, n, k, a, lda, packed_b, base, stop, scratch, SQ_QGEMM_PANEL);
            for (size_t i = 0; i < m; i++)
                memcpy(c + i * ldc + n_begin, scratch + i * SQ_QGEMM_PANEL + head, sizeof(int32_t) * (stop - n_begin));
            free(scratch);
        } else {
            const int8_t *panel = packed_b + base / SQ_QGEMM_PANEL * sq_qgemm_panel_stride(k);
            for (size_t j = n_begin; j < stop; j++)
                tile_plain(a, lda, panel + (j - base) * 4, 0, k, c + j, ldc, m, 1, 0);
        }
        n_begin = stop;
        if (n_begin >= n_end) return;
    }
    run_aligned(level, m, n, k, a, lda, packed_b, n_begin, n_end, c + n_begin, ldc);
}

// MARK: - Clock calibration for benchmarks

uint64_t sq_dependent_add_chain(uint64_t iterations) {
    uint64_t x = iterations;
#if defined(__x86_64__) || defined(_M_X64)
    for (uint64_t i = 0; i < iterations; i++) {
        // 64 adds, each waiting for the previous one: 64 cycles per iteration at one add per cycle.
        __asm__ volatile(
            ".rept 64\n\t"
            "add $1, %0\n\t"
            ".endr"
            : "+r"(x));
    }
#endif
    return x;
}
