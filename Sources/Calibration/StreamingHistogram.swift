/// A histogram that grows with the data without losing or smearing counts.
///
/// Bins have width `w = 2^exponent` on a grid anchored at 0: bin `g ≥ 0` holds `[g·w, (g+1)·w)`, bin
/// `g < 0` holds `(g·w, (g+1)·w]`, so folding negative bins onto positive ones gives the histogram of
/// `|x|` exactly. `capacity` bins starting at the bin of the data minimum are kept. The exponent is always
/// the smallest one whose `capacity` bins cover `[minimum, maximum]`; when new data does not fit, the
/// exponent grows and pairs of bins merge (a shift of the bin index), which is exact.
///
/// Because the state depends only on the data seen (not on the order or the batching), observing A then
/// B gives exactly the histogram of observing A and B apart and merging. With `capacity = 4 · n`, every bin
/// is at most `max|x| / n` wide, so a view of `n` bins over `[0, max|x|]` or `[min, max]` is accurate to
/// within one of its bins.
public struct StreamingHistogram: Sendable, Equatable {
    public let capacity: Int
    /// Bin width `2^exponent`.
    public private(set) var exponent: Int = 0
    /// Grid index of `counts[0]`.
    public private(set) var firstBin: Int = 0
    public private(set) var counts: [UInt64]
    /// Per-bin sums of the values (when tracked), for means above a threshold.
    public private(set) var sums: [Double]?
    /// The finite extremes seen (`+Inf` / `−Inf` before any data).
    public private(set) var minimum: Float = .infinity
    public private(set) var maximum: Float = -.infinity
    /// Number of values counted.
    public private(set) var total: UInt64 = 0

    public init(capacity: Int, tracksSums: Bool = false) {
        precondition(capacity >= 2, "a histogram needs at least two bins")
        self.capacity = capacity
        counts = [UInt64](repeating: 0, count: capacity)
        sums = tracksSums ? [Double](repeating: 0, count: capacity) : nil
    }

    public var isEmpty: Bool { total == 0 }

    /// `⌈log2(capacity + 1)⌉`.
    private var capacityBits: Int { Int((Double(capacity) + 1).exponent) + 1 }

    @inline(__always)
    static func gridIndex(_ x: Double, inverseWidth: Double) -> Double {
        let t = x * inverseWidth
        return t >= 0 ? t.rounded(.down) : -1 - (-t).rounded(.down)
    }

    @inline(__always)
    static func power(_ exponent: Int) -> Double { Double(sign: .plus, exponent: exponent, significand: 1) }

    private func fits(_ lo: Float, _ hi: Float, exponent: Int) -> Bool {
        let inverse = StreamingHistogram.power(-exponent)
        return StreamingHistogram.gridIndex(Double(hi), inverseWidth: inverse)
            - StreamingHistogram.gridIndex(Double(lo), inverseWidth: inverse) < Double(capacity)
    }

    /// The smallest exponent whose bins cover `[lo, hi]`. For a single value it is far below any exponent
    /// that two distinct floats near it could need, so later growth still finds the minimal exponent.
    func minimalExponent(_ lo: Float, _ hi: Float) -> Int {
        if lo == hi {
            let magnitude = Swift.max(abs(lo), Float.leastNormalMagnitude)
            return Int(magnitude.exponent) - 27 - capacityBits
        }
        let span = Double(hi) - Double(lo)
        var e = Int(span.exponent) - capacityBits
        while !fits(lo, hi, exponent: e) { e += 1 }
        return e
    }

    /// Makes room for values in `[lo, hi]` (finite, `lo ≤ hi`): grows the exponent and re-anchors as needed.
    public mutating func prepare(minimum lo: Float, maximum hi: Float) {
        let newMinimum = Swift.min(minimum, lo), newMaximum = Swift.max(maximum, hi)
        let newExponent = minimalExponent(newMinimum, newMaximum)
        let newFirst = Int(StreamingHistogram.gridIndex(Double(newMinimum), inverseWidth: StreamingHistogram.power(-newExponent)))
        defer { minimum = newMinimum; maximum = newMaximum }
        guard total > 0 else {
            exponent = newExponent
            firstBin = newFirst
            return
        }
        guard newExponent != exponent || newFirst != firstBin else { return }
        let shift = newExponent - exponent  // ≥ 0: the exponent never shrinks while data is kept
        var newCounts = [UInt64](repeating: 0, count: capacity)
        var newSums: [Double]? = sums == nil ? nil : [Double](repeating: 0, count: capacity)
        for j in 0..<capacity where counts[j] != 0 {
            let target = ((firstBin + j) >> shift) - newFirst
            newCounts[target] += counts[j]
            if let sums { newSums![target] += sums[j] }
        }
        counts = newCounts
        sums = newSums
        exponent = newExponent
        firstBin = newFirst
    }

    /// Counts the finite values of `x[elements]`; `prepare` must have covered their range.
    public mutating func add(_ x: UnsafeBufferPointer<Float>, _ elements: Range<Int>) {
        let inverse = StreamingHistogram.power(-exponent)
        let first = Double(firstBin)
        let last = capacity - 1
        var added: UInt64 = 0
        if sums == nil {
            counts.withUnsafeMutableBufferPointer { c in
                for i in elements {
                    let v = x[i]
                    guard v.isFinite else { continue }
                    let k = Int(StreamingHistogram.gridIndex(Double(v), inverseWidth: inverse) - first)
                    c[Swift.min(Swift.max(k, 0), last)] &+= 1
                    added &+= 1
                }
            }
        } else {
            for i in elements {
                let v = x[i]
                guard v.isFinite else { continue }
                let k = Swift.min(Swift.max(Int(StreamingHistogram.gridIndex(Double(v), inverseWidth: inverse) - first), 0), last)
                counts[k] &+= 1
                sums![k] += Double(v)
                added &+= 1
            }
        }
        total &+= added
    }

