import GraphIR
import Tensors
import _CKernels

// Reference kernels for ONNX QuantizeLinear (10, 13, 19, 21), DequantizeLinear (10, 13, 19, 21) and
// DynamicQuantizeLinear (11). They are the exact twins later SIMD kernels are checked against.
//
// Numerics, chosen to agree with ONNX Runtime 1.31 and the ONNX reference implementation:
// - `x / scale` is a true IEEE division in float32 (float16/bfloat16 inputs are widened first), or in
//   float64 for int32 inputs, then rounded half to even.
// - Saturation clamps to the output type's range. NaN quotients become the type's minimum (ONNX
//   Runtime's result: its float-to-int conversion yields INT32_MIN, which then saturates); ±infinity
//   saturates to the matching end. Nothing traps.

extension KernelRegistry {
    mutating func registerQuantizationKernels() {
        for version in [10, 13, 19, 21] {
            register("QuantizeLinear", since: version) { try QuantizeLinearKernel($0, version: version) }
            register("DequantizeLinear", since: version) { try DequantizeLinearKernel($0, version: version) }
        }
        register("DynamicQuantizeLinear", since: 11) { _ in DynamicQuantizeLinearKernel() }
    }
}

// MARK: - QuantizeLinear

/// ONNX QuantizeLinear: `y = saturate(round_half_to_even(x / y_scale) + y_zero_point)`.
///
/// Per tensor (opset 10), per axis (13), float8 outputs with `saturate` (19), and blocked quantization,
/// 16-bit and packed 4-bit outputs and `output_dtype` (21). A missing zero point means 0 of the output
/// type, which is uint8 unless `output_dtype` says otherwise.
struct QuantizeLinearKernel: Kernel {
    let version: Int
    let axis: Int
    let blockSize: Int
    let saturate: Bool
    let declaredOutputType: DType?

    init(_ context: KernelBuildContext, version: Int) throws {
        self.version = version
        axis = version >= 13 ? try context.int("axis", default: 1) : 1
        blockSize = version >= 21 ? try context.int("block_size", default: 0) : 0
        guard blockSize >= 0 else {
            throw KernelError.invalidAttribute("block_size", "must be positive when given, got \(blockSize)")
        }
        saturate = version >= 19 ? try context.int("saturate", default: 1) != 0 : true
        let code = version >= 21 ? try context.int("output_dtype", default: 0) : 0
        if code == 0 {
            declaredOutputType = nil
        } else {
            let quantizedTypes: Set<DType> = [.int8, .uint8, .int16, .uint16, .int4, .uint4, .float8e4m3fn, .float8e5m2]
            guard let dtype = Int32(exactly: code).flatMap({ DType(onnxCode: $0) }), quantizedTypes.contains(dtype) else {
                throw KernelError.invalidAttribute("output_dtype", "\(code) is not a quantized type QuantizeLinear supports")
            }
            declaredOutputType = dtype
        }
    }

    private var allowedInputTypes: Set<DType> {
        version >= 19 ? [.float32, .float16, .bfloat16, .int32] : [.float32, .int32]
    }

