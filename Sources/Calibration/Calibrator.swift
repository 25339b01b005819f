import Foundation
import QuantCore
import Tensors

/// A calibration method, as `swiftquant calibrate --method` names it.
public enum CalibrationMethod: String, Codable, Sendable, CaseIterable {
    /// Running min/max: `[min X, max X]` over all batches (non-saturating).
    case minMax = "minmax"
    /// Moving-average min/max: `x_min ← (1 − c)·x_min + c·min(X)`, likewise max.
    case movingAverage = "moving-average"
    /// TensorRT's KL-divergence threshold search over a 2048-bin histogram.
    case entropy
    /// Percentile `p` of `|x|` (symmetric) or of `x` at both ends (asymmetric).
    case percentile
    /// The clip range minimising the expected squared quantization error under the histogram.
    case mse
}

/// What the calibrator does for every tensor (unless overridden per tensor).
public struct CalibrationConfiguration: Hashable, Sendable, Codable {
    public var method: CalibrationMethod
    /// The scheme parameters are computed for (its granularity decides the observers' granularity).
    public var scheme: QuantScheme
    /// `c` of the moving average.
    public var averagingConstant: Float
    /// `p` of the percentile method.
    public var percentile: Double
    /// Histogram bins of the entropy, percentile and MSE methods.
    public var bins: Int

    public init(method: CalibrationMethod = .minMax, scheme: QuantScheme = .uint8Activations,
                averagingConstant: Float = 0.01, percentile: Double = 99.99, bins: Int = 2048) {
        self.method = method
        self.scheme = scheme
        self.averagingConstant = averagingConstant
        self.percentile = percentile
        self.bins = bins
    }

    /// A fresh observer for `scheme`'s granularity.
    public func makeObserver(for scheme: QuantScheme) throws -> any Observer {
        try scheme.validate()
        switch scheme.type.kind {
        case .binary, .ternary, .log2:
            return try LowBitWeightObserver(granularity: scheme.granularity)
        default: break
        }
        switch method {
        case .minMax: return MinMaxObserver(granularity: scheme.granularity)
        case .movingAverage:
            return try MovingAverageMinMaxObserver(averagingConstant: averagingConstant, granularity: scheme.granularity)
        case .entropy: return try HistogramObserver(search: .entropy, bins: bins, granularity: scheme.granularity)
        case .percentile:
            return try HistogramObserver(search: .percentile, bins: bins, percentile: percentile, granularity: scheme.granularity)
        case .mse: return try HistogramObserver(search: .mse, bins: bins, granularity: scheme.granularity)
        }
    }
}

/// Calibrates named tensors: feed it a stream of `(name, tensor)` batches, read per-tensor results.
///
/// One observer per name, created on first sight from the configuration (or a per-name scheme
/// override). Memory is O(bins × parameters) per name, whatever the number of batches. Errors name the
/// tensor at fault.
public struct Calibrator: Sendable {
    public let configuration: CalibrationConfiguration
    /// Per-name schemes that replace `configuration.scheme` (e.g. per-channel for weights).
    public let overrides: [String: QuantScheme]
    /// Names in the order they were first observed.
    public private(set) var names: [String] = []
    private var observers: [String: any Observer] = [:]

    public init(configuration: CalibrationConfiguration, overrides: [String: QuantScheme] = [:]) throws {
        try configuration.scheme.validate()
        for (name, scheme) in overrides {
            do { try scheme.validate() } catch { throw CalibrationError.tensor(name, "\(error)") }
        }
        self.configuration = configuration
        self.overrides = overrides
    }

    /// The scheme used for `name`.
    public func scheme(for name: String) -> QuantScheme { overrides[name] ?? configuration.scheme }

    /// The observer of `name`, if it has been observed.
    public func observer(named name: String) -> (any Observer)? { observers[name] }

    /// Folds one batch of tensor `name` in.
    public mutating func observe(_ name: String, _ tensor: Tensor) throws {
        do {
            if observers[name] == nil {
                observers[name] = try configuration.makeObserver(for: scheme(for: name))
                names.append(name)
            }
            try observers[name]!.observe(tensor)
        } catch let error as CalibrationError {
            if case .tensor = error { throw error }
            throw CalibrationError.tensor(name, error.description)
        } catch {
            throw CalibrationError.tensor(name, "\(error)")
        }
    }

    /// Folds in a stream of named tensors (e.g. the outputs of one calibration sample).
    public mutating func observe<S: Sequence>(_ batch: S) throws where S.Element == (String, Tensor) {
        for (name, tensor) in batch { try observe(name, tensor) }
    }

    /// Folds in another calibrator with the same configuration (tensors it saw that this one did not are
    /// added after this one's).
    public mutating func merge(_ other: Calibrator) throws {
        guard other.configuration == configuration, other.overrides == overrides else {
            throw CalibrationError.configurationMismatch("cannot merge calibrators with different configurations")
        }
        for name in other.names {
            guard let theirs = other.observers[name] else { continue }
            if let mine = observers[name] {
                do { observers[name] = try Calibrator.merged(mine, theirs) } catch {
                    throw CalibrationError.tensor(name, "\(error)")
                }
            } else {
                observers[name] = theirs
                names.append(name)
            }
        }
    }

