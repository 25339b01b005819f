import GraphIR
import Tensors

// Activations: Relu, LeakyRelu, PRelu, Clip, HardSigmoid, HardSwish, Sigmoid, Tanh, Gelu, Elu, Selu,
// Softplus. Attributes are read once when the node is compiled. Versions 1–5 differ from 6 only by the
// `consumed_inputs` memory hint, which does not change results, so one factory serves from opset 1.

/// max(0, x); NaN stays NaN.
struct ReluFunction: NumericFunction {
    @inline(__always) func apply<T: ElementwiseNumeric>(_ x: T) -> T { x < T.zeroValue ? T.zeroValue : x }
}

/// x for x ≥ 0, alpha·x otherwise.
struct LeakyReluFunction: FloatFunction {
    let alpha: Float
    @inline(__always) func apply<T: ElementwiseFloat>(_ x: T) -> T { x < 0 ? T(alpha) * x : x }
}

/// max(0, min(1, alpha·x + beta)).
struct HardSigmoidFunction: FloatFunction {
    let alpha: Float, beta: Float
    @inline(__always) func apply<T: ElementwiseFloat>(_ x: T) -> T {
        let y = T(alpha) * x + T(beta)
        return y < 0 ? 0 : (y > 1 ? 1 : y)
    }
}

/// x · max(0, min(1, x/6 + 1/2)).
struct HardSwishFunction: FloatFunction {
    @inline(__always) func apply<T: ElementwiseFloat>(_ x: T) -> T {
        let gate = x * T(Float(1) / 6) + T(0.5)
        return x * (gate < 0 ? 0 : (gate > 1 ? 1 : gate))
    }
}

/// 1 / (1 + e^−x). For very negative x, e^−x overflows to +inf and the quotient is 0 (the exact value
/// is below float32's normal range there).
struct SigmoidFunction: FloatFunction {
    @inline(__always) func apply<T: ElementwiseFloat>(_ x: T) -> T { 1 / (1 + T.vectorizableExponential(-x)) }
}

struct TanhFunction: FloatFunction {
    @inline(__always) func apply<T: ElementwiseFloat>(_ x: T) -> T { T.hyperbolicTangent(x) }
}

/// Exact Gelu: x/2 · (1 + erf(x/√2)); float32 tensors take the vectorised form.
struct GeluFunction: FloatFunction {
    @inline(__always) func apply<T: ElementwiseFloat>(_ x: T) -> T {
        T(0.5) * x * (1 + T.errorFunction(x * T(0.70710678118654752440)))
    }
    var vectorized: VectorizedFunction? { { VectorMath.gelu($0, $1, count: $2) } }
}

/// Tanh-approximated Gelu: x/2 · (1 + tanh(√(2/π) · (x + 0.044715·x³))).
struct TanhGeluFunction: FloatFunction {
    @inline(__always) func apply<T: ElementwiseFloat>(_ x: T) -> T {
        let inner = T(0.79788456080286535588) * (x + T(0.044715) * x * x * x)
        return T(0.5) * x * (1 + T.hyperbolicTangent(inner))
    }
}

/// x for x ≥ 0, alpha·(eˣ − 1) otherwise.
struct EluFunction: FloatFunction {
    let alpha: Float
    @inline(__always) func apply<T: ElementwiseFloat>(_ x: T) -> T {
        x < 0 ? T(alpha) * T.exponentialMinusOne(x) : x
    }
}

/// gamma · x for x > 0, gamma · alpha · (eˣ − 1) otherwise.
struct SeluFunction: FloatFunction {
    let alpha: Float, gamma: Float
    @inline(__always) func apply<T: ElementwiseFloat>(_ x: T) -> T {
        x > 0 ? T(gamma) * x : T(gamma) * (T(alpha) * T.exponential(x) - T(alpha))
    }
}

/// ln(1 + eˣ), as max(x, 0) + ln(1 + e^−|x|) so that large |x| neither overflows nor loses digits.
struct SoftplusFunction: FloatFunction {
    @inline(__always) func apply<T: ElementwiseFloat>(_ x: T) -> T {
        (x > 0 ? x : 0) + T.logOnePlus(T.exponential(-Swift.abs(x)))
    }
}

// MARK: - PRelu

/// x for x ≥ 0, slope·x otherwise; the slope broadcasts to X's shape.
struct PReluMapping<T: ElementwiseNumeric>: BinaryMapping {
    @inline(__always) func apply(_ x: T, _ slope: T) -> T { x < T.zeroValue ? T.multiply(slope, x) : x }
}

struct PReluKernel: Kernel {
    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        if let result = try ReducedPrecision.run(inputs, { try run($0, context: context) }) { return result }
        let x = try required(inputs, 0), slope = try required(inputs, 1)
        try ElementwiseChecks.sameDType([x, slope], opType: "PRelu")
        struct Visitor: NumericVisitor {
            let x: Tensor, slope: Tensor, context: ExecutionContext
            func visit<T: ElementwiseNumeric>(_ type: T.Type) throws -> Tensor {
                try mapBinary(x, slope, PReluMapping<T>(), outputShape: x.shape, context: context)
            }
        }
        guard let result = try Visitor(x: x, slope: slope, context: context).dispatch(x.dtype) else {
            throw ElementwiseChecks.unsupported("PRelu", x.dtype)
        }
        return [result]
    }
}

// MARK: - Clip

