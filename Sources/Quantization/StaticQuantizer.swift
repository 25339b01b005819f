import Calibration
import Foundation
import GraphIR
import QuantCore
import Runtime
import Tensors

/// Static post-training quantization: fixed activation scales from a calibration set.
///
/// 1. The policy (`StaticPolicy`, from the op-quantizer registry and the options) picks the integer
///    operators and the activations to quantize.
/// 2. Calibration runs the float model over the data in batches (`CalibrationDriver`), observing those
///    activations with the chosen method, plus a histogram of each and per-channel statistics of the
///    activations that feed weight matrices.
/// 3. Tensors that cannot be quantized stay float, and the report says why: a range that is not finite, a
///    range dominated by a masking constant, no float32 value seen.
/// 4. Activations read only by weight matrices get SmoothQuant factors when the error model says they
///    help (`Smoothing`); those are calibrated again as `x / s`.
/// 5. Each activation's SQNR is estimated on its histogram. One far below the others (10 dB under the
///    median, or under 15 dB) gets the minimum-squared-error clip if that brings it in line, else 16-bit
///    codes (where the opset allows), else stays float.
/// 6. Weights become int8 per output channel (narrow range, symmetric), biases int32 with scale
///    `s_in · s_w` (a bias whose codes would overflow the int32 accumulator stays float), Relu/Clip fold
///    into the range before them, and the graph is written in QDQ form — or, with `--format qoperator`,
///    converted to QLinearConv / QLinearMatMul / ConvInteger / MatMulInteger where those apply.
/// 7. Constant tables read by Gather (embeddings) are stored as 8-bit codes with one scale per row behind
///    a DequantizeLinear, as dynamic mode stores them: the lookup stays float, the file shrinks (MiniLM:
///    65% → 25.5% of FP32).
struct StaticQuantizer {
    let options: QuantizationOptions
    var registry = OperatorQuantizerRegistry.standard

    /// The 8-bit integer types integer operators take.
    static let integer8: Set<QuantType> = [.int8, .uint8]
    /// Weight types static mode can store (DequantizeLinear codes).
    static let weightTypes: [QuantType] = [.int8, .uint8, .int4, .uint4, .int16, .uint16]
    /// Activation types static mode can use (QuantizeLinear codes).
    static let activationTypes: [QuantType] = [.uint8, .int8, .uint16, .int16]
    /// An activation whose SQNR lies this far under the median is out of line.
    static let outlierMargin = 10.0
    /// An activation under this SQNR is out of line whatever the others do.
    static let outlierFloor = 15.0

