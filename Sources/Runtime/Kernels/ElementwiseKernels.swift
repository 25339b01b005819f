import Tensors

// Binary arithmetic with multidirectional (numpy) broadcasting: Add, Sub, Mul, Div, Pow, and the
// variadic Max, Min, Sum, Mean. Opset 7 introduced broadcasting for all of them; later versions only
// widened the type lists, so one factory per operator serves opsets 7…22.

/// An arithmetic operation generic over the element type.
protocol ArithmeticOperation: Sendable {
    static func apply<T: ElementwiseNumeric>(_ a: T, _ b: T) -> T
}

enum AddOperation: ArithmeticOperation {
    @inline(__always) static func apply<T: ElementwiseNumeric>(_ a: T, _ b: T) -> T { T.add(a, b) }
}
enum SubtractOperation: ArithmeticOperation {
    @inline(__always) static func apply<T: ElementwiseNumeric>(_ a: T, _ b: T) -> T { T.subtract(a, b) }
}
enum MultiplyOperation: ArithmeticOperation {
    @inline(__always) static func apply<T: ElementwiseNumeric>(_ a: T, _ b: T) -> T { T.multiply(a, b) }
}
enum DivideOperation: ArithmeticOperation {
    @inline(__always) static func apply<T: ElementwiseNumeric>(_ a: T, _ b: T) -> T { T.divide(a, b) }
}
enum MaximumOperation: ArithmeticOperation {
    @inline(__always) static func apply<T: ElementwiseNumeric>(_ a: T, _ b: T) -> T { T.maximum(a, b) }
}
enum MinimumOperation: ArithmeticOperation {
    @inline(__always) static func apply<T: ElementwiseNumeric>(_ a: T, _ b: T) -> T { T.minimum(a, b) }
}

struct ArithmeticMapping<T: ElementwiseNumeric, Operation: ArithmeticOperation>: BinaryMapping {
    @inline(__always) func apply(_ a: T, _ b: T) -> T { Operation.apply(a, b) }
}

struct ArithmeticVisitor<Operation: ArithmeticOperation>: NumericVisitor {
    let a: Tensor, b: Tensor, opType: String, floatOnly: Bool, context: ExecutionContext
    func visit<T: ElementwiseNumeric>(_ type: T.Type) throws -> Tensor {
        if floatOnly && !T.isFloatingPointElement { throw ElementwiseChecks.unsupported(opType, T.dtype) }
        if Operation.self == DivideOperation.self && !T.isFloatingPointElement {
            // C would trap or be undefined here; ONNX gives no result, so report bad data.
            let hasZero = b.withUnsafeBufferPointer(as: T.self) { $0.contains(T.zeroValue) }
            if hasZero { throw KernelError.invalid("\(opType): integer division by zero") }
        }
        return try mapBinary(a, b, ArithmeticMapping<T, Operation>(), context: context)
    }
}

/// `a op b` broadcast, for two tensors of one dtype (float16/bfloat16 handled by the caller).
func broadcastArithmetic<Operation: ArithmeticOperation>(
    _ a: Tensor, _ b: Tensor, _ operation: Operation.Type, opType: String, floatOnly: Bool = false,
    context: ExecutionContext
) throws -> Tensor {
    try ElementwiseChecks.sameDType([a, b], opType: opType)
    let visitor = ArithmeticVisitor<Operation>(a: a, b: b, opType: opType, floatOnly: floatOnly, context: context)
    guard let result = try visitor.dispatch(a.dtype) else { throw ElementwiseChecks.unsupported(opType, a.dtype) }
    return result
}

/// Add, Sub, Mul, Div: `C = A op B` with broadcasting; integer Div truncates toward zero and rejects a
/// zero divisor.
struct BinaryArithmeticKernel<Operation: ArithmeticOperation>: Kernel {
    let opType: String

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        if let result = try ReducedPrecision.run(inputs, { try run($0, context: context) }) { return result }
        let a = try required(inputs, 0), b = try required(inputs, 1)
        return [try broadcastArithmetic(a, b, Operation.self, opType: opType, context: context)]
    }
}

/// Whether a numeric dtype is a float type.
struct FloatnessCheck: NumericVisitor {
    func visit<T: ElementwiseNumeric>(_ type: T.Type) -> Bool { T.isFloatingPointElement }
}

