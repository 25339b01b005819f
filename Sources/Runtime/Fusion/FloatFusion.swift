import GraphIR
import Tensors

/// Float subgraphs that run as one kernel, found by pattern when a graph is compiled.
///
/// Unlike a graph rewrite, a fusion keeps the original nodes: the plan compiles them beside the fused
/// kernel, and a run whose `ValueObserver` asks for a value inside a group runs them instead. So
/// calibration (which observes every Add and Mul output) sees the same values as without fusion, and
/// plain runs get the fused kernel. Fused groups run the built-in kernels, whatever the registry holds.
///
/// Rules (each matched from the group's last node, the root):
/// - exact Gelu as exported from PyTorch: `Mul(Mul(x, Add(Erf(Div(x, √2)), 1)), 0.5)`, in any operand
///   order and with the 0.5 applied at either Mul, or with `Mul(x, 1/√2)` for the Div — one vectorised
///   `x/2 · (1 + erf(x/√2))` instead of five passes over the tensor.
struct FusedGroup {
    /// Index into the graph's nodes of the node whose output the group produces.
    var root: Int
    /// Indices into the graph's nodes of every member, the root included (in no particular order).
    var members: [Int]
    /// The values the fused kernel reads, in its input order.
    var inputs: [String]
    /// Operator name for profiles.
    var opType: String
    var kernel: any Kernel
}

enum FloatFusion {
    /// The groups of `graph` to fuse; no node belongs to two groups.
    static func groups(in graph: Graph) -> [FusedGroup] {
        let context = MatchContext(graph: graph)
        var claimed = Set<Int>()
        var result: [FusedGroup] = []
        for (index, node) in graph.nodes.enumerated() where node.normalizedDomain.isEmpty {
            guard let group = matchGelu(root: index, context) else { continue }
            guard claimed.isDisjoint(with: group.members) else { continue }
            claimed.formUnion(group.members)
            result.append(group)
        }
        return result
    }

    /// What the matchers look up: producers, readers, constants.
    struct MatchContext {
        let graph: Graph
        let producers: [String: Int]
        let readers: [String: [Int]]
        let constants: [String: Tensor]
        let outputs: Set<String>

        init(graph: Graph) {
            self.graph = graph
            producers = graph.producers
            readers = graph.readers
            constants = graph.constantValues
            outputs = graph.outputNames
        }

        /// The node producing `name` when it is a default-domain `opType` node whose only output is read
        /// by exactly one node and is not a graph output: a value a fused group may hide.
        func privateProducer(of name: String, _ opType: String) -> Int? {
            guard let index = producers[name], graph.nodes[index].opType == opType,
                  graph.nodes[index].normalizedDomain.isEmpty, graph.nodes[index].outputs.count == 1,
                  readers[name]?.count == 1, !outputs.contains(name) else { return nil }
            return index
        }

        /// The value of a one-element float32 constant, with its rank.
        func scalar(_ name: String) -> (value: Float, rank: Int)? {
            guard let tensor = constants[name], tensor.dtype == .float32, tensor.count == 1 else { return nil }
            return (tensor.floats[0], tensor.rank)
        }
    }

    /// Whether `value` is within a few float32 ulps of `expected`.
    static func isClose(_ value: Float, _ expected: Float) -> Bool {
        abs(value - expected) <= 4 * expected.ulp
    }

    // MARK: - Gelu

    static func matchGelu(root: Int, _ c: MatchContext) -> FusedGroup? {
        let rootNode = c.graph.nodes[root]
        guard rootNode.opType == "Mul", rootNode.inputs.count == 2, rootNode.outputs.count == 1 else { return nil }
        // Flatten the product: the root's operands, one of which may itself be a private Mul.
        var leaves: [String] = []
        var mulNodes = [root]
        for operand in rootNode.inputs {
            if let inner = c.privateProducer(of: operand, "Mul"), c.graph.nodes[inner].inputs.count == 2 {
                mulNodes.append(inner)
                leaves += c.graph.nodes[inner].inputs
            } else {
                leaves.append(operand)
            }
        }
        guard leaves.count == 3 else { return nil }
        // One leaf is 0.5, one is 1 + erf(x/√2), one is x.
        var ranks: [Int] = []
        guard let halfIndex = leaves.firstIndex(where: { c.scalar($0).map { isClose($0.value, 0.5) } ?? false })
        else { return nil }
        ranks.append(c.scalar(leaves[halfIndex])!.rank)
        leaves.remove(at: halfIndex)
        for (gateIndex, gate) in leaves.enumerated() {
            guard let add = c.privateProducer(of: gate, "Add"), c.graph.nodes[add].inputs.count == 2 else { continue }
            let addInputs = c.graph.nodes[add].inputs
            guard let oneIndex = addInputs.firstIndex(where: { c.scalar($0).map { isClose($0.value, 1) } ?? false }),
                  let erf = c.privateProducer(of: addInputs[1 - oneIndex], "Erf")
            else { continue }
            let x = leaves[1 - gateIndex]
            guard let scaleNode = scaleByInverseRootTwo(of: x, erfInput: c.graph.nodes[erf].inputs[0], c) else {
                continue
            }
            ranks.append(c.scalar(addInputs[oneIndex])!.rank)
            ranks.append(scaleNode.constantRank)
            return FusedGroup(root: root, members: mulNodes + [add, erf, scaleNode.index], inputs: [x], opType: "Gelu",
                              kernel: FusedGeluKernel(minimumRank: ranks.max() ?? 0))
        }
        return nil
    }

    /// The private Div(x, √2) or Mul(x, 1/√2) producing `erfInput`, with its constant's rank.
    private static func scaleByInverseRootTwo(of x: String, erfInput: String, _ c: MatchContext)
        -> (index: Int, constantRank: Int)? {
        let rootTwo: Float = 1.41421356237309504880
        if let div = c.privateProducer(of: erfInput, "Div") {
            let inputs = c.graph.nodes[div].inputs
            guard inputs.count == 2, inputs[0] == x, let divisor = c.scalar(inputs[1]), isClose(divisor.value, rootTwo)
            else { return nil }
            return (div, divisor.rank)
        }
        if let mul = c.privateProducer(of: erfInput, "Mul") {
            let inputs = c.graph.nodes[mul].inputs
            guard inputs.count == 2, let xIndex = inputs.firstIndex(of: x),
                  let factor = c.scalar(inputs[1 - xIndex]), isClose(factor.value, 1 / rootTwo)
            else { return nil }
            return (mul, factor.rank)
        }
        return nil
    }
}

/// The fused exact Gelu on a float32 tensor. The pattern's constants are float32 scalars, so other
/// dtypes would have failed in the original nodes too. `minimumRank`: a constant of rank r broadcasts
/// a lower-rank x up to rank r (with leading ones), as the original nodes would.
struct FusedGeluKernel: Kernel {
    let minimumRank: Int

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try required(inputs, 0)
        guard x.dtype == .float32 else {
            throw KernelError.invalidInput(index: 0, reason: "Gelu pattern with float32 constants got \(x.dtype) data")
        }
        let y = try mapVectorized(x, { VectorMath.gelu($0, $1, count: $2) }, context: context)
        guard x.rank < minimumRank else { return [y] }
        return [try y.reshaped(Array(repeating: 1, count: minimumRank - x.rank) + x.shape)]
    }
}
