import Calibration
import Foundation
import QuantCore
import Tensors

/// A streaming histogram of one activation tensor, kept beside the calibration method's own observer:
/// static quantization reads it to estimate each tensor's quantization error, to search a better clip
/// for tensors whose error is out of line, and to recognise masking constants.
struct TensorHistogram: Sendable {
    /// Internal bins; over `[min, max]` each is at most `(max − min) / 4096` wide.
    static let capacity = 8192

    private(set) var histogram = StreamingHistogram(capacity: TensorHistogram.capacity)

    /// Folds in the finite values of one batch (NaN and ±Inf are counted by the calibrator, not here).
    mutating func observe(_ values: UnsafeBufferPointer<Float>) {
        var lo = Float.infinity, hi = -Float.infinity
        for v in values where v.isFinite {
            lo = Swift.min(lo, v)
            hi = Swift.max(hi, v)
        }
        guard lo <= hi else { return }
        histogram.prepare(minimum: lo, maximum: hi)
        histogram.add(values, 0..<values.count)
    }
}

/// Readings of a `StreamingHistogram` for static quantization: masking constants, estimated SQNR, and the
/// minimum-squared-error clip.
enum HistogramAnalysis {
    /// Masking constants are at least this large (BERT-style masks use −1e4, −1e9 or the float32 minimum).
    static let maskingMagnitude: Float = 1e3
    /// The values other than the masking constant stay within this fraction of its magnitude.
    static let maskingGap: Float = 1e-2
    /// The masking constant and the other values each hold at least this fraction of the elements.
    static let maskingMass = 1e-3

    /// The masking constant that dominates the tensor's range, or nil.
    ///
    /// A tensor is dominated by a masking constant when a point mass of at least 0.1% of its values sits at
    /// `±M` with `M ≥ 1e3` (within 1% of it), at least 0.1% of the values lie elsewhere, and all of those lie
    /// within `0.01 · M` of zero: quantizing such a range would spend every code on the empty gap between
    /// the data and the constant (the attention mask term `−3.4e38 · (1 − mask)` of MiniLM).
    static func maskingConstant(_ h: StreamingHistogram) -> Float? {
        guard h.total > 0 else { return nil }
        let extreme = abs(h.minimum) >= abs(h.maximum) ? h.minimum : h.maximum
        let magnitude = abs(extreme)
        guard magnitude >= maskingMagnitude, magnitude.isFinite else { return nil }
        var atExtreme = 0.0, elsewhere = 0.0, bulkMaximum = 0.0
        for segment in h.segments(folded: true) {
            if segment.upper >= 0.5 * Double(magnitude) {
                guard segment.lower >= 0.99 * Double(magnitude) || segment.count == 0 else { return nil }
                atExtreme += segment.count
            } else {
                elsewhere += segment.count
                bulkMaximum = Swift.max(bulkMaximum, segment.upper)
            }
        }
        let total = Double(h.total)
        guard atExtreme >= maskingMass * total, elsewhere >= maskingMass * total,
              bulkMaximum <= Double(maskingGap * magnitude) else { return nil }
        return extreme
    }