/// Max, Min, Sum, Mean over one or more inputs, all broadcast together. Mean divides the sum by the
/// number of inputs.
struct VariadicArithmeticKernel<Operation: ArithmeticOperation>: Kernel {
    let opType: String
    let floatOnly: Bool
    let averages: Bool
    /// Opsets before 8 do not broadcast: every input must have the first one's shape.
    var equalShapesOnly = false

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        if let result = try ReducedPrecision.run(inputs, { try run($0, context: context) }) { return result }
        guard !inputs.isEmpty else {
            throw KernelError.invalidInput(index: 0, reason: "\(opType) needs at least one input")
        }
        let operands = try inputs.indices.map { try required(inputs, $0) }
        try ElementwiseChecks.sameDType(operands, opType: opType)
        if equalShapesOnly, let mismatch = operands.firstIndex(where: { $0.shape != operands[0].shape }) {
            throw KernelError.invalidInput(
                index: mismatch, reason: "\(opType) before opset 8 needs equal shapes, got \(operands[mismatch].shape) "
                    + "and \(operands[0].shape)")
        }
        var result = operands[0]
        if operands.count == 1 {
            // Still reject types the operator does not take.
            guard let isFloat = try FloatnessCheck().dispatch(result.dtype), isFloat || !floatOnly else {
                throw ElementwiseChecks.unsupported(opType, result.dtype)
            }
        }
        for operand in operands.dropFirst() {
            result = try broadcastArithmetic(result, operand, Operation.self, opType: opType, floatOnly: floatOnly,
                                             context: context)
        }
        if averages && operands.count > 1 {
            let divisor: Tensor
            switch result.dtype {
            case .float32: divisor = Tensor(scalar: Float(operands.count))
            case .float64: divisor = Tensor(scalar: Double(operands.count))
            default: throw ElementwiseChecks.unsupported(opType, result.dtype)
            }
            result = try broadcastArithmetic(result, divisor, DivideOperation.self, opType: opType, context: context)
        }
        return [result]
    }
}

// MARK: - Pow

/// `base ^ exponent` for a float base; the exponent may be float or integer.
struct FloatPowerMapping<T: ElementwiseFloat, E: ElementwiseNumeric>: BinaryMapping {
    @inline(__always) func apply(_ a: T, _ b: E) -> T {
        T.power(a, E.self == T.self ? unsafeBitCast(b, to: T.self) : T(b.doubleValue))
    }
}

/// `x * x`: what pow(x, 2) rounds to, at a fraction of the cost (LayerNorm graphs square this way).
struct SquareMapping<T: ElementwiseFloat>: UnaryMapping {
    @inline(__always) func apply(_ x: T) -> T { x * x }
}

/// Pow with integer base: ONNX Runtime computes `pow` in floating point and converts to the base type.
/// Integer exponents use exact repeated squaring (wrapping like C on overflow); float exponents go
/// through Double and fail when the result is not representable.
struct IntegerPowerMapping<T: ElementwiseNumeric & FixedWidthInteger, E: ElementwiseNumeric>: BinaryMapping {
    /// Set when some element had no representable result.
    let failure: UnsafeMutablePointer<Bool>

    func apply(_ a: T, _ b: E) -> T {
        if E.isFloatingPointElement {
            let value = Double.power(a.doubleValue, b.doubleValue)
            guard let converted = T.exactlyConverted(value) else { failure.pointee = true; return 0 }
            return converted
        }
        let exponent = b.doubleValue
        if exponent < 0 {
            // 1/a^n truncates to 0 except for |a| = 1; a = 0 would be a division by zero.
            if a == 1 { return 1 }
            if T.isSigned && a == 0 &- 1 { return exponent.truncatingRemainder(dividingBy: 2) == 0 ? 1 : a }
            if a == 0 { failure.pointee = true }
            return 0
        }
        var result: T = 1, factor = a
        var remaining = exponent >= 18446744073709551615.0 ? UInt64.max : UInt64(exponent)
        while remaining > 0 {
            if remaining & 1 == 1 { result = result &* factor }
            remaining >>= 1
            if remaining > 0 { factor = factor &* factor }
        }
        return result
    }
}