    func quantize(_ model: Model, calibration: CalibrationData, progress: @escaping (Int, Int) -> Void) throws
        -> QuantizationResult
    {
        try validateOptions()
        var model = model
        model.graph = try model.graph.sortedTopologically()
        let opset = model.opsetVersion(domain: "") ?? 1
        guard opset >= 10 else {
            throw QuantizationError.unsupportedOption(
                "static quantization writes QuantizeLinear (opset 10+); the model's opset is \(opset)")
        }
        let canReach13 = opset >= 13 || OpsetUpgrade.obstacle(in: model.graph, from: opset, to: 13) == nil
        let canReach21 = opset >= 21 || OpsetUpgrade.obstacle(in: model.graph, from: opset, to: 21) == nil
        var notes: [String] = []
        if !canReach13 {
            notes.append("the model's opset \(opset) cannot be raised to 13 ("
                         + (OpsetUpgrade.obstacle(in: model.graph, from: opset, to: 13) ?? "")
                         + "): weights are quantized per tensor and no activation is smoothed")
        }
        try checkTypesFitOpset(canReach21: canReach21)

        let nonFloat = StaticQuantizer.nonFloatValues(model)
        var blocked: [String: String] = [:]
        var policy = StaticPolicy(graph: model.graph, options: options, registry: registry, nonFloat: nonFloat,
                                  blocked: blocked)
        guard !policy.integerComputeNodes.isEmpty else {
            throw QuantizationError.nothingToQuantize(reason: StaticQuantizer.whyNothing(policy))
        }
        let data = try limitedData(calibration)
        let session = try Session(model: model, options: SessionOptions(
            threadCount: options.threadCount ?? ProcessInfo.processInfo.activeProcessorCount))

        // Pass 1: every tensor the policy quantizes, and shapes for the multiply-accumulate count.
        let activationTypes = self.activationTypes(policy)
        let smoothable = canReach13 && options.smoothing ? smoothingCandidates(policy) : [:]
        let observation = Observation(graph: model.graph, histograms: Set(policy.quantizedTensors),
                                      channels: Set(smoothable.keys))
        var results = try observation.calibrate(
            session: session, tensors: policy.quantizedTensors, overrides: schemes(activationTypes),
            configuration: configuration, batchSize: options.calibrationBatchSize, data: data,
            source: calibration.source, progress: progress)
        notes.append("calibrated with \(options.method.rawValue) on \(StaticQuantizer.sampleCount(data)) samples")

        var decisions: [String: QuantizationReport.TensorDecision] = [:]
        blocked = unquantizable(policy.quantizedTensors, results: results, observation: observation,
                                decisions: &decisions)
        policy = StaticPolicy(graph: model.graph, options: options, registry: registry, nonFloat: nonFloat,
                              blocked: blocked)

        // Smoothing, then pass 2 over the smoothed activations.
        let smoothing = try chooseSmoothing(policy, observed: smoothable, observation: observation,
                                            activationTypes: activationTypes)
        var smoothedHistograms: [String: TensorHistogram] = [:]
        if !smoothing.isEmpty {
            let (probeResults, probeHistograms) = try calibrateSmoothed(
                model, smoothing: smoothing, activationTypes: activationTypes, data: data,
                source: calibration.source, progress: progress)
            var merged = Dictionary(uniqueKeysWithValues: results.tensors.map { ($0.name, $0) })
            for (tensor, result) in probeResults { merged[tensor] = result }
            results = CalibrationResults(method: results.method, tensors: results.tensors.map { merged[$0.name]! })
            smoothedHistograms = probeHistograms
            notes.append("smoothed \(smoothing.count) activation\(smoothing.count == 1 ? "" : "s") into the weights "
                         + "that read them (SmoothQuant, α chosen per tensor)")
        }

        // Parameters, error estimates and the out-of-line rule.
        var own: [String: ActivationQuantization] = [:]
        var sqnr: [String: Double] = [:]
        for tensor in policy.quantizedTensors where blocked[tensor] == nil {
            guard let result = results[tensor],
                  let histogram = smoothedHistograms[tensor]?.histogram ?? observation.histograms[tensor]?.histogram
            else { continue }
            own[tensor] = ActivationQuantization(params: result.params, smoothing: smoothing[tensor],
                                                 range: [result.range.minimum[0], result.range.maximum[0]])
            sqnr[tensor] = HistogramAnalysis.sqnr(histogram, params: result.params)
        }
        let median = StaticQuantizer.median(Array(sqnr.values))
        for tensor in policy.quantizedTensors where own[tensor] != nil && policy.sharedSource(of: tensor) == nil {
            let histogram = smoothedHistograms[tensor]?.histogram ?? observation.histograms[tensor]!.histogram
            let outcome = try handleOutlier(tensor, quantization: own[tensor]!, sqnr: sqnr[tensor]!, median: median,
                                            histogram: histogram, canWiden: canReach21)
            own[tensor] = outcome.quantization
            sqnr[tensor] = outcome.sqnr
            if let reason = outcome.blockReason { blocked[tensor] = reason }
            decisions[tensor] = outcome.decision
        }
        policy = StaticPolicy(graph: model.graph, options: options, registry: registry, nonFloat: nonFloat,
                              blocked: blocked)
        guard !policy.integerComputeNodes.isEmpty else {
            throw QuantizationError.nothingToQuantize(reason: StaticQuantizer.whyNothing(policy))
        }

        // Final parameters: pass-through outputs share their input's; clamps fold where they clamp alike.
        var activations: [String: ActivationQuantization] = [:]
        for tensor in policy.quantizedTensors {
            if let source = policy.sharedSource(of: tensor), let shared = activations[source], shared.smoothing == nil {
                activations[tensor] = shared
                decisions[tensor] = QuantizationReport.TensorDecision(
                    name: tensor, role: .activation, action: .quantized, type: shared.params.type.name,
                    reason: "shares the parameters of '\(source)' (pass-through)", sqnrDB: sqnr[source],
                    range: shared.range)
            } else if let quantization = own[tensor] {
                activations[tensor] = quantization
                if decisions[tensor] == nil {
                    decisions[tensor] = QuantizationReport.TensorDecision(
                        name: tensor, role: .activation, action: .quantized, type: quantization.params.type.name,
                        sqnrDB: sqnr[tensor], range: quantization.range, smoothingAlpha: quantization.smoothing?.alpha)
                }
            }
        }
        let folded = try foldedClamps(policy, activations: activations, opset: opset)
        for (index, before) in folded {
            let after = policy.graph.nodes[index].outputs[0]
            guard let quantization = activations[after] else { continue }
            decisions[before] = QuantizationReport.TensorDecision(
                name: before, role: .activation, action: .quantized, type: quantization.params.type.name,
                reason: "quantized with the range of '\(after)': the \(policy.graph.nodes[index].opType) folds into it",
                sqnrDB: sqnr[after], range: quantization.range)
        }

        // Weights and biases.
        var operands: [Int: QuantizedOperands] = [:]
        var weightDecisions: [QuantizationReport.TensorDecision] = []
        for index in policy.integerComputeNodes {
            guard case .integerCompute(let slots?) = policy.status[index] else { continue }
            let (operand, reports) = try quantizeOperands(of: index, slots: slots, policy: policy,
                                                          activations: activations, perAxis: canReach13)
            operands[index] = operand
            weightDecisions += reports
        }

        // Write the graph.
        // Embedding tables (Gather of a constant) as 8-bit codes.
        let tables = try tableStorage(policy, perAxis: canReach13)

        // Write the graph.
        var quantized = model
        let emitted = try QDQEmitter(policy: policy, activations: activations, folded: folded, operands: operands,
                                     tables: tables).emit(into: model.graph)
        quantized.graph = emitted.graph
        for (table, sqnrDB) in emitted.tableSQNR.sorted(by: { $0.key < $1.key }) {
            weightDecisions.append(QuantizationReport.TensorDecision(
                name: table, role: .weight, action: .quantized, type: tables.format?.reportName,
                reason: (tables.perRow ? "per row" : "per tensor") + ", dequantized in front of Gather",
                sqnrDB: sqnrDB))
        }
        if !emitted.tableSQNR.isEmpty {
            notes.append("Gather tables are stored as 8-bit codes" + (tables.perRow ? " with one scale per row" : "")
                         + " and dequantized in front of the lookup: the file shrinks, the lookup stays float")
        }
        var needed = StaticQuantizer.requiredOpset(activations: activations, operands: operands)
        if tables.perRow && !emitted.tableSQNR.isEmpty { needed = max(needed, 13) }
        if needed > opset {
            try OpsetUpgrade.raise(&quantized, to: needed)
            notes.append("opset raised from \(opset) to \(needed) for "
                         + (needed >= 21 ? "16-bit or 4-bit codes" : "per-axis scales"))
        }
        if options.format == .qoperator {
            let conversion = try QOperatorConversion().convert(
                quantized.graph, opset: quantized.opsetVersion(domain: "") ?? needed)
            quantized.graph = conversion.graph
            notes += conversion.notes
        }
        try DeadCodeElimination().run(on: &quantized.graph, context: PassContext(opsetImports: quantized.opsetImports))
        quantized.graph = try quantized.graph.sortedTopologically()
        // Annotations of values the rewrite removed or moved would mislead readers of the file.
        let defined = quantized.graph.definedValueNames
        quantized.graph.valueInfo = quantized.graph.valueInfo.filter { defined.contains($0.key) }

        var report = QuantizationReport(options: options)
        report.notes = notes
        report.tensors = policy.quantizedTensors.compactMap { decisions[$0] }
            + decisions.values.filter { $0.action == .keptFloat }.sorted { $0.name < $1.name } + weightDecisions
        report.nodes = nodeDecisions(policy, folded: folded, tables: Set(tables.nodes), model: model.graph)
        report.multiplyAccumulates = multiplyAccumulates(policy, observation: observation, activations: activations,
                                                         operands: operands)
        report.recordWrittenNames(emitted.names, in: quantized.graph)
        return QuantizationResult(model: quantized, report: report)
    }

