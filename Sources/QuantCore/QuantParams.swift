/// Per-parameter ranges `[minimum[i], maximum[i]]`, laid out like the scale tensor.
public struct QuantRange: Hashable, Sendable, Codable {
    public let minimum: [Float]
    public let maximum: [Float]
    /// The shape of the scale tensor these ranges belong to (`[]` per-tensor, `[C]` per-channel, blocked…).
    public let parameterShape: [Int]

    /// Throws when the counts disagree, a bound is NaN or infinite, or `minimum > maximum`.
    public init(minimum: [Float], maximum: [Float], parameterShape: [Int]) throws {
        let expected = parameterShape.reduce(1) { $0.multipliedReportingOverflow(by: max($1, 0)).partialValue }
        guard minimum.count == maximum.count, minimum.count == expected else {
            throw QuantError.invalidParameters(
                "a range needs one minimum and one maximum per parameter: shape \(parameterShape) has \(expected), "
                    + "got \(minimum.count) minima and \(maximum.count) maxima")
        }
        for (i, (lo, hi)) in zip(minimum, maximum).enumerated() {
            guard lo.isFinite, hi.isFinite, lo <= hi else {
                throw QuantError.invalidParameters(
                    "range \(i) is [\(lo), \(hi)]; bounds must be finite with minimum ≤ maximum")
            }
        }
        self.minimum = minimum
        self.maximum = maximum
        self.parameterShape = parameterShape
    }

    /// One range for the whole tensor.
    public static func perTensor(minimum: Float, maximum: Float) throws -> QuantRange {
        try QuantRange(minimum: [minimum], maximum: [maximum], parameterShape: [])
    }

    /// The ranges widened to include 0 and clipped at `±threshold` (saturating mode): `[max(min(lo, 0), −T),
    /// min(max(hi, 0), T)]`. `.none` leaves them unchanged.
    public func applying(_ saturation: Saturation) throws -> QuantRange {
        guard case .threshold(let t) = saturation else { return self }
        guard t >= 0, t.isFinite else {
            throw QuantError.invalidParameters("saturation threshold \(t) must be finite and ≥ 0")
        }
        // Clip the range widened to include 0, so the result is always a valid range containing 0.
        return try QuantRange(minimum: minimum.map { Swift.max(Swift.min($0, 0), -t) },
                              maximum: maximum.map { Swift.min(Swift.max($0, 0), t) },
                              parameterShape: parameterShape)
    }
}

/// Scales and zero points of one quantized tensor, with the type and granularity they belong to.
///
/// A code `q` stands for `(q − z) · s` (integer types); see `QuantType` for the others. Every scale is
/// finite and positive; every zero point lies in `codeRange`.
public struct QuantParams: Hashable, Sendable {
    public let type: QuantType
    public let granularity: Granularity
    /// Shape of the scale / zero-point tensor (`[]`, `[C]`, or the blocked shape).
    public let parameterShape: [Int]
    public let scales: [Float]
    public let zeroPoints: [Int32]
    /// Codes are clamped to this range (`nil` for floating-point types).
    public let codeRange: ClosedRange<Int32>?
    /// Ternary only: `x > t → +1`, `x < −t → −1`, else 0, per parameter. `nil` means `t = s / 2`.
    public let ternaryThresholds: [Float]?
    /// FP8 only: saturate values beyond the largest finite value (ONNX `saturate`).
    public let saturate: Bool

