/// How the fixed-point product is rounded back to an integer.
public enum RequantizationRounding: String, Codable, Sendable, CaseIterable {
    /// One rounding of the exact product `acc · M · 2^(e − 31)`, ties away from zero (the default; the
    /// rounding gemmlowp and TFLite aim at, without their double rounding).
    case halfAwayFromZero
    /// One rounding of the exact product, ties to even (as QuantizeLinear rounds).
    case halfToEven
    /// gemmlowp / TFLite exactly: `RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc · 2^left, M), right)`
    /// with `left = max(e, 0)`, `right = max(−e, 0)`: the high multiply rounds ties upward (its nudge), the
    /// shift rounds ties away from zero, and the two roundings can give one more than a single rounding.
    /// `acc · 2^left` saturates to int32 first.
    case gemmlowp
}

/// A positive real multiplier as an int32 mantissa `M ∈ [2^30, 2^31)` and a power-of-two exponent:
/// `real ≈ M · 2^(exponent − 31)`.
///
/// Multipliers ≥ 1 have `exponent > 0` (a left shift) and are supported up to `2^31` (exclusive).
/// Tiny multipliers are supported down to the smallest double: when the total right shift
/// `31 − exponent` reaches 63 every product rounds to 0, so every output is the zero point.
public struct FixedPointMultiplier: Hashable, Sendable, Codable {
    public let mantissa: Int32
    public let exponent: Int

    /// The mantissa `round(f · 2^31)` (ties away from zero) of `real = f · 2^e`, `f ∈ [0.5, 1)`; a mantissa
    /// that rounds up to `2^31` becomes `2^30` with `e + 1`. Throws for NaN, ±Inf, ≤ 0 and ≥ 2^31.
    public init(_ real: Double) throws {
        guard real.isFinite, real > 0 else {
            throw QuantError.invalidMultiplier(real, reason: "it must be finite and > 0")
        }
        guard real < 0x1p31 else {
            throw QuantError.invalidMultiplier(
                real, reason: "it must be < 2^31; any larger multiplier saturates every non-zero accumulator")
        }
        var m = (real.significand * 0x1p30).rounded(.toNearestOrAwayFromZero)
        var e = Int(real.exponent) + 1
        if m == 0x1p31 { m = 0x1p30; e += 1 }
        guard e <= 31 else {
            throw QuantError.invalidMultiplier(real, reason: "it rounds to 2^31, which is out of range")
        }
        mantissa = Int32(m)
        exponent = e
    }

    /// Validates a stored mantissa and exponent.
    public init(mantissa: Int32, exponent: Int) throws {
        guard mantissa >= 1 << 30 else {
            throw QuantError.invalidMultiplier(Double(mantissa), reason: "the mantissa must lie in [2^30, 2^31)")
        }
        guard exponent <= 31 else {
            throw QuantError.invalidMultiplier(Double(mantissa), reason: "exponent \(exponent) must be ≤ 31")
        }
        self.mantissa = mantissa
        self.exponent = exponent
    }

    /// `M · 2^(exponent − 31)` exactly (as a double; 0 only when it underflows).
    public var realValue: Double { Double(mantissa) * Double(sign: .plus, exponent: exponent - 31, significand: 1) }

    /// `round(acc · M · 2^(exponent − 31))` by `rounding`, in 64 bits (no zero point, no clamping).
    @inline(__always)
    public func scaled(_ acc: Int32, rounding: RequantizationRounding) -> Int64 {
        let shift = 31 - exponent  // ≥ 0
        switch rounding {
        case .halfAwayFromZero:
            let product = Int64(acc) * Int64(mantissa)  // |product| < 2^62
            if shift == 0 { return product }
            if shift >= 63 { return 0 }
            let half = Int64(1) << (shift - 1)
            return product >= 0 ? (product + half) >> shift : -((half - product) >> shift)
        case .halfToEven:
            let product = Int64(acc) * Int64(mantissa)
            if shift == 0 { return product }
            if shift >= 63 { return 0 }
            let floor = product >> shift
            let remainder = product - (floor << shift)
            let half = Int64(1) << (shift - 1)
            return remainder > half || (remainder == half && floor & 1 != 0) ? floor + 1 : floor
        case .gemmlowp:
            let left = Swift.max(exponent, 0), right = Swift.max(-exponent, 0)
            let shifted = Int64(acc) << left  // left ≤ 31, so this fits in 63 bits
            let a = Int32(clamping: shifted)
            return FixedPointMultiplier.roundingDivideByPowerOfTwo(
                Int64(FixedPointMultiplier.saturatingRoundingDoublingHighMul(a, mantissa)), right)
        }
    }

