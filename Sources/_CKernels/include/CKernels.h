#ifndef SWIFTQUANT_CKERNELS_H
#define SWIFTQUANT_CKERNELS_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// CPU features that select kernel variants, read once from CPUID and XGETBV.
typedef struct {
    int avx2;        ///< AVX2 + FMA, with OS-enabled YMM state
    int avx512f;     ///< AVX-512 F, with OS-enabled ZMM state
    int avx512bw;
    int avx512vnni;
    int avx512bf16;
    int avx512fp16;
    int avxvnni;
    int amx_int8;    ///< AMX tiles with INT8, OS-enabled tile state
} sq_cpu_features;

/// The features of the running CPU (cached after the first call).
sq_cpu_features sq_cpu_detect(void);

// MARK: - float16 conversion

/// float16 (IEEE binary16 bit patterns) to float32, n values; exact. Returns 0, converting nothing, when
/// the CPU lacks AVX-512F (the caller converts element by element).
int sq_f16_to_f32(const uint16_t *x, float *y, size_t n);

/// float32 to float16 rounded to nearest even (overflow to ±inf, NaN stays NaN), n values. Returns 0,
/// converting nothing, when the CPU lacks AVX-512F.
int sq_f32_to_f16(const float *x, uint16_t *y, size_t n);

// MARK: - FP32 GEMM

/// Instruction-set levels of the SGEMM micro-kernels. `SQ_SGEMM_LEVEL_AUTO` picks the best the CPU has;
/// a higher level than the CPU has is lowered to the best available.
enum {
    SQ_SGEMM_LEVEL_AUTO = -1,
    SQ_SGEMM_LEVEL_PORTABLE = 0,  ///< plain C, any CPU
    SQ_SGEMM_LEVEL_AVX2 = 1,      ///< AVX2 + FMA, 6 x 16 tiles
    SQ_SGEMM_LEVEL_AVX512 = 2,    ///< AVX-512F, 12 x 32 tiles
};

/// The best SGEMM level this CPU supports.
int sq_sgemm_best_level(void);
/// The level a request runs at: AUTO and unavailable levels become the best available one.
int sq_sgemm_resolve_level(int requested);

/// Activations an epilogue applies (the ONNX operators of the same names, float32).
enum {
    SQ_ACTIVATION_NONE = 0,
    SQ_ACTIVATION_RELU = 1,          ///< x < 0 ? 0 : x
    SQ_ACTIVATION_CLIP = 2,          ///< min(max(x, p0), p1) as numpy clips (x < p0 ? p0 : x, then > p1 ? p1)
    SQ_ACTIVATION_LEAKY_RELU = 3,    ///< x < 0 ? p0 * x : x
    SQ_ACTIVATION_HARD_SIGMOID = 4,  ///< clamp(p0 * x + p1, 0, 1)
    SQ_ACTIVATION_HARD_SWISH = 5,    ///< x * clamp(x * (1/6) + 1/2, 0, 1)
    SQ_ACTIVATION_GELU = 6,          ///< x/2 * (1 + erf(x/sqrt 2)), as sq_vec_gelu
};

/// What happens to each element of C after a product: y = act(c + row_bias[i] + column_bias[j]). Absent
/// biases add nothing (not even +0, which would turn -0 into +0). Products and sums are rounded one
/// by one, in that order, as the separate Add and activation operators round them.
typedef struct {
    const float *row_bias;     ///< one value per row of C, or NULL
    const float *column_bias;  ///< one value per column of C, or NULL
    int activation;            ///< SQ_ACTIVATION_*
    float parameters[2];       ///< p0, p1 of the activation
} sq_epilogue;

/// Applies `e` to a rows x cols block of C; row_bias and column_bias are indexed from the block's first
/// row and column. `level` as for SGEMM.
void sq_apply_epilogue(int level, float *c, size_t ldc, size_t rows, size_t cols, const sq_epilogue *e);