    private var allowedOutputTypes: Set<DType> {
        switch version {
        case ..<19: return [.int8, .uint8]
        case 19..<21: return [.int8, .uint8, .float8e4m3fn, .float8e5m2]
        default: return [.int8, .uint8, .int16, .uint16, .int4, .uint4, .float8e4m3fn, .float8e5m2]
        }
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try required(inputs, 0)
        let scale = try required(inputs, 1)
        let zeroPoint = optional(inputs, 2)
        guard allowedInputTypes.contains(x.dtype) else {
            throw KernelError.invalidInput(index: 0, reason: "QuantizeLinear-\(version) does not take \(x.dtype) input")
        }
        // Opset 19 ties the scale type to x's; int32 x keeps the float32 scale of earlier opsets too.
        let scaleTypeOK = version >= 19 ? (scale.dtype == x.dtype || (x.dtype == .int32 && scale.dtype == .float32))
                                        : scale.dtype == .float32
        guard scaleTypeOK else {
            throw KernelError.invalidInput(index: 1, reason: "scale of \(scale.dtype) does not match input of \(x.dtype)")
        }
        let outputType = zeroPoint?.dtype ?? declaredOutputType ?? .uint8
        if let zeroPoint, let declaredOutputType, zeroPoint.dtype != declaredOutputType {
            throw KernelError.invalidAttribute(
                "output_dtype", "is \(declaredOutputType) but the zero point is \(zeroPoint.dtype)")
        }
        guard allowedOutputTypes.contains(outputType) else {
            throw KernelError.invalidInput(index: 2, reason: "QuantizeLinear-\(version) cannot produce \(outputType)")
        }
        let layout = try QuantizationParameterLayout(
            dataShape: x.shape, parameterShape: scale.shape, axis: axis, blockSize: blockSize,
            allowPerAxis: version >= 13)
        if let zeroPoint { try layout.validateZeroPoint(zeroPoint, scale: scale, index: 2) }

        if let format = Float8Format(outputType) {
            return [try quantizeToFloat8(x, scale: scale, zeroPoint: zeroPoint, layout: layout, format: format)]
        }
        guard let range = quantizedIntegerRange(outputType) else {
            throw KernelError.unsupported("QuantizeLinear output \(outputType)")
        }
        let zeroPoints = try zeroPoint?.quantizedIntegerValues(input: 2) ?? [Int32](repeating: 0, count: layout.parameterCount)
        switch outputType {
        case .int8: return [try quantize(x, scale: scale, zeroPoints: zeroPoints, layout: layout, as: Int8.self, range: range)]
        case .uint8: return [try quantize(x, scale: scale, zeroPoints: zeroPoints, layout: layout, as: UInt8.self, range: range)]
        case .int16: return [try quantize(x, scale: scale, zeroPoints: zeroPoints, layout: layout, as: Int16.self, range: range)]
        case .uint16: return [try quantize(x, scale: scale, zeroPoints: zeroPoints, layout: layout, as: UInt16.self, range: range)]
        case .int4, .uint4:
            // Quantize one value per byte, then pack two per byte.
            let unpacked = try quantize(x, scale: scale, zeroPoints: zeroPoints, layout: layout, as: Int8.self, range: range)
            return [try Tensor.packInt4(unpacked.scalars(as: Int8.self), signed: outputType == .int4, shape: x.shape)]
        default:
            throw KernelError.unsupported("QuantizeLinear output \(outputType)")
        }
    }

    /// Quantizes into a tensor of `Q`, saturating to `range` (which may be narrower than `Q`, for 4-bit).
    private func quantize<Q: FixedWidthInteger & TensorScalar>(
        _ x: Tensor, scale: Tensor, zeroPoints: [Int32], layout: QuantizationParameterLayout,
        as type: Q.Type, range: ClosedRange<Int32>
    ) throws -> Tensor {
        var y = try Tensor(zeros: Q.dtype, shape: x.shape)
        guard x.count > 0 else { return y }
        if x.dtype == .int32 {
            let scales: [Double] = scale.dtype == .int32
                ? scale.scalars(as: Int32.self).map { Double($0) }
                : try scale.quantizationScaleValues(input: 1).map { Double($0) }
            let offsets = zeroPoints.map { Double($0) }
            x.withUnsafeBufferPointer(as: Int32.self) { source in
                y.withUnsafeMutableBufferPointer(as: Q.self) { target in
                    quantizeRuns(source, target, scales: scales, zeroPoints: offsets, layout: layout,
                                 lower: Double(range.lowerBound), upper: Double(range.upperBound)) { Double($0) }
                }
            }
            return y
        }
        let scales = try scale.quantizationScaleValues(input: 1)
        let offsets = zeroPoints.map { Float($0) }
        let lower = Float(range.lowerBound), upper = Float(range.upperBound)
        switch x.dtype {
        case .float32: quantizeFloat(x, into: &y, Float.self, Q.self, scales: scales, zeroPoints: offsets, layout: layout, lower: lower, upper: upper)
        case .float16: quantizeFloat(x, into: &y, Float16.self, Q.self, scales: scales, zeroPoints: offsets, layout: layout, lower: lower, upper: upper)
        case .bfloat16: quantizeFloat(x, into: &y, BFloat16.self, Q.self, scales: scales, zeroPoints: offsets, layout: layout, lower: lower, upper: upper)
        default: throw KernelError.invalidInput(index: 0, reason: "QuantizeLinear does not take \(x.dtype) input")
        }
        return y
    }

