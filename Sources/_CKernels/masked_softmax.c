// Softmax of one row after adding an attention mask, for the short rows of attention scores (64 to 512
// floats), where the per-row work of `sq_softmax_rows` (lane-by-lane reductions) costs as much as the
// exponentials. Three passes over the row, in registers and L1:
//
//     v = x + mask (rounded as Add rounds it), m = max v
//     e = exp(v - m) (vector_math.c's exponential; 0 below e^-87), s = sum e (16 partial sums, then a tree)
//     y = e / s
//
// A row whose maximum is NaN or infinite (some NaN, all -inf or a +inf) is NaN throughout in the
// reference softmax; it is written as `nan_value` when `replace` is set, as the absorbed Where(IsNaN)
// would write it. The Swift `FusedMaskedSoftmaxKernel` path (Add, `sq_softmax_rows`, NaN test) is the
// reference twin; the sums associate differently (a few ulps).
#include "CKernels.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#define VM_LANES 16
#define VM_TARGET __attribute__((target("avx512f")))
#define VM(name) name##_masked512
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wunused-function"
#include "vector_math_body.h"
#pragma clang diagnostic pop
#undef VM_LANES
#undef VM_TARGET
#undef VM

/// exp(x) for x below this is under 1.7e-38, next to the smallest normal float: such terms are taken as 0,
/// which changes no sum by more than that (the row's maximum contributes 1), and the exponential never
/// works on subnormals, which cost some CPUs a microcode assist per lane (attention masks give -inf).
#define SMALLEST_EXPONENT -87.0f

__attribute__((target("avx512f"))) static void masked_softmax_row_avx512(
    const float *x, const float *mask, size_t mask_step, float *y, size_t n, int replace, float nan_value) {
    const __m512 negative_infinity = _mm512_set1_ps(-__builtin_inff());
    __m512 best = negative_infinity;
    __mmask16 unordered = 0;
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 lanes = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1u);
        __m512 m = mask_step ? _mm512_maskz_loadu_ps(lanes, mask + i) : _mm512_set1_ps(mask[0]);
        __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(lanes, x + i), m);
        _mm512_mask_storeu_ps(y + i, lanes, v);
        unordered |= _mm512_mask_cmp_ps_mask(lanes, v, v, _CMP_UNORD_Q);
        best = _mm512_mask_max_ps(best, lanes, v, best);
    }
    float maximum = _mm512_reduce_max_ps(best);
    if (unordered || maximum == __builtin_inff() || maximum == -__builtin_inff()) {
        const __m512 fill = _mm512_set1_ps(replace ? nan_value : __builtin_nanf(""));
        for (size_t i = 0; i < n; i += 16) {
            __mmask16 lanes = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1u);
            _mm512_mask_storeu_ps(y + i, lanes, fill);
        }
        return;
    }
    const __m512 shift = _mm512_set1_ps(maximum), smallest = _mm512_set1_ps(SMALLEST_EXPONENT);
    __m512 sum = _mm512_setzero_ps();
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 lanes = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1u);
        __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, y + i), shift);
        // Masked scores (-inf) and others far below the maximum give 0 without subnormal arithmetic.
        __mmask16 kept = _mm512_cmp_ps_mask(d, smallest, _CMP_GE_OQ);
        __m512 e = _mm512_maskz_mov_ps(kept, (__m512)exp_masked512((vf_masked512)_mm512_max_ps(d, smallest)));
        _mm512_mask_storeu_ps(y + i, lanes, e);
        sum = _mm512_mask_add_ps(sum, lanes, sum, e);
    }
    const __m512 total = _mm512_set1_ps(_mm512_reduce_add_ps(sum));
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 lanes = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(y + i, lanes, _mm512_div_ps(_mm512_maskz_loadu_ps(lanes, y + i), total));
    }
}
#endif

int sq_masked_softmax_row(int level, const float *x, const float *mask, size_t mask_step, float *y, size_t n,
                          int replace, float nan_value) {
    if (n == 0) return 1;
#if defined(__x86_64__) || defined(_M_X64)
    if (level == SQ_QUANTIZE_LEVEL_AVX512 && sq_cpu_detect().avx512f) {
        masked_softmax_row_avx512(x, mask, mask_step, y, n, replace, nan_value);
        return 1;
    }
#endif
    (void)level;
    return 0;
}
