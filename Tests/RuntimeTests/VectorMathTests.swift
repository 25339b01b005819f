import Foundation
@testable import Runtime
import Testing

/// The vectorised float32 functions against their reference twins (libm per element, the Swift softmax
/// row loop), at every instruction-set level this CPU has.
@Suite struct VectorMathTests {
    /// Units in the last place of `value` (of the float32 spacing at |value|, at least the smallest subnormal).
    static func ulps(_ difference: Float, of value: Float) -> Float {
        abs(difference) / max(abs(value).ulp, Float.leastNonzeroMagnitude)
    }

    /// Dense samples of [−6, 6], tiny and huge magnitudes, and the special values.
    static let samples: [Float] = {
        var values = stride(from: Float(-6), through: 6, by: 0.000_97).map { $0 }
        for exponent in stride(from: -40, through: 38, by: 1) {
            let magnitude = Float(sign: .plus, exponent: exponent, significand: 1.3)
            values += [magnitude, -magnitude]
        }
        values += [0, -0.0, .infinity, -.infinity, .nan, 0.921_875, Float(0.921_875).nextDown, 3.925, Float(3.925).nextDown,
                   Float.leastNonzeroMagnitude, -Float.leastNormalMagnitude, .greatestFiniteMagnitude]
        return values
    }()

