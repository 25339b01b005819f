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
///
/// Below 8 bits, the weights whose low-bit error hurts the outputs most per extra byte are kept at 8 bits
/// (one scale per channel) within `promotionBudget` (`WeightPromotion`). On MiniLM with int4 groups of
/// 32 and no calibration data, error statistics of the weights are all alike (20–21 dB) but their harm
/// is not: the value and FFN projections cost the embedding far more than the query and key ones;
/// keeping 23 of 39 weights at int8 takes the mean cosine from 0.965 to 0.994 at 18.9% of the FP32 file.
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
        var report = ReportBuilder()
        let mapping: Mapping = options.symmetricWeights ? .symmetric : .asymmetric

        // 1. The weights to quantize, at the requested type.
        let constants = upgraded.graph.constantValues
        var planned: [Int: [PlannedWeight]] = [:]
        var floatReasons: [Int: String] = [:]
        var lowBit: [String: (weight: BlockQuantizedWeight, gptq: Bool)] = [:]
        for (index, node) in upgraded.graph.nodes.enumerated()
        where Self.operators.contains(node.opType) && node.normalizedDomain.isEmpty {
            if let reason = policy.skipReason(node) {
                floatReasons[index] = reason
                continue
            }
            let format = try WeightFormat(policy.weightType(for: node), mapping: mapping)
            var reason = "no constant float32 weight"
            let targets = weightTargets(node, constants: constants, reason: &reason)
            if targets.isEmpty { floatReasons[index] = reason }
            for target in targets {
                let (weight, factor) = try plan(target, groupSize: groupSize, format: format, node: node,
                                            hessians: &hessians)
                if lowBit[weight.key] == nil {
                    lowBit[weight.key] = (try lowBitWeight(weight, factor: factor, node: node), factor != nil)
                }
                planned[index, default: []].append(weight)
            }
        }

        // 2. The weights whose low-bit error hurts most, kept at 8 bits within the budget.
        let promotion = try promotions(model, planned: planned, lowBit: lowBit, calibration: calibration,
                                       progress: progress)
        if let promotion { report.note(promotion.note) }

        // 3. The rewritten graph.
        var rewriter = GraphRewriter(graph: upgraded.graph)
        for (index, node) in upgraded.graph.nodes.enumerated() {
            guard Self.operators.contains(node.opType) && node.normalizedDomain.isEmpty else {
                rewriter.keep(node)
                continue
            }
            guard let weights = planned[index] else {
                report.keptFloat(node, reason: floatReasons[index] ?? "no constant float32 weight")
                rewriter.keep(node)
                continue
            }
            var edited = node
            var types: [String] = []
            for weight in weights {
                let name = node.inputs[weight.target.input]
                let promoted = promotion?.outcome.promoted.contains(name) == true
                let made = try rewriter.memoized(weight.key + (promoted ? "|promoted" : "")) { rewriter in
                    try emit(weight, quantized: promoted ? try eightBit(weight) : lowBit[weight.key]!.weight,
                             gptq: !promoted && lowBit[weight.key]!.gptq, rewriter: &rewriter)
                }
                edited.inputs[weight.target.input] = made.names[0]
                let type = promoted ? weight.eightBitFormat.reportName : weight.format.reportName
                types.append(type)
                var reason = promoted
                    ? "one scale per channel (\(weight.target.description)), promoted from \(weight.format.reportName): "
                        + String(format: "its low-bit error cost the outputs %.4g of cosine", promotion!.outcome.harm[name] ?? 0)
                    : "groups of \(weight.blockSize) along \(weight.target.description)"
                reason += ", " + (mapping == .symmetric ? "symmetric" : "asymmetric") + (made.gptq ? ", GPTQ" : "")
                report.weight(name, type: type, sqnrDB: made.sqnrDB, reason: reason, written: made.written)
            }
            rewriter.keep(edited)
            report.quantized(node, reason: "\(Set(types).sorted().joined(separator: ", ")) weights, blocked DequantizeLinear")
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

    /// One weight of one node as it will be quantized.
    struct PlannedWeight {
        let target: WeightTarget
        /// The weight's name.
        let name: String
        /// The node's name in errors and in a plan.
        let nodeName: String
        let format: WeightFormat
        let blockSize: Int
        /// Identifies the weight's quantization (name, layout, format, GPTQ input), so nodes that read the
        /// same weight the same way share one set of codes.
        let key: String

        /// The format of a promoted weight: 8-bit codes of the requested signedness and mapping.
        let eightBitFormat: WeightFormat

        /// Channels of the stored view: one 8-bit scale each when promoted.
        var channels: Int { target.weight.count / max(target.storedShape[target.axis], 1) }
    }

    /// How `target` of `node` is quantized, and the GPTQ factor of its input when calibration gave one.
    func plan(_ target: WeightTarget, groupSize: Int, format: WeightFormat, node: Node,
              hessians: inout HessianCache) throws -> (PlannedWeight, factor: [Double]?) {
        let name = node.inputs[target.input]
        let blockSize = min(groupSize, target.storedShape[target.axis])
        let transposed = node.opType == "Gemm" && target.axis == 1
        let depth = target.weight.shape[transposed ? 1 : 0]
        let factor = ["MatMul", "Gemm"].contains(node.opType) && target.weight.rank == 2
            ? hessians.factor(for: node.inputs[0], width: depth) : nil
        let key = "blocked|\(name)|\(target.storedShape)|\(target.axis)|\(blockSize)|\(format.requested)|"
            + "\(format.mapping)|\(factor != nil ? node.inputs[0] : "")"
        let eightBitFormat = try WeightFormat(format.storage.isSigned ? .int8 : .uint8, mapping: format.mapping)
        return (PlannedWeight(target: target, name: name, nodeName: node.name, format: format, blockSize: blockSize,
                              key: key, eightBitFormat: eightBitFormat), factor)
    }

    /// The codes of `weight` at the requested type: GPTQ with `factor`, else rounding to the nearest code
    /// of a searched clip.
    func lowBitWeight(_ weight: PlannedWeight, factor: [Double]?, node: Node) throws -> BlockQuantizedWeight {
        let target = weight.target
        if let factor {
            let transposed = node.opType == "Gemm" && target.axis == 1
            let work = transposed ? try target.weight.transposed2D() : target.weight
            let result = try GPTQ.quantize(work, factor: factor, groupSize: weight.blockSize, format: weight.format,
                                           name: weight.name, node: node.errorName)
            return transposed ? try result.transposed() : result
        }
        return try WeightQuantization.quantize(try target.weight.reshaped(target.storedShape), axis: target.axis,
                                               blockSize: weight.blockSize, format: weight.format, name: weight.name,
                                               node: node.errorName)
    }

    /// The codes of a promoted weight: 8 bits, one scale (and zero point) per channel of the stored view.
    func eightBit(_ weight: PlannedWeight) throws -> BlockQuantizedWeight {
        let target = weight.target
        return try WeightQuantization.quantize(try target.weight.reshaped(target.storedShape), axis: target.axis,
                                               blockSize: target.storedShape[target.axis], format: weight.eightBitFormat,
                                               name: weight.name, node: weight.nodeName)
    }

    /// `quantized` behind a blocked DequantizeLinear (and a Reshape for a 2-D view).
    func emit(_ weight: PlannedWeight, quantized: BlockQuantizedWeight, gptq: Bool,
              rewriter: inout GraphRewriter) throws -> GraphRewriter.Made {
        guard case .perGroup(_, let blockSize) = quantized.params.granularity else {
            preconditionFailure("weight-only codes are blocked")
        }
        let written = try rewriter.dequantizedWeight(
            quantized.quantized, storedShape: weight.target.storedShape, shape: weight.target.weight.shape,
            parameterShape: quantized.params.parameterShape, axis: weight.target.axis, blockSize: blockSize)
        return .init(names: [written.dequantized!], sqnrDB: quantized.sqnrDB, gptq: gptq, written: written)
    }

    /// Bytes `quantized` occupies: packed codes, float32 scales, and zero points unless all are 0.
    static func storedBytes(_ quantized: BlockQuantizedWeight) -> Int {
        let params = quantized.params
        let zeroBytes = quantized.zeroPointsAreZero ? 0 : (params.count * params.type.storageDType.bitWidth + 7) / 8
        return quantized.quantized.storage.byteCount + 4 * params.count + zeroBytes
    }

    /// The promotions chosen within `options.promotionBudget`, with the report's note; nil when the
    /// budget is 0 or no weight is below 8 bits. Weights whose type a plan sets are left as planned.
    func promotions(_ model: Model, planned: [Int: [PlannedWeight]],
                    lowBit: [String: (weight: BlockQuantizedWeight, gptq: Bool)], calibration: CalibrationData?,
                    progress: (Int, Int) -> Void) throws -> (outcome: WeightPromotion.Outcome, note: String)? {
        guard options.promotionBudget > 0 else { return nil }
        var candidates: [WeightPromotion.Candidate] = []
        var seen = Set<String>()
        for index in planned.keys.sorted() {
            for weight in planned[index]! where weight.format.requested.bitWidth < 8 {
                guard options.plan?.nodes[weight.nodeName]?.weightType == nil, model.graph.initializers[weight.name] != nil,
                      seen.insert(weight.name).inserted else { continue }
                let quantized = lowBit[weight.key]!.weight
                let asymmetric = weight.format.mapping == .asymmetric
                candidates.append(WeightPromotion.Candidate(
                    name: weight.name,
                    lowBit: { try quantized.quantized.dequantized().reshaped(weight.target.weight.shape) },
                    lowBitBytes: Self.storedBytes(quantized),
                    eightBitBytes: weight.target.weight.count + weight.channels * (asymmetric ? 5 : 4)))
            }
        }
        guard !candidates.isEmpty else { return nil }
        let outcome = try WeightPromotion(model: model, options: options).choose(
            candidates, budget: options.promotionBudget, calibration: calibration, progress: progress)
        let megabytes = { (bytes: Int) in String(format: "%.2f MB", Double(bytes) / 1e6) }
        let note = outcome.harm.isEmpty
            ? "every weight stays at the requested type: \(outcome.source)"
            : "\(outcome.promoted.count) of \(candidates.count) weights kept at 8 bits (+\(megabytes(outcome.extraBytes)) of a "
                + "\(megabytes(outcome.budgetBytes)) budget, \(Int((options.promotionBudget * 100).rounded()))% of the "
                + "low-bit bytes): those whose low-bit error cost the outputs the most cosine per byte on "
                + outcome.source
        return (outcome, note)
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