    // MARK: - Options

    /// Rejects option combinations static mode cannot honour.
    func validateOptions() throws {
        if let groupSize = options.groupSize {
            throw QuantizationError.unsupportedOption(
                "--group-size \(groupSize) applies to weight-only mode; static mode quantizes weights per output "
                    + "channel (or per tensor with --per-channel false)")
        }
        if let limit = options.calibrationLimit, limit < 1 {
            throw QuantizationError.unsupportedOption("--calib-limit must be at least 1, got \(limit)")
        }
        func checkWeight(_ type: QuantType, _ origin: String) throws {
            guard StaticQuantizer.weightTypes.contains(type) else {
                throw QuantizationError.unsupportedOption(
                    "\(origin) \(type) is not supported in static mode; use "
                        + StaticQuantizer.weightTypes.map(\.name).joined(separator: ", "))
            }
            if options.format == .qoperator && !StaticQuantizer.integer8.contains(type) {
                throw QuantizationError.unsupportedOption(
                    "\(origin) \(type) cannot be written with --format qoperator: QLinearConv, QLinearMatMul, "
                        + "ConvInteger and MatMulInteger take 8-bit codes; use --format qdq")
            }
        }
        func checkActivation(_ type: QuantType, _ origin: String) throws {
            guard StaticQuantizer.activationTypes.contains(type) else {
                throw QuantizationError.unsupportedOption(
                    "\(origin) \(type) is not supported in static mode; use "
                        + StaticQuantizer.activationTypes.map(\.name).joined(separator: ", "))
            }
            if options.format == .qoperator && !StaticQuantizer.integer8.contains(type) {
                throw QuantizationError.unsupportedOption(
                    "\(origin) \(type) cannot be written with --format qoperator, whose integer operators take "
                        + "8-bit codes; use --format qdq")
            }
        }
        try checkWeight(options.resolvedWeightType, "--weight-type")
        try checkActivation(options.activationType, "--activation-type")
        for (node, override) in (options.plan?.nodes ?? [:]).sorted(by: { $0.key < $1.key }) {
            if let type = override.weightType { try checkWeight(type, "the plan's weight type for '\(node)',") }
            if let type = override.activationType {
                try checkActivation(type, "the plan's activation type for '\(node)',")
            }
        }
    }

    /// 16-bit activations and 4/16-bit weights need opset 21.
    func checkTypesFitOpset(canReach21: Bool) throws {
        guard !canReach21 else { return }
        var types = [options.resolvedWeightType, options.activationType]
        for override in (options.plan?.nodes).map({ Array($0.values) }) ?? [] {
            types += [override.weightType, override.activationType].compactMap { $0 }
        }
        if let type = types.first(where: { !StaticQuantizer.integer8.contains($0) }) {
            throw QuantizationError.unsupportedOption(
                "\(type) codes need opset 21, and this model cannot be raised to it")
        }
    }