    /// The signal-to-quantization-noise ratio `10 · log10(E[x²] / E[(x − q(x))²])` in dB of fake-quantizing
    /// the histogram's values with per-tensor `params`, where the values of each bin are spread uniformly
    /// over it and the error is integrated exactly over the quantization grid (rounding and clipping).
    /// Capped at 200 dB (no error).
    static func sqnr(_ h: StreamingHistogram, params: QuantParams) -> Double {
        guard let codes = params.codeRange, h.total > 0 else { return 200 }
        let s = Double(params.scales[0]), z = Double(params.zeroPoints[0])
        let qmin = Double(codes.lowerBound), qmax = Double(codes.upperBound)
        func code(_ x: Double) -> Double {
            Swift.min(Swift.max((x / s).rounded(.toNearestOrEven) + z, qmin), qmax)
        }
        var signal = 0.0, noise = 0.0
        for segment in h.segments(folded: false) {
            let a = segment.lower, b = segment.upper, c = segment.count
            if b <= a {
                signal += c * a * a
                let e = a - (code(a) - z) * s
                noise += c * e * e
                continue
            }
            signal += c * (a * a + a * b + b * b) / 3
            var integral = 0.0
            var k = code(a)
            let last = code(b)
            while k <= last {
                let cellLow = k == qmin ? -Double.infinity : (k - z - 0.5) * s
                let cellHigh = k == qmax ? Double.infinity : (k - z + 0.5) * s
                let l = Swift.max(a, cellLow), u = Swift.min(b, cellHigh)
                if u > l {
                    let v = (k - z) * s
                    integral += ((u - v) * (u - v) * (u - v) - (l - v) * (l - v) * (l - v)) / 3
                }
                k += 1
            }
            noise += c * integral / (b - a)
        }
        return decibels(signal: signal, noise: noise)
    }

    /// `10 · log10(signal / noise)`, capped at 200 dB when there is no noise.
    static func decibels(signal: Double, noise: Double) -> Double {
        guard noise > 0, signal > 0 else { return noise > 0 ? 0 : 200 }
        return Swift.min(10 * log10(signal / noise), 200)
    }

    /// The range minimising the expected squared error of `scheme` under the histogram (a 2048-bin view).
    static func minimumSquaredErrorRange(_ h: StreamingHistogram, scheme: QuantScheme) throws -> (Float, Float) {
        guard h.total > 0, h.maximum > h.minimum else { return (Swift.min(h.minimum, 0), Swift.max(h.maximum, 0)) }
        let view = h.view(bins: 2048, lower: Double(h.minimum), upper: Double(h.maximum), folded: false)
        var perTensor = scheme
        perTensor.granularity = .perTensor
        return try HistogramSearch.minimumSquaredErrorRange(view, lower: Double(h.minimum), upper: Double(h.maximum),
                                                            scheme: perTensor)
    }
}

/// Per-channel statistics along the last axis of an activation: minimum, maximum and mean square, for
/// choosing smoothing factors.
struct ChannelStatistics: Sendable {
    private(set) var minimum: [Float] = []
    private(set) var maximum: [Float] = []
    private(set) var sumSquares: [Double] = []
    private(set) var rows = 0
    /// Set when batches disagree on the channel count; the tensor is then not smoothed.
    private(set) var inconsistent = false

    var channels: Int { minimum.count }

    mutating func observe(_ values: UnsafeBufferPointer<Float>, shape: [Int]) {
        guard let channels = shape.last, channels > 0, !inconsistent else { return }
        if minimum.isEmpty {
            minimum = [Float](repeating: .infinity, count: channels)
            maximum = [Float](repeating: -.infinity, count: channels)
            sumSquares = [Double](repeating: 0, count: channels)
        } else if minimum.count != channels {
            inconsistent = true
            return
        }
        let count = values.count / channels
        minimum.withUnsafeMutableBufferPointer { lo in
            maximum.withUnsafeMutableBufferPointer { hi in
                sumSquares.withUnsafeMutableBufferPointer { squares in
                    for row in 0..<count {
                        let base = row * channels
                        for j in 0..<channels {
                            let v = values[base + j]
                            guard v.isFinite else { continue }
                            lo[j] = Swift.min(lo[j], v)
                            hi[j] = Swift.max(hi[j], v)
                            squares[j] += Double(v) * Double(v)
                        }
                    }
                }
            }
        }
        rows += count
    }

    /// `max |x_j|` per channel (0 for channels that saw no finite value).
    var absoluteMaximum: [Float] {
        zip(minimum, maximum).map { lo, hi in lo <= hi ? Swift.max(abs(lo), abs(hi)) : 0 }
    }

    /// `E[x_j²]` per channel.
    var meanSquares: [Double] { sumSquares.map { rows > 0 ? $0 / Double(rows) : 0 } }
}
