import Foundation
import QuantCore

/// Range searches over a histogram of `n` equal bins (a `StreamingHistogram.view`).
public enum HistogramSearch {
    // MARK: Entropy (KL divergence)

    /// Prefix sums over the bins, for O(levels) KL evaluations.
    struct Prefix {
        let mass: [Double]       // Σ h[0..<k]
        let nonZero: [Int]       // count of h ≠ 0 in [0, k)
        let massLogMass: [Double] // Σ h log h over [0, k)

        init(_ h: [Double]) {
            var mass = [0.0], nonZero = [0], mlm = [0.0]
            mass.reserveCapacity(h.count + 1); nonZero.reserveCapacity(h.count + 1); mlm.reserveCapacity(h.count + 1)
            for v in h {
                mass.append(mass.last! + v)
                nonZero.append(nonZero.last! + (v != 0 ? 1 : 0))
                mlm.append(mlm.last! + (v > 0 ? v * log(v) : 0))
            }
            self.mass = mass; self.nonZero = nonZero; self.massLogMass = mlm
        }
    }

    @inline(__always)
    static func xLogX(_ v: Double) -> Double { v > 0 ? v * log(v) : 0 }

    /// `KL(P ‖ Q)` for the window `[start, end)` of `h` (TensorRT's construction).
    ///
    /// `P` is `h[start..<end]` with the mass below the window added to its first bin and the mass above
    /// added to its last. `Q` merges the window's own bins (without that outer mass) into `levels` levels —
    /// level `j` covers bins `start + ⌊j·W/levels⌋ ..< start + ⌊(j+1)·W/levels⌋`, `W = end − start` — and
    /// spreads each level's mass evenly over that level's bins where `P` is non-zero. Each is normalised by
    /// its own total. Infinite when `Q` is 0 where `P` is not (outer mass landing on an empty level).
    ///
    /// Building `Q` from `P` itself (one reading of the wording) would give `KL = 0` for a window
    /// of exactly `levels` bins, so the search would always pick the smallest window.
    static func divergence(_ h: [Double], _ prefix: Prefix, start: Int, end: Int, levels: Int) -> Double {
        let total = prefix.mass[h.count]
        let inside = prefix.mass[end] - prefix.mass[start]
        guard total > 0, inside > 0 else { return .infinity }
        let width = end - start
        let leftOutliers = prefix.mass[start]
        let rightOutliers = total - prefix.mass[end]
        // The folded first and last bins of P (the same bin when the window is one bin wide).
        let firstP = h[start] + leftOutliers + (width == 1 ? rightOutliers : 0)
        let lastP = width == 1 ? firstP : h[end - 1] + rightOutliers
        var sum = 0.0  // Σ P log(P / Q) over P > 0, with Q unnormalised
        for j in 0..<levels {
            let u = start + j * width / levels, v = start + (j + 1) * width / levels
            guard v > u else { continue }
            let qMass = prefix.mass[v] - prefix.mass[u]
            var pMass = qMass
            var nonZero = prefix.nonZero[v] - prefix.nonZero[u]
            var pLogP = prefix.massLogMass[v] - prefix.massLogMass[u]
            if u == start {
                pMass += leftOutliers + (width == 1 ? rightOutliers : 0)
                nonZero += (h[start] == 0 && firstP != 0) ? 1 : 0
                pLogP += xLogX(firstP) - xLogX(h[start])
            }
            if v == end && width > 1 {
                pMass += rightOutliers
                nonZero += (h[end - 1] == 0 && lastP != 0) ? 1 : 0
                pLogP += xLogX(lastP) - xLogX(h[end - 1])
            }
            guard pMass > 0 else { continue }
            guard qMass > 0 else { return .infinity }
            sum += pLogP - pMass * log(qMass / Double(nonZero))
        }
        // With p = P / total and q = Q / inside: Σ p log(p / q) = Σ P log(P / Q) / total + log(inside / total).
        return sum / total + log(inside / total)
    }

    /// TensorRT's entropy search on a histogram of `|x|`: the number of bins `i` in `levels…h.count` whose
    /// window `[0, i)` minimises `KL(P ‖ Q)` (first minimum); the threshold is the upper edge of bin `i − 1`.
    public static func entropyBins(_ h: [Double], levels: Int) -> Int {
        let prefix = Prefix(h)
        guard levels <= h.count, prefix.mass[h.count] > 0 else { return h.count }
        var best = h.count, bestDivergence = Double.infinity
        for i in levels...h.count {
            let d = divergence(h, prefix, start: 0, end: i, levels: levels)
            if d < bestDivergence { bestDivergence = d; best = i }
        }
        return best
    }

