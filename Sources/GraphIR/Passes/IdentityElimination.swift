/// Removes `Identity` nodes by letting readers use the input directly.
///
/// `y = Identity(x)`: readers of `y` (including subgraph captures) read `x`, and the node goes. When `y`
/// is a graph output its name is part of the interface, so instead `x` is renamed to `y` — possible
/// only when `x` is computed by a node of this graph and is not itself a graph output; otherwise (e.g.
/// an input passed straight to an output, or an outer value returned by a subgraph) the node stays.
public struct IdentityElimination: GraphPass {
    public var name: String { "identity-elimination" }

    public init() {}

    public func run(on graph: inout Graph, context: PassContext) throws -> Bool {
        var changed = false
        var index = 0
        while index < graph.nodes.count {
            if try eliminate(at: index, in: &graph) {
                changed = true
            } else {
                index += 1
            }
        }
        return changed
    }

    /// Removes node `index` when it is an eliminable Identity; returns whether it did.
    private func eliminate(at index: Int, in graph: inout Graph) throws -> Bool {
        let node = graph.nodes[index]
        guard node.opType == "Identity", node.normalizedDomain == "", node.inputs.count == 1, node.outputs.count == 1,
              let input = node.inputs.first, let output = node.outputs.first, !input.isEmpty, !output.isEmpty
        else { return false }
        let graphOutputs = graph.outputNames
        if !graphOutputs.contains(output) {
            graph.removeNodes(at: [index])
            graph.replaceUses(of: output, with: input)
            return true
        }
        guard !graphOutputs.contains(input), graph.producers[input] != nil else { return false }
        graph.removeNodes(at: [index])
        graph.valueInfo.removeValue(forKey: input)
        try graph.renameValue(input, to: output)
        return true
    }
}
