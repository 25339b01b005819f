import Runtime
import Testing

// Every int8 GEMM level against the pure-Swift `.reference` level and against a naive product written
// here over the caller's original values (Int arithmetic), at awkward shapes with full-range operands.
// Levels the CPU lacks are skipped inside each test (the CI machine's levels are listed by
// `swiftquant bench-gemm`).

/// Deterministic full-range bytes (a 64-bit LCG), so failures reproduce.
private struct ByteStream {
    var state: UInt64
    mutating func next() -> UInt8 {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return UInt8(truncatingIfNeeded: state >> 33)
    }
    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in next() } }
}

/// One GEMM problem: A (m x k, row stride lda = k + 3), B (k x n, or n x k when transposed).
private struct Problem {
    let m: Int, n: Int, k: Int
    let a: [UInt8]
    let b: [Int8]
    let transposed: Bool
    var lda: Int { k + 3 }

    init(m: Int, n: Int, k: Int, transposed: Bool, seed: UInt64) {
        self.m = m
        self.n = n
        self.k = k
        self.transposed = transposed
        var stream = ByteStream(state: seed)
        var a = stream.bytes(m * (k + 3))
        var b = stream.bytes(k * n).map { Int8(bitPattern: $0) }
        // Make sure the extremes appear: 255 x -128 and 255 x 127 are the products that break int16 schemes.
        if !a.isEmpty { a[0] = 255 }
        if a.count > 1 { a[1] = 255 }
        if !b.isEmpty { b[0] = -128 }
        if b.count > 1 { b[b.count - 1] = 127 }
        self.a = a
        self.b = b
    }

    func bValue(_ row: Int, _ column: Int) -> Int { Int(transposed ? b[column * k + row] : b[row * n + column]) }

    /// Σ_p A[i][p] · B[p][j] in Int, wrapped to Int32 like the kernels.
    func naive(_ i: Int, _ j: Int) -> Int32 {
        var sum = 0
        for p in 0..<k { sum += Int(a[i * lda + p]) * bValue(p, j) }
        return Int32(truncatingIfNeeded: sum)
    }

    func packed() -> PackedInt8Matrix {
        b.withUnsafeBufferPointer { PackedInt8Matrix(k: k, n: n, values: $0, transposed: transposed) }
    }

    /// C for `columns` at `level`; columns outside the range keep the sentinel.
    func run(_ packed: PackedInt8Matrix, level: Int8GEMMLevel, columns: Range<Int>, ldc: Int) -> [Int32] {
        var c = [Int32](repeating: sentinel, count: max(1, m * ldc))
        a.withUnsafeBufferPointer { a in
            c.withUnsafeMutableBufferPointer { c in
                Int8GEMM.multiply(m: m, a: a.baseAddress!, lda: lda, b: packed, c: c.baseAddress!, ldc: ldc,
                                  columns: columns, level: level)
            }
        }
        return c
    }
}

private let sentinel: Int32 = 0x5A5A_5A5A

/// nil when equal, else the first differing index and values (keeps failure messages short).
private func firstDifference(_ got: [Int32], _ expected: [Int32]) -> String? {
    guard got.count == expected.count else { return "\(got.count) values, expected \(expected.count)" }
    guard let i = got.indices.first(where: { got[$0] != expected[$0] }) else { return nil }
    return "index \(i): \(got[i]), expected \(expected[i])"
}

@Suite struct Int8GEMMTests {
    static let awkwardDepths = Array(1...10) + Array(118...122)
    /// (M, N): tile heights + 1 (VNNI/BW 8, AVX2 4, AMX 16/32), N = 16x + 15 and vector-width edges.
    static let awkwardShapes = [(1, 1), (9, 15), (8, 16), (5, 17), (17, 47), (33, 79), (3, 63), (4, 64), (2, 111)]

