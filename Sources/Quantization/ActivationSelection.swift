import GraphIR

/// Which activation tensors static quantization observes during calibration.
///
/// The rule follows the op-quantizer roles of DESIGN.md §2: the float inputs and outputs of operators
/// that compute in integers (Conv, ConvTranspose, Gemm, MatMul) and of operators that stay in the
/// quantized domain between them (Add, Mul, Concat, pooling, clamping activations, Resize). Constant
/// inputs (weights, biases, shapes) are not activations and are skipped; so are values of other dtypes,
/// which the calibration driver drops when it sees them.
public enum ActivationSelection {
    /// Operators whose matrix products run in integer arithmetic.
    public static let integerComputeOperators: Set<String> = ["Conv", "ConvTranspose", "Gemm", "MatMul"]

    /// Operators that keep (or pass through) the quantized domain between integer operators.
    public static let quantizedDomainOperators: Set<String> = [
        "Add", "Mul", "Concat", "MaxPool", "AveragePool", "GlobalAveragePool", "Relu", "Clip", "LeakyRelu",
        "HardSwish", "HardSigmoid", "Sigmoid", "Resize",
    ]

    /// The names of the activation tensors to observe in `graph`, in graph order.
    public static func tensorsToObserve(in graph: Graph) -> [String] {
        let constants = constantNames(in: graph)
        let selected = integerComputeOperators.union(quantizedDomainOperators)
        var names: [String] = []
        var seen = Set<String>()
        for node in graph.nodes where node.normalizedDomain.isEmpty && selected.contains(node.opType) {
            // Only the data inputs: Clip's bounds, Resize's roi/scales/sizes are parameters.
            let dataInputs = ["Clip", "Resize"].contains(node.opType) ? Array(node.inputs.prefix(1)) : node.inputs
            for name in dataInputs + node.outputs where !name.isEmpty && !constants.contains(name) {
                if seen.insert(name).inserted { names.append(name) }
            }
        }
        return names
    }

    /// Initializers and the outputs of Constant nodes.
    static func constantNames(in graph: Graph) -> Set<String> {
        var names = Set(graph.initializers.keys)
        for node in graph.nodes where node.opType == "Constant" { names.formUnion(node.outputs) }
        return names
    }
}
