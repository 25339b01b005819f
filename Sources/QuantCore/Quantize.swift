import Tensors

/// A quantized tensor: codes in `params.type.storageDType`, with the logical shape and the parameters.
///
/// For int2/uint2 (no `DType` exists) `storage` is a `uint8` tensor of shape `[ceil(n / 4)]` holding the
/// codes packed four per byte as ONNX packs INT2; `shape` is the logical shape. For every other type
/// `storage.shape == shape` (int4/uint4 storage is `DType.int4`/`.uint4`, packed two per byte).
public struct QuantizedTensor: Sendable, Equatable {
    public let storage: Tensor
    public let shape: [Int]
    public let params: QuantParams

    /// Validates that `storage` holds `shape`'s elements in the type's storage dtype and that `params` fit.
    public init(storage: Tensor, shape: [Int], params: QuantParams) throws {
        let dtype = params.type.storageDType
        guard storage.dtype == dtype else {
            throw QuantError.unsupportedDType(what: "storage of a \(params.type) tensor", dtype: storage.dtype, allowed: [dtype])
        }
        let layout = try params.layout(for: shape)
        if case .integer(2, _) = params.type.kind {
            let bytes = SubBytePacking.byteCount(elements: layout.elementCount, bits: 2)
            guard storage.shape == [bytes] else {
                throw QuantError.invalidParameters(
                    "packed 2-bit storage for \(layout.elementCount) values must have shape [\(bytes)], got \(storage.shape)")
            }
        } else {
            guard storage.shape == shape else {
                throw QuantError.invalidParameters("storage shape \(storage.shape) differs from the logical shape \(shape)")
            }
        }
        self.storage = storage
        self.shape = shape
        self.params = params
    }

    /// Number of logical elements.
    public var count: Int { shape.reduce(1, *) }

    /// The integer codes, unpacked (integer, binary, ternary and log2 types; FP types give bit patterns).
    public func codes() -> [Int32] {
        let n = count
        switch params.type.kind {
        case .integer(let bits, let signed) where bits == 2 || bits == 4:
            var codes = [Int8](repeating: 0, count: n)
            storage.withUnsafeBytes { bytes in
                codes.withUnsafeMutableBufferPointer {
                    SubBytePacking.unpack(bytes, bits: bits, signed: signed, count: n, into: $0)
                }
            }
            return codes.map { signed ? Int32($0) : Int32(UInt8(bitPattern: $0)) }
        default:
            switch storage.dtype {
            case .int8: return storage.scalars(as: Int8.self).map { Int32($0) }
            case .uint8: return storage.scalars(as: UInt8.self).map { Int32($0) }
            case .int16: return storage.scalars(as: Int16.self).map { Int32($0) }
            case .uint16: return storage.scalars(as: UInt16.self).map { Int32($0) }
            case .float16: return storage.scalars(as: Float16.self).map { Int32($0.bitPattern) }
            case .bfloat16: return storage.scalars(as: BFloat16.self).map { Int32($0.bitPattern) }
            case .float8e4m3fn: return storage.scalars(as: Float8E4M3FN.self).map { Int32($0.bitPattern) }
            case .float8e5m2: return storage.scalars(as: Float8E5M2.self).map { Int32($0.bitPattern) }
            default: preconditionFailure("storage dtype \(storage.dtype) was validated at init")
            }
        }
    }
}

// MARK: - Scalar math (the definition every loop below uses)

