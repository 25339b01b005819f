import QuantCore
import Tensors

/// The requantizing output of a fused operator: `y = clamp(round(acc · M_j) + z_out, clamp)` with
/// `M_j = s_in · s_w[j] / s_out` as fixed-point multipliers.
struct QuantizedOutput: Sendable {
    let quantization: ActivationQuantization
    let multipliers: [FixedPointMultiplier]
    /// The output type's range narrowed by a fused Relu/Clip.
    let clamp: ClosedRange<Int32>
    let columns: ColumnRequantization

    init(_ quantization: ActivationQuantization, realMultipliers: [Double], low: Float?, high: Float?) throws {
        self.init(quantization, multipliers: try realMultipliers.map { try FixedPointMultiplier($0) },
                  clamp: quantization.clampRange(low: low, high: high))
    }

    init(_ quantization: ActivationQuantization, multipliers: [FixedPointMultiplier], clamp: ClosedRange<Int32>) {
        self.quantization = quantization
        self.multipliers = multipliers
        self.clamp = clamp
        columns = ColumnRequantization(multipliers: multipliers, zeroPoint: quantization.zeroPoint, clamp: clamp)
    }

    /// The same output over the channels `range` of a per-channel output (a per-tensor one is unchanged).
    func channels(_ range: Range<Int>) -> QuantizedOutput {
        multipliers.count == 1 ? self : QuantizedOutput(quantization, multipliers: Array(multipliers[range]), clamp: clamp)
    }
}

/// A fused operator's output.
enum FusedOutput: Sendable {
    /// Requantized 8-bit codes.
    case quantized(QuantizedOutput)
    /// Requantized, then dequantized at once — an absorbed `QuantizeLinear → DequantizeLinear [→ Add]`:
    /// `y = Float(q − z_out) · s_out [+ bias[j]]` with `q` the requantized code, in DequantizeLinear's and
    /// Add's float32 operations.
    case dequantized(QuantizedOutput, bias: [Float]?)
    /// `y = clamp(Float(acc) · scale[j] + bias[j], lower, upper)`; one scale and bias per output column.
    case float(scales: [Float], bias: [Float]?, lower: Float, upper: Float)
    /// The float output (no clamp), an optional Gelu, then QuantizeLinear (`FloatQuantizedOutput`).
    case floatQuantized(FloatQuantizedOutput)

    /// Builds the output of a GEMM-like operator with `columns` output channels.
    ///
    /// - Parameters:
    ///   - output: the output quantization, or nil for float output.
    ///   - accumulatorScales: `s_in · s_w[j]`, one value or one per output channel.
    ///   - floatBias: the float bias (float output only).
    ///   - low, high: an activation clamp fused from Relu/Clip, in real values.
    ///   - dequantize: whether the requantized codes are dequantized (`output` must be given), and the
    ///     float bias added after that.
    static func make(output: ActivationQuantization?, accumulatorScales: [Double], columns: Int, floatBias: [Float]?,
                     low: Float?, high: Float?, dequantize: (Bool, bias: [Float]?) = (false, nil)) throws -> FusedOutput {
        guard let output else {
            let scales = accumulatorScales.count == 1
                ? [Float](repeating: Float(accumulatorScales[0]), count: columns) : accumulatorScales.map { Float($0) }
            return .float(scales: scales, bias: floatBias, lower: low ?? -.infinity, upper: high ?? .infinity)
        }
        let quantized = try QuantizedOutput(
            output, realMultipliers: accumulatorScales.map { $0 / Double(output.scale) }, low: low, high: high)
        if dequantize.0 {
            if let bias = dequantize.bias, bias.count != columns {
                throw KernelError.invalid("output bias holds \(bias.count) values, expected \(columns)")
            }
            return .dequantized(quantized, bias: dequantize.bias)
        }
        return .quantized(quantized)
    }

    var dtype: DType {
        switch self {
        case .quantized(let output): return output.quantization.dtype
        case .floatQuantized(let output): return output.quantization.dtype
        case .dequantized, .float: return .float32
        }
    }

    /// The same output over the output channels `range`.
    func channels(_ range: Range<Int>) -> FusedOutput {
        switch self {
        case .quantized(let quantized):
            return .quantized(quantized.channels(range))
        case .dequantized(let quantized, let bias):
            return .dequantized(quantized.channels(range), bias: bias.map { Array($0[range]) })
        case .float(let scales, let bias, let lower, let upper):
            return .float(scales: Array(scales[range]), bias: bias.map { Array($0[range]) }, lower: lower, upper: upper)
        case .floatQuantized(let output):
            return .floatQuantized(output.channels(range))
        }
    }

