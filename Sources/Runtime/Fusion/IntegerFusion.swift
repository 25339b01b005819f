import GraphIR
import Tensors

/// Compiles quantized graphs for integer execution: QDQ patterns and QOperator nodes become single
/// fused operators of the `com.swiftquant` domain, whose kernels work on the 8-bit codes with int32
/// accumulation and fixed-point requantization.
///
/// A rewrite fires only when its exact conditions hold — constant weights, constant per-tensor
/// activation scales and zero points, supported types and attributes; everything else is left to the
/// reference kernels. Results agree with the unfused graph within one quantization step (the unfused
/// graph rounds through float; see `FusedQMatMulKernel` and friends for the formulas).
///
/// Rewrites, in order:
/// 1. `Shape(DequantizeLinear(x))` reads `x` (same shape, no float work).
/// 2. Layout-only operators (Reshape, Transpose, Flatten, Squeeze, Unsqueeze, Slice, Gather on data,
///    MaxPool, nearest Resize) between a per-tensor DequantizeLinear and its readers run on the codes,
///    the DequantizeLinear moved after them.
/// 3. `DQ → MatMul | Gemm | Conv | ConvTranspose (DQ weights) [+ bias] [→ Relu | Clip] [→ Q]`, and
///    QLinearMatMul / QLinearConv, become `QMatMul` / `QConv` / `QConvTranspose`.
/// 4. `DynamicQuantizeLinear → MatMulInteger → Cast → Mul (scales) [→ Add bias]` becomes `DynamicQMatMul`;
///    per-row dynamic quantization becomes `QuantizeRows` → `RowScaledQMatMul`.
/// 5. `DequantizeLinear` of a blocked int4/int8 constant → MatMul becomes `WeightOnlyMatMul`; → Gather
///    (axis 0) becomes `DequantizeGather`.
/// 6. `DQ → Add | Mul | Concat | AveragePool | GlobalAveragePool → Q` become integer `QAdd`, `QMul`,
///    `QConcat`, `QAveragePool`, `QGlobalAveragePool`; `DQ → HardSwish | HardSigmoid | Relu | LeakyRelu
///    | Clip → Q` becomes a 256-entry code table, `QLookup`.
/// 7. `DQ → Q` becomes `Requantize` (or nothing when the parameters agree).
/// 8. A fused GEMM or convolution whose codes only a DequantizeLinear reads writes the floats itself
///    (`dequantize_output`), absorbing a bias Add after it.
/// 9. A `QLookup` after a `QConv` moves into it (`output_table`).
/// 10. The remaining per-tensor QuantizeLinear / DequantizeLinear of activations become the vectorised
///    `Quantize` / `Dequantize`.
/// 11. Only when something above fired (a quantized model): operators repeated on the same inputs run
///    once (`deduplicateComputations`); attention's `Add(scores, mask) → Softmax
///    [→ Where(IsNaN, c, ·)]` becomes `MaskedSoftmax`, then with the transposes, scalings and MatMuls
///    around it `Attention`, and a float-output `QMatMul → Gelu → Quantize`
///    one `QMatMul` that quantizes its Gelu'd output (`quantize_float_output`), and a residual
///    `Add → LayerNormalization` `AddLayerNormalization`; then dead code elimination.
public enum IntegerFusion {
    /// The operator domain of the fused operators.
    public static let domain = "com.swiftquant"
    public static let domainVersion = 1

    /// The model rewritten for integer execution. Rewrites whose fused kernel `registry` lacks are not
    /// applied; a model without quantized patterns comes back unchanged.
    public static func apply(to model: Model, registry: KernelRegistry) throws -> Model {
        guard registry.factory(opType: "QMatMul", domain: domain, opset: domainVersion) != nil,
              model.opsetImports[domain] == nil || model.opsetImports[domain] == domainVersion,
              let opset = model.opsetVersion(domain: ""), opset >= 10
        else { return model }
        var rewriter = IntegerFusionRewriter(graph: model.graph, opset: opset, registry: registry)
        let changed = try rewriter.run()
        guard changed else { return model }
        var result = model
        result.graph = rewriter.graph
        result.opsetImports[domain] = domainVersion
        return result
    }
}

/// One round of rewrites works on a snapshot of the graph's producer/reader tables; matches of a round
/// do not overlap, and each replaces its chain with one node.
struct IntegerFusionRewriter {
    var graph: Graph
    let opset: Int
    let registry: KernelRegistry
    var constants: [String: Tensor]
    var namer: UniqueNamer
    private(set) var producers: [String: Int] = [:]
    private(set) var readers: [String: [Int]] = [:]
    let graphOutputs: Set<String>

    /// A planned rewrite: `removed` nodes go; `node` (if any) takes the place of `anchor`.
    struct Replacement {
        var removed: Set<Int>
        var anchor: Int
        var nodes: [Node]
    }
    private var pending: [Replacement] = []
    private var claimed = Set<Int>()
    /// Value renames applied after a round (readers of the key read the value instead).
    private var redirects: [(from: String, to: String)] = []

    init(graph: Graph, opset: Int, registry: KernelRegistry) {
        self.graph = graph
        self.opset = opset
        self.registry = registry
        constants = graph.constantValues
        namer = UniqueNamer(graph: graph)
        graphOutputs = graph.outputNames
    }

