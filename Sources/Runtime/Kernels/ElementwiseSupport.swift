#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Tensors

// Shared machinery of the elementwise, activation, comparison and reduction kernels: element protocols
// resolved once per run, a broadcast layout whose inner loop is as long as the data allows, and
// chunked, thread-count-independent parallel loops.

// MARK: - Element protocols

/// A scalar the arithmetic kernels work on directly: float32, float64 and the eight integer types.
/// float16/bfloat16 are widened to float32 around a kernel (see `ReducedPrecision`).
///
/// Integer arithmetic wraps (two's complement, what ONNX Runtime's int kernels produce in practice)
/// instead of trapping: ONNX defines no overflow behaviour, and a trap would crash the process on bad data.
protocol ElementwiseNumeric: TensorScalar, Comparable {
    static var zeroValue: Self { get }
    static var oneValue: Self { get }
    /// The smallest value (−inf for floats): the identity of max.
    static var lowestValue: Self { get }
    /// The largest value (+inf for floats): the identity of min.
    static var highestValue: Self { get }
    static var isFloatingPointElement: Bool { get }
    static var isSignedElement: Bool { get }
    static func add(_ a: Self, _ b: Self) -> Self
    static func subtract(_ a: Self, _ b: Self) -> Self
    static func multiply(_ a: Self, _ b: Self) -> Self
    /// `a / b`; integers truncate toward zero. Callers ensure an integer `b` is not zero.
    static func divide(_ a: Self, _ b: Self) -> Self
    static func negate(_ a: Self) -> Self
    static func magnitude(_ a: Self) -> Self
    /// Larger of the two; NaN wins, as numpy's `maximum` does.
    static func maximum(_ a: Self, _ b: Self) -> Self
    /// Smaller of the two; NaN wins, as numpy's `minimum` does.
    static func minimum(_ a: Self, _ b: Self) -> Self
    var isNaNElement: Bool { get }
    var doubleValue: Double { get }
    /// `value` converted when it is representable (integers truncate toward zero); nil for NaN, ±inf
    /// or out-of-range values bound for an integer type.
    static func exactlyConverted(_ value: Double) -> Self?
}

extension ElementwiseNumeric where Self: FixedWidthInteger {
    static var zeroValue: Self { 0 }
    static var oneValue: Self { 1 }
    static var lowestValue: Self { .min }
    static var highestValue: Self { .max }
    static var isFloatingPointElement: Bool { false }
    static var isSignedElement: Bool { Self.isSigned }
    @inline(__always) static func add(_ a: Self, _ b: Self) -> Self { a &+ b }
    @inline(__always) static func subtract(_ a: Self, _ b: Self) -> Self { a &- b }
    @inline(__always) static func multiply(_ a: Self, _ b: Self) -> Self { a &* b }
    /// Wraps `min / -1` to `min` instead of trapping.
    @inline(__always) static func divide(_ a: Self, _ b: Self) -> Self {
        a.dividedReportingOverflow(by: b).partialValue
    }
    @inline(__always) static func negate(_ a: Self) -> Self { 0 &- a }
    @inline(__always) static func magnitude(_ a: Self) -> Self { a < 0 ? 0 &- a : a }
    @inline(__always) static func maximum(_ a: Self, _ b: Self) -> Self { a < b ? b : a }
    @inline(__always) static func minimum(_ a: Self, _ b: Self) -> Self { b < a ? b : a }
    var isNaNElement: Bool { false }
    var doubleValue: Double { Double(self) }
    static func exactlyConverted(_ value: Double) -> Self? {
        guard value.isFinite else { return nil }
        return Self(exactly: value.rounded(.towardZero))
    }
}