extension QuantParams {
    /// The code of `x` under parameter `parameter` (a bit pattern for FP types).
    ///
    /// Integer types: `q = clamp(round_half_even(x / s) + z, qmin, qmax)` with `x / s` in float32, as ONNX
    /// QuantizeLinear; NaN gives `z` (ONNX leaves it undefined), ±Inf saturate. Binary: `+1` for `x ≥ 0`
    /// (and NaN), else `−1` (zero cannot be represented). Ternary: `±1` beyond `±Δ`, else 0 (NaN → 0).
    /// Log2: see `Log2Mapping` (NaN → 0). FP types: the format's bits of `x / s`.
    public func quantize(_ x: Float, parameter p: Int = 0) -> Int32 {
        let s = scales[p]
        switch type.kind {
        case .integer:
            let range = codeRange!
            return Int32(QuantMath.linearCode(x, s, Float(zeroPoints[p]), Float(range.lowerBound), Float(range.upperBound)))
        case .binary: return QuantMath.binaryCode(x)
        case .ternary: return QuantMath.ternaryCode(x, ternaryThresholds?[p] ?? s / 2)
        case .log2(let bits): return Log2Mapping.code(x / s, levels: Log2Mapping.levels(bits: bits))
        case .float16: return Int32(FloatFormats.float16Bits(x / s))
        case .bfloat16: return Int32(FloatFormats.bfloat16Bits(x / s))
        case .float8e4m3fn: return Int32(FloatFormats.e4m3fnBits(x / s, saturate: saturate))
        case .float8e5m2: return Int32(FloatFormats.e5m2Bits(x / s, saturate: saturate))
        }
    }

    /// The value of `code`: `(q − z) · s` in float32 for integer types (as ONNX DequantizeLinear),
    /// `q · α` for binary/ternary, `sign(q) · s · 2^(|q| − K)` for log2, `float(q) · s` for FP types.
    public func dequantize(_ code: Int32, parameter p: Int = 0) -> Float {
        let s = scales[p]
        switch type.kind {
        case .integer: return (Float(code) - Float(zeroPoints[p])) * s
        case .binary, .ternary: return Float(code) * s
        case .log2(let bits): return QuantMath.log2Value(code, s, levels: Log2Mapping.levels(bits: bits))
        case .float16: return FloatFormats.float16Value(UInt16(truncatingIfNeeded: code)) * s
        case .bfloat16: return FloatFormats.bfloat16Value(UInt16(truncatingIfNeeded: code)) * s
        case .float8e4m3fn: return FloatFormats.e4m3fnValue(UInt8(truncatingIfNeeded: code)) * s
        case .float8e5m2: return FloatFormats.e5m2Value(UInt8(truncatingIfNeeded: code)) * s
        }
    }

    /// `dequantize(quantize(x))`, in float.
    public func fakeQuantize(_ x: Float, parameter p: Int = 0) -> Float {
        dequantize(quantize(x, parameter: p), parameter: p)
    }
}

enum QuantMath {
    /// `clamp(rint(x / s) + z, lo, hi)` as an integer-valued float; NaN → `z`.
    @inline(__always)
    static func linearCode(_ x: Float, _ s: Float, _ z: Float, _ lo: Float, _ hi: Float) -> Float {
        let v = (x / s).rounded(.toNearestOrEven) + z
        if v.isNaN { return z }
        return v < lo ? lo : (v > hi ? hi : v)
    }

    @inline(__always)
    static func binaryCode(_ x: Float) -> Int32 { x < 0 ? -1 : 1 }

    @inline(__always)
    static func ternaryCode(_ x: Float, _ threshold: Float) -> Int32 {
        x > threshold ? 1 : (x < -threshold ? -1 : 0)
    }

    @inline(__always)
    static func log2Value(_ code: Int32, _ s: Float, levels: Int) -> Float {
        if code == 0 { return 0 }
        let magnitude = s * Float(sign: .plus, exponent: Int(code.magnitude) - levels, significand: 1)
        return code < 0 ? -magnitude : magnitude
    }
}

// MARK: - Tensor loops

/// One element-wise step of a quantization loop. Each conformer is a small struct specialised into the
/// loop by the generic `mapElements`, so the loop body has no dynamic dispatch or per-element switch.
protocol ElementMap {
    associatedtype Input
    associatedtype Output
    func apply(_ x: Input, _ parameter: Int) -> Output
}

/// Applies `map` to every element, walking the layout's runs so the parameter index is a stride.
@inline(__always)
func mapElements<M: ElementMap>(_ layout: ParameterLayout, _ input: UnsafeBufferPointer<M.Input>,
                                _ output: UnsafeMutableBufferPointer<M.Output>, _ map: M) {
    layout.forEachRun { run in
        var p = run.parameter
        let stride = run.parameterStride
        for i in run.elements {
            output[i] = map.apply(input[i], p)
            p &+= stride
        }
    }
}

