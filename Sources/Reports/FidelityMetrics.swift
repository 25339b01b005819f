import Foundation
import Tensors

/// How closely one output of a candidate model follows the reference model's, over an evaluation set.
///
/// Samples run along the first axis; everything after it is one sample, flattened.
/// - cosine similarity of sample i: `cos_i = a·b / (|a| |b|)` with `a`, `b` the flattened reference and
///   candidate sample (1 when both are all zeros, 0 when only one is);
/// - `sqnrDB = 10 · log10(Σ ref² / Σ (ref − cand)²)` over every element of every sample (+∞ when the
///   outputs are identical, −∞ when the reference is all zeros and the candidate is not);
/// - argmax agreement: the share of positions where the index of the largest value along the last axis is
///   the same in both (first index on ties, as numpy); every axis but the last is a position.
///
/// A sample holding NaN or ±Inf in either model counts as cosine 0, is left out of the SQNR sums and of
/// the largest error, and is counted in `nonFiniteSamples`.
public struct OutputFidelity: Sendable, Codable, Equatable {
    public var name: String
    public var samples: Int
    public var meanCosine: Double
    public var worstCosine: Double
    /// Index (in the evaluation set) of the sample with the worst cosine.
    public var worstSample: Int
    public var sqnrDB: Double
    /// Largest |ref − cand| over all finite elements.
    public var maxAbsError: Double
    /// nil for outputs of rank below 2 (one value per sample has no argmax).
    public var argmaxAgreement: Double?
    public var nonFiniteSamples: Int

    public init(name: String, samples: Int, meanCosine: Double, worstCosine: Double, worstSample: Int,
                sqnrDB: Double, maxAbsError: Double, argmaxAgreement: Double?, nonFiniteSamples: Int) {
        self.name = name
        self.samples = samples
        self.meanCosine = meanCosine
        self.worstCosine = worstCosine
        self.worstSample = worstSample
        self.sqnrDB = sqnrDB
        self.maxAbsError = maxAbsError
        self.argmaxAgreement = argmaxAgreement
        self.nonFiniteSamples = nonFiniteSamples
    }

    enum CodingKeys: String, CodingKey {
        case name, samples
        case meanCosine = "mean_cosine"
        case worstCosine = "worst_cosine"
        case worstSample = "worst_sample"
        case sqnrDB = "sqnr_db"
        case maxAbsError = "max_abs_error"
        case argmaxAgreement = "argmax_agreement"
        case nonFiniteSamples = "non_finite_samples"
    }
}

/// The formulas of `OutputFidelity`, on plain buffers.
public enum FidelityMetrics {
    /// `a·b / (|a| |b|)`, accumulated in Double; 1 when both vectors are zero, 0 when exactly one is.
    /// The caller makes sure both hold only finite values.
    public static func cosineSimilarity(_ a: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>) -> Double {
        precondition(a.count == b.count, "cosineSimilarity of vectors of different lengths")
        var dot = 0.0, normA = 0.0, normB = 0.0
        for index in 0..<a.count {
            let x = Double(a[index]), y = Double(b[index])
            dot += x * y
            normA += x * x
            normB += y * y
        }
        if normA == 0 && normB == 0 { return 1 }
        if normA == 0 || normB == 0 { return 0 }
        // One square root of the product: exact for identical or opposite vectors (sqrt(x·x) == |x|).
        // Rounding can still push |cos| a hair past 1 elsewhere. Float inputs cannot overflow the Double product.
        return min(1, max(-1, dot / (normA * normB).squareRoot()))
    }

    /// `10 · log10(signalPower / noisePower)`: +∞ without noise, −∞ with noise but no signal.
    public static func sqnrDB(signalPower: Double, noisePower: Double) -> Double {
        if noisePower == 0 { return .infinity }
        if signalPower == 0 { return -.infinity }
        return 10 * log10(signalPower / noisePower)
    }

    /// Index of the largest value (the first one on ties; a NaN wins, as in numpy).
    public static func argmax(_ values: UnsafeBufferPointer<Float>) -> Int {
        var best = 0
        guard var bestValue = values.first else { return 0 }
        if bestValue.isNaN { return 0 }
        for index in 1..<values.count {
            let value = values[index]
            if value.isNaN { return index }
            if value > bestValue {
                best = index
                bestValue = value
            }
        }
        return best
    }

