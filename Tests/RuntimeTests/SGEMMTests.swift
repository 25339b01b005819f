import Foundation
import Runtime
import Testing

/// SGEMM against its reference twin at awkward shapes, at every micro-kernel level this CPU has.
@Suite struct SGEMMTests {
    /// Dimensions around the kernels' tile edges (6/12 rows, 16/32 columns) and the 256-deep K blocks.
    static let awkward = Array(1...17) + [63, 64, 65, 127, 385]

    /// A deterministic sample of (m, n, k): every awkward value appears in each position, paired with
    /// varied partners, while keeping the debug-build reference loop affordable.
    static let shapes: [(m: Int, n: Int, k: Int)] = {
        var generator = SplitMix(seed: 7)
        var result: [(Int, Int, Int)] = []
        let small = awkward.filter { $0 <= 65 }
        for value in awkward {
            result.append((value, small.randomElement(using: &generator)!, small.randomElement(using: &generator)!))
            result.append((small.randomElement(using: &generator)!, value, small.randomElement(using: &generator)!))
            result.append((small.randomElement(using: &generator)!, small.randomElement(using: &generator)!, value))
        }
        result += [(1, 1, 1), (17, 17, 17), (64, 64, 64), (65, 63, 127), (13, 33, 385), (12, 32, 256), (12, 32, 257)]
        return result
    }()

    /// |C − C_ref| ≤ (k + 2) · 4ε · (|alpha|·|A|·|B| + |beta|·|C|): the rounding-error bound of a length-k
    /// dot product (blocked sums reorder additions, FMA rounds once), with a safety factor.
    static func tolerance(k: Int, magnitude: Float) -> Float {
        Float(k + 2) * 4 * Float.ulpOfOne * magnitude + Float.leastNormalMagnitude
    }

    struct Case {
        var m, n, k: Int
        var transposeA, transposeB: Bool
        var alpha, beta: Float
        /// Extra columns in each leading dimension beyond the matrix width.
        var padding: Int
    }

    static func check(_ spec: Case, level: SGEMM.Level, prepacked: Bool, threads: Int, seed: UInt64) -> Float {
        var generator = SplitMix(seed: seed)
        let (m, n, k) = (spec.m, spec.n, spec.k)
        let lda = (spec.transposeA ? m : k) + spec.padding
        let ldb = (spec.transposeB ? k : n) + spec.padding
        let ldc = n + spec.padding
        let a = (0..<(lda * (spec.transposeA ? k : m))).map { _ in Float.random(in: -1...1, using: &generator) }
        let b = (0..<(ldb * (spec.transposeB ? n : k))).map { _ in Float.random(in: -1...1, using: &generator) }
        let c0 = (0..<(ldc * m)).map { _ in Float.random(in: -1...1, using: &generator) }

        var expected = c0
        ReferenceGEMM.multiply(m: m, n: n, k: k, alpha: spec.alpha, a: a, lda: lda, transposeA: spec.transposeA,
                               b: b, ldb: ldb, transposeB: spec.transposeB, beta: spec.beta, c: &expected, ldc: ldc)
        var magnitude = c0.map { abs($0) }
        ReferenceGEMM.multiply(m: m, n: n, k: k, alpha: abs(spec.alpha), a: a.map { abs($0) }, lda: lda,
                               transposeA: spec.transposeA, b: b.map { abs($0) }, ldb: ldb,
                               transposeB: spec.transposeB, beta: abs(spec.beta), c: &magnitude, ldc: ldc)
        var actual = c0
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                actual.withUnsafeMutableBufferPointer { c in
                    if prepacked {
                        let packed = SGEMM.PackedMatrix(k: k, n: n, b: b.baseAddress!, ldb: ldb,
                                                        transposed: spec.transposeB)
                        SGEMM.multiply(m: m, alpha: spec.alpha, a: a.baseAddress!, lda: lda,
                                       transposeA: spec.transposeA, packedB: packed, beta: spec.beta,
                                       c: c.baseAddress!, ldc: ldc, threads: threads, level: level)
                    } else {
                        SGEMM.multiply(m: m, n: n, k: k, alpha: spec.alpha, a: a.baseAddress!, lda: lda,
                                       transposeA: spec.transposeA, b: b.baseAddress!, ldb: ldb,
                                       transposeB: spec.transposeB, beta: spec.beta, c: c.baseAddress!,
                                       ldc: ldc, threads: threads, level: level)
                    }
                }
            }
        }
        // Worst error relative to the bound; padding columns of C must be untouched.
        var worst: Float = 0
        for i in 0..<m {
            for j in 0..<ldc {
                let index = i * ldc + j
                if j >= n {
                    if actual[index] != c0[index] { return .infinity }
                    continue
                }
                let error = abs(actual[index] - expected[index])
                if error.isNaN { return .infinity }
                worst = max(worst, error / tolerance(k: k, magnitude: magnitude[index]))
            }
        }
        return worst
    }

    @Test(arguments: SGEMM.Level.available)
    func matchesReferenceAtAwkwardShapes(level: SGEMM.Level) {
        for (index, shape) in Self.shapes.enumerated() {
            let variant = index % 8
            let spec = Case(m: shape.m, n: shape.n, k: shape.k, transposeA: variant & 1 != 0,
                            transposeB: variant & 2 != 0, alpha: variant & 4 != 0 ? -0.75 : 1,
                            beta: [0, 1, 0.5][index % 3], padding: index % 4 == 0 ? 0 : index % 5 + 1)
            let worst = Self.check(spec, level: level, prepacked: index % 2 == 1, threads: 1 + index % 3,
                                   seed: UInt64(index))
            #expect(worst <= 1, "level \(level) case \(spec): error \(worst) × tolerance")
        }
    }

    @Test(arguments: SGEMM.Level.available)
    func allTransposeCombinationsWithAlphaBetaAndLeadingDimensions(level: SGEMM.Level) {
        for transposeA in [false, true] {
            for transposeB in [false, true] {
                for prepacked in [false, true] {
                    let spec = Case(m: 65, n: 33, k: 300, transposeA: transposeA, transposeB: transposeB,
                                    alpha: 0.5, beta: -2, padding: 3)
                    let worst = Self.check(spec, level: level, prepacked: prepacked, threads: 2, seed: 99)
                    #expect(worst <= 1, "level \(level) \(spec) prepacked \(prepacked): \(worst)")
                }
            }
        }
    }

    @Test func betaZeroIgnoresNaNInC() {
        let a: [Float] = [1, 2, 3, 4]  // 2 × 2
        let b: [Float] = [5, 6, 7, 8]
        var c = [Float](repeating: .nan, count: 4)
        for level in SGEMM.Level.available {
            c = [Float](repeating: .nan, count: 4)
            SGEMM.multiply(m: 2, n: 2, k: 2, a: a, lda: 2, b: b, ldb: 2, beta: 0, c: &c, ldc: 2, threads: 1, level: level)
            #expect(c == [19, 22, 43, 50], "level \(level)")
        }
    }

    @Test func zeroLengthReductionScalesC() {
        var c: [Float] = [1, 2, 3]
        let empty: [Float] = [0]
        SGEMM.multiply(m: 1, n: 3, k: 0, a: empty, lda: 1, b: empty, ldb: 3, beta: 2, c: &c, ldc: 3)
        #expect(c == [2, 4, 6])
    }
}

/// A small deterministic generator (SplitMix64) so failures reproduce.
fileprivate struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
