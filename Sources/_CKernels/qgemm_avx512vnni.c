// AVX-512 VNNI int8 micro-kernel: up to 8 rows x 48 columns (24 ZMM accumulators, three packed-B vectors,
// one broadcast of A). Each vpdpbusd adds four exact u8 x s8 products into every int32 lane, so nothing
// saturates. Compiled per function with target(...); the driver calls it only when sq_cpu_detect()
// reports AVX-512 VNNI.
#include "CKernels.h"
#include "qgemm_internal.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#define MR 8
#define NV 3
#define TARGET __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define KERNEL_NAME sq_qgemm_kernel_avx512vnni

typedef __m512i b_operand;
typedef __m512i a_operand;

static inline __attribute__((always_inline)) TARGET b_operand prepare_b(const int8_t *group) {
    return _mm512_loadu_si512(group);
}

static inline __attribute__((always_inline)) TARGET a_operand prepare_a(int32_t word) {
    return _mm512_set1_epi32(word);
}

static inline __attribute__((always_inline)) TARGET __m512i multiply_add(__m512i acc, a_operand a, b_operand b) {
    return _mm512_dpbusd_epi32(acc, a, b);
}

#include "qgemm_tile_avx512.h"

static TARGET uint64_t vnni_loop(uint64_t iterations) {
    __m512i acc[24];
    for (int i = 0; i < 24; i++) acc[i] = _mm512_set1_epi32(i);
    __m512i x = _mm512_set1_epi8(3), y = _mm512_set1_epi8(-5);
    for (uint64_t it = 0; it < iterations; it++) {
#pragma clang loop unroll(full)
        for (int i = 0; i < 24; i++) acc[i] = _mm512_dpbusd_epi32(acc[i], x, y);
        // Keeps the compiler from folding the rounds into one multiply.
        __asm__ volatile("" : "+v"(x));
    }
    __m512i sum = acc[0];
    for (int i = 1; i < 24; i++) sum = _mm512_add_epi32(sum, acc[i]);
    return (uint64_t)(uint32_t)_mm512_reduce_add_epi32(sum);
}

uint64_t sq_vnni_throughput_loop(uint64_t iterations) {
    if (!sq_cpu_detect().avx512vnni) return 0;
    return vnni_loop(iterations);
}

#else
uint64_t sq_vnni_throughput_loop(uint64_t iterations) { (void)iterations; return 0; }
#endif