    private func quantizeFloat<X: QuantizationFloatElement, Q: FixedWidthInteger & TensorScalar>(
        _ x: Tensor, into y: inout Tensor, _ inputType: X.Type, _ outputType: Q.Type, scales: [Float], zeroPoints: [Float],
        layout: QuantizationParameterLayout, lower: Float, upper: Float
    ) {
        x.withUnsafeBufferPointer(as: X.self) { source in
            y.withUnsafeMutableBufferPointer(as: Q.self) { target in
                quantizeRuns(source, target, scales: scales, zeroPoints: zeroPoints, layout: layout,
                             lower: lower, upper: upper) { $0.quantizationFloat }
            }
        }
    }

    /// Float8 outputs: `x / scale` rounded to the float8 format (the zero point must be zero: ONNX
    /// adds nothing for float8, and a nonzero float8 zero point has no defined meaning).
    private func quantizeToFloat8(
        _ x: Tensor, scale: Tensor, zeroPoint: Tensor?, layout: QuantizationParameterLayout, format: Float8Format
    ) throws -> Tensor {
        if let zeroPoint {
            let nonzero = zeroPoint.withUnsafeBytes { $0.contains { $0 & 0x7F != 0 } }
            guard !nonzero else { throw KernelError.invalidInput(index: 2, reason: "a float8 zero point must be zero") }
        }
        // Quotients are computed exactly as for integer outputs, then rounded once to float8.
        let quotients: [Double]
        switch x.dtype {
        case .int32:
            let scales: [Double] = scale.dtype == .int32
                ? scale.scalars(as: Int32.self).map { Double($0) }
                : try scale.quantizationScaleValues(input: 1).map { Double($0) }
            quotients = divided(x.scalars(as: Int32.self), scales: scales, layout: layout) { Double($0) }
        case .float32:
            quotients = divided(x.scalars(as: Float.self), scales: try scale.quantizationScaleValues(input: 1), layout: layout) { $0 }
        case .float16:
            quotients = divided(x.scalars(as: Float16.self).map { Float($0) }, scales: try scale.quantizationScaleValues(input: 1), layout: layout) { $0 }
        case .bfloat16:
            quotients = divided(x.scalars(as: BFloat16.self).map { $0.floatValue }, scales: try scale.quantizationScaleValues(input: 1), layout: layout) { $0 }
        default:
            throw KernelError.invalidInput(index: 0, reason: "QuantizeLinear does not take \(x.dtype) input")
        }
        var y = try Tensor(zeros: format == .e4m3fn ? .float8e4m3fn : .float8e5m2, shape: x.shape)
        let saturate = self.saturate
        y.withUnsafeMutableBytes { target in
            for i in 0..<quotients.count { target[i] = format.encode(quotients[i], saturate: saturate) }
        }
        return y
    }

    /// `x / scale` per element in the arithmetic of the scale's element type (float32 or float64).
    private func divided<V, R: BinaryFloatingPoint>(
        _ values: [V], scales: [R], layout: QuantizationParameterLayout, widen: (V) -> R
    ) -> [Double] {
        var result = [Double](repeating: 0, count: values.count)
        layout.forEachRun { offset, count, parameterOffset, step in
            for i in 0..<count {
                result[offset + i] = Double(widen(values[offset + i]) / scales[parameterOffset + i * step])
            }
        }
        return result
    }
}

