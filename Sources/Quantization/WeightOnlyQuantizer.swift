import GraphIR
import QuantCore
import Tensors

/// Weight-only quantization: weights stored as int8, int4 or int2 codes with one scale (and, when
/// asymmetric, one zero point) per group of `groupSize` consecutive elements along the reduction axis;
/// activations and arithmetic stay float32.
///
/// Each weight becomes a blocked `DequantizeLinear` (opset 21: `axis` = the blocked axis, `block_size` =
/// the group size; int4 codes packed two per byte) feeding the unchanged operator:
///
/// | operator | weight | blocks along |
/// | --- | --- | --- |
/// | MatMul `x·W` | `W [.., K, N]` | K (axis −2) |
/// | Gemm | `B [K, N]`, or `[N, K]` with `transB` | K |
/// | Conv | `W [O, C/g, k…]`, stored as `[O, C/g·k…]` and reshaped after dequantizing | `C/g·k…` (the im2col reduction) |
/// | ConvTranspose | `W [C_in, C_out/g, k…]` | `C_in` (axis 0) |
/// | LSTM/GRU/RNN | `W`, `R` `[D, gates·H, I or H]` | I or H (axis 2) |
/// | Gather (embedding table) | `[V, H]` | H (each row's own groups) |
///
/// When the axis is not a multiple of the group size the last group is shorter (ONNX blocked
/// quantization allows it; nothing is padded). An axis shorter than the group size is one group.
/// Symmetric groups use every code (int4 `[−8, 7]`) and search the clip that minimises the squared error;
/// asymmetric groups do the same over `[min, max]` with a zero point. int2 codes `[−2, 1]` are stored in
/// int4 containers (see `WeightFormat`).
struct WeightOnlyQuantizer {
    let options: QuantizationOptions

    /// Operator types this mode rewrites.
    static let operators: Set<String> = ["MatMul", "Gemm", "Gather", "Conv", "ConvTranspose", "LSTM", "GRU", "RNN"]

    /// Blocked DequantizeLinear and int4 initializers need opset 21.
    static let opset = 21

    /// Quantizes the weights of `model`; with `calibration`, MatMul/Gemm weights use GPTQ on the Hessians
    /// of their inputs, the others (and everything without calibration data) round to nearest.
    func quantize(_ model: Model, calibration: CalibrationData? = nil,
                  progress: (Int, Int) -> Void = { _, _ in }) throws -> QuantizationResult {
        try validateOptions()
        let groupSize = options.resolvedGroupSize ?? 32
        let policy = NodePolicy(options: options, defaultOperators: Self.operators)
        var hessians = HessianCache()
        if let calibration {
            let inputs = Set(model.graph.nodes.filter { Self.usesGPTQ($0, policy: policy, constants: model.graph.constantValues) }
                .map { $0.inputs[0] })
            hessians.moments = try HessianCollector.collect(model, activations: inputs, data: calibration,
                                                            options: options, progress: progress)
        }
        var upgraded = model
        let upgradeNotes = try OpsetUpgrade.raise(&upgraded, to: Self.opset)
        var rewriter = GraphRewriter(graph: upgraded.graph)
        var report = ReportBuilder()
        let mapping: Mapping = options.symmetricWeights ? .symmetric : .asymmetric
        for node in upgraded.graph.nodes {
            guard Self.operators.contains(node.opType) && node.normalizedDomain.isEmpty else {
                rewriter.keep(node)
                continue
            }
            if let reason = policy.skipReason(node) {
                report.keptFloat(node, reason: reason)
                rewriter.keep(node)
                continue
            }
            let format = try WeightFormat(policy.weightType(for: node), mapping: mapping)
            var edited = node
            var quantizedAny = false
            var reason = "no constant float32 weight"
            for target in weightTargets(node, constants: rewriter.constants, reason: &reason) {
                let made = try dequantizedWeight(target, groupSize: groupSize, format: format, node: node,
                                                 hessians: &hessians, rewriter: &rewriter)
                edited.inputs[target.input] = made.names[0]
                report.weight(node.inputs[target.input], type: format.reportName, sqnrDB: made.sqnrDB,
                              reason: "groups of \(groupSize) along \(target.description), "
                                  + (mapping == .symmetric ? "symmetric" : "asymmetric")
                                  + (made.gptq ? ", GPTQ" : ""), written: made.written)
                quantizedAny = true
            }
            rewriter.keep(edited)
            if quantizedAny {
                report.quantized(node, reason: "\(format.reportName) weights, blocked DequantizeLinear")
            } else {
                report.keptFloat(node, reason: reason)
            }
        }
        guard report.nodes.contains(where: \.quantized) else {
            let reasons = report.nodes.map { "\($0.name.isEmpty ? $0.opType : $0.name): \($0.reason ?? "")" }
            throw QuantizationError.nothingToQuantize(
                reason: "weight-only mode found no " + Self.operators.sorted().joined(separator: ", ")
                    + " with a constant float32 weight" + (reasons.isEmpty ? "" : " (" + reasons.prefix(8).joined(separator: "; ") + ")"))
        }
        for line in upgradeNotes { report.note(line) }
        if calibration == nil {
            report.note("no calibration data: weights are rounded to the nearest code of a searched clip; "
                        + "--calib lets MatMul/Gemm weights use GPTQ")
        } else {
            report.note("MatMul/Gemm weights use GPTQ on the second moments of their calibration inputs; "
                        + "the others are rounded to the nearest code")
        }
        report.note("weights are stored as blocked DequantizeLinear (block_size \(groupSize) along the reduction "
                    + "axis); activations and arithmetic stay float32")
        if case .integer(2, _) = options.resolvedWeightType.kind {
            report.note("int2 codes are stored in int4 containers (ONNX INT2 needs opset 25, beyond what this "
                        + "stack reads and writes): the values are 2-bit, the file is int4-sized")
        }
        var result = upgraded
        result.graph = try rewriter.finish(context: PassContext(opsetImports: upgraded.opsetImports))
        // int4 initializers need IR version 10 even when the opset needed no raise.
        result.irVersion = max(result.irVersion, 10)
        return QuantizationResult(model: result, report: report.report(options: options))
    }

