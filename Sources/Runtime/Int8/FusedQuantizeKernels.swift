import GraphIR
import Tensors
import _CKernels

// Per-tensor QuantizeLinear, DequantizeLinear and DequantizeLinear → QuantizeLinear on float32 and
// 8-bit codes, as tight loops. They compute exactly what the reference kernels compute (same float32
// operations in the same order), so they equal them bit for bit.

/// `com.swiftquant::Quantize`: `y = clamp(round_half_even(x / scale) + zero_point)`, float32 `x`,
/// uint8/int8 `y`; inputs `x`, `scale`, `zero_point` (constants). One value each quantizes per tensor; C
/// values quantize per channel along the last axis of `x`, which must then have C elements (static
/// quantization writes SmoothQuant's per-channel factors this way). NaN goes to the low end, as in the
/// reference QuantizeLinear.
///
/// Rounding adds 1.5·2^23: for |v| < 2^22 the sum's low mantissa bits are `round_half_even(v)` (offset by
/// 2^22), read back as an integer. The quotient is first clamped to one step beyond the output range,
/// which changes no result, so the loop has no rounding instruction, no float-to-int conversion check and
/// no branch, and vectorises.
struct FusedQuantizeKernel: Kernel {
    let quantization: FloatQuantization
    /// Other input types (int32, half precision) go to the reference kernel.
    let fallback: QuantizeLinearKernel
    /// The instruction-set level of the float32 loop (tests force each).
    var level = TransformerKernelLevel.best

    init(_ context: KernelBuildContext) throws {
        quantization = try FloatQuantization(scale: try context.constantInput(1, "scale"),
                                             zeroPoint: try context.constantInput(2, "zero_point"))
        fallback = try QuantizeLinearKernel(context, version: 21)
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try required(inputs, 0)
        guard x.dtype == .float32 else { return try fallback.run(inputs, context: context) }
        let channels = quantization.channels
        if channels > 1 {
            guard x.rank >= 1, x.shape[x.rank - 1] == channels else {
                throw KernelError.invalidInput(index: 0, reason: "quantizes \(channels) channels along the last axis; x has shape \(x.shape)")
            }
        }
        let y = try context.output(quantization.dtype, shape: x.shape)
        x.withUnsafeBufferPointer(as: Float.self) { source in
            guard let base = source.baseAddress else { return }
            let rows = source.count / channels, output = y.bytes.assumingMemoryBound(to: UInt8.self)
            Parallel.forRanges(rows, threads: context.threadCount, grain: max(1, (1 << 15) / channels)) { part in
                quantization.quantize(base + part.lowerBound * channels, rows: part.count, firstChannel: 0,
                                      channelCount: channels, into: output + part.lowerBound * channels, level: level)
            }
        }
        return [y.tensor]
    }
}

/// QuantizeLinear's parameters for float32 input, per tensor or per channel along the last axis, with the
/// vectorised loop (`sq_quantize_f32`) and its pure-Swift twin (see `FusedQuantizeKernel`).
struct FloatQuantization: Sendable {
    /// One entry per channel (one entry per tensor).
    let scales: [Float]
    let zeroPoints: [Int32]
    let dtype: DType

    var channels: Int { scales.count }

    /// The parameters of channels `range` (per channel only).
    func slice(_ range: Range<Int>) -> FloatQuantization {
        FloatQuantization(scales: Array(scales[range]), zeroPoints: Array(zeroPoints[range]), dtype: dtype)
    }

    private init(scales: [Float], zeroPoints: [Int32], dtype: DType) {
        self.scales = scales
        self.zeroPoints = zeroPoints
        self.dtype = dtype
    }
    private var range: ClosedRange<Int32> { dtype == .int8 ? -128...127 : 0...255 }

    /// Reads constant `scale` and `zero_point`: one value each (per tensor), or C values each (per channel).
    init(scale: Tensor?, zeroPoint: Tensor?) throws {
        guard let scale, scale.count > 1 else {
            let output = try ActivationQuantization(scale: scale, zeroPoint: zeroPoint, what: "y")
            scales = [output.scale]
            zeroPoints = [output.zeroPoint]
            dtype = output.dtype
            return
        }
        guard scale.dtype == .float32, scale.rank == 1 else {
            throw KernelError.invalid("y scale must be float32 of one dimension, got \(scale.dtype) \(scale.shape)")
        }
        scales = scale.scalars(as: Float.self)
        guard scales.allSatisfy({ $0.isFinite && $0 > 0 }) else { throw KernelError.invalid("y scales must be finite and > 0") }
        guard let zeroPoint, zeroPoint.shape == scale.shape, zeroPoint.dtype == .uint8 || zeroPoint.dtype == .int8 else {
            throw KernelError.invalid("y zero point must be uint8 or int8 of shape \(scale.shape)")
        }
        zeroPoints = try zeroPoint.quantizedIntegerValues(input: 2)
        dtype = zeroPoint.dtype
    }

