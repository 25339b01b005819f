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
    /// An array names no model input.
    case unexpectedArray(source: String, array: String, inputs: [String])
    /// An array's element type or shape does not fit the model input it feeds.
    case mismatchedInput(source: String, array: String, reason: String)
    /// An array holds NaN or infinite values.
    case nonFiniteData(source: String, array: String, count: Int)

    public var description: String {
        switch self {
        case .missingInput(let source, let input): return "\(source): no array for model input '\(input)'"
        case .inconsistentSamples(let source, let array, let reason): return "\(source): array '\(array)' \(reason)"
        case .empty(let source): return "\(source): the calibration set has no samples"
        case .invalidBatchSize(let size): return "batch size must be positive, got \(size)"
        case .unexpectedArray(let source, let array, let inputs):
            return "\(source): array '\(array)' is not a model input (the inputs are \(inputs.joined(separator: ", ")))"
        case .mismatchedInput(let source, let array, let reason): return "\(source): array '\(array)' \(reason)"
        case .nonFiniteData(let source, let array, let count):
            return "\(source): array '\(array)' holds \(count) NaN or infinite value\(count == 1 ? "" : "s")"
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
    /// Schemes that replace `configuration.scheme` for some tensors (e.g. 16-bit ones).
    public var schemeOverrides: [String: QuantScheme] = [:]

    /// Further values handed to a caller as they are produced, for statistics the observers do not keep.
    public struct Inspection {
        public var names: Set<String>
        public var body: (_ name: String, _ value: Tensor) throws -> Void

        public init(names: Set<String>, body: @escaping (_ name: String, _ value: Tensor) throws -> Void) {
            self.names = names
            self.body = body
        }
    }

    public init(session: Session, configuration: CalibrationConfiguration, batchSize: Int = 16,
                tensorNames: [String]? = nil) {
        self.session = session
        self.configuration = configuration
        self.batchSize = batchSize
        self.tensorNames = tensorNames ?? ActivationSelection.tensorsToObserve(in: session.model.graph)
    }

    /// Calibrates on `data` (one array per model input, samples along the first axis).
    ///
    /// The data is checked first: an array for every input and none other, element types and fixed
    /// dimensions as the model declares them, the same number of samples everywhere, finite floats.
    ///
    /// - Parameters:
    ///   - source: names the data in errors (usually its file path).
    ///   - progress: called after each batch with (samples done, samples in all).
    ///   - inspection: further values to hand to the caller as each batch runs.
    public func run(
        data: [String: Tensor], source: String, progress: (Int, Int) -> Void = { _, _ in },
        inspection: Inspection? = nil
    ) throws -> CalibrationResults {
        guard batchSize > 0 else { throw CalibrationError.invalidBatchSize(batchSize) }
        let total = try Self.validate(data, inputs: session.inputs, source: source)
        var calibrator = try Calibrator(configuration: configuration, overrides: schemeOverrides)
        let watched = Set(tensorNames)
        let inspected = inspection?.names ?? []
        // A model declaring a fixed first dimension takes batches of exactly that size.
        let runSize = session.fixedBatchSize.map { min($0, batchSize) } ?? batchSize
        var start = 0
        while start < total {
            let end = min(start + max(runSize, 1), total)
            var feeds: [String: Tensor] = [:]
            for input in session.inputs { feeds[input.name] = try data[input.name]!.rows(start..<end) }
            var failure: Error?
            let observer = ValueObserver(names: watched.union(inspected)) { name, value in
                guard failure == nil else { return }
                do {
                    if inspected.contains(name) { try inspection?.body(name, value) }
                    if watched.contains(name), value.dtype == .float32 { try calibrator.observe(name, value) }
                } catch { failure = error }
            }
            _ = try session.run(feeds, observer: observer)
            if let failure { throw failure }
            start = end
            progress(start, total)
        }
        return try calibrator.results()
    }

    /// Checks `data` against the model's inputs (present, same sample count, declared dtype and shape,
    /// finite); returns the number of samples.
    static func validate(_ data: [String: Tensor], inputs: [ValueInfo], source: String) throws -> Int {
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
        let inputNames = inputs.map(\.name)
        for name in data.keys.sorted() where !inputNames.contains(name) {
            throw CalibrationError.unexpectedArray(source: source, array: name, inputs: inputNames)
        }
        guard let total = sampleCount, total > 0 else { throw CalibrationError.empty(source: source) }
        for input in inputs {
            let array = data[input.name]!
            if case .tensor(let elementType, _)? = input.type, let elementType, elementType != array.dtype {
                throw CalibrationError.mismatchedInput(
                    source: source, array: input.name, reason: "is \(array.dtype), the model input is \(elementType)")
            }
            if let declared = Self.declaredShape(input) {
                guard declared.count == array.rank else {
                    throw CalibrationError.mismatchedInput(
                        source: source, array: input.name,
                        reason: "has shape \(array.shape) (rank \(array.rank)); the model input has rank \(declared.count) \(declared)")
                }
                for (axis, dim) in declared.enumerated().dropFirst() {
                    if let expected = dim.intValue, expected != array.shape[axis] {
                        throw CalibrationError.mismatchedInput(
                            source: source, array: input.name,
                            reason: "has shape \(array.shape); dimension \(axis) of the model input is \(expected)")
                    }
                }
            }
            if array.dtype.isFloatingPoint {
                let nonFinite = try array.floatArray().reduce(0) { $0 + ($1.isFinite ? 0 : 1) }
                if nonFinite > 0 {
                    throw CalibrationError.nonFiniteData(source: source, array: input.name, count: nonFinite)
                }
            }
        }
        return total
    }

    static func declaredShape(_ input: ValueInfo) -> [Dim]? {
        if case .tensor(_, let shape)? = input.type { return shape }
        return nil
    }
}
