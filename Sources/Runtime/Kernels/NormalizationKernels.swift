import Tensors
import _CKernels

// LayerNormalization (opset 17). X is seen as rows [prod(shape[..<axis]), prod(shape[axis...])];
// for each row
//   mean = Σx / D,  var = Σ(x − mean)² / D,  invStdDev = 1 / √(var + epsilon)
//   Y = (x − mean) · invStdDev · Scale + B
// Scale and B broadcast to shape[axis...]. The optional outputs Mean and InvStdDev have shape
// shape[..<axis] followed by ones. Statistics are computed in float32 (stash_type 1) for float16/
// bfloat16/float32 inputs, and in float64 for float64 inputs.

struct LayerNormalizationKernel: Kernel {
    let axis: Int
    let epsilon: Float
    /// The level of the float32 rows (`.reference`: the Swift loop); tests force each.
    var level = TransformerKernelLevel.best

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        var x = try required(inputs, 0), scale = try required(inputs, 1)
        var bias = optional(inputs, 2)
        let originalType = x.dtype
        if ReducedPrecision.isReduced(x.dtype) {
            x = try ReducedPrecision.widen(x)
            if ReducedPrecision.isReduced(scale.dtype) { scale = try ReducedPrecision.widen(scale) }
            if let b = bias, ReducedPrecision.isReduced(b.dtype) { bias = try ReducedPrecision.widen(b) }
        }
        try ElementwiseChecks.sameDType([x, scale] + (bias.map { [$0] } ?? []), opType: "LayerNormalization")
        guard let axis = Shape.normalizedAxis(axis, rank: x.rank) else {
            throw KernelError.invalidAttribute("axis", "\(self.axis) is out of range for rank \(x.rank)")
        }
        let normalizedShape = Array(x.shape[axis...])
        let split = AxisSplit(shape: x.shape, axes: axis..<x.rank)
        let scaleRow = try Self.expand(scale, to: normalizedShape, index: 1)
        let biasRow = try bias.map { try Self.expand($0, to: normalizedShape, index: 2) }
        let statisticsShape = Array(x.shape[..<axis]) + Array(repeating: 1, count: x.rank - axis)

