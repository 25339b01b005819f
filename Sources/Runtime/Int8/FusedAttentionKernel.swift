import GraphIR
import Tensors

/// `com.swiftquant::Attention`: the core of multi-head attention as PyTorch exports BERT, from the per-head
/// views of the projections to the per-head context, one head at a time while its scores are in cache:
///
///     Q = transpose(q, [0, 2, 1, 3]) · q_scale           q: [B, Sq, H, D]
///     K = transpose(k, [0, 2, 3, 1]) · k_scale           k: [B, Sk, H, D]
///     P = MaskedSoftmax(Q @ K, mask [, c])                [B, H, Sq, Sk]
///     y = P @ transpose(v, [0, 2, 1, 3])                 v: [B, Sk, H, Dv], y: [B, H, Sq, Dv]
///
/// Inputs: 0 `q`, 1 `k`, 2 `v`, 3 `q_scale`, 4 `k_scale` (one-element float32 constants), 5 `mask`
/// (broadcast to the scores), 6 `c` (optional, see `FusedMaskedSoftmaxKernel`). The scaled copies round as
/// the Mul nodes do, both products run on SGEMM as the MatMul kernel runs them (reading v in place, without
/// its transposed copy) and the softmax is `MaskedSoftmax`'s. Inputs the fast path does not cover
/// (other types or ranks, mismatched or broadcast batch shapes) run the replaced operators one by one.
struct FusedAttentionKernel: Kernel {
    let qScale: Tensor
    let kScale: Tensor
    let softmax: FusedMaskedSoftmaxKernel

    init(_ context: KernelBuildContext) throws {
        func scale(_ index: Int, _ name: String) throws -> Tensor {
            guard let value = try context.constantInput(index, name), value.dtype == .float32, value.count == 1,
                  value.rank <= 4 else {
                throw KernelError.invalid("\(name) must be a one-element float32 constant")
            }
            return value
        }
        qScale = try scale(3, "q_scale")
        kScale = try scale(4, "k_scale")
        softmax = try FusedMaskedSoftmaxKernel(replacement: try context.constantInput(6, "nan_value"))
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let q = try required(inputs, 0), k = try required(inputs, 1), v = try required(inputs, 2)
        let mask = try required(inputs, 5)
        guard [q, k, v, mask].allSatisfy({ $0.dtype == .float32 }), q.rank == 4, k.rank == 4, v.rank == 4,
              q.shape[0] == k.shape[0], k.shape[0] == v.shape[0], q.shape[2] == k.shape[2], k.shape[2] == v.shape[2],
              q.shape[3] == k.shape[3], k.shape[1] == v.shape[1], softmax.replacement.map({ $0.dtype == .float32 }) ?? true
        else { return [try unfused(q, k, v, mask, context: context)] }
        let (batches, sq, heads, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3])
        let sk = k.shape[1], dv = v.shape[3]
        let scoresShape = [batches, heads, sq, sk]
        guard Shape.broadcast(scoresShape, mask.shape) == scoresShape else {
            return [try unfused(q, k, v, mask, context: context)]
        }
        let y = try context.output(.float32, shape: [batches, heads, sq, dv])
        guard y.tensor.count > 0 else { return [y.tensor] }
        let out = y.pointer(as: Float.self)
        let maskRows = BroadcastRows(input: mask.shape, output: scoresShape)
        let qFactor = qScale.floats[0], kFactor = kScale.floats[0]
        let nanValue = softmax.replacement?.floats[0], level = softmax.level
        q.withUnsafeBufferPointer(as: Float.self) { qBuffer in
        k.withUnsafeBufferPointer(as: Float.self) { kBuffer in
        v.withUnsafeBufferPointer(as: Float.self) { vBuffer in
        mask.withUnsafeBufferPointer(as: Float.self) { maskBuffer in
            let qs = qBuffer.baseAddress!, ks = kBuffer.baseAddress!, vs = vBuffer.baseAddress!
            let masks = maskBuffer.baseAddress!
            context.parallelFor(batches * heads) { unit in
                let batch = unit / heads, head = unit % heads
                withUnsafeTemporaryAllocation(of: Float.self, capacity: max(1, sq * d + sk * d + sq * sk)) { scratch in
                    let qHead = scratch.baseAddress!, kHead = qHead + sq * d, scores = kHead + sk * d
                    // The head's rows of q and k, scaled (each product rounded, as Mul rounds it).
                    for s in 0..<sq {
                        let source = qs + ((batch * sq + s) * heads + head) * d, target = qHead + s * d
                        for j in 0..<d { target[j] = source[j] * qFactor }
                    }
                    for s in 0..<sk {
                        let source = ks + ((batch * sk + s) * heads + head) * d, target = kHead + s * d
                        for j in 0..<d { target[j] = source[j] * kFactor }
                    }
                    SGEMM.multiply(m: sq, n: sk, k: d, a: qHead, lda: d, b: kHead, ldb: d, transposeB: true,
                                   c: scores, ldc: sk)
                    for s in 0..<sq {
                        let row = scores + s * sk
                        FusedMaskedSoftmaxKernel.maskedRow(row, mask: masks + maskRows.offset(unit * sq + s),
                                                           maskStep: maskRows.lastStride, into: row, length: sk,
                                                           nanValue: nanValue, level: level)
                    }
                    SGEMM.multiply(m: sq, n: dv, k: sk, a: scores, lda: sk,
                                   b: vs + (batch * sk * heads + head) * dv, ldb: heads * dv,
                                   c: out + unit * sq * dv, ldc: dv)
                }
            }
        }}}}
        return [y.tensor]
    }

    /// The operators the kernel replaces, run one after the other (the reference twin).
    func unfused(_ q: Tensor, _ k: Tensor, _ v: Tensor, _ mask: Tensor, context: ExecutionContext) throws -> Tensor {
        func transpose(_ x: Tensor, _ permutation: [Int]) throws -> Tensor {
            try TransposeKernel(permutation: permutation).run([x], context: context)[0]
        }
        func multiply(_ a: Tensor, _ b: Tensor) throws -> Tensor {
            try BinaryArithmeticKernel<MultiplyOperation>(opType: "Mul").run([a, b], context: context)[0]
        }
        func matMul(_ a: Tensor, _ b: Tensor) throws -> Tensor {
            try MatMulKernel(constantB: nil).run([a, b], context: context)[0]
        }
        let scores = try matMul(try multiply(try transpose(q, [0, 2, 1, 3]), qScale),
                                try multiply(try transpose(k, [0, 2, 3, 1]), kScale))
        let p = try softmax.run([scores, mask, softmax.replacement], context: context)[0]
        return try matMul(p, try transpose(v, [0, 2, 1, 3]))
    }
}
