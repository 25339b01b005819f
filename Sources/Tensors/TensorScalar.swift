/// A Swift type that is the in-memory element of one `DType`.
public protocol TensorScalar: Sendable {
    static var dtype: DType { get }
}

extension Float: TensorScalar { public static var dtype: DType { .float32 } }
extension Double: TensorScalar { public static var dtype: DType { .float64 } }
extension Float16: TensorScalar { public static var dtype: DType { .float16 } }
extension Int8: TensorScalar { public static var dtype: DType { .int8 } }
extension UInt8: TensorScalar { public static var dtype: DType { .uint8 } }
extension Int16: TensorScalar { public static var dtype: DType { .int16 } }
extension UInt16: TensorScalar { public static var dtype: DType { .uint16 } }
extension Int32: TensorScalar { public static var dtype: DType { .int32 } }
extension UInt32: TensorScalar { public static var dtype: DType { .uint32 } }
extension Int64: TensorScalar { public static var dtype: DType { .int64 } }
extension UInt64: TensorScalar { public static var dtype: DType { .uint64 } }
extension Bool: TensorScalar { public static var dtype: DType { .bool } }

/// bfloat16: the upper 16 bits of an IEEE float32.
public struct BFloat16: TensorScalar, Hashable, CustomStringConvertible {
    public static var dtype: DType { .bfloat16 }
    public var bitPattern: UInt16

    public init(bitPattern: UInt16) { self.bitPattern = bitPattern }

    /// Rounds to nearest, ties to even; NaN stays a (quiet) NaN.
    public init(_ value: Float) {
        let bits = value.bitPattern
        if value.isNaN {
            bitPattern = UInt16(truncatingIfNeeded: bits >> 16) | 0x0040
        } else {
            let roundingBias = UInt32(0x7FFF) + ((bits >> 16) & 1)
            bitPattern = UInt16(truncatingIfNeeded: (bits &+ roundingBias) >> 16)
        }
    }

    public var floatValue: Float { Float(bitPattern: UInt32(bitPattern) << 16) }
    public var description: String { floatValue.description }
}

/// An 8-bit float, E4M3FN (no infinities, one NaN pattern per sign). Conversions live in QuantCore.
public struct Float8E4M3FN: TensorScalar, Hashable {
    public static var dtype: DType { .float8e4m3fn }
    public var bitPattern: UInt8
    public init(bitPattern: UInt8) { self.bitPattern = bitPattern }
}

/// An 8-bit float, E5M2 (IEEE-like, with infinities). Conversions live in QuantCore.
public struct Float8E5M2: TensorScalar, Hashable {
    public static var dtype: DType { .float8e5m2 }
    public var bitPattern: UInt8
    public init(bitPattern: UInt8) { self.bitPattern = bitPattern }
}
