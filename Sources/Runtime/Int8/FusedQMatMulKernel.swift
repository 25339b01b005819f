import Foundation
import GraphIR
import QuantCore
import Tensors

/// `com.swiftquant::QMatMul`: the integer execution of
/// `DequantizeLinear(A) → MatMul | Gemm (·, DequantizeLinear(B)) [+ bias] [→ Relu | Clip] [→ QuantizeLinear]`.
///
/// Inputs: 0 `A` (uint8/int8), 1 `a_scale`, 2 `a_zero_point`, 3 `B` (int8/uint8), 4 `b_scale`,
/// 5 `b_zero_point`, 6 `bias` (optional: int32 in accumulator units `a_scale · b_scale[j]`, or float32),
/// 7 `y_scale`, 8 `y_zero_point` (both omitted: float output). Attributes: `transB` (B is `[N, K]`),
/// `clip_min` / `clip_max` (a fused Relu/Clip, real values), `quantize_float_output` with optional
/// `activation = "Gelu"` (an absorbed `[Gelu →] QuantizeLinear` of the float output; constant B only, y's
/// parameters per tensor or per column). Scales and zero points are constants, per tensor except B's, which
/// may be per column.
///
///     acc[i][j] = Σ_k (A[i][k] − a_zp)(B[k][j] − b_zp[j]) + bias[j]            (int32)
///     y = clamp(round(acc · a_scale·b_scale[j] / y_scale) + y_zp)               (quantized output)
///     y = clamp(Float(acc) · (a_scale·b_scale[j]) + float_bias[j])              (float output)
///     y = QuantizeLinear(gelu(Float(acc) · (a_scale·b_scale[j]) + float_bias[j]), y_scale, y_zp)
///                                                                  (quantize_float_output, see `FloatQuantizedOutput`)
///
/// A constant B is packed once when the session is built. A runtime B (activation × activation, as in
/// attention) has per-tensor parameters, batches like numpy matmul and is packed per run.
struct FusedQMatMulKernel: Kernel {
    let input: ActivationQuantization
    let weightType: DType
    let weightQuantization: WeightQuantization
    let transposeB: Bool
    /// B when constant: as given (for the reference twin) and packed.
    let constantB: Tensor?
    let prepared: FusedInt8Weights?
    /// Bias in accumulator units (quantized output) and in real values (float output).
    let int32Bias: [Int32]?
    let floatBias: [Float]?
    let clamp: (low: Float?, high: Float?)
    /// An absorbed DequantizeLinear [→ Add] after the requantization (`dequantize_output`, `output_bias`).
    let dequantizeOutput: (Bool, bias: [Float]?)
    let outputQuantization: ActivationQuantization?
    /// The output of a constant-B kernel (a runtime-B kernel builds it per run, when N is known).
    let output: FusedOutput?
    /// A's required rank (`a_rank`; 2 for a fused Gemm), if any.
    let requiredRank: Int?

