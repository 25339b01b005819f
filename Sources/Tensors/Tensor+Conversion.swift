// Element-type conversion with ONNX `Cast` semantics.
//
// Every source type is first widened, exactly, to one of four forms (Float, Double, Int64, UInt64);
// every destination type knows how to build itself from each form. A conversion resolves the
// (source, destination) pair once and then runs one specialised loop, so the element loop holds no
// dispatch.
//
// Rules (ONNX Cast, made deterministic where ONNX leaves results undefined):
// - float → float: round to nearest, ties to even; ±infinity when out of range. float64 → float16 rounds
//   once (as numpy does); float64 → bfloat16 rounds through float32 (as ml_dtypes, which the ONNX
//   reference uses, does).
// - float → integer: truncate toward zero. NaN, ±infinity and out-of-range values give what a C cast
//   gives on x86-64 — and what numpy and ONNX Runtime produce there: 32-bit and narrower targets go
//   through `cvttss2si`'s 32-bit result (NaN/out of range → Int32.min, whose low bits are then kept),
//   int64 gets Int64.min, and unsigned 32/64-bit targets use the compilers' "subtract 2^31 (2^63) when
//   at or above it" sequence. Examples: NaN → int8 0, int32 −2147483648, uint32 2147483648,
//   int64 −2^63; 300.7 → int8 44; −1.5 → uint8 255; +inf → uint64 0.
// - integer → integer: keep the low bits (two's complement wrap), e.g. int16 200 → int8 −56.
// - integer → float: round to nearest even (int → bfloat16 rounds through float32).
// - bool → number: 0 or 1; number → bool: nonzero (NaN included) is true.
// - int4/uint4: converted as int8 values; a 4-bit destination keeps the low nibble (wraps), as the
//   ONNX reference does.

// MARK: - Widening (sources)

/// The exact wide form a cast source is read as.
protocol CastWideValue {
    /// Builds a destination element from this wide value.
    static func cast<Destination: CastDestination>(_ value: Self, to: Destination.Type) -> Destination
}

extension Float: CastWideValue {
    @inline(__always)
    static func cast<Destination: CastDestination>(_ value: Float, to: Destination.Type) -> Destination {
        Destination(castFrom: value)
    }
}

extension Double: CastWideValue {
    @inline(__always)
    static func cast<Destination: CastDestination>(_ value: Double, to: Destination.Type) -> Destination {
        Destination(castFrom: value)
    }
}

extension Int64: CastWideValue {
    @inline(__always)
    static func cast<Destination: CastDestination>(_ value: Int64, to: Destination.Type) -> Destination {
        Destination(castFrom: value)
    }
}

extension UInt64: CastWideValue {
    @inline(__always)
    static func cast<Destination: CastDestination>(_ value: UInt64, to: Destination.Type) -> Destination {
        Destination(castFrom: value)
    }
}

/// A stored element type that can be read by a cast.
protocol CastSource {
    associatedtype Wide: CastWideValue
    var castWidened: Wide { get }
}

extension Float: CastSource { var castWidened: Float { self } }
extension Float16: CastSource { var castWidened: Float { Float(self) } }
extension BFloat16: CastSource { var castWidened: Float { floatValue } }
extension Double: CastSource { var castWidened: Double { self } }
extension Int8: CastSource { var castWidened: Int64 { Int64(self) } }
extension Int16: CastSource { var castWidened: Int64 { Int64(self) } }
extension Int32: CastSource { var castWidened: Int64 { Int64(self) } }
extension Int64: CastSource { var castWidened: Int64 { self } }
extension UInt8: CastSource { var castWidened: Int64 { Int64(self) } }
extension UInt16: CastSource { var castWidened: Int64 { Int64(self) } }
extension UInt32: CastSource { var castWidened: Int64 { Int64(self) } }
extension UInt64: CastSource { var castWidened: UInt64 { self } }

/// A bool element read as its storage byte, so that any nonzero byte counts as true.
struct BoolByte: CastSource {
    var byte: UInt8
    var castWidened: Int64 { byte == 0 ? 0 : 1 }
}

// MARK: - Narrowing (destinations)

/// A stored element type that a cast can produce from each wide form.
protocol CastDestination: TensorScalar {
    init(castFrom value: Float)
    init(castFrom value: Double)
    init(castFrom value: Int64)
    init(castFrom value: UInt64)
}

/// Float → Int32 as x86-64's `cvttsd2si` does it: truncation, and Int32.min ("integer indefinite")
/// for NaN and values outside Int32's range.
@inline(__always)
func x86TruncatedInt32(_ value: Double) -> Int32 {
    value > -2_147_483_649.0 && value < 2_147_483_648.0 ? Int32(value) : .min
}

