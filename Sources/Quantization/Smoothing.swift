import Foundation
import QuantCore
import Tensors

/// SmoothQuant-style migration of per-channel activation ranges into the weights.
///
/// An activation `X` (channels `j` along its last axis) read by matrix products `X · W` is quantized as
/// `X / s` (per tensor) while each weight becomes `diag(s) · W`, which leaves the product unchanged in
/// exact arithmetic: `X · W = (X / s) · (diag(s) · W)`. With `s_j = max|X_j|^α / max|W_j|^(1−α)` a few
/// outlier channels (LayerNorm outputs, the GELU output of a Transformer's FFN) no longer stretch the
/// activation's per-tensor range, at the price of wider weight rows.
///
/// `α` is chosen per tensor by the expected squared error of the products under a uniform rounding-noise
/// model, using per-channel statistics from calibration:
/// `E‖ΔY‖² ≈ Δ_x²/12 · Σ_j s_j² ‖W_j‖² + Σ_j E[X_j²]/s_j² · Σ_n (W'_jn − q(W'_jn))²`,
/// where `Δ_x` is the activation step for the range of `X / s` and the second term is the exact weight
/// rounding error of `W' = diag(s) · W` weighted by the channel's energy. No smoothing (`s = 1`) is a
/// candidate too; smoothing is kept only when it lowers the estimate by at least 20%.
enum Smoothing {
    /// The α values tried.
    static let alphas: [Double] = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    /// Smoothing must cut the estimated error to this fraction of the unsmoothed one to be used.
    static let requiredGain = 0.8
    /// Factors are kept within `[1/limit, limit]`.
    static let factorLimit: Float = 1e4

    /// One weight read through the smoothed activation, viewed as `K × N` (K indexed by the activation's channels).
    struct Weight {
        var values: [Float]
        var k: Int
        var n: Int
        /// Element `(j, c)` is at `j · kStride + c · nStride`.
        var kStride: Int
        var nStride: Int
        var scheme: QuantScheme

        /// Views `tensor` with `reductionAxis` (K) and the other axis (N) of a 2-D weight.
        init(_ tensor: Tensor, reductionAxis: Int, scheme: QuantScheme) throws {
            values = try tensor.floatArray()
            let rows = tensor.shape[0], columns = tensor.shape[1]
            if reductionAxis == 0 {
                (k, n, kStride, nStride) = (rows, columns, columns, 1)
            } else {
                (k, n, kStride, nStride) = (columns, rows, 1, columns)
            }
            self.scheme = scheme
        }
    }

    /// The outcome for one activation.
    struct Choice: Sendable, Equatable {
        var alpha: Double
        /// `s_j`, one per channel of the activation's last axis.
        var factors: [Float]
        /// Estimated SQNR of the products without and with smoothing, in dB.
        var sqnrBefore: Double
        var sqnrAfter: Double
    }

    /// The best smoothing for an activation with `statistics` read by `weights`, or nil when none helps.
    static func choose(_ statistics: ChannelStatistics, weights: [Weight], activationScheme: QuantScheme) throws -> Choice? {
        let channels = statistics.channels
        guard channels > 0, !statistics.inconsistent, !weights.isEmpty,
              weights.allSatisfy({ $0.k == channels }) else { return nil }
        let absMax = statistics.absoluteMaximum
        let meanSquares = statistics.meanSquares
        var weightMax = [Float](repeating: 0, count: channels)
        var rowEnergy = [Double](repeating: 0, count: channels)
        for weight in weights {
            for j in 0..<channels {
                for c in 0..<weight.n {
                    let w = weight.values[j * weight.kStride + c * weight.nStride]
                    weightMax[j] = Swift.max(weightMax[j], abs(w))
                    rowEnergy[j] += Double(w) * Double(w)
                }
            }
        }
        let signal = zip(meanSquares, rowEnergy).reduce(0) { $0 + $1.0 * $1.1 }
        guard signal > 0 else { return nil }

        let unsmoothed = [Float](repeating: 1, count: channels)
        let baseline = try expectedError(unsmoothed, statistics, weights, rowEnergy, meanSquares, activationScheme)
        var best: (alpha: Double, factors: [Float], error: Double)?
        for alpha in alphas {
            let factors = (0..<channels).map { j -> Float in
                guard absMax[j] > 0, weightMax[j] > 0 else { return 1 }
                let s = Float(pow(Double(absMax[j]), alpha) / pow(Double(weightMax[j]), 1 - alpha))
                return s.isFinite ? Swift.min(Swift.max(s, 1 / factorLimit), factorLimit) : 1
            }
            let error = try expectedError(factors, statistics, weights, rowEnergy, meanSquares, activationScheme)
            if error < (best?.error ?? .infinity) { best = (alpha, factors, error) }
        }
        guard let best, best.error < requiredGain * baseline else { return nil }
        return Choice(alpha: best.alpha, factors: best.factors,
                      sqnrBefore: HistogramAnalysis.decibels(signal: signal, noise: baseline),
                      sqnrAfter: HistogramAnalysis.decibels(signal: signal, noise: best.error))
    }

