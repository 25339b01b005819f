import Tensors

/// The log2 (power-of-two) mapping: `w' = sign(w) · s · 2^e`, `e ∈ [1 − K, 0]`, or 0.
///
/// With `N` bits there are `K = 2^(N−1) − 1` magnitude levels `s · 2^(k − K)`, `k = 1…K`, and zero. A code
/// is `sign(w) · k` in `[−K, K]`. The exponent is rounded in the log domain (`2^round(log2 |w/s|)`, so the
/// boundary between two levels is their geometric mean), clamped to `[1 − K, 0]`; magnitudes below
/// half the smallest level (`|w/s| < 2^(−K)`, the linear midpoint between 0 and that level) become 0.
/// The scale `s = 2^round(log2 max|w|)` sets the top of the exponent range (DESIGN.md §4).
public enum Log2Mapping {
    /// Magnitude levels for an `bits`-bit log2 code.
    @inline(__always)
    public static func levels(bits: Int) -> Int { (1 << (bits - 1)) - 1 }

    static func codeRange(bits: Int) -> ClosedRange<Int32> {
        let k = Int32(levels(bits: bits))
        return -k...k
    }

    /// `round(log2 x)` for a finite positive `x`, rounding in the log domain (up when the significand is
    /// ≥ √2, decided exactly by squaring in double precision).
    @inline(__always)
    public static func roundedExponent(_ x: Float) -> Int {
        let significand = Double(x.significand)
        return Int(x.exponent) + (significand * significand >= 2 ? 1 : 0)
    }

    /// The scale for a largest magnitude `maximum`: `2^round(log2 maximum)`, within the normal floats;
    /// 1 when `maximum` is 0.
    public static func scale(forMaximum maximum: Float) -> Float {
        guard maximum > 0, maximum.isFinite else { return 1 }
        let exponent = Swift.min(Swift.max(roundedExponent(maximum), -126), 127)
        return Float(sign: .plus, exponent: exponent, significand: 1)
    }

    /// The code of `x` (already divided by the scale) for `levels` = K.
    @inline(__always)
    static func code(_ ratio: Float, levels: Int) -> Int32 {
        let magnitude = abs(ratio)
        // NaN and magnitudes below half the smallest level map to 0.
        guard magnitude >= Float(sign: .plus, exponent: -levels, significand: 1) else { return 0 }
        let exponent = magnitude.isInfinite ? 0 : Swift.min(Swift.max(roundedExponent(magnitude), 1 - levels), 0)
        let k = Int32(exponent + levels)
        return ratio < 0 ? -k : k
    }
}

/// Weight-range rules for the low-bit mappings, computed exactly over a whole weight tensor
/// (DESIGN.md §4). The streaming versions live in Calibration (`LowBitWeightObserver`).
public enum WeightRangeRules {
    /// Binary: `α = mean |w|` per parameter; `w' = α · sign(w)`.
    public static func binary(_ weights: Tensor, granularity: Granularity) throws -> QuantParams {
        let (layout, sums, counts, _) = try absoluteStatistics(weights, granularity: granularity)
        let alphas = (0..<layout.parameterCount).map { i in
            positiveScale(counts[i] == 0 ? 0 : sums[i] / Double(counts[i]))
        }
        return try QuantParams(type: .binary, granularity: granularity, parameterShape: layout.parameterShape,
                               scales: alphas)
    }

