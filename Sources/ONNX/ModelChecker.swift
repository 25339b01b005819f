import GraphIR

/// Structural checks of a model, in the spirit of `onnx.checker` (without operator schemas).
///
/// - The IR version is one ONNX defines; opset versions are positive, the default domain's no newer
///   than the latest ONNX release knows.
/// - Every node has an operator type and its domain is imported.
/// - Static single assignment: every value has one definition (graph input, initializer or one node
///   output), and every node reads only values defined before it — in its graph, or, for subgraphs of
///   `If`/`Loop`/`Scan`, in an enclosing graph before the owning node.
/// - Every graph output is defined.
public enum ModelChecker {
    /// The latest IR version ONNX 1.23 defines.
    public static let latestIRVersion = 14
    /// The latest opset of the default domain ONNX 1.23 defines.
    public static let latestDefaultOpset = 28

    /// Throws the first problem found, as an `ONNXError` naming the graph, node or value at fault.
    public static func check(_ model: Model) throws {
        guard (1...latestIRVersion).contains(model.irVersion) else {
            throw ONNXError.invalidVersion(
                what: "IR version", version: model.irVersion, reason: "is not between 1 and \(latestIRVersion)")
        }
        // IR version 3 introduced opset_import; from then on a model must import what it uses.
        if model.irVersion >= 3 && model.opsetImports.isEmpty {
            throw ONNXError.invalidVersion(
                what: "IR version", version: model.irVersion, reason: "requires at least one opset import")
        }
        for (domain, version) in model.opsetImports {
            let name = domain.isEmpty ? "ai.onnx" : domain
            guard version >= 1 else {
                throw ONNXError.invalidVersion(what: "opset of domain '\(name)'", version: version, reason: "is not positive")
            }
            if (domain.isEmpty || domain == "ai.onnx") && version > latestDefaultOpset {
                throw ONNXError.invalidVersion(
                    what: "opset of domain 'ai.onnx'", version: version,
                    reason: "is newer than the latest ONNX opset (\(latestDefaultOpset))")
            }
        }
        try check(model.graph, outerScope: [], model: model, isMain: true)
    }

    private static func check(_ graph: Graph, outerScope: Set<String>, model: Model, isMain: Bool) throws {
        var defined = Set<String>()
        for input in graph.inputs {
            guard defined.insert(input.name).inserted else {
                throw ONNXError.duplicateDefinition(graph: graph.name, value: input.name, node: "graph input")
            }
        }
        // Initializers may repeat a declared input (a default value an input can override).
        defined.formUnion(graph.initializers.keys)
        var sparseNames = Set<String>()
        for sparse in graph.sparseInitializers where !sparse.valuesName.isEmpty {
            guard graph.initializers[sparse.valuesName] == nil, sparseNames.insert(sparse.valuesName).inserted else {
                throw ONNXError.duplicateDefinition(graph: graph.name, value: sparse.valuesName, node: "sparse initializer")
            }
            defined.insert(sparse.valuesName)
        }

        for node in graph.nodes {
            guard !node.opType.isEmpty else {
                throw ONNXError.invalidNode(graph: graph.name, node: node.label, reason: "it has no operator type")
            }
            guard model.opsetVersion(domain: node.domain) != nil else {
                throw ONNXError.missingOpsetImport(node: node.label, domain: node.normalizedDomain)
            }
            for input in node.inputs where !input.isEmpty {
                guard defined.contains(input) || outerScope.contains(input) else {
                    throw ONNXError.undefinedInput(graph: graph.name, node: node.label, value: input)
                }
            }
            var subgraphs: [Graph] = []
            for attribute in node.attributes.values {
                switch attribute {
                case .graph(let body): subgraphs.append(body)
                case .graphs(let bodies): subgraphs += bodies
                default: break
                }
            }
            if !subgraphs.isEmpty {
                let visible = outerScope.union(defined)
                for body in subgraphs { try check(body, outerScope: visible, model: model, isMain: false) }
            }
            for output in node.outputs where !output.isEmpty {
                guard defined.insert(output).inserted else {
                    throw ONNXError.duplicateDefinition(graph: graph.name, value: output, node: node.label)
                }
            }
        }

        for output in graph.outputs {
            // A subgraph may return a value of an enclosing graph directly.
            guard defined.contains(output.name) || (!isMain && outerScope.contains(output.name)) else {
                throw ONNXError.undefinedGraphOutput(graph: graph.name, value: output.name)
            }
        }
    }
}