    init(_ context: KernelBuildContext) throws {
        input = try ActivationQuantization(scale: try context.constantInput(1, "a_scale"),
                                           zeroPoint: try context.constantInput(2, "a_zero_point"), what: "A")
        transposeB = try context.int("transB", default: 0) != 0
        requiredRank = context.has("a_rank") ? try context.int("a_rank") : nil
        clamp = try context.fusedClamp()
        dequantizeOutput = try context.dequantizedOutput()
        let yScale = try context.constantInput(7, "y_scale")
        // `quantize_float_output`: y_scale / y_zero_point belong to a QuantizeLinear of the float output
        // (after an optional `activation`), not to a requantization.
        let floatQuantization = try context.int("quantize_float_output", default: 0) == 0 ? nil
            : try FloatQuantization(scale: yScale, zeroPoint: try context.constantInput(8, "y_zero_point"))
        let activation = try context.string("activation", default: "")
        guard activation.isEmpty || (activation == "Gelu" && floatQuantization != nil) else {
            throw KernelError.invalidAttribute("activation", "'\(activation)' is not supported (only Gelu, with quantize_float_output)")
        }
        outputQuantization = try floatQuantization != nil ? nil : yScale.map {
            try ActivationQuantization(scale: $0, zeroPoint: try context.constantInput(8, "y_zero_point"), what: "y")
        }
        let biasTensor = try context.constantInput(6, "bias")
        let b = context.constant(3)
        let bScale = try context.constantInput(4, "b_scale"), bZero = try context.constantInput(5, "b_zero_point")
        if let b {
            guard b.rank == 2 else { throw KernelError.invalid("a constant B must be 2-D, got \(b.shape)") }
            let (k, n) = transposeB ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
            weightType = b.dtype
            weightQuantization = try WeightQuantization(scale: bScale, zeroPoint: bZero, weightType: b.dtype, channels: n)
            let scales = Self.accumulatorScales(input.scale, weightQuantization.scales)
            (int32Bias, floatBias) = try Self.bias(biasTensor, columns: n, scales: scales, floatOutput: outputQuantization == nil)
            // The activation zero point is a constant: its column offsets are computed once, here.
            prepared = try FusedInt8Weights(weights: b, k: k, n: n, transposed: transposeB,
                                            zeroPoints: weightQuantization.zeroPoints, bias: int32Bias)
                .precomputingOffsets(activationZeroPoint: input.dtype == .int8 ? input.zeroPoint + 128 : input.zeroPoint)
            if let floatQuantization {
                guard floatQuantization.channels == 1 || floatQuantization.channels == n else {
                    throw KernelError.invalid("y_scale holds \(floatQuantization.channels) values; expected 1 or N = \(n)")
                }
                guard clamp.low == nil, clamp.high == nil, !dequantizeOutput.0 else {
                    throw KernelError.invalid("quantize_float_output excludes clip_min / clip_max and dequantize_output")
                }
                output = .floatQuantized(FloatQuantizedOutput(
                    scales: scales.count == 1 ? [Float](repeating: Float(scales[0]), count: n) : scales.map { Float($0) },
                    bias: floatBias, gelu: activation == "Gelu", quantization: floatQuantization))
            } else {
                output = try FusedOutput.make(output: outputQuantization, accumulatorScales: scales, columns: n,
                                              floatBias: floatBias, low: clamp.low, high: clamp.high,
                                              dequantize: dequantizeOutput)
            }
            constantB = b
        } else {
            guard !transposeB else { throw KernelError.unsupported("transB with a runtime B") }
            guard floatQuantization == nil else { throw KernelError.unsupported("quantize_float_output with a runtime B") }
            guard let bZero, bZero.dtype == .uint8 || bZero.dtype == .int8 else {
                throw KernelError.invalid("a runtime B needs a constant uint8/int8 zero point")
            }
            weightType = bZero.dtype
            weightQuantization = try WeightQuantization(scale: bScale, zeroPoint: bZero, weightType: bZero.dtype, channels: 1)
            guard weightQuantization.scales.count == 1 else { throw KernelError.invalid("a runtime B needs per-tensor parameters") }
            let scales = Self.accumulatorScales(input.scale, weightQuantization.scales)
            if let biasTensor {
                (int32Bias, floatBias) = try Self.bias(biasTensor, columns: biasTensor.count, scales: scales,
                                                       floatOutput: outputQuantization == nil)
            } else {
                (int32Bias, floatBias) = (nil, nil)
            }
            prepared = nil
            output = nil
            constantB = nil
        }
    }

    /// `s_in · s_w[j]` in double.
    static func accumulatorScales(_ inputScale: Float, _ weightScales: [Float]) -> [Double] {
        weightScales.map { Double(inputScale) * Double($0) }
    }

