import GraphIR
import Tensors

/// Gemm (opsets 1, 6, 7, 9, 11, 13): `Y = alpha · A' · B' + beta · C`, with A' = transA ? Aᵀ : A (M × K)
/// and B' = transB ? Bᵀ : B (K × N). C broadcasts unidirectionally to M × N (before opset 7 only with
/// `broadcast = 1`); it is required before opset 11 and optional from 11 on. A constant float32 B is
/// packed once when the session is built.
struct GemmKernel: Kernel {
    let alpha: Float
    let beta: Float
    let transposeA: Bool
    let transposeB: Bool
    let requiresC: Bool
    /// Opsets 1 and 6 without `broadcast = 1`: C must already be M × N.
    let requiresFullC: Bool
    let packedB: SGEMM.PackedMatrix?
    /// A fused activation (see `FloatFusion`), applied to float32 results while they are in cache.
    var activation: SGEMM.Activation?

    init(_ context: KernelBuildContext, activation: SGEMM.Activation? = nil) throws {
        self.activation = activation
        alpha = try context.float("alpha", default: 1)
        beta = try context.float("beta", default: 1)
        transposeA = try context.int("transA", default: 0) != 0
        transposeB = try context.int("transB", default: 0) != 0
        requiresC = context.opsetVersion < 11
        let broadcast = try context.int("broadcast", default: 0)
        requiresFullC = context.opsetVersion < 7 && broadcast == 0
        if let b = context.constant(1), b.dtype == .float32, b.rank == 2, b.count > 0 {
            let transposed = transposeB
            let (k, n) = transposed ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
            packedB = b.withUnsafeBufferPointer(as: Float.self) {
                SGEMM.PackedMatrix(k: k, n: n, b: $0.baseAddress!, ldb: b.shape[1], transposed: transposed)
            }
        } else {
            packedB = nil
        }
    }