    /// The error model of the type's doc comment for factors `s`.
    private static func expectedError(
        _ s: [Float], _ statistics: ChannelStatistics, _ weights: [Weight], _ rowEnergy: [Double],
        _ meanSquares: [Double], _ activationScheme: QuantScheme
    ) throws -> Double {
        var lo = Float.infinity, hi = -Float.infinity
        for j in s.indices where statistics.minimum[j] <= statistics.maximum[j] {
            lo = Swift.min(lo, statistics.minimum[j] / s[j])
            hi = Swift.max(hi, statistics.maximum[j] / s[j])
        }
        guard lo <= hi else { return 0 }
        let step = Double(try QuantParams(scheme: activationScheme, minimum: lo, maximum: hi).scales[0])
        var activationTerm = 0.0
        for j in s.indices { activationTerm += Double(s[j]) * Double(s[j]) * rowEnergy[j] }
        activationTerm *= step * step / 12

        var weightTerm = 0.0
        for weight in weights {
            let codes = try weight.scheme.codeRange()
            let perColumn = weight.scheme.granularity != .perTensor
            var scales = [Float](repeating: 0, count: perColumn ? weight.n : 1)
            var zeros = [Float](repeating: 0, count: scales.count)
            var columnLow = [Float](repeating: 0, count: scales.count), columnHigh = columnLow
            for j in 0..<weight.k {
                for c in 0..<weight.n {
                    let v = weight.values[j * weight.kStride + c * weight.nStride] * s[j]
                    let p = perColumn ? c : 0
                    columnLow[p] = Swift.min(columnLow[p], v)
                    columnHigh[p] = Swift.max(columnHigh[p], v)
                }
            }
            for p in scales.indices {
                let (scale, zero) = try QuantParams.scaleAndZeroPoint(lo: columnLow[p], hi: columnHigh[p],
                                                                      scheme: weight.scheme, codes: codes)
                scales[p] = scale
                zeros[p] = Float(zero)
            }
            let qmin = Float(codes?.lowerBound ?? -127), qmax = Float(codes?.upperBound ?? 127)
            for j in 0..<weight.k {
                let energy = meanSquares[j] / (Double(s[j]) * Double(s[j]))
                var rowError = 0.0
                for c in 0..<weight.n {
                    let v = weight.values[j * weight.kStride + c * weight.nStride] * s[j]
                    let p = perColumn ? c : 0
                    let code = Swift.min(Swift.max((v / scales[p]).rounded(.toNearestOrEven) + zeros[p], qmin), qmax)
                    let e = Double(v - (code - zeros[p]) * scales[p])
                    rowError += e * e
                }
                weightTerm += energy * rowError
            }
        }
        return activationTerm + weightTerm
    }
}

extension Tensor {
    /// A float32 copy of this 2-D tensor with every index `j` along `axis` multiplied by `factors[j]`.
    func scaled(along axis: Int, by factors: [Float]) throws -> Tensor {
        var values = try floatArray()
        let rows = shape[0], columns = shape[1]
        for r in 0..<rows {
            for c in 0..<columns {
                values[r * columns + c] *= factors[axis == 0 ? r : c]
            }
        }
        return try Tensor(shape: shape, scalars: values)
    }
}