/// The per-parameter buffers a loop reads.
struct ParameterBuffers {
    let scales: UnsafeBufferPointer<Float>
    let zeros: UnsafeBufferPointer<Float>
    let thresholds: UnsafeBufferPointer<Float>
    let lo: Float, hi: Float, levels: Int, saturate: Bool
}

struct LinearQuantize<Code: FixedWidthInteger>: ElementMap {
    let b: ParameterBuffers
    @inline(__always) func apply(_ x: Float, _ p: Int) -> Code {
        Code(truncatingIfNeeded: Int32(QuantMath.linearCode(x, b.scales[p], b.zeros[p], b.lo, b.hi)))
    }
}

struct LinearFakeQuantize: ElementMap {
    let b: ParameterBuffers
    @inline(__always) func apply(_ x: Float, _ p: Int) -> Float {
        (QuantMath.linearCode(x, b.scales[p], b.zeros[p], b.lo, b.hi) - b.zeros[p]) * b.scales[p]
    }
}

struct LinearDequantize<Code: BinaryInteger>: ElementMap {
    let b: ParameterBuffers
    @inline(__always) func apply(_ q: Code, _ p: Int) -> Float { (Float(q) - b.zeros[p]) * b.scales[p] }
}

/// A non-affine code family (binary, ternary, log2): code and value of one element.
protocol LowBitCoding {
    static func code(_ x: Float, _ p: Int, _ b: ParameterBuffers) -> Int8
    static func value(_ q: Int8, _ p: Int, _ b: ParameterBuffers) -> Float
}

enum BinaryCoding: LowBitCoding {
    @inline(__always) static func code(_ x: Float, _ p: Int, _ b: ParameterBuffers) -> Int8 {
        Int8(truncatingIfNeeded: QuantMath.binaryCode(x))
    }
    @inline(__always) static func value(_ q: Int8, _ p: Int, _ b: ParameterBuffers) -> Float { Float(q) * b.scales[p] }
}

enum TernaryCoding: LowBitCoding {
    @inline(__always) static func code(_ x: Float, _ p: Int, _ b: ParameterBuffers) -> Int8 {
        Int8(truncatingIfNeeded: QuantMath.ternaryCode(x, b.thresholds[p]))
    }
    @inline(__always) static func value(_ q: Int8, _ p: Int, _ b: ParameterBuffers) -> Float { Float(q) * b.scales[p] }
}

enum Log2Coding: LowBitCoding {
    @inline(__always) static func code(_ x: Float, _ p: Int, _ b: ParameterBuffers) -> Int8 {
        Int8(truncatingIfNeeded: Log2Mapping.code(x / b.scales[p], levels: b.levels))
    }
    @inline(__always) static func value(_ q: Int8, _ p: Int, _ b: ParameterBuffers) -> Float {
        QuantMath.log2Value(Int32(q), b.scales[p], levels: b.levels)
    }
}

struct LowBitQuantize<C: LowBitCoding>: ElementMap {
    let b: ParameterBuffers
    @inline(__always) func apply(_ x: Float, _ p: Int) -> Int8 { C.code(x, p, b) }
}

struct LowBitDequantize<C: LowBitCoding>: ElementMap {
    let b: ParameterBuffers
    @inline(__always) func apply(_ q: Int8, _ p: Int) -> Float { C.value(q, p, b) }
}

struct LowBitFakeQuantize<C: LowBitCoding>: ElementMap {
    let b: ParameterBuffers
    @inline(__always) func apply(_ x: Float, _ p: Int) -> Float { C.value(C.code(x, p, b), p, b) }
}

/// A floating-point storage format: encode a float32, decode back.
protocol FloatCoding {
    associatedtype Storage: TensorScalar
    static func encode(_ x: Float, saturate: Bool) -> Storage
    static func decode(_ q: Storage) -> Float
}