/// C = alpha * op(A) * op(B) + beta * C, single-threaded, row-major with leading dimensions.
/// op(A) is m x k (A is k x m when trans_a), op(B) is k x n (B is n x k when trans_b). When beta == 0, C is
/// not read (it may hold NaN). B is packed block by block into a per-thread buffer.
void sq_sgemm(int level, int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha, const float *a,
              size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc);
/// `sq_sgemm`, then `epilogue` (may be NULL) on every element of C while its rows are still in cache.
void sq_sgemm_fused(int level, int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha, const float *a,
                    size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc,
                    const sq_epilogue *epilogue);

/// Floats needed to hold op(B) (k x n) packed by `sq_sgemm_pack_b`: k * round_up(n, 16).
size_t sq_sgemm_packed_b_count(size_t n, size_t k);
/// Packs op(B) (k x n; B is n x k when trans_b) once, e.g. constant weights. The layout is the same for
/// every level. `packed` must hold `sq_sgemm_packed_b_count(n, k)` floats.
void sq_sgemm_pack_b(int trans_b, size_t n, size_t k, const float *b, size_t ldb, float *packed);
/// Like `sq_sgemm` with B prepacked, computing only columns [n_begin, n_end) of C (n_begin a multiple of
/// 16), so threads can split N. `c` points at column 0 of C.
void sq_sgemm_packed(int level, int trans_a, size_t m, size_t n, size_t k, float alpha, const float *a,
                     size_t lda, const float *packed_b, size_t n_begin, size_t n_end, float beta, float *c,
                     size_t ldc);
/// `sq_sgemm_packed`, then `epilogue` (may be NULL; its column_bias indexed from column 0) on the columns
/// computed.
void sq_sgemm_packed_fused(int level, int trans_a, size_t m, size_t n, size_t k, float alpha, const float *a,
                           size_t lda, const float *packed_b, size_t n_begin, size_t n_end, float beta, float *c,
                           size_t ldc, const sq_epilogue *epilogue);

// MARK: - Depthwise convolution

/// One sliding-window plane lifted to three spatial axes (1-D and 2-D use leading axes of size 1, kernel 1).
typedef struct {
    size_t input[3];
    size_t output[3];
    size_t kernel[3];
    size_t stride[3];
    size_t dilation[3];
    ptrdiff_t pad_begin[3];
} sq_window3d;

/// Floats `sq_im2col_packed` writes: sq_sgemm_packed_b_count(columns, channels * taps), with columns =
/// (row_end - row_begin) * g->output[2].
size_t sq_im2col_packed_count(size_t channels, const sq_window3d *g, size_t row_begin, size_t row_end);
/// The im2col patch matrix of `channels` consecutive input planes, written directly in the layout of
/// `sq_sgemm_pack_b` (as if packed from it): row (c, kd, kh, kw), column (od, oh, ow) for the flattened
/// output rows (od, oh) in [row_begin, row_end), holding x[c][od*s0 - p0 + kd*d0][...][...], zero where
/// a tap falls in the padding. Feed it to `sq_sgemm_packed_fused` with n = the column count. `level` as
/// for SGEMM; every level writes the same values.
void sq_im2col_packed(int level, const float *x, size_t channels, const sq_window3d *g, size_t row_begin, size_t row_end,
                      float *packed);
/// A buffer of at least `count` floats, 64-byte aligned, owned by the calling thread and reused by its next
/// call (which may move it); NULL when memory runs out. For `sq_im2col_packed`'s output.
float *sq_im2col_scratch(size_t count);


/// One input plane convolved with one filter plane, plus a bias, into an output plane (depthwise Conv):
/// y[o] = bias + sum of w[k] * x[o * stride - pad_begin + k * dilation] over taps k landing inside x.
/// `level` picks the instruction set as for SGEMM (SQ_SGEMM_LEVEL_*).
void sq_conv_depthwise_plane(int level, const float *x, const float *w, float bias, float *y, const sq_window3d *g);