    static let dtypes: Set<DType> = [.float32, .float64, .float16, .bfloat16, .int32, .int64, .uint32, .uint64]

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let a = try required(inputs, 0), b = try required(inputs, 1)
        let c = optional(inputs, 2)
        try a.requireDType(Self.dtypes, input: 0, "Gemm")
        for (index, tensor) in [(1, b), (2, c)] {
            if let tensor, tensor.dtype != a.dtype {
                throw KernelError.invalidInput(index: index, reason: "dtype \(tensor.dtype) differs from A's \(a.dtype)")
            }
        }
        if requiresC && c == nil { throw KernelError.invalidInput(index: 2, reason: "C is required before opset 11") }
        if activation != nil, a.dtype != .float32 { throw FusedKernelDeclined() }
        guard a.rank == 2 else { throw KernelError.invalidInput(index: 0, reason: "Gemm needs a 2-D A, got \(a.shape)") }
        guard b.rank == 2 else { throw KernelError.invalidInput(index: 1, reason: "Gemm needs a 2-D B, got \(b.shape)") }
        let (m, k) = transposeA ? (a.shape[1], a.shape[0]) : (a.shape[0], a.shape[1])
        let (bk, n) = transposeB ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
        guard k == bk else {
            throw KernelError.invalid("Gemm: op(A) is \(m)×\(k) but op(B) is \(bk)×\(n)")
        }
        if let c {
            if requiresFullC, c.shape != [m, n] {
                throw KernelError.invalidInput(index: 2, reason: "C \(c.shape) must be [\(m), \(n)] without broadcast = 1")
            }
            guard c.rank <= 2, Shape.broadcast([m, n], c.shape) == [m, n] else {
                throw KernelError.invalidInput(index: 2, reason: "C \(c.shape) does not broadcast to [\(m), \(n)]")
            }
        }
        if ReducedPrecision.isReduced(a.dtype) {
            return try ReducedPrecision.bridged(inputs, dtype: a.dtype) { wide in
                try runFloat(wide[0]!, wide[1]!, wide.count > 2 ? wide[2] : nil, m: m, n: n, k: k, packed: nil,
                             context: context)
            }
        }
        switch a.dtype {
        case .float32: return try runFloat(a, b, c, m: m, n: n, k: k, packed: packedB, context: context)
        case .float64: return [try runGeneric(a, b, c, m: m, n: n, k: k, as: Double.self)]
        case .int32: return [try runGeneric(a, b, c, m: m, n: n, k: k, as: Int32.self)]
        case .int64: return [try runGeneric(a, b, c, m: m, n: n, k: k, as: Int64.self)]
        case .uint32: return [try runGeneric(a, b, c, m: m, n: n, k: k, as: UInt32.self)]
        case .uint64: return [try runGeneric(a, b, c, m: m, n: n, k: k, as: UInt64.self)]
        default: throw KernelError.invalidInput(index: 0, reason: "Gemm does not accept \(a.dtype)")
        }
    }

    /// Y starts as beta·C broadcast (or zero) and the GEMM adds alpha · A' · B' into it.
    private func runFloat(_ a: Tensor, _ b: Tensor, _ c: Tensor?, m: Int, n: Int, k: Int,
                          packed: SGEMM.PackedMatrix?, context: ExecutionContext) throws -> [Tensor] {
        let y = try context.output(.float32, shape: [m, n])
        guard y.tensor.count > 0 else { return [y.tensor] }
        let yBase = y.pointer(as: Float.self)
        let useC = c != nil && beta != 0
        if let c, useC { fillBroadcast(c, into: yBase, rows: m, columns: n, as: Float.self) }
        let packed = packed.flatMap { $0.k == k && $0.n == n ? $0 : nil }
        let epilogue = activation.map { SGEMM.Epilogue(activation: $0) }
        a.withUnsafeBufferPointer(as: Float.self) { aBuffer in
            b.withUnsafeBufferPointer(as: Float.self) { bBuffer in
                let lda = a.shape[1]
                if let packed {
                    SGEMM.multiply(m: m, alpha: alpha, a: aBuffer.baseAddress!, lda: lda, transposeA: transposeA,
                                   packedB: packed, beta: useC ? beta : 0, c: yBase, ldc: n,
                                   threads: context.threadCount, epilogue: epilogue)
                } else {
                    SGEMM.multiply(m: m, n: n, k: k, alpha: alpha, a: aBuffer.baseAddress!, lda: lda,
                                   transposeA: transposeA, b: bBuffer.baseAddress!, ldb: b.shape[1],
                                   transposeB: transposeB, beta: useC ? beta : 0, c: yBase, ldc: n,
                                   threads: context.threadCount, epilogue: epilogue)
                }
            }
        }
        return [y.tensor]
    }

    /// float64 and integers. Integer Gemm is exact only for alpha = 1 and beta ∈ {0, 1}; other scalings
    /// are reported as unsupported rather than silently rounded.
    private func runGeneric<T: MatMulScalar>(_ a: Tensor, _ b: Tensor, _ c: Tensor?, m: Int, n: Int, k: Int,
                                             as type: T.Type) throws -> Tensor {
        if T.self != Double.self, alpha != 1 || (beta != 0 && beta != 1) {
            throw KernelError.unsupported("integer Gemm with alpha \(alpha), beta \(beta)")
        }
        var y = try Tensor(zeros: a.dtype, shape: [m, n])
        guard y.count > 0 else { return y }
        var product = y
        a.withUnsafeBufferPointer(as: T.self) { aBuffer in
            b.withUnsafeBufferPointer(as: T.self) { bBuffer in
                product.withUnsafeMutableBufferPointer(as: T.self) { p in
                    genericGEMM(m: m, n: n, k: k, a: aBuffer.baseAddress!, lda: a.shape[1], transposeA: transposeA,
                                b: bBuffer.baseAddress!, ldb: b.shape[1], transposeB: transposeB,
                                c: p.baseAddress!, ldc: n)
                }
            }
        }
        // C is copied in only when it contributes, so a zero prior stands for "no C".
        if let c, beta != 0 {
            y.withUnsafeMutableBufferPointer(as: T.self) { fillBroadcast(c, into: $0.baseAddress!, rows: m, columns: n, as: T.self) }
        }
        let (alpha, beta) = (Double(self.alpha), Double(self.beta))
        product.withUnsafeBufferPointer(as: T.self) { p in
            y.withUnsafeMutableBufferPointer(as: T.self) { out in
                for i in 0..<out.count { out[i] = T.scaledSum(p[i], out[i], alpha: alpha, beta: beta) }
            }
        }
        return y
    }

    /// Copies C (rank ≤ 2, unidirectionally broadcastable) into every row and column of `out` (rows × columns).
    private func fillBroadcast<T: TensorScalar>(_ c: Tensor, into out: UnsafeMutablePointer<T>, rows: Int, columns: Int,
                                                as type: T.Type) {
        let shape = Array(repeating: 1, count: 2 - c.rank) + c.shape
        let rowStride = shape[0] == 1 ? 0 : shape[1]
        let columnStride = shape[1] == 1 ? 0 : 1
        c.withUnsafeBufferPointer(as: T.self) { source in
            for i in 0..<rows {
                for j in 0..<columns { out[i * columns + j] = source[i * rowStride + j * columnStride] }
            }
        }
    }
}

extension KernelRegistry {
    mutating func registerGemmKernels() {
        // 1 and 6: C broadcast only with `broadcast = 1`; 7: always broadcast; 9: more types; 11: C optional;
        // 13: bfloat16.
        for version in [1, 6, 7, 9, 11, 13] {
            register("Gemm", since: version) { context in try GemmKernel(context) }
        }
    }
}
