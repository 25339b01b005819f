import QuantCore

/// Pure-Swift reference twins of the fused integer operators, element by element from the original
/// operand values (no flipping, no packing, no row or column sums). The fast kernels equal them bit
/// for bit; tests hold them against each other.
enum FusedInt8Reference {
    /// `acc[i][j] = Σ_k (a[i][k] − za)(b[k][j] − zb[j]) + bias[j]`, wrapping in int32.
    ///
    /// - Parameters:
    ///   - a: `m × k` activation values (uint8 or int8, widened).
    ///   - b: `k × n` weight values (int8 or uint8, widened), row-major.
    ///   - weightZeroPoints: one value or one per column.
    static func accumulators(
        m: Int, k: Int, n: Int, a: [Int32], activationZeroPoint za: Int32, b: [Int32], weightZeroPoints: [Int32],
        bias: [Int32]?
    ) -> [Int32] {
        var acc = [Int32](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                let zb = weightZeroPoints.count == 1 ? weightZeroPoints[0] : weightZeroPoints[j]
                var sum: Int32 = bias?[j] ?? 0
                for kk in 0..<k { sum = sum &+ (a[i * k + kk] &- za) &* (b[kk * n + j] &- zb) }
                acc[i * n + j] = sum
            }
        }
        return acc
    }

    /// `clamp(round(acc · M_j) + z, range)` with `FixedPointMultiplier.scaled`, ties away from zero;
    /// `acc` is `rows × multipliers.count` (or any length with one multiplier).
    static func requantized(_ acc: [Int32], multipliers: [FixedPointMultiplier], zeroPoint: Int32,
                            range: ClosedRange<Int32>) -> [Int32] {
        acc.indices.map { index in
            let multiplier = multipliers.count == 1 ? multipliers[0] : multipliers[index % multipliers.count]
            let value = multiplier.scaled(acc[index], rounding: .halfAwayFromZero) + Int64(zeroPoint)
            return Int32(min(max(value, Int64(range.lowerBound)), Int64(range.upperBound)))
        }
    }

    /// `clamp(Float(acc) · scale_j + bias_j, lower, upper)`, the product rounded to float32 first.
    static func scaled(_ acc: [Int32], scales: [Float], bias: [Float]?, lower: Float, upper: Float) -> [Float] {
        acc.indices.map { index in
            let j = index % scales.count
            var value = Float(acc[index]) * scales[j]
            if let bias { value = value + bias[j] }
            return min(max(value, lower), upper)
        }
    }
}