/// Depthwise convolution of `channels` consecutive 2-D planes (input plane c with filter c, plus bias[c];
/// `bias` may be NULL) with the channels as vector lanes, 16 at a time: for planes whose output rows are
/// narrower than a vector. Sums in the same order as sq_conv_depthwise_plane at the same level. Returns 0,
/// doing nothing, when the level or geometry does not suit it (then use the plane function); needs
/// AVX-512F, g->input[0] == g->kernel[0] == 1 and at most 64 taps.
int sq_conv_depthwise_channels(int level, const float *x, const float *w, const float *bias, float *y,
                               size_t channels, const sq_window3d *g);

// MARK: - int8 GEMM (uint8 x int8 -> int32)

/// Instruction-set levels of the int8 GEMM (the Swift `Int8GEMMLevel` raw values; 0 is the Swift reference).
enum {
    SQ_QGEMM_LEVEL_AVX2 = 1,        ///< AVX2, operands widened to int16 and multiplied with vpmaddwd
    SQ_QGEMM_LEVEL_AVX512BW = 2,    ///< AVX-512BW, the same widening scheme on ZMM
    SQ_QGEMM_LEVEL_AVX512VNNI = 3,  ///< AVX-512 VNNI vpdpbusd: four u8 x s8 products into each int32 lane
    SQ_QGEMM_LEVEL_AMX = 4,         ///< AMX-INT8 tiles (TDPBUSD), after the kernel grants tile state
};

/// Whether `level` runs on this CPU. AMX also needs the kernel's permission for tile data, requested
/// once (arch_prctl ARCH_REQ_XCOMP_PERM) by the first call that asks about AMX.
int sq_qgemm_level_available(int level);

/// Bytes of B (k x n int8) packed by `sq_qgemm_pack_b`: ceil(n / 16) panels of 16 columns, each holding
/// round_up(ceil(k / 4), 16) groups of 4 rows x 16 columns (64 bytes), zero-padded.
size_t sq_qgemm_packed_b_size(size_t n, size_t k);
/// Packs B once for every level (the layout is shared; see qgemm_internal.h). `b` is row-major k x n
/// (n x k when `transposed`) with leading dimension `ldb`. Each byte is XORed with `flip` first:
/// 0 keeps int8 values, 0x80 turns uint8 values u into the int8 values u - 128.
void sq_qgemm_pack_b(int transposed, size_t n, size_t k, const void *b, size_t ldb, uint8_t flip, int8_t *packed);
/// C[i][j] = sum over p < k of A[i][p] * B[p][j] in int32 (wrapping), for rows i < m and columns
/// j in [n_begin, n_end). A is uint8 m x k with leading dimension lda, B is packed (n columns, k rows), C
/// is int32 with leading dimension ldc and `c` points at column 0. Any n_begin works; multiples of 16
/// need no scratch. `level` must be available (see `sq_qgemm_level_available`).
void sq_qgemm_u8s8(int level, size_t m, size_t n, size_t k, const uint8_t *a, size_t lda, const int8_t *packed_b,
                   size_t n_begin, size_t n_end, int32_t *c, size_t ldc);

/// ONNX-reference requantization of one run of int32 sums into 8-bit values:
/// y[i] = clamp(round_half_even((double)(acc[i] + bias[i]) * multiplier[i]) + zero_point, lower, upper),
/// the sum wrapping in int32, NaN products giving `lower`. `bias` and `multiplier` advance by
/// `bias_step` / `multiplier_step` (0: one value for the run, 1: one per element); `bias` may be NULL.
/// `out` receives the low byte of each result (uint8 or int8 by the bounds). `level` is an
/// SQ_QGEMM_LEVEL (AVX2 runs 4 lanes, the AVX-512 levels 8); returns 0 when the CPU lacks it.
int sq_requantize_u8(int level, const int32_t *acc, size_t count, const int32_t *bias, size_t bias_step,
                     const double *multiplier, size_t multiplier_step, int32_t zero_point, int32_t lower,
                     int32_t upper, uint8_t *out);