    /// True when every element is finite.
    static func allFinite(_ values: UnsafeBufferPointer<Float>) -> Bool {
        for value in values where !value.isFinite { return false }
        return true
    }
}

/// Collects `OutputFidelity` for one output batch by batch.
public struct OutputFidelityAccumulator: Sendable {
    public let name: String
    private var samples = 0
    private var cosineSum = 0.0
    private var worstCosine = Double.infinity
    private var worstSample = 0
    private var signalPower = 0.0
    private var noisePower = 0.0
    private var maxAbsError = 0.0
    private var argmaxMatches = 0
    private var argmaxPositions = 0
    private var hasArgmax = false
    private var nonFiniteSamples = 0

    public init(name: String) { self.name = name }

    /// Adds one batch: equally shaped reference and candidate values, samples along the first axis.
    ///
    /// - Throws: `EvaluationError.outputShapeMismatch` when the shapes differ or the value is a scalar;
    ///   a conversion error for types that cannot become float32.
    public mutating func add(reference: Tensor, candidate: Tensor) throws {
        guard reference.shape == candidate.shape, let batch = reference.shape.first else {
            throw EvaluationError.outputShapeMismatch(output: name, reference: reference.shape,
                                                      candidate: candidate.shape)
        }
        guard batch > 0 else { return }
        let ref = try reference.converted(to: .float32)
        let cand = try candidate.converted(to: .float32)
        let sampleLength = ref.count / batch
        let lastAxis = reference.rank >= 2 ? reference.shape[reference.rank - 1] : 0
        hasArgmax = reference.rank >= 2
        ref.withUnsafeBufferPointer(as: Float.self) { refAll in
            cand.withUnsafeBufferPointer(as: Float.self) { candAll in
                for sample in 0..<batch {
                    let start = sample * sampleLength
                    let a = UnsafeBufferPointer(rebasing: refAll[start..<start + sampleLength])
                    let b = UnsafeBufferPointer(rebasing: candAll[start..<start + sampleLength])
                    addSample(a, b, index: samples + sample)
                    if lastAxis > 0 { compareArgmax(a, b, rowLength: lastAxis) }
                }
            }
        }
        samples += batch
    }

    private mutating func addSample(_ a: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>, index: Int) {
        let cosine: Double
        if FidelityMetrics.allFinite(a) && FidelityMetrics.allFinite(b) {
            cosine = FidelityMetrics.cosineSimilarity(a, b)
            var signal = 0.0, noise = 0.0, largest = 0.0
            for position in 0..<a.count {
                let x = Double(a[position]), error = Double(a[position]) - Double(b[position])
                signal += x * x
                noise += error * error
                largest = max(largest, abs(error))
            }
            signalPower += signal
            noisePower += noise
            maxAbsError = max(maxAbsError, largest)
        } else {
            cosine = 0
            nonFiniteSamples += 1
        }
        cosineSum += cosine
        if cosine < worstCosine {
            worstCosine = cosine
            worstSample = index
        }
    }

    private mutating func compareArgmax(_ a: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>,
                                        rowLength: Int) {
        var start = 0
        while start < a.count {
            let rowA = UnsafeBufferPointer(rebasing: a[start..<start + rowLength])
            let rowB = UnsafeBufferPointer(rebasing: b[start..<start + rowLength])
            if FidelityMetrics.argmax(rowA) == FidelityMetrics.argmax(rowB) { argmaxMatches += 1 }
            argmaxPositions += 1
            start += rowLength
        }
    }

    /// The metrics so far (all zero before the first sample).
    public var result: OutputFidelity {
        OutputFidelity(
            name: name, samples: samples, meanCosine: samples > 0 ? cosineSum / Double(samples) : 0,
            worstCosine: samples > 0 ? worstCosine : 0, worstSample: worstSample,
            sqnrDB: FidelityMetrics.sqnrDB(signalPower: signalPower, noisePower: noisePower),
            maxAbsError: maxAbsError,
            argmaxAgreement: hasArgmax ? (argmaxPositions > 0 ? Double(argmaxMatches) / Double(argmaxPositions) : 1) : nil,
            nonFiniteSamples: nonFiniteSamples)
    }
}
