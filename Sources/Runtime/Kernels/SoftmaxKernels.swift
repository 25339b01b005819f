import Tensors

// Softmax and LogSoftmax.
//
// Before opset 13 the input is coerced to 2-D at `axis` (default 1): each row of
// [prod(shape[..<axis]), prod(shape[axis...])] is normalised as a whole. From opset 13 the operation
// runs along the single axis `axis` (default −1). Both subtract the maximum first, so exp never
// overflows:
//   softmax(x)_i    = exp(x_i − m) / Σ_j exp(x_j − m)
//   logsoftmax(x)_i = x_i − m − log Σ_j exp(x_j − m),   m = max_j x_j

struct SoftmaxKernel: Kernel {
    let opType: String
    let axis: Int
    /// Opset < 13: flatten everything from `axis` on into one row.
    let coercesTo2D: Bool
    let logarithmic: Bool

    struct Visitor: FloatVisitor {
        let kernel: SoftmaxKernel, x: Tensor, split: AxisSplit, context: ExecutionContext
        func visit<T: ElementwiseFloat>(_ type: T.Type) throws -> Tensor {
            let output = try context.output(x.dtype, shape: x.shape)
            x.withUnsafeBufferPointer(as: T.self) { source in
                guard let input = source.baseAddress else { return }
                kernel.normalize(input, output.pointer(as: T.self), split, context: context)
            }
            return output.tensor
        }
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        if let result = try ReducedPrecision.run(inputs, { try run($0, context: context) }) { return result }
        let x = try required(inputs, 0)
        // A scalar behaves as a one-element vector.
        let shape = x.rank == 0 ? [1] : x.shape
        guard let axis = Shape.normalizedAxis(axis, rank: shape.count) else {
            throw KernelError.invalidAttribute("axis", "\(self.axis) is out of range for rank \(x.rank)")
        }
        let split = AxisSplit(shape: shape, axes: axis..<(coercesTo2D ? shape.count : axis + 1))
        guard let result = try Visitor(kernel: self, x: x, split: split, context: context).dispatch(x.dtype) else {
            throw ElementwiseChecks.unsupported(opType, x.dtype)
        }
        return [result]
    }

    func normalize<T: ElementwiseFloat>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ split: AxisSplit,
                                        context: ExecutionContext) {
        let (outer, length, inner) = (split.outer, split.length, split.inner)
        guard length > 0 else { return }
        let total = outer * length * inner
        if inner == 1 {
            if T.self == Float.self {
                // Contiguous float32 rows: the vectorised kernel (this type's row loop is its twin). An
                // exponential per element, even vectorised, makes it a transcendental loop for splitting.
                let xs = UnsafeRawPointer(x).assumingMemoryBound(to: Float.self)
                let ys = UnsafeMutableRawPointer(y).assumingMemoryBound(to: Float.self)
                let grain = ElementwiseParallel.rowGrain(rows: outer, rowLength: length,
                                                         elements: ElementwiseParallel.transcendentalGrain)
                ElementwiseParallel.forRanges(outer, grain: grain, context: context) { rows in
                    VectorMath.softmaxRows(xs + rows.lowerBound * length, ys + rows.lowerBound * length,
                                           rows: rows.count, length: length, logarithmic: logarithmic)
                }
                return
            }
            let grain = ElementwiseParallel.rowGrain(rows: outer, rowLength: length,
                                                     elements: ElementwiseParallel.transcendentalGrain)
            ElementwiseParallel.forRanges(outer, grain: grain, context: context) { rows in
                for row in rows { normalizeRow(x + row * length, y + row * length, length) }
            }
            return
        }
        // Strided: normalise `inner` columns at once, stepping through the axis row by row so the
        // inner loops are contiguous.
        let block = min(inner, 256)
        let blocksPerOuter = (inner + block - 1) / block
        let items = outer * blocksPerOuter
        let grain = total > ElementwiseParallel.transcendentalGrain ? 1 : items
        ElementwiseParallel.forRanges(items, grain: grain, context: context) { range in
            withUnsafeTemporaryAllocation(of: T.self, capacity: 2 * block) { scratch in
                let maxima = scratch.baseAddress!, sums = scratch.baseAddress! + block
                for item in range {
                    let o = item / blocksPerOuter
                    let start = (item % blocksPerOuter) * block
                    let width = min(block, inner - start)
                    let base = o * length * inner + start
                    for j in 0..<width { maxima[j] = -T.infinity; sums[j] = 0 }
                    for l in 0..<length {
                        let row = x + base + l * inner
                        for j in 0..<width { maxima[j] = T.maximum(maxima[j], row[j]) }
                    }
                    for l in 0..<length {
                        let row = x + base + l * inner, out = y + base + l * inner
                        for j in 0..<width {
                            let e = T.vectorizableExponential(row[j] - maxima[j])
                            out[j] = e
                            sums[j] += e
                        }
                    }
                    if logarithmic {
                        for j in 0..<width { sums[j] = T.naturalLog(sums[j]) }
                        for l in 0..<length {
                            let row = x + base + l * inner, out = y + base + l * inner
                            for j in 0..<width { out[j] = row[j] - maxima[j] - sums[j] }
                        }
                    } else {
                        for l in 0..<length {
                            let out = y + base + l * inner
                            for j in 0..<width { out[j] /= sums[j] }
                        }
                    }
                }
            }
        }
    }

    /// One contiguous row, the reference twin of `VectorMath.softmaxRows`.
    @inline(__always)
    func normalizeRow<T: ElementwiseFloat>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ length: Int) {
        let maximum = foldRow(x, length, MaximumFold.self, IdentityPrelude.self)
        // Exponentials first (a loop that vectorizes), then their sum.
        for i in 0..<length { y[i] = T.vectorizableExponential(x[i] - maximum) }
        let sum = foldRow(UnsafePointer(y), length, SumFold.self, IdentityPrelude.self)
        if logarithmic {
            let logSum = T.naturalLog(sum)
            for i in 0..<length { y[i] = x[i] - maximum - logSum }
        } else {
            for i in 0..<length { y[i] /= sum }
        }
    }
}

extension KernelRegistry {
    mutating func registerSoftmaxKernels() {
        for (opType, logarithmic) in [("Softmax", false), ("LogSoftmax", true)] {
            register(opType, since: 1) { context in
                SoftmaxKernel(opType: opType, axis: try context.int("axis", default: 1), coercesTo2D: true,
                              logarithmic: logarithmic)
            }
            register(opType, since: 13) { context in
                SoftmaxKernel(opType: opType, axis: try context.int("axis", default: -1), coercesTo2D: false,
                              logarithmic: logarithmic)
            }
        }
    }
}
