import OrderedCollections
import Tensors

/// Static type and shape inference over a model, in the spirit of `onnx.shape_inference` but with
/// symbolic dimensions carried through shape arithmetic.
///
/// Every value whose element type or shape can be derived gets an entry in `graph.valueInfo` (graph
/// outputs get their declared type refined instead). Dimensions are numbers, symbols taken from the
/// declared inputs (`batch`, `seq`) or `Dim.unknown`; inference never guesses: what it cannot derive stays
/// unknown. Small integer tensors (shapes, axes, indices) are tracked element by element, symbols
/// included, so that `Shape → Gather → Unsqueeze → Concat → Reshape` chains resolve.
///
/// One derived symbol exists: slicing `[0:s]` from an axis of known length `n` (BERT exports slice
/// position ids that way) gives `min(s,n)`, which broadcasts with `s` to `s` — any other outcome would
/// fail at run time.
///
/// Rules follow the ONNX operator specifications at the model's opset (e.g. `axes` as an attribute or
/// as an input). Subgraphs (`If` branches, `Loop`/`Scan` bodies) are inferred too, seeing the types of
/// the values they capture. Operators of other domains, and default-domain ones without a rule, get
/// unknown outputs.
///
/// Pooling with `ceil_mode` follows the ONNX reference implementation and ONNX Runtime: a last window
/// that would start inside the end padding is dropped (`onnx.shape_inference` itself omits that step).
public enum ShapeInference {
    /// `model` with value annotations filled in.
    ///
    /// - Throws: `GraphError.shapeMismatch` naming the node when shapes or types contradict each other
    ///   (e.g. `MatMul` of `[2, 3]` by `[4, 5]`, or an inferred type that differs from a declared one),
    ///   `GraphError.invalidAttribute` for malformed attributes, and the structural `GraphError`s of
    ///   `Graph.topologicalOrder`.
    public static func infer(_ model: Model) throws -> Model {
        var result = model
        let engine = InferenceEngine(opsetImports: model.opsetImports)
        result.graph = try engine.infer(model.graph, outer: [:], outerConstants: [:]).graph
        return result
    }

    /// The inferred type of every value of `graph` (inputs, initializers, node outputs). Names in
    /// `outerScope` (values of enclosing graphs) are taken as unknown.
    static func inferredTypes(
        of graph: Graph, opsetImports: OrderedDictionary<String, Int>, outerScope: Set<String> = []
    ) throws -> [String: InferredType] {
        let engine = InferenceEngine(opsetImports: opsetImports)
        var outer: [String: InferredType] = [:]
        for name in outerScope { outer[name] = .unknown }
        return try engine.infer(graph, outer: outer, outerConstants: [:]).types
    }

    /// The dims `Shape` (opset 15+) returns for `start`/`end`: negative values count from the back and
    /// both are clamped to `[0, rank]`.
    static func shapeOperatorRange(rank: Int, start: Int?, end: Int?) -> Range<Int> {
        func clamp(_ position: Int) -> Int {
            let shifted = position < 0 ? position &+ rank : position
            return min(max(shifted, 0), rank)
        }
        let lower = clamp(start ?? 0)
        let upper = clamp(end ?? rank)
        return lower..<max(lower, upper)
    }
}

/// Walks graphs in topological order, applying one rule per node.
final class InferenceEngine {
    let opsetImports: OrderedDictionary<String, Int>

    init(opsetImports: OrderedDictionary<String, Int>) {
        self.opsetImports = opsetImports
    }

    func opset(forDomain domain: String) -> Int? {
        let key = domain == "ai.onnx" ? "" : domain
        if let version = opsetImports[key] { return version }
        return key == "" ? (opsetImports["ai.onnx"] ?? PassContext.fallbackOpset) : nil
    }

