import GraphIR
import Tensors

/// BatchNormalization in inference mode (opsets 1, 6, 7, 9, 14, 15):
///
///     Y = (X − mean) / √(var + epsilon) · scale + B
///
/// per channel (axis 1), folded once per run into `Y = X · a + b` with `a = scale / √(var + ε)` and
/// `b = B − mean · a` (computed in Double). Opset 7's `spatial = 0` takes statistics per
/// (channel, position). Training (`is_test = 0` before opset 7, opset 14+ `training_mode = 1`, or the
/// extra running-statistics outputs before 14) is reported as unsupported. From 15 scale/B and mean/var may each have their own
/// floating type.
struct BatchNormKernel: Kernel {
    let epsilon: Double
    let spatial: Bool
    /// From opset 15, scale/B and mean/var need not share X's type.
    let mixedTypes: Bool

    init(_ context: KernelBuildContext) throws {
        epsilon = Double(try context.float("epsilon", default: 1e-5))
        let version = context.opsetVersion
        mixedTypes = version >= 15
        if version < 7, try context.int("is_test", default: 0) == 0 {
            throw KernelError.unsupported("BatchNormalization with is_test = 0 (training is not supported)")
        }
        if version < 9 {
            spatial = try context.int("spatial", default: 1) != 0
        } else {
            guard !context.has("spatial") else {
                throw KernelError.invalidAttribute("spatial", "was removed in opset 9")
            }
            spatial = true
        }
        if version >= 14, try context.int("training_mode", default: 0) != 0 {
            throw KernelError.unsupported("BatchNormalization with training_mode = 1 (training is not supported)")
        }
        if version < 14, context.node.outputs.dropFirst().contains(where: { !$0.isEmpty }) {
            throw KernelError.unsupported("BatchNormalization statistics outputs (training mode is not supported)")
        }
    }

    static let dtypes: Set<DType> = [.float32, .float64, .float16, .bfloat16]

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try required(inputs, 0)
        try x.requireDType(Self.dtypes, input: 0, "BatchNormalization")
        guard x.rank >= 2 else {
            throw KernelError.invalidInput(index: 0, reason: "BatchNormalization needs rank ≥ 2, got \(x.shape)")
        }
        let channels = x.shape[1]
        let planeSize = try Shape.elementCount(Array(x.shape.dropFirst(2)))
        // Per-channel parameters, or per (channel, position) for opset 7 with spatial = 0.
        let groups = spatial ? channels : channels * planeSize
        let expectedShape = spatial ? [channels] : Array(x.shape.dropFirst())
        var parameters: [[Double]] = []
        for index in 1...4 {
            let tensor = try required(inputs, index)
            try tensor.requireDType(Self.dtypes, input: index, "BatchNormalization")
            if !mixedTypes, tensor.dtype != x.dtype {
                throw KernelError.invalidInput(index: index, reason: "dtype \(tensor.dtype) differs from X's \(x.dtype)")
            }
            guard tensor.count == groups, tensor.shape == expectedShape || tensor.shape == [groups] else {
                throw KernelError.invalidInput(
                    index: index, reason: "must have shape \(expectedShape), got \(tensor.shape)")
            }
            parameters.append(try Self.doubles(tensor))
        }
        var scale = [Double](repeating: 0, count: groups), shift = scale
        for i in 0..<groups {
            scale[i] = parameters[0][i] / (parameters[3][i] + epsilon).squareRoot()
            shift[i] = parameters[1][i] - parameters[2][i] * scale[i]
        }
        let inner = spatial ? planeSize : 1
        let outer = x.shape[0]
        switch x.dtype {
        case .float32: return [try Self.apply(x, scale: scale, shift: shift, outer: outer, inner: inner,
                                              threads: context.threadCount, as: Float.self)]
        case .float64: return [try Self.apply(x, scale: scale, shift: shift, outer: outer, inner: inner,
                                              threads: context.threadCount, as: Double.self)]
        default:
            let wide = try ReducedPrecision.widened(x)
            let y = try Self.apply(wide, scale: scale, shift: shift, outer: outer, inner: inner,
                                   threads: context.threadCount, as: Float.self)
            return [try ReducedPrecision.narrowed(y, to: x.dtype)]
        }
    }

    /// `y = x · scale[g] + shift[g]` where g runs over `scale.count` groups of `inner` elements, repeated
    /// `outer` times.
    static func apply<T: BinaryFloatingPoint & TensorScalar>(
        _ x: Tensor, scale: [Double], shift: [Double], outer: Int, inner: Int, threads: Int, as type: T.Type
    ) throws -> Tensor {
        var y = try Tensor(zeros: x.dtype, shape: x.shape)
        let groups = scale.count
        let a = scale.map { T($0) }, b = shift.map { T($0) }
        x.withUnsafeBufferPointer(as: T.self) { source in
            y.withUnsafeMutableBufferPointer(as: T.self) { target in
                let input = source.baseAddress!, output = target.baseAddress!
                Parallel.forEach(outer * groups, threads: x.count >= 1 << 15 ? threads : 1) { block in
                    let g = block % groups
                    let (multiplier, offset) = (a[g], b[g])
                    let start = block * inner
                    for i in start..<(start + inner) { output[i] = input[i] * multiplier + offset }
                }
            }
        }
        return y
    }

    static func doubles(_ tensor: Tensor) throws -> [Double] {
        switch tensor.dtype {
        case .float32: return tensor.scalars(as: Float.self).map { Double($0) }
        case .float64: return tensor.scalars(as: Double.self)
        case .float16: return tensor.scalars(as: Float16.self).map { Double($0) }
        case .bfloat16: return tensor.scalars(as: BFloat16.self).map { Double($0.floatValue) }
        default: throw KernelError.invalid("expected a floating tensor, got \(tensor.dtype)")
        }
    }
}

extension KernelRegistry {
    mutating func registerBatchNormKernels() {
        // 1 and 6: `is_test`; 7: `spatial`; 9: spatial removed; 14: training_mode; 15: separate types for
        // scale/B and mean/var.
        for version in [1, 6, 7, 9, 14, 15] {
            register("BatchNormalization", since: version) { context in try BatchNormKernel(context) }
        }
    }
}
