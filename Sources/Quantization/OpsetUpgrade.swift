import GraphIR
import Tensors

/// Raises a model's default-domain opset so quantization operators of a newer version can be written
/// (per-axis DequantizeLinear needs 13; 16-bit, 4-bit codes and blocked scales need 21).
///
/// Declaring a newer opset changes the meaning of the operators whose definition changed in between
/// (ONNX's operator changelog), so those are rewritten:
/// - from 13, Squeeze, Unsqueeze, ReduceSum and Split read their axes or split sizes from an input instead
///   of an attribute; from 18, so do the other reductions (an absent attribute, "reduce everything", stays
///   absent);
/// - RoiAlign 16 gained `coordinate_transformation_mode` with default `half_pixel`, while earlier versions
///   computed `output_half_pixel`, which is written out explicitly;
/// - GridSample 20 renamed its modes (`bilinear` → `linear`, `bicubic` → `cubic`).
/// Every other change in that span adds types, or attributes and inputs whose defaults keep the old
/// meaning. Changes that cannot be rewritten without shapes (Softmax's axis semantics at 13 unless it acts
/// on the last axis, GroupNormalization at 21, DFT at 20) and models older than opset 11 are refused,
/// naming the node.
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

    /// Declares opset `to` for the default domain, rewriting the operators whose definition changed.
    ///
    /// - Returns: one line per kind of rewrite made, for the report.
    @discardableResult
    static func raise(_ model: inout Model, to: Int) throws -> [String] {
        let from = model.opsetVersion(domain: "") ?? 1
        guard to > from else { return [] }
        if let obstacle = obstacle(in: model.graph, from: from, to: to) {
            throw QuantizationError.unsupportedOption("cannot raise the model to opset \(to): \(obstacle)")
        }
        var namer = UniqueNamer(graph: model.graph)
        var changes = Set<String>()
        try rewrite(&model.graph, from: from, to: to, namer: &namer, changes: &changes)
        model.opsetImports[""] = to
        model.opsetImports.removeValue(forKey: "ai.onnx")
        model.raiseIRVersion(forOpset: to)
        return ["opset raised from \(from) to \(to)"] + changes.sorted()
    }

    private static func rewrite(_ graph: inout Graph, from: Int, to: Int, namer: inout UniqueNamer,
                                changes: inout Set<String>) throws {
        for index in graph.nodes.indices {
            try graph.nodes[index].mapSubgraphs {
                try rewrite(&$0, from: from, to: to, namer: &namer, changes: &changes)
            }
            guard graph.nodes[index].normalizedDomain.isEmpty else { continue }
            try rewrite(node: index, in: &graph, from: from, to: to, namer: &namer, changes: &changes)
        }
    }

    private static func rewrite(node index: Int, in graph: inout Graph, from: Int, to: Int,
                                namer: inout UniqueNamer, changes: inout Set<String>) throws {
        let node = graph.nodes[index]
        func crosses(_ version: Int) -> Bool { from < version && to >= version }
        switch node.opType {
        case "RoiAlign" where crosses(16):
            if node.attributes["coordinate_transformation_mode"] == nil {
                graph.nodes[index].attributes["coordinate_transformation_mode"] = .text("output_half_pixel")
                changes.insert("RoiAlign: coordinate_transformation_mode = output_half_pixel written out (opset 16)")
            }
            return
        case "GridSample" where crosses(20):
            let renamed = ["bilinear": "linear", "bicubic": "cubic"]
            if let mode = node.attributes["mode"]?.stringValue, let new = renamed[mode] {
                graph.nodes[index].attributes["mode"] = .text(new)
                changes.insert("GridSample: mode \(mode) renamed \(new) (opset 20)")
            }
            return
        default:
            break
        }
        var attribute: String?
        var version = 0
        if crosses(13), let moved = attributesMovedAt13[node.opType] { (attribute, version) = (moved, 13) }
        if crosses(18), reductionsMovedAt18.contains(node.opType) { (attribute, version) = ("axes", 18) }
        guard let attribute, let value = node.attributes[attribute] else { return }
        guard let values = value.intsValue else {
            throw QuantizationError.unsupportedNode(node: node.name, reason: "\(attribute) is not a list of integers")
        }
        let name = namer.make(base: (node.name.isEmpty ? node.opType : node.name) + "_" + attribute)
        graph.initializers[name] = try Tensor(shape: [values.count], scalars: values.map { Int64($0) })
        graph.nodes[index].attributes.removeValue(forKey: attribute)
        // The moved attribute becomes input 1, right after the data.
        graph.nodes[index].inputs = [node.inputs.first ?? "", name]
        changes.insert("\(node.opType): \(attribute) moved from an attribute to an input (opset \(version))")
    }
}
