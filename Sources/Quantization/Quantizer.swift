import GraphIR
import Runtime
import Tensors

/// Calibration samples: one array per model input, samples along the first axis.
public struct CalibrationData: Sendable {
    public var arrays: [String: Tensor]
    /// Names the data in errors, usually its file path.
    public var source: String

    public init(arrays: [String: Tensor], source: String) {
        self.arrays = arrays
        self.source = source
    }
}

/// A quantized model and the account of how it was made.
public struct QuantizationResult: Sendable {
    public var model: Model
    public var report: QuantizationReport
}

/// Turns a float model into a quantized one under `options` — the library face of `swiftquant quantize`.
public struct Quantizer: Sendable {
    public var options: QuantizationOptions

    public init(options: QuantizationOptions = QuantizationOptions()) { self.options = options }

    /// Quantizes `model`. Static mode needs `calibration`; weight-only mode uses it when given (GPTQ for
    /// MatMul/Gemm weights); the other modes ignore it.
    ///
    /// The graph is first simplified (identities removed, constants folded, BatchNorm folded into
    /// convolutions, dead nodes dropped) so the policy sees the operators that will run.
    ///
    /// - Parameter progress: called during calibration with (samples done, samples in all).
    public func quantize(
        _ model: Model, calibration: CalibrationData? = nil, progress: @escaping (Int, Int) -> Void = { _, _ in }
    ) throws -> QuantizationResult {
        try validate(model)
        var prepared = model
        try PassPipeline.standard(evaluator: KernelEvaluator.standard).run(on: &prepared)
        switch options.mode {
        case .static:
            guard let calibration else { throw QuantizationError.calibrationDataRequired }
            return try StaticQuantizer(options: options).quantize(prepared, calibration: calibration,
                                                                   progress: progress)
        case .dynamic:
            return try DynamicQuantizer(options: options).quantize(prepared)
        case .weightOnly:
            return try WeightOnlyQuantizer(options: options).quantize(prepared, calibration: calibration,
                                                                      progress: progress)
        case .fp16:
            return try FP16Converter(options: options).quantize(prepared)
        }
    }

    /// Checks the options that do not depend on the mode, and that named nodes exist.
    func validate(_ model: Model) throws {
        let names = Set(model.graph.nodes.map(\.name))
        for name in options.excludedNodes.sorted() where !names.contains(name) {
            throw QuantizationError.unknownNode(name)
        }
        for name in (options.plan?.nodes.keys).map(Array.init)?.sorted() ?? [] where !names.contains(name) {
            throw QuantizationError.unknownNode(name)
        }
        if let groupSize = options.groupSize, groupSize < 2 {
            throw QuantizationError.unsupportedOption("--group-size must be at least 2, got \(groupSize)")
        }
        if options.calibrationBatchSize < 1 {
            throw QuantizationError.unsupportedOption(
                "calibration batch size must be positive, got \(options.calibrationBatchSize)")
        }
    }
}