/// Float → Int64 as x86-64's 64-bit `cvttsd2si`: truncation, Int64.min for NaN and out-of-range values.
@inline(__always)
func x86TruncatedInt64(_ value: Double) -> Int64 {
    // -2^63 is a Double and nothing lies between it and the next Double below, so `>=` is exact.
    value >= -9_223_372_036_854_775_808.0 && value < 9_223_372_036_854_775_808.0 ? Int64(value) : .min
}

/// Float → UInt32 as C compilers emit it on x86-64 (and numpy/ONNX Runtime produce): values at or above
/// 2^31 are converted after subtracting 2^31, whose bit is then put back.
@inline(__always)
func x86TruncatedUInt32(_ value: Double) -> UInt32 {
    if value >= 2_147_483_648.0 {
        return UInt32(bitPattern: x86TruncatedInt32(value - 2_147_483_648.0)) ^ 0x8000_0000
    }
    return UInt32(bitPattern: x86TruncatedInt32(value))
}

/// Float → UInt64 by the same scheme as `x86TruncatedUInt32`, around 2^63.
@inline(__always)
func x86TruncatedUInt64(_ value: Double) -> UInt64 {
    if value >= 9_223_372_036_854_775_808.0 {
        return UInt64(bitPattern: x86TruncatedInt64(value - 9_223_372_036_854_775_808.0)) ^ (1 << 63)
    }
    return UInt64(bitPattern: x86TruncatedInt64(value))
}

extension Float: CastDestination {
    init(castFrom value: Float) { self = value }
    init(castFrom value: Double) { self.init(value) }
    init(castFrom value: Int64) { self.init(value) }
    init(castFrom value: UInt64) { self.init(value) }
}

extension Double: CastDestination {
    init(castFrom value: Float) { self.init(value) }
    init(castFrom value: Double) { self = value }
    init(castFrom value: Int64) { self.init(value) }
    init(castFrom value: UInt64) { self.init(value) }
}

extension Float16: CastDestination {
    init(castFrom value: Float) { self.init(value) }
    init(castFrom value: Double) { self.init(value) }
    // Integers below 2^24 are exact in Float and larger ones overflow Float16 either way, so going
    // through Float rounds exactly like a direct conversion, and faster.
    init(castFrom value: Int64) { self.init(Float(value)) }
    init(castFrom value: UInt64) { self.init(Float(value)) }
}

extension BFloat16: CastDestination {
    init(castFrom value: Float) { self.init(value) }
    init(castFrom value: Double) { self.init(Float(value)) }
    init(castFrom value: Int64) { self.init(Float(value)) }
    init(castFrom value: UInt64) { self.init(Float(value)) }
}

extension Bool: CastDestination {
    init(castFrom value: Float) { self = value != 0 }
    init(castFrom value: Double) { self = value != 0 }
    init(castFrom value: Int64) { self = value != 0 }
    init(castFrom value: UInt64) { self = value != 0 }
}

/// Integer destinations share their rules; only the float → integer path differs by width.
protocol CastIntegerDestination: CastDestination, FixedWidthInteger {
    static func fromX86Truncation(_ value: Double) -> Self
}

extension CastIntegerDestination {
    init(castFrom value: Float) { self = Self.fromX86Truncation(Double(value)) }
    init(castFrom value: Double) { self = Self.fromX86Truncation(value) }
    init(castFrom value: Int64) { self.init(truncatingIfNeeded: value) }
    init(castFrom value: UInt64) { self.init(truncatingIfNeeded: value) }
}

extension Int8: CastDestination, CastIntegerDestination {
    static func fromX86Truncation(_ value: Double) -> Int8 {
        Int8(truncatingIfNeeded: x86TruncatedInt32(value))
    }
}
extension UInt8: CastDestination, CastIntegerDestination {
    static func fromX86Truncation(_ value: Double) -> UInt8 {
        UInt8(truncatingIfNeeded: x86TruncatedInt32(value))
    }
}
extension Int16: CastDestination, CastIntegerDestination {
    static func fromX86Truncation(_ value: Double) -> Int16 {
        Int16(truncatingIfNeeded: x86TruncatedInt32(value))
    }
}
extension UInt16: CastDestination, CastIntegerDestination {
    static func fromX86Truncation(_ value: Double) -> UInt16 {
        UInt16(truncatingIfNeeded: x86TruncatedInt32(value))
    }
}
extension Int32: CastDestination, CastIntegerDestination {
    static func fromX86Truncation(_ value: Double) -> Int32 { x86TruncatedInt32(value) }
}
extension UInt32: CastDestination, CastIntegerDestination {
    static func fromX86Truncation(_ value: Double) -> UInt32 { x86TruncatedUInt32(value) }
}
extension Int64: CastDestination, CastIntegerDestination {
    static func fromX86Truncation(_ value: Double) -> Int64 { x86TruncatedInt64(value) }
}
extension UInt64: CastDestination, CastIntegerDestination {
    static func fromX86Truncation(_ value: Double) -> UInt64 { x86TruncatedUInt64(value) }
}

