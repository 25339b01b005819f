#ifndef SWIFTQUANT_SPIN_PAUSE_H
#define SWIFTQUANT_SPIN_PAUSE_H

/// Tells the CPU the caller is in a spin-wait loop: it saves power, yields execution resources to a
/// sibling hardware thread and avoids the memory-order flush when the loop ends. Swift has no spelling
/// for this instruction, hence this one-line C helper (baseline on x86-64, so no target attribute).
static inline void sq_spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif
