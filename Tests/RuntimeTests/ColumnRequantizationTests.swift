import QuantCore
@testable import Runtime
import Testing

/// The branch-free requantization loop of the fused kernels against `FixedPointMultiplier.scaled`
/// (QuantCore), over accumulator sweeps that hit every tie, at small, large, tiny and ≥ 1 multipliers.
@Suite struct ColumnRequantizationTests {
    private func check(_ real: Double, accumulators: [Int32], zeroPoint: Int32, clamp: ClosedRange<Int32>) throws {
        let multiplier = try FixedPointMultiplier(real)
        let requantization = ColumnRequantization(multipliers: [multiplier], zeroPoint: zeroPoint, clamp: clamp)
        var output = [Int32](repeating: 0, count: accumulators.count)
        accumulators.withUnsafeBufferPointer { acc in
            output.withUnsafeMutableBufferPointer { out in
                requantization.apply(acc.baseAddress!, count: acc.count, firstColumn: 0, perColumn: false,
                                     output: out.baseAddress!, stride: 1)
            }
        }
        let expected = accumulators.map { acc -> Int32 in
            let value = multiplier.scaled(acc, rounding: .halfAwayFromZero) + Int64(zeroPoint)
            return Int32(min(max(value, Int64(clamp.lowerBound)), Int64(clamp.upperBound)))
        }
        #expect(output == expected, "multiplier \(real)")
    }

    @Test func equalsFixedPointScalingIncludingTies() throws {
        let dense = Array(Int32(-70_000)...Int32(70_000))
        // Powers of two make ties exact: acc · 2^-4 ties at every acc ≡ 8 (mod 16), on both signs.
        for real in [0.0625, 0.5, 0.3, 0.0078125, 1.0, 1.5, 3.75e-4, 0.999_999_9] {
            try check(real, accumulators: dense, zeroPoint: 0, clamp: Int32.min...Int32.max)
            try check(real, accumulators: dense, zeroPoint: 131, clamp: 0...255)
        }
        let extremes: [Int32] = [.min, .min + 1, -1, 0, 1, .max - 1, .max]
        for real in [1e-30, 2e-10, 0.25, 1000.0, 2_000_000_000.0] {
            try check(real, accumulators: extremes + dense.filter { $0 % 997 == 0 }, zeroPoint: -5, clamp: -128...127)
        }
    }

    @Test func handComputedTiesRoundAwayFromZero() throws {
        let requantization = ColumnRequantization(multipliers: [try FixedPointMultiplier(0.0625)], zeroPoint: 100,
                                                  clamp: 0...255)
        let acc: [Int32] = [600, -600, 8, -8, 7, -7, 24, -24]
        var output = [UInt8](repeating: 0, count: acc.count)
        acc.withUnsafeBufferPointer { acc in
            output.withUnsafeMutableBufferPointer { out in
                requantization.apply(acc.baseAddress!, count: acc.count, firstColumn: 0, perColumn: false,
                                     output: out.baseAddress!, stride: 1)
            }
        }
        // 37.5 → 38, −37.5 → −38, 0.5 → 1, −0.5 → −1, 0.4375 → 0, 1.5 → 2, −1.5 → −2; then + 100.
        #expect(output == [138, 62, 101, 99, 100, 100, 102, 98])
    }
}