extension ElementwiseNumeric where Self: BinaryFloatingPoint {
    static var zeroValue: Self { 0 }
    static var oneValue: Self { 1 }
    static var lowestValue: Self { -.infinity }
    static var highestValue: Self { .infinity }
    static var isFloatingPointElement: Bool { true }
    static var isSignedElement: Bool { true }
    @inline(__always) static func add(_ a: Self, _ b: Self) -> Self { a + b }
    @inline(__always) static func subtract(_ a: Self, _ b: Self) -> Self { a - b }
    @inline(__always) static func multiply(_ a: Self, _ b: Self) -> Self { a * b }
    @inline(__always) static func divide(_ a: Self, _ b: Self) -> Self { a / b }
    @inline(__always) static func negate(_ a: Self) -> Self { -a }
    @inline(__always) static func magnitude(_ a: Self) -> Self { Swift.abs(a) }
    // Written so that a NaN in either operand comes out, without a separate isNaN branch.
    @inline(__always) static func maximum(_ a: Self, _ b: Self) -> Self { (a < b || b.isNaN) ? b : a }
    @inline(__always) static func minimum(_ a: Self, _ b: Self) -> Self { (b < a || b.isNaN) ? b : a }
    var isNaNElement: Bool { isNaN }
    static func exactlyConverted(_ value: Double) -> Self? { Self(value) }
}

extension Float: ElementwiseNumeric { var doubleValue: Double { Double(self) } }
extension Double: ElementwiseNumeric { var doubleValue: Double { self } }
extension Int8: ElementwiseNumeric {}
extension Int16: ElementwiseNumeric {}
extension Int32: ElementwiseNumeric {}
extension Int64: ElementwiseNumeric {}
extension UInt8: ElementwiseNumeric {}
extension UInt16: ElementwiseNumeric {}
extension UInt32: ElementwiseNumeric {}
extension UInt64: ElementwiseNumeric {}

/// float32 or float64, with the libm functions the float kernels need.
protocol ElementwiseFloat: ElementwiseNumeric, BinaryFloatingPoint {
    static func exponential(_ x: Self) -> Self
    static func exponentialMinusOne(_ x: Self) -> Self
    static func naturalLog(_ x: Self) -> Self
    static func logOnePlus(_ x: Self) -> Self
    static func errorFunction(_ x: Self) -> Self
    static func hyperbolicTangent(_ x: Self) -> Self
    static func power(_ x: Self, _ y: Self) -> Self
    /// eˣ by a branch-free formula that loops can vectorize (float32: within 1 ulp; float64: libm).
    static func vectorizableExponential(_ x: Self) -> Self
}

extension Float: ElementwiseFloat {
    @inline(__always) static func exponential(_ x: Float) -> Float { expf(x) }
    @inline(__always) static func exponentialMinusOne(_ x: Float) -> Float { expm1f(x) }
    @inline(__always) static func naturalLog(_ x: Float) -> Float { logf(x) }
    @inline(__always) static func logOnePlus(_ x: Float) -> Float { log1pf(x) }
    @inline(__always) static func errorFunction(_ x: Float) -> Float { erff(x) }
    @inline(__always) static func hyperbolicTangent(_ x: Float) -> Float { tanhf(x) }
    @inline(__always) static func power(_ x: Float, _ y: Float) -> Float { powf(x, y) }