    /// The asymmetric variant on a signed histogram: a window `[start, end)` of at least `levels` bins,
    /// found by coordinate descent from the full range — the best `end` for the current `start`, then the
    /// best `start` for that `end`, until neither moves (at most 32 rounds; first minimum on ties).
    public static func entropyWindow(_ h: [Double], levels: Int) -> (start: Int, end: Int) {
        let prefix = Prefix(h)
        guard levels <= h.count, prefix.mass[h.count] > 0 else { return (0, h.count) }
        var start = 0, end = h.count
        for _ in 0..<32 {
            var bestEnd = end, best = Double.infinity
            for e in (start + levels)...h.count {
                let d = divergence(h, prefix, start: start, end: e, levels: levels)
                if d < best { best = d; bestEnd = e }
            }
            var bestStart = start
            best = .infinity
            for s in 0...(bestEnd - levels) {
                let d = divergence(h, prefix, start: s, end: bestEnd, levels: levels)
                if d < best { best = d; bestStart = s }
            }
            if bestStart == start && bestEnd == end { break }
            start = bestStart
            end = bestEnd
        }
        return (start, end)
    }

    // MARK: MSE

    /// Moments of a histogram with mass uniform inside each bin.
    struct Moments {
        let lower: Double, width: Double, h: [Double]
        let c0: [Double], c1: [Double], c2: [Double]

        init(_ h: [Double], lower: Double, upper: Double) {
            self.h = h
            self.lower = lower
            self.width = (upper - lower) / Double(h.count)
            var c0 = [0.0], c1 = [0.0], c2 = [0.0]
            for (k, m) in h.enumerated() {
                let l = lower + Double(k) * width, r = l + width
                c0.append(c0.last! + m)
                c1.append(c1.last! + m * (l + r) / 2)
                c2.append(c2.last! + m * (l * l + l * r + r * r) / 3)
            }
            self.c0 = c0; self.c1 = c1; self.c2 = c2
        }

        /// Mass, first and second moment of the values below `t`.
        @inline(__always)
        func below(_ t: Double) -> (Double, Double, Double) {
            let n = h.count
            guard width > 0 else { return t > lower ? (c0[n], c1[n], c2[n]) : (0, 0, 0) }
            let position = (t - lower) / width
            if position <= 0 { return (0, 0, 0) }
            if position >= Double(n) { return (c0[n], c1[n], c2[n]) }
            let k = Int(position)
            let l = lower + Double(k) * width
            let fraction = (t - l) / width
            let m = h[k] * fraction
            return (c0[k] + m, c1[k] + m * (l + t) / 2, c2[k] + m * (l * l + l * t + t * t) / 3)
        }

        /// Expected squared error with clipping at `[a, c]` and a rounding step `s`, modelling rounding error
        /// inside the range as `s² / 12`.
        func modelError(a: Double, c: Double, step s: Double) -> Double {
            let n = h.count
            let (b0, b1, b2) = below(a)
            let (u0, u1, u2) = below(c)
            let t0 = c0[n] - u0, t1 = c1[n] - u1, t2 = c2[n] - u2
            let clipBelow = b2 - 2 * a * b1 + a * a * b0
            let clipAbove = t2 - 2 * c * t1 + c * c * t0
            return Swift.max(clipBelow, 0) + Swift.max(clipAbove, 0) + (u0 - b0) * s * s / 12
        }

        /// Expected squared error of fake-quantization with scale `s`, zero point `z`, codes `[qmin, qmax]`,
        /// integrating `(x − fq(x))²` exactly over each bin's uniform mass.
        func exactError(scale s: Double, zeroPoint z: Double, qmin: Double, qmax: Double) -> Double {
            var error = 0.0
            for (k, m) in h.enumerated() where m > 0 {
                let l = lower + Double(k) * width, r = l + width
                guard r > l else { continue }
                let codeL = Swift.min(Swift.max((l / s).rounded() + z, qmin), qmax)
                let codeR = Swift.min(Swift.max((r / s).rounded() + z, qmin), qmax)
                var integral = 0.0
                var code = codeL
                while code <= codeR {
                    let value = (code - z) * s
                    let from = code == qmin ? l : Swift.max(l, (code - z - 0.5) * s)
                    let to = code == qmax ? r : Swift.min(r, (code - z + 0.5) * s)
                    if to > from {
                        let a = from - value, b = to - value
                        integral += (b * b * b - a * a * a) / 3
                    }
                    code += 1
                }
                error += m * integral / (r - l)
            }
            return error
        }
    }