    mutating func run() throws -> Bool {
        var changed = false
        changed = round { $0.rewriteShapeReads() } || changed
        // Moving DequantizeLinear past layout operators can expose further layout operators behind them.
        for _ in 0..<8 {
            guard round({ $0.moveDequantizeAfterLayoutOperators() }) else { break }
            changed = true
        }
        changed = round { $0.fuseLinearOperators() } || changed
        changed = round { $0.fuseDynamicMatMuls() } || changed
        changed = round { $0.fuseWeightOnlyMatMuls() } || changed
        changed = round { $0.fuseDequantizedGathers() } || changed
        changed = round { $0.fuseElementwise() } || changed
        changed = round { $0.fuseRequantizations() } || changed
        changed = round { $0.absorbDequantizeAfterFusedOutputs() } || changed
        changed = round { $0.absorbLookupsIntoConvolutions() } || changed
        changed = round { $0.vectoriseQuantizeDequantize() } || changed
        // Float rewrites only in quantized models: calibration observes these values in float ones.
        if changed {
            _ = round { $0.deduplicateComputations() }
            _ = round { $0.fuseMaskedSoftmaxes() }
            _ = round { $0.fuseAttentions() }
            _ = round { $0.fuseQuantizedGelus() }
            _ = round { $0.fuseResidualLayerNorms() }
        }
        if changed {
            _ = try DeadCodeElimination().run(on: &graph)
        }
        return changed
    }

    /// Runs one family of rewrites over fresh tables and applies what it planned.
    private mutating func round(_ body: (inout IntegerFusionRewriter) -> Void) -> Bool {
        producers = graph.producers
        readers = graph.readers
        pending = []
        claimed = []
        redirects = []
        body(&self)
        guard !pending.isEmpty || !redirects.isEmpty else { return false }
        var byAnchor: [Int: [Node]] = [:]
        var removed = Set<Int>()
        for replacement in pending {
            removed.formUnion(replacement.removed)
            byAnchor[replacement.anchor, default: []] += replacement.nodes
        }
        var nodes: [Node] = []
        for (index, node) in graph.nodes.enumerated() {
            if let inserted = byAnchor[index] { nodes += inserted }
            if !removed.contains(index) { nodes.append(node) }
        }
        graph.nodes = nodes
        for (from, to) in redirects { graph.replaceUses(of: from, with: to) }
        return true
    }

    // MARK: - Planning

    /// Whether none of `indices` is part of a rewrite planned in this round.
    func isFree(_ indices: [Int]) -> Bool { !indices.contains { claimed.contains($0) } }

    /// Plans replacing the nodes `removed` with `nodes`, placed where `anchor` was (an index in `removed`
    /// or a kept node, before which they go). Ignored when it overlaps an earlier plan of this round.
    mutating func plan(removing removed: Set<Int>, anchor: Int, with nodes: [Node]) {
        guard isFree(Array(removed)) else { return }
        claimed.formUnion(removed)
        pending.append(Replacement(removed: removed, anchor: anchor, nodes: nodes))
    }

    /// Plans making every reader of `from` read `to` (applied after the round's replacements).
    mutating func redirect(_ from: String, to: String) { redirects.append((from, to)) }

    /// Whether the fused operator `opType` has a kernel.
    func hasKernel(_ opType: String) -> Bool {
        registry.factory(opType: opType, domain: IntegerFusion.domain, opset: IntegerFusion.domainVersion) != nil
    }

    // MARK: - Reading the graph

    func node(_ index: Int) -> Node { graph.nodes[index] }

    /// The producer of `value` when it is a default-domain `opType` node.
    func producer(of value: String, _ opType: String) -> Int? {
        guard let index = producers[value], graph.nodes[index].opType == opType,
              graph.nodes[index].normalizedDomain.isEmpty else { return nil }
        return index
    }

    /// The one node reading `value`, when exactly one does and the value is no graph output.
    func soleReader(of value: String) -> Int? {
        guard !graphOutputs.contains(value), let list = readers[value], list.count == 1 else { return nil }
        return list[0]
    }

    /// The node index reading `value` as a default-domain `opType` node, when it is the only reader.
    func soleReader(of value: String, _ opTypes: Set<String>) -> Int? {
        guard let index = soleReader(of: value), opTypes.contains(graph.nodes[index].opType),
              graph.nodes[index].normalizedDomain.isEmpty else { return nil }
        return index
    }

    func constant(_ name: String) -> Tensor? { name.isEmpty ? nil : constants[name] }

    /// Input `index` of `node`, or "" when omitted.
    func input(_ node: Node, _ index: Int) -> String { index < node.inputs.count ? node.inputs[index] : "" }

    /// Adds an initializer under a fresh name based on `base` and returns the name.
    mutating func addConstant(_ tensor: Tensor, base: String) -> String {
        let name = namer.make(base: base)
        graph.initializers[name] = tensor
        constants[name] = tensor
        return name
    }

    /// A `com.swiftquant` node with a fresh name based on `name`; trailing omitted inputs are dropped.
    mutating func fusedNode(_ opType: String, name: String, inputs: [String], outputs: [String],
                            attributes: [(String, Attribute)] = []) -> Node {
        var inputs = inputs
        while inputs.last == "" { inputs.removeLast() }
        var node = Node(name: nodeName(name.isEmpty ? opType : name), opType: opType, domain: IntegerFusion.domain,
                        inputs: inputs, outputs: outputs)
        for (key, value) in attributes { node.attributes[key] = value }
        return node
    }

    /// A fresh node name based on `base`.
    mutating func nodeName(_ base: String) -> String { namer.make(base: base.isEmpty ? "fused" : base) }
}