    /// Quantizes `rows` rows of `channelCount` floats holding channels `firstChannel ..< firstChannel +
    /// channelCount` (any channels per tensor) into `y` (the codes' bytes), at `level`.
    func quantize(_ x: UnsafePointer<Float>, rows: Int, firstChannel: Int, channelCount: Int,
                  into y: UnsafeMutablePointer<UInt8>, level: TransformerKernelLevel) {
        let range = self.range
        // Per tensor the rows are one run of elements.
        let (runs, width, first) = channels == 1 ? (1, rows * channelCount, 0) : (rows, channelCount, firstChannel)
        scales.withUnsafeBufferPointer { scaleBuffer in
            zeroPoints.withUnsafeBufferPointer { zeroBuffer in
                let scales = scaleBuffer.baseAddress! + first, zeros = zeroBuffer.baseAddress! + first
                if level != .reference,
                   sq_quantize_f32(level.rawValue, x, channels == 1 ? width : runs, channels == 1 ? 1 : width,
                                   scales, zeros, range.lowerBound, range.upperBound, y) != 0 {
                    return
                }
                Self.referenceQuantize(x, rows: channels == 1 ? width : runs, channels: channels == 1 ? 1 : width,
                                       scales: scales, zeros: zeros, range: range, dtype: dtype, into: y)
            }
        }
    }

    /// The reference twin of `sq_quantize_f32`.
    static func referenceQuantize(_ x: UnsafePointer<Float>, rows: Int, channels: Int, scales: UnsafePointer<Float>,
                                  zeros: UnsafePointer<Int32>, range: ClosedRange<Int32>, dtype: DType,
                                  into y: UnsafeMutablePointer<UInt8>) {
        let lower = Float(range.lowerBound), upper = Float(range.upperBound)
        if channels == 1 {
            if dtype == .uint8 {
                quantize(x, rows, scales[0], Float(zeros[0]), lower, upper, y)
            } else {
                quantize(x, rows, scales[0], Float(zeros[0]), lower, upper, UnsafeMutableRawPointer(y).assumingMemoryBound(to: Int8.self))
            }
            return
        }
        for row in 0..<rows {
            let offset = row * channels
            if dtype == .uint8 {
                quantizeRow(x + offset, channels, scales, zeros, lower, upper, y + offset)
            } else {
                quantizeRow(x + offset, channels, scales, zeros, lower, upper,
                            UnsafeMutableRawPointer(y + offset).assumingMemoryBound(to: Int8.self))
            }
        }
    }

    @inline(__always)
    static func quantize<Q: FixedWidthInteger>(
        _ x: UnsafePointer<Float>, _ count: Int, _ scale: Float, _ zero: Float, _ lower: Float, _ upper: Float,
        _ y: UnsafeMutablePointer<Q>
    ) {
        let low = lower - zero - 1, high = upper - zero + 1
        let zeroCode = Int32(zero), lowCode = Int32(lower), highCode = Int32(upper)
        for i in 0..<count {
            let code = roundedCode(x[i] / scale, low: low, high: high) &+ zeroCode
            y[i] = Q(truncatingIfNeeded: code < lowCode ? lowCode : (code > highCode ? highCode : code))
        }
    }

    /// One row of per-channel quantization: channel `c` uses `scales[c]` and `zeros[c]`. The quotient is
    /// clamped to `[lower − 256, upper + 256]`, one step or more beyond every channel's reachable codes,
    /// which keeps the rounding trick's argument small without a per-channel bound.
    @inline(__always)
    static func quantizeRow<Q: FixedWidthInteger>(
        _ x: UnsafePointer<Float>, _ count: Int, _ scales: UnsafePointer<Float>, _ zeros: UnsafePointer<Int32>,
        _ lower: Float, _ upper: Float, _ y: UnsafeMutablePointer<Q>
    ) {
        let low = lower - 256, high = upper + 256
        let lowCode = Int32(lower), highCode = Int32(upper)
        for i in 0..<count {
            let code = roundedCode(x[i] / scales[i], low: low, high: high) &+ zeros[i]
            y[i] = Q(truncatingIfNeeded: code < lowCode ? lowCode : (code > highCode ? highCode : code))
        }
    }
}

