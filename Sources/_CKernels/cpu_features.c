// CPU feature detection: CPUID for what the silicon has, XGETBV for what the OS saves on a context
// switch. A feature counts only when both agree.
#include "CKernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>

static uint64_t read_xcr0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

static sq_cpu_features detect(void) {
    sq_cpu_features f = {0};
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
    int osxsave = (ecx >> 27) & 1;
    int fma = (ecx >> 12) & 1;
    int avx = (ecx >> 28) & 1;
    if (!osxsave || !avx) return f;
    uint64_t xcr0 = read_xcr0();
    int ymm_ok = (xcr0 & 0x6) == 0x6;            // SSE + AVX state
    int zmm_ok = ymm_ok && (xcr0 & 0xE0) == 0xE0; // opmask + ZMM_Hi256 + Hi16_ZMM
    int tile_ok = (xcr0 & 0x60000) == 0x60000;    // XTILECFG + XTILEDATA
    if (__get_cpuid_max(0, 0) < 7) return f;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    f.avx2 = ymm_ok && fma && ((ebx >> 5) & 1);
    f.avx512f = zmm_ok && ((ebx >> 16) & 1);
    f.avx512bw = f.avx512f && ((ebx >> 30) & 1);
    f.avx512vnni = f.avx512bw && ((ecx >> 11) & 1);
    f.avx512fp16 = f.avx512bw && ((edx >> 23) & 1);
    f.amx_int8 = tile_ok && ((edx >> 24) & 1) && ((edx >> 25) & 1);
    unsigned int eax1, ebx1, ecx1, edx1;
    __cpuid_count(7, 1, eax1, ebx1, ecx1, edx1);
    f.avxvnni = ymm_ok && ((eax1 >> 4) & 1);
    f.avx512bf16 = f.avx512bw && ((eax1 >> 5) & 1);
    return f;
}
#else
static sq_cpu_features detect(void) { sq_cpu_features f = {0}; return f; }
#endif

sq_cpu_features sq_cpu_detect(void) {
    static sq_cpu_features cached;
    static int ready = 0;
    // Benign race: every thread computes the same value.
    if (!ready) { cached = detect(); ready = 1; }
    return cached;
}
