import Tensors

// Comparisons (Equal, Greater, Less, GreaterOrEqual, LessOrEqual) with broadcasting and a bool result,
// the logic operators And, Or, Xor, Not, the float tests IsNaN and IsInf, and Where.

/// A comparison of two elements of one numeric type.
protocol ComparisonOperation: Sendable {
    static func compare<T: ElementwiseNumeric>(_ a: T, _ b: T) -> Bool
}

enum EqualComparison: ComparisonOperation {
    @inline(__always) static func compare<T: ElementwiseNumeric>(_ a: T, _ b: T) -> Bool { a == b }
}
enum GreaterComparison: ComparisonOperation {
    @inline(__always) static func compare<T: ElementwiseNumeric>(_ a: T, _ b: T) -> Bool { a > b }
}
enum LessComparison: ComparisonOperation {
    @inline(__always) static func compare<T: ElementwiseNumeric>(_ a: T, _ b: T) -> Bool { a < b }
}
enum GreaterOrEqualComparison: ComparisonOperation {
    @inline(__always) static func compare<T: ElementwiseNumeric>(_ a: T, _ b: T) -> Bool { a >= b }
}
enum LessOrEqualComparison: ComparisonOperation {
    @inline(__always) static func compare<T: ElementwiseNumeric>(_ a: T, _ b: T) -> Bool { a <= b }
}

struct ComparisonMapping<T: ElementwiseNumeric, Operation: ComparisonOperation>: BinaryMapping {
    @inline(__always) func apply(_ a: T, _ b: T) -> Bool { Operation.compare(a, b) }
}

/// Elementwise comparison with broadcasting; bool tensors are accepted when `allowsBool` (Equal).
struct ComparisonKernel<Operation: ComparisonOperation>: Kernel {
    let opType: String
    var allowsBool = false

    struct Visitor: NumericVisitor {
        let a: Tensor, b: Tensor, context: ExecutionContext
        func visit<T: ElementwiseNumeric>(_ type: T.Type) throws -> Tensor {
            try mapBinary(a, b, ComparisonMapping<T, Operation>(), context: context)
        }
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        if let result = try ReducedPrecision.run(inputs, { try run($0, context: context) }) { return result }
        let a = try required(inputs, 0), b = try required(inputs, 1)
        try ElementwiseChecks.sameDType([a, b], opType: opType)
        if a.dtype == .bool && allowsBool {
            return [try mapBinary(a, b, BoolEqualMapping(), context: context)]
        }
        guard let result = try Visitor(a: a, b: b, context: context).dispatch(a.dtype) else {
            throw ElementwiseChecks.unsupported(opType, a.dtype)
        }
        return [result]
    }
}

struct BoolEqualMapping: BinaryMapping {
    @inline(__always) func apply(_ a: Bool, _ b: Bool) -> Bool { a == b }
}

// MARK: - Logic

protocol LogicOperation: Sendable {
    static func apply(_ a: Bool, _ b: Bool) -> Bool
}
enum AndOperation: LogicOperation { @inline(__always) static func apply(_ a: Bool, _ b: Bool) -> Bool { a && b } }
enum OrOperation: LogicOperation { @inline(__always) static func apply(_ a: Bool, _ b: Bool) -> Bool { a || b } }
enum XorOperation: LogicOperation { @inline(__always) static func apply(_ a: Bool, _ b: Bool) -> Bool { a != b } }

struct LogicMapping<Operation: LogicOperation>: BinaryMapping {
    @inline(__always) func apply(_ a: Bool, _ b: Bool) -> Bool { Operation.apply(a, b) }
}

/// And, Or, Xor on bool tensors with broadcasting.
struct LogicKernel<Operation: LogicOperation>: Kernel {
    let opType: String
    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let a = try required(inputs, 0), b = try required(inputs, 1)
        for (index, tensor) in [a, b].enumerated() where tensor.dtype != .bool {
            throw KernelError.invalidInput(index: index, reason: "\(opType) needs bool tensors, got \(tensor.dtype)")
        }
        return [try mapBinary(a, b, LogicMapping<Operation>(), context: context)]
    }
}

struct NotMapping: UnaryMapping {
    @inline(__always) func apply(_ x: Bool) -> Bool { !x }
}

struct NotKernel: Kernel {
    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try required(inputs, 0)
        guard x.dtype == .bool else {
            throw KernelError.invalidInput(index: 0, reason: "Not needs a bool tensor, got \(x.dtype)")
        }
        return [try mapUnary(x, NotMapping(), context: context)]
    }
}

// MARK: - IsNaN, IsInf

struct IsNaNMapping<T: ElementwiseFloat>: UnaryMapping {
    @inline(__always) func apply(_ x: T) -> Bool { x.isNaN }
}

struct IsInfMapping<T: ElementwiseFloat>: UnaryMapping {
    let detectNegative: Bool, detectPositive: Bool
    @inline(__always) func apply(_ x: T) -> Bool {
        (detectPositive && x == .infinity) || (detectNegative && x == -.infinity)
    }
}

