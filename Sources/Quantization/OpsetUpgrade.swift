import GraphIR
import Tensors

/// Raises a model's default-domain opset, rewriting the operators whose definition changed on the way
/// (ONNX's operator changelog, opsets 13 → 21):
///
/// - `ReduceL1/L2/LogSum/LogSumExp/Max/Mean/Min/Prod/SumSquare` 18: `axes` moved from an attribute to an
///   int64 input (an absent attribute, "reduce everything", stays absent);
/// - `RoiAlign` 16: `coordinate_transformation_mode` appeared with default `half_pixel`, while earlier
///   versions computed `output_half_pixel`, which is written out explicitly;
/// - `GridSample` 20: modes renamed (`bilinear` → `linear`, `bicubic` → `cubic`).
///
/// Every other change in that span adds types, or attributes and inputs whose defaults keep the old
/// meaning (e.g. `Split`'s `num_outputs`, `Pad`'s `axes`, `Resize`'s `antialias`, `AveragePool`'s
/// `dilations`, `Cast`'s `saturate`), so those nodes carry over unchanged. Two changes cannot be made
/// without knowing shapes and are refused: `GroupNormalization` below 21 (scale and bias went from one
/// value per group to one per channel) and `DFT` below 20 (`axis` became an input).
enum OpsetUpgrade {
    /// The oldest opset this upgrade starts from.
    static let oldestSource = 13

    static let reductionsWithAxesInput18: Set<String> = [
        "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
        "ReduceProd", "ReduceSumSquare",
    ]

    /// Raises `model` to `target` when it imports an older default-domain opset (and the IR version to
    /// what that opset needs); a model already at or above `target` is left alone.
    ///
    /// - Returns: one line per kind of rewrite made, for the report.
    /// - Throws: `QuantizationError.unsupportedOption` for a source opset below 13,
    ///   `QuantizationError.unsupportedNode` for a node the upgrade cannot carry over.
    @discardableResult
    static func raise(_ model: inout Model, to target: Int) throws -> [String] {
        let source = model.opsetVersion(domain: "") ?? PassContext.fallbackOpset
        guard source < target else { return [] }
        guard source >= oldestSource else {
            throw QuantizationError.unsupportedOption(
                "the model imports opset \(source); raising it to \(target) is supported from opset \(oldestSource) "
                    + "(convert it with onnx.version_converter first)")
        }
        var changes = Set<String>()
        try upgrade(&model.graph, from: source, changes: &changes)
        model.opsetImports.removeValue(forKey: "ai.onnx")
        model.opsetImports[""] = target
        // Opset 21 (and the int4 types it brings) needs IR version 10.
        if target >= 21 { model.irVersion = max(model.irVersion, 10) }
        return ["opset raised from \(source) to \(target)"] + changes.sorted()
    }

    static func upgrade(_ graph: inout Graph, from source: Int, changes: inout Set<String>) throws {
        var namer = UniqueNamer(graph: graph)
        for index in graph.nodes.indices {
            var node = graph.nodes[index]
            try node.mapSubgraphs { try upgrade(&$0, from: source, changes: &changes) }
            if node.normalizedDomain.isEmpty {
                try upgrade(&node, in: &graph, from: source, namer: &namer, changes: &changes)
            }
            graph.nodes[index] = node
        }
    }

    static func upgrade(_ node: inout Node, in graph: inout Graph, from source: Int, namer: inout UniqueNamer,
                        changes: inout Set<String>) throws {
        switch node.opType {
        case let op where reductionsWithAxesInput18.contains(op) && source < 18:
            guard let axes = node.attributes.removeValue(forKey: "axes") else { return }
            guard let values = axes.intsValue else {
                throw QuantizationError.unsupportedNode(node: node.name, reason: "axes is not a list of integers")
            }
            let name = namer.make(base: (node.name.isEmpty ? op : node.name) + "_axes")
            graph.initializers[name] = try Tensor(shape: [values.count], scalars: values.map { Int64($0) })
            node.inputs = [node.inputs.first ?? "", name]
            changes.insert("\(op): axes moved from an attribute to an input (opset 18)")
        case "RoiAlign" where source < 16:
            if node.attributes["coordinate_transformation_mode"] == nil {
                node.attributes["coordinate_transformation_mode"] = .text("output_half_pixel")
                changes.insert("RoiAlign: coordinate_transformation_mode = output_half_pixel written out (opset 16)")
            }
        case "GridSample" where source < 20:
            let renamed = ["bilinear": "linear", "bicubic": "cubic"]
            if let mode = node.attributes["mode"]?.stringValue, let new = renamed[mode] {
                node.attributes["mode"] = .text(new)
                changes.insert("GridSample: mode \(mode) renamed \(new) (opset 20)")
            }
        case "GroupNormalization" where source < 21:
            throw QuantizationError.unsupportedNode(
                node: node.name, reason: "GroupNormalization-18 (one scale per group) cannot be carried to opset 21 "
                    + "(one scale per channel) without knowing the channel count")
        case "DFT" where source < 20:
            throw QuantizationError.unsupportedNode(
                node: node.name, reason: "DFT below opset 20 takes axis as an attribute; carrying it to opset 20+ is not supported")
        default:
            break
        }
    }
}
