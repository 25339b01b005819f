import ArgumentParser
import Foundation
import SwiftQuant

/// `swiftquant quantize`: a float ONNX model in, a quantized ONNX model out (DESIGN.md §5).
struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize an ONNX model: static, dynamic, weight-only or fp16.")

    @Argument(help: "The float ONNX model.")
    var model: String

    @Option(name: .shortAndLong, help: "Where to write the quantized model.")
    var output: String

    @Option(help: "static, dynamic, weight-only or fp16.")
    var mode: String = QuantizationMode.static.rawValue

    @Option(help: "Calibration data (.npz, one array per model input, samples along the first axis); static mode, and GPTQ in weight-only mode.")
    var calib: String?

    @Option(help: "Calibration method: minmax, moving-average, entropy, percentile or mse.")
    var method: String?

    @Option(help: "Weight type: int8, uint8, int4, uint4, int2, int16, fp16 … (default: the mode's).")
    var weightType: String?

    @Option(help: "Activation type: uint8, int8 or int16.")
    var activationType: String?

    @Option(name: .customLong("per-channel"), help: "One weight scale per output channel (true/false).")
    var perChannel: Bool?

    @Option(help: "Weight group size along the reduction axis (weight-only: 32, 64, 128 …).")
    var groupSize: Int?

    @Flag(help: "Asymmetric weights (a zero point per channel or group).")
    var asymmetricWeights = false

    @Flag(help: "Symmetric activation ranges.")
    var symmetricActivations = false

    @Option(help: "Dynamic mode: per-token (default) or per-tensor (DynamicQuantizeLinear) activation scales for MatMul/Gemm.")
    var dynamicActivations: String?

    @Flag(help: "Static mode: do not move per-channel activation ranges into the weights (SmoothQuant).")
    var noSmoothing = false

    @Flag(help: "Static mode: also quantize products of two activations (attention Q·Kᵀ and P·V).")
    var quantizeActivationProducts = false

    @Option(help: "qdq or qoperator.")
    var format: String = QuantizedFormat.qdq.rawValue

    @Option(help: "Operator types to quantize, comma-separated (default: the policy's).")
    var ops: String?

    @Option(help: "Node names to leave in float, comma-separated.")
    var exclude: String?

    @Option(help: "Per-node overrides (JSON: {\"nodes\": {\"NODE\": {\"skip\": true, \"weight_type\": \"int4\"}}}).")
    var plan: String?

    @Option(help: "Write what was quantized, kept float or widened, and why (.json).")
    var report: String?

    @Option(help: "Use at most this many calibration samples.")
    var calibLimit: Int?

    @Option(help: "Samples per calibration run.")
    var batchSize = 16

    @Option(help: "Threads (default: all cores).")
    var threads: Int?

    func run() throws {
        try reportingErrors {
            let options = try makeOptions()
            if let report, !report.hasSuffix(".json") {
                throw CommandError("--report \(report): only .json reports are written so far")
            }
            let loaded = try Model(contentsOf: URL(fileURLWithPath: model))
            var calibration: CalibrationData?
            if let calib {
                calibration = CalibrationData(arrays: try NPZ.readDictionary(URL(fileURLWithPath: calib)),
                                              source: calib)
            }
            let progress = TerminalProgress(label: "calibrating")
            let result = try Quantizer(options: options).quantize(loaded, calibration: calibration) { done, total in
                progress.update(done, of: total)
            }
            progress.finish()
            try result.model.write(to: URL(fileURLWithPath: output))
            if let report {
                try result.report.json().write(to: URL(fileURLWithPath: report), options: .atomic)
            }
        }
    }

    /// The typed options the flags describe.
    func makeOptions() throws -> QuantizationOptions {
        var options = QuantizationOptions()
        if mode == "qat" {
            throw CommandError("--mode qat needs the training module, which has not landed yet")
        }
        guard let parsedMode = QuantizationMode(rawValue: mode) else {
            throw CommandError("--mode \(mode) is not one of: "
                               + QuantizationMode.allCases.map(\.rawValue).joined(separator: ", "))
        }
        options.mode = parsedMode
        if let method {
            guard let parsed = CalibrationMethod(rawValue: method) else {
                throw CommandError("--method \(method) is not one of: "
                                   + CalibrationMethod.allCases.map(\.rawValue).joined(separator: ", "))
            }
            options.method = parsed
        }
        if let weightType { options.weightType = try QuantType(name: weightType) }
        if let activationType { options.activationType = try QuantType(name: activationType) }
        if let perChannel { options.perChannel = perChannel }
        options.groupSize = groupSize
        options.symmetricWeights = !asymmetricWeights
        options.symmetricActivations = symmetricActivations
        options.smoothing = !noSmoothing
        options.quantizeActivationProducts = quantizeActivationProducts
        guard let parsedFormat = QuantizedFormat(rawValue: format) else {
            throw CommandError("--format \(format) is not one of: qdq, qoperator")
        }
        options.format = parsedFormat
        if let dynamicActivations {
            guard let parsed = DynamicActivationScheme(rawValue: dynamicActivations) else {
                throw CommandError("--dynamic-activations \(dynamicActivations) is not one of: "
                                   + DynamicActivationScheme.allCases.map(\.rawValue).joined(separator: ", "))
            }
            options.dynamicActivations = parsed
        }
        if let ops { options.operatorTypes = Set(Self.list(ops)) }
        if let exclude { options.excludedNodes = Set(Self.list(exclude)) }
        if let plan {
            let data = try Data(contentsOf: URL(fileURLWithPath: plan))
            do {
                options.plan = try JSONDecoder().decode(QuantizationPlan.self, from: data)
            } catch {
                throw CommandError("--plan \(plan): not a valid plan: \(error)")
            }
        }
        options.calibrationLimit = calibLimit
        options.calibrationBatchSize = batchSize
        options.threadCount = threads.map { max(1, $0) }
        return options
    }

    static func list(_ text: String) -> [String] {
        text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }
}