    /// gemmlowp's SaturatingRoundingDoublingHighMul: `(a · b + nudge) / 2^31`, truncating division,
    /// nudge `2^30` (or `1 − 2^30` for negative products); `INT32_MIN · INT32_MIN` saturates.
    @inline(__always)
    static func saturatingRoundingDoublingHighMul(_ a: Int32, _ b: Int32) -> Int32 {
        if a == .min && b == .min { return .max }
        let ab = Int64(a) * Int64(b)
        let nudge: Int64 = ab >= 0 ? 1 << 30 : 1 - (1 << 30)
        return Int32(truncatingIfNeeded: (ab + nudge) / (1 << 31))
    }

    /// gemmlowp's RoundingDivideByPOT: `x / 2^exponent`, ties away from zero.
    @inline(__always)
    static func roundingDivideByPowerOfTwo(_ x: Int64, _ exponent: Int) -> Int64 {
        if exponent == 0 { return x }
        if exponent >= 63 { return 0 }
        let mask = (Int64(1) << exponent) - 1
        let remainder = x & mask
        let threshold = (mask >> 1) + (x < 0 ? 1 : 0)
        return (x >> exponent) + (remainder > threshold ? 1 : 0)
    }
}

/// Fixed-point requantization of int32 accumulators: `q = clamp(round(acc · M) + z, qmin, qmax)`.
public struct Requantizer: Hashable, Sendable, Codable {
    /// One multiplier (per-tensor) or one per channel (the innermost axis of the accumulator buffer).
    public let multipliers: [FixedPointMultiplier]
    public let zeroPoint: Int32
    public let outputRange: ClosedRange<Int32>
    public let rounding: RequantizationRounding

    public init(multipliers: [FixedPointMultiplier], zeroPoint: Int32, outputRange: ClosedRange<Int32>,
                rounding: RequantizationRounding = .halfAwayFromZero) throws {
        guard !multipliers.isEmpty else {
            throw QuantError.invalidParameters("a requantizer needs at least one multiplier")
        }
        guard outputRange.contains(zeroPoint) else {
            throw QuantError.invalidParameters("output zero point \(zeroPoint) lies outside \(outputRange)")
        }
        self.multipliers = multipliers
        self.zeroPoint = zeroPoint
        self.outputRange = outputRange
        self.rounding = rounding
    }

    /// A requantizer for real multipliers `s_in · s_w / s_out` into `type` (an integer type).
    public init(realMultipliers: [Double], zeroPoint: Int32, type: QuantType,
                rounding: RequantizationRounding = .halfAwayFromZero) throws {
        guard let range = type.integerRange else {
            throw QuantError.unsupportedCombination("requantization produces int<N>/uint<N> codes, not \(type)")
        }
        try self.init(multipliers: realMultipliers.map { try FixedPointMultiplier($0) }, zeroPoint: zeroPoint,
                      outputRange: range, rounding: rounding)
    }

    /// The output code of one accumulator under channel `channel`'s multiplier.
    @inline(__always)
    public func callAsFunction(_ acc: Int32, channel: Int = 0) -> Int32 {
        let value = multipliers[channel].scaled(acc, rounding: rounding) + Int64(zeroPoint)
        return Int32(Swift.min(Swift.max(value, Int64(outputRange.lowerBound)), Int64(outputRange.upperBound)))
    }

    /// Requantizes a row-major buffer whose innermost axis has `multipliers.count` channels (or any
    /// layout when there is one multiplier). Output values are `outputRange`-clamped, then narrowed.
    public func apply<Output: FixedWidthInteger>(_ input: UnsafeBufferPointer<Int32>,
                                                 into output: UnsafeMutableBufferPointer<Output>) throws {
        guard output.count >= input.count else {
            throw QuantError.invalidParameters("output holds \(output.count) values, input \(input.count)")
        }
        guard Int64(outputRange.lowerBound) >= Int64(Output.min), Int64(outputRange.upperBound) <= Int64(Output.max) else {
            throw QuantError.invalidParameters("output range \(outputRange) does not fit \(Output.self)")
        }
        let channels = multipliers.count
        guard channels == 1 || input.count % channels == 0 else {
            throw QuantError.invalidParameters(
                "\(input.count) accumulators are not a whole number of rows of \(channels) channels")
        }
        if channels == 1 {
            for i in 0..<input.count { output[i] = Output(truncatingIfNeeded: self(input[i])) }
        } else {
            var i = 0
            while i < input.count {
                for c in 0..<channels { output[i + c] = Output(truncatingIfNeeded: self(input[i + c], channel: c)) }
                i += channels
            }
        }
    }
}
