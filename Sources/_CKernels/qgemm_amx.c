// AMX-INT8 int8 GEMM: TDPBUSD multiplies a 16 x 64 uint8 tile of A by a 16 x 64 int8 tile of B (16
// groups of four k values x 16 columns, exactly one stretch of a packed panel) into a 16 x 16 int32 tile
// of C. Blocks of 32 x 32 of C stay in four tiles over the whole of k (tiles 0-3), with two tiles of A
// (4, 5) and two of B (6, 7). A is copied per 32 rows into a zero-padded buffer so tiles never read
// past its rows or its k; packed B is already padded to whole tiles (see qgemm_internal.h).
// Compiled per function with target("amx-tile,amx-int8"); the driver calls it only after the OS granted
// tile state (sq_qgemm_level_available).
#include "CKernels.h"
#include "qgemm_internal.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define TARGET __attribute__((target("amx-tile,amx-int8")))
#define TILE_ROWS 16
#define TILE_BYTES 64
#define BLOCK 32

/// The 64-byte operand of LDTILECFG: palette 1, then bytes per row and row count of each tile.
typedef struct {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
} tile_config;

/// Per-thread copy of 32 rows of A (grown on demand, kept: GEMMs run on a small pool of threads).
static _Thread_local uint8_t *a_buffer;
static _Thread_local size_t a_buffer_size;

static uint8_t *a_scratch(size_t size) {
    if (size <= a_buffer_size) return a_buffer;
    void *p = NULL;
    if (posix_memalign(&p, 64, size) != 0) return NULL;
    free(a_buffer);
    a_buffer = p;
    a_buffer_size = size;
    return a_buffer;
}

static TARGET void run_tiles(size_t m, size_t k, const uint8_t *a, size_t lda, const int8_t *packed_b,
                             size_t n_begin, size_t n_end, int32_t *c, size_t ldc, uint8_t *buffer) {
    const size_t stride = sq_qgemm_panel_stride(k);
    const size_t padded_k = sq_qgemm_padded_groups(k) * 4;  // a multiple of 64
    const size_t steps = padded_k / TILE_BYTES;
    tile_config config;
    memset(&config, 0, sizeof config);
    config.palette = 1;
    for (int t = 0; t < 8; t++) {
        config.bytes_per_row[t] = TILE_BYTES;
        config.rows[t] = TILE_ROWS;
    }
    _tile_loadconfig(&config);
    int32_t block[BLOCK * BLOCK];
    for (size_t m0 = 0; m0 < m; m0 += BLOCK) {
        const size_t rows = m - m0 < BLOCK ? m - m0 : BLOCK;
        // Rows past m and bytes past k are zero, so the padded products add nothing.
        memset(buffer, 0, BLOCK * padded_k);
        for (size_t r = 0; r < rows; r++) memcpy(buffer + r * padded_k, a + (m0 + r) * lda, k);
        const int two_a = rows > TILE_ROWS;
        const uint8_t *a1 = buffer + TILE_ROWS * padded_k;
        for (size_t n0 = n_begin; n0 < n_end; n0 += BLOCK) {
            const int two_b = n0 + SQ_QGEMM_PANEL < n_end;
            const int8_t *b0 = packed_b + n0 / SQ_QGEMM_PANEL * stride, *b1 = b0 + stride;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (size_t s = 0; s < steps; s++) {
                // One step is 64 values of k: 64 bytes of each A row, 16 groups (1 KB) of each panel.
                _tile_loadd(4, buffer + s * TILE_BYTES, padded_k);
                _tile_loadd(6, b0 + s * TILE_ROWS * SQ_QGEMM_GROUP_BYTES, SQ_QGEMM_GROUP_BYTES);
                _tile_dpbusd(0, 4, 6);
                if (two_b) {
                    _tile_loadd(7, b1 + s * TILE_ROWS * SQ_QGEMM_GROUP_BYTES, SQ_QGEMM_GROUP_BYTES);
                    _tile_dpbusd(1, 4, 7);
                }
                if (two_a) {
                    _tile_loadd(5, a1 + s * TILE_BYTES, padded_k);
                    _tile_dpbusd(2, 5, 6);
                    if (two_b) _tile_dpbusd(3, 5, 7);
                }
            }
            const size_t row_bytes = BLOCK * sizeof(int32_t);
            _tile_stored(0, block, row_bytes);
            if (two_b) _tile_stored(1, block + TILE_ROWS, row_bytes);
            if (two_a) {
                _tile_stored(2, block + TILE_ROWS * BLOCK, row_bytes);
                if (two_b) _tile_stored(3, block + TILE_ROWS * BLOCK + TILE_ROWS, row_bytes);
            }
            const size_t cols = n_end - n0 < BLOCK ? n_end - n0 : BLOCK;
            for (size_t r = 0; r < rows; r++) memcpy(c + (m0 + r) * ldc + n0, block + r * BLOCK, sizeof(int32_t) * cols);
        }
    }
    _tile_release();
}

int sq_qgemm_amx(size_t m, size_t n, size_t k, const uint8_t *a, size_t lda, const int8_t *packed_b,
                 size_t n_begin, size_t n_end, int32_t *c, size_t ldc) {
    (void)n;
    const size_t padded_k = sq_qgemm_padded_groups(k) * 4;
    uint8_t *buffer = a_scratch(BLOCK * padded_k);
    if (!buffer) return 0;
    run_tiles(m, k, a, lda, packed_b, n_begin, n_end, c, ldc, buffer);
    return 1;
}

#endif
