import QuantCore
import Tensors

/// A histogram observer with a range search (entropy, percentile or MSE).
///
/// Each parameter (one per tensor, channel or group) keeps a `StreamingHistogram` of `resolution · bins`
/// internal bins whose range grows with the data without losing counts; searches read a resampled view of `bins`
/// bins (2048 by default). Memory is O(bins × parameters), whatever the number of batches. Merging is
/// exact. NaN and ±Inf are skipped and counted.
public struct HistogramObserver: LayoutBackedObserver, Equatable {
    /// How the range is chosen from the histogram.
    public enum Search: String, Codable, Sendable, CaseIterable {
        /// TensorRT's KL-divergence search. Symmetric schemes: on the histogram of `|x|` over
        /// `[0, max|x|]`, every `i` from `L = 2^(b−1)` to `bins` (`b` the scheme's bits) gives
        /// `P` = the first `i` bins with the mass beyond added to bin `i − 1` and `Q` = those `i` bins
        /// (without the added mass, as TensorRT does) merged into `L` levels and spread back over `P`'s
        /// non-zero bins; the `i` minimising `KL(P‖Q)` sets
        /// `T = i · max|x| / bins` and the range `[−T, T]`. Asymmetric schemes: the same divergence on the
        /// signed histogram over `[min, max]` for a window `[s, e)` with `L = 2^b`, found by coordinate
        /// descent (`HistogramSearch.entropyWindow`).
        case entropy
        /// Percentile `p` (default 99.99). Symmetric: `T = P_p(|x|)`, range `[−T, T]`. Asymmetric
        /// (two-sided): `[P_(100−p)(x), P_p(x)]`. Interpolated linearly inside histogram bins.
        case percentile
        /// The range minimising the expected squared error of quantization (clipping plus rounding) under
        /// the histogram, for the scheme's actual grid (`HistogramSearch.minimumSquaredErrorRange`).
        case mse
    }

    public let granularity: Granularity
    public let search: Search
    /// Bins of the view the searches read.
    public let bins: Int
    /// The percentile `p` of `.percentile`, in (0, 100].
    public let percentile: Double
    /// Internal bins per view bin (each parameter keeps `resolution · bins` power-of-two-grid bins).
    public let resolution: Int
    public internal(set) var statistics = ObservationStatistics()
    public private(set) var histograms: [StreamingHistogram] = []
    var layout: ParameterLayout?

    /// - Parameters:
    ///   - bins: bins of the searched view (≥ 2); the observer keeps `4 · bins` internal bins per parameter.
    ///   - percentile: used by `.percentile`, in (0, 100].
    ///   - resolution: internal bins per view bin, 4…64 (at least 4, so every internal bin is at most one
    ///     view bin wide); more makes the view closer to a histogram of the raw data, at
    ///     `8 · resolution · bins` bytes per parameter. By default 64 for `.entropy` (1 MiB per parameter
    ///     with 2048 bins) and 4 for the others: the KL divergence often has several near-equal minima
    ///     far apart, so its argmin moves with small changes of the histogram, while percentiles and the
    ///     MSE search are stable at 4.
    public init(search: Search, bins: Int = 2048, percentile: Double = 99.99, resolution: Int? = nil,
                granularity: Granularity = .perTensor) throws {
        let resolution = resolution ?? (search == .entropy ? 64 : 4)
        guard resolution >= 4, resolution <= 64 else {
            throw CalibrationError.invalidConfiguration("histogram resolution must lie in 4…64, got \(resolution)")
        }
        self.resolution = resolution
        guard bins >= 2, bins <= 1 << 20 else {
            throw CalibrationError.invalidConfiguration("histogram bins must lie in 2…\(1 << 20), got \(bins)")
        }
        guard percentile > 0, percentile <= 100 else {
            throw CalibrationError.invalidConfiguration("the percentile must lie in (0, 100], got \(percentile)")
        }
        self.search = search
        self.bins = bins
        self.percentile = percentile
        self.granularity = granularity
    }

    public mutating func observe(_ tensor: Tensor) throws {
        let layout = try batchLayout(tensor, granularity: granularity, previous: self.layout)
        if self.layout == nil {
            self.layout = layout
            histograms = [StreamingHistogram](repeating: StreamingHistogram(capacity: resolution * bins),
                                              count: layout.parameterCount)
        }
        let batch = try withObservedValues(tensor) { x -> BatchExtrema in
            let batch = BatchExtrema(x, layout: layout)
            for p in 0..<histograms.count where batch.finite[p] > 0 {
                histograms[p].prepare(minimum: batch.minimum[p], maximum: batch.maximum[p])
            }
            layout.forEachRun { run in
                if run.parameterStride == 0 {
                    histograms[run.parameter].add(x, run.elements)
                } else {
                    var p = run.parameter
                    for i in run.elements {
                        histograms[p].add(x[i])
                        p += 1
                    }
                }
            }
            return batch
        }
        statistics.batches += 1
        statistics.finite += batch.finite.reduce(0, +)
        statistics.nan += batch.nan
        statistics.infinite += batch.infinite
    }

