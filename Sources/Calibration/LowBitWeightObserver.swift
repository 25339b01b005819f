import QuantCore
import Tensors

/// Streaming weight-range rules for the low-bit mappings (DESIGN.md §4), per tensor, channel or group.
///
/// - binary: `α = mean |w|` (exact: sums are kept);
/// - ternary: `Δ = 0.7 · mean |w|` (exact), `α = mean of |w| over |w| > Δ`, read from a histogram of `|w|`
///   with per-bin sums; the bin holding `Δ` is split in proportion, so `α` is within one bin of the exact
///   value (`WeightRangeRules.ternary` computes it exactly from a whole tensor);
/// - log2: `s = 2^round(log2 max|w|)` (exact).
///
/// Integer and FP types get `[−max|w|, max|w|]` through the shared math. NaN and ±Inf are skipped.
public struct LowBitWeightObserver: LayoutBackedObserver, Equatable {
    public let granularity: Granularity
    /// Internal bins of each `|w|` histogram.
    public let bins: Int
    /// The ternary threshold factor (0.7 in TWN).
    public let thresholdFactor: Float
    public internal(set) var statistics = ObservationStatistics()
    private var absoluteSums: [Double] = []
    private var counts: [Int] = []
    private var maxima: [Float] = []
    private var magnitudes: [StreamingHistogram] = []
    var layout: ParameterLayout?

    public init(granularity: Granularity = .perTensor, bins: Int = 2048, thresholdFactor: Float = 0.7) throws {
        guard bins >= 2, bins <= 1 << 20 else {
            throw CalibrationError.invalidConfiguration("histogram bins must lie in 2…\(1 << 20), got \(bins)")
        }
        guard thresholdFactor >= 0, thresholdFactor.isFinite else {
            throw CalibrationError.invalidConfiguration("the ternary threshold factor must be finite and ≥ 0")
        }
        self.granularity = granularity
        self.bins = bins
        self.thresholdFactor = thresholdFactor
    }

    public mutating func observe(_ tensor: Tensor) throws {
        let layout = try batchLayout(tensor, granularity: granularity, previous: self.layout)
        if self.layout == nil {
            self.layout = layout
            absoluteSums = [Double](repeating: 0, count: layout.parameterCount)
            counts = [Int](repeating: 0, count: layout.parameterCount)
            maxima = [Float](repeating: 0, count: layout.parameterCount)
            magnitudes = [StreamingHistogram](repeating: StreamingHistogram(capacity: bins, tracksSums: true),
                                              count: layout.parameterCount)
        }
        var batchSums = [Double](repeating: 0, count: layout.parameterCount)
        let batch = try withObservedValues(tensor) { x -> BatchExtrema in
            let batch = BatchExtrema(x, layout: layout)
            for p in 0..<layout.parameterCount where batch.finite[p] > 0 {
                let largest = Swift.max(abs(batch.minimum[p]), abs(batch.maximum[p]))
                maxima[p] = Swift.max(maxima[p], largest)
                magnitudes[p].prepare(minimum: 0, maximum: largest)
            }
            layout.forEachRun { run in
                var p = run.parameter
                for i in run.elements {
                    let magnitude = abs(x[i])
                    if magnitude.isFinite {
                        batchSums[p] += Double(magnitude)
                        magnitudes[p].add(magnitude)
                    }
                    p += run.parameterStride
                }
            }
            return batch
        }
        // Batch sums are added whole, so sequential observation and merging sum in the same order.
        for p in 0..<layout.parameterCount {
            absoluteSums[p] += batchSums[p]
            counts[p] += batch.finite[p]
        }
        statistics.batches += 1
        statistics.finite += batch.finite.reduce(0, +)
        statistics.nan += batch.nan
        statistics.infinite += batch.infinite
    }

    public mutating func merge(_ other: LowBitWeightObserver) throws {
        guard other.granularity == granularity, other.bins == bins, other.thresholdFactor == thresholdFactor else {
            throw CalibrationError.configurationMismatch("cannot merge low-bit weight observers with different settings")
        }
        guard let layout = try prepareMerge(with: other) else { return }
        for p in 0..<layout.parameterCount {
            absoluteSums[p] += other.absoluteSums[p]
            counts[p] += other.counts[p]
            maxima[p] = Swift.max(maxima[p], other.maxima[p])
            magnitudes[p].merge(other.magnitudes[p])
        }
        statistics.merge(other.statistics)
    }

    public mutating func reset() {
        self = try! LowBitWeightObserver(granularity: granularity, bins: bins, thresholdFactor: thresholdFactor)
    }

    /// `[−max|w|, max|w|]` per parameter.
    public func range(for scheme: QuantScheme) throws -> QuantRange {
        try checkGranularity(of: scheme)
        guard let layout else {
            guard granularity == .perTensor else { throw CalibrationError.noBatches(granularity) }
            return try QuantRange.perTensor(minimum: 0, maximum: 0)
        }
        return try QuantRange(minimum: maxima.map { -$0 }, maximum: maxima, parameterShape: layout.parameterShape)
    }

    public func parameters(for scheme: QuantScheme) throws -> QuantParams {
        try checkGranularity(of: scheme)
        let shape = layout?.parameterShape ?? []
        guard layout != nil || granularity == .perTensor else { throw CalibrationError.noBatches(granularity) }
        let count = Swift.max(maxima.count, 1)
        func mean(_ p: Int) -> Double { p < counts.count && counts[p] > 0 ? absoluteSums[p] / Double(counts[p]) : 0 }
        switch scheme.type.kind {
        case .binary:
            return try QuantParams(type: .binary, granularity: granularity, parameterShape: shape,
                                   scales: (0..<count).map { positive(mean($0)) })
        case .ternary:
            var alphas = [Float](), deltas = [Float]()
            for p in 0..<count {
                let delta = Double(thresholdFactor) * mean(p)
                deltas.append(Float(delta))
                alphas.append(positive(p < magnitudes.count ? meanAbove(delta, magnitudes[p]) : 0))
            }
            return try QuantParams(type: .ternary, granularity: granularity, parameterShape: shape,
                                   scales: alphas, ternaryThresholds: deltas)
        case .log2:
            return try QuantParams(type: scheme.type, granularity: granularity, parameterShape: shape,
                                   scales: (0..<count).map { Log2Mapping.scale(forMaximum: $0 < maxima.count ? maxima[$0] : 0) })
        default:
            return try QuantParams(scheme: scheme, range: range(for: scheme))
        }
    }

    /// The mean of the values above `threshold`, splitting the bin that holds it in proportion.
    private func meanAbove(_ threshold: Double, _ histogram: StreamingHistogram) -> Double {
        var count = 0.0, sum = 0.0
        for segment in histogram.segments(folded: false) {
            if segment.lower > threshold {
                count += segment.count
                sum += segment.sum
            } else if segment.upper > threshold {
                let fraction = (segment.upper - threshold) / (segment.upper - segment.lower)
                count += fraction * segment.count
                sum += fraction * segment.count * (threshold + segment.upper) / 2
            }
        }
        return count > 0 ? sum / count : 0
    }

    /// Scales are never 0: an all-zero parameter gets 1, so its codes still decode to 0.
    private func positive(_ value: Double) -> Float {
        let scale = Float(value)
        return scale > 0 && scale.isFinite ? scale : 1
    }
}
