import GraphIR
import Tensors

// Operators that stay in the quantized domain between integer operators, or pass it through.

/// Add and Mul of two activations. A constant operand (a bias, a scale, an attention-mask term) keeps the
/// node float: its output would need its own parameters for a single cheap float operation.
struct ElementwiseQuantizer: OperatorQuantizer {
    var role: OperatorRole { .quantizedDomain }

    func dataInputs(of node: Node, constants: [String: Tensor]) -> [Int] { Array(node.inputs.indices) }

    func floatReason(for node: Node, constants: [String: Tensor]) -> String? {
        for name in node.inputs where constants[name] != nil {
            return "its operand '\(name)' is a constant, so it stays a float operation"
        }
        return nil
    }
}

/// Concat: every input is an activation; each keeps its own parameters in QDQ form.
struct ConcatQuantizer: OperatorQuantizer {
    var role: OperatorRole { .quantizedDomain }

    func dataInputs(of node: Node, constants: [String: Tensor]) -> [Int] { Array(node.inputs.indices) }

    func floatReason(for node: Node, constants: [String: Tensor]) -> String? {
        for name in node.inputs where constants[name] != nil {
            return "its input '\(name)' is a constant"
        }
        return nil
    }
}

/// One activation in, one out, with its own output parameters: average pooling, HardSwish, HardSigmoid,
/// LeakyRelu, Sigmoid (integer runtimes run them as lookup tables or fixed-point arithmetic).
struct UnaryDomainQuantizer: OperatorQuantizer {
    var role: OperatorRole { .quantizedDomain }
}

/// Relu and Clip: fold into the output range of the operator that feeds them when that range clamps the
/// same way (`ClampQuantizer.bounds`); otherwise they stay in the quantized domain with their own output.
struct ClampQuantizer: OperatorQuantizer {
    var role: OperatorRole { .clamp }

    /// The clamp interval: `[0, ∞)` for Relu; Clip's `min`/`max` inputs (opset 11+) or attributes (older),
    /// each ±∞ when absent. Nil when a bound is not a constant.
    static func bounds(of node: Node, constants: [String: Tensor], opset: Int) -> (lower: Float, upper: Float)? {
        if node.opType == "Relu" { return (0, .infinity) }
        guard node.opType == "Clip" else { return nil }
        if opset < 11 {
            return (node.attributes["min"]?.floatValue ?? -.greatestFiniteMagnitude,
                    node.attributes["max"]?.floatValue ?? .greatestFiniteMagnitude)
        }
        func bound(_ index: Int, _ absent: Float) -> Float? {
            guard node.inputs.count > index, !node.inputs[index].isEmpty else { return absent }
            guard let tensor = constants[node.inputs[index]], tensor.count == 1,
                  let value = try? tensor.floatArray().first else { return nil }
            return value
        }
        guard let lower = bound(1, -.infinity), let upper = bound(2, .infinity) else { return nil }
        return (lower, upper)
    }
}

/// Reshape, Transpose, Flatten, Squeeze, Unsqueeze, Slice, Gather, MaxPool, Resize: the output holds input
/// values (or, for Resize, convex combinations of them), so it shares the input's scale and zero point.
/// Only input 0 is data; the rest are shapes, axes, indices, scales.
struct PassThroughQuantizer: OperatorQuantizer {
    var role: OperatorRole { .passThrough }
}