struct PowKernel: Kernel {
    /// Float base: the exponent dtype is resolved second.
    struct FloatBaseVisitor<F: ElementwiseFloat>: NumericVisitor {
        let base: Tensor, exponent: Tensor, context: ExecutionContext
        func visit<X: ElementwiseNumeric>(_ type: X.Type) throws -> Tensor {
            // A constant exponent of 2 is a square; the broadcast must still give the base's shape.
            if exponent.count == 1, exponent.rank <= base.rank,
               exponent.withUnsafeBufferPointer(as: X.self, { $0[0].doubleValue == 2 }) {
                return try mapUnary(base, SquareMapping<F>(), context: context)
            }
            return try mapBinary(base, exponent, FloatPowerMapping<F, X>(),
                                 grain: ElementwiseParallel.transcendentalGrain, context: context)
        }
    }

    struct IntegerBaseVisitor<I: ElementwiseNumeric & FixedWidthInteger>: NumericVisitor {
        let base: Tensor, exponent: Tensor
        func visit<X: ElementwiseNumeric>(_ type: X.Type) throws -> Tensor {
            let failure = UnsafeMutablePointer<Bool>.allocate(capacity: 1)
            defer { failure.deallocate() }
            failure.pointee = false
            // One thread: the failure flag is shared.
            let result = try mapBinary(base, exponent, IntegerPowerMapping<I, X>(failure: failure),
                                       context: ExecutionContext(threadCount: 1))
            if failure.pointee {
                throw KernelError.invalid("Pow: an integer result is not representable (0 to a negative power, "
                                          + "or an out-of-range or NaN value)")
            }
            return result
        }
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        var base = try required(inputs, 0), exponent = try required(inputs, 1)
        // The output has the base's type, so only a half-precision base is narrowed back.
        if ReducedPrecision.isReduced(exponent.dtype) { exponent = try ReducedPrecision.widen(exponent) }
        if ReducedPrecision.isReduced(base.dtype) {
            let wide = try run([try ReducedPrecision.widen(base), exponent], context: context)[0]
            return [try ReducedPrecision.narrow(wide, to: base.dtype)]
        }
        let result: Tensor?
        switch base.dtype {
        case .float32:
            result = try FloatBaseVisitor<Float>(base: base, exponent: exponent, context: context).dispatch(exponent.dtype)
        case .float64:
            result = try FloatBaseVisitor<Double>(base: base, exponent: exponent, context: context).dispatch(exponent.dtype)
        case .int8: result = try IntegerBaseVisitor<Int8>(base: base, exponent: exponent).dispatch(exponent.dtype)
        case .int16: result = try IntegerBaseVisitor<Int16>(base: base, exponent: exponent).dispatch(exponent.dtype)
        case .int32: result = try IntegerBaseVisitor<Int32>(base: base, exponent: exponent).dispatch(exponent.dtype)
        case .int64: result = try IntegerBaseVisitor<Int64>(base: base, exponent: exponent).dispatch(exponent.dtype)
        case .uint8: result = try IntegerBaseVisitor<UInt8>(base: base, exponent: exponent).dispatch(exponent.dtype)
        case .uint16: result = try IntegerBaseVisitor<UInt16>(base: base, exponent: exponent).dispatch(exponent.dtype)
        case .uint32: result = try IntegerBaseVisitor<UInt32>(base: base, exponent: exponent).dispatch(exponent.dtype)
        case .uint64: result = try IntegerBaseVisitor<UInt64>(base: base, exponent: exponent).dispatch(exponent.dtype)
        default: throw ElementwiseChecks.unsupported("Pow", base.dtype)
        }
        guard let result else {
            throw KernelError.invalidInput(index: 1, reason: "Pow exponent of dtype \(exponent.dtype) is not supported")
        }
        return [result]
    }
}

// MARK: - Opsets 1–6