    private static func merged(_ a: any Observer, _ b: any Observer) throws -> any Observer {
        func open<O: Observer>(_ a: O) throws -> any Observer {
            guard let b = b as? O else {
                throw CalibrationError.configurationMismatch("cannot merge a \(type(of: b)) into a \(O.self)")
            }
            var a = a
            try a.merge(b)
            return a
        }
        return try open(a)
    }

    /// Ranges, scales and zero points of every observed tensor, in first-seen order.
    public func results() throws -> CalibrationResults {
        var tensors: [TensorCalibration] = []
        for name in names {
            guard let observer = observers[name] else { continue }
            let scheme = scheme(for: name)
            do {
                let params = try observer.parameters(for: scheme)
                let range = try observer.range(for: scheme)
                tensors.append(TensorCalibration(name: name, params: params, range: range, statistics: observer.statistics))
            } catch {
                throw CalibrationError.tensor(name, "\(error)")
            }
        }
        return CalibrationResults(method: configuration.method, tensors: tensors)
    }
}

/// The calibration result of one tensor: its range and quantization parameters.
///
/// JSON: `{"name", "type", "granularity", "min", "max", "scale", "zero_point", "statistics"}`, with
/// `min`/`max`/`scale`/`zero_point` numbers for per-tensor results and arrays (in the order of the ONNX
/// scale tensor, whose shape is `parameter_shape`) for per-channel and per-group ones.
public struct TensorCalibration: Hashable, Sendable, Codable {
    public let name: String
    public let params: QuantParams
    /// The range the parameters were computed from (before widening to include 0).
    public let range: QuantRange
    public let statistics: ObservationStatistics

    public init(name: String, params: QuantParams, range: QuantRange, statistics: ObservationStatistics) {
        self.name = name
        self.params = params
        self.range = range
        self.statistics = statistics
    }

    private enum CodingKeys: String, CodingKey {
        case name, type, granularity, parameterShape = "parameter_shape", min, max, scale, zeroPoint = "zero_point"
        case codeRange = "code_range", ternaryThresholds = "ternary_thresholds", saturate, statistics
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(params.type, forKey: .type)
        try c.encode(params.granularity, forKey: .granularity)
        let scalar = params.granularity == .perTensor
        if !scalar { try c.encode(params.parameterShape, forKey: .parameterShape) }
        func put<T: Encodable>(_ values: [T], _ key: CodingKeys) throws {
            if scalar, values.count == 1 { try c.encode(values[0], forKey: key) } else { try c.encode(values, forKey: key) }
        }
        try put(range.minimum, .min)
        try put(range.maximum, .max)
        try put(params.scales, .scale)
        try put(params.zeroPoints, .zeroPoint)
        try c.encodeIfPresent(params.codeRange, forKey: .codeRange)
        if let thresholds = params.ternaryThresholds { try put(thresholds, .ternaryThresholds) }
        if params.type.isFloatingPoint { try c.encode(params.saturate, forKey: .saturate) }
        try c.encode(statistics, forKey: .statistics)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func get<T: Decodable>(_ key: CodingKeys) throws -> [T] {
            if let value = try? c.decode(T.self, forKey: key) { return [value] }
            return try c.decode([T].self, forKey: key)
        }
        let granularity = try c.decode(Granularity.self, forKey: .granularity)
        let shape = try c.decodeIfPresent([Int].self, forKey: .parameterShape) ?? []
        let thresholds: [Float]? = c.contains(.ternaryThresholds) ? try get(.ternaryThresholds) : nil
        name = try c.decode(String.self, forKey: .name)
        params = try QuantParams(type: c.decode(QuantType.self, forKey: .type), granularity: granularity,
                                 parameterShape: shape, scales: get(.scale), zeroPoints: get(.zeroPoint),
                                 codeRange: c.decodeIfPresent(ClosedRange<Int32>.self, forKey: .codeRange),
                                 ternaryThresholds: thresholds,
                                 saturate: c.decodeIfPresent(Bool.self, forKey: .saturate) ?? true)
        range = try QuantRange(minimum: get(.min), maximum: get(.max), parameterShape: shape)
        statistics = try c.decode(ObservationStatistics.self, forKey: .statistics)
    }
}

/// Every tensor's calibration, in first-seen order; `json()` is what `swiftquant calibrate -o` writes.
public struct CalibrationResults: Hashable, Sendable, Codable {
    public let method: CalibrationMethod
    public let tensors: [TensorCalibration]

    public init(method: CalibrationMethod, tensors: [TensorCalibration]) {
        self.method = method
        self.tensors = tensors
    }

    /// The result for `name`.
    public subscript(name: String) -> TensorCalibration? { tensors.first { $0.name == name } }

    private enum CodingKeys: String, CodingKey { case method, tensors }

    /// Encodes `{"method": …, "tensors": {"<name>": {…}, …}}`, the shape `swiftquant calibrate` promises.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(method, forKey: .method)
        try c.encode(Dictionary(tensors.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first }),
                     forKey: .tensors)
    }

    /// Decodes the object form; a JSON object has no order, so tensors come back sorted by name.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        method = try c.decode(CalibrationMethod.self, forKey: .method)
        tensors = try c.decode([String: TensorCalibration].self, forKey: .tensors)
            .sorted { $0.key < $1.key }.map(\.value)
    }

    /// Pretty-printed JSON with sorted keys.
    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }
}
