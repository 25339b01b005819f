import GraphIR
import Tensors

/// Raises a model's default-domain opset so quantization operators of a newer version can be written
/// (per-axis DequantizeLinear needs 13; 16-bit and 4-bit codes need 21).
///
/// Declaring a newer opset changes the meaning of the few operators whose signature changed in between,
/// so those are rewritten: from 13, Squeeze, Unsqueeze, ReduceSum and Split read their axes or split sizes
/// from an input instead of an attribute; from 18, so do the other reductions. Operators whose behaviour
/// changed in a way this does not rewrite (Softmax's axis semantics at 13, GroupNormalization at 21, …)
/// and models older than opset 11 are refused, naming the node.
enum OpsetUpgrade {
    /// Reductions whose `axes` became an input at 18 (ReduceSum moved at 13).
    static let reductionsMovedAt18: Set<String> = [
        "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
        "ReduceProd", "ReduceSumSquare",
    ]
    /// Operators whose attribute became an input at 13.
    static let attributesMovedAt13: [String: String] = [
        "Squeeze": "axes", "Unsqueeze": "axes", "ReduceSum": "axes", "Split": "split",
    ]
    /// Operators whose meaning changed between 11 and 22 in ways not rewritten here, by the version of the change.
    static let changedSemantics: [String: Int] = [
        "Softmax": 13, "LogSoftmax": 13, "Hardmax": 13, "GroupNormalization": 21, "DFT": 20,
    ]

    /// Why the graph (at `from`) cannot be raised to `to`, or nil when it can.
    static func obstacle(in graph: Graph, from: Int, to: Int) -> String? {
        guard to > from else { return nil }
        guard from >= 11 else { return "the model's opset \(from) is older than 11" }
        for node in graph.nodes where node.normalizedDomain.isEmpty {
            if let version = changedSemantics[node.opType], from < version, to >= version {
                // Softmax and friends keep their meaning when they act on the last axis.
                if version == 13, node.attributes["axis"]?.intValue == -1 { continue }
                return "\(node.label) changed meaning at opset \(version)"
            }
            var problem: String?
            node.forEachSubgraph { body in
                if problem == nil { problem = obstacle(in: body, from: from, to: to) }
            }
            if let problem { return problem }
        }
        return nil
    }

    /// Declares opset `to` for the default domain, rewriting the operators whose signature changed.
    static func raise(_ model: inout Model, to: Int) throws {
        let from = model.opsetVersion(domain: "") ?? 1
        guard to > from else { return }
        if let obstacle = obstacle(in: model.graph, from: from, to: to) {
            throw QuantizationError.unsupportedOption("cannot raise the model to opset \(to): \(obstacle)")
        }
        var namer = UniqueNamer(graph: model.graph)
        rewrite(&model.graph, from: from, to: to, namer: &namer)
        model.opsetImports[""] = to
        model.opsetImports.removeValue(forKey: "ai.onnx")
        model.raiseIRVersion(forOpset: to)
    }

    private static func rewrite(_ graph: inout Graph, from: Int, to: Int, namer: inout UniqueNamer) {
        for index in graph.nodes.indices {
            graph.nodes[index].mapSubgraphs { rewrite(&$0, from: from, to: to, namer: &namer) }
            let node = graph.nodes[index]
            guard node.normalizedDomain.isEmpty else { continue }
            var attribute: String?
            if from < 13, to >= 13 { attribute = attributesMovedAt13[node.opType] }
            if from < 18, to >= 18, reductionsMovedAt18.contains(node.opType) { attribute = "axes" }
            guard let attribute, let values = node.attributes[attribute]?.intsValue else { continue }
            let name = namer.make(base: (node.name.isEmpty ? node.opType : node.name) + "_" + attribute)
            graph.initializers[name] = try? Tensor(shape: [values.count], scalars: values.map { Int64($0) })
            graph.nodes[index].attributes.removeValue(forKey: attribute)
            // Split: input 1; Squeeze/Unsqueeze/Reduce*: input 1 (after data).
            var inputs = node.inputs
            while inputs.count < 1 { inputs.append("") }
            inputs.insert(name, at: 1)
            graph.nodes[index].inputs = Array(inputs.prefix(2))
        }
    }
}