    /// Ternary (TWN): threshold `Δ = 0.7 · mean |w|`, `α = mean of |w| over |w| > Δ`, per parameter;
    /// `w' = +α` for `w > Δ`, `−α` for `w < −Δ`, else 0.
    public static func ternary(_ weights: Tensor, granularity: Granularity,
                               thresholdFactor: Float = 0.7) throws -> QuantParams {
        let (layout, sums, counts, _) = try absoluteStatistics(weights, granularity: granularity)
        let deltas = (0..<layout.parameterCount).map { i in
            counts[i] == 0 ? Float(0) : Float(Double(thresholdFactor) * (sums[i] / Double(counts[i])))
        }
        var above = [Double](repeating: 0, count: layout.parameterCount)
        var aboveCounts = [Int](repeating: 0, count: layout.parameterCount)
        let values = try floatValues(weights)
        values.withUnsafeBufferPointer { x in
            layout.forEachRun { run in
                for (j, i) in run.elements.enumerated() {
                    let p = run.parameter + j * run.parameterStride
                    let magnitude = abs(x[i])
                    if magnitude.isFinite && magnitude > deltas[p] {
                        above[p] += Double(magnitude)
                        aboveCounts[p] += 1
                    }
                }
            }
        }
        let alphas = (0..<layout.parameterCount).map { i in
            positiveScale(aboveCounts[i] == 0 ? 0 : above[i] / Double(aboveCounts[i]))
        }
        return try QuantParams(type: .ternary, granularity: granularity, parameterShape: layout.parameterShape,
                               scales: alphas, ternaryThresholds: deltas)
    }

    /// Log2: `s = 2^round(log2 max|w|)` per parameter, the top of the exponent range `[s·2^(1−K), s]`.
    public static func log2(_ weights: Tensor, granularity: Granularity, type: QuantType = .log2) throws -> QuantParams {
        guard case .log2 = type.kind else {
            throw QuantError.unsupportedCombination("WeightRangeRules.log2 needs a log2 type, got \(type)")
        }
        let (layout, _, _, maxima) = try absoluteStatistics(weights, granularity: granularity)
        return try QuantParams(type: type, granularity: granularity, parameterShape: layout.parameterShape,
                               scales: maxima.map { Log2Mapping.scale(forMaximum: $0) })
    }

    /// A scale that is never 0: an all-zero (or empty) channel gets 1, so its codes still decode to 0.
    static func positiveScale(_ value: Double) -> Float {
        let scale = Float(value)
        return scale > 0 && scale.isFinite ? scale : 1
    }

    /// Per-parameter sum of |w|, count and max |w| over the finite weights (NaN and ±Inf are skipped).
    static func absoluteStatistics(_ weights: Tensor, granularity: Granularity)
        throws -> (ParameterLayout, [Double], [Int], [Float]) {
        let layout = try granularity.layout(for: weights.shape)
        var sums = [Double](repeating: 0, count: layout.parameterCount)
        var counts = [Int](repeating: 0, count: layout.parameterCount)
        var maxima = [Float](repeating: 0, count: layout.parameterCount)
        let values = try floatValues(weights)
        values.withUnsafeBufferPointer { x in
            layout.forEachRun { run in
                for (j, i) in run.elements.enumerated() {
                    let p = run.parameter + j * run.parameterStride
                    let magnitude = abs(x[i])
                    guard magnitude.isFinite else { continue }
                    sums[p] += Double(magnitude)
                    counts[p] += 1
                    if magnitude > maxima[p] { maxima[p] = magnitude }
                }
            }
        }
        return (layout, sums, counts, maxima)
    }
}

/// A tensor's elements as float32 (float16, bfloat16 and float64 are converted exactly or by rounding).
func floatValues(_ tensor: Tensor) throws -> [Float] {
    switch tensor.dtype {
    case .float32: return tensor.scalars(as: Float.self)
    case .float16: return tensor.withUnsafeBufferPointer(as: Float16.self) { $0.map { Float($0) } }
    case .float64: return tensor.withUnsafeBufferPointer(as: Double.self) { $0.map { Float($0) } }
    case .bfloat16: return tensor.withUnsafeBufferPointer(as: BFloat16.self) { $0.map { $0.floatValue } }
    default:
        throw QuantError.unsupportedDType(what: "quantizing a tensor", dtype: tensor.dtype,
                                          allowed: [.float32, .float16, .bfloat16, .float64])
    }
}