/// `round_half_even(v)` for `v` clamped to `[low, high]` (NaN to `low`), where both bounds are integers of
/// magnitude < 2^22: `v + 1.5·2^23` rounds in the FPU's default mode and its low bits hold the result.
@inline(__always)
func roundedCode(_ v: Float, low: Float, high: Float) -> Int32 {
    let bounded = v > high ? high : (v >= low ? v : low)
    return Int32(bitPattern: (bounded + 12_582_912).bitPattern) &- 0x4B40_0000
}

/// `com.swiftquant::Dequantize`: `y = Float(x − zero_point) · scale`, uint8/int8 `x`, float32 `y`; inputs
/// `x`, `scale`, `zero_point` (constants, one value each).
struct FusedDequantizeKernel: Kernel {
    let input: ActivationQuantization

    init(_ context: KernelBuildContext) throws {
        input = try ActivationQuantization(scale: try context.constantInput(1, "scale"),
                                           zeroPoint: try context.constantInput(2, "zero_point"), what: "x")
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try required(inputs, 0)
        guard x.dtype == input.dtype else {
            throw KernelError.invalidInput(index: 0, reason: "x is \(x.dtype) but its zero point is \(input.dtype)")
        }
        var y = try Tensor(zeros: .float32, shape: x.shape)
        let zero = input.zeroPoint, scale = input.scale
        y.withUnsafeMutableBufferPointer(as: Float.self) { target in
            let output = target.baseAddress!
            x.withUnsafeBytes { raw in
                Parallel.forRanges(x.count, threads: context.threadCount, grain: 1 << 15) { range in
                    if input.dtype == .uint8 {
                        let codes = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
                        for i in range { output[i] = Float(Int32(codes[i]) &- zero) * scale }
                    } else {
                        let codes = raw.baseAddress!.assumingMemoryBound(to: Int8.self)
                        for i in range { output[i] = Float(Int32(codes[i]) &- zero) * scale }
                    }
                }
            }
        }
        return [y]
    }

    /// The float value of each byte pattern (index = the code's bits), as DequantizeLinear computes it.
    static func table(_ q: ActivationQuantization) -> [Float] {
        (0..<256).map { bits in
            let code = q.dtype == .int8 ? Int32(Int8(truncatingIfNeeded: bits)) : Int32(bits)
            return Float(code - q.zeroPoint) * q.scale
        }
    }
}

/// `com.swiftquant::Requantize`: `y = Q_out(DQ_in(x))` for 8-bit `x` and `y`, exactly as the two reference
/// kernels compute it, through a 256-entry table; inputs `x`, `x_scale`, `x_zero_point`, `y_scale`,
/// `y_zero_point` (constants).
struct FusedRequantizeKernel: Kernel {
    let input: ActivationQuantization
    let output: ActivationQuantization
    let table: [UInt8]

    init(_ context: KernelBuildContext) throws {
        input = try ActivationQuantization(scale: try context.constantInput(1, "x_scale"),
                                           zeroPoint: try context.constantInput(2, "x_zero_point"), what: "x")
        output = try ActivationQuantization(scale: try context.constantInput(3, "y_scale"),
                                            zeroPoint: try context.constantInput(4, "y_zero_point"), what: "y")
        table = Self.table(from: input, to: output)
    }

    /// The output byte of each input byte pattern.
    static func table(from input: ActivationQuantization, to output: ActivationQuantization) -> [UInt8] {
        FusedDequantizeKernel.table(input).map { UInt8(truncatingIfNeeded: output.quantize($0)) }
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try required(inputs, 0)
        guard x.dtype == input.dtype else {
            throw KernelError.invalidInput(index: 0, reason: "x is \(x.dtype) but its zero point is \(input.dtype)")
        }
        var y = try Tensor(zeros: output.dtype, shape: x.shape)
        y.withUnsafeMutableBytes { target in
            x.withUnsafeBytes { source in
                applyByteTable(table, source, target, threads: context.threadCount)
            }
        }
        return [y]
    }
}

/// `target[i] = table[source[i]]` over all bytes of `source`.
func applyByteTable(_ table: [UInt8], _ source: UnsafeRawBufferPointer, _ target: UnsafeMutableRawBufferPointer,
                    threads: Int) {
    guard source.count > 0 else { return }
    table.withUnsafeBufferPointer { table in
        let lookup = table.baseAddress!
        let input = source.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let output = target.baseAddress!.assumingMemoryBound(to: UInt8.self)
        Parallel.forRanges(source.count, threads: threads, grain: 1 << 16) { range in
            for i in range { output[i] = lookup[Int(input[i])] }
        }
    }
}