    var configuration: CalibrationConfiguration {
        CalibrationConfiguration(method: options.method, scheme: activationScheme(options.activationType),
                                 percentile: options.percentile)
    }

    func activationScheme(_ type: QuantType) -> QuantScheme {
        QuantScheme(type: type, granularity: .perTensor,
                    mapping: options.symmetricActivations ? .symmetric : .asymmetric, range: .full)
    }

    /// Symmetric weights use the narrow range of signed types (`[−127, 127]` for int8).
    func weightScheme(for node: Node, axis: Int?, perAxis: Bool) -> QuantScheme {
        let type = options.plan?.nodes[node.name]?.weightType ?? options.resolvedWeightType
        let granularity: Granularity = options.perChannel && perAxis && axis != nil ? .perChannel(axis: axis!) : .perTensor
        let symmetric = options.symmetricWeights
        return QuantScheme(type: type, granularity: granularity, mapping: symmetric ? .symmetric : .asymmetric,
                           range: symmetric && type.isSigned ? .narrow : .full)
    }

    /// Per-tensor activation types other than the default: the widest a quantized reader's plan asks for.
    func activationTypes(_ policy: StaticPolicy) -> [String: QuantType] {
        var types: [String: QuantType] = [:]
        for (index, inputs) in policy.activationInputs {
            guard let type = options.plan?.nodes[policy.graph.nodes[index].name]?.activationType else { continue }
            for name in inputs where (types[name]?.bitWidth ?? 0) < type.bitWidth { types[name] = type }
        }
        return types
    }

    func schemes(_ types: [String: QuantType]) -> [String: QuantScheme] {
        types.mapValues { activationScheme($0) }
    }

    // MARK: - Data

    /// The calibration arrays, cut to `calibrationLimit` samples.
    func limitedData(_ calibration: CalibrationData) throws -> [String: Tensor] {
        guard let limit = options.calibrationLimit else { return calibration.arrays }
        return try calibration.arrays.mapValues { array in
            guard let rows = array.shape.first, rows > limit else { return array }
            return try array.leadingRows(limit)
        }
    }

    static func sampleCount(_ data: [String: Tensor]) -> Int { data.values.first?.shape.first ?? 0 }

    /// Values shape inference types as something other than float32.
    static func nonFloatValues(_ model: Model) -> Set<String> {
        guard let inferred = try? ShapeInference.infer(model) else { return [] }
        var names = Set<String>()
        for info in Array(inferred.graph.valueInfo.values) + inferred.graph.inputs + inferred.graph.outputs {
            if let type = info.type?.tensorElementType, type != .float32 { names.insert(info.name) }
        }
        return names
    }

    static func whyNothing(_ policy: StaticPolicy) -> String {
        let compute = ["Conv", "ConvTranspose", "Gemm", "MatMul"]
        let nodes = policy.graph.nodes.enumerated().filter { compute.contains($0.element.opType) }
        guard !nodes.isEmpty else {
            let types = Set(policy.graph.nodes.map(\.opType)).sorted().joined(separator: ", ")
            return "the model has no Conv, ConvTranspose, Gemm or MatMul node (its operators: \(types))"
        }
        let reasons = nodes.prefix(5).map { index, node -> String in
            if case .float(let reason) = policy.status[index] { return "\(node.label): \(reason)" }
            return node.label
        }
        return "no matrix operator can be quantized — " + reasons.joined(separator: "; ")
    }

    static func median(_ values: [Double]) -> Double? {
        guard values.count >= 3 else { return nil }
        let sorted = values.sorted()
        let mid = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
    }

    // MARK: - What cannot be quantized

    /// Tensors that must stay float after calibration, with reports: not finite, dominated by a masking
    /// constant, or never seen as float32.
    func unquantizable(_ tensors: [String], results: CalibrationResults, observation: Observation,
                       decisions: inout [String: QuantizationReport.TensorDecision]) -> [String: String] {
        var blocked: [String: String] = [:]
        for tensor in tensors {
            var reason: String?
            if let result = results[tensor], result.statistics.nan + result.statistics.infinite > 0 {
                let s = result.statistics
                reason = "its calibrated range is not finite (\(s.infinite) infinite and \(s.nan) NaN values "
                    + "among \(s.finite + s.infinite + s.nan))"
            } else if results[tensor] == nil || (observation.histograms[tensor]?.histogram.total ?? 0) == 0 {
                reason = "calibration never produced it as a float32 tensor with finite values"
            } else if let histogram = observation.histograms[tensor]?.histogram,
                      let constant = HistogramAnalysis.maskingConstant(histogram) {
                reason = "its range is dominated by a masking constant (\(constant)); quantizing it would spend "
                    + "every code on the gap between the data and the constant"
            }
            guard let reason else { continue }
            blocked[tensor] = reason
            decisions[tensor] = QuantizationReport.TensorDecision(name: tensor, role: .activation, action: .keptFloat,
                                                                  reason: reason)
        }
        return blocked
    }