    public mutating func merge(_ other: HistogramObserver) throws {
        guard other.granularity == granularity, other.bins == bins, other.search == search,
              other.percentile == percentile, other.resolution == resolution else {
            throw CalibrationError.configurationMismatch(
                "cannot merge histogram observers with different settings (search, bins, percentile, resolution, granularity)")
        }
        guard try prepareMerge(with: other) != nil else { return }
        for p in histograms.indices { histograms[p].merge(other.histograms[p]) }
        statistics.merge(other.statistics)
    }

    public mutating func reset() {
        histograms = []
        layout = nil
        statistics = ObservationStatistics()
    }

    /// The observed (non-saturating) ranges.
    public func observedRange() throws -> QuantRange {
        guard let layout else {
            guard granularity == .perTensor else { throw CalibrationError.noBatches(granularity) }
            return try QuantRange.perTensor(minimum: 0, maximum: 0)
        }
        return try finiteRange(minimum: histograms.map(\.minimum), maximum: histograms.map(\.maximum),
                               parameterShape: layout.parameterShape)
    }

    public func range(for scheme: QuantScheme) throws -> QuantRange {
        try checkGranularity(of: scheme)
        guard let layout else { return try observedRange() }
        var lo = [Float](repeating: 0, count: histograms.count), hi = lo
        for (p, histogram) in histograms.enumerated() where !histogram.isEmpty {
            (lo[p], hi[p]) = try searchedRange(histogram, scheme: scheme)
        }
        return try QuantRange(minimum: lo, maximum: hi, parameterShape: layout.parameterShape)
    }

    /// The effective bits of an integer scheme (one fewer with reduce-range).
    static func effectiveBits(_ scheme: QuantScheme, search: Search) throws -> Int {
        guard case .integer(let bits, _) = scheme.type.kind else {
            throw CalibrationError.unsupportedScheme(
                "the \(search.rawValue) search needs an int<N>/uint<N> type, got \(scheme.type); "
                    + "use min/max or percentile calibration for \(scheme.type)")
        }
        return scheme.reduceRange ? bits - 1 : bits
    }

    func searchedRange(_ histogram: StreamingHistogram, scheme: QuantScheme) throws -> (Float, Float) {
        let minimum = histogram.minimum, maximum = histogram.maximum
        let absMax = Swift.max(abs(minimum), abs(maximum))
        switch search {
        case .percentile:
            let q = percentile / 100
            if scheme.mapping == .symmetric {
                let t = Float(histogram.quantile(q, folded: true))
                return clipped(minimum, maximum, at: t)
            }
            let lo = Float(histogram.quantile(1 - q, folded: false)), hi = Float(histogram.quantile(q, folded: false))
            return (Swift.min(lo, hi), Swift.max(lo, hi))
        case .entropy:
            let bits = try HistogramObserver.effectiveBits(scheme, search: search)
            guard absMax > 0 else { return (0, 0) }
            if scheme.mapping == .symmetric {
                let levels = 1 << (bits - 1)
                guard levels <= bins else { throw tooManyLevels(levels) }
                let h = histogram.view(bins: bins, lower: 0, upper: Double(absMax), folded: true)
                let i = HistogramSearch.entropyBins(h, levels: levels)
                return clipped(minimum, maximum, at: Float(Double(absMax) * Double(i) / Double(bins)))
            }
            let levels = 1 << bits
            guard levels <= bins else { throw tooManyLevels(levels) }
            guard maximum > minimum else { return (minimum, maximum) }
            let h = histogram.view(bins: bins, lower: Double(minimum), upper: Double(maximum), folded: false)
            let (s, e) = HistogramSearch.entropyWindow(h, levels: levels)
            let width = (Double(maximum) - Double(minimum)) / Double(bins)
            return (Float(Double(minimum) + Double(s) * width), Float(Double(minimum) + Double(e) * width))
        case .mse:
            _ = try HistogramObserver.effectiveBits(scheme, search: search)
            guard maximum > minimum else { return (minimum, maximum) }
            let h = histogram.view(bins: bins, lower: Double(minimum), upper: Double(maximum), folded: false)
            var perTensor = scheme
            perTensor.granularity = .perTensor
            return try HistogramSearch.minimumSquaredErrorRange(h, lower: Double(minimum), upper: Double(maximum),
                                                                scheme: perTensor)
        }
    }

    private func tooManyLevels(_ levels: Int) -> CalibrationError {
        .unsupportedScheme("the entropy search needs at least as many histogram bins as levels: \(levels) levels, \(bins) bins")
    }

    /// The data range clipped at `±t` (never inverted).
    private func clipped(_ minimum: Float, _ maximum: Float, at t: Float) -> (Float, Float) {
        let lo = Swift.max(minimum, -t), hi = Swift.min(maximum, t)
        return lo <= hi ? (lo, hi) : (Swift.min(lo, hi), Swift.min(lo, hi))
    }
}