/// The QuantizeLinear element loop: `y = clamp(round_half_even(x / s) + z, lower, upper)`, with NaN
/// going to `lower`. `R` is the arithmetic type (Float, or Double for int32 inputs).
@inline(__always)
private func quantizeRuns<X, Q: FixedWidthInteger, R: BinaryFloatingPoint>(
    _ source: UnsafeBufferPointer<X>, _ target: UnsafeMutableBufferPointer<Q>, scales: [R], zeroPoints: [R],
    layout: QuantizationParameterLayout, lower: R, upper: R, widen: (X) -> R
) {
    guard let sourceBase = source.baseAddress, let targetBase = target.baseAddress else { return }
    scales.withUnsafeBufferPointer { scaleBuffer in
        zeroPoints.withUnsafeBufferPointer { zeroBuffer in
            guard let scaleBase = scaleBuffer.baseAddress, let zeroBase = zeroBuffer.baseAddress else { return }
            layout.forEachRun { offset, count, parameterOffset, step in
                let input = sourceBase + offset, output = targetBase + offset
                let scale = scaleBase + parameterOffset, zero = zeroBase + parameterOffset
                for i in 0..<count {
                    let p = i &* step
                    let shifted = (widen(input[i]) / scale[p]).rounded(.toNearestOrEven) + zero[p]
                    // Comparisons with NaN are false, so NaN lands on `lower`.
                    let clamped = shifted > upper ? upper : (shifted >= lower ? shifted : lower)
                    output[i] = Q(truncatingIfNeeded: Int32(clamped))
                }
            }
        }
    }
}

// MARK: - DequantizeLinear

/// ONNX DequantizeLinear: `y = (x - x_zero_point) * x_scale`.
///
/// The difference is taken exactly in integers and converted to float32 once, then multiplied by the
/// scale in float32 and rounded to the scale's type (float16/bfloat16 scales, opset 19+). Inputs are
/// int8/uint8/int32 (10, 13), float8 (19; zero point must be zero), int16/uint16 and packed 4-bit (21).
struct DequantizeLinearKernel: Kernel {
    let version: Int
    let axis: Int
    let blockSize: Int

    init(_ context: KernelBuildContext, version: Int) throws {
        self.version = version
        axis = version >= 13 ? try context.int("axis", default: 1) : 1
        blockSize = version >= 21 ? try context.int("block_size", default: 0) : 0
        guard blockSize >= 0 else {
            throw KernelError.invalidAttribute("block_size", "must be positive when given, got \(blockSize)")
        }
    }

    private var allowedInputTypes: Set<DType> {
        switch version {
        case ..<19: return [.int8, .uint8, .int32]
        case 19..<21: return [.int8, .uint8, .int32, .float8e4m3fn, .float8e5m2]
        default: return [.int8, .uint8, .int16, .uint16, .int32, .int4, .uint4, .float8e4m3fn, .float8e5m2]
        }
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try required(inputs, 0)
        let scale = try required(inputs, 1)
        let zeroPoint = optional(inputs, 2)
        guard allowedInputTypes.contains(x.dtype) else {
            throw KernelError.invalidInput(index: 0, reason: "DequantizeLinear-\(version) does not take \(x.dtype) input")
        }
        let scaleTypes: Set<DType> = version >= 19 ? [.float32, .float16, .bfloat16] : [.float32]
        guard scaleTypes.contains(scale.dtype) else {
            throw KernelError.invalidInput(index: 1, reason: "DequantizeLinear-\(version) does not take a \(scale.dtype) scale")
        }
        if let zeroPoint, zeroPoint.dtype != x.dtype {
            throw KernelError.invalidInput(index: 2, reason: "zero point of \(zeroPoint.dtype) must have the input's type \(x.dtype)")
        }
        let layout = try QuantizationParameterLayout(
            dataShape: x.shape, parameterShape: scale.shape, axis: axis, blockSize: blockSize,
            allowPerAxis: version >= 13)
        if let zeroPoint { try layout.validateZeroPoint(zeroPoint, scale: scale, index: 2) }
        let scales = try scale.quantizationScaleValues(input: 1)

        switch scale.dtype {
        case .float16: return [try dequantize(x, scales: scales, zeroPoint: zeroPoint, layout: layout, into: Float16.self)]
        case .bfloat16: return [try dequantize(x, scales: scales, zeroPoint: zeroPoint, layout: layout, into: BFloat16.self)]
        default: return [try dequantize(x, scales: scales, zeroPoint: zeroPoint, layout: layout, into: Float.self)]
        }
    }

