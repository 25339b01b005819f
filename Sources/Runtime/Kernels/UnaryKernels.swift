import Tensors

// Unary math: Sqrt, Exp, Log, Erf, Reciprocal, Floor, Ceil (float types) and Neg, Abs, Sign (numeric
// types). Semantics have not changed since opset 1 (Erf and Sign arrived in 9): opset 6 dropped the
// `consumed_inputs` memory hint, which never affected results, and later versions only added types.

/// A function of one float element, generic over float32/float64.
protocol FloatFunction: Sendable {
    func apply<T: ElementwiseFloat>(_ x: T) -> T
    /// A vectorised float32 form over buffers, when there is one; `apply` is its reference twin.
    var vectorized: VectorizedFunction? { get }
}

extension FloatFunction {
    var vectorized: VectorizedFunction? { nil }
}

/// A float32 function over buffers: `(x, y, count)` writes `y[i] = f(x[i])`.
typealias VectorizedFunction = @Sendable (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void

/// `function` over every element of a float32 tensor, in contiguous ranges of at least `grain` elements
/// spread over the context's threads. Vectorised functions compute each lane alike, so the result does
/// not depend on how the tensor is split.
func mapVectorized(_ input: Tensor, _ function: VectorizedFunction, grain: Int = ElementwiseParallel.cheapGrain,
                   context: ExecutionContext) throws -> Tensor {
    let output = try context.output(.float32, shape: input.shape)
    input.withUnsafeBufferPointer(as: Float.self) { source in
        guard let x = source.baseAddress else { return }
        let y = output.pointer(as: Float.self)
        ElementwiseParallel.forRanges(source.count, grain: grain, context: context) { range in
            function(x + range.lowerBound, y + range.lowerBound, range.count)
        }
    }
    return output.tensor
}

/// A function of one element of any numeric type.
protocol NumericFunction: Sendable {
    func apply<T: ElementwiseNumeric>(_ x: T) -> T
}

struct FloatFunctionMapping<T: ElementwiseFloat, Function: FloatFunction>: UnaryMapping {
    let function: Function
    @inline(__always) func apply(_ x: T) -> T { function.apply(x) }
}

struct NumericFunctionMapping<T: ElementwiseNumeric, Function: NumericFunction>: UnaryMapping {
    let function: Function
    @inline(__always) func apply(_ x: T) -> T { function.apply(x) }
}

/// Applies a `FloatFunction` to input 0 (float16/bfloat16 through float32).
struct FloatFunctionKernel<Function: FloatFunction>: Kernel {
    let opType: String
    let function: Function
    /// True for functions that call libm per element, which pay off in parallel on smaller tensors.
    var transcendental = false

    struct Visitor: FloatVisitor {
        let x: Tensor, function: Function, grain: Int, context: ExecutionContext
        func visit<T: ElementwiseFloat>(_ type: T.Type) throws -> Tensor {
            if T.self == Float.self, let vectorized = function.vectorized {
                return try mapVectorized(x, vectorized, context: context)
            }
            return try mapUnary(x, FloatFunctionMapping<T, Function>(function: function), grain: grain, context: context)
        }
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        if let result = try ReducedPrecision.run(inputs, { try run($0, context: context) }) { return result }
        let x = try required(inputs, 0)
        let grain = transcendental ? ElementwiseParallel.transcendentalGrain : ElementwiseParallel.cheapGrain
        let visitor = Visitor(x: x, function: function, grain: grain, context: context)
        guard let result = try visitor.dispatch(x.dtype) else { throw ElementwiseChecks.unsupported(opType, x.dtype) }
        return [result]
    }
}

/// Applies a `NumericFunction` to input 0.
struct NumericFunctionKernel<Function: NumericFunction>: Kernel {
    let opType: String
    let function: Function
    /// Rejects unsigned integer inputs (Neg, and Relu's integer types, are signed only).
    var signedOnly = false

    struct Visitor: NumericVisitor {
        let x: Tensor, function: Function, signedOnly: Bool, opType: String, context: ExecutionContext
        func visit<T: ElementwiseNumeric>(_ type: T.Type) throws -> Tensor {
            if signedOnly && !T.isSignedElement { throw ElementwiseChecks.unsupported(opType, T.dtype) }
            return try mapUnary(x, NumericFunctionMapping<T, Function>(function: function), context: context)
        }
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        if let result = try ReducedPrecision.run(inputs, { try run($0, context: context) }) { return result }
        let x = try required(inputs, 0)
        let visitor = Visitor(x: x, function: function, signedOnly: signedOnly, opType: opType, context: context)
        guard let result = try visitor.dispatch(x.dtype) else { throw ElementwiseChecks.unsupported(opType, x.dtype) }
        return [result]
    }
}

struct SquareRootFunction: FloatFunction {
    @inline(__always) func apply<T: ElementwiseFloat>(_ x: T) -> T { x.squareRoot() }
}
struct ExponentialFunction: FloatFunction {
    @inline(__always) func apply<T: ElementwiseFloat>(_ x: T) -> T { T.exponential(x) }
    var vectorized: VectorizedFunction? { { VectorMath.exp($0, $1, count: $2) } }
}
struct LogarithmFunction: FloatFunction {
    @inline(__always) func apply<T: ElementwiseFloat>(_ x: T) -> T { T.naturalLog(x) }
}
/// erf from libm, which is accurate to within an ulp or so in float32 and float64; float32 tensors
/// take the vectorised form (within 2.2 ulp, see `VectorMath`).
struct ErrorFunction: FloatFunction {
    @inline(__always) func apply<T: ElementwiseFloat>(_ x: T) -> T { T.errorFunction(x) }
    var vectorized: VectorizedFunction? { { VectorMath.erf($0, $1, count: $2) } }
}
struct ReciprocalFunction: FloatFunction {
    @inline(__always) func apply<T: ElementwiseFloat>(_ x: T) -> T { 1 / x }
}
struct FloorFunction: FloatFunction {
    @inline(__always) func apply<T: ElementwiseFloat>(_ x: T) -> T { x.rounded(.down) }
}
struct CeilFunction: FloatFunction {
    @inline(__always) func apply<T: ElementwiseFloat>(_ x: T) -> T { x.rounded(.up) }
}
struct NegateFunction: NumericFunction {
    @inline(__always) func apply<T: ElementwiseNumeric>(_ x: T) -> T { T.negate(x) }
}
/// |x|; the most negative integer stays itself, as in two's complement C.
struct AbsoluteFunction: NumericFunction {
    @inline(__always) func apply<T: ElementwiseNumeric>(_ x: T) -> T { T.magnitude(x) }
}
/// −1, 0 or 1 by the sign of x; NaN stays NaN.
struct SignFunction: NumericFunction {
    @inline(__always) func apply<T: ElementwiseNumeric>(_ x: T) -> T {
        x > T.zeroValue ? T.oneValue : (x < T.zeroValue ? T.negate(T.oneValue) : x)
    }
}

extension KernelRegistry {
    mutating func registerUnaryKernels() {
        register("Sqrt", since: 1) { _ in FloatFunctionKernel(opType: "Sqrt", function: SquareRootFunction()).specialized }
        register("Exp", since: 1) { _ in
            FloatFunctionKernel(opType: "Exp", function: ExponentialFunction(), transcendental: true).specialized
        }
        register("Log", since: 1) { _ in
            FloatFunctionKernel(opType: "Log", function: LogarithmFunction(), transcendental: true).specialized
        }
        register("Erf", since: 9) { _ in
            FloatFunctionKernel(opType: "Erf", function: ErrorFunction(), transcendental: true).specialized
        }
        register("Reciprocal", since: 1) { _ in
            FloatFunctionKernel(opType: "Reciprocal", function: ReciprocalFunction()).specialized
        }
        register("Floor", since: 1) { _ in FloatFunctionKernel(opType: "Floor", function: FloorFunction()).specialized }
        register("Ceil", since: 1) { _ in FloatFunctionKernel(opType: "Ceil", function: CeilFunction()).specialized }
        register("Neg", since: 1) { _ in
            NumericFunctionKernel(opType: "Neg", function: NegateFunction(), signedOnly: true).specialized
        }
        register("Abs", since: 1) { _ in NumericFunctionKernel(opType: "Abs", function: AbsoluteFunction()).specialized }
        register("Sign", since: 9) { _ in NumericFunctionKernel(opType: "Sign", function: SignFunction()).specialized }
    }
}