// MARK: - Loops and dispatch

/// The element loop of one (source, destination) pair.
func castElements<Source: CastSource, Destination: CastDestination>(
    _ source: UnsafeBufferPointer<Source>, into destination: UnsafeMutableBufferPointer<Destination>
) {
    guard let input = source.baseAddress, let output = destination.baseAddress else { return }
    for index in 0..<source.count {
        output[index] = Source.Wide.cast(input[index].castWidened, to: Destination.self)
    }
}

/// Picks the destination loop for a source buffer whose type is already resolved.
func castElements<Source: CastSource>(_ source: UnsafeBufferPointer<Source>, into output: inout Tensor) {
    switch output.dtype {
    case .float32: output.withUnsafeMutableBufferPointer(as: Float.self) { castElements(source, into: $0) }
    case .float64: output.withUnsafeMutableBufferPointer(as: Double.self) { castElements(source, into: $0) }
    case .float16: output.withUnsafeMutableBufferPointer(as: Float16.self) { castElements(source, into: $0) }
    case .bfloat16: output.withUnsafeMutableBufferPointer(as: BFloat16.self) { castElements(source, into: $0) }
    case .int8: output.withUnsafeMutableBufferPointer(as: Int8.self) { castElements(source, into: $0) }
    case .uint8: output.withUnsafeMutableBufferPointer(as: UInt8.self) { castElements(source, into: $0) }
    case .int16: output.withUnsafeMutableBufferPointer(as: Int16.self) { castElements(source, into: $0) }
    case .uint16: output.withUnsafeMutableBufferPointer(as: UInt16.self) { castElements(source, into: $0) }
    case .int32: output.withUnsafeMutableBufferPointer(as: Int32.self) { castElements(source, into: $0) }
    case .uint32: output.withUnsafeMutableBufferPointer(as: UInt32.self) { castElements(source, into: $0) }
    case .int64: output.withUnsafeMutableBufferPointer(as: Int64.self) { castElements(source, into: $0) }
    case .uint64: output.withUnsafeMutableBufferPointer(as: UInt64.self) { castElements(source, into: $0) }
    case .bool: output.withUnsafeMutableBufferPointer(as: Bool.self) { castElements(source, into: $0) }
    case .int4, .uint4, .float8e4m3fn, .float8e5m2:
        // Callers route these destinations elsewhere before getting here.
        preconditionFailure("castElements called for \(output.dtype)")
    }
}

extension Tensor {
    /// This tensor with every element converted to `dtype`, following ONNX `Cast` semantics.
    ///
    /// Float → integer truncates toward zero; NaN, ±infinity and out-of-range values give the result
    /// a C cast gives on x86-64 (as numpy and ONNX Runtime do there), e.g. NaN → int32 −2147483648,
    /// NaN → int8 0, 300.7 → int8 44. Integer → integer keeps the low bits. Float → float16/bfloat16
    /// rounds to nearest, ties to even. Bool converts to 0/1; any nonzero number (and NaN) to true.
    /// 4-bit destinations keep the low nibble of the int8 conversion.
    /// Converting to the tensor's own dtype returns it unchanged (sharing storage).
    ///
    /// - Throws: `TensorError.unsupportedConversion` for float8 types other than the identity
    ///   (float8 conversions live in QuantCore).
    public func converted(to dtype: DType) throws -> Tensor {
        if dtype == self.dtype { return self }
        switch (self.dtype, dtype) {
        case (.float8e4m3fn, _), (.float8e5m2, _), (_, .float8e4m3fn), (_, .float8e5m2):
            throw TensorError.unsupportedConversion(from: self.dtype, to: dtype)
        case (.int4, _), (.uint4, _):
            let values = try unpackedInt4()
            let wide = try Tensor(shape: shape, scalars: values)
            return try wide.converted(to: dtype)
        case (_, .int4), (_, .uint4):
            let narrow = try converted(to: .int8)
            return try Tensor.packNibbles(narrow.scalars(as: Int8.self), dtype: dtype, shape: shape)
        default:
            var output = try Tensor(zeros: dtype, shape: shape)
            castAll(into: &output)
            return output
        }
    }

