// Private to the int8 GEMM files: the packed-B layout and the micro-kernel contract of each ISA variant.
//
// Packed B (k x n int8): columns are cut into panels of 16 (the last zero-padded). A panel stores its rows
// in groups of 4: group g is 64 bytes, column c's four values B[4g..4g+3][c] at bytes 4c..4c+3 (rows past
// k are zero). That is exactly one ZMM operand of vpdpbusd (16 int32 lanes, 4 bytes each) and one row
// of an AMX B tile, so every level reads the same bytes. The group count is padded to a multiple of 16
// so that an AMX tile of 16 groups (64 rows of k) never reads past a panel; the other kernels stop at
// the last real group. Panel p starts at p * panel_stride bytes, panel_stride = 64 * padded groups.
#ifndef SWIFTQUANT_QGEMM_INTERNAL_H
#define SWIFTQUANT_QGEMM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#define SQ_QGEMM_PANEL 16
#define SQ_QGEMM_GROUP_BYTES 64
/// Rows of k per L2-resident block of packed B (a multiple of 64, so blocks start on an AMX step) and
/// columns per block (a multiple of every kernel's width: 16, 32, 48); a block is at most 576 KB. Swept
/// on Zen 5 (1 MB L2) at 1024^3 and the BERT shapes: KC 256-1024 x NC 192-1152, this pair was best.
#define SQ_QGEMM_KC 1024
#define SQ_QGEMM_NC 576

static inline size_t sq_qgemm_padded_groups(size_t k) { return ((k + 3) / 4 + 15) / 16 * 16; }
static inline size_t sq_qgemm_panel_stride(size_t k) { return sq_qgemm_padded_groups(k) * SQ_QGEMM_GROUP_BYTES; }

/// Computes a rows x cols tile of C over kc rows of k: C (+)= A[rows x kc] . B[kc x cols]. `a` points at
/// A's first row at the block's first k (a multiple of 4), `b` at the first panel's group for that k;
/// further panels follow every `panel_stride` bytes. `kc` may end in a partial group only on the last
/// block of k; A is never read past its kc bytes. Rows <= the kernel's mr, cols <= nr. With
/// `accumulate` the tile is added to C, otherwise it overwrites C.
typedef void (*sq_qgemm_tile_fn)(const uint8_t *a, size_t lda, const int8_t *b, size_t panel_stride, size_t kc,
                                 int32_t *c, size_t ldc, size_t rows, size_t cols, int accumulate);

typedef struct {
    int mr;  ///< rows per tile
    int nr;  ///< columns per tile (a multiple of 16)
    sq_qgemm_tile_fn tile;
} sq_qgemm_kernel;

#if defined(__x86_64__) || defined(_M_X64)
extern const sq_qgemm_kernel sq_qgemm_kernel_avx2;
extern const sq_qgemm_kernel sq_qgemm_kernel_avx512bw;
extern const sq_qgemm_kernel sq_qgemm_kernel_avx512vnni;

/// The AMX path has its own loop nest (C stays in tiles over the whole of k). `n_begin` is a multiple
/// of 16. Returns 0 when it could not get scratch memory (the caller falls back to VNNI).
int sq_qgemm_amx(size_t m, size_t n, size_t k, const uint8_t *a, size_t lda, const int8_t *packed_b,
                 size_t n_begin, size_t n_end, int32_t *c, size_t ldc);
#endif

#endif
