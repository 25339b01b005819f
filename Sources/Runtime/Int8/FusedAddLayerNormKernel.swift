import GraphIR
import Tensors
import _CKernels

/// `com.swiftquant::AddLayerNormalization`: a residual connection and the LayerNormalization after it,
/// `y = LayerNormalization(a + b, scale, bias)` over the last axis, in one pass per row (the sum is written
/// to `y` and normalised in place). Inputs `a`, `b`, `scale`, `bias` (optional); attribute `epsilon`.
///
/// The sum rounds as Add rounds it and the rows are the LayerNormalization kernel's AVX-512 rows, so results
/// equal the two operators'. Without AVX-512, and for inputs other than float32 `a` and `b` of one shape with 1-D `scale` / `bias` of the
/// last axis's size run the two kernels one after the other.
struct FusedAddLayerNormKernel: Kernel {
    let normalization: LayerNormalizationKernel

    init(_ context: KernelBuildContext) throws {
        normalization = LayerNormalizationKernel(axis: -1, epsilon: try context.float("epsilon", default: 1e-5))
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let a = try required(inputs, 0), b = try required(inputs, 1), scale = try required(inputs, 2)
        let bias = optional(inputs, 3)
        guard a.dtype == .float32, b.dtype == .float32, a.shape == b.shape, let width = a.shape.last, width > 0,
              scale.dtype == .float32, scale.shape == [width], bias.map({ $0.dtype == .float32 && $0.shape == [width] }) ?? true,
              normalization.level == .avx512
        else {
            let sum = try BinaryArithmeticKernel<AddOperation>(opType: "Add").run([a, b], context: context)[0]
            return [try normalization.run([sum, scale, bias], context: context)[0]]
        }
        let y = try context.output(.float32, shape: a.shape)
        let rows = a.count / width, out = y.pointer(as: Float.self)
        let beta = try bias ?? Tensor(zeros: .float32, shape: [width])
        a.withUnsafeBufferPointer(as: Float.self) { left in
        b.withUnsafeBufferPointer(as: Float.self) { right in
        scale.withUnsafeBufferPointer(as: Float.self) { gamma in
        beta.withUnsafeBufferPointer(as: Float.self) { beta in
            guard let left = left.baseAddress, let right = right.baseAddress else { return }
            let grain = ElementwiseParallel.rowGrain(rows: rows, rowLength: width)
            ElementwiseParallel.forRanges(rows, grain: grain, context: context) { range in
                let start = range.lowerBound * width, count = range.count * width
                for i in start..<(start + count) { out[i] = left[i] + right[i] }
                // The level is AVX-512 (checked above), which `sq_layer_norm_rows` always runs.
                _ = sq_layer_norm_rows(normalization.level.rawValue, out + start, out + start, range.count, width,
                                       gamma.baseAddress!, beta.baseAddress!, normalization.epsilon, nil, nil)
            }
        }}}}
        return [y.tensor]
    }
}
