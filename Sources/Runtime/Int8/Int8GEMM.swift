// Stand-in for the int8 GEMM of the `gemm` branch: the same API over a plain-Swift loop, so the
// integer fusion can be built and tested before the SIMD kernels land. It is replaced whole at merge.

/// B of an int8 GEMM (`K × N`, int8) packed once, with its column sums.
public final class PackedInt8Matrix: @unchecked Sendable {
    public let k: Int
    public let n: Int
    /// `Σ_k B[k][j]` for each column `j`.
    public let columnSums: [Int32]
    /// B row-major `[K, N]`.
    let storage: UnsafeMutablePointer<Int8>

    /// Packs B given as `[K, N]` row-major, or `[N, K]` row-major when `transposed`.
    public init(k: Int, n: Int, values: UnsafeBufferPointer<Int8>, transposed: Bool) {
        self.k = k
        self.n = n
        storage = UnsafeMutablePointer<Int8>.allocate(capacity: max(k * n, 1))
        var sums = [Int32](repeating: 0, count: n)
        for kk in 0..<k {
            for j in 0..<n {
                let value = transposed ? values[j * k + kk] : values[kk * n + j]
                storage[kk * n + j] = value
                sums[j] &+= Int32(value)
            }
        }
        columnSums = sums
    }

    deinit { storage.deallocate() }
}

/// Instruction-set levels of the int8 GEMM, lowest first.
public enum Int8GEMMLevel: Int, CaseIterable, Sendable {
    case reference, avx2, avx512bw, avx512vnni, amx

    /// The best level this machine runs.
    public static var best: Int8GEMMLevel { .reference }
    /// Whether this machine runs the level.
    public var isAvailable: Bool { self == .reference }
}

/// uint8 × int8 matrix multiply with exact int32 accumulation.
public enum Int8GEMM {
    /// C[i][j] = Σ_k A[i][k]·B[k][j] exactly in int32 (no zero points), rows 0..<m, columns `columns`
    /// (starts that are multiples of 64 accepted, so callers can split columns across threads).
    /// A uint8 m×k row stride lda; C int32 row stride ldc, pointer at column 0.
    public static func multiply(m: Int, a: UnsafePointer<UInt8>, lda: Int, b: PackedInt8Matrix,
                                c: UnsafeMutablePointer<Int32>, ldc: Int, columns: Range<Int>,
                                level: Int8GEMMLevel = .best) {
        let k = b.k
        let start = columns.lowerBound, count = columns.count
        guard m > 0, count > 0 else { return }
        for i in 0..<m {
            let row = c + i * ldc + start
            row.update(repeating: 0, count: count)
            let aRow = a + i * lda
            for kk in 0..<k {
                let left = Int32(aRow[kk])
                let bRow = b.storage + kk * b.n + start
                for j in 0..<count { row[j] &+= left &* Int32(bRow[j]) }
            }
        }
    }
}