/// dst[j * dst_stride + i] = src[i * src_stride + j] ^ flip for i < rows, j < cols: a byte matrix
/// transpose (e.g. planes to channels-last), in 16 x 16 blocks of SSE2 unpacks on x86-64.
void sq_transpose_u8(const uint8_t *src, size_t rows, size_t cols, size_t src_stride, uint8_t *dst,
                     size_t dst_stride, uint8_t flip);

/// One output row of a depthwise integer convolution over a zero-point-padded uint8 plane:
/// acc[o] = sum over taps (i, j) < (kernel_h, kernel_w) of w[i * kernel_w + j] * x[i * row_step + o * stride + j * dilation]
/// for o < width, in wrapping int32. Vectorized for stride 1 and 2 (AVX-512BW: 16 outputs, AVX2: 8, stride 1
/// only); reads no byte past the last tap of the last output. Returns 0 when `level` (SQ_QGEMM_LEVEL_*)
/// has no kernel here, leaving the caller's loop to run.
int sq_depthwise_row_u8(int level, const uint8_t *x, size_t row_step, size_t kernel_h, size_t kernel_w, size_t stride,
                        size_t dilation, const int32_t *w, size_t width, int32_t *acc);

/// Runs `iterations` x 64 dependent 64-bit adds (one per cycle on every x86 core since the P6), so
/// iterations * 64 / seconds is the core clock. Benchmarks use it to state their peak.
uint64_t sq_dependent_add_chain(uint64_t iterations);
/// Runs `iterations` x 24 independent vpdpbusd on ZMM registers (AVX-512 VNNI only; returns 0 without
/// it): the achievable VNNI issue rate, for comparing with the nominal 2 per cycle.
uint64_t sq_vnni_throughput_loop(uint64_t iterations);
// MARK: - Vector math (float32)

/// y[i] = e^x[i] for n floats (within 1 ulp on [-103, 88.7]; see vector_math.c). `level` picks the
/// instruction set as for SGEMM (SQ_SGEMM_LEVEL_*); x and y may be the same buffer.
void sq_vec_exp(int level, const float *x, float *y, size_t n);
/// y[i] = erf(x[i]) (within 2 ulp and 1.1e-7 absolute).
void sq_vec_erf(int level, const float *x, float *y, size_t n);
/// y[i] = x[i]/2 * (1 + erf(x[i]/sqrt 2)), the exact Gelu.
void sq_vec_gelu(int level, const float *x, float *y, size_t n);
/// dst[j] = src[j * stride] for j < count (im2col of strided convolutions).
void sq_copy_strided(int level, float *dst, const float *src, size_t count, size_t stride);
/// Softmax of each of `rows` contiguous rows of `length` floats: y = exp(x - max) / sum, or with
/// `logarithmic`, y = x - max - log(sum). A row holding NaN gives NaN throughout.
void sq_softmax_rows(int level, const float *x, float *y, size_t rows, size_t length, int logarithmic);

// MARK: - Integer convolution on NCHW planes (CNN path: qconv.c, depthwise_u8.c)

/// Fixed-point requantization of int32 accumulators to 8-bit codes, per output channel (the Swift
/// `ColumnRequantization`): p = acc * mantissa (int64), q = clamp(((p + rounding + (p < 0 ? negative_mask
/// : 0)) >> shift) + zero_point, lower, upper); then q = table[q & 0xFF] when `table` is given. The low
/// byte of q is stored (uint8 or int8 codes by the bounds).
typedef struct {
    const int64_t *mantissa;       ///< one per channel when `per_channel`, else one
    const int64_t *shift;          ///< 0...62
    const int64_t *rounding;       ///< 2^(shift - 1), 0 for shift 0
    const int64_t *negative_mask;  ///< -1 when shift > 0, else 0
    int per_channel;
    int32_t zero_point;
    int32_t lower;
    int32_t upper;
    const uint8_t *table;          ///< 256 bytes indexed by the code's byte, or NULL
} sq_qrequant;

