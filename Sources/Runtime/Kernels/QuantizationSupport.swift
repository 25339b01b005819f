import Tensors

// Shared pieces of the ONNX quantization kernels (QuantizeLinear, DequantizeLinear, the integer and
// QLinear matmul/conv families): element conversions, float8 encoding and decoding, and the
// mapping of per-tensor / per-axis / blocked quantization parameters onto data.

// MARK: - Element protocols

/// Float element types the quantization kernels read or write. All arithmetic happens in float32:
/// half-precision inputs are widened first, and results are rounded once to the output type
/// (ONNX Runtime does the same for float16 QuantizeLinear; checked against it).
protocol QuantizationFloatElement: TensorScalar {
    init(quantizationFloat value: Float)
    var quantizationFloat: Float { get }
}

extension Float: QuantizationFloatElement {
    @inline(__always) init(quantizationFloat value: Float) { self = value }
    @inline(__always) var quantizationFloat: Float { self }
}

extension Float16: QuantizationFloatElement {
    @inline(__always) init(quantizationFloat value: Float) { self.init(value) }
    @inline(__always) var quantizationFloat: Float { Float(self) }
}

extension BFloat16: QuantizationFloatElement {
    @inline(__always) init(quantizationFloat value: Float) { self.init(value) }
    @inline(__always) var quantizationFloat: Float { floatValue }
}

// MARK: - Integer ranges

/// The saturation range of an integer quantized type, or nil for other types.
func quantizedIntegerRange(_ dtype: DType) -> ClosedRange<Int32>? {
    switch dtype {
    case .int8: return -128...127
    case .uint8: return 0...255
    case .int16: return -32768...32767
    case .uint16: return 0...65535
    case .int4: return -8...7
    case .uint4: return 0...15
    case .int32: return Int32.min...Int32.max
    default: return nil
    }
}

// MARK: - Reading small parameter tensors

extension Tensor {
    /// True when the tensor holds exactly one element, whatever its rank: ONNX treats such scales and
    /// zero points as per-tensor.
    var isSingleElement: Bool { count == 1 }

    /// The elements of a float32/float16/bfloat16 tensor widened to float32 (for scales).
    func quantizationScaleValues(input index: Int) throws -> [Float] {
        switch dtype {
        case .float32: return scalars(as: Float.self)
        case .float16: return scalars(as: Float16.self).map { Float($0) }
        case .bfloat16: return scalars(as: BFloat16.self).map { $0.floatValue }
        default:
            throw KernelError.invalidInput(index: index, reason: "scale must be a float tensor, got \(dtype)")
        }
    }

    /// The elements of an integer quantized tensor (int8…int32, or packed int4/uint4) as `Int32`.
    func quantizedIntegerValues(input index: Int) throws -> [Int32] {
        switch dtype {
        case .int8: return scalars(as: Int8.self).map { Int32($0) }
        case .uint8: return scalars(as: UInt8.self).map { Int32($0) }
        case .int16: return scalars(as: Int16.self).map { Int32($0) }
        case .uint16: return scalars(as: UInt16.self).map { Int32($0) }
        case .int32: return scalars(as: Int32.self)
        case .int4, .uint4: return try unpackedInt4().map { Int32($0) }
        default:
            throw KernelError.invalidInput(index: index, reason: "expected an integer quantized tensor, got \(dtype)")
        }
    }
}

// MARK: - Float8

/// Conversions between float and the two ONNX float8 formats we represent.
///
/// Encoding rounds to nearest, ties to even. With `saturate`, values beyond the largest finite number
/// (including ±infinity) become ±max; without it they become NaN (E4M3FN, which has no infinity) or
/// ±infinity (E5M2). NaN stays NaN. This is the ONNX Cast/QuantizeLinear float8 table; the results
/// agree bit for bit with the ONNX reference implementation.
enum Float8Format: Sendable {
    case e4m3fn, e5m2

    init?(_ dtype: DType) {
        switch dtype {
        case .float8e4m3fn: self = .e4m3fn
        case .float8e5m2: self = .e5m2
        default: return nil
        }
    }

    private var mantissaBits: Int { self == .e4m3fn ? 3 : 2 }
    private var exponentBias: Int { self == .e4m3fn ? 7 : 15 }
    /// The code of the largest finite value without its sign (448 and 57344).
    private var maxFiniteCode: UInt8 { self == .e4m3fn ? 0x7E : 0x7B }
    private var nanCode: UInt8 { self == .e4m3fn ? 0x7F : 0x7E }
    private var infinityCode: UInt8 { self == .e4m3fn ? 0x7F : 0x7C }