    /// Validates and stores parameters given directly (e.g. read from a model).
    ///
    /// - Parameters:
    ///   - codeRange: defaults to the type's full range (`[−K, K]` for log2, `[−1, 1]` binary/ternary).
    public init(type: QuantType, granularity: Granularity = .perTensor, parameterShape: [Int] = [],
                scales: [Float], zeroPoints: [Int32]? = nil, codeRange: ClosedRange<Int32>? = nil,
                ternaryThresholds: [Float]? = nil, saturate: Bool = true) throws {
        let count = parameterShape.reduce(1) { $0.multipliedReportingOverflow(by: max($1, 0)).partialValue }
        switch granularity {
        case .perTensor:
            guard parameterShape.isEmpty || count == 1 else {
                throw QuantError.invalidParameters("per-tensor parameters have shape [] or [1], got \(parameterShape)")
            }
        case .perChannel:
            guard parameterShape.count == 1 else {
                throw QuantError.invalidParameters("per-channel parameters are 1-D, got shape \(parameterShape)")
            }
        case .perGroup:
            guard parameterShape.count >= 2 else {
                throw QuantError.invalidParameters(
                    "per-group parameters have the tensor's rank (≥ 2) with the blocked axis shortened, got shape \(parameterShape)")
            }
        }
        guard scales.count == count else {
            throw QuantError.invalidParameters("parameter shape \(parameterShape) needs \(count) scales, got \(scales.count)")
        }
        for s in scales where !(s.isFinite && s > 0) {
            throw QuantError.invalidParameters("scale \(s) is not allowed: every scale must be finite and > 0")
        }
        let defaultRange: ClosedRange<Int32>?
        switch type.kind {
        case .integer: defaultRange = type.integerRange
        case .binary, .ternary: defaultRange = -1...1
        case .log2(let bits): defaultRange = Log2Mapping.codeRange(bits: bits)
        case .float16, .bfloat16, .float8e4m3fn, .float8e5m2: defaultRange = nil
        }
        let range = codeRange ?? defaultRange
        if let range {
            guard let full = defaultRange, range.lowerBound >= full.lowerBound, range.upperBound <= full.upperBound,
                  range.lowerBound < range.upperBound else {
                throw QuantError.invalidParameters(
                    "code range \(range) must lie inside \(type)'s codes \(defaultRange.map { "\($0)" } ?? "(none)") and hold two codes or more")
            }
        } else if codeRange != nil {
            throw QuantError.invalidParameters("\(type) is a floating-point type and takes no code range")
        }
        let zeros = zeroPoints ?? [Int32](repeating: 0, count: count)
        guard zeros.count == count else {
            throw QuantError.invalidParameters("parameter shape \(parameterShape) needs \(count) zero points, got \(zeros.count)")
        }
        if type.isInteger, let range {
            for z in zeros where !range.contains(z) {
                throw QuantError.invalidParameters("zero point \(z) lies outside the code range \(range)")
            }
        } else if zeros.contains(where: { $0 != 0 }) {
            throw QuantError.unsupportedCombination(
                "\(type) has no zero point: every zero point must be 0 (only int<N>/uint<N> types are affine)")
        }
        if let thresholds = ternaryThresholds {
            guard case .ternary = type.kind else {
                throw QuantError.invalidParameters("ternary thresholds were given for \(type); they apply to ternary only")
            }
            guard thresholds.count == count, thresholds.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
                throw QuantError.invalidParameters("ternary thresholds need \(count) finite values ≥ 0")
            }
        }
        self.type = type
        self.granularity = granularity
        self.parameterShape = parameterShape
        self.scales = scales
        self.zeroPoints = zeros
        self.codeRange = range
        self.ternaryThresholds = ternaryThresholds
        self.saturate = saturate
    }

    /// Number of scale / zero-point pairs.
    public var count: Int { scales.count }

    /// The layout over a tensor of `shape`; throws when these parameters do not fit it.
    public func layout(for shape: [Int]) throws -> ParameterLayout {
        let layout = try granularity.layout(for: shape)
        let expected = layout.parameterShape
        let fits = granularity == .perTensor ? count == 1 : expected == parameterShape
        guard fits else {
            throw QuantError.invalidParameters(
                "\(granularity) parameters of shape \(parameterShape) do not fit a tensor of shape \(shape); expected \(expected)")
        }
        return layout
    }
}

// MARK: - Computing parameters from ranges (the math every observer shares)

extension QuantParams {
    /// Computes scales and zero points for `scheme` from per-parameter ranges.
    ///
    /// Each range is first widened to include 0 (so 0 is exactly representable). Then, for integer types
    /// with codes `[qmin, qmax]` (narrowed / reduced as the scheme says):
    /// - symmetric: `T = max(−min, max)`, `s = T / ((qmax − qmin) / 2)`, `z = 0` (signed) or
    ///   `(qmin + qmax + 1) / 2` (unsigned);
    /// - asymmetric: `s = (max − min) / (qmax − qmin)`, `z = clamp(qmin − round(min / s), qmin, qmax)`.
    /// Then `s = max(s, minimumScale)`, so a zero range gives `s = minimumScale` (never 0). The arithmetic is
    /// float32 in PyTorch's order, so results equal `torch.ao.quantization` observers' bit for bit.
    ///
    /// Floating-point types: FP8 `s = T / largest finite value` (448 for E4M3FN, 57344 for E5M2);
    /// FP16/BF16 `s = 1` (a cast) unless `T` exceeds the largest finite value, then `s = T / largest`.
    /// Log2: `s = 2^round(log2 T)`, rounding in the log domain; `s = 1` when `T = 0`.
    /// Binary and ternary scales come from the weights (`WeightRangeRules`), not from a range: they throw.
    public init(scheme: QuantScheme, range: QuantRange) throws {
        try scheme.validate()
        let codes = try scheme.codeRange()
        var scales = [Float](repeating: 1, count: range.minimum.count)
        var zeros = [Int32](repeating: 0, count: range.minimum.count)
        for i in 0..<scales.count {
            let lo = Swift.min(range.minimum[i], 0)
            let hi = Swift.max(range.maximum[i], 0)
            (scales[i], zeros[i]) = try QuantParams.scaleAndZeroPoint(lo: lo, hi: hi, scheme: scheme, codes: codes)
        }
        try self.init(type: scheme.type, granularity: scheme.granularity, parameterShape: range.parameterShape,
                      scales: scales, zeroPoints: zeros, codeRange: codes, saturate: scheme.saturate)
    }