    /// eˣ as 2ⁿ · eʳ with n = round(x / ln 2) and |r| ≤ ln 2 / 2, eʳ from Cephes' degree-6 polynomial and
    /// ln 2 split in two for an exact reduction. Measured within 1 ulp of the exact value over
    /// [−103, 88.7]; NaN stays NaN, +inf/large x give +inf, and results below the subnormal range 0.
    /// Only selects and arithmetic, so that a loop over it vectorizes (libm's expf is a call per element).
    @inline(__always) static func vectorizableExponential(_ x: Float) -> Float {
        // Clamping keeps 2ⁿ within two normal factors; comparisons are false for NaN, which passes through.
        var clamped = x < -104 ? -104 : x
        clamped = clamped > 89 ? 89 : clamped
        // Adding 1.5·2²³ rounds to an integer in the low mantissa bits (round to nearest even), without
        // SSE4.1's roundps and without a trapping Float → Int conversion.
        let magic: Float = 12_582_912
        let shifted = clamped * 1.442_695_040_888_963_4 + magic
        let n = shifted - magic
        let r = (clamped - n * 0.693_359_375) - n * -2.121_944_4e-4
        var p: Float = 1.987_569_150_0e-4
        p = p * r + 1.398_199_950_7e-3
        p = p * r + 8.333_451_907_3e-3
        p = p * r + 4.166_579_589_4e-2
        p = p * r + 1.666_666_545_9e-1
        p = p * r + 5.000_000_120_1e-1
        p = p * (r * r) + r + 1
        // 2ⁿ as two factors so that n down to −150 (subnormal results) and up to 129 stay representable.
        let k = Int32(bitPattern: shifted.bitPattern) &- 0x4B40_0000
        let k1 = k >> 1, k2 = k &- k1
        let scale1 = Float(bitPattern: UInt32(bitPattern: (k1 &+ 127) << 23))
        let scale2 = Float(bitPattern: UInt32(bitPattern: (k2 &+ 127) << 23))
        return p * scale1 * scale2
    }
}

extension Double: ElementwiseFloat {
    @inline(__always) static func exponential(_ x: Double) -> Double { exp(x) }
    @inline(__always) static func exponentialMinusOne(_ x: Double) -> Double { expm1(x) }
    @inline(__always) static func naturalLog(_ x: Double) -> Double { log(x) }
    @inline(__always) static func logOnePlus(_ x: Double) -> Double { log1p(x) }
    @inline(__always) static func errorFunction(_ x: Double) -> Double { erf(x) }
    @inline(__always) static func hyperbolicTangent(_ x: Double) -> Double { tanh(x) }
    @inline(__always) static func power(_ x: Double, _ y: Double) -> Double { pow(x, y) }
    @inline(__always) static func vectorizableExponential(_ x: Double) -> Double { exp(x) }
}

// MARK: - Dtype dispatch

/// Code generic over the numeric element types; `dispatch` calls `visit` with the Swift type of a dtype,
/// so the dtype is resolved once and the loops inside `visit` are specialised.
protocol NumericVisitor {
    associatedtype Result
    func visit<T: ElementwiseNumeric>(_ type: T.Type) throws -> Result
}

extension NumericVisitor {
    /// `visit` for `dtype`; nil when `dtype` is not float32/float64/an 8…64-bit integer.
    func dispatch(_ dtype: DType) throws -> Result? {
        switch dtype {
        case .float32: return try visit(Float.self)
        case .float64: return try visit(Double.self)
        case .int8: return try visit(Int8.self)
        case .int16: return try visit(Int16.self)
        case .int32: return try visit(Int32.self)
        case .int64: return try visit(Int64.self)
        case .uint8: return try visit(UInt8.self)
        case .uint16: return try visit(UInt16.self)
        case .uint32: return try visit(UInt32.self)
        case .uint64: return try visit(UInt64.self)
        default: return nil
        }
    }
}

/// Code generic over float32/float64.
protocol FloatVisitor {
    associatedtype Result
    func visit<T: ElementwiseFloat>(_ type: T.Type) throws -> Result
}

extension FloatVisitor {
    func dispatch(_ dtype: DType) throws -> Result? {
        switch dtype {
        case .float32: return try visit(Float.self)
        case .float64: return try visit(Double.self)
        default: return nil
        }
    }
}

// MARK: - Broadcast layout

/// Several operands broadcast (numpy rules) to one output shape, with output axes merged wherever every
/// operand steps through them the same way. The innermost merged axis is then as long as the data
/// allows, and along it each operand's stride is 1 (it varies) or 0 (it is broadcast), so the element
/// loops are plain contiguous or scalar loops.
struct BroadcastLayout {
    /// The broadcast output shape, unmerged.
    let outputShape: [Int]
    /// Output element count.
    let count: Int
    /// Merged output dimensions (at least one).
    let dims: [Int]
    /// Per operand, its stride along each merged dimension (0 where broadcast).
    let strides: [[Int]]