/// Bytes of `k` rows of `p` positions packed by `sq_qconv_pack`: positions in blocks of 64 (the last
/// block rounded up to 16), each block holding ceil(k / 4) groups of (block width x 4) bytes.
size_t sq_qconv_packed_size(size_t k, size_t p);
/// Packs `k` byte rows of `p` positions (row r at rows + r * ld) for `sq_qconv_gemm`: in a block, group g
/// holds for each position the bytes of rows 4g...4g+3 (each XOR `flip`; rows past k and positions past
/// p are 0). When `sums` is given, sums[i] = the sum over rows of the (flipped) bytes at position i.
/// `level` (SQ_QGEMM_LEVEL_*) only picks the instruction set; every level writes the same bytes.
void sq_qconv_pack(int level, const uint8_t *rows, size_t ld, size_t k, size_t p, uint8_t flip, uint8_t *packed,
                   int32_t *sums);
/// Weight rows m (w + m * ldw, `k` int8 values, ldw >= round_up(k, 4) with zeros past k) times packed
/// activations, for rows [m_begin, m_end) and position blocks [block_begin, block_end) of 64:
///     acc[m][i] = sum_r w[m][r] * x[r][i] + offsets[m] - (zero_points ? zero_points[m] * sums[i] : 0)
/// in wrapping int32. With `rq`, the requantized codes go to the bytes y + m * ldy + i (rq's channel m);
/// without, acc goes to the int32 y + m * ldy + i. Returns 0, doing nothing, when `level`
/// (SQ_QGEMM_LEVEL_*) has no kernel here: AVX-512 VNNI (also for AMX), AVX2 (also for AVX-512BW).
int sq_qconv_gemm(int level, const int8_t *w, size_t ldw, size_t k, const uint8_t *packed, size_t p, size_t m_begin,
                  size_t m_end, size_t block_begin, size_t block_end, const int32_t *offsets,
                  const int32_t *zero_points, const int32_t *sums, const sq_qrequant *rq, void *y, size_t ldy);

/// A 2-D sliding window (pads are the leading ones; trailing ones follow from the output size).
typedef struct {
    size_t input_h, input_w, output_h, output_w;
    size_t kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w;
    size_t pad_top, pad_left;
} sq_qwindow;

/// The im2col rows of `channels` planes of `g->input_h x g->input_w` bytes (plane c at x + c * plane
/// stride): row (c, i, j) holds, for each output position, the byte under tap (i, j) XOR `flip`, or
/// `pad` outside the input. Rows are `output_h * output_w` bytes, at rows + row * that.
void sq_qconv_im2col(const uint8_t *x, size_t plane_stride, size_t channels, const sq_qwindow *g, uint8_t flip,
                     uint8_t pad, uint8_t *rows);

/// Whether `sq_qconv_pack_window` runs for this window at `level` (SQ_QGEMM_LEVEL_*): AVX-512BW with a
/// width stride of 1 (or 2 with AVX-512 VBMI), windows of modest size.
int sq_qconv_window_packable(int level, const sq_qwindow *g);
/// Position blocks [block_begin, block_end) of the packed im2col rows, straight from the planes: the bytes
/// `sq_qconv_pack(level, rows, P, k, P, 0, packed, NULL)` writes there after
/// `sq_qconv_im2col(x, plane_stride, channels, g, flip, pad, rows)` (P = output positions, k = channels
/// x taps), without the intermediate rows. Does nothing unless `sq_qconv_window_packable(level, g)`.
void sq_qconv_pack_window(int level, const uint8_t *x, size_t plane_stride, size_t channels, const sq_qwindow *g,
                          uint8_t flip, uint8_t pad, size_t block_begin, size_t block_end, uint8_t *packed);