    /// The out-of-line rule for one activation (see the type's doc comment).
    func handleOutlier(_ tensor: String, quantization: ActivationQuantization, sqnr: Double, median: Double?,
                       histogram: StreamingHistogram, canWiden: Bool) throws -> OutlierOutcome {
        func inLine(_ value: Double) -> Bool {
            value >= StaticQuantizer.outlierFloor && value >= (median ?? -.infinity) - StaticQuantizer.outlierMargin
        }
        let type = quantization.params.type
        let plain = QuantizationReport.TensorDecision(
            name: tensor, role: .activation, action: .quantized, type: type.name, sqnrDB: sqnr,
            range: quantization.range, smoothingAlpha: quantization.smoothing?.alpha)
        guard !inLine(sqnr) else { return OutlierOutcome(quantization: quantization, sqnr: sqnr, decision: plain) }
        let line = median.map { String(format: "%.1f dB under the median %.1f dB", $0 - sqnr, $0) }
            ?? String(format: "under %.0f dB", StaticQuantizer.outlierFloor)
        let why = String(format: "SQNR %.1f dB with the %@ range is %@", sqnr, options.method.rawValue, line)
        let scheme = activationScheme(type)

        if options.method != .mse {
            let (lo, hi) = try HistogramAnalysis.minimumSquaredErrorRange(histogram, scheme: scheme)
            let params = try QuantParams(scheme: scheme, minimum: lo, maximum: hi)
            let clipped = HistogramAnalysis.sqnr(histogram, params: params)
            if inLine(clipped) {
                var quantization = quantization
                quantization.params = params
                quantization.range = [lo, hi]
                return OutlierOutcome(
                    quantization: quantization, sqnr: clipped,
                    decision: QuantizationReport.TensorDecision(
                        name: tensor, role: .activation, action: .clipped, type: type.name,
                        reason: why + String(format: "; the minimum-squared-error clip [%g, %g] gives %.1f dB", lo, hi, clipped),
                        sqnrDB: clipped, range: [lo, hi], smoothingAlpha: quantization.smoothing?.alpha))
            }
        }
        if canWiden, type.bitWidth < 16, options.format == .qdq {
            let wide: QuantType = type.isSigned ? .int16 : .uint16
            let params = try QuantParams(scheme: activationScheme(wide), minimum: histogram.minimum,
                                         maximum: histogram.maximum)
            let widened = HistogramAnalysis.sqnr(histogram, params: params)
            var quantization = quantization
            quantization.params = params
            quantization.range = [histogram.minimum, histogram.maximum]
            return OutlierOutcome(
                quantization: quantization, sqnr: widened,
                decision: QuantizationReport.TensorDecision(
                    name: tensor, role: .activation, action: .widened, type: wide.name,
                    reason: why + String(format: "; no clip brings it in line, %@ gives %.1f dB", wide.name, widened),
                    sqnrDB: widened, range: quantization.range, smoothingAlpha: quantization.smoothing?.alpha))
        }
        let reason = why + "; no clip brings it in line and wider codes are not available here"
        return OutlierOutcome(
            quantization: nil, sqnr: sqnr, blockReason: reason,
            decision: QuantizationReport.TensorDecision(name: tensor, role: .activation, action: .keptFloat,
                                                        reason: reason, sqnrDB: sqnr))
    }

    struct OutlierOutcome {
        var quantization: ActivationQuantization?
        var sqnr: Double
        var blockReason: String?
        var decision: QuantizationReport.TensorDecision
    }

    // MARK: - Smoothing

    /// Activations whose quantized readers are all weight matrices that can absorb per-channel factors
    /// (MatMul with a 2-D constant B, Gemm with a constant B and no transposed A), with those readers.
    ///
    /// The producer must be float: a quantized producer's QuantizeLinear fuses into it in integer runtimes
    /// (`DQ → MatMul → Q` becomes QLinearMatMul), which takes one output scale, not one per channel.
    func smoothingCandidates(_ policy: StaticPolicy) -> [String: [(Int, WeightSlots)]] {
        var candidates: [String: [(Int, WeightSlots)]] = [:]
        for tensor in policy.quantizedTensors where !policy.producerIsQuantized(tensor) {
            var readers: [(Int, WeightSlots)] = []
            var usable = true
            for index in policy.readers[tensor] ?? [] {
                switch policy.status[index] {
                case .float:
                    continue
                case .integerCompute(let slots?) where slots.reductionAxis != nil && slots.weight == 1
                    && policy.graph.nodes[index].inputs[0] == tensor && policy.graph.nodes[index].inputs[1] != tensor:
                    readers.append((index, slots))
                default:
                    usable = false
                }
            }
            if usable && !readers.isEmpty { candidates[tensor] = readers }
        }
        return candidates
    }