    /// The broadcast of `shapes`; throws `KernelError.invalid` naming the shapes when they do not
    /// broadcast together.
    init(shapes: [[Int]]) throws {
        var output: [Int] = []
        for shape in shapes {
            guard let merged = Shape.broadcast(output, shape) else {
                let listed = shapes.map { "\($0)" }.joined(separator: ", ")
                throw KernelError.invalid("shapes \(listed) cannot be broadcast together")
            }
            output = merged
        }
        try self.init(outputShape: output, shapes: shapes)
    }

    /// Operands `shapes`, each of which must broadcast to `outputShape`.
    init(outputShape: [Int], shapes: [[Int]]) throws {
        self.outputShape = outputShape
        self.count = try Shape.elementCount(outputShape)
        let full = shapes.map { broadcastStrides($0, to: outputShape) }
        // Size-1 output axes never advance; drop them, then merge neighbours that every operand
        // walks contiguously (stride[i] == stride[i+1] * dim[i+1], which also holds for 0 strides).
        var dims: [Int] = []
        var strides = [[Int]](repeating: [], count: shapes.count)
        for axis in outputShape.indices where outputShape[axis] != 1 {
            let dim = outputShape[axis]
            if let last = dims.last,
               (0..<shapes.count).allSatisfy({ strides[$0].last! == full[$0][axis] * dim }) {
                dims[dims.count - 1] = last * dim
                for k in 0..<shapes.count { strides[k][strides[k].count - 1] = full[k][axis] }
            } else {
                dims.append(dim)
                for k in 0..<shapes.count { strides[k].append(full[k][axis]) }
            }
        }
        if dims.isEmpty {
            dims = [1]
            strides = strides.map { _ in [0] }
        }
        self.dims = dims
        self.strides = strides
    }

    /// Length of the innermost merged axis.
    var innerCount: Int { dims[dims.count - 1] }

    /// Stride of operand `k` along the innermost axis: 1 or 0.
    func innerStride(_ k: Int) -> Int { strides[k][dims.count - 1] }

    /// Visits output elements `range` as contiguous segments, each within one inner row. `body` gets the
    /// output offset, each operand's offset (in `offsets`) and the segment length.
    func forEachSegment(
        in range: Range<Int>,
        _ body: (_ outputOffset: Int, _ offsets: UnsafeMutableBufferPointer<Int>, _ length: Int) -> Void
    ) {
        guard !range.isEmpty else { return }
        let rank = dims.count
        let operands = strides.count
        let inner = dims[rank - 1]
        withUnsafeTemporaryAllocation(of: Int.self, capacity: rank + 2 * operands) { scratch in
            let index = UnsafeMutableBufferPointer(rebasing: scratch[0..<rank])
            let rowBase = UnsafeMutableBufferPointer(rebasing: scratch[rank..<(rank + operands)])
            let offsets = UnsafeMutableBufferPointer(rebasing: scratch[(rank + operands)...])
            // Decompose the start into an index once per call.
            var remainder = range.lowerBound
            for axis in stride(from: rank - 1, through: 0, by: -1) {
                index[axis] = remainder % dims[axis]
                remainder /= dims[axis]
            }
            for k in 0..<operands {
                var base = 0
                for axis in 0..<(rank - 1) { base += index[axis] * strides[k][axis] }
                rowBase[k] = base
            }
            var position = range.lowerBound
            var column = index[rank - 1]
            while position < range.upperBound {
                let length = min(inner - column, range.upperBound - position)
                for k in 0..<operands { offsets[k] = rowBase[k] + column * strides[k][rank - 1] }
                body(position, offsets, length)
                position += length
                column = 0
                // Next row: advance the outer index like an odometer.
                var axis = rank - 2
                while axis >= 0 {
                    index[axis] += 1
                    for k in 0..<operands { rowBase[k] += strides[k][axis] }
                    if index[axis] < dims[axis] { break }
                    for k in 0..<operands { rowBase[k] -= strides[k][axis] * dims[axis] }
                    index[axis] = 0
                    axis -= 1
                }
            }
        }
    }
}