/// Depthwise integer convolution of `channels` planes (plane c at x + c * plane_stride, its `taps` int32
/// weights at w + c * taps, already minus their zero point): over the plane padded with `x_zero`,
///     acc[o] = sum over taps of w * (x ^ flip) + bias[c]
/// with `bias[c]` already holding -x_zero * sum(w) + the operator's bias. With `rq` (channel c), codes go
/// to the bytes y + c * out_stride; without, acc goes to the int32 y + c * out_stride. AVX-512 VNNI with
/// VBMI reads the plane in place when the weights fit int8 (four taps per vpdpbusd); the other kernels
/// (AVX-512BW, AVX2: any stride) read a padded copy. `scratch` holds sq_qdepthwise_scratch_size bytes.
/// Returns 0 when `level` (SQ_QGEMM_LEVEL_*) has no kernel here.
int sq_qdepthwise(int level, const uint8_t *x, size_t plane_stride, size_t channels, const sq_qwindow *g, uint8_t flip,
                  uint8_t x_zero, const int32_t *w, const int32_t *bias, uint8_t *scratch, const sq_qrequant *rq,
                  void *y, size_t out_stride);
/// Scratch bytes `sq_qdepthwise` needs for one padded plane.
size_t sq_qdepthwise_scratch_size(const sq_qwindow *g);

/// y[i] = table[x[i]] for i < n (x and y may be the same). `level` as above: AVX-512 levels use
/// AVX-512 VBMI byte permutes when the CPU has them; returns 0 when nothing here runs (scalar callers).
int sq_lookup_u8(int level, const uint8_t *table, const uint8_t *x, uint8_t *y, size_t n);

/// A quantized Add or Mul between DequantizeLinear and QuantizeLinear, per tensor (qelementwise.c).
typedef struct {
    int a_signed, b_signed;  ///< whether each operand's codes are int8 (else uint8)
    int32_t a_zero, b_zero;
    float a_scale, b_scale;
    float y_scale;
    int32_t y_zero, y_lower, y_upper;  ///< the output zero point and the clamp of its codes
} sq_qbinary;

/// y[i] = clamp(round_half_even((A(a[i]) op B(b[i * b_step])) / y_scale) + y_zero, y_lower, y_upper), with
/// A(q) = (float)(q - a_zero) * a_scale (B alike), op a float32 add or (`multiply`) multiply, every step
/// one float32 operation in that order, as DequantizeLinear, Add/Mul and QuantizeLinear compute it; the
/// quotient is clamped to [y_lower - y_zero - 1, y_upper - y_zero + 1] before rounding (NaN to the low end),
/// which changes no result. `b_step` is 0 (one b for all) or 1. Returns 0 when `level` (SQ_QGEMM_LEVEL_*)
/// has no kernel here: AVX-512BW and up, AVX2.
int sq_qbinary_u8(int level, int multiply, const uint8_t *a, const uint8_t *b, size_t b_step, size_t n,
                  const sq_qbinary *p, uint8_t *y);
/// The sum of x[i] ^ flip over n bytes (0x80 flips int8 codes to their value + 128).
uint64_t sq_sum_u8(const uint8_t *x, size_t n, uint8_t flip);

// MARK: - Per-row dynamic quantization (float32 -> 8-bit codes)

// MARK: - Per-row dynamic quantization of a MatMul

/// For each of `rows` contiguous rows of `cols` floats: m = the largest |x| (NaN if any is NaN, -inf for
/// cols = 0), scales[r] = Max(m, epsilon) / divisor (NaN in either operand wins), and
/// codes[r][k] = clamp(round_half_even(x[r][k] / scales[r]) + zero_point, lower, upper) (NaN to `lower`),
/// stored as the low byte (int8 or uint8 by the bounds). Float32 operations exactly as the ONNX nodes
/// Abs, ReduceMax, Max, Div and QuantizeLinear compute them. `level` is an SQ_SGEMM_LEVEL (AVX2 or
/// AVX-512); returns 0, doing nothing, when the CPU lacks it.
int sq_quantize_rows(int level, const float *x, size_t rows, size_t cols, float epsilon, float divisor,
                     int32_t zero_point, int32_t lower, int32_t upper, uint8_t *codes, float *scales);