    /// Infers `graph`, whose nodes may read the `outer` values of enclosing graphs.
    ///
    /// - Parameter inputSeeds: types for the graph's inputs by position, merged with the declared ones
    ///   (used for loop bodies, whose inputs follow the loop's).
    /// - Returns: the annotated graph, and the types of all values in scope.
    func infer(
        _ graph: Graph, outer: [String: InferredType], outerConstants: [String: Tensor], inputSeeds: [InferredType] = []
    ) throws -> (graph: Graph, types: [String: InferredType]) {
        var types = outer
        var constants = outerConstants
        let declaredInputs = Set(graph.inputs.map(\.name))

        for (position, input) in graph.inputs.enumerated() {
            var type = InferredType(declared: input.type)
            if let tensor = graph.initializers[input.name] {
                // An initializer that is also an input is only a default: its type holds, its value not.
                type.dtype = type.dtype ?? tensor.dtype
                type.shape = type.shape ?? tensor.shape.map { .value($0) }
            }
            if position < inputSeeds.count {
                // Seeds only fill gaps: a body that declares its inputs differently keeps its declaration
                // (the loop itself reports the mismatch at run time).
                if let seeded = try? refine(inputSeeds[position], declared: input.type, label: graph.name) { type = seeded }
                type.value = nil
            }
            types[input.name] = type
        }
        for (name, tensor) in graph.initializers where !declaredInputs.contains(name) {
            types[name] = InferredType(constant: tensor)
            constants[name] = tensor
        }
        for sparse in graph.sparseInitializers where !declaredInputs.contains(sparse.valuesName) {
            types[sparse.valuesName] = InferredType(dtype: sparse.values.dtype, shape: sparse.dims.map { .value($0) })
        }

        var declaredOutputs: [String: ValueType] = [:]
        for output in graph.outputs { if let type = output.type { declaredOutputs[output.name] = type } }

        var result = graph
        for index in try graph.topologicalOrder(outerScope: Set(outer.keys)) {
            let node = graph.nodes[index]
            var inference = NodeInference(
                node: node, opset: opset(forDomain: node.domain),
                inputs: node.inputs.map { $0.isEmpty ? .unknown : (types[$0] ?? .unknown) },
                constants: node.inputs.map { $0.isEmpty ? nil : constants[$0] },
                engine: self, scopeTypes: types, scopeConstants: constants)
            let inferred = try inference.run()
            if !inference.updatedSubgraphs.isEmpty {
                for (key, attribute) in inference.updatedSubgraphs { result.nodes[index].attributes[key] = attribute }
            }
            for (position, output) in node.outputs.enumerated() where !output.isEmpty {
                var type = position < inferred.count ? inferred[position] : .unknown
                type.normalizeValue()
                if let declared = graph.valueInfo[output]?.type ?? declaredOutputs[output] {
                    type = try refine(type, declared: declared, label: node.label, value: output)
                }
                types[output] = type
            }
            if node.opType == "Constant", node.normalizedDomain == "", let output = node.outputs.first,
               let tensor = node.constantNodeValue {
                constants[output] = tensor
            }
        }

        // Record what was learnt: value annotations for intermediates, refined types for outputs.
        let outputNames = Set(graph.outputs.map(\.name))
        for node in result.nodes {
            for output in node.outputs where !output.isEmpty && !outputNames.contains(output) {
                guard let type = types[output]?.valueType else { continue }
                let doc = result.valueInfo[output]?.docString ?? ""
                result.valueInfo[output] = ValueInfo(name: output, type: type, docString: doc)
            }
        }
        for index in result.outputs.indices {
            if let type = types[result.outputs[index].name]?.valueType { result.outputs[index].type = type }
        }
        return (result, types)
    }

    /// Merges an inferred type with a declared one: numbers beat symbols beat unknown, and two different
    /// numbers (or element types, or ranks) are a contradiction.
    func refine(_ inferred: InferredType, declared: ValueType?, label: String, value: String? = nil) throws -> InferredType {
        guard case .tensor(let declaredType, let declaredShape)? = declared else {
            var kept = inferred
            if let declared, !inferred.hasTensorInfo { kept.nonTensor = declared }
            return kept
        }
        let subject = value.map { "'\($0)'" } ?? "the value"
        var merged = inferred
        if let declaredType {
            if let inferredType = inferred.dtype, inferredType != declaredType {
                throw GraphError.shapeMismatch(
                    node: label, reason: "\(subject) is declared \(declaredType) but computes \(inferredType)")
            }
            merged.dtype = declaredType
        }
        if let declaredShape {
            if let inferredShape = inferred.shape {
                guard inferredShape.count == declaredShape.count else {
                    throw GraphError.shapeMismatch(
                        node: label,
                        reason: "\(subject) is declared with shape \(declaredShape) but computes \(inferredShape)")
                }
                merged.shape = try zip(inferredShape, declaredShape).map { computed, stated in
                    guard let dim = Dim.unify(computed, stated) else {
                        throw GraphError.shapeMismatch(
                            node: label,
                            reason: "\(subject) is declared with shape \(declaredShape) but computes \(inferredShape)")
                    }
                    // A computed symbol is kept over a declared one: it links to the inputs' symbols.
                    if case .symbol = computed, case .symbol = stated { return computed }
                    return dim
                }
            } else {
                merged.shape = declaredShape
            }
        }
        return merged
    }
}
