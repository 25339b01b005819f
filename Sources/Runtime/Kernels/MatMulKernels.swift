import GraphIR
import Tensors

/// MatMul (opsets 1, 9, 13): numpy `matmul` — a 1-D A gains a leading 1 and a 1-D B a trailing 1, both
/// removed from the result; leading (batch) axes broadcast. float32 runs on `SGEMM` (a constant 2-D B is
/// packed once when the session is built); float16/bfloat16 widen to float32; float64 and the integer
/// types use a plain loop (integers wrap on overflow, as numpy does).
struct MatMulKernel: Kernel {
    /// A constant float32 B, packed per batch matrix, with its (unpromoted) shape.
    let packedB: (shape: [Int], matrices: [SGEMM.PackedMatrix])?
    /// A fused bias Add (one value per column) and activation (see `FloatFusion`); float32 only.
    var epilogue = FusedEpilogue()

    init(constantB: Tensor?, epilogue: FusedEpilogue = FusedEpilogue()) {
        self.epilogue = epilogue
        if let b = constantB, b.dtype == .float32, b.rank >= 2, b.count > 0 {
            let k = b.shape[b.rank - 2], n = b.shape[b.rank - 1]
            let batches = b.count / (k * n)
            let matrices = b.withUnsafeBufferPointer(as: Float.self) { buffer in
                (0..<batches).map { index in
                    SGEMM.PackedMatrix(k: k, n: n, b: buffer.baseAddress! + index * k * n, ldb: n)
                }
            }
            packedB = (b.shape, matrices)
        } else {
            packedB = nil
        }
    }

    static let dtypes: Set<DType> = [.float32, .float64, .float16, .bfloat16, .int32, .int64, .uint32, .uint64]

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let a = try required(inputs, 0), b = try required(inputs, 1)
        try a.requireDType(Self.dtypes, input: 0, "MatMul")
        guard b.dtype == a.dtype else {
            throw KernelError.invalidInput(index: 1, reason: "dtype \(b.dtype) differs from A's \(a.dtype)")
        }
        if ReducedPrecision.isReduced(a.dtype) {
            return try ReducedPrecision.bridged(inputs, dtype: a.dtype) { wide in
                try MatMulKernel(constantB: nil).run(wide, context: context)
            }
        }
        if !epilogue.isEmpty, a.dtype != .float32 { throw FusedKernelDeclined() }
        let plan = try MatMulPlan(a: a.shape, b: b.shape)
        if let bias = epilogue.bias, bias.count != plan.n { throw FusedKernelDeclined() }
        if a.dtype == .float32 {
            let y = try context.output(.float32, shape: plan.outputShape)
            guard y.tensor.count > 0 else { return [y.tensor] }
            let packed = packedB.flatMap { $0.shape == b.shape ? $0.matrices : nil }
            runFloat(plan, a, b, packed, y.pointer(as: Float.self), context)
            return [y.tensor]
        }
        var y = try Tensor(zeros: a.dtype, shape: plan.outputShape)
        guard y.count > 0 else { return [y] }
        switch a.dtype {
        case .float64: plan.runGeneric(a, b, &y, as: Double.self)
        case .int32: plan.runGeneric(a, b, &y, as: Int32.self)
        case .int64: plan.runGeneric(a, b, &y, as: Int64.self)
        case .uint32: plan.runGeneric(a, b, &y, as: UInt32.self)
        case .uint64: plan.runGeneric(a, b, &y, as: UInt64.self)
        default: throw KernelError.invalidInput(index: 0, reason: "MatMul does not accept \(a.dtype)")
        }
        return [y]
    }

    /// Writes every element of `yBase` (plan.outputShape).
    private func runFloat(_ plan: MatMulPlan, _ a: Tensor, _ b: Tensor, _ packed: [SGEMM.PackedMatrix]?,
                          _ yBase: UnsafeMutablePointer<Float>, _ context: ExecutionContext) {
        epilogue.withSGEMMEpilogue { epilogue in
            runFloat(plan, a, b, packed, yBase, context, epilogue: epilogue)
        }
    }

    private func runFloat(_ plan: MatMulPlan, _ a: Tensor, _ b: Tensor, _ packed: [SGEMM.PackedMatrix]?,
                          _ yBase: UnsafeMutablePointer<Float>, _ context: ExecutionContext,
                          epilogue: SGEMM.Epilogue?) {
        let (m, n, k) = (plan.m, plan.n, plan.k)
        a.withUnsafeBufferPointer(as: Float.self) { aBuffer in
            b.withUnsafeBufferPointer(as: Float.self) { bBuffer in
                if k == 0 {
                    yBase.update(repeating: 0, count: plan.batchCount * m * n)
                    epilogue?.apply(to: yBase, rows: plan.batchCount * m, columns: n, ldc: n)
                    return
                }
                let aBase = aBuffer.baseAddress!, bBase = bBuffer.baseAddress!
                // One B for every batch and A's batches contiguous: fold them into M (one big GEMM).
                if plan.bBatchCount == 1, plan.aBatchCount == plan.batchCount {
                    let rows = plan.batchCount * m
                    if let packed {
                        SGEMM.multiply(m: rows, a: aBase, lda: k, packedB: packed[0], c: yBase, ldc: n,
                                       threads: context.threadCount, epilogue: epilogue)
                    } else {
                        SGEMM.multiply(m: rows, n: n, k: k, a: aBase, lda: k, b: bBase, ldb: n, c: yBase, ldc: n,
                                       threads: context.threadCount, epilogue: epilogue)
                    }
                    return
                }
                let offsets = plan.batchOffsets()
                // Many small products (attention): one thread per batch slice. Few large ones: threads
                // inside each GEMM.
                let perBatchThreads = plan.batchCount >= context.threadCount ? 1 : context.threadCount
                let body = { (batch: Int) in
                    let (aIndex, bIndex) = offsets[batch]
                    let aMatrix = aBase + aIndex * m * k, yMatrix = yBase + batch * m * n
                    if let packed {
                        SGEMM.multiply(m: m, a: aMatrix, lda: k, packedB: packed[bIndex], c: yMatrix, ldc: n,
                                       threads: perBatchThreads, epilogue: epilogue)
                    } else {
                        SGEMM.multiply(m: m, n: n, k: k, a: aMatrix, lda: k, b: bBase + bIndex * k * n, ldb: n,
                                       c: yMatrix, ldc: n, threads: perBatchThreads, epilogue: epilogue)
                    }
                }
                if perBatchThreads == 1 {
                    context.parallelFor(plan.batchCount, body)
                } else {
                    for batch in 0..<plan.batchCount { body(batch) }
                }
            }
        }
    }
}