/// IsNaN (no attributes) or IsInf (detect_negative, detect_positive) on a float tensor.
struct FloatClassKernel: Kernel {
    /// nil for IsNaN.
    let infinities: (negative: Bool, positive: Bool)?

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        // Widening keeps NaN and infinities, and the bool output is not narrowed back.
        if let result = try ReducedPrecision.run(inputs, { try run($0, context: context) }) { return result }
        let x = try required(inputs, 0)
        struct Visitor: FloatVisitor {
            let x: Tensor, infinities: (negative: Bool, positive: Bool)?, context: ExecutionContext
            func visit<T: ElementwiseFloat>(_ type: T.Type) throws -> Tensor {
                guard let infinities else { return try mapUnary(x, IsNaNMapping<T>(), context: context) }
                return try mapUnary(x, IsInfMapping<T>(detectNegative: infinities.negative,
                                                       detectPositive: infinities.positive), context: context)
            }
        }
        guard let result = try Visitor(x: x, infinities: infinities, context: context).dispatch(x.dtype) else {
            throw ElementwiseChecks.unsupported(infinities == nil ? "IsNaN" : "IsInf", x.dtype)
        }
        return [result]
    }
}

// MARK: - Where

/// `condition ? X : Y` elementwise, all three broadcast together. Works on any dtype of whole bytes by
/// moving elements as same-width unsigned integers.
struct WhereKernel: Kernel {
    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let condition = try required(inputs, 0), x = try required(inputs, 1), y = try required(inputs, 2)
        guard condition.dtype == .bool else {
            throw KernelError.invalidInput(index: 0, reason: "Where condition must be bool, got \(condition.dtype)")
        }
        guard x.dtype == y.dtype else {
            throw KernelError.invalidInput(
                index: 2, reason: "Where needs X and Y of one dtype, got \(x.dtype) and \(y.dtype)")
        }
        let layout = try BroadcastLayout(shapes: [condition.shape, x.shape, y.shape])
        switch x.dtype.bitWidth {
        case 8: return [try select(UInt8.self, condition, x, y, layout, context)]
        case 16: return [try select(UInt16.self, condition, x, y, layout, context)]
        case 32: return [try select(UInt32.self, condition, x, y, layout, context)]
        case 64: return [try select(UInt64.self, condition, x, y, layout, context)]
        default: throw ElementwiseChecks.unsupported("Where", x.dtype)
        }
    }

    private func select<Word: FixedWidthInteger>(
        _: Word.Type, _ condition: Tensor, _ x: Tensor, _ y: Tensor, _ layout: BroadcastLayout,
        _ context: ExecutionContext
    ) throws -> Tensor {
        let output = try context.output(x.dtype, shape: layout.outputShape)
        let stepC = layout.innerStride(0), stepX = layout.innerStride(1), stepY = layout.innerStride(2)
        let out = output.bytes.assumingMemoryBound(to: Word.self)
        condition.withUnsafeBufferPointer(as: Bool.self) { conditionBuffer in
            x.withUnsafeBytes { xBytes in
                y.withUnsafeBytes { yBytes in
                    guard let c = conditionBuffer.baseAddress else { return }
                    let xs = xBytes.baseAddress!.assumingMemoryBound(to: Word.self)
                    let ys = yBytes.baseAddress!.assumingMemoryBound(to: Word.self)
                    ElementwiseParallel.forRanges(layout.count, grain: ElementwiseParallel.cheapGrain,
                                                  context: context) { range in
                        layout.forEachSegment(in: range) { start, offsets, length in
                            let cRow = c + offsets[0], xRow = xs + offsets[1], yRow = ys + offsets[2]
                            let target = out + start
                            if stepC == 1 && stepX == 1 && stepY == 1 {
                                for i in 0..<length { target[i] = cRow[i] ? xRow[i] : yRow[i] }
                            } else if stepC == 1 && stepX == 0 && stepY == 0 {
                                // Two broadcast scalars (an attention mask's 0 / −inf): a select that vectorises.
                                let chosen = xRow[0], other = yRow[0]
                                for i in 0..<length { target[i] = cRow[i] ? chosen : other }
                            } else {
                                for i in 0..<length {
                                    target[i] = cRow[i &* stepC] ? xRow[i &* stepX] : yRow[i &* stepY]
                                }
                            }
                        }
                    }
                }
            }
        }
        return output.tensor
    }
}

// MARK: - Registration

extension KernelRegistry {
    mutating func registerComparisonKernels() {
        let binaries: [(String, @Sendable () -> any Kernel)] = [
            ("Equal", { ComparisonKernel<EqualComparison>(opType: "Equal", allowsBool: true).specialized }),
            ("Greater", { ComparisonKernel<GreaterComparison>(opType: "Greater").specialized }),
            ("Less", { ComparisonKernel<LessComparison>(opType: "Less").specialized }),
            ("And", { LogicKernel<AndOperation>(opType: "And").specialized }),
            ("Or", { LogicKernel<OrOperation>(opType: "Or").specialized }),
            ("Xor", { LogicKernel<XorOperation>(opType: "Xor").specialized }),
        ]
        for (opType, make) in binaries {
            registerLegacyBroadcasting(opType, make)
            register(opType, since: 7) { _ in make() }
        }
        register("GreaterOrEqual", since: 12) { _ in
            ComparisonKernel<GreaterOrEqualComparison>(opType: "GreaterOrEqual").specialized
        }
        register("LessOrEqual", since: 12) { _ in ComparisonKernel<LessOrEqualComparison>(opType: "LessOrEqual").specialized }
        register("Not", since: 1) { _ in NotKernel() }
        register("IsNaN", since: 9) { _ in FloatClassKernel(infinities: nil) }
        register("IsInf", since: 10) { context in
            FloatClassKernel(infinities: (try context.int("detect_negative", default: 1) != 0,
                                          try context.int("detect_positive", default: 1) != 0))
        }
        register("Where", since: 9) { _ in WhereKernel() }
    }
}
