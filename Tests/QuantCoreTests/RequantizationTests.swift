import Testing
@testable import QuantCore

/// Fixed-point requantization against a widened-integer (Int128) reference: exhaustive over every int8
/// output (and the accumulators at each rounding boundary) for a dense sweep of mantissas and shifts.
@Suite struct RequantizationTests {
    /// The exact value `acc · M / 2^shift` rounded as `rounding` says, computed with Int128 quotient and
    /// remainder (not the shift-and-bias code under test).
    static func reference(_ acc: Int32, _ m: FixedPointMultiplier, _ rounding: RequantizationRounding) -> Int128 {
        let shift = 31 - m.exponent
        let product = Int128(acc) * Int128(m.mantissa)
        if shift == 0 { return product }
        if rounding == .gemmlowp { return gemmlowpReference(acc, m) }
        let divisor = Int128(1) << shift
        var quotient = product / divisor  // truncates toward zero
        let remainder = product % divisor  // same sign as product
        let twice = 2 * (remainder < 0 ? -remainder : remainder)
        let away: Bool
        switch rounding {
        case .halfAwayFromZero: away = twice >= divisor
        default:  // ties to even: away from zero only past the half, or at the half when the quotient is odd
            away = twice > divisor || (twice == divisor && quotient % 2 != 0)
        }
        if away { quotient += product < 0 ? -1 : 1 }
        return quotient
    }

    /// gemmlowp's two steps, written from their definitions with Int128 (exact division).
    static func gemmlowpReference(_ acc: Int32, _ m: FixedPointMultiplier) -> Int128 {
        let left = max(m.exponent, 0), right = max(-m.exponent, 0)
        let a = Int128(Int32(clamping: Int64(acc) << left))
        // SaturatingRoundingDoublingHighMul: a·b / 2^31 with gemmlowp's nudge, i.e. ties round upward
        // (−½ → 0); b > 0, so it never saturates.
        let ab = a * Int128(m.mantissa)
        let high = ab >= 0 ? (ab + (1 << 30)) / (1 << 31) : -((-ab + (1 << 30) - 1) / (1 << 31))
        guard right > 0 else { return high }
        // RoundingDivideByPOT: round(high / 2^right), ties away from zero.
        let divisor = Int128(1) << right
        let magnitude = high < 0 ? -high : high
        let rounded = (2 * magnitude + divisor) / (2 * divisor)
        return high < 0 ? -rounded : rounded
    }

    static let mantissas: [Int32] = [1 << 30, (1 << 30) + 1, 1_234_567_890, 1_518_500_250, 1_717_986_918,
                                     2_000_000_000, Int32.max - 1, Int32.max]

    @Test(arguments: RequantizationRounding.allCases)
    func everyInt8OutputMatchesTheWideReference(rounding: RequantizationRounding) throws {
        var checked = 0
        for mantissa in Self.mantissas {
            for exponent in stride(from: -33, through: 12, by: 1) {
                let m = try FixedPointMultiplier(mantissa: mantissa, exponent: exponent)
                for zeroPoint: Int32 in [0, -7, 100] {
                    let requantizer = try Requantizer(multipliers: [m], zeroPoint: zeroPoint, outputRange: -128...127,
                                                      rounding: rounding)
                    var accumulators: [Int32] = [0, 1, -1, .max, .min, .max - 1, .min + 1]
                    // For every output q (and one past each end), the accumulators around the rounding
                    // boundaries on both sides of q: acc ≈ (q − z ± ½) / real.
                    let real = m.realValue
                    for q in -129...128 {
                        for half in [-0.5, 0.5] {
                            let center = (Double(q) - Double(zeroPoint) + half) / real
                            guard center.magnitude < 2.2e9 else { continue }
                            let c = Int64(center.rounded())
                            for d in -2...2 { accumulators.append(Int32(clamping: c + Int64(d))) }
                        }
                    }
                    for acc in accumulators {
                        let expected = min(max(Self.reference(acc, m, rounding) + Int128(zeroPoint), -128), 127)
                        let got = requantizer(acc)
                        if Int128(got) != expected {
                            Issue.record("M=\(mantissa) e=\(exponent) z=\(zeroPoint) acc=\(acc): \(got), expected \(expected)")
                            return
                        }
                        checked += 1
                    }
                }
            }
        }
        #expect(checked > 500_000)
    }

