import GraphIR
import Tensors

extension IntegerFusionRewriter {
    /// Operators computed more than once from the same inputs — exported Transformers rebuild the same
    /// `Unsqueeze(batch)`, `Concat(batch, seq, heads, size)` and attention-mask `Where` in every layer — run
    /// once: later copies go and their readers read the first copy's outputs. Inputs count as the same when
    /// they are the same value, or small constants (≤ 64 elements) of equal type, shape and contents.
    ///
    /// Only default-domain operators without subgraphs or randomness, whose outputs are not graph outputs.
    mutating func deduplicateComputations() {
        var firstByKey: [String: Int] = [:]
        var alias: [String: String] = [:]
        for index in graph.nodes.indices where isFree([index]) {
            let node = node(index)
            guard node.normalizedDomain.isEmpty, node.opType != "Constant", !node.outputs.isEmpty,
                  !Self.excludedFromDeduplication.contains(node.opType), !node.opType.hasPrefix("Random"),
                  !node.attributes.values.contains(where: \.holdsGraph),
                  !node.outputs.contains(where: { graphOutputs.contains($0) })
            else { continue }
            let inputs = node.inputs.map { name -> String in
                let name = alias[name] ?? name
                guard let value = constant(name), value.count <= 64 else { return "v:" + name }
                return "c:\(value.dtype)\(value.shape):" + value.withUnsafeBytes { $0.map { String($0) }.joined(separator: ",") }
            }
            let attributes = node.attributes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            let key = ([node.opType, "\(node.outputs.count)"] + inputs + ["|"] + attributes).joined(separator: ";")
            guard let first = firstByKey[key] else {
                firstByKey[key] = index
                continue
            }
            // An optional output the copy writes but the first does not: keep the copy.
            guard zip(node.outputs, self.node(first).outputs).allSatisfy({ $0.isEmpty || !$1.isEmpty }) else { continue }
            for (duplicate, original) in zip(node.outputs, self.node(first).outputs) where !duplicate.isEmpty {
                alias[duplicate] = original
                redirect(duplicate, to: original)
            }
            plan(removing: [index], anchor: index, with: [])
        }
    }

    /// Operators whose repeated runs may differ, or that are not worth comparing.
    private static let excludedFromDeduplication: Set<String> = ["Multinomial", "Dropout", "If", "Loop", "Scan"]
}

private extension Attribute {
    var holdsGraph: Bool {
        switch self {
        case .graph, .graphs: return true
        default: return false
        }
    }
}