    /// Runs the fused GEMM and writes element (i, j) to `output[i·rowStride + j·columnStride]` (elements of
    /// `dtype`).
    func execute(_ activations: Int8GEMMActivations, weights: FusedInt8Weights, output: UnsafeMutableRawPointer,
                 rowStride: Int, columnStride: Int, threads: Int) {
        switch self {
        case .quantized(let quantized):
            if quantized.quantization.dtype == .uint8 {
                let stage = QuantizedOutputStage(requantization: quantized.columns,
                                                 output: output.assumingMemoryBound(to: UInt8.self),
                                                 rowStride: rowStride, columnStride: columnStride)
                FusedInt8GEMM.run(activations, weights: weights, stage: stage, threads: threads)
            } else {
                let stage = QuantizedOutputStage(requantization: quantized.columns,
                                                 output: output.assumingMemoryBound(to: Int8.self),
                                                 rowStride: rowStride, columnStride: columnStride)
                FusedInt8GEMM.run(activations, weights: weights, stage: stage, threads: threads)
            }
        case .dequantized(let quantized, let bias):
            withOptionalPointer(bias) { bias in
                let stage = DequantizedOutputStage(requantization: quantized.columns, scale: quantized.quantization.scale,
                                                   bias: bias, output: output.assumingMemoryBound(to: Float.self),
                                                   rowStride: rowStride, columnStride: columnStride)
                FusedInt8GEMM.run(activations, weights: weights, stage: stage, threads: threads)
            }
        case .float(let scales, let bias, let lower, let upper):
            scales.withUnsafeBufferPointer { scales in
                withOptionalPointer(bias) { bias in
                    let stage = FloatOutputStage(scales: scales.baseAddress!, bias: bias, lower: lower, upper: upper,
                                                 output: output.assumingMemoryBound(to: Float.self),
                                                 rowStride: rowStride, columnStride: columnStride)
                    FusedInt8GEMM.run(activations, weights: weights, stage: stage, threads: threads)
                }
            }
        case .floatQuantized(let quantized):
            precondition(columnStride == 1, "a float-quantized output is written row by row")
            quantized.scales.withUnsafeBufferPointer { scales in
                withOptionalPointer(quantized.bias) { bias in
                    let stage = FloatQuantizedOutputStage(output: quantized, scales: scales.baseAddress!, bias: bias,
                                                          y: output.assumingMemoryBound(to: UInt8.self), rowStride: rowStride)
                    FusedInt8GEMM.run(activations, weights: weights, stage: stage, threads: threads)
                }
            }
        }
    }

    /// For a single-channel output (see `channels`): writes `count` accumulators contiguously at `target`.
    func contiguousStage(_ target: UnsafeMutableRawPointer) -> (UnsafePointer<Int32>, Int) -> Void {
        return { acc, count in
            switch self {
            case .quantized(let quantized):
                if quantized.quantization.dtype == .uint8 {
                    quantized.columns.apply(acc, count: count, firstColumn: 0, perColumn: false,
                                            output: target.assumingMemoryBound(to: UInt8.self), stride: 1)
                } else {
                    quantized.columns.apply(acc, count: count, firstColumn: 0, perColumn: false,
                                            output: target.assumingMemoryBound(to: Int8.self), stride: 1)
                }
            case .dequantized(let quantized, let bias):
                withOptionalPointer(bias) { bias in
                    quantized.columns.applyDequantized(
                        acc, count: count, firstColumn: 0, perColumn: false, scale: quantized.quantization.scale,
                        bias: bias, biasStride: 0, output: target.assumingMemoryBound(to: Float.self), stride: 1)
                }
            case .float(let scales, let bias, let lower, let upper):
                let scale = scales[0], shift = bias?[0] ?? 0, hasBias = bias != nil
                let output = target.assumingMemoryBound(to: Float.self)
                for i in 0..<count {
                    var value = Float(acc[i]) * scale
                    if hasBias { value = value + shift }
                    output[i] = value < lower ? lower : (value > upper ? upper : value)
                }
            case .floatQuantized(let quantized):
                let scale = quantized.scales[0], shift = quantized.bias?[0]
                var values = (0..<count).map { i in
                    let value = Float(acc[i]) * scale
                    return shift.map { value + $0 } ?? value
                }
                values.withUnsafeMutableBufferPointer { values in
                    guard let base = values.baseAddress else { return }
                    quantized.finish(base, rows: count, first: 0, count: 1, into: target.assumingMemoryBound(to: UInt8.self),
                                     level: .best)
                }
            }
        }
    }

    /// The reference twin of the output stage over accumulators laid out `[rows, columns]`.
    func reference(_ acc: [Int32]) -> (codes: [Int32]?, floats: [Float]?) {
        switch self {
        case .quantized(let quantized):
            return (FusedInt8Reference.requantized(acc, multipliers: quantized.multipliers,
                                                   zeroPoint: quantized.quantization.zeroPoint, range: quantized.clamp), nil)
        case .dequantized(let quantized, let bias):
            let codes = FusedInt8Reference.requantized(acc, multipliers: quantized.multipliers,
                                                       zeroPoint: quantized.quantization.zeroPoint, range: quantized.clamp)
            let scale = quantized.quantization.scale, zero = quantized.quantization.zeroPoint
            return (nil, codes.indices.map { index in
                let value = Float(codes[index] - zero) * scale
                guard let bias else { return value }
                return value + bias[index % bias.count]
            })
        case .float(let scales, let bias, let lower, let upper):
            return (nil, FusedInt8Reference.scaled(acc, scales: scales, bias: bias, lower: lower, upper: upper))
        case .floatQuantized(let quantized):
            return (quantized.reference(acc), nil)
        }
    }
}

/// Calls `body` with a pointer to the array's elements, or nil.
@inline(__always)
func withOptionalPointer<R>(_ array: [Float]?, _ body: (UnsafePointer<Float>?) -> R) -> R {
    guard let array else { return body(nil) }
    return array.withUnsafeBufferPointer { body($0.baseAddress!) }
}

extension Tensor {
    /// Stores element `source` of a reference result (codes or floats) at flat index `target`.
    mutating func setReferenceElement(_ target: Int, codes: [Int32]?, floats: [Float]?, source: Int) {
        switch dtype {
        case .float32: withUnsafeMutableBufferPointer(as: Float.self) { $0[target] = floats![source] }
        case .uint8: withUnsafeMutableBufferPointer(as: UInt8.self) { $0[target] = UInt8(truncatingIfNeeded: codes![source]) }
        default: withUnsafeMutableBufferPointer(as: Int8.self) { $0[target] = Int8(truncatingIfNeeded: codes![source]) }
        }
    }
}
