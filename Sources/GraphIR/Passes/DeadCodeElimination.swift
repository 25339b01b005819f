/// Removes nodes whose results nothing needs, and constants nothing reads.
///
/// A value is needed when it is a graph output or is read — directly or through a subgraph capture —
/// by a needed node. Nodes are removed when none of their outputs is needed; ONNX operators have no
/// side effects, so nothing else can observe them.
///
/// Kept on purpose:
/// - nodes with no named outputs at all. No standard ONNX operator is like that; a custom-domain node
///   without outputs can only exist for an effect we cannot see (logging, a device call), so it stays,
///   with everything it reads.
/// - declared graph inputs, even unused ones, and initializers that are also declared inputs: both are
///   part of the model's interface.
///
/// Unused initializers, sparse initializers and value annotations of removed values are dropped.
public struct DeadCodeElimination: GraphPass {
    public var name: String { "dead-code-elimination" }

    public init() {}

    public func run(on graph: inout Graph, context: PassContext) throws -> Bool {
        let producer = graph.producers
        var needed = Set<String>()
        var pending: [String] = []
        func need(_ name: String) {
            if !name.isEmpty, needed.insert(name).inserted { pending.append(name) }
        }
        var liveNodes = Set<Int>()
        for output in graph.outputs { need(output.name) }
        for (index, node) in graph.nodes.enumerated() where !node.outputs.contains(where: { !$0.isEmpty }) {
            liveNodes.insert(index)
            Graph.valuesRead(by: node).forEach(need)
        }
        while let name = pending.popLast() {
            guard let index = producer[name], liveNodes.insert(index).inserted else { continue }
            Graph.valuesRead(by: graph.nodes[index]).forEach(need)
        }

        let deadNodes = Set(graph.nodes.indices).subtracting(liveNodes)
        graph.removeNodes(at: deadNodes)

        let declaredInputs = Set(graph.inputs.map(\.name))
        let deadInitializers = graph.initializers.keys.filter { !needed.contains($0) && !declaredInputs.contains($0) }
        for name in deadInitializers {
            graph.initializers.removeValue(forKey: name)
            graph.valueInfo.removeValue(forKey: name)
        }
        let sparseCount = graph.sparseInitializers.count
        graph.sparseInitializers.removeAll { !needed.contains($0.valuesName) && !declaredInputs.contains($0.valuesName) }
        return !deadNodes.isEmpty || !deadInitializers.isEmpty || graph.sparseInitializers.count != sparseCount
    }
}