    @Test(arguments: Int8GEMMLevel.allCases)
    func awkwardShapesEqualReferenceAndNaiveProduct(level: Int8GEMMLevel) {
        guard level.isAvailable else { return }
        var seed: UInt64 = 1
        for k in Self.awkwardDepths {
            for (m, n) in Self.awkwardShapes {
                for transposed in [false, true] {
                    seed += 1
                    let problem = Problem(m: m, n: n, k: k, transposed: transposed, seed: seed)
                    let packed = problem.packed()
                    let ldc = n + 5
                    let got = problem.run(packed, level: level, columns: 0..<n, ldc: ldc)
                    let reference = problem.run(packed, level: .reference, columns: 0..<n, ldc: ldc)
                    #expect(firstDifference(got, reference) == nil, "\(level) m \(m) n \(n) k \(k) transposed \(transposed)")
                    var naive = [Int32](repeating: sentinel, count: m * ldc)
                    for i in 0..<m { for j in 0..<n { naive[i * ldc + j] = problem.naive(i, j) } }
                    #expect(firstDifference(reference, naive) == nil, "reference m \(m) n \(n) k \(k) transposed \(transposed)")
                }
            }
        }
    }

    /// Column ranges as threads use them (start a multiple of 64, or anywhere), K across the 1024-row
    /// block of packed B (accumulation into C), and N across the 576-column block.
    @Test(arguments: Int8GEMMLevel.allCases)
    func columnRangesAndBlockBoundaries(level: Int8GEMMLevel) {
        guard level.isAvailable else { return }
        let cases: [(m: Int, n: Int, k: Int, columns: Range<Int>)] = [
            (9, 200, 13, 64..<200), (9, 200, 13, 3..<130), (9, 200, 13, 17..<18), (5, 79, 7, 64..<79),
            (9, 20, 1030, 0..<20), (3, 21, 2051, 5..<21), (2, 600, 5, 0..<600), (4, 1203, 66, 577..<1203),
        ]
        for (index, shape) in cases.enumerated() {
            let problem = Problem(m: shape.m, n: shape.n, k: shape.k, transposed: index % 2 == 1, seed: UInt64(100 + index))
            let packed = problem.packed()
            let got = problem.run(packed, level: level, columns: shape.columns, ldc: shape.n)
            var expected = [Int32](repeating: sentinel, count: shape.m * shape.n)
            for i in 0..<shape.m { for j in shape.columns { expected[i * shape.n + j] = problem.naive(i, j) } }
            #expect(firstDifference(got, expected) == nil, "\(level) \(shape)")
        }
    }

    /// All-extreme operands: every product is 255 · -128 or 255 · 127, the case where int16 pair sums
    /// saturate. Expected values are K · 255 · b by hand.
    @Test(arguments: Int8GEMMLevel.allCases)
    func extremeOperandsDoNotSaturate(level: Int8GEMMLevel) {
        guard level.isAvailable else { return }
        for (k, value) in [(121, Int8(-128)), (122, Int8(127)), (1000, Int8(-128))] {
            let a = [UInt8](repeating: 255, count: 3 * k)
            let b = [Int8](repeating: value, count: k * 17)
            let packed = b.withUnsafeBufferPointer { PackedInt8Matrix(k: k, n: 17, values: $0, transposed: false) }
            var c = [Int32](repeating: 0, count: 3 * 17)
            a.withUnsafeBufferPointer { a in
                c.withUnsafeMutableBufferPointer { c in
                    Int8GEMM.multiply(m: 3, a: a.baseAddress!, lda: k, b: packed, c: c.baseAddress!, ldc: 17,
                                      columns: 0..<17, level: level)
                }
            }
            #expect(firstDifference(c, [Int32](repeating: Int32(k * 255 * Int(value)), count: 3 * 17)) == nil, "\(level) k \(k)")
        }
    }

