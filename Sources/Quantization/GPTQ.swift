import GraphIR
import QuantCore
import Runtime
import Tensors

/// GPTQ (Frantar et al., 2022): quantizes a weight `W [K, N]` of `y = x·W` one input row `k` at a time,
/// and after each row spreads its rounding error over the rows not yet quantized, weighted by the inverse
/// Hessian of the layer's squared output error on calibration inputs, `H = E[x xᵀ]`:
///
/// `U = chol_upper((H + λ·mean(diag H)·I)⁻¹)`, `e = (w_k − ŵ_k) / U_kk`, `w_j ← w_j − U_kj · e` for `j > k`.
///
/// Group parameters are chosen when a group's first row is reached, from the rows as updated so far
/// (with the same clip search as round-to-nearest). The result minimises `‖x·W − x·Ŵ‖²` on the
/// calibration inputs far better than rounding each weight to its nearest code: on MiniLM with int4
/// groups of 32, the embedding cosine goes from 0.969 to 0.989 for the MatMuls alone.
enum GPTQ {
    /// Relative damping λ added to the Hessian's diagonal (as in the paper's reference code).
    static let damping = 0.01

    /// The factor `U` (upper triangular, row-major `n × n`) with `UᵀU = H⁻¹` for a symmetric positive
    /// definite `H` (row-major); nil when `H` is not positive definite.
    ///
    /// With `P` the index reversal and `P H P = L Lᵀ`, `U = P L⁻¹ P`: one Cholesky factorisation and one
    /// triangular inverse, no explicit inverse of `H`.
    static func inverseFactor(_ h: [Double], n: Int) -> [Double]? {
        let reversed = reversedIndices(h, n: n)
        guard let lower = choleskyLower(reversed, n: n) else { return nil }
        return reversedIndices(invertLowerTriangular(lower, n: n), n: n)
    }

    /// `P A P` for the index reversal `P`: element (i, j) taken from (n − 1 − i, n − 1 − j).
    static func reversedIndices(_ a: [Double], n: Int) -> [Double] {
        // Reversing both indices of a row-major matrix reverses its element order.
        Array(a.reversed())
    }

    /// `Σ_k a[k]·b[k]` with four independent partial sums (the additions of one chain would otherwise
    /// wait on each other).
    @inline(__always)
    static func dot(_ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>, _ count: Int) -> Double {
        var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
        var k = 0
        while k + 4 <= count {
            s0 += a[k] * b[k]
            s1 += a[k + 1] * b[k + 1]
            s2 += a[k + 2] * b[k + 2]
            s3 += a[k + 3] * b[k + 3]
            k += 4
        }
        while k < count {
            s0 += a[k] * b[k]
            k += 1
        }
        return (s0 + s1) + (s2 + s3)
    }

    /// `L` with `L Lᵀ = A` (row-major, lower triangular), or nil when a pivot is not positive.
    static func choleskyLower(_ a: [Double], n: Int) -> [Double]? {
        var l = [Double](repeating: 0, count: n * n)
        let positive = a.withUnsafeBufferPointer { a in
            l.withUnsafeMutableBufferPointer { l -> Bool in
                guard let lBase = l.baseAddress else { return true }
                for j in 0..<n {
                    let rowJ = lBase + j * n
                    let diagonal = a[j * n + j] - dot(rowJ, rowJ, j)
                    guard diagonal > 0, diagonal.isFinite else { return false }
                    let pivot = diagonal.squareRoot()
                    rowJ[j] = pivot
                    for i in (j + 1)..<max(j + 1, n) {
                        let rowI = lBase + i * n
                        rowI[j] = (a[i * n + j] - dot(rowI, rowJ, j)) / pivot
                    }
                }
                return true
            }
        }
        return positive ? l : nil
    }