    /// The bias as int32 accumulator units (quantized output; float biases are converted) or as float
    /// values (float output; int32 biases are scaled by the accumulator scale in float32).
    static func bias(_ tensor: Tensor?, columns: Int, scales: [Double], floatOutput: Bool) throws
        -> (int32: [Int32]?, float: [Float]?)
    {
        let (integer, real) = try FusedBias.read(tensor, channels: columns)
        if floatOutput {
            if let integer {
                return (nil, integer.indices.map { Float(integer[$0]) * Float(scales.count == 1 ? scales[0] : scales[$0]) })
            }
            return (nil, real)
        }
        if let real { return (try FusedBias.int32(real, accumulatorScales: scales), nil) }
        return (integer, nil)
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        try compute(inputs, context: context, reference: false)
    }

    /// The reference twin: the same result element by element from the original operand values.
    func runReference(_ inputs: [Tensor?]) throws -> [Tensor] {
        try compute(inputs, context: ExecutionContext(threadCount: 1), reference: true)
    }

    private func compute(_ inputs: [Tensor?], context: ExecutionContext, reference: Bool) throws -> [Tensor] {
        let a = try required(inputs, 0)
        guard a.dtype == input.dtype else {
            throw KernelError.invalidInput(index: 0, reason: "A is \(a.dtype) but its zero point is \(input.dtype)")
        }
        if let requiredRank, a.rank != requiredRank {
            throw KernelError.invalidInput(index: 0, reason: "A must have rank \(requiredRank), got shape \(a.shape)")
        }
        if let prepared, let output, let constantB {
            guard a.rank >= 1, a.shape[a.rank - 1] == prepared.depth else {
                throw KernelError.invalidInput(index: 0, reason: "A \(a.shape) does not end in K = \(prepared.depth)")
            }
            let m = try Shape.elementCount(Array(a.shape.dropLast()))
            let shape = Array(a.shape.dropLast()) + [prepared.columns]
            if reference {
                var y = try Tensor(zeros: output.dtype, shape: shape)
                let values = try referenceOutput(a: try a.quantizedIntegerValues(input: 0), m: m, b: constantB,
                                                 k: prepared.depth, n: prepared.columns, output: output)
                try fill(&y, values)
                return [y]
            }
            let y = try context.output(output.dtype, shape: shape)
            try multiply(a, rows: m, weights: prepared, output: output, into: y.bytes, threads: context.threadCount)
            return [y.tensor]
        }
        return [try runWithRuntimeB(a, try required(inputs, 3), context: context, reference: reference)]
    }

    /// Fused GEMM of the `rows` rows of `a` into `y` (`rows × N` elements of the output type, every one written).
    private func multiply(_ a: Tensor, rows: Int, weights: FusedInt8Weights, output: FusedOutput,
                          into y: UnsafeMutableRawPointer, threads: Int) throws {
        let view = try UInt8Activations(a, zeroPoint: input.zeroPoint)
        defer { view.release() }
        output.execute(Int8GEMMActivations(m: rows, a: view.pointer, lda: weights.depth, zeroPoint: view.zeroPoint),
                       weights: weights, output: y, rowStride: weights.columns, columnStride: 1, threads: threads)
    }