enum Float16Coding: FloatCoding {
    @inline(__always) static func encode(_ x: Float, saturate: Bool) -> Float16 { Float16(x) }
    @inline(__always) static func decode(_ q: Float16) -> Float { Float(q) }
}

enum BFloat16Coding: FloatCoding {
    @inline(__always) static func encode(_ x: Float, saturate: Bool) -> BFloat16 {
        BFloat16(bitPattern: FloatFormats.bfloat16Bits(x))
    }
    @inline(__always) static func decode(_ q: BFloat16) -> Float { FloatFormats.bfloat16Value(q.bitPattern) }
}

enum E4M3FNCoding: FloatCoding {
    @inline(__always) static func encode(_ x: Float, saturate: Bool) -> Float8E4M3FN {
        Float8E4M3FN(bitPattern: FloatFormats.e4m3fnBits(x, saturate: saturate))
    }
    @inline(__always) static func decode(_ q: Float8E4M3FN) -> Float { FloatFormats.e4m3fnValue(q.bitPattern) }
}

enum E5M2Coding: FloatCoding {
    @inline(__always) static func encode(_ x: Float, saturate: Bool) -> Float8E5M2 {
        Float8E5M2(bitPattern: FloatFormats.e5m2Bits(x, saturate: saturate))
    }
    @inline(__always) static func decode(_ q: Float8E5M2) -> Float { FloatFormats.e5m2Value(q.bitPattern) }
}

struct FloatQuantize<C: FloatCoding>: ElementMap {
    let b: ParameterBuffers
    @inline(__always) func apply(_ x: Float, _ p: Int) -> C.Storage { C.encode(x / b.scales[p], saturate: b.saturate) }
}

struct FloatDequantize<C: FloatCoding>: ElementMap {
    let b: ParameterBuffers
    @inline(__always) func apply(_ q: C.Storage, _ p: Int) -> Float { C.decode(q) * b.scales[p] }
}

struct FloatFakeQuantize<C: FloatCoding>: ElementMap {
    let b: ParameterBuffers
    @inline(__always) func apply(_ x: Float, _ p: Int) -> Float {
        C.decode(C.encode(x / b.scales[p], saturate: b.saturate)) * b.scales[p]
    }
}

extension QuantParams {
    /// Runs `body` with the parameters as buffers (zero points as floats, ternary thresholds filled in).
    func withBuffers<R>(_ body: (ParameterBuffers) throws -> R) rethrows -> R {
        let zeros = zeroPoints.map { Float($0) }
        let thresholds = ternaryThresholds ?? scales.map { $0 / 2 }
        var levels = 0
        if case .log2(let bits) = type.kind { levels = Log2Mapping.levels(bits: bits) }
        let lo = Float(codeRange?.lowerBound ?? 0), hi = Float(codeRange?.upperBound ?? 0)
        return try scales.withUnsafeBufferPointer { s in
            try zeros.withUnsafeBufferPointer { z in
                try thresholds.withUnsafeBufferPointer { t in
                    try body(ParameterBuffers(scales: s, zeros: z, thresholds: t, lo: lo, hi: hi,
                                              levels: levels, saturate: saturate))
                }
            }
        }
    }
}

extension Tensor {
    /// Quantizes this tensor (float32; float16, bfloat16 and float64 are converted to float32 first).
    ///
    /// Integer types follow ONNX QuantizeLinear bit for bit (`x / s` in float32, round half to even, add
    /// the zero point, clamp to `params.codeRange`); FP8 follows it with `saturate` as in the parameters.
    /// Throws when the parameters do not fit the shape or the dtype is not a float type.
    public func quantized(with params: QuantParams) throws -> QuantizedTensor {
        let layout = try params.layout(for: shape)
        let storage = try withFloatBuffer { x in try quantizeStorage(x, layout: layout, params: params) }
        return try QuantizedTensor(storage: storage, shape: shape, params: params)
    }