    /// Runs the loop for this tensor's (non-4-bit, non-float8) dtype into `output`.
    private func castAll(into output: inout Tensor) {
        switch dtype {
        case .float32: withUnsafeBufferPointer(as: Float.self) { castElements($0, into: &output) }
        case .float64: withUnsafeBufferPointer(as: Double.self) { castElements($0, into: &output) }
        case .float16: withUnsafeBufferPointer(as: Float16.self) { castElements($0, into: &output) }
        case .bfloat16: withUnsafeBufferPointer(as: BFloat16.self) { castElements($0, into: &output) }
        case .int8: withUnsafeBufferPointer(as: Int8.self) { castElements($0, into: &output) }
        case .uint8: withUnsafeBufferPointer(as: UInt8.self) { castElements($0, into: &output) }
        case .int16: withUnsafeBufferPointer(as: Int16.self) { castElements($0, into: &output) }
        case .uint16: withUnsafeBufferPointer(as: UInt16.self) { castElements($0, into: &output) }
        case .int32: withUnsafeBufferPointer(as: Int32.self) { castElements($0, into: &output) }
        case .uint32: withUnsafeBufferPointer(as: UInt32.self) { castElements($0, into: &output) }
        case .int64: withUnsafeBufferPointer(as: Int64.self) { castElements($0, into: &output) }
        case .uint64: withUnsafeBufferPointer(as: UInt64.self) { castElements($0, into: &output) }
        case .bool:
            // Read the storage bytes, not `Bool`s, so a stray byte other than 0/1 still means true.
            withUnsafeBytes { raw in
                let bytes = UnsafeBufferPointer(
                    start: raw.baseAddress?.assumingMemoryBound(to: BoolByte.self), count: count)
                castElements(bytes, into: &output)
            }
        case .int4, .uint4, .float8e4m3fn, .float8e5m2:
            preconditionFailure("castAll called for \(dtype)")
        }
    }

    /// Every element as a `Float` (any dtype but float8), by the rules of `converted(to:)`.
    public func floatArray() throws -> [Float] {
        try converted(to: .float32).scalars(as: Float.self)
    }
}

// MARK: - 4-bit packing

extension Tensor {
    /// A packed `int4` (`signed`) or `uint4` tensor of `shape` from one value per element.
    ///
    /// Elements are stored two per byte, the first in the low nibble, as ONNX stores INT4/UINT4.
    ///
    /// - Throws: `TensorError.sizeMismatch` when `values.count` differs from the shape's element count,
    ///   `TensorError.unsupported` when a value lies outside −8…7 (signed) or 0…15 (unsigned).
    public static func packInt4(_ values: [Int8], signed: Bool, shape: [Int]) throws -> Tensor {
        let range: ClosedRange<Int8> = signed ? -8...7 : 0...15
        if let bad = values.firstIndex(where: { !range.contains($0) }) {
            throw TensorError.unsupported(
                "value \(values[bad]) at index \(bad) is outside the \(signed ? "int4" : "uint4") range \(range)")
        }
        return try packNibbles(values, dtype: signed ? .int4 : .uint4, shape: shape)
    }

    /// Packs the low nibble of each value (no range check: the caller wants wrap-around).
    static func packNibbles(_ values: [Int8], dtype: DType, shape: [Int]) throws -> Tensor {
        var output = try Tensor(zeros: dtype, shape: shape)
        guard values.count == output.count else {
            throw TensorError.sizeMismatch(what: "values for \(dtype) shape \(shape)",
                                           expected: output.count, actual: values.count)
        }
        output.withUnsafeMutableBytes { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            for index in 0..<values.count {
                let nibble = UInt8(bitPattern: values[index]) & 0x0F
                bytes[index >> 1] |= index & 1 == 0 ? nibble : nibble << 4
            }
        }
        return output
    }

    /// The elements of an `int4` (sign-extended, −8…7) or `uint4` (0…15) tensor, one per entry.
    ///
    /// - Throws: `TensorError.dtypeMismatch` for other dtypes.
    public func unpackedInt4() throws -> [Int8] {
        guard dtype == .int4 || dtype == .uint4 else {
            throw TensorError.dtypeMismatch(what: "unpackedInt4()", expected: .int4, actual: dtype)
        }
        let signed = dtype == .int4
        let elementCount = count
        return withUnsafeBytes { raw in
            [Int8](unsafeUninitializedCapacity: elementCount) { values, initialized in
                for index in 0..<elementCount {
                    let byte = raw[index >> 1]
                    let nibble = index & 1 == 0 ? byte & 0x0F : byte >> 4
                    // Shifting the nibble to the top and back sign-extends it.
                    values[index] = signed ? Int8(bitPattern: nibble << 4) >> 4 : Int8(nibble)
                }
                initialized = elementCount
            }
        }
    }
}
