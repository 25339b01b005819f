import Calibration
import GraphIR
import QuantCore
import Runtime
import Tensors

/// Problems with a calibration run, naming the data file, array or tensor at fault.
public enum CalibrationError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The calibration data has no array for a model input.
    case missingInput(source: String, input: String)
    /// An array's first (sample) axis disagrees with the others, or it has none.
    case inconsistentSamples(source: String, array: String, reason: String)
    /// No samples at all.
    case empty(source: String)
    /// The batch size is not positive.
    case invalidBatchSize(Int)

    public var description: String {
        switch self {
        case .missingInput(let source, let input): return "\(source): no array for model input '\(input)'"
        case .inconsistentSamples(let source, let array, let reason): return "\(source): array '\(array)' \(reason)"
        case .empty(let source): return "\(source): the calibration set has no samples"
        case .invalidBatchSize(let size): return "batch size must be positive, got \(size)"
        }
    }
}

/// Runs calibration data through the FP32 runtime in batches and feeds the chosen activations to
/// streaming observers, one per tensor. Memory stays bounded by the observers and one batch.
public struct CalibrationDriver {
    public let session: Session
    public var configuration: CalibrationConfiguration
    /// Samples per run (first axis of every input array).
    public var batchSize: Int
    /// The tensors observed; by default `ActivationSelection.tensorsToObserve`.
    public var tensorNames: [String]

    public init(session: Session, configuration: CalibrationConfiguration, batchSize: Int = 16,
                tensorNames: [String]? = nil) {
        self.session = session
        self.configuration = configuration
        self.batchSize = batchSize
        self.tensorNames = tensorNames ?? ActivationSelection.tensorsToObserve(in: session.model.graph)
    }

    /// Calibrates on `data` (one array per model input, samples along the first axis).
    ///
    /// - Parameters:
    ///   - source: names the data in errors (usually its file path).
    ///   - progress: called after each batch with (samples done, samples in all).
    public func run(
        data: [String: Tensor], source: String, progress: (Int, Int) -> Void = { _, _ in }
    ) throws -> CalibrationResults {
        guard batchSize > 0 else { throw CalibrationError.invalidBatchSize(batchSize) }
        let total = try Self.sampleCount(of: data, inputs: session.inputs, source: source)

        var calibrator = try Calibrator(configuration: configuration)
        let watched = Set(tensorNames)
        var start = 0
        while start < total {
            let end = min(start + batchSize, total)
            var feeds: [String: Tensor] = [:]
            for input in session.inputs { feeds[input.name] = try data[input.name]!.rows(start..<end) }
            var failure: Error?
            let observer = ValueObserver(names: watched) { name, value in
                guard value.dtype == .float32, failure == nil else { return }
                do { try calibrator.observe(name, value) } catch { failure = error }
            }
            _ = try session.run(feeds, observer: observer)
            if let failure { throw failure }
            start = end
            progress(start, total)
        }
        return try calibrator.results()
    }

    /// The number of samples in `data`: every model input needs an array, and all agree on their first
    /// (sample) axis, which is not empty.
    static func sampleCount(of data: [String: Tensor], inputs: [ValueInfo], source: String) throws -> Int {
        var sampleCount: Int?
        for input in inputs {
            guard let array = data[input.name] else {
                throw CalibrationError.missingInput(source: source, input: input.name)
            }
            guard let rows = array.shape.first else {
                throw CalibrationError.inconsistentSamples(source: source, array: input.name, reason: "is a scalar")
            }
            if let expected = sampleCount, expected != rows {
                throw CalibrationError.inconsistentSamples(
                    source: source, array: input.name, reason: "has \(rows) samples, other inputs \(expected)")
            }
            sampleCount = rows
        }
        guard let total = sampleCount, total > 0 else { throw CalibrationError.empty(source: source) }
        return total
    }
}