    /// `dequantize(quantize(x))` in one pass, as float32; equal to `quantized(with:).dequantized()`.
    public func fakeQuantized(with params: QuantParams) throws -> Tensor {
        let layout = try params.layout(for: shape)
        var result = try Tensor(zeros: .float32, shape: shape)
        try withFloatBuffer { x in
            result.withUnsafeMutableBufferPointer(as: Float.self) { out in
                params.withBuffers { b in
                    switch params.type.kind {
                    case .integer: mapElements(layout, x, out, LinearFakeQuantize(b: b))
                    case .binary: mapElements(layout, x, out, LowBitFakeQuantize<BinaryCoding>(b: b))
                    case .ternary: mapElements(layout, x, out, LowBitFakeQuantize<TernaryCoding>(b: b))
                    case .log2: mapElements(layout, x, out, LowBitFakeQuantize<Log2Coding>(b: b))
                    case .float16: mapElements(layout, x, out, FloatFakeQuantize<Float16Coding>(b: b))
                    case .bfloat16: mapElements(layout, x, out, FloatFakeQuantize<BFloat16Coding>(b: b))
                    case .float8e4m3fn: mapElements(layout, x, out, FloatFakeQuantize<E4M3FNCoding>(b: b))
                    case .float8e5m2: mapElements(layout, x, out, FloatFakeQuantize<E5M2Coding>(b: b))
                    }
                }
            }
        }
        return result
    }

    /// Runs `body` on the elements as float32, converting other float dtypes into a temporary array.
    func withFloatBuffer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R {
        if dtype == .float32 { return try withUnsafeBufferPointer(as: Float.self, body) }
        let values = try floatValues(self)
        return try values.withUnsafeBufferPointer(body)
    }
}

extension QuantizedTensor {
    /// The float32 values the codes stand for (ONNX DequantizeLinear for integer and FP8 types).
    public func dequantized() throws -> Tensor {
        let layout = try params.layout(for: shape)
        var result = try Tensor(zeros: .float32, shape: shape)
        let params = self.params, storage = self.storage
        result.withUnsafeMutableBufferPointer(as: Float.self) { out in
            params.withBuffers { b in
                switch params.type.kind {
                case .integer(let bits, let signed) where bits == 2 || bits == 4:
                    let n = layout.elementCount
                    if signed {
                        var codes = [Int8](repeating: 0, count: n)
                        codes.withUnsafeMutableBufferPointer { codes in
                            storage.withUnsafeBytes { SubBytePacking.unpack($0, bits: bits, signed: true, count: n, into: codes) }
                            mapElements(layout, UnsafeBufferPointer(codes), out, LinearDequantize<Int8>(b: b))
                        }
                    } else {
                        var codes = [UInt8](repeating: 0, count: n)
                        codes.withUnsafeMutableBufferPointer { codes in
                            storage.withUnsafeBytes { SubBytePacking.unpack($0, bits: bits, signed: false, count: n, into: codes) }
                            mapElements(layout, UnsafeBufferPointer(codes), out, LinearDequantize<UInt8>(b: b))
                        }
                    }
                case .integer:
                    switch storage.dtype {
                    case .int8: storage.withUnsafeBufferPointer(as: Int8.self) { mapElements(layout, $0, out, LinearDequantize<Int8>(b: b)) }
                    case .uint8: storage.withUnsafeBufferPointer(as: UInt8.self) { mapElements(layout, $0, out, LinearDequantize<UInt8>(b: b)) }
                    case .int16: storage.withUnsafeBufferPointer(as: Int16.self) { mapElements(layout, $0, out, LinearDequantize<Int16>(b: b)) }
                    default: storage.withUnsafeBufferPointer(as: UInt16.self) { mapElements(layout, $0, out, LinearDequantize<UInt16>(b: b)) }
                    }
                case .binary:
                    storage.withUnsafeBufferPointer(as: Int8.self) { mapElements(layout, $0, out, LowBitDequantize<BinaryCoding>(b: b)) }
                case .ternary:
                    storage.withUnsafeBufferPointer(as: Int8.self) { mapElements(layout, $0, out, LowBitDequantize<TernaryCoding>(b: b)) }
                case .log2:
                    storage.withUnsafeBufferPointer(as: Int8.self) { mapElements(layout, $0, out, LowBitDequantize<Log2Coding>(b: b)) }
                case .float16:
                    storage.withUnsafeBufferPointer(as: Float16.self) { mapElements(layout, $0, out, FloatDequantize<Float16Coding>(b: b)) }
                case .bfloat16:
                    storage.withUnsafeBufferPointer(as: BFloat16.self) { mapElements(layout, $0, out, FloatDequantize<BFloat16Coding>(b: b)) }
                case .float8e4m3fn:
                    storage.withUnsafeBufferPointer(as: Float8E4M3FN.self) { mapElements(layout, $0, out, FloatDequantize<E4M3FNCoding>(b: b)) }
                case .float8e5m2:
                    storage.withUnsafeBufferPointer(as: Float8E5M2.self) { mapElements(layout, $0, out, FloatDequantize<E5M2Coding>(b: b)) }
                }
            }
        }
        return result
    }
}

