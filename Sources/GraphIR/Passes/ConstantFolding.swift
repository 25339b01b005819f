import Tensors

/// Replaces nodes whose inputs are all constants by initializers holding their results.
///
/// GraphIR cannot run kernels, so the arithmetic comes from an `evaluator` the caller supplies (the
/// Runtime module provides one that runs its kernels). Independently of it, `Shape` and `Size` nodes of
/// values whose shape shape inference knows exactly fold too when `foldsStaticShapes` is set — which
/// turns the Shape → Gather → Concat → Reshape chains of transformer exports with fixed dimensions into
/// constants the evaluator can then finish.
///
/// Never folded:
/// - nodes holding subgraphs, and non-deterministic operators (`nondeterministicOperators`, plus
///   `Dropout` given a `training_mode` input);
/// - nodes producing a graph output: an initializer in its place would change the model's interface;
/// - results with more than `maxOutputElements` elements, so that folding cannot bloat a model
///   (e.g. an `Expand` or `ConstantOfShape` of a large shape), checked before evaluating where shape
///   annotations tell the size;
/// - nodes the evaluator declines (returns nil) or fails on. A failure is not raised here: the node stays,
///   and if the failure is real it surfaces when the model runs, where it belongs (the node may sit on a
///   branch that never runs).
///
/// `Constant` nodes are left as they are; they are already constants (and `DeadCodeElimination` drops
/// those nothing reads any more).
public struct ConstantFolding: GraphPass {
    /// Computes a node from its inputs (nil for omitted optional inputs) under an opset version.
    /// Returns one tensor per node output, or nil when it cannot compute this node.
    public typealias Evaluator = @Sendable (_ node: Node, _ inputs: [Tensor?], _ opset: Int) throws -> [Tensor]?

    public var name: String { "constant-folding" }
    public var evaluator: Evaluator?
    public var foldsStaticShapes: Bool
    public var maxOutputElements: Int

    /// Default-domain operators whose result is random, so that folding would freeze one sample.
    public static let nondeterministicOperators: Set<String> = [
        "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli",
    ]

    /// - Parameters:
    ///   - evaluator: computes nodes; nil folds only static shapes.
    ///   - foldsStaticShapes: fold `Shape`/`Size` of values whose shape is fully known.
    ///   - maxOutputElements: largest result (in elements) a fold may produce; 1,048,576 by default.
    public init(evaluator: Evaluator? = nil, foldsStaticShapes: Bool = false, maxOutputElements: Int = 1 << 20) {
        self.evaluator = evaluator
        self.foldsStaticShapes = foldsStaticShapes
        self.maxOutputElements = maxOutputElements
    }

    public func run(on graph: inout Graph, context: PassContext) throws -> Bool {
        var constants = graph.constantValues
        let graphOutputs = graph.outputNames
        // Shape inference here only serves folding; a contradiction it finds is not this pass's to
        // report (ShapeInference.infer does), so shapes simply stay unknown then.
        let types: [String: InferredType] = foldsStaticShapes
            ? (try? ShapeInference.inferredTypes(of: graph, opsetImports: context.opsetImports, outerScope: context.outerScope)) ?? [:]
            : [:]
        var folded = Set<Int>()
        for index in try graph.topologicalOrder(outerScope: context.outerScope) {
            let node = graph.nodes[index]
            guard isFoldable(node), !node.outputs.contains(where: graphOutputs.contains) else { continue }
            let results: [Tensor]?
            if foldsStaticShapes, let shapeResult = try staticShapeResult(of: node, context: context, types: types) {
                results = [shapeResult]
            } else {
                results = try evaluate(node, constants: constants, context: context, graph: graph, types: types)
            }
            guard let results else { continue }
            for (output, tensor) in zip(node.outputs, results) where !output.isEmpty {
                graph.initializers[output] = tensor
                constants[output] = tensor
            }
            folded.insert(index)
        }
        graph.removeNodes(at: folded)
        return !folded.isEmpty
    }

    private func isFoldable(_ node: Node) -> Bool {
        if node.hasSubgraphs { return false }
        if node.normalizedDomain == "" {
            if node.opType == "Constant" || ConstantFolding.nondeterministicOperators.contains(node.opType) { return false }
            if node.opType == "Dropout", node.inputs.count > 2, !node.inputs[2].isEmpty { return false }
        }
        return true
    }

    /// `Shape`/`Size` of an input whose shape is fully known.
    private func staticShapeResult(of node: Node, context: PassContext, types: [String: InferredType]) throws -> Tensor? {
        guard node.normalizedDomain == "", node.opType == "Shape" || node.opType == "Size",
              let input = node.inputs.first, let dims = types[input]?.shape else { return nil }
        let sizes = dims.compactMap(\.intValue)
        guard sizes.count == dims.count else { return nil }
        if node.opType == "Size" {
            guard let count = try? Shape.elementCount(sizes) else { return nil }
            return Tensor(scalar: Int64(count))
        }
        var selected = sizes[...]
        if (context.opset(for: node) ?? PassContext.fallbackOpset) >= 15 {
            let range = ShapeInference.shapeOperatorRange(
                rank: sizes.count, start: node[attribute: "start"]?.intValue, end: node[attribute: "end"]?.intValue)
            selected = sizes[range]
        }
        return try Tensor(shape: [selected.count], scalars: selected.map { Int64($0) })
    }

    private func evaluate(
        _ node: Node, constants: [String: Tensor], context: PassContext, graph: Graph, types: [String: InferredType]
    ) throws -> [Tensor]? {
        guard let evaluator, let opset = context.opset(for: node) else { return nil }
        let named = node.inputs.filter { !$0.isEmpty }
        // Nodes without inputs (other than Constant) are sources of their own: nothing to fold from.
        guard !named.isEmpty, named.allSatisfy({ constants[$0] != nil }) else { return nil }
        // Skip before computing when an annotation already says the result is too large.
        for output in node.outputs where !output.isEmpty {
            let dims = types[output]?.shape ?? graph.valueInfo[output]?.type?.tensorShape
            if let dims, let count = Dim.staticElementCount(dims), count > maxOutputElements { return nil }
        }
        let inputs = node.inputs.map { $0.isEmpty ? nil : constants[$0] }
        let results: [Tensor]
        do {
            guard let computed = try evaluator(node, inputs, opset) else { return nil }
            results = computed
        } catch {
            return nil
        }
        guard results.count == node.outputs.count else {
            throw PassError.invalidEvaluatorResult(
                node: node.label, reason: "returned \(results.count) tensors for \(node.outputs.count) outputs")
        }
        for (output, tensor) in zip(node.outputs, results) where !output.isEmpty {
            if tensor.count > maxOutputElements { return nil }
            if let declared = graph.valueInfo[output]?.type?.tensorElementType, declared != tensor.dtype {
                throw PassError.invalidEvaluatorResult(
                    node: node.label, reason: "returned \(tensor.dtype) for '\(output)', declared \(declared)")
            }
        }
        return results
    }
}