    /// The smoothing of each candidate that was observed per channel and still qualifies, where it helps.
    func chooseSmoothing(_ policy: StaticPolicy, observed: [String: [(Int, WeightSlots)]], observation: Observation,
                         activationTypes: [String: QuantType]) throws -> [String: Smoothing.Choice] {
        var smoothing: [String: Smoothing.Choice] = [:]
        let candidates = smoothingCandidates(policy)
        for tensor in policy.quantizedTensors where observed[tensor] != nil {
            guard let readers = candidates[tensor], let statistics = observation.channels[tensor] else { continue }
            let weights = try readers.map { index, slots in
                try Smoothing.Weight(policy.constants[policy.graph.nodes[index].inputs[slots.weight]]!,
                                     reductionAxis: slots.reductionAxis!,
                                     scheme: weightScheme(for: policy.graph.nodes[index], axis: slots.outputChannelAxis,
                                                          perAxis: true))
            }
            let scheme = activationScheme(activationTypes[tensor] ?? options.activationType)
            smoothing[tensor] = try Smoothing.choose(statistics, weights: weights, activationScheme: scheme)
        }
        return smoothing
    }

    /// Calibrates `x / s` for every smoothed activation on a copy of the model with probes.
    func calibrateSmoothed(
        _ model: Model, smoothing: [String: Smoothing.Choice], activationTypes: [String: QuantType],
        data: [String: Tensor], source: String, progress: @escaping (Int, Int) -> Void
    ) throws -> ([String: TensorCalibration], [String: TensorHistogram]) {
        var editor = GraphEditor(graph: model.graph)
        var probes: [String: String] = [:]
        for (tensor, choice) in smoothing.sorted(by: { $0.key < $1.key }) {
            let inverse = editor.addInitializer(try Tensor(shape: [choice.factors.count],
                                                           scalars: choice.factors.map { 1 / $0 }),
                                                base: tensor + "_smoothing_inverse")
            let probe = editor.freshName(tensor + "_smoothed")
            editor.appendNode(Node(name: editor.freshName(tensor + "_smoothing_probe"), opType: "Mul",
                               inputs: [tensor, inverse], outputs: [probe]))
            editor.graph.outputs.append(ValueInfo(name: probe))
            probes[probe] = tensor
        }
        var probeModel = model
        probeModel.graph = try editor.graph.sortedTopologically()
        let session = try Session(model: probeModel, options: SessionOptions(
            threadCount: options.threadCount ?? ProcessInfo.processInfo.activeProcessorCount))
        let names = probes.keys.sorted()
        let observation = Observation(graph: probeModel.graph, histograms: Set(names), channels: [])
        var overrides: [String: QuantType] = [:]
        for (probe, tensor) in probes { overrides[probe] = activationTypes[tensor] }
        let results = try observation.calibrate(
            session: session, tensors: names, overrides: schemes(overrides), configuration: configuration,
            batchSize: options.calibrationBatchSize, data: data, source: source, progress: progress)
        var byTensor: [String: TensorCalibration] = [:]
        var histograms: [String: TensorHistogram] = [:]
        for (probe, tensor) in probes {
            guard let result = results[probe] else { continue }
            byTensor[tensor] = TensorCalibration(name: tensor, params: result.params, range: result.range,
                                                 statistics: result.statistics)
            histograms[tensor] = observation.histograms[probe]
        }
        return (byTensor, histograms)
    }

    // MARK: - Clamps

    /// Active clamps that fold into the tensor before them: that tensor is produced by a quantized node and
    /// read only by the clamp, and quantizing with the clamp's parameters clamps exactly as it does —
    /// `round(lower / s) + z ≤ qmin` and `round(upper / s) + z ≥ qmax`.
    func foldedClamps(_ policy: StaticPolicy, activations: [String: ActivationQuantization], opset: Int) throws
        -> [Int: String]
    {
        var folded: [Int: String] = [:]
        let graphOutputs = policy.graph.outputNames
        for (index, status) in policy.status.enumerated() where status == .active(.clamp) {
            let node = policy.graph.nodes[index]
            let input = node.inputs[0], output = node.outputs[0]
            guard policy.producerIsQuantized(input), policy.readers[input] == [index],
                  !graphOutputs.contains(input), !graphOutputs.contains(output),
                  let quantization = activations[output], quantization.smoothing == nil,
                  let bounds = ClampQuantizer.bounds(of: node, constants: policy.constants, opset: opset),
                  let codes = quantization.params.codeRange else { continue }
            let s = quantization.params.scales[0], z = Float(quantization.params.zeroPoints[0])
            let lowerCode = bounds.lower.isFinite ? (bounds.lower / s).rounded(.toNearestOrEven) + z : -.infinity
            let upperCode = bounds.upper.isFinite ? (bounds.upper / s).rounded(.toNearestOrEven) + z : .infinity
            if lowerCode <= Float(codes.lowerBound) && upperCode >= Float(codes.upperBound) {
                folded[index] = input
            }
        }
        return folded
    }

    // MARK: - Weights