    /// The range minimising the expected squared error (clipping plus rounding) of quantizing with
    /// `scheme`, over a signed histogram `h` of `[lower, upper]` (mass uniform inside each bin).
    ///
    /// Candidates are bin edges: for asymmetric schemes every pair `(a ≤ 0 ≤ b)`, for symmetric ones every
    /// threshold `T = k · max(|lower|, |upper|) / n`. Each candidate's scale and zero point come from the
    /// scheme's own math, so the clip bounds are the real `(qmin − z)·s`, `(qmax − z)·s`, and its error is
    /// the exact integral of `(x − fakeQuant(x))²` over the histogram. When there are more than 4096
    /// candidates (two-sided asymmetric data), all are ranked by a closed-form model (rounding error
    /// `s²/12`), the best 128 are evaluated exactly, and the best of those is refined by moving each end
    /// edge by 16, 8, 4, 2 and 1 bins while the exact error falls.
    public static func minimumSquaredErrorRange(_ h: [Double], lower: Double, upper: Double,
                                                scheme: QuantScheme) throws -> (Float, Float) {
        guard let codes = try scheme.codeRange(), scheme.type.isInteger else {
            throw CalibrationError.unsupportedScheme("the MSE search needs an int<N>/uint<N> type, got \(scheme.type)")
        }
        let total = h.reduce(0, +)
        guard total > 0, upper > lower else { return (Float(lower), Float(upper)) }
        let moments = Moments(h, lower: lower, upper: upper)
        let n = h.count
        let qmin = Double(codes.lowerBound), qmax = Double(codes.upperBound)

        func parameters(_ lo: Float, _ hi: Float) throws -> (Double, Double) {
            let (s, z) = try QuantParams.scaleAndZeroPoint(lo: lo, hi: hi, scheme: scheme, codes: codes)
            return (Double(s), Double(z))
        }
        func exact(_ lo: Float, _ hi: Float) throws -> Double {
            guard hi > lo else { return .infinity }
            let (s, z) = try parameters(lo, hi)
            return moments.exactError(scale: s, zeroPoint: z, qmin: qmin, qmax: qmax)
        }
        func model(_ lo: Float, _ hi: Float) throws -> Double {
            guard hi > lo else { return .infinity }
            let (s, z) = try parameters(lo, hi)
            return moments.modelError(a: (qmin - z) * s, c: (qmax - z) * s, step: s)
        }

        let width = (upper - lower) / Double(n)
        var lows: [Float], highs: [Float]
        if scheme.mapping == .symmetric {
            let absMax = Swift.max(abs(lower), abs(upper))
            highs = (1...n).map { Float(absMax * Double($0) / Double(n)) }
            lows = [0]  // unused: the candidate is [−T, T]
        } else {
            let edges = (0...n).map { Float(lower + Double($0) * width) }
            lows = edges.filter { $0 <= 0 }
            highs = edges.filter { $0 >= 0 }
            if lows.isEmpty { lows = [0] }
            if highs.isEmpty { highs = [0] }
        }
        func candidate(_ i: Int, _ j: Int) -> (Float, Float) {
            scheme.mapping == .symmetric ? (-highs[j], highs[j]) : (lows[i], highs[j])
        }

        var best = (i: 0, j: highs.count - 1)
        var bestError = Double.infinity
        if lows.count * highs.count <= 4096 {
            for i in lows.indices {
                for j in highs.indices {
                    let (lo, hi) = candidate(i, j)
                    let error = try exact(lo, hi)
                    if error < bestError { bestError = error; best = (i, j) }
                }
            }
        } else {
            // Rank every pair by the model, keeping the best `keep` (a bounded, unsorted pool).
            let keep = 128
            var pool: [(error: Double, i: Int, j: Int)] = []
            pool.reserveCapacity(keep + 1)
            var worst = Double.infinity
            for i in lows.indices {
                for j in highs.indices {
                    let (lo, hi) = candidate(i, j)
                    let error = try model(lo, hi)
                    guard pool.count < keep || error < worst else { continue }
                    pool.append((error, i, j))
                    if pool.count > keep {
                        let index = pool.indices.max { pool[$0].error < pool[$1].error }!
                        pool.remove(at: index)
                    }
                    worst = pool.count < keep ? .infinity : pool.map(\.error).max()!
                }
            }
            for entry in pool {
                let (lo, hi) = candidate(entry.i, entry.j)
                let error = try exact(lo, hi)
                if error < bestError { bestError = error; best = (entry.i, entry.j) }
            }
            // Local refinement of both ends with the exact error.
            for step in [16, 8, 4, 2, 1] {
                var improved = true
                while improved {
                    improved = false
                    for (di, dj) in [(-step, 0), (step, 0), (0, -step), (0, step)] {
                        let i = best.i + di, j = best.j + dj
                        guard lows.indices.contains(i), highs.indices.contains(j) else { continue }
                        let (lo, hi) = candidate(i, j)
                        let error = try exact(lo, hi)
                        if error < bestError {
                            bestError = error
                            best = (i, j)
                            improved = true
                        }
                    }
                }
            }
        }
        let (lo, hi) = candidate(best.i, best.j)
        if scheme.mapping == .symmetric {
            // Report the data range clipped at T, so QuantParams recomputes the same scale.
            return (Swift.max(Float(lower), lo), Swift.min(Float(upper), hi))
        }
        return (lo, hi)
    }
}
