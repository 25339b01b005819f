import Tensors

/// A target number format of quantization.
///
/// Construct one by name (`.int8`, `.uint4`, `.int2`, `.binary`, `.fp8e4m3fn`…), with
/// `QuantType.integer(bits:signed:)` or `QuantType.log2(bits:)` (both validate the width), or from a
/// string with `QuantType(name:)`. Values are always valid: an integer width is 1…16, a log2 width 2…8.
///
/// | kind | codes | value of a code `q` with scale `s`, zero point `z` |
/// | --- | --- | --- |
/// | `int<N>` | `[−2^(N−1), 2^(N−1) − 1]` | `(q − z) · s` |
/// | `uint<N>` | `[0, 2^N − 1]` | `(q − z) · s` |
/// | binary | `{−1, +1}` | `q · α` (α = `s`) |
/// | ternary | `{−1, 0, +1}` | `q · α` (α = `s`) |
/// | log2 (N bits) | `[−K, K]`, `K = 2^(N−1) − 1` | `sign(q) · s · 2^(|q| − K)`, 0 for `q = 0` |
/// | fp16, bf16, fp8 | the format's bit patterns | `float(q) · s` |
public struct QuantType: Hashable, Sendable, CustomStringConvertible {
    /// What a quantization type is; always valid inside a `QuantType`.
    public enum Kind: Hashable, Sendable {
        case integer(bits: Int, signed: Bool)
        case binary
        case ternary
        case log2(bits: Int)
        case float16, bfloat16, float8e4m3fn, float8e5m2
    }

    public let kind: Kind

    private init(unchecked kind: Kind) { self.kind = kind }

    /// Validates `kind` (integer widths 1…16, log2 widths 2…8).
    public init(_ kind: Kind) throws {
        switch kind {
        case .integer(let bits, let signed):
            guard QuantType.integerBitWidths.contains(bits) else {
                throw QuantError.unsupportedBitWidth(kind: signed ? "int" : "uint", bits: bits,
                                                     allowed: QuantType.integerBitWidths)
            }
        case .log2(let bits):
            guard QuantType.log2BitWidths.contains(bits) else {
                throw QuantError.unsupportedBitWidth(kind: "log2", bits: bits, allowed: QuantType.log2BitWidths)
            }
        default: break
        }
        self.kind = kind
    }

    /// Integer widths we quantize to.
    public static let integerBitWidths: ClosedRange<Int> = 1...16
    /// Log2 widths: one sign bit plus at least one exponent bit, at most an 8-bit code.
    public static let log2BitWidths: ClosedRange<Int> = 2...8

    /// A signed or unsigned integer of `bits` (1…16) bits.
    public static func integer(bits: Int, signed: Bool) throws -> QuantType {
        try QuantType(.integer(bits: bits, signed: signed))
    }

    /// A log2 (power-of-two) type with `bits` (2…8) bits: one sign bit and `bits − 1` exponent-code bits.
    public static func log2(bits: Int) throws -> QuantType { try QuantType(.log2(bits: bits)) }

    public static let int8 = QuantType(unchecked: .integer(bits: 8, signed: true))
    public static let uint8 = QuantType(unchecked: .integer(bits: 8, signed: false))
    public static let int16 = QuantType(unchecked: .integer(bits: 16, signed: true))
    public static let uint16 = QuantType(unchecked: .integer(bits: 16, signed: false))
    public static let int4 = QuantType(unchecked: .integer(bits: 4, signed: true))
    public static let uint4 = QuantType(unchecked: .integer(bits: 4, signed: false))
    public static let int2 = QuantType(unchecked: .integer(bits: 2, signed: true))
    public static let uint2 = QuantType(unchecked: .integer(bits: 2, signed: false))
    /// ±α: one bit per weight.
    public static let binary = QuantType(unchecked: .binary)
    /// −α / 0 / +α.
    public static let ternary = QuantType(unchecked: .ternary)
    /// The default log2 type: 4 bits (sign and 7 exponent levels).
    public static let log2 = QuantType(unchecked: .log2(bits: 4))
    public static let float16 = QuantType(unchecked: .float16)
    public static let bfloat16 = QuantType(unchecked: .bfloat16)
    public static let float8e4m3fn = QuantType(unchecked: .float8e4m3fn)
    public static let float8e5m2 = QuantType(unchecked: .float8e5m2)