    /// Per-tensor parameters from one range.
    public init(scheme: QuantScheme, minimum: Float, maximum: Float) throws {
        try self.init(scheme: scheme, range: QuantRange.perTensor(minimum: minimum, maximum: maximum))
    }

    /// The scale and zero point of one range `[lo, hi]` (which must contain 0), without allocating:
    /// the per-parameter step of `init(scheme:range:)`, for searches that try many ranges.
    ///
    /// - Parameters:
    ///   - codes: `scheme.codeRange()`, computed once by the caller (which also validates the scheme).
    public static func scaleAndZeroPoint(lo: Float, hi: Float, scheme: QuantScheme,
                                         codes: ClosedRange<Int32>?) throws -> (Float, Int32) {
        let minimumScale = scheme.minimumScale
        let threshold = Swift.max(-lo, hi)
        switch scheme.type.kind {
        case .integer(_, let signed):
            guard let codes else { preconditionFailure("integer types always have a code range") }
            let qmin = codes.lowerBound, qmax = codes.upperBound
            let levels = Float(qmax - qmin)
            if scheme.mapping == .symmetric {
                let scale = clampScale(threshold / (levels / 2), fallback: Double(threshold) / Double(levels / 2),
                                       minimum: minimumScale)
                return (scale, signed ? 0 : (qmin + qmax + 1) / 2)
            }
            var span = hi - lo
            if !span.isFinite { span = .infinity }  // falls back to the wide computation below
            let scale = clampScale(span / levels, fallback: (Double(hi) - Double(lo)) / Double(levels),
                                   minimum: minimumScale)
            let shifted = (lo / scale).rounded(.toNearestOrEven)
            // |lo / scale| ≤ levels (≤ 65535) unless the scale was clamped up, which only shrinks it.
            let zero = Int64(qmin) - Int64(Swift.max(Swift.min(shifted, 1e9), -1e9))
            return (scale, Int32(Swift.min(Swift.max(zero, Int64(qmin)), Int64(qmax))))
        case .float16, .bfloat16:
            let largest = scheme.type.largestFiniteValue!
            return (threshold <= largest ? 1 : clampScale(threshold / largest, fallback: 1, minimum: minimumScale), 0)
        case .float8e4m3fn, .float8e5m2:
            let largest = scheme.type.largestFiniteValue!
            return (clampScale(threshold / largest, fallback: 1, minimum: minimumScale), 0)
        case .log2:
            return (Log2Mapping.scale(forMaximum: threshold), 0)
        case .binary, .ternary:
            throw QuantError.unsupportedCombination(
                "\(scheme.type) scales come from the weights (α = mean |w|, see WeightRangeRules), not from a min/max range")
        }
    }

    /// `scale` raised to `minimum`; when float32 overflowed, the double `fallback` clamped to the largest float.
    static func clampScale(_ scale: Float, fallback: Double, minimum: Float) -> Float {
        var s = scale
        if !s.isFinite { s = Float(Swift.min(fallback, Double(Float.greatestFiniteMagnitude))) }
        if !s.isFinite { s = .greatestFiniteMagnitude }
        return Swift.max(s, minimum)
    }
}

extension QuantParams: Codable {
    private enum CodingKeys: String, CodingKey {
        case type, granularity, parameterShape, scales, zeroPoints, codeRange, ternaryThresholds, saturate
    }

    /// Decodes and validates (a decoded value is as valid as one built in code).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(type: c.decode(QuantType.self, forKey: .type),
                      granularity: c.decode(Granularity.self, forKey: .granularity),
                      parameterShape: c.decode([Int].self, forKey: .parameterShape),
                      scales: c.decode([Float].self, forKey: .scales),
                      zeroPoints: c.decode([Int32].self, forKey: .zeroPoints),
                      codeRange: c.decodeIfPresent(ClosedRange<Int32>.self, forKey: .codeRange),
                      ternaryThresholds: c.decodeIfPresent([Float].self, forKey: .ternaryThresholds),
                      saturate: c.decodeIfPresent(Bool.self, forKey: .saturate) ?? true)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(type, forKey: .type)
        try c.encode(granularity, forKey: .granularity)
        try c.encode(parameterShape, forKey: .parameterShape)
        try c.encode(scales, forKey: .scales)
        try c.encode(zeroPoints, forKey: .zeroPoints)
        try c.encodeIfPresent(codeRange, forKey: .codeRange)
        try c.encodeIfPresent(ternaryThresholds, forKey: .ternaryThresholds)
        try c.encode(saturate, forKey: .saturate)
    }
}
