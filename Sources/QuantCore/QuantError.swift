import Tensors

/// Errors raised by the quantization math. Each message says what is wrong and what is allowed.
public enum QuantError: Error, Equatable, Sendable, CustomStringConvertible {
    /// An integer bit width outside 1…16 (or a log2 width outside 2…8).
    case unsupportedBitWidth(kind: String, bits: Int, allowed: ClosedRange<Int>)
    /// A type name that `QuantType(name:)` does not know.
    case unknownTypeName(String)
    /// A combination of options that has no meaning, e.g. an asymmetric FP8 mapping.
    case unsupportedCombination(String)
    /// A granularity that does not fit the tensor's shape.
    case invalidGranularity(String)
    /// Parameters whose counts, shapes or values are inconsistent (a zero scale, a zero point out of range…).
    case invalidParameters(String)
    /// The tensor's element type cannot be quantized or dequantized this way.
    case unsupportedDType(what: String, dtype: DType, allowed: [DType])
    /// A fixed-point multiplier that cannot be represented.
    case invalidMultiplier(Double, reason: String)

    public var description: String {
        switch self {
        case .unsupportedBitWidth(let kind, let bits, let allowed):
            return "\(kind) with \(bits) bits is not supported; allowed widths are \(allowed.lowerBound)…\(allowed.upperBound)"
        case .unknownTypeName(let name):
            return "unknown quantization type '\(name)'; use int<N>/uint<N> (N = 1…16, e.g. int8, uint4, int2), "
                + "binary, ternary, log2 or log2_<N> (N = 2…8), fp16, bf16, fp8e4m3fn or fp8e5m2"
        case .unsupportedCombination(let message), .invalidGranularity(let message),
             .invalidParameters(let message):
            return message
        case .unsupportedDType(let what, let dtype, let allowed):
            return "\(what): dtype \(dtype) is not supported; allowed: \(allowed.map(\.rawValue).joined(separator: ", "))"
        case .invalidMultiplier(let value, let reason):
            return "requantization multiplier \(value): \(reason)"
        }
    }
}