/// min(max(x, low), high) as numpy's clip computes it: when low > high every element becomes high;
/// NaN stays NaN.
struct ClipMapping<T: ElementwiseNumeric>: UnaryMapping {
    let low: T, high: T
    @inline(__always) func apply(_ x: T) -> T {
        let raised = x < low ? low : x
        return raised > high ? high : raised
    }
}

/// Clip with bounds from attributes (opset 6) or from optional scalar inputs 1 and 2 (opset 11+).
struct ClipKernel: Kernel {
    /// Opset 6 bounds; nil for the input-driven versions.
    let attributeBounds: (low: Float, high: Float)?

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        if let result = try ReducedPrecision.run(inputs, { try run($0, context: context) }) { return result }
        let x = try required(inputs, 0)
        let low = try optional(inputs, 1).map { try ElementwiseChecks.singleElement($0, index: 1, what: "Clip min") }
        let high = try optional(inputs, 2).map { try ElementwiseChecks.singleElement($0, index: 2, what: "Clip max") }
        try ElementwiseChecks.sameDType([x] + [low, high].compactMap { $0 }, opType: "Clip")
        struct Visitor: NumericVisitor {
            let x: Tensor, low: Tensor?, high: Tensor?, attributeBounds: (low: Float, high: Float)?
            let context: ExecutionContext
            func visit<T: ElementwiseNumeric>(_ type: T.Type) throws -> Tensor {
                var lowValue = T.lowestValue, highValue = T.highestValue
                if let attributeBounds {
                    guard T.isFloatingPointElement, let l = T.exactlyConverted(Double(attributeBounds.low)),
                          let h = T.exactlyConverted(Double(attributeBounds.high)) else {
                        throw ElementwiseChecks.unsupported("Clip-6", T.dtype)
                    }
                    lowValue = l
                    highValue = h
                }
                if let low { lowValue = low.withUnsafeBufferPointer(as: T.self) { $0[0] } }
                if let high { highValue = high.withUnsafeBufferPointer(as: T.self) { $0[0] } }
                return try mapUnary(x, ClipMapping(low: lowValue, high: highValue), context: context)
            }
        }
        let visitor = Visitor(x: x, low: low, high: high, attributeBounds: attributeBounds, context: context)
        guard let result = try visitor.dispatch(x.dtype) else { throw ElementwiseChecks.unsupported("Clip", x.dtype) }
        return [result]
    }
}

// MARK: - Registration

extension KernelRegistry {
    mutating func registerActivationKernels() {
        // Opset 14 gave Relu signed integer types; the float semantics are those of opset 1.
        register("Relu", since: 1) { _ in
            NumericFunctionKernel(opType: "Relu", function: ReluFunction(), signedOnly: true).specialized
        }
        register("LeakyRelu", since: 1) { context in
            let alpha = try context.float("alpha", default: 0.01)
            return FloatFunctionKernel(opType: "LeakyRelu", function: LeakyReluFunction(alpha: alpha)).specialized
        }
        register("PRelu", since: 1) { _ in PReluKernel() }
        register("HardSigmoid", since: 1) { context in
            FloatFunctionKernel(opType: "HardSigmoid", function: HardSigmoidFunction(
                alpha: try context.float("alpha", default: 0.2), beta: try context.float("beta", default: 0.5))).specialized
        }
        register("HardSwish", since: 14) { _ in
            FloatFunctionKernel(opType: "HardSwish", function: HardSwishFunction()).specialized
        }
        register("Sigmoid", since: 1) { _ in
            FloatFunctionKernel(opType: "Sigmoid", function: SigmoidFunction(), transcendental: true).specialized
        }
        register("Tanh", since: 1) { _ in
            FloatFunctionKernel(opType: "Tanh", function: TanhFunction(), transcendental: true).specialized
        }
        register("Gelu", since: 20) { context in
            let approximate = try context.string("approximate", default: "none")
            switch approximate {
            case "none": return FloatFunctionKernel(opType: "Gelu", function: GeluFunction(), transcendental: true).specialized
            case "tanh": return FloatFunctionKernel(opType: "Gelu", function: TanhGeluFunction(), transcendental: true).specialized
            default:
                throw KernelError.invalidAttribute("approximate", "must be \"none\" or \"tanh\", got \"\(approximate)\"")
            }
        }
        register("Elu", since: 1) { context in
            FloatFunctionKernel(opType: "Elu", function: EluFunction(alpha: try context.float("alpha", default: 1)),
                                transcendental: true).specialized
        }
        register("Selu", since: 1) { context in
            FloatFunctionKernel(opType: "Selu", function: SeluFunction(
                alpha: try context.float("alpha", default: 1.67326319217681884765625),
                gamma: try context.float("gamma", default: 1.05070102214813232421875)), transcendental: true).specialized
        }
        register("Softplus", since: 1) { _ in
            FloatFunctionKernel(opType: "Softplus", function: SoftplusFunction(), transcendental: true).specialized
        }
        register("Clip", since: 1) { context in
            ClipKernel(attributeBounds: (try context.float("min", default: -Float.greatestFiniteMagnitude),
                                         try context.float("max", default: Float.greatestFiniteMagnitude)))
        }
        // Opset 11 moved the bounds to optional inputs; 12 added integer types.
        register("Clip", since: 11) { _ in ClipKernel(attributeBounds: nil) }
    }
}