/// `tensor` broadcast to `shape` (which it must broadcast to) as a new contiguous tensor of any
/// whole-byte dtype.
func materializedBroadcast(_ tensor: Tensor, to shape: [Int]) throws -> Tensor {
    guard Shape.broadcast(shape, tensor.shape) == shape else {
        throw KernelError.invalid("shape \(tensor.shape) cannot be broadcast to \(shape)")
    }
    if tensor.shape == shape { return tensor }
    let layout = try BroadcastLayout(outputShape: shape, shapes: [tensor.shape])
    var output = try Tensor(zeros: tensor.dtype, shape: shape)
    func copy<Word: FixedWidthInteger>(_: Word.Type) {
        tensor.withUnsafeBytes { sourceBytes in
            output.withUnsafeMutableBytes { targetBytes in
                let source = sourceBytes.baseAddress!.assumingMemoryBound(to: Word.self)
                let target = targetBytes.baseAddress!.assumingMemoryBound(to: Word.self)
                let step = layout.innerStride(0)
                layout.forEachSegment(in: 0..<layout.count) { start, offsets, length in
                    for i in 0..<length { target[start + i] = source[offsets[0] + i * step] }
                }
            }
        }
    }
    switch tensor.dtype.bitWidth {
    case 8: copy(UInt8.self)
    case 16: copy(UInt16.self)
    case 32: copy(UInt32.self)
    case 64: copy(UInt64.self)
    default: throw KernelError.unsupported("broadcasting \(tensor.dtype) tensors")
    }
    return output
}

// MARK: - Parallel loops

enum ElementwiseParallel {
    /// Elements below which a cheap elementwise loop runs on one thread. With `Parallel`'s polling
    /// workers a region starts in well under a microsecond, so halves of a few microseconds pay.
    static let cheapGrain = 1 << 14
    /// Elements below which a loop calling libm per element runs on one thread.
    static let transcendentalGrain = 1 << 12

    /// Runs `body` over `0..<count` split into contiguous ranges of at least `grain` elements, one per
    /// thread. Each element is computed the same way whatever the split, so results do not depend on
    /// the thread count.
    static func forRanges(_ count: Int, grain: Int, context: ExecutionContext, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        if count < 2 * grain || context.threadCount == 1 {
            body(0..<count)
            return
        }
        Parallel.forRanges(count, threads: context.threadCount, grain: grain, body)
    }

    /// A grain, in rows, for `forRanges` over rows of `rowLength` elements: about `elements` elements per
    /// chunk, or every row in one chunk when the whole tensor is smaller than that.
    static func rowGrain(rows: Int, rowLength: Int, elements: Int = cheapGrain) -> Int {
        rows * rowLength > elements ? max(1, elements / max(rowLength, 1)) : max(rows, 1)
    }
}

// MARK: - Mapping loops

/// A function of one element, applied by `mapUnary`.
protocol UnaryMapping {
    associatedtype Input: TensorScalar
    associatedtype Output: TensorScalar
    func apply(_ x: Input) -> Output
}

/// A function of two elements, applied by `mapBinary` with broadcasting.
protocol BinaryMapping {
    associatedtype Left: TensorScalar
    associatedtype Right: TensorScalar
    associatedtype Output: TensorScalar
    func apply(_ a: Left, _ b: Right) -> Output
}