    /// Adds one finite value (prepared for).
    public mutating func add(_ v: Float) {
        guard v.isFinite else { return }
        let k = Int(StreamingHistogram.gridIndex(Double(v), inverseWidth: StreamingHistogram.power(-exponent)) - Double(firstBin))
        let bin = Swift.min(Swift.max(k, 0), capacity - 1)
        counts[bin] += 1
        sums?[bin] += Double(v)
        total += 1
    }

    /// Adds another histogram's counts (exactly: both move to the union's grid, bins merge by shifts).
    public mutating func merge(_ other: StreamingHistogram) {
        guard other.total > 0 else { return }
        precondition(other.capacity == capacity && (other.sums == nil) == (sums == nil))
        prepare(minimum: other.minimum, maximum: other.maximum)
        let shift = exponent - other.exponent
        for j in 0..<capacity where other.counts[j] != 0 {
            let target = ((other.firstBin + j) >> shift) - firstBin
            counts[target] += other.counts[j]
            if let otherSums = other.sums { sums![target] += otherSums[j] }
        }
        total += other.total
    }

    // MARK: Reading

    /// A piece of mass spread uniformly over `[lower, upper]` (a point when they are equal).
    public struct Segment: Sendable, Equatable {
        public var lower: Double
        public var upper: Double
        public var count: Double
        public var sum: Double
    }

    /// The mass as segments in increasing order of `lower`: of `x`, or of `|x|` when `folded`.
    /// Each bin is clipped to the data's extent on its side of 0.
    public func segments(folded: Bool) -> [Segment] {
        guard total > 0 else { return [] }
        let width = StreamingHistogram.power(exponent)
        let lo = Double(minimum), hi = Double(maximum)
        var result: [Segment] = []
        result.reserveCapacity(capacity)
        for j in 0..<capacity where counts[j] != 0 {
            let g = Double(firstBin + j)
            var a = Swift.max(g * width, lo), b = Swift.min((g + 1) * width, hi)
            if b < a { b = a }
            let sum = sums?[j] ?? 0
            if folded {
                if g >= 0 {
                    result.append(Segment(lower: Swift.max(a, 0), upper: Swift.max(b, 0), count: Double(counts[j]), sum: sum))
                } else {
                    (a, b) = (-Swift.min(b, 0), -a)
                    result.append(Segment(lower: a, upper: b, count: Double(counts[j]), sum: -sum))
                }
            } else {
                result.append(Segment(lower: a, upper: b, count: Double(counts[j]), sum: sum))
            }
        }
        if folded { result.sort { $0.lower < $1.lower } }
        return result
    }

    /// The histogram resampled to `bins` equal bins over `[lower, upper]` (mass outside goes to the end
    /// bins). A segment's `c` values are placed evenly inside it (the `j`-th at `(j + ½) / c` of the way,
    /// as `quantile` places them) and each lands whole in the view bin holding its place, so counts stay
    /// integers and a lone value in a sparse tail fills one bin, not fractions of two (the entropy search
    /// tells empty bins from non-empty ones).
    public func view(bins: Int, lower: Double, upper: Double, folded: Bool) -> [Double] {
        var result = [Double](repeating: 0, count: bins)
        let width = (upper - lower) / Double(bins)
        @inline(__always) func bin(_ p: Double) -> Int {
            guard width > 0 else { return 0 }
            let k = ((p - lower) / width).rounded(.down)
            return k < 0 ? 0 : (k >= Double(bins) ? bins - 1 : Int(k))
        }
        for segment in segments(folded: folded) {
            let first = bin(segment.lower), last = bin(segment.upper)
            let length = segment.upper - segment.lower
            if first == last || length <= 0 {
                result[first] += segment.count
                continue
            }
            // Values placed below the upper edge of bin k: #{j : lower + (j + ½)·length/c < edge}.
            var placed = 0.0
            for k in first..<last {
                let edge = lower + Double(k + 1) * width
                let below = Swift.min(Swift.max(((edge - segment.lower) / length * segment.count - 0.5).rounded(.up), 0),
                                      segment.count)
                result[k] += below - placed
                placed = below
            }
            result[last] += segment.count - placed
        }
        return result
    }

    /// The `q`-quantile (of `|x|` when `folded`) as NumPy's default `percentile` defines it: linear
    /// interpolation between the order statistics `k = ⌊q·(n−1)⌋` and `k + 1`. Each order statistic is
    /// placed inside its bin (the `j`-th of `c` values of a segment at `(j + ½) / c` of the way through it),
    /// so the result is within one bin of the exact value.
    public func quantile(_ q: Double, folded: Bool) -> Double {
        let segments = self.segments(folded: folded)
        guard !segments.isEmpty, total > 0 else { return 0 }
        let rank = Swift.min(Swift.max(q, 0), 1) * Double(total - 1)
        let k = rank.rounded(.down)
        let fraction = rank - k
        var below = 0.0
        var index = 0
        /// The position of the order statistic `k` (0-based), scanning forward from the last one found.
        func position(of k: Double) -> Double {
            while index < segments.count - 1 && below + segments[index].count <= k {
                below += segments[index].count
                index += 1
            }
            let segment = segments[index]
            let j = Swift.min(k - below, segment.count - 1)
            return segment.lower + (j + 0.5) / segment.count * (segment.upper - segment.lower)
        }
        let lower = position(of: k)
        guard fraction > 0, k + 1 < Double(total) else { return lower }
        return lower + fraction * (position(of: k + 1) - lower)
    }
}
