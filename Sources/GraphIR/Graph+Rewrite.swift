import OrderedCollections
import Tensors

/// Small, safe edits that passes compose: renaming values, redirecting readers, removing and inserting
/// nodes, fresh names, and reading constants.
///
/// Subgraphs (`If`/`Loop`/`Scan` bodies) read values of enclosing graphs by name, so every edit that
/// changes what a name means also follows those captures into nested graphs, stopping where a nested
/// graph defines the name itself.
extension Graph {
    // MARK: - Reading the graph

    /// Names this graph defines: inputs, initializers and node outputs (not those of nested graphs).
    public var definedValueNames: Set<String> {
        var names = sourceValueNames
        for node in nodes {
            for output in node.outputs where !output.isEmpty { names.insert(output) }
        }
        return names
    }

    /// For each value, the indices of the nodes that read it — as an explicit input or through a
    /// subgraph capture. A node reading a value twice is listed once.
    public var readers: [String: [Int]] {
        var map: [String: [Int]] = [:]
        for (index, node) in nodes.enumerated() {
            var seen = Set<String>()
            for name in Graph.valuesRead(by: node) where seen.insert(name).inserted {
                map[name, default: []].append(index)
            }
        }
        return map
    }

    /// Names of the graph outputs.
    public var outputNames: Set<String> { Set(outputs.map(\.name)) }

    /// The constant tensor `name` holds, or nil when it is not a constant of this graph.
    ///
    /// Constants are initializers that are *not* also declared inputs (those are defaults a caller may
    /// override) and outputs of `Constant` nodes whose value is a dense tensor.
    public func constantValue(named name: String) -> Tensor? {
        if let tensor = initializers[name] {
            return inputs.contains(where: { $0.name == name }) ? nil : tensor
        }
        for node in nodes where node.opType == "Constant" && node.normalizedDomain == "" && node.outputs.first == name {
            return node.constantNodeValue
        }
        return nil
    }

    /// Every constant of this graph by name (see `constantValue(named:)`), built in one sweep.
    public var constantValues: [String: Tensor] {
        let declaredInputs = Set(inputs.map(\.name))
        var table: [String: Tensor] = [:]
        for (name, tensor) in initializers where !declaredInputs.contains(name) { table[name] = tensor }
        for node in nodes where node.opType == "Constant" && node.normalizedDomain == "" {
            if let output = node.outputs.first, !output.isEmpty, let value = node.constantNodeValue {
                table[output] = value
            }
        }
        return table
    }

    // MARK: - Names

    /// Every name used in this graph and in all nested graphs: values, initializers and node names.
    public var allNames: Set<String> {
        var names = Set<String>()
        collectNames(into: &names)
        return names
    }

    private func collectNames(into names: inout Set<String>) {
        names.formUnion(inputs.map(\.name))
        names.formUnion(outputs.map(\.name))
        names.formUnion(initializers.keys)
        names.formUnion(valueInfo.keys)
        for sparse in sparseInitializers { names.insert(sparse.valuesName) }
        for node in nodes {
            if !node.name.isEmpty { names.insert(node.name) }
            names.formUnion(node.inputs.filter { !$0.isEmpty })
            names.formUnion(node.outputs.filter { !$0.isEmpty })
            node.forEachSubgraph { $0.collectNames(into: &names) }
        }
    }

    /// A name that nothing in this graph or its nested graphs uses yet, nor any name in `reserved`:
    /// `base` itself when free, otherwise `base_1`, `base_2`, …
    ///
    /// Each call scans the graph; when making many names, use `UniqueNamer`.
    public func uniqueName(base: String, reserved: Set<String> = []) -> String {
        var namer = UniqueNamer(graph: self, reserved: reserved)
        return namer.make(base: base)
    }

    // MARK: - Renaming and redirecting