        var outputs: [Tensor]
        switch x.dtype {
        case .float32: outputs = try normalize(Float.self, x, scaleRow, biasRow, split, statisticsShape, context)
        case .float64: outputs = try normalize(Double.self, x, scaleRow, biasRow, split, statisticsShape, context)
        default: throw ElementwiseChecks.unsupported("LayerNormalization", x.dtype)
        }
        if ReducedPrecision.isReduced(originalType) {
            outputs[0] = try ReducedPrecision.narrow(outputs[0], to: originalType)
        }
        return outputs
    }

    /// `tensor` broadcast (unidirectionally) to `shape`, materialised.
    static func expand(_ tensor: Tensor, to shape: [Int], index: Int) throws -> Tensor {
        if tensor.shape == shape { return tensor }
        var own = tensor.shape
        // Leading ones beyond the normalised rank do not change the broadcast.
        while own.count > shape.count, own.first == 1 { own.removeFirst() }
        guard own.count <= shape.count, Shape.broadcast(shape, own) == shape else {
            throw KernelError.invalidInput(
                index: index, reason: "shape \(tensor.shape) cannot be broadcast to the normalized shape \(shape)")
        }
        return try materializedBroadcast(tensor.reshaped(own), to: shape)
    }

    private func normalize<T: ElementwiseFloat>(
        _: T.Type, _ x: Tensor, _ scale: Tensor, _ bias: Tensor?, _ split: AxisSplit, _ statisticsShape: [Int],
        _ context: ExecutionContext
    ) throws -> [Tensor] {
        var means = try Tensor(zeros: x.dtype, shape: statisticsShape)
        var inverseDeviations = try Tensor(zeros: x.dtype, shape: statisticsShape)
        let rows = split.outer, width = split.length * split.inner
        let epsilon = T(self.epsilon)
        guard width > 0 else { return [try Tensor(zeros: x.dtype, shape: x.shape), means, inverseDeviations] }
        let y = try context.output(x.dtype, shape: x.shape)
        let beta = try bias ?? Tensor(zeros: x.dtype, shape: [width])
        let grain = ElementwiseParallel.rowGrain(rows: rows, rowLength: width)

        /// Normalises `rows` of x into y and records each row's statistics.
        func normalizeRows(_ rows: Range<Int>, x: UnsafePointer<T>, y: UnsafeMutablePointer<T>,
                           gamma: UnsafePointer<T>, beta: UnsafePointer<T>,
                           means: UnsafeMutablePointer<T>, inverses: UnsafeMutablePointer<T>) {
            for row in rows {
                let input = x + row * width, output = y + row * width
                // Centre on the row's first element before summing: for rows with a large common offset the
                // differences are exact and small, so neither the mean nor x − mean loses the digits that
                // a plain float sum (and a mean rounded to float) would.
                let pivot = input[0]
                for i in 0..<width { output[i] = input[i] - pivot }
                let shift = foldRow(UnsafePointer(output), width, SumFold.self, IdentityPrelude.self) / T(width)
                let mean = pivot + shift
                // Two passes: Σ(x − mean)² keeps precision where E[x²] − mean² would cancel.
                for i in 0..<width { output[i] -= shift }
                let variance = foldRow(UnsafePointer(output), width, SumFold.self, SquarePrelude.self) / T(width)
                let inverse = 1 / (variance + epsilon).squareRoot()
                for i in 0..<width { output[i] = output[i] * inverse * gamma[i] + beta[i] }
                means[row] = mean
                inverses[row] = inverse
            }
        }

        x.withUnsafeBufferPointer(as: T.self) { xs in
            let ys = y.pointer(as: T.self)
            means.withUnsafeMutableBufferPointer(as: T.self) { meanOut in
                inverseDeviations.withUnsafeMutableBufferPointer(as: T.self) { inverseOut in
                    scale.withUnsafeBufferPointer(as: T.self) { gamma in
                        beta.withUnsafeBufferPointer(as: T.self) { beta in
                            ElementwiseParallel.forRanges(rows, grain: grain, context: context) { range in
                                if T.self == Float.self, level != .reference {
                                    // float32 rows: the vectorised kernel (`normalizeRows` is its twin).
                                    let floats = { (p: UnsafePointer<T>) in UnsafeRawPointer(p).assumingMemoryBound(to: Float.self) }
                                    let done = sq_layer_norm_rows(
                                        level.rawValue, floats(xs.baseAddress! + range.lowerBound * width),
                                        UnsafeMutableRawPointer(ys + range.lowerBound * width).assumingMemoryBound(to: Float.self),
                                        range.count, width, floats(gamma.baseAddress!), floats(beta.baseAddress!),
                                        self.epsilon,
                                        UnsafeMutableRawPointer(meanOut.baseAddress! + range.lowerBound).assumingMemoryBound(to: Float.self),
                                        UnsafeMutableRawPointer(inverseOut.baseAddress! + range.lowerBound).assumingMemoryBound(to: Float.self))
                                    if done != 0 { return }
                                }
                                normalizeRows(range, x: xs.baseAddress!, y: ys,
                                              gamma: gamma.baseAddress!, beta: beta.baseAddress!,
                                              means: meanOut.baseAddress!, inverses: inverseOut.baseAddress!)
                            }
                        }
                    }
                }
            }
        }
        return [y.tensor, means, inverseDeviations]
    }
}

extension KernelRegistry {
    mutating func registerNormalizationKernels() {
        register("LayerNormalization", since: 17) { context in
            let stashType = try context.int("stash_type", default: 1)
            guard stashType == 1 else {
                throw KernelError.unsupported("LayerNormalization stash_type \(stashType) (only 1, float32)")
            }
            return LayerNormalizationKernel(axis: try context.int("axis", default: -1),
                                            epsilon: try context.float("epsilon", default: 1e-5))
        }
    }
}