    func validateOptions() throws {
        var types = [("--weight-type", options.resolvedWeightType)]
        for (name, override) in (options.plan?.nodes ?? [:]).sorted(by: { $0.key < $1.key }) {
            if let type = override.weightType { types.append(("the plan's weight_type for node '\(name)'", type)) }
        }
        for (what, type) in types {
            guard case .integer(let bits, _) = type.kind, [2, 4, 8].contains(bits) else {
                let hint = type == .float16 ? " (float16 weights are --mode fp16)" : ""
                throw QuantizationError.unsupportedOption(
                    "\(what) \(type): weight-only mode stores int8, uint8, int4, uint4, int2 or uint2 codes\(hint)")
            }
        }
        if let types = options.operatorTypes {
            for type in types.sorted() where !Self.operators.contains(type) {
                throw QuantizationError.unsupportedOption(
                    "--ops \(type): weight-only mode quantizes " + Self.operators.sorted().joined(separator: ", "))
            }
        }
    }

    /// One weight input of a node and how it is blocked.
    struct WeightTarget {
        let input: Int
        let weight: Tensor
        /// The shape the codes are stored in (the weight's, or a 2-D view for convolutions).
        let storedShape: [Int]
        /// The blocked axis of `storedShape`.
        let axis: Int
        let description: String
    }

    /// The weights of `node` this mode quantizes; `reason` says why there are none.
    func weightTargets(_ node: Node, constants: [String: Tensor], reason: inout String) -> [WeightTarget] {
        func constantWeight(_ index: Int, minimumRank: Int) -> Tensor? {
            guard node.inputs.count > index, let tensor = constants[node.inputs[index]] else { return nil }
            guard tensor.dtype == .float32 else {
                reason = "weight '\(node.inputs[index])' is \(tensor.dtype), not float32"
                return nil
            }
            guard tensor.rank >= minimumRank, tensor.count > 0 else {
                reason = "weight '\(node.inputs[index])' has shape \(tensor.shape)"
                return nil
            }
            return tensor
        }
        switch node.opType {
        case "MatMul":
            guard node.inputs.count == 2, constants[node.inputs[0]] == nil else {
                reason = "both inputs are constant"
                return []
            }
            guard let w = constantWeight(1, minimumRank: 2) else { return [] }
            return [WeightTarget(input: 1, weight: w, storedShape: w.shape, axis: w.rank - 2, description: "K")]
        case "Gemm":
            // Only B changes, so transA does not matter.
            guard let w = constantWeight(1, minimumRank: 2), w.rank == 2 else { return [] }
            let transB = (node[attribute: "transB"]?.intValue ?? 0) != 0
            return [WeightTarget(input: 1, weight: w, storedShape: w.shape, axis: transB ? 1 : 0, description: "K")]
        case "Gather":
            let axis = node[attribute: "axis"]?.intValue ?? 0
            guard axis == 0 else {
                reason = "gathers along axis \(axis), not the rows"
                return []
            }
            guard let table = constantWeight(0, minimumRank: 2) else { return [] }
            return [WeightTarget(input: 0, weight: table, storedShape: table.shape, axis: table.rank - 1,
                                 description: "the row (last axis)")]
        case "Conv":
            guard let w = constantWeight(1, minimumRank: 3) else { return [] }
            let view = [w.shape[0], w.count / w.shape[0]]
            return [WeightTarget(input: 1, weight: w, storedShape: view, axis: 1, description: "C/group × kernel")]
        case "ConvTranspose":
            guard let w = constantWeight(1, minimumRank: 3) else { return [] }
            return [WeightTarget(input: 1, weight: w, storedShape: w.shape, axis: 0, description: "C_in (axis 0)")]
        default:  // LSTM, GRU, RNN
            return [1, 2].compactMap { index in
                constantWeight(index, minimumRank: 3).map {
                    WeightTarget(input: index, weight: $0, storedShape: $0.shape, axis: 2, description: "the input (axis 2)")
                }
            }
        }
    }