/// Floats from a tile of int32 sums, for i < rows and j < cols (pointers at the tile's first row/column):
/// acc = tile[i * ldt + j] + offsets[j] - zero_points[j] * row_sums[i] (wrapping; the last term only when
/// `zero_points` is not NULL), then y[i * ldy + j] = (float(acc) * column_scales[j]) * row_scales[i]
/// (with `row_scale_first`, (float(acc) * row_scales[i]) * column_scales[j]) [+ bias[j] when not NULL],
/// each operation rounded to float32 on its own. Levels and return value as for `sq_quantize_rows`.
int sq_row_scaled_output(int level, const int32_t *tile, size_t ldt, size_t rows, size_t cols, const int32_t *offsets,
                         const int32_t *zero_points, const int32_t *row_sums, const float *column_scales,
                         const float *row_scales, const float *bias, int row_scale_first, float *y, size_t ldy);


// MARK: - Transformer kernels (float32 <-> 8-bit, attention)

/// Levels of the kernels in this section (0 runs portable C; the Swift twins are the references).
enum {
    SQ_QUANTIZE_LEVEL_PORTABLE = 0,  ///< plain C
    SQ_QUANTIZE_LEVEL_AVX512 = 1,    ///< AVX-512F, 16 lanes
};

/// QuantizeLinear of `rows` x `channels` floats: y[r][c] = clamp(round_half_even(x[r][c] / scales[c]) +
/// zeros[c], lower, upper), NaN giving `lower`; one channel quantizes per tensor. The division is IEEE
/// (bit-identical to the scalar reference). `y` receives the low byte of each code (uint8 or int8 by the
/// bounds). Returns 0 when the CPU lacks `level`.
int sq_quantize_f32(int level, const float *x, size_t rows, size_t channels, const float *scales,
                    const int32_t *zeros, int32_t lower, int32_t upper, uint8_t *y);

/// The range of n floats widened to include 0 (DynamicQuantizeLinear's): low = min(0, min x), high =
/// max(0, max x), NaN elements skipped. Returns 0 when the CPU lacks `level` (an SQ_QUANTIZE_LEVEL).
int sq_range_with_zero_f32(int level, const float *x, size_t n, float *low, float *high);

/// The float output stage of the fused int8 GEMM over a rows x cols tile (pointers at the tile's first
/// row and column): a = acc[i][j] + offsets[j] - zero_points[j] * row_sums[i] (wrapping int32;
/// `zero_points` may be NULL, then `row_sums` is not read), v = (float)a * scales[j] + bias[j] (rounded
/// after each operation; `bias` may be NULL), y[i][j] = clamp(v, lower, upper). Returns 0 when the CPU
/// lacks `level` (an SQ_QUANTIZE_LEVEL).
int sq_qgemm_float_output(int level, const int32_t *acc, size_t ldc, size_t rows, size_t cols, const int32_t *offsets,
                          const int32_t *zero_points, const int32_t *row_sums, const float *scales, const float *bias,
                          float lower, float upper, float *y, size_t ldy);

/// LayerNormalization of `rows` contiguous rows of `d` floats (see layer_norm.c for the arithmetic):
/// y = (x - mean) / sqrt(var + epsilon) * gamma + beta, with each row's mean and 1 / sqrt(var + epsilon) in
/// `means` / `inverses` when not NULL. Returns 0 when the CPU lacks `level` (an SQ_QUANTIZE_LEVEL; only
/// AVX-512 has a kernel, the Swift loop is the portable one).
int sq_layer_norm_rows(int level, const float *x, float *y, size_t rows, size_t d, const float *gamma,
                       const float *beta, float epsilon, float *means, float *inverses);

/// One row of attention scores: y = softmax(x + mask) over `n` floats, `mask` read with step `mask_step`
/// (0: one value for the row, 1: a full row). A row whose maximum is NaN or infinite is written as
/// `nan_value` when `replace` is set, NaN otherwise (what softmax gives it). `y` may be `x`. Returns 0 when
/// the CPU lacks `level` (AVX-512 only; see masked_softmax.c).
int sq_masked_softmax_row(int level, const float *x, const float *mask, size_t mask_step, float *y, size_t n,
                          int replace, float nan_value);

#ifdef __cplusplus
}
#endif

#endif