    /// The quantized weight and bias of compute node `index`, with report entries.
    func quantizeOperands(of index: Int, slots: WeightSlots, policy: StaticPolicy,
                          activations: [String: ActivationQuantization], perAxis: Bool) throws
        -> (QuantizedOperands, [QuantizationReport.TensorDecision])
    {
        let node = policy.graph.nodes[index]
        let weightName = node.inputs[slots.weight]
        var weight = policy.constants[weightName]!
        guard weight.dtype == .float32 else {
            throw QuantizationError.unsupportedNode(node: node.name, reason: "weight '\(weightName)' is \(weight.dtype), not float32")
        }
        let activationSlot = slots.weight == 1 ? 0 : 1
        let activation = activations[node.inputs[activationSlot]]
        var key = weightName
        if let smoothing = activation?.smoothing, let axis = slots.reductionAxis {
            weight = try weight.scaled(along: axis, by: smoothing.factors)
            key += "|smoothed:" + node.inputs[activationSlot]
        }
        let values = try weight.floatArray()
        if let bad = values.first(where: { !$0.isFinite }) {
            throw QuantizationError.unsupportedNode(node: node.name, reason: "weight '\(weightName)' holds \(bad)")
        }
        let scheme = weightScheme(for: node, axis: slots.outputChannelAxis, perAxis: perAxis)
        var observer = MinMaxObserver(granularity: scheme.granularity)
        try observer.observe(weight)
        let params = try observer.parameters(for: scheme)
        let codes = try weight.quantized(with: params)
        let restored = try codes.dequantized().floatArray()
        var signal = 0.0, noise = 0.0
        for (w, r) in zip(values, restored) {
            signal += Double(w) * Double(w)
            noise += Double(w - r) * Double(w - r)
        }
        let weightAxis: Int? = scheme.granularity == .perTensor ? nil : slots.outputChannelAxis
        key += "|\(scheme.type.name)|\(weightAxis.map(String.init) ?? "tensor")"
        var reports = [QuantizationReport.TensorDecision(
            name: weightName, role: .weight, action: .quantized, type: scheme.type.name,
            reason: weightAxis.map { "per channel along axis \($0)" } ?? "per tensor",
            sqnrDB: HistogramAnalysis.decibels(signal: signal, noise: noise))]

        var bias: BiasCodes?
        if let slot = slots.bias, let inputScale = activation?.params.scales.first,
           let biasTensor = policy.constants[node.inputs[slot]] {
            let outcome = try quantizeBias(biasTensor, inputScale: inputScale, weightParams: params,
                                           reduction: values.count / max(params.count, 1),
                                           activationType: activation!.params.type)
            switch outcome {
            case .success(let codes):
                bias = codes
                reports.append(QuantizationReport.TensorDecision(
                    name: node.inputs[slot], role: .bias, action: .quantized, type: "int32",
                    reason: "scale s_in · s_w"))
            case .failure(let overflow):
                reports.append(QuantizationReport.TensorDecision(
                    name: node.inputs[slot], role: .bias, action: .keptFloat, reason: overflow.message))
            }
        }
        return (QuantizedOperands(weight: codes, weightAxis: weightAxis, bias: bias, key: key), reports)
    }

    struct BiasOverflow: Error { let message: String }

    /// Int32 bias codes `round(b / (s_in · s_w[c]))`. Fails (the bias stays float) when a code would leave
    /// the room an int32 accumulator has after the largest product sum, `2³¹ − 1 − K · |qx|max · |qw|max`.
    func quantizeBias(_ bias: Tensor, inputScale: Float, weightParams: QuantParams, reduction: Int,
                      activationType: QuantType) throws -> Result<BiasCodes, BiasOverflow> {
        let values = try bias.floatArray()
        let weightScales = weightParams.scales
        let scales = values.indices.map { inputScale * weightScales[weightParams.count == 1 ? 0 : $0 % weightScales.count] }
        let activationMagnitude = Double(max(abs(activationType.integerRange?.lowerBound ?? 255),
                                             abs(activationType.integerRange?.upperBound ?? 255)))
        let weightMagnitude = Double(max(abs(weightParams.codeRange?.lowerBound ?? 127),
                                         abs(weightParams.codeRange?.upperBound ?? 127)))
        let room = Double(Int32.max) - Double(reduction) * activationMagnitude * weightMagnitude
        var codes = [Int32](repeating: 0, count: values.count)
        for (c, b) in values.enumerated() {
            let q = (Double(b) / Double(scales[c])).rounded(.toNearestOrEven)
            guard q.isFinite, abs(q) <= room else {
                return .failure(BiasOverflow(message: String(
                    format: "channel %d: %g / (s_in · s_w = %g) does not fit the int32 accumulator's room (%.3g); "
                        + "the bias stays float", c, Double(b), Double(scales[c]), max(room, 0))))
            }
            codes[c] = Int32(q)
        }
        let perTensor = weightParams.count == 1
        return .success(BiasCodes(storage: try Tensor(shape: bias.shape, scalars: codes),
                                  scales: perTensor ? [scales.first ?? inputScale] : scales,
                                  axis: perTensor ? nil : bias.rank - 1))
    }

    // MARK: - Tables

