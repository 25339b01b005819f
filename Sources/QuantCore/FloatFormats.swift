import Tensors

/// Conversions between float32 and the 16- and 8-bit float formats, bit-exact with ml_dtypes and ONNX.
///
/// Rounding is to nearest, ties to even. NaN becomes the format's NaN with the input's sign (a canonical
/// quiet NaN for FP16/BF16: payloads are not preserved). Overflow:
/// - FP16, BF16: to ±Inf (as IEEE and ONNX `Cast`).
/// - FP8 E4M3FN (no Inf): saturating → ±448, also for ±Inf input; non-saturating → NaN.
/// - FP8 E5M2: saturating → ±57344, also for ±Inf input; non-saturating → ±Inf.
/// "Saturating" is ONNX's `saturate = 1` (the default of QuantizeLinear and Cast), which clamps to the
/// largest finite value before rounding, so values that would round past it land on it.
public enum FloatFormats {
    // MARK: FP8

    /// E4M3FN: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities; 0x7F / 0xFF are NaN; max 448.
    @inline(__always)
    public static func e4m3fnBits(_ value: Float, saturate: Bool) -> UInt8 {
        encode8(value, mantissaBits: 3, bias: 7, largestFiniteBits: 0x7E, hasInfinity: false, saturate: saturate)
    }

    /// E5M2: 1 sign, 5 exponent (bias 15), 2 mantissa bits; 0x7C is Inf, 0x7D…0x7F are NaN; max 57344.
    @inline(__always)
    public static func e5m2Bits(_ value: Float, saturate: Bool) -> UInt8 {
        encode8(value, mantissaBits: 2, bias: 15, largestFiniteBits: 0x7B, hasInfinity: true, saturate: saturate)
    }

    @inline(__always)
    static func encode8(_ value: Float, mantissaBits m: UInt32, bias: Int, largestFiniteBits: UInt32,
                        hasInfinity: Bool, saturate: Bool) -> UInt8 {
        let bits = value.bitPattern
        let sign = UInt8(truncatingIfNeeded: (bits >> 24) & 0x80)
        // The NaN pattern ml_dtypes produces: 0x7F (E4M3FN) or 0x7E (E5M2), with the input's sign.
        let nan: UInt8 = hasInfinity ? 0x7E : 0x7F
        let overflow: UInt8 = saturate ? UInt8(largestFiniteBits) : (hasInfinity ? 0x7C : 0x7F)
        if value.isNaN { return sign | nan }
        if value.isInfinite { return sign | overflow }
        let magnitude = bits & 0x7FFF_FFFF
        let exponent = Int(magnitude >> 23) - 127
        var code: UInt32
        if exponent >= 1 - bias {
            // Normal in the target: round the float32 bits to `m` mantissa bits, then re-bias the exponent.
            let shift = 23 - m
            let rounded = magnitude &+ ((1 << (shift - 1)) - 1) &+ ((magnitude >> shift) & 1)
            code = (rounded >> shift) &- (UInt32(127 - bias) << m)
        } else {
            // Subnormal in the target: count units of the smallest subnormal, 2^(1 − bias − m), rounded
            // to even. Scaling by a power of two is exact; the count is ≤ 2^m (2^m is the smallest normal).
            let scaled = Float(bitPattern: magnitude) * Float(sign: .plus, exponent: bias - 1 + Int(m), significand: 1)
            code = UInt32(scaled.rounded(.toNearestOrEven))
        }
        if code > largestFiniteBits { return sign | overflow }
        return sign | UInt8(truncatingIfNeeded: code)
    }

    /// The float32 value of an E4M3FN pattern (exact).
    @inline(__always)
    public static func e4m3fnValue(_ bits: UInt8) -> Float {
        if bits & 0x7F == 0x7F { return bits & 0x80 == 0 ? .nan : -.nan }
        return decode8(bits, mantissaBits: 3, bias: 7)
    }

    /// The float32 value of an E5M2 pattern (exact).
    @inline(__always)
    public static func e5m2Value(_ bits: UInt8) -> Float {
        let negative = bits & 0x80 != 0
        if bits & 0x7F == 0x7C { return negative ? -.infinity : .infinity }
        if bits & 0x7F > 0x7C { return negative ? -.nan : .nan }
        return decode8(bits, mantissaBits: 2, bias: 15)
    }

    @inline(__always)
    static func decode8(_ bits: UInt8, mantissaBits m: Int, bias: Int) -> Float {
        let sign = UInt32(bits & 0x80) << 24
        let exponent = Int(bits & 0x7F) >> m
        let mantissa = UInt32(bits) & ((1 << UInt32(m)) - 1)
        if exponent == 0 {
            let magnitude = Float(mantissa) * Float(sign: .plus, exponent: 1 - bias - m, significand: 1)
            return Float(bitPattern: magnitude.bitPattern | sign)
        }
        let exponentBits = UInt32(exponent - bias + 127) << 23
        return Float(bitPattern: sign | exponentBits | (mantissa << UInt32(23 - m)))
    }

    /// All 256 E4M3FN values, for table-driven dequantization.
    public static let e4m3fnTable: [Float] = (0...255).map { e4m3fnValue(UInt8($0)) }
    /// All 256 E5M2 values, for table-driven dequantization.
    public static let e5m2Table: [Float] = (0...255).map { e5m2Value(UInt8($0)) }

    // MARK: BF16 and FP16

    /// BF16 bits of `value`: round to nearest even; NaN → `sign | 0x7FC0` (ml_dtypes' canonical NaN).
    ///
    /// `Tensors.BFloat16(Float)` rounds the same way but keeps NaN payloads; both are checked over all
    /// 2^16 patterns in the tests.
    @inline(__always)
    public static func bfloat16Bits(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) & 0x8000 | 0x7FC0 }
        let roundingBias = UInt32(0x7FFF) &+ ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ roundingBias) >> 16)
    }

    /// The float32 value of a BF16 pattern (exact).
    @inline(__always)
    public static func bfloat16Value(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }

    /// FP16 bits of `value` (Swift's IEEE conversion: round to nearest even, overflow to ±Inf).
    @inline(__always)
    public static func float16Bits(_ value: Float) -> UInt16 { Float16(value).bitPattern }

    /// The float32 value of an FP16 pattern (exact).
    @inline(__always)
    public static func float16Value(_ bits: UInt16) -> Float { Float(Float16(bitPattern: bits)) }
}

extension Float8E4M3FN {
    /// Rounds to nearest even; `saturating` (ONNX's default) clamps overflow and ±Inf to ±448, otherwise
    /// they become NaN.
    public init(_ value: Float, saturating: Bool = true) {
        self.init(bitPattern: FloatFormats.e4m3fnBits(value, saturate: saturating))
    }

    public var floatValue: Float { FloatFormats.e4m3fnValue(bitPattern) }
}

extension Float8E5M2 {
    /// Rounds to nearest even; `saturating` (ONNX's default) clamps overflow and ±Inf to ±57344,
    /// otherwise overflow becomes ±Inf.
    public init(_ value: Float, saturating: Bool = true) {
        self.init(bitPattern: FloatFormats.e5m2Bits(value, saturate: saturating))
    }

    public var floatValue: Float { FloatFormats.e5m2Value(bitPattern) }
}