    /// Whether `node` is a MatMul/Gemm whose weight GPTQ can quantize (a 2-D constant weight read as
    /// `x·W` or `x·Wᵀ`).
    static func usesGPTQ(_ node: Node, policy: NodePolicy, constants: [String: Tensor]) -> Bool {
        guard node.normalizedDomain.isEmpty, node.inputs.count >= 2, policy.skipReason(node) == nil,
              constants[node.inputs[0]] == nil, let weight = constants[node.inputs[1]], weight.rank == 2,
              weight.dtype == .float32 else { return false }
        switch node.opType {
        case "MatMul": return node.inputs.count == 2
        case "Gemm": return (node[attribute: "transA"]?.intValue ?? 0) == 0
        default: return false
        }
    }

    /// Calibration moments by activation, and the inverse factor of the activation last used (the
    /// projections reading one activation come one after another).
    struct HessianCache {
        var moments: [String: HessianCollector.Moments] = [:]
        var lastFactor: (activation: String, factor: [Double]?)?

        mutating func factor(for activation: String, width: Int) -> [Double]? {
            if let last = lastFactor, last.activation == activation { return last.factor }
            guard let entry = moments[activation], entry.width == width, entry.rows > 0 else { return nil }
            let factor = GPTQ.dampedInverseFactor(entry.mean, n: width)
            lastFactor = (activation, factor)
            return factor
        }
    }

    /// The blocked codes of `target` behind a DequantizeLinear (and a Reshape for a 2-D view), made once
    /// per weight and layout.
    func dequantizedWeight(_ target: WeightTarget, groupSize: Int, format: WeightFormat, node: Node,
                           hessians: inout HessianCache, rewriter: inout GraphRewriter) throws -> GraphRewriter.Made {
        let name = node.inputs[target.input]
        let blockSize = min(groupSize, target.storedShape[target.axis])
        let transposed = node.opType == "Gemm" && target.axis == 1
        let depth = target.weight.shape[transposed ? 1 : 0]
        let factor = ["MatMul", "Gemm"].contains(node.opType) && target.weight.rank == 2
            ? hessians.factor(for: node.inputs[0], width: depth) : nil
        let key = "blocked|\(name)|\(target.storedShape)|\(target.axis)|\(blockSize)|\(format.requested)|"
            + "\(format.mapping)|\(factor != nil ? node.inputs[0] : "")"
        return try rewriter.memoized(key) { rewriter in
            let quantized: BlockQuantizedWeight
            if let factor {
                let work = transposed ? try target.weight.transposed2D() : target.weight
                let result = try GPTQ.quantize(work, factor: factor, groupSize: blockSize, format: format, name: name,
                                               node: node.errorName)
                quantized = transposed ? try result.transposed() : result
            } else {
                quantized = try WeightQuantization.quantize(try target.weight.reshaped(target.storedShape),
                                                            axis: target.axis, blockSize: blockSize, format: format,
                                                            name: name, node: node.errorName)
            }
            let written = try rewriter.dequantizedWeight(
                quantized.quantized, storedShape: target.storedShape, shape: target.weight.shape,
                parameterShape: quantized.params.parameterShape, axis: target.axis, blockSize: blockSize)
            return .init(names: [written.dequantized!], sqnrDB: quantized.sqnrDB, gptq: factor != nil, written: written)
        }
    }
}

extension BlockQuantizedWeight {
    /// A `[K, N]` weight blocked along axis 0 as the `[N, K]` weight blocked along axis 1.
    func transposed() throws -> BlockQuantizedWeight {
        let params = quantized.params
        guard case .perGroup(0, let size) = params.granularity, params.parameterShape.count == 2 else {
            preconditionFailure("transposed() takes a 2-D weight blocked along axis 0")
        }
        let values = try quantized.dequantized().transposed2D()
        let groups = params.parameterShape[0], columns = params.parameterShape[1]
        var scales = [Float](repeating: 1, count: params.count)
        var zeros = [Int32](repeating: 0, count: params.count)
        for g in 0..<groups {
            for n in 0..<columns {
                scales[n * groups + g] = params.scales[g * columns + n]
                zeros[n * groups + g] = params.zeroPoints[g * columns + n]
            }
        }
        let flipped = try QuantParams(type: params.type, granularity: .perGroup(axis: 1, size: size),
                                      parameterShape: [columns, groups], scales: scales, zeroPoints: zeros,
                                      codeRange: params.codeRange)
        return BlockQuantizedWeight(quantized: try values.quantized(with: flipped), sqnrDB: sqnrDB)
    }
}
