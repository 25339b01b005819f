/// Errors raised while building, converting or (de)serialising tensors.
///
/// Every case carries enough context (a tensor name or file path where one is known) to tell the user
/// what is at fault.
public enum TensorError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A dimension is negative.
    case negativeDimension(shape: [Int])
    /// The product of the dimensions does not fit in `Int`.
    case elementCountOverflow(shape: [Int])
    /// The data supplied holds a different number of elements or bytes than the shape requires.
    case sizeMismatch(what: String, expected: Int, actual: Int)
    /// The operation needs a different element type.
    case dtypeMismatch(what: String, expected: DType, actual: DType)
    /// A reshape whose element counts differ.
    case incompatibleReshape(from: [Int], to: [Int])
    /// A malformed or unsupported file; `path` names it.
    case invalidFile(path: String, reason: String)
    /// A named array is absent from an archive.
    case missingArray(path: String, name: String)
    /// `Tensor.converted(to:)` has no conversion between these dtypes (yet).
    case unsupportedConversion(from: DType, to: DType)
    /// The operation cannot handle this tensor (for example a dtype a file format cannot represent).
    case unsupported(String)

    public var description: String {
        switch self {
        case .negativeDimension(let shape):
            return "shape \(shape) has a negative dimension"
        case .elementCountOverflow(let shape):
            return "shape \(shape) has more elements than an Int can count"
        case .sizeMismatch(let what, let expected, let actual):
            return "\(what): expected \(expected), got \(actual)"
        case .dtypeMismatch(let what, let expected, let actual):
            return "\(what): expected dtype \(expected), got \(actual)"
        case .incompatibleReshape(let from, let to):
            return "cannot reshape \(from) to \(to): element counts differ"
        case .invalidFile(let path, let reason):
            return "\(path): \(reason)"
        case .missingArray(let path, let name):
            return "\(path): no array named '\(name)'"
        case .unsupportedConversion(let from, let to):
            return "conversion from \(from) to \(to) is not supported"
        case .unsupported(let what):
            return "unsupported: \(what)"
        }
    }
}