    /// The Gather nodes whose constant float32 table (rank ≥ 2, gathered along axis 0, finite, read by
    /// nothing else) is stored as 8-bit codes — int8, or uint8 when that is the weight type — as the
    /// dynamic and weight-only modes do; `--ops`, `--exclude` and the plan can keep them float.
    func tableStorage(_ policy: StaticPolicy, perAxis: Bool) throws -> QDQEmitter.TableStorage {
        let type: QuantType = options.resolvedWeightType == .uint8 ? .uint8 : .int8
        let format = try WeightFormat(type, mapping: options.symmetricWeights ? .symmetric : .asymmetric)
        var storage = QDQEmitter.TableStorage(nodes: [], format: format, perRow: perAxis && options.perChannel)
        if let types = options.operatorTypes, !types.contains("Gather") { return storage }
        var candidates: [Int] = []
        for (index, node) in policy.graph.nodes.enumerated()
        where node.opType == "Gather" && node.normalizedDomain.isEmpty && node.inputs.count == 2 {
            guard !policy.status[index].isQuantized, !options.excludedNodes.contains(node.name),
                  options.plan?.nodes[node.name]?.skip != true,
                  let table = policy.constants[node.inputs[0]], table.dtype == .float32, table.rank >= 2,
                  table.count > 0, policy.constants[node.inputs[1]] == nil else { continue }
            let axis = node.attributes["axis"]?.intValue ?? 0
            guard axis == 0 || axis == -table.rank,
                  table.withUnsafeBufferPointer(as: Float.self, { $0.allSatisfy(\.isFinite) }) else { continue }
            candidates.append(index)
        }
        // A table some other operator also reads would be stored twice.
        let chosen = Set(candidates)
        storage.nodes = candidates.filter { index in
            (policy.readers[policy.graph.nodes[index].inputs[0]] ?? []).allSatisfy(chosen.contains)
        }
        return storage
    }

    // MARK: - Report

    func nodeDecisions(_ policy: StaticPolicy, folded: [Int: String], tables: Set<Int>, model: Graph)
        -> [QuantizationReport.NodeDecision]
    {
        policy.graph.nodes.enumerated().compactMap { index, node in
            guard node.opType != "Constant" else { return nil }
            let reason: String?
            switch policy.status[index] {
            case .float(let why):
                reason = tables.contains(index) ? "float lookup in a table stored as 8-bit codes" : why
            case .integerCompute(let slots):
                reason = slots == nil ? "integer compute, every operand quantized per tensor" : "integer compute"
            case .active(let role):
                if folded[index] != nil {
                    reason = "folded into the output range of '\(folded[index]!)'"
                } else {
                    reason = role == .passThrough ? "pass-through in the quantized domain" : "quantized domain"
                }
            }
            return QuantizationReport.NodeDecision(name: node.name, opType: node.opType,
                                                   quantized: policy.status[index].isQuantized, reason: reason)
        }
    }

    func multiplyAccumulates(_ policy: StaticPolicy, observation: Observation,
                             activations: [String: ActivationQuantization],
                             operands: [Int: QuantizedOperands]) -> QuantizationReport.MultiplyAccumulates {
        var total = 0.0, integer8 = 0.0
        var others: [(String, Double, String)] = []
        for (index, macs) in observation.multiplyAccumulates {
            total += macs
            let node = policy.graph.nodes[index]
            var reason: String?
            switch policy.status[index] {
            case .float(let why): reason = why
            case .integerCompute:
                let inputTypes = (policy.activationInputs[index] ?? []).compactMap { activations[$0]?.params.type }
                if let wide = inputTypes.first(where: { !StaticQuantizer.integer8.contains($0) }) {
                    reason = "an activation is \(wide.name)"
                } else if let weightType = operands[index]?.weight.params.type, !StaticQuantizer.integer8.contains(weightType) {
                    reason = "its weight is \(weightType.name)"
                } else if options.format == .qoperator && node.opType == "ConvTranspose" {
                    reason = "no standard integer ConvTranspose operator exists; it runs on dequantized values"
                }
            case .active: break
            }
            if let reason {
                others.append((node.name.isEmpty ? node.label : node.name, macs, reason))
            } else {
                integer8 += macs
            }
        }
        let shares = others.sorted { $0.1 > $1.1 }.map {
            QuantizationReport.MultiplyAccumulates.NodeShare(name: $0.0, share: total > 0 ? $0.1 / total : 0, reason: $0.2)
        }
        return QuantizationReport.MultiplyAccumulates(total: total, integer8: integer8, notInteger8: shares)
    }

    /// 13 for per-axis scales, 21 for 16-bit or 4-bit codes, 10 otherwise.
    static func requiredOpset(activations: [String: ActivationQuantization], operands: [Int: QuantizedOperands]) -> Int {
        var needed = 10
        for quantization in activations.values {
            if quantization.smoothing != nil { needed = max(needed, 13) }
            if !integer8.contains(quantization.params.type) { needed = max(needed, 21) }
        }
        for operand in operands.values {
            if operand.weightAxis != nil || operand.bias?.axis != nil { needed = max(needed, 13) }
            if !integer8.contains(operand.weight.params.type) { needed = max(needed, 21) }
        }
        return needed
    }
}