    /// Renames value `old` to `new` everywhere: its definition (node output, input, initializer, sparse
    /// initializer), every reader including subgraph captures, graph outputs and value annotations.
    ///
    /// - Throws: `GraphError.duplicateDefinition` when `new` already names a value this graph defines.
    ///   (A graph output called `new` that nothing defines yet is fine: the renamed value fills it.)
    public mutating func renameValue(_ old: String, to new: String) throws {
        guard old != new, !old.isEmpty else { return }
        if definedValueNames.contains(new) {
            throw GraphError.duplicateDefinition(name: new)
        }
        for index in nodes.indices {
            for slot in nodes[index].outputs.indices where nodes[index].outputs[slot] == old {
                nodes[index].outputs[slot] = new
            }
        }
        for index in inputs.indices where inputs[index].name == old { inputs[index].name = new }
        for index in outputs.indices where outputs[index].name == old { outputs[index].name = new }
        if let tensor = initializers[old], let position = initializers.index(forKey: old) {
            initializers.remove(at: position)
            initializers.updateValue(tensor, forKey: new, insertingAt: position)
        }
        for index in sparseInitializers.indices where sparseInitializers[index].valuesName == old {
            sparseInitializers[index].valuesName = new
        }
        if var info = valueInfo[old], let position = valueInfo.index(forKey: old) {
            valueInfo.remove(at: position)
            info.name = new
            valueInfo.updateValue(info, forKey: new, insertingAt: position)
        }
        redirectReads(of: old, to: new)
    }

    /// Makes every reader of `old` read `new` instead: node inputs and subgraph captures, and graph
    /// outputs when `includingGraphOutputs` is set. The definition of `old` is left alone.
    ///
    /// Redirecting the main graph's outputs changes the model's interface, hence the opt-in; inside a
    /// subgraph outputs are matched by position, so redirecting them there is harmless.
    public mutating func replaceUses(of old: String, with new: String, includingGraphOutputs: Bool = false) {
        guard old != new, !old.isEmpty else { return }
        redirectReads(of: old, to: new)
        if includingGraphOutputs {
            for index in outputs.indices where outputs[index].name == old { outputs[index].name = new }
        }
    }

    /// Redirects the readers of each output of node `index` to the value at the same position of
    /// `replacements` ("" leaves that output's readers alone).
    public mutating func replaceUses(ofNodeAt index: Int, with replacements: [String], includingGraphOutputs: Bool = false) {
        for (output, replacement) in zip(nodes[index].outputs, replacements) where !output.isEmpty && !replacement.isEmpty {
            replaceUses(of: output, with: replacement, includingGraphOutputs: includingGraphOutputs)
        }
    }

    /// Node inputs and captures inside nested graphs; does not touch graph outputs or definitions.
    private mutating func redirectReads(of old: String, to new: String) {
        for index in nodes.indices {
            for slot in nodes[index].inputs.indices where nodes[index].inputs[slot] == old {
                nodes[index].inputs[slot] = new
            }
            nodes[index].mapSubgraphs { body in body.redirectCapture(of: old, to: new) }
        }
    }

    /// Inside a nested graph: follow a capture of an outer value, unless this graph shadows the name.
    private mutating func redirectCapture(of old: String, to new: String) {
        guard !definedValueNames.contains(old) else { return }
        redirectReads(of: old, to: new)
        // A subgraph output may be an outer value passed straight through.
        for index in outputs.indices where outputs[index].name == old { outputs[index].name = new }
    }

    // MARK: - Removing and inserting nodes

    /// Removes the nodes at `indices` (out-of-range indices are ignored) and the value annotations of
    /// the values they defined, keeping the order of the rest.
    public mutating func removeNodes(at indices: Set<Int>) {
        guard !indices.isEmpty else { return }
        let graphOutputs = outputNames
        var kept: [Node] = []
        kept.reserveCapacity(nodes.count)
        for (index, node) in nodes.enumerated() {
            if indices.contains(index) {
                for output in node.outputs where !output.isEmpty && !graphOutputs.contains(output) {
                    valueInfo.removeValue(forKey: output)
                }
            } else {
                kept.append(node)
            }
        }
        nodes = kept
    }