    @Test func columnSumsAndUnsignedPacking() {
        // B = [[1, -2, 3], [4, 5, -128]] (2 x 3): column sums 5, 3, -125 (by hand).
        let b: [Int8] = [1, -2, 3, 4, 5, -128]
        let packed = b.withUnsafeBufferPointer { PackedInt8Matrix(k: 2, n: 3, values: $0, transposed: false) }
        #expect(packed.columnSums == [5, 3, -125])
        // The same B given transposed ([3, 2]) packs to the same matrix.
        let bt: [Int8] = [1, 4, -2, 5, 3, -128]
        let packedT = bt.withUnsafeBufferPointer { PackedInt8Matrix(k: 2, n: 3, values: $0, transposed: true) }
        #expect(packedT.columnSums == [5, 3, -125])
        // uint8 [[0, 255], [128, 7]] is stored as u - 128: [[-128, 127], [0, -121]], sums -128, 6.
        let u: [UInt8] = [0, 255, 128, 7]
        let unsigned = u.withUnsafeBufferPointer { PackedInt8Matrix(k: 2, n: 2, unsignedValues: $0, transposed: false) }
        #expect(unsigned.columnSums == [-128, 6])
        // A = [[2, 1]]: C = [2 * -128 + 0, 2 * 127 - 121] = [-256, 133].
        let a: [UInt8] = [2, 1]
        for level in Int8GEMMLevel.allCases where level.isAvailable {
            var c: [Int32] = [0, 0]
            a.withUnsafeBufferPointer { a in
                c.withUnsafeMutableBufferPointer { c in
                    Int8GEMM.multiply(m: 1, a: a.baseAddress!, lda: 2, b: unsigned, c: c.baseAddress!, ldc: 2,
                                      columns: 0..<2, level: level)
                }
            }
            #expect(c == [-256, 133], "\(level)")
        }
    }

    /// The threaded convenience (split by columns or by rows) and the zero-point correction against
    /// Σ (a - za)(b - zb) computed naively, with zero points from {0, 18, 75, 128, 157, 231, 255}.
    /// With `symmetric` every B zero point is 0, and the row sums handed over are garbage: they must not be read.
    @Test(arguments: [(64, 1536, 40, false), (200, 20, 9, false), (3, 70, 118, false), (9, 33, 17, true)])
    func threadedMultiplyWithZeroPoints(m: Int, n: Int, k: Int, symmetric: Bool) {
        let zeroPoints: [Int32] = [0, 18, 75, 128, 157, 231, 255]
        let problem = Problem(m: m, n: n, k: k, transposed: false, seed: UInt64(m * 31 + n))
        let packed = problem.packed()
        let aZeros = (0..<m).map { zeroPoints[$0 % zeroPoints.count] }
        // B zero points within int8: the uint8 list shifted by -128.
        let bZeros = (0..<n).map { symmetric ? 0 : zeroPoints[($0 + 3) % zeroPoints.count] - 128 }
        var c = [Int32](repeating: sentinel, count: m * n)
        var sums = [Int32](repeating: 0, count: m)
        problem.a.withUnsafeBufferPointer { a in
            c.withUnsafeMutableBufferPointer { c in
                Int8GEMM.multiply(m: m, a: a.baseAddress!, lda: problem.lda, b: packed, c: c.baseAddress!, ldc: n,
                                  threadCount: 2)
                if symmetric {
                    sums = [Int32](repeating: .max, count: m)
                } else {
                    Int8GEMM.rowSums(m: m, k: k, a: a.baseAddress!, lda: problem.lda, into: &sums)
                }
                Int8GEMM.subtractZeroPoints(m: m, c: c.baseAddress!, ldc: n, columns: 0..<n, b: packed,
                                            rowSums: sums, aZeros: aZeros, bZeros: bZeros)
            }
        }
        var expected = [Int32](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0
                for p in 0..<k { sum += (Int(problem.a[i * problem.lda + p]) - Int(aZeros[i])) * (problem.bValue(p, j) - Int(bZeros[j])) }
                expected[i * n + j] = Int32(truncatingIfNeeded: sum)
            }
        }
        #expect(firstDifference(c, expected) == nil)
    }

    @Test func bestLevelIsAvailable() {
        #expect(Int8GEMMLevel.best.isAvailable)
        #expect(Int8GEMMLevel.reference.isAvailable)
    }
}