func quantizeStorage(_ x: UnsafeBufferPointer<Float>, layout: ParameterLayout, params: QuantParams) throws -> Tensor {
    let type = params.type
    return try params.withBuffers { b in
        switch type.kind {
        case .integer(let bits, _) where bits == 2 || bits == 4:
            var codes = [Int8](repeating: 0, count: layout.elementCount)
            codes.withUnsafeMutableBufferPointer { mapElements(layout, x, $0, LinearQuantize<Int8>(b: b)) }
            let storageShape = bits == 2 ? [SubBytePacking.byteCount(elements: layout.elementCount, bits: 2)] : layout.shape
            var storage = try Tensor(zeros: type.storageDType, shape: storageShape)
            storage.withUnsafeMutableBytes { bytes in
                codes.withUnsafeBufferPointer { SubBytePacking.pack($0, bits: bits, into: bytes) }
            }
            return storage
        default:
            var storage = try Tensor(zeros: type.storageDType, shape: layout.shape)
            switch type.kind {
            case .integer:
                switch type.storageDType {
                case .int8: storage.withUnsafeMutableBufferPointer(as: Int8.self) { mapElements(layout, x, $0, LinearQuantize<Int8>(b: b)) }
                case .uint8: storage.withUnsafeMutableBufferPointer(as: UInt8.self) { mapElements(layout, x, $0, LinearQuantize<UInt8>(b: b)) }
                case .int16: storage.withUnsafeMutableBufferPointer(as: Int16.self) { mapElements(layout, x, $0, LinearQuantize<Int16>(b: b)) }
                default: storage.withUnsafeMutableBufferPointer(as: UInt16.self) { mapElements(layout, x, $0, LinearQuantize<UInt16>(b: b)) }
                }
            case .binary:
                storage.withUnsafeMutableBufferPointer(as: Int8.self) { mapElements(layout, x, $0, LowBitQuantize<BinaryCoding>(b: b)) }
            case .ternary:
                storage.withUnsafeMutableBufferPointer(as: Int8.self) { mapElements(layout, x, $0, LowBitQuantize<TernaryCoding>(b: b)) }
            case .log2:
                storage.withUnsafeMutableBufferPointer(as: Int8.self) { mapElements(layout, x, $0, LowBitQuantize<Log2Coding>(b: b)) }
            case .float16:
                storage.withUnsafeMutableBufferPointer(as: Float16.self) { mapElements(layout, x, $0, FloatQuantize<Float16Coding>(b: b)) }
            case .bfloat16:
                storage.withUnsafeMutableBufferPointer(as: BFloat16.self) { mapElements(layout, x, $0, FloatQuantize<BFloat16Coding>(b: b)) }
            case .float8e4m3fn:
                storage.withUnsafeMutableBufferPointer(as: Float8E4M3FN.self) { mapElements(layout, x, $0, FloatQuantize<E4M3FNCoding>(b: b)) }
            case .float8e5m2:
                storage.withUnsafeMutableBufferPointer(as: Float8E5M2.self) { mapElements(layout, x, $0, FloatQuantize<E5M2Coding>(b: b)) }
            }
            return storage
        }
    }
}