/// `mapping` applied to every element of `input`.
func mapUnary<M: UnaryMapping>(_ input: Tensor, _ mapping: M, grain: Int = ElementwiseParallel.cheapGrain,
                               context: ExecutionContext) throws -> Tensor {
    let output = try context.output(M.Output.dtype, shape: input.shape)
    input.withUnsafeBufferPointer(as: M.Input.self) { source in
        guard let x = source.baseAddress else { return }
        let y = output.pointer(as: M.Output.self)
        ElementwiseParallel.forRanges(source.count, grain: grain, context: context) { range in
            for i in range { y[i] = mapping.apply(x[i]) }
        }
    }
    return output.tensor
}

/// `mapping` applied elementwise to `a` and `b` broadcast together (numpy rules).
///
/// - Parameter outputShape: when given, the broadcast must produce exactly this shape (unidirectional
///   broadcasting); otherwise the multidirectional broadcast of both shapes.
func mapBinary<M: BinaryMapping>(_ a: Tensor, _ b: Tensor, _ mapping: M, outputShape: [Int]? = nil,
                                 grain: Int = ElementwiseParallel.cheapGrain,
                                 context: ExecutionContext) throws -> Tensor {
    let layout = try BroadcastLayout(shapes: [a.shape, b.shape])
    if let outputShape, layout.outputShape != outputShape {
        throw KernelError.invalid("shape \(b.shape) cannot be broadcast to \(outputShape)")
    }
    let output = try context.output(M.Output.dtype, shape: layout.outputShape)
    let stepA = layout.innerStride(0), stepB = layout.innerStride(1)
    a.withUnsafeBufferPointer(as: M.Left.self) { left in
        b.withUnsafeBufferPointer(as: M.Right.self) { right in
            guard let x = left.baseAddress, let y = right.baseAddress, layout.count > 0 else { return }
            let z = output.pointer(as: M.Output.self)
            ElementwiseParallel.forRanges(layout.count, grain: grain, context: context) { range in
                layout.forEachSegment(in: range) { start, offsets, length in
                    binaryRow(mapping, z + start, x + offsets[0], stepA, y + offsets[1], stepB, length)
                }
            }
        }
    }
    return output.tensor
}

/// One contiguous row of a binary map; a separate loop per stride pattern keeps each vectorizable.
@inline(__always)
func binaryRow<M: BinaryMapping>(
    _ mapping: M, _ z: UnsafeMutablePointer<M.Output>,
    _ x: UnsafePointer<M.Left>, _ stepX: Int, _ y: UnsafePointer<M.Right>, _ stepY: Int, _ length: Int
) {
    switch (stepX, stepY) {
    case (1, 1):
        for i in 0..<length { z[i] = mapping.apply(x[i], y[i]) }
    case (0, 1):
        let scalar = x[0]
        for i in 0..<length { z[i] = mapping.apply(scalar, y[i]) }
    case (1, 0):
        let scalar = y[0]
        for i in 0..<length { z[i] = mapping.apply(x[i], scalar) }
    default:
        let value = mapping.apply(x[0], y[0])
        for i in 0..<length { z[i] = value }
    }
}

// MARK: - Input checks

enum ElementwiseChecks {
    /// Throws unless every present input has the dtype of input 0.
    static func sameDType(_ inputs: [Tensor], opType: String) throws {
        guard let first = inputs.first else { return }
        for (index, tensor) in inputs.enumerated() where tensor.dtype != first.dtype {
            throw KernelError.invalidInput(
                index: index, reason: "\(opType) needs equal dtypes, got \(tensor.dtype) and \(first.dtype)")
        }
    }

    static func unsupported(_ opType: String, _ dtype: DType) -> KernelError {
        .unsupported("\(opType) on \(dtype) tensors")
    }

    /// The single element of a scalar or one-element tensor.
    static func singleElement(_ tensor: Tensor, index: Int, what: String) throws -> Tensor {
        guard tensor.count == 1 else {
            throw KernelError.invalidInput(
                index: index, reason: "\(what) must hold one element, got shape \(tensor.shape)")
        }
        return tensor
    }
}
