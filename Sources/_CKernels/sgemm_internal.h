// Private to the SGEMM files: the packed-B layout and the micro-kernel contract every ISA variant fills.
//
// Packed B (op(B) is K x N): K is cut into blocks of SQ_SGEMM_KC rows (the last may be shorter). Inside a
// block of kc rows, columns are cut into panels of SQ_SGEMM_PANEL (16) columns, the last zero-padded; a
// panel stores its kc rows one after another, 16 floats each. Block kb starts at k0 * Npad, panel p of
// that block at p * 16 * kc. The layout does not depend on the ISA level, so weights packed once work
// with every kernel; a 32-column kernel reads two neighbouring panels.
//
// A micro-kernel reads op(A) in place through strides: element (r, k) of a tile is
// a[r * a_row_stride + k * a_k_stride]. Every kernel has two instantiations: k-major (a_row_stride == 1,
// a transposed A: a[k * lda + r]) and row-major (a_k_stride == 1, A by rows: a[r * lda + k]).
#ifndef SWIFTQUANT_SGEMM_INTERNAL_H
#define SWIFTQUANT_SGEMM_INTERNAL_H

#include <stddef.h>

#define SQ_SGEMM_PANEL 16
#define SQ_SGEMM_KC 256
/// Columns per L2-resident B block in the driver loop (a multiple of every kernel's width).
#define SQ_SGEMM_NC 512

/// Computes a rows x cols tile: C = alpha * (A . B_panels) + beta * C (C is read only when load_c), with A
/// read through the strides above. `rows` <= the kernel's mr, `cols` <= its nr; `b` points at the first
/// 16-column panel (the next one, when cols > 16, is at b + 16 * kc).
typedef void (*sq_sgemm_tile_fn)(const float *a, size_t a_row_stride, size_t a_k_stride, const float *b,
                                 size_t kc, float *c, size_t ldc, size_t rows, size_t cols, float alpha,
                                 float beta, int load_c);

typedef struct {
    int mr;  ///< rows per tile
    int nr;  ///< columns per tile (16 or 32)
    sq_sgemm_tile_fn tile;
} sq_sgemm_kernel;

extern const sq_sgemm_kernel sq_sgemm_kernel_portable;
#if defined(__x86_64__) || defined(_M_X64)
extern const sq_sgemm_kernel sq_sgemm_kernel_avx2;
extern const sq_sgemm_kernel sq_sgemm_kernel_avx512;
#endif

#endif