/// The binary operators before opset 7 broadcast only when `broadcast=1`, and then B's shape must match a
/// contiguous run of A's dimensions starting at `axis` (the trailing ones when `axis` is absent);
/// otherwise the shapes must be equal. This places B's dimensions at `axis` and runs the opset-7 kernel,
/// whose numpy broadcasting then gives the legacy result.
struct LegacyBroadcastKernel: Kernel {
    let opType: String
    let modern: any Kernel
    let broadcasts: Bool
    let axis: Int?

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let a = try required(inputs, 0), b = try required(inputs, 1)
        guard broadcasts else {
            guard a.shape == b.shape else {
                throw KernelError.invalid(
                    "\(opType): shapes \(a.shape) and \(b.shape) differ and broadcast is 0 (before opset 7 "
                        + "operands broadcast only when asked)")
            }
            return try modern.run(inputs, context: context)
        }
        let start: Int?
        if let axis { start = Shape.normalizedAxis(axis, rank: a.rank) } else { start = a.rank - b.rank }
        guard let start, b.rank == 0 || (start >= 0 && start + b.rank <= a.rank) else {
            throw KernelError.invalid("\(opType): B of shape \(b.shape) cannot be placed in A's shape \(a.shape) "
                                      + "at axis \(axis.map(String.init) ?? "(trailing)")")
        }
        let placed = b.rank == 0 ? b.shape
            : Array(repeating: 1, count: start) + b.shape + Array(repeating: 1, count: a.rank - start - b.rank)
        guard Shape.broadcast(a.shape, placed) == a.shape else {
            throw KernelError.invalid(
                "\(opType): B of shape \(b.shape) does not match A's shape \(a.shape) at axis \(start)")
        }
        return try modern.run([a, try b.reshaped(placed)], context: context)
    }
}

extension KernelRegistry {
    /// Registers the opset 1–6 form of a binary operator around its opset-7 kernel.
    mutating func registerLegacyBroadcasting(_ opType: String, _ modern: @escaping @Sendable () -> any Kernel) {
        register(opType, since: 1) { context in
            LegacyBroadcastKernel(opType: opType, modern: modern(),
                                  broadcasts: try context.int("broadcast", default: 0) != 0,
                                  axis: context.has("axis") ? try context.int("axis") : nil)
        }
    }
}

// MARK: - Registration

extension KernelRegistry {
    /// Every kernel of the elementwise family: arithmetic, unary math, activations, comparisons and
    /// logic, softmax, layer normalization, reductions, arg-reductions and TopK.
    mutating func registerElementwiseFamilyKernels() {
        registerArithmeticKernels()
        registerUnaryKernels()
        registerActivationKernels()
        registerComparisonKernels()
        registerSoftmaxKernels()
        registerNormalizationKernels()
        registerReductionKernels()
        registerIndexReductionKernels()
    }

    mutating func registerArithmeticKernels() {
        let binaries: [(String, @Sendable () -> any Kernel)] = [
            ("Add", { BinaryArithmeticKernel<AddOperation>(opType: "Add").specialized }),
            ("Sub", { BinaryArithmeticKernel<SubtractOperation>(opType: "Sub").specialized }),
            ("Mul", { BinaryArithmeticKernel<MultiplyOperation>(opType: "Mul").specialized }),
            ("Div", { BinaryArithmeticKernel<DivideOperation>(opType: "Div").specialized }),
            ("Pow", { PowKernel() }),
        ]
        for (opType, make) in binaries {
            registerLegacyBroadcasting(opType, make)
            register(opType, since: 7) { _ in make() }
        }
        // Opset 8 added broadcasting to the variadic operators; opset 12 gave Max/Min integer types.
        let variadics: [(String, @Sendable (Bool) -> any Kernel)] = [
            ("Max", { VariadicArithmeticKernel<MaximumOperation>(opType: "Max", floatOnly: false, averages: false,
                                                                   equalShapesOnly: $0).specialized }),
            ("Min", { VariadicArithmeticKernel<MinimumOperation>(opType: "Min", floatOnly: false, averages: false,
                                                                   equalShapesOnly: $0).specialized }),
            ("Sum", { VariadicArithmeticKernel<AddOperation>(opType: "Sum", floatOnly: true, averages: false,
                                                               equalShapesOnly: $0).specialized }),
            ("Mean", { VariadicArithmeticKernel<AddOperation>(opType: "Mean", floatOnly: true, averages: true,
                                                                equalShapesOnly: $0).specialized }),
        ]
        for (opType, make) in variadics {
            register(opType, since: 1) { _ in make(true) }
            register(opType, since: 8) { _ in make(false) }
        }
    }
}