    /// The inverse of a lower-triangular matrix with a positive diagonal (row-major), row by row:
    /// `X_ij = −(Σ_{j ≤ k < i} L_ik X_kj) / L_ii`, accumulated over k so every inner loop is contiguous.
    static func invertLowerTriangular(_ l: [Double], n: Int) -> [Double] {
        var inverse = [Double](repeating: 0, count: n * n)
        var row = [Double](repeating: 0, count: n)
        l.withUnsafeBufferPointer { l in
            inverse.withUnsafeMutableBufferPointer { x in
                row.withUnsafeMutableBufferPointer { row in
                    guard let xBase = x.baseAddress, let rowBase = row.baseAddress else { return }
                    for i in 0..<n {
                        rowBase.update(repeating: 0, count: i)
                        for k in 0..<i {
                            let coefficient = l[i * n + k]
                            if coefficient == 0 { continue }
                            let rowK = UnsafePointer(xBase + k * n)
                            for j in 0...k { rowBase[j] += coefficient * rowK[j] }
                        }
                        let pivot = l[i * n + i]
                        let rowI = xBase + i * n
                        for j in 0..<i { rowI[j] = -rowBase[j] / pivot }
                        rowI[i] = 1 / pivot
                    }
                }
            }
        }
        return inverse
    }

    /// The damped inverse factor of a Hessian: `λ·mean(diag H)` added to the diagonal, and a zero
    /// diagonal entry (an input never active on the calibration set) set to 1 so the factor exists.
    /// The damping grows tenfold (up to three times) if the matrix is still not positive definite.
    static func dampedInverseFactor(_ hessian: [Double], n: Int) -> [Double]? {
        var h = hessian
        var mean = 0.0
        for k in 0..<n {
            if h[k * n + k] <= 0 { h[k * n + k] = 1 }
            mean += h[k * n + k]
        }
        mean /= Double(max(n, 1))
        var lambda = damping * mean
        for _ in 0..<4 {
            var damped = h
            for k in 0..<n { damped[k * n + k] += lambda }
            if let factor = inverseFactor(damped, n: n) { return factor }
            lambda *= 10
        }
        return nil
    }

    /// Quantizes `weight [K, N]` (float32) in groups of `groupSize` rows along K with the error feedback
    /// of `factor` (from `dampedInverseFactor` of the K × K Hessian).
    ///
    /// - Returns: the codes with per-group parameters (blocked along axis 0), SQNR against `weight`.
    static func quantize(_ weight: Tensor, factor u: [Double], groupSize: Int, format: WeightFormat,
                         name: String, node: String) throws -> BlockQuantizedWeight {
        precondition(weight.rank == 2, "GPTQ takes a 2-D weight")
        let depth = weight.shape[0], columns = weight.shape[1]
        guard u.count == depth * depth else {
            throw QuantizationError.unsupportedNode(
                node: node, reason: "weight '\(name)' has \(depth) input rows, its calibration input \(Int(Double(u.count).squareRoot()))")
        }
        guard weight.withUnsafeBufferPointer(as: Float.self, { $0.allSatisfy(\.isFinite) }) else {
            throw QuantizationError.unsupportedNode(node: node, reason: "weight '\(name)' holds NaN or infinite values")
        }
        let scheme = format.scheme
        let groups = (depth + groupSize - 1) / groupSize
        var w = weight.scalars(as: Float.self)
        var dequantized = [Float](repeating: 0, count: depth * columns)
        var scales = [Float](repeating: 1, count: groups * columns)
        var zeros = [Int32](repeating: 0, count: groups * columns)
        var error = [Float](repeating: 0, count: columns)
        var slice = [Float](repeating: 0, count: groupSize)
        let qmin = Float(format.codes.lowerBound), qmax = Float(format.codes.upperBound)
        try w.withUnsafeMutableBufferPointer { w in
            try u.withUnsafeBufferPointer { u in
                for k in 0..<depth {
                    let group = k / groupSize
                    if k % groupSize == 0 {
                        let rows = min(groupSize, depth - k)
                        for n in 0..<columns {
                            for r in 0..<rows { slice[r] = w[(k + r) * columns + n] }
                            (scales[group * columns + n], zeros[group * columns + n]) = try slice.withUnsafeBufferPointer {
                                try WeightQuantization.blockParameters(
                                    UnsafeBufferPointer(rebasing: $0[0..<rows]), scheme: scheme, codes: format.codes,
                                    searches: format.searchesClip)
                            }
                        }
                    }
                    let pivot = Float(u[k * depth + k])
                    for n in 0..<columns {
                        let s = scales[group * columns + n], z = Float(zeros[group * columns + n])
                        let x = w[k * columns + n]
                        let q = min(max(WeightQuantization.roundedToEven(x / s) + z, qmin), qmax)
                        let value = (q - z) * s
                        dequantized[k * columns + n] = value
                        error[n] = (x - value) / pivot
                    }
                    error.withUnsafeBufferPointer { e in
                        for j in (k + 1)..<max(k + 1, depth) {
                            let coefficient = Float(u[k * depth + j])
                            if coefficient == 0 { continue }
                            let row = w.baseAddress! + j * columns
                            for n in 0..<columns { row[n] -= coefficient * e[n] }
                        }
                    }
                }
            }
        }
        let params = try QuantParams(type: format.storage, granularity: .perGroup(axis: 0, size: groupSize),
                                     parameterShape: [groups, columns], scales: scales, zeroPoints: zeros,
                                     codeRange: format.codes)
        // Each value is (q − z)·s exactly, so quantizing it with the same parameters gives back q.
        let values = try Tensor(shape: [depth, columns], scalars: dequantized)
        let quantized = try values.quantized(with: params)
        return BlockQuantizedWeight(quantized: quantized, sqnrDB: try WeightQuantization.sqnr(weight, values))
    }
}

