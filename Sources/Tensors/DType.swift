/// The element type of a tensor.
///
/// Sub-byte types (`int4`, `uint4`) are stored packed, two elements per byte, the first element in the
/// low nibble — the layout ONNX uses for `INT4`/`UINT4` tensors.
public enum DType: String, Sendable, Hashable, CaseIterable, Codable {
    case float32, float16, bfloat16, float64
    case float8e4m3fn, float8e5m2
    case int8, uint8, int16, uint16, int32, uint32, int64, uint64
    case int4, uint4
    case bool

    /// Bits one element occupies in storage.
    public var bitWidth: Int {
        switch self {
        case .int4, .uint4: return 4
        case .bool, .int8, .uint8, .float8e4m3fn, .float8e5m2: return 8
        case .float16, .bfloat16, .int16, .uint16: return 16
        case .float32, .int32, .uint32: return 32
        case .float64, .int64, .uint64: return 64
        }
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .float32, .float16, .bfloat16, .float64, .float8e4m3fn, .float8e5m2: return true
        default: return false
        }
    }

    public var isInteger: Bool { !isFloatingPoint && self != .bool }

    public var isSigned: Bool {
        switch self {
        case .int8, .int16, .int32, .int64, .int4: return true
        default: return isFloatingPoint
        }
    }

    /// Bytes needed to store `count` elements, or `nil` when that overflows `Int`.
    public func storageByteCount(elements count: Int) -> Int? {
        guard count >= 0 else { return nil }
        if bitWidth == 4 { return count / 2 + count % 2 }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: bitWidth / 8)
        return overflow ? nil : bytes
    }
}