/// Shapes of one MatMul after numpy's 1-D promotion and batch broadcasting.
struct MatMulPlan {
    var m: Int, n: Int, k: Int
    var batchShape: [Int]
    var aBatchShape: [Int], bBatchShape: [Int]
    var outputShape: [Int]
    var batchCount: Int, aBatchCount: Int, bBatchCount: Int

    init(a: [Int], b: [Int]) throws {
        guard !a.isEmpty else { throw KernelError.invalidInput(index: 0, reason: "MatMul needs rank ≥ 1, got a scalar") }
        guard !b.isEmpty else { throw KernelError.invalidInput(index: 1, reason: "MatMul needs rank ≥ 1, got a scalar") }
        let aMatrix = a.count == 1 ? [1, a[0]] : a
        let bMatrix = b.count == 1 ? [b[0], 1] : b
        m = aMatrix[aMatrix.count - 2]
        k = aMatrix[aMatrix.count - 1]
        n = bMatrix[bMatrix.count - 1]
        guard bMatrix[bMatrix.count - 2] == k else {
            throw KernelError.invalid("MatMul: A \(a) and B \(b) disagree on the inner dimension")
        }
        aBatchShape = Array(aMatrix.dropLast(2))
        bBatchShape = Array(bMatrix.dropLast(2))
        guard let batch = Shape.broadcast(aBatchShape, bBatchShape) else {
            throw KernelError.invalid("MatMul: batch shapes of A \(a) and B \(b) do not broadcast")
        }
        batchShape = batch
        var output = batch
        if a.count > 1 { output.append(m) }
        if b.count > 1 { output.append(n) }
        outputShape = output
        batchCount = try Shape.elementCount(batch)
        aBatchCount = try Shape.elementCount(aBatchShape)
        bBatchCount = try Shape.elementCount(bBatchShape)
        _ = try Shape.elementCount(output)
    }

    /// For each output batch (row-major), the batch index into A and into B.
    func batchOffsets() -> [(Int, Int)] {
        let aStrides = broadcastStrides(aBatchShape, to: batchShape)
        let bStrides = broadcastStrides(bBatchShape, to: batchShape)
        var result: [(Int, Int)] = []
        result.reserveCapacity(batchCount)
        var index = [Int](repeating: 0, count: batchShape.count)
        for _ in 0..<batchCount {
            var aOffset = 0, bOffset = 0
            for axis in 0..<batchShape.count {
                aOffset += index[axis] * aStrides[axis]
                bOffset += index[axis] * bStrides[axis]
            }
            result.append((aOffset, bOffset))
            var axis = batchShape.count - 1
            while axis >= 0 {
                index[axis] += 1
                if index[axis] < batchShape[axis] { break }
                index[axis] = 0
                axis -= 1
            }
        }
        return result
    }

