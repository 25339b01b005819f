import QuantCore
import Tensors

/// Collects statistics of a tensor over calibration batches and turns them into quantization parameters.
///
/// Observers stream: they keep O(bins × parameters) numbers, never the data. Two observers of the same kind
/// and configuration merge, so calibration can be split over workers. NaN and ±Inf elements are skipped
/// and counted in `statistics`; an observer that saw no finite value reports the range `[0, 0]`, which
/// gives the scheme's zero point and the minimum scale (never a zero, NaN or infinite scale).
public protocol Observer: Sendable {
    /// The granularity statistics are kept at (the scheme asked of `parameters(for:)` must match).
    var granularity: Granularity { get }
    /// What was seen so far.
    var statistics: ObservationStatistics { get }
    /// Folds one batch in. The tensor must be float32, float16, bfloat16 or float64; per-channel and
    /// per-group observers need every batch to give the same parameter shape.
    mutating func observe(_ tensor: Tensor) throws
    /// Folds in another observer of the same kind and configuration.
    mutating func merge(_ other: Self) throws
    /// The range to quantize for `scheme`, after whatever search the observer does.
    func range(for scheme: QuantScheme) throws -> QuantRange
    /// Scale and zero point for `scheme`; by default `QuantParams(scheme:range:)` of `range(for:)`.
    func parameters(for scheme: QuantScheme) throws -> QuantParams
    /// Forgets everything observed.
    mutating func reset()
}

extension Observer {
    public func parameters(for scheme: QuantScheme) throws -> QuantParams {
        try QuantParams(scheme: scheme, range: range(for: scheme))
    }

    /// Throws unless `scheme` asks for the granularity this observer keeps.
    func checkGranularity(of scheme: QuantScheme) throws {
        try scheme.validate()
        guard scheme.granularity == granularity else {
            throw CalibrationError.granularityMismatch(observer: granularity, scheme: scheme.granularity)
        }
    }
}

/// Counts of the elements an observer has seen.
public struct ObservationStatistics: Hashable, Sendable, Codable {
    /// Batches observed (including empty ones).
    public var batches: Int = 0
    /// Finite elements folded into the statistics.
    public var finite: Int = 0
    /// NaN elements, skipped.
    public var nan: Int = 0
    /// ±Inf elements, skipped.
    public var infinite: Int = 0

    public init() {}

    public mutating func merge(_ other: ObservationStatistics) {
        batches += other.batches
        finite += other.finite
        nan += other.nan
        infinite += other.infinite
    }
}

/// Errors of observers and the calibrator.
public enum CalibrationError: Error, Equatable, Sendable, CustomStringConvertible {
    case granularityMismatch(observer: Granularity, scheme: Granularity)
    case shapeMismatch(expected: [Int], actual: [Int], granularity: Granularity)
    case configurationMismatch(String)
    case invalidConfiguration(String)
    case unsupportedScheme(String)
    case unsupportedDType(DType)
    /// A per-channel or per-group observer saw no batch, so its parameter shape is unknown.
    case noBatches(Granularity)
    /// An error about one named tensor (calibrator).
    case tensor(String, String)

    public var description: String {
        switch self {
        case .granularityMismatch(let observer, let scheme):
            return "the observer keeps \(observer) statistics but the scheme asks for \(scheme); "
                + "use an observer of the scheme's granularity"
        case .shapeMismatch(let expected, let actual, let granularity):
            return "\(granularity) statistics have parameter shape \(expected), but this batch gives \(actual); "
                + "every batch must give the same parameter shape"
        case .configurationMismatch(let message), .invalidConfiguration(let message), .unsupportedScheme(let message):
            return message
        case .unsupportedDType(let dtype):
            return "observers read float32, float16, bfloat16 or float64 tensors, not \(dtype)"
        case .tensor(let name, let message):
            return "tensor '\(name)': \(message)"
        case .noBatches(let granularity):
            return "a \(granularity) observer needs at least one batch to know its parameter shape"
        }
    }
}

/// Per-parameter finite minima and maxima of one batch, with counts.
struct BatchExtrema {
    var minimum: [Float]
    var maximum: [Float]
    var finite: [Int]
    var nan = 0
    var infinite = 0

    init(count: Int) {
        minimum = [Float](repeating: .infinity, count: count)
        maximum = [Float](repeating: -.infinity, count: count)
        finite = [Int](repeating: 0, count: count)
    }