    private func dequantize<Y: QuantizationFloatElement>(
        _ x: Tensor, scales: [Float], zeroPoint: Tensor?, layout: QuantizationParameterLayout, into type: Y.Type
    ) throws -> Tensor {
        var y = try Tensor(zeros: Y.dtype, shape: x.shape)
        guard x.count > 0 else { return y }
        if let format = Float8Format(x.dtype) {
            if let zeroPoint {
                let nonzero = zeroPoint.withUnsafeBytes { $0.contains { $0 & 0x7F != 0 } }
                guard !nonzero else { throw KernelError.invalidInput(index: 2, reason: "a float8 zero point must be zero") }
            }
            let decoded = x.withUnsafeBytes { raw in raw.map { format.decode($0) } }
            let zeros = [Int64](repeating: 0, count: layout.parameterCount)
            decoded.withUnsafeBufferPointer { source in
                y.withUnsafeMutableBufferPointer(as: Y.self) { target in
                    dequantizeRuns(source, target, scales: scales, zeroPoints: zeros, layout: layout) { value, _ in value }
                }
            }
            return y
        }
        let zeroPoints = try zeroPoint?.quantizedIntegerValues(input: 2).map { Int64($0) }
            ?? [Int64](repeating: 0, count: layout.parameterCount)
        switch x.dtype {
        case .int8: dequantizeInteger(x, Int8.self, Y.self, into: &y, scales: scales, zeroPoints: zeroPoints, layout: layout)
        case .uint8: dequantizeInteger(x, UInt8.self, Y.self, into: &y, scales: scales, zeroPoints: zeroPoints, layout: layout)
        case .int16: dequantizeInteger(x, Int16.self, Y.self, into: &y, scales: scales, zeroPoints: zeroPoints, layout: layout)
        case .uint16: dequantizeInteger(x, UInt16.self, Y.self, into: &y, scales: scales, zeroPoints: zeroPoints, layout: layout)
        case .int32: dequantizeInteger(x, Int32.self, Y.self, into: &y, scales: scales, zeroPoints: zeroPoints, layout: layout)
        case .int4, .uint4:
            let values = try x.unpackedInt4()
            values.withUnsafeBufferPointer { source in
                y.withUnsafeMutableBufferPointer(as: Y.self) { target in
                    dequantizeRuns(source, target, scales: scales, zeroPoints: zeroPoints, layout: layout) {
                        Float(Int64($0) &- $1)
                    }
                }
            }
        default:
            throw KernelError.invalidInput(index: 0, reason: "DequantizeLinear does not take \(x.dtype) input")
        }
        return y
    }

    private func dequantizeInteger<Q: FixedWidthInteger & TensorScalar, Y: QuantizationFloatElement>(
        _ x: Tensor, _ inputType: Q.Type, _ outputType: Y.Type, into y: inout Tensor, scales: [Float], zeroPoints: [Int64],
        layout: QuantizationParameterLayout
    ) {
        x.withUnsafeBufferPointer(as: Q.self) { source in
            y.withUnsafeMutableBufferPointer(as: Y.self) { target in
                // |x - z| < 2^33 for every input type, so the Int64 difference is exact.
                dequantizeRuns(source, target, scales: scales, zeroPoints: zeroPoints, layout: layout) {
                    Float(Int64($0) &- $1)
                }
            }
        }
    }
}

/// The DequantizeLinear element loop: `y = Y(shiftedValue(x, z) * s)` in float32.
@inline(__always)
private func dequantizeRuns<X, Y: QuantizationFloatElement>(
    _ source: UnsafeBufferPointer<X>, _ target: UnsafeMutableBufferPointer<Y>, scales: [Float], zeroPoints: [Int64],
    layout: QuantizationParameterLayout, shiftedValue: (X, Int64) -> Float
) {
    guard let sourceBase = source.baseAddress, let targetBase = target.baseAddress else { return }
    scales.withUnsafeBufferPointer { scaleBuffer in
        zeroPoints.withUnsafeBufferPointer { zeroBuffer in
            guard let scaleBase = scaleBuffer.baseAddress, let zeroBase = zeroBuffer.baseAddress else { return }
            layout.forEachRun { offset, count, parameterOffset, step in
                let input = sourceBase + offset, output = targetBase + offset
                let scale = scaleBase + parameterOffset, zero = zeroBase + parameterOffset
                for i in 0..<count {
                    let p = i &* step
                    output[i] = Y(quantizationFloat: shiftedValue(input[i], zero[p]) * scale[p])
                }
            }
        }
    }
}

