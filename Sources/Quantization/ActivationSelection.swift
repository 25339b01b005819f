import GraphIR

/// Which activation tensors static quantization observes during calibration.
///
/// The rule follows the op-quantizer registry (`OperatorQuantizerRegistry.standard`): the float inputs and
/// outputs of operators that compute in integers (Conv, ConvTranspose, Gemm, MatMul) and of operators that
/// stay in or pass through the quantized domain between them (Add, Mul, Concat, pooling, clamping
/// activations, Reshape, Resize, …). Constant inputs (weights, biases, shapes) are not activations and are
/// skipped; so are values of other dtypes, which the calibration driver drops when it sees them.
/// `StaticQuantizer` narrows this down to the tensors its policy actually quantizes.
public enum ActivationSelection {
    /// Operators whose matrix products run in integer arithmetic.
    public static var integerComputeOperators: Set<String> {
        OperatorQuantizerRegistry.standard.operatorTypes(.integerCompute)
    }

    /// Operators that keep (or pass through) the quantized domain between integer operators.
    public static var quantizedDomainOperators: Set<String> {
        let registry = OperatorQuantizerRegistry.standard
        return registry.operatorTypes(.quantizedDomain).union(registry.operatorTypes(.passThrough))
            .union(registry.operatorTypes(.clamp))
    }

    /// The names of the activation tensors to observe in `graph`, in graph order.
    public static func tensorsToObserve(in graph: Graph) -> [String] {
        let constants = graph.constantValues
        let registry = OperatorQuantizerRegistry.standard
        var names: [String] = []
        var seen = Set<String>()
        for node in graph.nodes {
            guard let quantizer = registry.quantizer(for: node) else { continue }
            // Only the data inputs: Clip's bounds, Resize's roi/scales/sizes are parameters.
            let dataInputs = quantizer.dataInputs(of: node, constants: constants)
                .filter { $0 < node.inputs.count }.map { node.inputs[$0] }
            for name in dataInputs + node.outputs where !name.isEmpty && constants[name] == nil {
                if seen.insert(name).inserted { names.append(name) }
            }
        }
        return names
    }
}