    /// Scans `x` once. Non-finite values are counted, not compared.
    init(_ x: UnsafeBufferPointer<Float>, layout: ParameterLayout) {
        self.init(count: layout.parameterCount)
        var nan = 0, infinite = 0
        minimum.withUnsafeMutableBufferPointer { lo in
            maximum.withUnsafeMutableBufferPointer { hi in
                finite.withUnsafeMutableBufferPointer { seen in
                    layout.forEachRun { run in
                        if run.parameterStride == 0 {
                            var runLo = Float.infinity, runHi = -Float.infinity, runSeen = 0
                            for i in run.elements {
                                let v = x[i]
                                if v.isFinite {
                                    runLo = Swift.min(runLo, v)
                                    runHi = Swift.max(runHi, v)
                                    runSeen &+= 1
                                } else if v.isNaN {
                                    nan &+= 1
                                } else {
                                    infinite &+= 1
                                }
                            }
                            let p = run.parameter
                            lo[p] = Swift.min(lo[p], runLo)
                            hi[p] = Swift.max(hi[p], runHi)
                            seen[p] &+= runSeen
                        } else {
                            var p = run.parameter
                            for i in run.elements {
                                let v = x[i]
                                if v.isFinite {
                                    lo[p] = Swift.min(lo[p], v)
                                    hi[p] = Swift.max(hi[p], v)
                                    seen[p] &+= 1
                                } else if v.isNaN {
                                    nan &+= 1
                                } else {
                                    infinite &+= 1
                                }
                                p &+= 1
                            }
                        }
                    }
                }
            }
        }
        self.nan = nan
        self.infinite = infinite
    }
}

/// Reads a tensor as float32 for an observer (other float dtypes are converted into a temporary array).
func withObservedValues<R>(_ tensor: Tensor, _ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R {
    switch tensor.dtype {
    case .float32: return try tensor.withUnsafeBufferPointer(as: Float.self, body)
    case .float16: return try tensor.withUnsafeBufferPointer(as: Float16.self) { try $0.map { Float($0) }.withUnsafeBufferPointer(body) }
    case .float64: return try tensor.withUnsafeBufferPointer(as: Double.self) { try $0.map { Float($0) }.withUnsafeBufferPointer(body) }
    case .bfloat16: return try tensor.withUnsafeBufferPointer(as: BFloat16.self) { try $0.map(\.floatValue).withUnsafeBufferPointer(body) }
    default: throw CalibrationError.unsupportedDType(tensor.dtype)
    }
}

/// The layout of a new batch, checked against the layout of earlier ones.
///
/// Per-tensor accepts any shape. Per-channel and per-group need the same parameter shape every time (the
/// other dimensions, e.g. the batch size, may change).
func batchLayout(_ tensor: Tensor, granularity: Granularity, previous: ParameterLayout?) throws -> ParameterLayout {
    let layout = try granularity.layout(for: tensor.shape)
    if let previous, previous.parameterShape != layout.parameterShape, granularity != .perTensor {
        throw CalibrationError.shapeMismatch(expected: previous.parameterShape, actual: layout.parameterShape,
                                             granularity: granularity)
    }
    return layout
}

/// `[0, 0]` for parameters that never saw a finite value.
func finiteRange(minimum: [Float], maximum: [Float], parameterShape: [Int]) throws -> QuantRange {
    var lo = minimum, hi = maximum
    for i in lo.indices where !(lo[i] <= hi[i]) {
        lo[i] = 0
        hi[i] = 0
    }
    return try QuantRange(minimum: lo, maximum: hi, parameterShape: parameterShape)
}

/// An observer whose per-parameter state is laid out by a `ParameterLayout`, set by its first batch.
protocol LayoutBackedObserver: Observer {
    var layout: ParameterLayout? { get }
    var statistics: ObservationStatistics { get set }
}

extension LayoutBackedObserver {
    /// The part of `merge` every layout-backed observer shares. When either side has seen no batch, the
    /// merge is finished here (the empty side only adds its statistics) and nil is returned; otherwise
    /// both sides must have the same parameter shape, and the layout to fold into is returned.
    mutating func prepareMerge(with other: Self) throws -> ParameterLayout? {
        guard let otherLayout = other.layout else {
            statistics.merge(other.statistics)
            return nil
        }
        guard let layout else {
            let mine = statistics
            self = other
            statistics.merge(mine)
            return nil
        }
        guard layout.parameterShape == otherLayout.parameterShape || granularity == .perTensor else {
            throw CalibrationError.shapeMismatch(expected: layout.parameterShape, actual: otherLayout.parameterShape,
                                                 granularity: granularity)
        }
        return layout
    }
}