/// Second moments `H = E[x xᵀ]` of the inputs of chosen MatMul/Gemm nodes over a calibration set, each
/// activation flattened to rows of its last axis.
struct HessianCollector {
    /// `H` (row-major K × K) and how many rows it averages.
    struct Moments {
        var sum: [Double]
        var width: Int
        var rows = 0
        var mean: [Double] { sum.map { $0 / Double(max(rows, 1)) } }
    }

    /// Runs `data` through `model` in batches and returns the moments of `activations`.
    static func collect(_ model: Model, activations: Set<String>, data: CalibrationData,
                        options: QuantizationOptions, progress: (Int, Int) -> Void) throws -> [String: Moments] {
        let session = try Session(model: model, options: SessionOptions(
            threadCount: options.threadCount ?? SessionOptions().threadCount))
        var total = try CalibrationDriver.validate(data.arrays, inputs: session.inputs, source: data.source)
        if let limit = options.calibrationLimit { total = min(total, max(limit, 1)) }
        for input in session.inputs {
            let array = data.arrays[input.name]!
            let finite: Bool
            switch array.dtype {
            case .float32: finite = array.withUnsafeBufferPointer(as: Float.self) { $0.allSatisfy(\.isFinite) }
            case .float64: finite = array.withUnsafeBufferPointer(as: Double.self) { $0.allSatisfy(\.isFinite) }
            default: finite = true
            }
            guard finite else {
                throw CalibrationError.inconsistentSamples(source: data.source, array: input.name,
                                                           reason: "holds NaN or infinite values")
            }
        }
        let opset = model.opsetVersion(domain: "") ?? PassContext.fallbackOpset
        let gram = Node(name: "gram", opType: "Gemm", inputs: ["x", "x"], outputs: ["g"], attributes: ["transA": .int(1)])
        var moments: [String: Moments] = [:]
        var start = 0
        while start < total {
            let end = min(start + options.calibrationBatchSize, total)
            var feeds: [String: Tensor] = [:]
            for input in session.inputs { feeds[input.name] = try data.arrays[input.name]!.rows(start..<end) }
            var failure: Error?
            let observer = ValueObserver(names: activations) { name, value in
                guard failure == nil, value.dtype == .float32, let width = value.shape.last, width > 0 else { return }
                do {
                    let rows = value.count / width
                    let flat = try value.reshaped([rows, width])
                    guard let product = try KernelEvaluator.evaluate(gram, inputs: [flat, flat], opset: max(opset, 13))?.first
                    else { return }
                    var entry = moments[name] ?? Moments(sum: [Double](repeating: 0, count: width * width), width: width)
                    guard entry.width == width else { return }
                    product.withUnsafeBufferPointer(as: Float.self) { g in
                        for i in 0..<g.count { entry.sum[i] += Double(g[i]) }
                    }
                    entry.rows += rows
                    moments[name] = entry
                } catch { failure = error }
            }
            _ = try session.run(feeds, observer: observer)
            if let failure { throw failure }
            start = end
            progress(start, total)
        }
        return moments
    }
}
