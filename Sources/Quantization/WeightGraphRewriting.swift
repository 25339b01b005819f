import GraphIR
import QuantCore
import Tensors

/// Builds the rewritten node list of a graph for the weight modes (dynamic, weight-only): the original
/// nodes in order, the nodes replacing a quantized operator spliced in where it stood, and new constants
/// added as initializers under fresh names (`GeneratedNames`).
///
/// Replacements read only values defined before the node they replace (or initializers), and a shared
/// prologue (e.g. one DynamicQuantizeLinear for the three projections reading one activation) is emitted
/// before its first reader, so the list stays topologically ordered.
struct GraphRewriter: GraphBuilding {
    private(set) var graph: Graph
    var names: GeneratedNames
    /// Initializers and Constant-node outputs of the input graph.
    let constants: [String: Tensor]
    private var emitted: [Node] = []
    /// Values already made for a key (a quantized weight, a quantized activation), so readers share them.
    private var memo: [String: Made] = [:]

    /// Values made once and shared: their names, and what the report says about them.
    struct Made {
        var names: [String]
        /// The weight's SQNR, when the values are a quantized weight.
        var sqnrDB: Double? = nil
        /// Whether the weight got one scale per channel (a fallback may give one per tensor).
        var perChannel = true
        /// Whether GPTQ chose the codes (rather than rounding to nearest).
        var gptq = false
        /// The codes and dequantized value written for a weight, for the report.
        var written: WrittenNames? = nil
    }

    init(graph: Graph) {
        self.graph = graph
        names = GeneratedNames(graph: graph)
        constants = graph.constantValues
    }

    mutating func storeInitializer(_ tensor: Tensor, name: String) { graph.initializers[name] = tensor }

    mutating func appendNode(_ node: Node) { emitted.append(node) }

    /// A fresh value or node name derived from `base`.
    mutating func makeName(_ base: String) -> String { names.fresh(base) }

    /// Appends a node named after its first output (or `name`) to the rewritten list.
    mutating func emit(_ opType: String, _ inputs: [String], _ outputs: [String],
                       attributes: [(String, Attribute)] = [], name: String? = nil) {
        addNode(opType, inputs, outputs, attributes: Dictionary(uniqueKeysWithValues: attributes), name: name)
    }

    /// Appends an original (possibly edited) node.
    mutating func keep(_ node: Node) { emitted.append(node) }

    /// The values made earlier under `key`, or those `make` makes now (and remembers).
    mutating func memoized(_ key: String, _ make: (inout GraphRewriter) throws -> Made) rethrows -> Made {
        if let known = memo[key] { return known }
        let made = try make(&self)
        memo[key] = made
        return made
    }

    /// The rewritten graph, with the nodes and constants nothing reads any more removed.
    mutating func finish(context: PassContext) throws -> Graph {
        graph.nodes = emitted
        _ = try DeadCodeElimination().run(on: &graph, context: context)
        return graph
    }
}

/// Which nodes a weight mode rewrites and with which weight type, from the options shared by every mode
/// (`--ops`, `--exclude`, `--plan`).
struct NodePolicy {
    let options: QuantizationOptions
    /// Operator types the mode quantizes when `--ops` is not given.
    let defaultOperators: Set<String>

    /// Why `node` stays float, or nil when the mode should try to quantize it.
    func skipReason(_ node: Node) -> String? {
        guard node.normalizedDomain.isEmpty else { return "operator of domain '\(node.domain)'" }
        if options.excludedNodes.contains(node.name) { return "excluded (--exclude)" }
        if options.plan?.nodes[node.name]?.skip == true { return "skipped by the plan" }
        if let types = options.operatorTypes {
            return types.contains(node.opType) ? nil : "\(node.opType) is not in --ops"
        }
        return defaultOperators.contains(node.opType) ? nil : "not quantized in this mode"
    }

    /// The weight type for `node`: the plan's override, else the run's.
    func weightType(for node: Node) -> QuantType {
        options.plan?.nodes[node.name]?.weightType ?? options.resolvedWeightType
    }
}

/// Accumulates the report of a weight mode.
struct ReportBuilder {
    var tensors: [QuantizationReport.TensorDecision] = []
    var nodes: [QuantizationReport.NodeDecision] = []
    var notes: [String] = []
    private var reportedTensors = Set<String>()

    mutating func quantized(_ node: Node, reason: String? = nil) {
        nodes.append(.init(name: node.name, opType: node.opType, quantized: true, reason: reason))
    }

    mutating func keptFloat(_ node: Node, reason: String) {
        nodes.append(.init(name: node.name, opType: node.opType, quantized: false, reason: reason))
    }

    /// Records a weight once, however many nodes share it.
    mutating func weight(_ name: String, type: String, sqnrDB: Double?, reason: String, written: WrittenNames?) {
        guard reportedTensors.insert(name).inserted else { return }
        tensors.append(.init(name: name, role: .weight, action: .quantized, type: type, reason: reason,
                             sqnrDB: sqnrDB, codes: written?.codes, dequantized: written?.dequantized))
    }

    /// Records an activation quantized at run time, once.
    mutating func activation(_ name: String, type: String, reason: String, codes: String) {
        guard reportedTensors.insert(name).inserted else { return }
        tensors.append(.init(name: name, role: .activation, action: .quantized, type: type, reason: reason,
                             codes: codes))
    }

    mutating func note(_ text: String) {
        if !notes.contains(text) { notes.append(text) }
    }

    func report(options: QuantizationOptions) -> QuantizationReport {
        QuantizationReport(options: options, tensors: tensors, nodes: nodes, notes: notes)
    }
}

extension Node {
    /// The name errors give for this node: its name, or its op type and first output when unnamed.
    var errorName: String { name.isEmpty ? "\(opType) producing '\(outputs.first ?? "")'" : name }
}

extension Tensor {
    /// A 2-D float32 tensor transposed (`[r, c]` → `[c, r]`).
    func transposed2D() throws -> Tensor {
        precondition(rank == 2 && dtype == .float32, "transposed2D takes a 2-D float32 tensor")
        let rows = shape[0], columns = shape[1]
        var result = try Tensor(zeros: .float32, shape: [columns, rows])
        withUnsafeBufferPointer(as: Float.self) { source in
            result.withUnsafeMutableBufferPointer(as: Float.self) { target in
                for r in 0..<rows {
                    for c in 0..<columns { target[c * rows + r] = source[r * columns + c] }
                }
            }
        }
        return result
    }
}
