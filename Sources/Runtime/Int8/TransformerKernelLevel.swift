import _CKernels

/// Instruction-set levels of the vectorised transformer kernels (float32 → 8-bit quantization, masked
/// softmax): `.reference` runs the pure-Swift twin, the others the C kernels of `_CKernels`. Tests force
/// each level the CPU has; sessions use `.best`.
enum TransformerKernelLevel: Int32, CaseIterable, Sendable {
    /// The pure-Swift twin (the test oracle).
    case reference = -1
    /// Plain C, any CPU.
    case portable = 0
    /// AVX-512F, 16 lanes.
    case avx512 = 1

    private static let bestAvailable: TransformerKernelLevel = sq_cpu_detect().avx512f != 0 ? .avx512 : .portable

    /// The fastest level this CPU runs.
    static var best: TransformerKernelLevel { bestAvailable }

    /// Whether this CPU runs the level.
    var isAvailable: Bool { self != .avx512 || Self.bestAvailable == .avx512 }

    /// Every level this CPU runs.
    static var available: [TransformerKernelLevel] { allCases.filter(\.isAvailable) }
}
