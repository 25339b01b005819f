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

#ifdef __cplusplus
}
#endif

#endif