    /// Runs `body` on `samples` at `level` through buffers.
    static func apply(_ body: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int, SGEMM.Level) -> Void,
                      level: SGEMM.Level, to input: [Float]) -> [Float] {
        var output = [Float](repeating: .nan, count: input.count)
        input.withUnsafeBufferPointer { x in
            output.withUnsafeMutableBufferPointer { y in body(x.baseAddress!, y.baseAddress!, input.count, level) }
        }
        return output
    }

    @Test(arguments: SGEMM.Level.available)
    func erfIsWithinFourUlpsOfLibm(level: SGEMM.Level) {
        let got = Self.apply({ VectorMath.erf($0, $1, count: $2, level: $3) }, level: level, to: Self.samples)
        for (x, y) in zip(Self.samples, got) {
            let reference = ErrorFunction().apply(x)
            if reference.isNaN {
                #expect(y.isNaN, "erf(\(x))")
                continue
            }
            // 2.2 ulp from the exact value with FMA, 3.1 without, plus libm's own half ulp or so.
            #expect(Self.ulps(y - reference, of: reference) <= 4 && abs(y - reference) <= 2.5e-7,
                    "erf(\(x)) = \(y), libm \(reference) at \(level)")
            #expect(y.sign == x.sign || x.isNaN, "erf keeps the sign of \(x)")
        }
    }

    @Test(arguments: SGEMM.Level.available)
    func geluMatchesItsReferenceFunction(level: SGEMM.Level) {
        let got = Self.apply({ VectorMath.gelu($0, $1, count: $2, level: $3) }, level: level, to: Self.samples)
        for (x, y) in zip(Self.samples, got) {
            let reference = GeluFunction().apply(x)
            if reference.isNaN {
                #expect(y.isNaN, "gelu(\(x))")
                continue
            }
            // erf's absolute error, scaled by x/2, plus the roundings of the two products.
            let bound = 1.5e-7 * abs(x) + 2 * max(abs(reference).ulp, Float.leastNonzeroMagnitude)
            #expect(y == reference || abs(y - reference) <= bound, "gelu(\(x)) = \(y), reference \(reference) at \(level)")
        }
    }

    @Test(arguments: SGEMM.Level.available)
    func expIsWithinTwoUlpsOfLibm(level: SGEMM.Level) {
        let input = stride(from: Float(-110), through: 95, by: 0.0131).map { $0 } + [.nan, .infinity, -.infinity]
        let got = Self.apply({ VectorMath.exp($0, $1, count: $2, level: $3) }, level: level, to: input)
        for (x, y) in zip(input, got) {
            let reference = ExponentialFunction().apply(x)
            if reference.isNaN {
                #expect(y.isNaN)
            } else if y == reference {
                continue
            } else if reference < Float.leastNormalMagnitude {
                // Subnormal results lose bits (both here and in libm); they must stay tiny.
                #expect(y >= 0 && y <= 2 * Float.leastNormalMagnitude, "exp(\(x)) = \(y)")
            } else {
                #expect(Self.ulps(y - reference, of: reference) <= 2, "exp(\(x)) = \(y), libm \(reference) at \(level)")
            }
        }
    }

    /// Every lane computes alike, so where a buffer is split (threads, tails) never changes a result.
    @Test func resultsDoNotDependOnHowTheBufferIsSplit() {
        let input = Array(Self.samples.prefix(1000))
        let whole = Self.apply({ VectorMath.gelu($0, $1, count: $2, level: $3) }, level: .best, to: input)
        for cut in [1, 7, 15, 16, 17, 333] {
            let head = Self.apply({ VectorMath.gelu($0, $1, count: $2, level: $3) }, level: .best,
                                  to: Array(input[..<cut]))
            let tail = Self.apply({ VectorMath.gelu($0, $1, count: $2, level: $3) }, level: .best,
                                  to: Array(input[cut...]))
            #expect(zip(whole, head + tail).allSatisfy { $0.bitPattern == $1.bitPattern }, "split at \(cut)")
        }
    }

    @Test(arguments: SGEMM.Level.available)
    func softmaxRowsMatchTheSwiftRowLoop(level: SGEMM.Level) {
        for length in Array(1...40) + [63, 64, 65, 384] {
            let rows = 3
            // Deterministic, irregular values in [−30, 30].
            var input = (0..<(rows * length)).map { Float(30 * sin(Double($0) * 12.9898 + Double(length))) }
            // A masked position (as attention masks write) and a row that is all −inf but one.
            input[0] = -.infinity
            if length > 1 { for i in (2 * length)..<(3 * length - 1) { input[i] = -.infinity } }
            for logarithmic in [false, true] {
                let kernel = SoftmaxKernel(opType: "Softmax", axis: -1, coercesTo2D: false, logarithmic: logarithmic)
                var reference = [Float](repeating: 0, count: input.count)
                var got = [Float](repeating: .nan, count: input.count)
                input.withUnsafeBufferPointer { x in
                    reference.withUnsafeMutableBufferPointer { y in
                        for row in 0..<rows {
                            kernel.normalizeRow(x.baseAddress! + row * length, y.baseAddress! + row * length, length)
                        }
                    }
                    got.withUnsafeMutableBufferPointer { y in
                        VectorMath.softmaxRows(x.baseAddress!, y.baseAddress!, rows: rows, length: length,
                                               logarithmic: logarithmic, level: level)
                    }
                }
                for (index, (a, b)) in zip(got, reference).enumerated() {
                    // Summation order differs (vector lanes): a few ulps of the sum, relative.
                    let ok = a == b || (a.isNaN && b.isNaN)
                        || abs(a - b) <= 1e-6 * max(abs(b), logarithmic ? 1 : 0) + Float.leastNormalMagnitude
                    #expect(ok, "length \(length) log \(logarithmic) index \(index): \(a) vs \(b) at \(level)")
                }
            }
        }
    }

    @Test func softmaxOfARowWithNaNIsNaN() {
        let input: [Float] = [1, 2, .nan, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]
        for level in SGEMM.Level.available {
            var output = [Float](repeating: 0, count: input.count)
            input.withUnsafeBufferPointer { x in
                output.withUnsafeMutableBufferPointer { y in
                    VectorMath.softmaxRows(x.baseAddress!, y.baseAddress!, rows: 1, length: input.count, level: level)
                }
            }
            #expect(output.allSatisfy { $0.isNaN }, "\(level)")
        }
    }
}
