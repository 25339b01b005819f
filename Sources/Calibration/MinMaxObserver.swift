import QuantCore
import Tensors

/// The running minimum and maximum, per tensor, per channel or per group.
///
/// `min ← min(min, min(X))`, `max ← max(max, max(X))` over the finite elements of each batch `X`.
/// Merging is exact: observing A then B equals observing A and B apart and merging.
/// The range is non-saturating (nothing clips); use `Saturation` on the result for a fixed threshold.
public struct MinMaxObserver: LayoutBackedObserver, Equatable {
    public let granularity: Granularity
    public internal(set) var statistics = ObservationStatistics()
    public private(set) var minimum: [Float] = []
    public private(set) var maximum: [Float] = []
    var layout: ParameterLayout?

    public init(granularity: Granularity = .perTensor) {
        self.granularity = granularity
    }

    public mutating func observe(_ tensor: Tensor) throws {
        let layout = try batchLayout(tensor, granularity: granularity, previous: self.layout)
        let batch = try withObservedValues(tensor) { BatchExtrema($0, layout: layout) }
        if self.layout == nil {
            self.layout = layout
            minimum = batch.minimum
            maximum = batch.maximum
        } else {
            for i in minimum.indices {
                minimum[i] = Swift.min(minimum[i], batch.minimum[i])
                maximum[i] = Swift.max(maximum[i], batch.maximum[i])
            }
        }
        statistics.batches += 1
        statistics.finite += batch.finite.reduce(0, +)
        statistics.nan += batch.nan
        statistics.infinite += batch.infinite
    }

    public mutating func merge(_ other: MinMaxObserver) throws {
        guard other.granularity == granularity else {
            throw CalibrationError.configurationMismatch("cannot merge \(other.granularity) min/max into \(granularity)")
        }
        guard try prepareMerge(with: other) != nil else { return }
        for i in minimum.indices {
            minimum[i] = Swift.min(minimum[i], other.minimum[i])
            maximum[i] = Swift.max(maximum[i], other.maximum[i])
        }
        statistics.merge(other.statistics)
    }

    public func range(for scheme: QuantScheme) throws -> QuantRange {
        try checkGranularity(of: scheme)
        return try observedRange()
    }

    /// The observed ranges (`[0, 0]` where nothing finite was seen).
    public func observedRange() throws -> QuantRange {
        guard let layout else {
            guard granularity == .perTensor else { throw CalibrationError.noBatches(granularity) }
            return try QuantRange.perTensor(minimum: 0, maximum: 0)
        }
        return try finiteRange(minimum: minimum, maximum: maximum, parameterShape: layout.parameterShape)
    }

    public mutating func reset() { self = MinMaxObserver(granularity: granularity) }
}

/// Exponential moving averages of each batch's minimum and maximum (PyTorch's
/// `MovingAverageMinMaxObserver`).
///
/// `x_min ← (1 − c) · x_min + c · min(X)`, likewise `x_max`; the first batch that has finite values sets
/// them. Evaluated in float32 as `x_min + c · (min(X) − x_min)`, PyTorch's order, so results equal it bit
/// for bit. A batch with no finite value for a parameter leaves that parameter unchanged.
///
/// The average depends on batch order, so no merge reproduces sequential observation: merging takes the
/// mean of the two averages weighted by how many batches each folded in (what data-parallel calibration
/// wants), computed in double.
public struct MovingAverageMinMaxObserver: LayoutBackedObserver, Equatable {
    public let granularity: Granularity
    /// The averaging constant `c` in (0, 1].
    public let averagingConstant: Float
    public internal(set) var statistics = ObservationStatistics()
    public private(set) var minimum: [Float] = []
    public private(set) var maximum: [Float] = []
    /// Batches that updated each parameter.
    private var updates: [Int] = []
    var layout: ParameterLayout?

    /// - Parameter averagingConstant: `c` in (0, 1]; PyTorch's default is 0.01.
    public init(averagingConstant: Float = 0.01, granularity: Granularity = .perTensor) throws {
        guard averagingConstant > 0, averagingConstant <= 1 else {
            throw CalibrationError.invalidConfiguration(
                "the moving-average constant must lie in (0, 1], got \(averagingConstant)")
        }
        self.averagingConstant = averagingConstant
        self.granularity = granularity
    }

    public mutating func observe(_ tensor: Tensor) throws {
        let layout = try batchLayout(tensor, granularity: granularity, previous: self.layout)
        let batch = try withObservedValues(tensor) { BatchExtrema($0, layout: layout) }
        if self.layout == nil {
            self.layout = layout
            minimum = [Float](repeating: 0, count: layout.parameterCount)
            maximum = minimum
            updates = [Int](repeating: 0, count: layout.parameterCount)
        }
        let c = averagingConstant
        for i in minimum.indices where batch.finite[i] > 0 {
            if updates[i] == 0 {
                minimum[i] = batch.minimum[i]
                maximum[i] = batch.maximum[i]
            } else {
                minimum[i] = minimum[i] + c * (batch.minimum[i] - minimum[i])
                maximum[i] = maximum[i] + c * (batch.maximum[i] - maximum[i])
            }
            updates[i] += 1
        }
        statistics.batches += 1
        statistics.finite += batch.finite.reduce(0, +)
        statistics.nan += batch.nan
        statistics.infinite += batch.infinite
    }

    public mutating func merge(_ other: MovingAverageMinMaxObserver) throws {
        guard other.granularity == granularity, other.averagingConstant == averagingConstant else {
            throw CalibrationError.configurationMismatch(
                "cannot merge a moving average (c = \(other.averagingConstant), \(other.granularity)) into "
                    + "one with c = \(averagingConstant), \(granularity)")
        }
        guard try prepareMerge(with: other) != nil else { return }
        for i in minimum.indices where other.updates[i] > 0 {
            if updates[i] == 0 {
                minimum[i] = other.minimum[i]
                maximum[i] = other.maximum[i]
            } else {
                let a = Double(updates[i]), b = Double(other.updates[i])
                minimum[i] = Float((a * Double(minimum[i]) + b * Double(other.minimum[i])) / (a + b))
                maximum[i] = Float((a * Double(maximum[i]) + b * Double(other.maximum[i])) / (a + b))
            }
            updates[i] += other.updates[i]
        }
        statistics.merge(other.statistics)
    }

    public func range(for scheme: QuantScheme) throws -> QuantRange {
        try checkGranularity(of: scheme)
        guard let layout else {
            guard granularity == .perTensor else { throw CalibrationError.noBatches(granularity) }
            return try QuantRange.perTensor(minimum: 0, maximum: 0)
        }
        var lo = minimum, hi = maximum
        for i in lo.indices where updates[i] == 0 { lo[i] = 0; hi[i] = 0 }
        return try QuantRange(minimum: lo, maximum: hi, parameterShape: layout.parameterShape)
    }

    public mutating func reset() {
        minimum = []; maximum = []; updates = []; layout = nil
        statistics = ObservationStatistics()
    }
}