    /// The plain-loop path for float64 and integer types.
    func runGeneric<T: MatMulScalar>(_ a: Tensor, _ b: Tensor, _ y: inout Tensor, as type: T.Type) {
        let offsets = batchOffsets()
        let (m, n, k) = (self.m, self.n, self.k)
        a.withUnsafeBufferPointer(as: T.self) { aBuffer in
            b.withUnsafeBufferPointer(as: T.self) { bBuffer in
                y.withUnsafeMutableBufferPointer(as: T.self) { yBuffer in
                    for (batch, (aIndex, bIndex)) in offsets.enumerated() {
                        genericGEMM(m: m, n: n, k: k, a: aBuffer.baseAddress! + aIndex * m * k, lda: k,
                                    b: bBuffer.baseAddress! + bIndex * k * n, ldb: n,
                                    c: yBuffer.baseAddress! + batch * m * n, ldc: n)
                    }
                }
            }
        }
    }
}

/// Element types of the plain-loop GEMM: floats accumulate normally, integers wrap.
protocol MatMulScalar: TensorScalar {
    static var zero: Self { get }
    static func multiplyAdd(_ sum: Self, _ x: Self, _ y: Self) -> Self
    /// Gemm's `alpha · product + beta · prior`; integer types are only asked with alpha = 1 and a prior
    /// that is already zero when beta = 0, so they add with wrap-around.
    static func scaledSum(_ product: Self, _ prior: Self, alpha: Double, beta: Double) -> Self
}

extension MatMulScalar where Self: FixedWidthInteger {
    @inline(__always) static func scaledSum(_ product: Self, _ prior: Self, alpha: Double, beta: Double) -> Self {
        product &+ prior
    }
}

extension Double: MatMulScalar {
    @inline(__always) static func multiplyAdd(_ sum: Double, _ x: Double, _ y: Double) -> Double { sum + x * y }
    @inline(__always) static func scaledSum(_ product: Double, _ prior: Double, alpha: Double, beta: Double) -> Double {
        alpha * product + beta * prior
    }
}
extension Int32: MatMulScalar {
    @inline(__always) static func multiplyAdd(_ sum: Int32, _ x: Int32, _ y: Int32) -> Int32 { sum &+ x &* y }
}
extension Int64: MatMulScalar {
    @inline(__always) static func multiplyAdd(_ sum: Int64, _ x: Int64, _ y: Int64) -> Int64 { sum &+ x &* y }
}
extension UInt32: MatMulScalar {
    @inline(__always) static func multiplyAdd(_ sum: UInt32, _ x: UInt32, _ y: UInt32) -> UInt32 { sum &+ x &* y }
}
extension UInt64: MatMulScalar {
    @inline(__always) static func multiplyAdd(_ sum: UInt64, _ x: UInt64, _ y: UInt64) -> UInt64 { sum &+ x &* y }
}

/// C = A · B (overwriting C) for row-major matrices, i-k-j order so the inner loop streams rows.
func genericGEMM<T: MatMulScalar>(
    m: Int, n: Int, k: Int, a: UnsafePointer<T>, lda: Int, transposeA: Bool = false,
    b: UnsafePointer<T>, ldb: Int, transposeB: Bool = false, c: UnsafeMutablePointer<T>, ldc: Int
) {
    for i in 0..<m {
        let row = c + i * ldc
        for j in 0..<n { row[j] = .zero }
        for p in 0..<k {
            let x = transposeA ? a[p * lda + i] : a[i * lda + p]
            if transposeB {
                for j in 0..<n { row[j] = T.multiplyAdd(row[j], x, b[j * ldb + p]) }
            } else {
                let bRow = b + p * ldb
                for j in 0..<n { row[j] = T.multiplyAdd(row[j], x, bRow[j]) }
            }
        }
    }
}

extension KernelRegistry {
    mutating func registerMatMulKernels() {
        // Versions 1, 9 and 13 differ only in accepted types.
        for version in [1, 9, 13] {
            register("MatMul", since: version) { context in MatMulKernel(constantB: context.constant(1)) }
        }
    }
}