    /// The float8 bit pattern nearest to `value`.
    func encode(_ value: Double, saturate: Bool) -> UInt8 {
        let sign: UInt8 = value.sign == .minus ? 0x80 : 0
        if value.isNaN { return sign | nanCode }
        let magnitude = value.magnitude
        if magnitude.isInfinite { return sign | (saturate ? maxFiniteCode : infinityCode) }
        let mantissa = mantissaBits
        // The smallest normal float8 value is 2^(1 - bias); below it the format is fixed-point with
        // step 2^(1 - bias - mantissa), so scaling by the inverse step and rounding gives the code.
        let minimumNormalExponent = 1 - exponentBias
        var code: UInt64
        if magnitude < Double(sign: .plus, exponent: minimumNormalExponent, significand: 1) {
            let steps = (magnitude * Double(sign: .plus, exponent: mantissa - minimumNormalExponent, significand: 1))
                .rounded(.toNearestOrEven)
            code = UInt64(steps)  // at most 2^mantissa, which is the smallest normal's code
        } else {
            // Round the float64 bit pattern to `mantissa` fraction bits (ties to even; a carry moves
            // into the exponent field as it should), then rebias the exponent.
            let shift = UInt64(Double.significandBitCount - mantissa)
            let bits = magnitude.bitPattern
            let half = (UInt64(1) << (shift - 1)) - 1
            let rounded = (bits + half + ((bits >> shift) & 1)) >> shift
            let float64ExponentBias = 1023
            let rebias = UInt64(float64ExponentBias - exponentBias) << UInt64(mantissa)
            code = rounded - rebias
        }
        if code > UInt64(maxFiniteCode) {
            return sign | (saturate ? maxFiniteCode : infinityCode)
        }
        return sign | UInt8(code)
    }

    /// The value of a float8 bit pattern.
    func decode(_ code: UInt8) -> Float {
        switch self {
        case .e4m3fn: return Float8Format.e4m3fnValues[Int(code)]
        case .e5m2: return Float8Format.e5m2Values[Int(code)]
        }
    }

    private static func table(exponentBits: Int, mantissaBits: Int, bias: Int, hasInfinity: Bool) -> [Float] {
        (0..<256).map { code -> Float in
            let negative = code & 0x80 != 0
            let exponentField = (code >> mantissaBits) & ((1 << exponentBits) - 1)
            let fraction = code & ((1 << mantissaBits) - 1)
            let allOnes = (1 << exponentBits) - 1
            var magnitude: Float
            if hasInfinity, exponentField == allOnes {
                magnitude = fraction == 0 ? .infinity : .nan
            } else if !hasInfinity, exponentField == allOnes, fraction == (1 << mantissaBits) - 1 {
                magnitude = .nan
            } else if exponentField == 0 {
                magnitude = Float(fraction) * Float(sign: .plus, exponent: 1 - bias - mantissaBits, significand: 1)
            } else {
                magnitude = (1 + Float(fraction) / Float(1 << mantissaBits))
                    * Float(sign: .plus, exponent: exponentField - bias, significand: 1)
            }
            return negative ? -magnitude : magnitude
        }
    }

    private static let e4m3fnValues = table(exponentBits: 4, mantissaBits: 3, bias: 7, hasInfinity: false)
    private static let e5m2Values = table(exponentBits: 5, mantissaBits: 2, bias: 15, hasInfinity: true)
}

// MARK: - Parameter layout

/// How a scale or zero-point tensor maps onto the tensor it (de)quantizes, per ONNX QuantizeLinear and
/// DequantizeLinear: per tensor (one element), per axis (1-D, one value per index of `axis`), or
/// blocked (same rank as the data, `ceil(D / blockSize)` along `axis`, equal elsewhere).
///
/// The data is viewed as `[outer, axisLength, inner]` around the quantization axis.
struct QuantizationParameterLayout: Sendable {
    enum Granularity: Sendable { case perTensor, perAxis, blocked }

    let granularity: Granularity
    let outer: Int
    let axisLength: Int
    let inner: Int
    let blockSize: Int
    let blockCount: Int
    /// Number of parameter elements the layout expects.
    let parameterCount: Int