    @Test func denseMultiplierSweepRoundTrips() throws {
        // Real multipliers across 60 binades: the mantissa is in [2^30, 2^31) and M·2^(e−31) is within
        // half a unit of the mantissa's last place of the real value.
        var real = 1.0e-12
        while real < 1.0e6 {
            let m = try FixedPointMultiplier(real)
            #expect(m.mantissa >= 1 << 30)
            let relative = abs(m.realValue - real) / real
            #expect(relative <= 0x1p-31, "\(real): \(m.realValue)")
            real *= 1.0137
        }
        // A mantissa that rounds up to 2^31 moves to the next exponent.
        let almostTwo = try FixedPointMultiplier(2 - 0x1p-40)
        #expect(almostTwo.mantissa == 1 << 30 && almostTwo.exponent == 2)
    }

    @Test func tinyAndLargeMultipliersAreHandled() throws {
        // Below 2^-32 every accumulator rounds to 0: all outputs are the zero point.
        let tiny = try FixedPointMultiplier(1e-30)
        let requantizer = try Requantizer(multipliers: [tiny], zeroPoint: 3, outputRange: -128...127)
        for acc: Int32 in [.min, -1, 0, 1, .max] { #expect(requantizer(acc) == 3) }
        let subnormal = try FixedPointMultiplier(Double.leastNonzeroMagnitude)
        #expect(try Requantizer(multipliers: [subnormal], zeroPoint: 0, outputRange: -128...127)(.max) == 0)
        // Multipliers ≥ 1 shift left and saturate.
        let big = try Requantizer(realMultipliers: [1000], zeroPoint: 0, type: .int8)
        #expect(big(1) == 127 && big(-1) == -128 && big(0) == 0)
        let justBelowLimit = try FixedPointMultiplier(0x1p31 - 1)
        #expect(justBelowLimit.exponent == 31)
    }

    @Test func invalidMultipliersAreTypedErrors() {
        for bad in [0.0, -1.0, .nan, .infinity, 0x1p31, 1e300] {
            #expect(throws: QuantError.self) { try FixedPointMultiplier(bad) }
        }
        #expect(throws: QuantError.self) { try FixedPointMultiplier(mantissa: 5, exponent: 0) }
        #expect(throws: QuantError.self) { try FixedPointMultiplier(mantissa: 1 << 30, exponent: 32) }
        #expect(throws: QuantError.self) {
            try Requantizer(multipliers: [FixedPointMultiplier(0.5)], zeroPoint: 300, outputRange: -128...127)
        }
        #expect(throws: QuantError.self) { try Requantizer(realMultipliers: [0.5], zeroPoint: 0, type: .float8e4m3fn) }
    }

    @Test func gemmlowpDoubleRoundingDiffersFromSingleRounding() throws {
        // acc · M / 2^31 lands just below a half after the first rounding pushed it up: the two modes part.
        let m = try FixedPointMultiplier(mantissa: 1 << 30, exponent: -1)  // real = 1/4
        let single = try Requantizer(multipliers: [m], zeroPoint: 0, outputRange: -128...127)
        let gemmlowp = try Requantizer(multipliers: [m], zeroPoint: 0, outputRange: -128...127, rounding: .gemmlowp)
        let even = try Requantizer(multipliers: [m], zeroPoint: 0, outputRange: -128...127, rounding: .halfToEven)
        // 1/4 → 0 (single), but gemmlowp first rounds 1/2 up to 1, then 1/2 → 1.
        #expect(single(1) == 0 && gemmlowp(1) == 1)
        // 10/4 = 2.5: away from zero → 3, to even → 2.
        #expect(single(10) == 3 && even(10) == 2 && single(-10) == -3 && even(-10) == -2)
    }

    @Test func bufferRequantizationUsesPerChannelMultipliers() throws {
        let requantizer = try Requantizer(realMultipliers: [0.5, 0.25, 2], zeroPoint: 1, type: .uint8)
        let input: [Int32] = [10, 10, 10, -10, 400, 100]
        var output = [UInt8](repeating: 0, count: 6)
        try input.withUnsafeBufferPointer { i in
            try output.withUnsafeMutableBufferPointer { try requantizer.apply(i, into: $0) }
        }
        // 10·0.5+1, 10·0.25=2.5→3 +1, 10·2+1, −10·0.5+1=−4→0, 400·0.25+1, 100·2+1
        #expect(output == [6, 4, 21, 0, 101, 201])
        var tooSmall = [UInt8](repeating: 0, count: 2)
        #expect(throws: QuantError.self) {
            try input.withUnsafeBufferPointer { i in try tooSmall.withUnsafeMutableBufferPointer { try requantizer.apply(i, into: $0) } }
        }
    }
}
