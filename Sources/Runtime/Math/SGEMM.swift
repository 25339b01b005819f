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

    /// Below this many multiply-adds (about 10 µs of work) a GEMM runs on the calling thread: waking
    /// other threads costs more than it saves, and more so on a busy machine, where a woken thread may
    /// wait for a core while the caller waits for it.
    static let parallelThreshold = 1 << 20

    /// What happens to each element of C after the product, while its rows are still in cache:
    /// `c[i][j] = activation(c[i][j] + rowBias[i] + columnBias[j])`, each operation rounded on its own as
    /// the separate Add and activation operators round it (an absent bias adds nothing).
    public struct Epilogue {
        /// One value per row of C (a Conv's output channels), valid for the call.
        public var rowBias: UnsafePointer<Float>?
        /// One value per column of C (a MatMul's bias), valid for the call.
        public var columnBias: UnsafePointer<Float>?
        public var activation: Activation?

        public init(rowBias: UnsafePointer<Float>? = nil, columnBias: UnsafePointer<Float>? = nil,
                    activation: Activation? = nil) {
            self.rowBias = rowBias
            self.columnBias = columnBias
            self.activation = activation
        }

        /// The C form, with the biases advanced to row `row` and column `column`.
        func raw(row: Int = 0, column: Int = 0) -> sq_epilogue {
            let (code, p0, p1) = activation?.code ?? (Int32(SQ_ACTIVATION_NONE), 0, 0)
            return sq_epilogue(row_bias: rowBias.map { $0 + row }, column_bias: columnBias.map { $0 + column },
                               activation: code, parameters: (p0, p1))
        }

        /// Applies the epilogue to a rows × columns block of C (row stride `ldc`) on its own.
        public func apply(to c: UnsafeMutablePointer<Float>, rows: Int, columns: Int, ldc: Int,
                          level: Level? = nil) {
            var raw = raw()
            sq_apply_epilogue(level?.rawValue ?? -1, c, ldc, rows, columns, &raw)
        }
    }

    /// An activation applied in an epilogue (float32 semantics of the ONNX operator of the same name).
    public enum Activation: Sendable, Equatable {
        case relu
        /// numpy's clip: below `low` becomes `low`, then above `high` becomes `high`.
        case clip(low: Float, high: Float)
        case leakyRelu(alpha: Float)
        case hardSigmoid(alpha: Float, beta: Float)
        case hardSwish
        /// The exact Gelu, as `VectorMath.gelu`.
        case gelu

        var code: (Int32, Float, Float) {
            switch self {
            case .relu: return (Int32(SQ_ACTIVATION_RELU), 0, 0)
            case .clip(let low, let high): return (Int32(SQ_ACTIVATION_CLIP), low, high)
            case .leakyRelu(let alpha): return (Int32(SQ_ACTIVATION_LEAKY_RELU), alpha, 0)
            case .hardSigmoid(let alpha, let beta): return (Int32(SQ_ACTIVATION_HARD_SIGMOID), alpha, beta)
            case .hardSwish: return (Int32(SQ_ACTIVATION_HARD_SWISH), 0, 0)
            case .gelu: return (Int32(SQ_ACTIVATION_GELU), 0, 0)
            }
        }
    }

    /// Computes `C = alpha · op(A) · op(B) + beta · C`.
    ///
    /// - Parameters:
    ///   - m, n, k: op(A) is m × k, op(B) is k × n.
    ///   - a: A, which is m × k (k × m when `transposeA`), with row stride `lda`.
    ///   - b: B, which is k × n (n × k when `transposeB`), with row stride `ldb`.
    ///   - c: C, m × n with row stride `ldc`.
    ///   - threads: threads to split the work over.
    ///   - level: force a micro-kernel level (tests); nil picks the best available.
    ///   - epilogue: bias and activation applied to C after the product.
    public static func multiply(
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, transposeA: Bool = false,
        b: UnsafePointer<Float>, ldb: Int, transposeB: Bool = false,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int,
        threads: Int = 1, level: Level? = nil, epilogue: Epilogue? = nil
    ) {
        guard m > 0, n > 0 else { return }
        let levelCode = level?.rawValue ?? -1
        let (ta, tb): (Int32, Int32) = (transposeA ? 1 : 0, transposeB ? 1 : 0)
        let workers = (threads <= 1 || m * n * k < parallelThreshold) ? 1 : threads
        /// One part of C: rows from `row`, columns from `column`.
        func part(rows: Int, columns: Int, row: Int, column: Int) {
            let aStart = transposeA ? a + row : a + row * lda
            let bStart = transposeB ? b + column * ldb : b + column
            if var raw = epilogue?.raw(row: row, column: column) {
                sq_sgemm_fused(levelCode, ta, tb, rows, columns, k, alpha, aStart, lda, bStart, ldb, beta,
                               c + row * ldc + column, ldc, &raw)
            } else {
                sq_sgemm(levelCode, ta, tb, rows, columns, k, alpha, aStart, lda, bStart, ldb, beta,
                         c + row * ldc + column, ldc)
            }
        }
        if workers == 1 {
            part(rows: m, columns: n, row: 0, column: 0)
        } else if n >= 16 * workers, n >= 64 * workers || m < 32 * workers {
            // Split N on 16-column boundaries: each thread packs only its own columns of B. Few columns
            // (a Conv on a 7 × 7 plane) split M instead, so that each thread streams only its share of
            // A (the weights) and none is left with a narrow tail panel.
            let panels = (n + 15) / 16
            Parallel.forEach(workers, threads: workers) { index in
                let begin = index * panels / workers * 16
                let end = min(n, (index + 1) * panels / workers * 16)
                part(rows: m, columns: end - begin, row: 0, column: begin)
            }
        } else {
            // Few columns: split M; each thread packs the (narrow) B itself.
            Parallel.forRanges(m, threads: workers) { rows in
                part(rows: rows.count, columns: n, row: rows.lowerBound, column: 0)
            }
        }
    }

    /// Computes `C = alpha · op(A) · B + beta · C` with B packed ahead of time (`packedB.k × packedB.n`).
    public static func multiply(
        m: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, transposeA: Bool = false,
        packedB: PackedMatrix, beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int,
        threads: Int = 1, level: Level? = nil, epilogue: Epilogue? = nil
    ) {
        let n = packedB.n, k = packedB.k
        guard m > 0, n > 0 else { return }
        let levelCode = level?.rawValue ?? -1
        let ta: Int32 = transposeA ? 1 : 0
        let panels = (n + 15) / 16
        let workers = (threads <= 1 || m * n * k < parallelThreshold) ? 1 : threads
        let b = UnsafePointer(packedB.storage)
        /// Rows from `row` and columns [begin, end) of C.
        func part(rows: Int, row: Int, begin: Int, end: Int) {
            let aStart = transposeA ? a + row : a + row * lda
            if var raw = epilogue?.raw(row: row) {
                sq_sgemm_packed_fused(levelCode, ta, rows, n, k, alpha, aStart, lda, b, begin, end, beta,
                                      c + row * ldc, ldc, &raw)
            } else {
                sq_sgemm_packed(levelCode, ta, rows, n, k, alpha, aStart, lda, b, begin, end, beta, c + row * ldc, ldc)
            }
        }
        if workers == 1 {
            part(rows: m, row: 0, begin: 0, end: n)
        } else if panels >= workers {
            // Split N on panel boundaries: each thread streams its own part of B; A is shared.
            Parallel.forEach(workers, threads: workers) { index in
                part(rows: m, row: 0, begin: index * panels / workers * 16,
                     end: min(n, (index + 1) * panels / workers * 16))
            }
        } else {
            // Too few columns to share: split M.
            Parallel.forRanges(m, threads: workers) { rows in
                part(rows: rows.count, row: rows.lowerBound, begin: 0, end: n)
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
