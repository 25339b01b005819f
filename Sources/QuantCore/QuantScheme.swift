/// How a range [min, max] maps onto the codes of an integer type.
public enum Mapping: String, Codable, Sendable, CaseIterable {
    /// Symmetric: `T = max(|min|, |max|)`, `s = T / ((qmax − qmin) / 2)`; the zero point is 0 for signed
    /// types and the mid code `(qmin + qmax + 1) / 2` for unsigned ones (128 for uint8). With int8 narrow
    /// range this is `s = T / 127`. Floating-point, binary, ternary and log2 types are always symmetric.
    case symmetric
    /// Asymmetric (affine): `s = (max − min) / (qmax − qmin)`, `z = clamp(qmin − round(min / s), qmin, qmax)`,
    /// with the range first widened to include 0 so that 0 is exactly representable.
    case asymmetric
}

/// Which codes of an integer type are used.
public enum IntegerRange: String, Codable, Sendable, CaseIterable {
    /// Every code of the type: int8 `[−128, 127]`, uint8 `[0, 255]`.
    case full
    /// The lowest code is dropped so the range is symmetric about its middle: int8 `[−127, 127]`,
    /// uint8 `[1, 255]`. Quantize clamps to this range (as TensorRT does); ONNX QuantizeLinear clamps to
    /// the type's full range, so the two differ only for values below `(qmin − 0.5 − z) · s`.
    case narrow
}

/// How the clip range is chosen from data, for the modes that have a threshold.
public enum Saturation: Hashable, Sendable, Codable {
    /// Non-saturating (abs-max): the range is the observed `[min, max]`; no value clips.
    case none
    /// Saturating at `T`: the range is `[max(min, −T), min(max, T)]`; values beyond `±T` saturate to the
    /// extreme codes.
    case threshold(Float)
}

/// Everything that decides how a tensor is quantized: the type, the granularity and the mapping.
///
/// `validate()` (called by every function that uses a scheme) rejects combinations that have no meaning,
/// with a message that says what is allowed.
public struct QuantScheme: Hashable, Sendable, Codable {
    public var type: QuantType
    public var granularity: Granularity
    public var mapping: Mapping
    public var range: IntegerRange
    /// Use one bit fewer than the type has (int8 → `[−64, 63]`, uint8 → `[0, 127]`), as PyTorch's
    /// `reduce_range` does for x86 kernels whose 16-bit intermediate sums could otherwise overflow.
    public var reduceRange: Bool
    /// FP8 only: clamp values beyond the largest finite value to it (ONNX's `saturate = 1`, the default).
    /// When false, E4M3FN overflows to NaN and E5M2 to ±Inf, as ONNX does with `saturate = 0`.
    public var saturate: Bool
    /// The smallest scale produced, so that a zero range still gives a usable, non-zero scale.
    /// The default is `Float.ulpOfOne` (2⁻²³), PyTorch's `eps`.
    public var minimumScale: Float

    public init(type: QuantType, granularity: Granularity = .perTensor, mapping: Mapping = .symmetric,
                range: IntegerRange = .full, reduceRange: Bool = false, saturate: Bool = true,
                minimumScale: Float = .ulpOfOne) {
        self.type = type
        self.granularity = granularity
        self.mapping = mapping
        self.range = range
        self.reduceRange = reduceRange
        self.saturate = saturate
        self.minimumScale = minimumScale
    }

    /// Symmetric int8 weights on narrow range `[−127, 127]`, `s = max|w| / 127` (DESIGN.md §4).
    public static func int8Weights(granularity: Granularity = .perTensor) -> QuantScheme {
        QuantScheme(type: .int8, granularity: granularity, mapping: .symmetric, range: .narrow)
    }

    /// Asymmetric uint8 activations on the full range.
    public static let uint8Activations = QuantScheme(type: .uint8, mapping: .asymmetric)

    /// Throws when the options do not fit together.
    public func validate() throws {
        guard minimumScale > 0, minimumScale.isFinite, minimumScale.isNormal else {
            throw QuantError.unsupportedCombination(
                "minimum scale \(minimumScale) must be a positive, finite, normal float")
        }
        switch type.kind {
        case .integer(let bits, _):
            if reduceRange && bits < 2 {
                throw QuantError.unsupportedCombination(
                    "reduce-range drops one bit, so it needs an integer type of at least 2 bits; \(type) has \(bits)")
            }
            let effective = reduceRange ? bits - 1 : bits
            if effective == 1 && range == .narrow {
                throw QuantError.unsupportedCombination(
                    "narrow range on a 1-bit integer leaves a single code; use the full range or the binary type")
            }
            if effective == 1 && mapping == .symmetric {
                throw QuantError.unsupportedCombination(
                    "a symmetric 1-bit integer has no code above its zero point; use an asymmetric mapping or the binary type")
            }
        case .float16, .bfloat16, .float8e4m3fn, .float8e5m2, .binary, .ternary, .log2:
            if mapping == .asymmetric {
                throw QuantError.unsupportedCombination(
                    "\(type) has no zero point (it is always symmetric); asymmetric mappings are for int<N>/uint<N> types")
            }
            if range == .narrow || reduceRange {
                throw QuantError.unsupportedCombination(
                    "narrow range and reduce-range apply to int<N>/uint<N> types only, not to \(type)")
            }
        }
    }

    /// The codes quantize clamps to: the type's integer range narrowed or reduced as asked; `[−K, K]` for
    /// log2, `[−1, 1]` for binary and ternary; `nil` for floating-point types.
    public func codeRange() throws -> ClosedRange<Int32>? {
        try validate()
        switch type.kind {
        case .integer(let bits, let signed):
            let effective = reduceRange ? bits - 1 : bits
            var lower: Int32 = signed ? -(Int32(1) << (effective - 1)) : 0
            let upper: Int32 = signed ? (Int32(1) << (effective - 1)) - 1 : (Int32(1) << effective) - 1
            if range == .narrow { lower += 1 }
            return lower...upper
        case .binary, .ternary: return -1...1
        case .log2(let bits): return Log2Mapping.codeRange(bits: bits)
        case .float16, .bfloat16, .float8e4m3fn, .float8e5m2: return nil
        }
    }
}
