import GraphIR
import Tensors

/// Evaluates single nodes with the runtime's kernels — the evaluator GraphIR's `ConstantFolding` pass
/// takes, since GraphIR itself cannot run operators.
public enum KernelEvaluator {
    /// Runs `node` on constant inputs with the kernel `registry` resolves for `opset`; nil when no
    /// kernel exists (the pass then leaves the node alone).
    public static func evaluate(
        _ node: Node, inputs: [Tensor?], opset: Int, registry: KernelRegistry = .standard
    ) throws -> [Tensor]? {
        guard let factory = registry.factory(opType: node.opType, domain: node.normalizedDomain, opset: opset) else {
            return nil
        }
        let context = KernelBuildContext(
            node: node, opsetVersion: opset, constantInputs: inputs,
            compileSubgraph: { _, _ in throw KernelError.unsupported("subgraphs while constant folding") })
        return try factory(context).run(inputs, context: ExecutionContext(threadCount: 1))
    }

    /// The standard evaluator, ready to hand to `ConstantFolding(evaluator:)` or `PassPipeline.standard`.
    public static let standard: ConstantFolding.Evaluator = { node, inputs, opset in
        try evaluate(node, inputs: inputs, opset: opset)
    }
}