    /// Activation × activation: B packed per batch matrix, batches broadcast like numpy matmul.
    private func runWithRuntimeB(_ a: Tensor, _ b: Tensor, context: ExecutionContext, reference: Bool) throws -> Tensor {
        guard b.dtype == weightType else {
            throw KernelError.invalidInput(index: 3, reason: "B is \(b.dtype) but its zero point is \(weightType)")
        }
        let plan = try MatMulPlan(a: a.shape, b: b.shape)
        let (m, n, k) = (plan.m, plan.n, plan.k)
        let scales = Self.accumulatorScales(input.scale, weightQuantization.scales)
        if let bias = int32Bias ?? floatBias.map({ $0.map { _ in Int32(0) } }), bias.count != n {
            throw KernelError.invalidInput(index: 6, reason: "bias holds \(bias.count) values, N is \(n)")
        }
        let output = try FusedOutput.make(output: outputQuantization, accumulatorScales: scales, columns: n,
                                          floatBias: floatBias, low: clamp.low, high: clamp.high,
                                          dequantize: dequantizeOutput)
        var y = try Tensor(zeros: output.dtype, shape: plan.outputShape)
        guard y.count > 0 else { return y }
        let offsets = plan.batchOffsets()
        if reference {
            let bValues = try b.quantizedIntegerValues(input: 3)
            let aValues = try a.quantizedIntegerValues(input: 0)
            var values: (codes: [Int32], floats: [Float]) = ([], [])
            for (aIndex, bIndex) in offsets {
                let matrix = try Tensor(shape: [k, n], scalars: Array(bValues[(bIndex * k * n)..<((bIndex + 1) * k * n)]))
                let part = try referenceOutput(a: Array(aValues[(aIndex * m * k)..<((aIndex + 1) * m * k)]), m: m,
                                               b: matrix, k: k, n: n, output: output)
                values.codes += part.codes ?? []
                values.floats += part.floats ?? []
            }
            try fill(&y, (output.dtype == .float32 ? nil : values.codes, output.dtype == .float32 ? values.floats : nil))
            return y
        }
        let view = try UInt8Activations(a, zeroPoint: input.zeroPoint)
        defer { view.release() }
        let elementSize = output.dtype == .float32 ? 4 : 1
        let batchThreads = plan.batchCount >= context.threadCount ? 1 : context.threadCount
        let unsigned = b.dtype == .uint8, zeroPoints = weightQuantization.zeroPoints, bias = int32Bias
        var failure: Error?
        // Batches may run on several threads at once, and a failure is the same for all of them.
        let failureLock = NSLock()
        b.withUnsafeBytes { bRaw in
            y.withUnsafeMutableBytes { raw in
                let body = { (batch: Int) in
                    let (aIndex, bIndex) = offsets[batch]
                    let packed = FusedInt8Weights.pack(bRaw.baseAddress! + bIndex * k * n, unsigned: unsigned, k: k, n: n,
                                                       transposed: false)
                    do {
                        let weights = try FusedInt8Weights(packed: packed, zeroPoints: zeroPoints, shift: unsigned ? 128 : 0,
                                                           bias: bias)
                        output.execute(Int8GEMMActivations(m: m, a: view.pointer + aIndex * m * k, lda: k, zeroPoint: view.zeroPoint),
                                       weights: weights, output: raw.baseAddress! + batch * m * n * elementSize,
                                       rowStride: n, columnStride: 1, threads: batchThreads)
                    } catch {
                        failureLock.withLock { failure = error }
                    }
                }
                if batchThreads == 1 {
                    context.parallelFor(plan.batchCount, body)
                } else {
                    for batch in 0..<plan.batchCount { body(batch) }
                }
            }
        }
        if let failure { throw failure }
        return y
    }

    /// The reference twin's output for one matrix: accumulators, then the output stage, element by element.
    private func referenceOutput(a: [Int32], m: Int, b: Tensor, k: Int, n: Int, output: FusedOutput) throws
        -> (codes: [Int32]?, floats: [Float]?)
    {
        var bValues = try b.quantizedIntegerValues(input: 3)
        if transposeB {
            bValues = (0..<(k * n)).map { index in bValues[(index % n) * k + index / n] }
        }
        let acc = FusedInt8Reference.accumulators(
            m: m, k: k, n: n, a: a, activationZeroPoint: input.zeroPoint, b: bValues,
            weightZeroPoints: weightQuantization.zeroPoints, bias: int32Bias)
        return output.reference(acc)
    }

    private func fill(_ y: inout Tensor, _ values: (codes: [Int32]?, floats: [Float]?)) throws {
        switch y.dtype {
        case .float32: y = try Tensor(shape: y.shape, scalars: values.floats ?? [])
        case .uint8: y = try Tensor(shape: y.shape, scalars: (values.codes ?? []).map { UInt8(truncatingIfNeeded: $0) })
        default: y = try Tensor(shape: y.shape, scalars: (values.codes ?? []).map { Int8(truncatingIfNeeded: $0) })
        }
    }
}