// MARK: - DynamicQuantizeLinear

/// ONNX DynamicQuantizeLinear (opset 11): per-tensor uint8 quantization with parameters from the data.
///
/// The range is widened to include zero: `lo = min(0, min x)`, `hi = max(0, max x)`;
/// `y_scale = (hi - lo) / 255` (1 when `hi == lo`, as ONNX Runtime does; the ONNX reference uses
/// 1/255 there, and `y` and the zero point are 0 either way);
/// `y_zero_point = round_half_even(clamp(0 - lo / y_scale, 0, 255))`;
/// `y = saturate(round_half_even(x / y_scale) + y_zero_point)`.
/// NaN elements are skipped when finding the range and quantize to 0; a NaN intermediate zero point
/// (e.g. a range underflowing the scale to 0) clamps to 255. Both match ONNX Runtime.
struct DynamicQuantizeLinearKernel: Kernel {
    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try required(inputs, 0)
        guard x.dtype == .float32 else {
            throw KernelError.invalidInput(index: 0, reason: "DynamicQuantizeLinear takes float32 input, got \(x.dtype)")
        }
        var y = try Tensor(zeros: .uint8, shape: x.shape)
        let parameters = x.withUnsafeBufferPointer(as: Float.self) { source in
            y.withUnsafeMutableBufferPointer(as: UInt8.self) { target in
                Self.quantize(source, into: target, vectorised: true)
            }
        }
        return [y, Tensor(scalar: parameters.scale), Tensor(scalar: parameters.zeroPoint)]
    }

    /// Quantizes `source` into `target` and returns the parameters. `vectorised` uses the AVX-512 range and
    /// QuantizeLinear loops of `_CKernels` where the CPU has them, which give the same bytes as the scalar
    /// loops here (their reference twin; `DynamicQuantizeLinearVectorTests` compares the two).
    static func quantize(_ source: UnsafeBufferPointer<Float>, into target: UnsafeMutableBufferPointer<UInt8>,
                         vectorised: Bool) -> (scale: Float, zeroPoint: UInt8) {
        let (scale, zeroPoint) = parameters(for: source, vectorised: vectorised)
        if vectorised, let x = source.baseAddress, let y = target.baseAddress {
            var scales = scale, zeros = Int32(zeroPoint)
            if sq_quantize_f32(Int32(SQ_QUANTIZE_LEVEL_AVX512), x, source.count, 1, &scales, &zeros, 0, 255, y) != 0 {
                return (scale, zeroPoint)
            }
        }
        let shift = Float(zeroPoint)
        for i in 0..<source.count {
            let shifted = (source[i] / scale).rounded(.toNearestOrEven) + shift
            let clamped = shifted > 255 ? 255 : (shifted >= 0 ? shifted : 0)
            target[i] = UInt8(clamped)
        }
        return (scale, zeroPoint)
    }

    /// The scale and zero point DynamicQuantizeLinear derives from `values`; `vectorised` finds the range
    /// with the AVX-512 loop where the CPU has it (the scalar loop here is its reference).
    static func parameters(for values: UnsafeBufferPointer<Float>, vectorised: Bool = true) -> (scale: Float, zeroPoint: UInt8) {
        var low: Float = 0, high: Float = 0
        if vectorised, let x = values.baseAddress,
           sq_range_with_zero_f32(Int32(SQ_QUANTIZE_LEVEL_AVX512), x, values.count, &low, &high) != 0 {
            return parameters(low: low, high: high)
        }
        for value in values {
            // NaN fails both comparisons and is skipped.
            if value < low { low = value }
            if value > high { high = value }
        }
        return parameters(low: low, high: high)
    }

    /// The scale and zero point of the range `[low, high]` (which holds 0).
    static func parameters(low: Float, high: Float) -> (scale: Float, zeroPoint: UInt8) {
        let scale: Float = high == low ? 1 : (high - low) / 255
        let intermediate = 0 - low / scale
        let clamped: Float = intermediate.isNaN ? 255 : min(max(intermediate, 0), 255)
        return (scale, UInt8(clamped.rounded(.toNearestOrEven)))
    }
}