    /// Inserts `node` where it keeps the node list topologically ordered: right after the last producer
    /// of what it reads. When a reader of its outputs comes earlier than that, the whole list is
    /// reordered (stably) instead.
    ///
    /// - Returns: the index the node ended up at.
    /// - Throws: `GraphError.duplicateDefinition` when it defines an existing value, `.cycle` when no
    ///   order exists.
    @discardableResult
    public mutating func insertNode(_ node: Node) throws -> Int {
        let defined = definedValueNames
        for output in node.outputs where !output.isEmpty && defined.contains(output) {
            throw GraphError.duplicateDefinition(name: output)
        }
        let producerIndex = producers
        var earliest = 0
        for name in Graph.valuesRead(by: node) {
            if let producer = producerIndex[name] { earliest = max(earliest, producer + 1) }
        }
        let newOutputs = Set(node.outputs.filter { !$0.isEmpty })
        let firstReader = nodes.indices.first { index in
            Graph.valuesRead(by: nodes[index]).contains(where: newOutputs.contains)
        }
        if let firstReader, firstReader < earliest {
            nodes.append(node)
            try sortNodesStably()
            return nodes.firstIndex(of: node) ?? nodes.count - 1
        }
        nodes.insert(node, at: earliest)
        return earliest
    }

    /// Inserts several nodes, each as `insertNode` does; they may read each other's outputs.
    public mutating func insertNodes(_ newNodes: [Node]) throws {
        for node in newNodes { try insertNode(node) }
    }

    /// Topological sort that treats names no node defines as provided from outside (inputs, outer scopes).
    mutating func sortNodesStably() throws {
        var produced = Set<String>()
        for node in nodes { produced.formUnion(node.outputs.filter { !$0.isEmpty }) }
        var external = Set<String>()
        for node in nodes {
            for name in Graph.valuesRead(by: node) where !produced.contains(name) { external.insert(name) }
        }
        self = try sortedTopologically(outerScope: external)
    }
}

/// Hands out names no graph value, initializer or node uses, remembering what it handed out.
public struct UniqueNamer: Sendable {
    private var used: Set<String>

    /// - Parameters:
    ///   - graph: names in it and in its nested graphs are taken.
    ///   - reserved: further taken names, e.g. the values of enclosing graphs.
    public init(graph: Graph, reserved: Set<String> = []) {
        used = graph.allNames.union(reserved)
    }

    /// `base` when free, otherwise `base_1`, `base_2`, …; the result counts as used from now on.
    public mutating func make(base: String) -> String {
        var candidate = base
        var suffix = 0
        while candidate.isEmpty || used.contains(candidate) {
            suffix += 1
            candidate = "\(base)_\(suffix)"
        }
        used.insert(candidate)
        return candidate
    }
}

extension Node {
    /// The tensor a `Constant` node produces, from whichever `value*` attribute it carries: `value`
    /// (a tensor), `value_float`/`value_floats` (float32), `value_int`/`value_ints` (int64). Nil for
    /// other nodes and for string or sparse constants, which `Tensor` does not represent.
    public var constantNodeValue: Tensor? {
        guard opType == "Constant", normalizedDomain == "" else { return nil }
        if let tensor = attributes["value"]?.tensorValue { return tensor }
        if let value = attributes["value_float"]?.floatValue { return Tensor(scalar: value) }
        if let values = attributes["value_floats"]?.floatsValue {
            return try? Tensor(shape: [values.count], scalars: values)
        }
        if let value = attributes["value_int"]?.intValue { return Tensor(scalar: Int64(value)) }
        if let values = attributes["value_ints"]?.intsValue {
            return try? Tensor(shape: [values.count], scalars: values.map { Int64($0) })
        }
        return nil
    }

    /// True when some attribute holds a graph (`If`, `Loop`, `Scan`, …).
    public var hasSubgraphs: Bool {
        attributes.values.contains { attribute in
            switch attribute {
            case .graph, .graphs: return true
            default: return false
            }
        }
    }

    /// Calls `body` with each graph held in an attribute.
    public func forEachSubgraph(_ body: (Graph) throws -> Void) rethrows {
        for attribute in attributes.values {
            switch attribute {
            case .graph(let graph): try body(graph)
            case .graphs(let graphs): for graph in graphs { try body(graph) }
            default: break
            }
        }
    }

    /// Rewrites each graph held in an attribute in place.
    public mutating func mapSubgraphs(_ transform: (inout Graph) throws -> Void) rethrows {
        guard hasSubgraphs else { return }
        for key in attributes.keys {
            switch attributes[key] {
            case .graph(var graph)?:
                try transform(&graph)
                attributes[key] = .graph(graph)
            case .graphs(var graphs)?:
                for index in graphs.indices { try transform(&graphs[index]) }
                attributes[key] = .graphs(graphs)
            default: break
            }
        }
    }
}