    /// - Parameters:
    ///   - dataShape: shape of the quantized/unquantized data.
    ///   - parameterShape: shape of the scale.
    ///   - axis: the `axis` attribute (may be negative); only checked when not per-tensor.
    ///   - blockSize: the `block_size` attribute; 0 means not blocked.
    ///   - allowPerAxis: false before opset 13, where only per-tensor parameters exist.
    init(dataShape: [Int], parameterShape: [Int], axis: Int, blockSize: Int, allowPerAxis: Bool) throws {
        let total = try Shape.elementCount(dataShape)
        let parameterTotal = try Shape.elementCount(parameterShape)
        guard blockSize >= 0 else { throw KernelError.invalidAttribute("block_size", "must not be negative, got \(blockSize)") }
        if blockSize == 0 && parameterTotal == 1 {
            self.init(granularity: .perTensor, outer: 1, axisLength: 1, inner: total, blockSize: 1, blockCount: 1,
                      parameterCount: 1)
            return
        }
        guard allowPerAxis else {
            throw KernelError.invalidInput(
                index: 1, reason: "scale must be a scalar at this opset (per-tensor only), got shape \(parameterShape)")
        }
        guard let normalized = Shape.normalizedAxis(axis, rank: dataShape.count) else {
            throw KernelError.invalidAttribute("axis", "\(axis) is out of range for input of rank \(dataShape.count)")
        }
        // Checked: with a zero dimension elsewhere, the other dimensions' product may not fit.
        let outer = try Shape.elementCount(Array(dataShape[..<normalized]))
        let axisLength = dataShape[normalized]
        let inner = try Shape.elementCount(Array(dataShape[(normalized + 1)...]))
        if blockSize == 0 {
            guard parameterShape.count == 1, parameterShape[0] == axisLength else {
                throw KernelError.invalidInput(
                    index: 1, reason: "a per-axis scale must be 1-D of length \(axisLength) (axis \(normalized) of "
                        + "input \(dataShape)), got shape \(parameterShape)")
            }
            self.init(granularity: .perAxis, outer: outer, axisLength: axisLength, inner: inner, blockSize: 1,
                      blockCount: axisLength, parameterCount: axisLength)
            return
        }
        let blockCount = axisLength / blockSize + (axisLength % blockSize == 0 ? 0 : 1)
        var expected = dataShape
        expected[normalized] = blockCount
        guard parameterShape == expected else {
            throw KernelError.invalidInput(
                index: 1, reason: "a blocked scale for input \(dataShape) with block_size \(blockSize) along axis "
                    + "\(normalized) must have shape \(expected), got \(parameterShape)")
        }
        self.init(granularity: .blocked, outer: outer, axisLength: axisLength, inner: inner, blockSize: blockSize,
                  blockCount: blockCount, parameterCount: parameterTotal)
    }

    private init(granularity: Granularity, outer: Int, axisLength: Int, inner: Int, blockSize: Int, blockCount: Int,
                 parameterCount: Int) {
        self.granularity = granularity
        self.outer = outer
        self.axisLength = axisLength
        self.inner = inner
        self.blockSize = blockSize
        self.blockCount = blockCount
        self.parameterCount = parameterCount
    }

    /// Checks that a zero point fits the layout of its scale (ONNX requires equal shapes; single-element
    /// tensors of any rank are accepted together).
    func validateZeroPoint(_ zeroPoint: Tensor, scale: Tensor, index: Int) throws {
        let sameShape = zeroPoint.shape == scale.shape || (zeroPoint.count == 1 && scale.count == 1)
        guard sameShape else {
            throw KernelError.invalidInput(
                index: index, reason: "zero point shape \(zeroPoint.shape) must equal scale shape \(scale.shape)")
        }
    }

    /// Visits the data as contiguous runs. For each run, element `i` (0..<count) of the data at
    /// `dataOffset + i` uses parameter `parameterOffset + i * parameterStep`, where the step is 0
    /// (one parameter for the whole run) or 1 (one parameter per element).
    func forEachRun(_ body: (_ dataOffset: Int, _ count: Int, _ parameterOffset: Int, _ parameterStep: Int) -> Void) {
        switch granularity {
        case .perTensor:
            if inner > 0 { body(0, inner, 0, 0) }
        case .perAxis:
            if inner == 1 {
                for o in 0..<outer { body(o * axisLength, axisLength, 0, 1) }
            } else {
                for o in 0..<outer {
                    for a in 0..<axisLength { body((o * axisLength + a) * inner, inner, a, 0) }
                }
            }
        case .blocked:
            if inner == 1 {
                // Blocks run along the contiguous axis: each block is one run sharing one parameter.
                for o in 0..<outer {
                    for block in 0..<blockCount {
                        let start = block * blockSize
                        body(o * axisLength + start, min(blockSize, axisLength - start), o * blockCount + block, 0)
                    }
                }
            } else {
                for o in 0..<outer {
                    for a in 0..<axisLength {
                        body((o * axisLength + a) * inner, inner, (o * blockCount + a / blockSize) * inner, 1)
                    }
                }
            }
        }
    }
}
