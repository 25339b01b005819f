extension Graph {
    /// Names of the values visible inside this graph before any node runs: inputs and initializers.
    public var sourceValueNames: Set<String> {
        var names = Set(inputs.map(\.name))
        names.formUnion(initializers.keys)
        for sparse in sparseInitializers { names.insert(sparse.valuesName) }
        return names
    }

    /// Values a node reads: its explicit inputs plus any value its subgraphs capture from this scope.
    public static func valuesRead(by node: Node) -> [String] {
        var names = node.inputs.filter { !$0.isEmpty }
        for attribute in node.attributes.values {
            switch attribute {
            case .graph(let body): names += body.capturedValueNames
            case .graphs(let bodies): for body in bodies { names += body.capturedValueNames }
            default: break
            }
        }
        return names
    }

    /// Values this graph (or its nested subgraphs) reads but does not define itself.
    public var capturedValueNames: [String] {
        var defined = sourceValueNames
        for node in nodes { defined.formUnion(node.outputs) }
        var captured: [String] = []
        var seen = Set<String>()
        for node in nodes {
            for name in Graph.valuesRead(by: node) where !defined.contains(name) && seen.insert(name).inserted {
                captured.append(name)
            }
        }
        return captured
    }

    /// The nodes in an order where each runs after the producers of what it reads (Kahn's algorithm,
    /// stable: among ready nodes the earliest in `nodes` comes first).
    ///
    /// - Parameter outerScope: names provided by enclosing graphs (for subgraphs).
    /// - Throws: `GraphError.undefinedValue`, `.duplicateDefinition` or `.cycle`.
    public func topologicalOrder(outerScope: Set<String> = []) throws -> [Int] {
        var producer: [String: Int] = [:]
        for (index, node) in nodes.enumerated() {
            for output in node.outputs where !output.isEmpty {
                if producer.updateValue(index, forKey: output) != nil {
                    throw GraphError.duplicateDefinition(name: output)
                }
            }
        }
        let available = sourceValueNames.union(outerScope)
        var pending = [Int](repeating: 0, count: nodes.count)
        var dependents = [[Int]](repeating: [], count: nodes.count)
        for (index, node) in nodes.enumerated() {
            var waitsOn = Set<Int>()
            for name in Graph.valuesRead(by: node) {
                if let source = producer[name] {
                    if waitsOn.insert(source).inserted { dependents[source].append(index) }
                } else if !available.contains(name) {
                    throw GraphError.undefinedValue(name: name, node: node.label)
                }
            }
            pending[index] = waitsOn.count
        }
        // A min-heap would keep strict file order; a sorted ready list is simpler and graphs are small.
        var ready = (0..<nodes.count).filter { pending[$0] == 0 }
        var order: [Int] = []
        order.reserveCapacity(nodes.count)
        var cursor = 0
        while cursor < ready.count {
            let index = ready[cursor]
            cursor += 1
            order.append(index)
            for next in dependents[index] {
                pending[next] -= 1
                if pending[next] == 0 { ready.append(next) }
            }
        }
        guard order.count == nodes.count else {
            let stuck = (0..<nodes.count).filter { pending[$0] > 0 }
            throw GraphError.cycle(values: stuck.flatMap { nodes[$0].outputs })
        }
        return order
    }

    /// This graph with its nodes sorted topologically.
    public func sortedTopologically(outerScope: Set<String> = []) throws -> Graph {
        var sorted = self
        sorted.nodes = try topologicalOrder(outerScope: outerScope).map { nodes[$0] }
        return sorted
    }
}