    /// Parses `int8`, `uint4`, `int2`, `int<N>`/`uint<N>` (N = 1…16), `binary`, `ternary`, `log2`,
    /// `log2_<N>` (N = 2…8), `fp16`/`float16`, `bf16`/`bfloat16`, `fp8e4m3fn`/`float8e4m3fn`/`fp8`,
    /// `fp8e5m2`/`float8e5m2`.
    public init(name: String) throws {
        let lower = name.lowercased()
        switch lower {
        case "binary": self = .binary; return
        case "ternary": self = .ternary; return
        case "log2": self = .log2; return
        case "fp16", "float16": self = .float16; return
        case "bf16", "bfloat16": self = .bfloat16; return
        case "fp8", "fp8e4m3fn", "float8e4m3fn", "e4m3fn": self = .float8e4m3fn; return
        case "fp8e5m2", "float8e5m2", "e5m2": self = .float8e5m2; return
        default: break
        }
        if lower.hasPrefix("log2_"), let bits = Int(lower.dropFirst(5)) {
            self = try .log2(bits: bits)
            return
        }
        for (prefix, signed) in [("uint", false), ("int", true)] where lower.hasPrefix(prefix) {
            if let bits = Int(lower.dropFirst(prefix.count)) {
                self = try .integer(bits: bits, signed: signed)
                return
            }
        }
        throw QuantError.unknownTypeName(name)
    }

    /// The canonical name, accepted by `init(name:)`.
    public var name: String {
        switch kind {
        case .integer(let bits, let signed): return (signed ? "int" : "uint") + String(bits)
        case .binary: return "binary"
        case .ternary: return "ternary"
        case .log2(let bits): return bits == 4 ? "log2" : "log2_\(bits)"
        case .float16: return "fp16"
        case .bfloat16: return "bf16"
        case .float8e4m3fn: return "fp8e4m3fn"
        case .float8e5m2: return "fp8e5m2"
        }
    }

    public var description: String { name }

    /// Bits one value occupies in its ONNX (or natural) encoding.
    public var bitWidth: Int {
        switch kind {
        case .integer(let bits, _): return bits
        case .binary: return 1
        case .ternary: return 2
        case .log2(let bits): return bits
        case .float16, .bfloat16: return 16
        case .float8e4m3fn, .float8e5m2: return 8
        }
    }

    /// True for the integer types (`int<N>`, `uint<N>`), whose codes are affine in the value.
    public var isInteger: Bool {
        if case .integer = kind { return true }
        return false
    }

    /// True for FP16, BF16 and the FP8 formats.
    public var isFloatingPoint: Bool {
        switch kind {
        case .float16, .bfloat16, .float8e4m3fn, .float8e5m2: return true
        default: return false
        }
    }

    /// True for the integer types with a sign (and for every non-integer type, whose codes are symmetric).
    public var isSigned: Bool {
        if case .integer(_, let signed) = kind { return signed }
        return true
    }

    /// The full code range `[qmin, qmax]` of an integer type (`nil` for the others).
    public var integerRange: ClosedRange<Int32>? {
        guard case .integer(let bits, let signed) = kind else { return nil }
        return signed ? -(Int32(1) << (bits - 1))...((Int32(1) << (bits - 1)) - 1) : 0...((Int32(1) << bits) - 1)
    }

    /// The largest finite value of a floating-point type (`nil` for the others).
    public var largestFiniteValue: Float? {
        switch kind {
        case .float16: return Float(Float16.greatestFiniteMagnitude)
        case .bfloat16: return Float(bitPattern: 0x7F7F_0000)
        case .float8e4m3fn: return 448
        case .float8e5m2: return 57344
        default: return nil
        }
    }

    /// The element type of the tensor `quantize` returns for this type.
    ///
    /// int4/uint4 are packed as ONNX packs them (`DType.int4`/`.uint4`, two per byte, low nibble first).
    /// int2/uint2 have no `DType`: they are returned as `uint8` bytes packed four per byte, the first
    /// element in the two lowest bits (ONNX 1.20+ INT2/UINT2), and `QuantizedTensor.shape` keeps the
    /// logical shape. Other widths use the smallest whole-byte integer (int3 → int8, uint12 → uint16).
    /// Binary, ternary and log2 codes are `int8` values (`±1`, `−1/0/+1`, `[−K, K]`).
    public var storageDType: DType {
        switch kind {
        case .integer(let bits, let signed):
            switch bits {
            case 2: return .uint8
            case 4: return signed ? .int4 : .uint4
            case 1...8: return signed ? .int8 : .uint8
            default: return signed ? .int16 : .uint16
            }
        case .binary, .ternary, .log2: return .int8
        case .float16: return .float16
        case .bfloat16: return .bfloat16
        case .float8e4m3fn: return .float8e4m3fn
        case .float8e5m2: return .float8e5m2
        }
    }

    /// True when codes are packed below one byte per value in `storageDType` (int4/uint4/int2/uint2).
    public var isPacked: Bool {
        if case .integer(let bits, _) = kind { return bits == 2 || bits == 4 }
        return false
    }
}

extension QuantType: Codable {
    /// Encoded as its name (`"int8"`, `"fp8e4m3fn"`, `"log2_3"`…).
    public init(from decoder: Decoder) throws {
        let name = try decoder.singleValueContainer().decode(String.self)
        try self.init(name: name)
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(name)
    }
}
