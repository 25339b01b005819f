import _CKernels

/// Single-precision matrix multiply on row-major matrices with leading dimensions:
///
///     C = alpha · op(A) · op(B) + beta · C,   op(A): m × k,  op(B): k × n,  C: m × n
///
/// where op(X) is X or Xᵀ. The work runs in `_CKernels` (packed B panels, register-blocked AVX-512 /
/// AVX2+FMA / portable micro-kernels chosen at run time); this type adds threading and prepacked
/// weights. `ReferenceGEMM` is its test oracle.
///
/// When `beta == 0`, C is written without being read, so it may hold garbage or NaN.
public enum SGEMM {
    /// Micro-kernel instruction sets, lowest first.
    public enum Level: Int32, CaseIterable, Sendable, CustomStringConvertible {
        case portable = 0
        case avx2 = 1
        case avx512 = 2

        /// The best level the running CPU supports.
        public static var best: Level { Level(rawValue: sq_sgemm_best_level()) ?? .portable }
        /// Every level the running CPU can execute, lowest first.
        public static var available: [Level] { allCases.filter { $0.rawValue <= best.rawValue } }

        public var description: String {
            switch self {
            case .portable: return "portable"
            case .avx2: return "avx2"
            case .avx512: return "avx512"
            }
        }
    }

    /// Below this many multiply-adds a GEMM runs on the calling thread: handing work to other threads
    /// costs more than it saves.
    static let parallelThreshold = 1 << 16

    /// Computes `C = alpha · op(A) · op(B) + beta · C`.
    ///
    /// - Parameters:
    ///   - m, n, k: op(A) is m × k, op(B) is k × n.
    ///   - a: A, which is m × k (k × m when `transposeA`), with row stride `lda`.
    ///   - b: B, which is k × n (n × k when `transposeB`), with row stride `ldb`.
    ///   - c: C, m × n with row stride `ldc`.
    ///   - threads: threads to split the work over.
    ///   - level: force a micro-kernel level (tests); nil picks the best available.
    public static func multiply(
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, transposeA: Bool = false,
        b: UnsafePointer<Float>, ldb: Int, transposeB: Bool = false,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int,
        threads: Int = 1, level: Level? = nil
    ) {
        guard m > 0, n > 0 else { return }
        let levelCode = level?.rawValue ?? -1
        let (ta, tb): (Int32, Int32) = (transposeA ? 1 : 0, transposeB ? 1 : 0)
        let workers = (threads <= 1 || m * n * k < parallelThreshold) ? 1 : threads
        if workers == 1 {
            sq_sgemm(levelCode, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        } else if n >= 16 * workers {
            // Split N on 16-column boundaries: each thread packs only its own columns of B.
            let panels = (n + 15) / 16
            Parallel.forEach(workers, threads: workers) { part in
                let begin = part * panels / workers * 16
                let end = min(n, (part + 1) * panels / workers * 16)
                let bStart = transposeB ? b + begin * ldb : b + begin
                sq_sgemm(levelCode, ta, tb, m, end - begin, k, alpha, a, lda, bStart, ldb, beta, c + begin, ldc)
            }
        } else {
            // Few columns: split M; each thread packs the (narrow) B itself.
            Parallel.forRanges(m, threads: workers) { rows in
                let aStart = transposeA ? a + rows.lowerBound : a + rows.lowerBound * lda
                sq_sgemm(levelCode, ta, tb, rows.count, n, k, alpha, aStart, lda, b, ldb, beta,
                         c + rows.lowerBound * ldc, ldc)
            }
        }
    }

    /// Computes `C = alpha · op(A) · B + beta · C` with B packed ahead of time (`packedB.k × packedB.n`).
    public static func multiply(
        m: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, transposeA: Bool = false,
        packedB: PackedMatrix, beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int,
        threads: Int = 1, level: Level? = nil
    ) {
        let n = packedB.n, k = packedB.k
        guard m > 0, n > 0 else { return }
        let levelCode = level?.rawValue ?? -1
        let ta: Int32 = transposeA ? 1 : 0
        let panels = (n + 15) / 16
        let workers = (threads <= 1 || m * n * k < parallelThreshold) ? 1 : threads
        let b = UnsafePointer(packedB.storage)
        if workers == 1 {
            sq_sgemm_packed(levelCode, ta, m, n, k, alpha, a, lda, b, 0, n, beta, c, ldc)
        } else if panels >= workers {
            // Split N on panel boundaries: each thread streams its own part of B; A is shared.
            Parallel.forEach(workers, threads: workers) { part in
                let begin = part * panels / workers * 16
                let end = min(n, (part + 1) * panels / workers * 16)
                sq_sgemm_packed(levelCode, ta, m, n, k, alpha, a, lda, b, begin, end, beta, c, ldc)
            }
        } else {
            // Too few columns to share: split M.
            Parallel.forRanges(m, threads: workers) { rows in
                let aStart = transposeA ? a + rows.lowerBound : a + rows.lowerBound * lda
                sq_sgemm_packed(levelCode, ta, rows.count, n, k, alpha, aStart, lda, b, 0, n, beta,
                                c + rows.lowerBound * ldc, ldc)
            }
        }
    }

    /// op(B) packed once into the micro-kernels' panel layout (for weights known when a session is built).
    /// The layout is the same for every `Level`.
    public final class PackedMatrix: @unchecked Sendable {
        /// Rows of op(B) (the reduction length).
        public let k: Int
        /// Columns of op(B).
        public let n: Int
        let storage: UnsafeMutablePointer<Float>

        /// Packs op(B), where B is k × n (n × k when `transposed`) with row stride `ldb`.
        public init(k: Int, n: Int, b: UnsafePointer<Float>, ldb: Int, transposed: Bool = false) {
            self.k = k
            self.n = n
            let count = max(sq_sgemm_packed_b_count(n, k), 1)
            let raw = UnsafeMutableRawPointer.allocate(byteCount: count * MemoryLayout<Float>.stride, alignment: 64)
            storage = raw.bindMemory(to: Float.self, capacity: count)
            if k > 0, n > 0 { sq_sgemm_pack_b(transposed ? 1 : 0, n, k, b, ldb, storage) }
        }

        deinit { storage.deallocate() }
    }
}
