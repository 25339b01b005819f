import _CKernels

// The int8 GEMM: uint8 A x int8 B -> int32 C, with B packed once. The SIMD levels live in _CKernels
// (qgemm*.c); `.reference` is their pure-Swift twin and the test oracle.

/// int8 matrix B (K x N) packed once (e.g. constant weights) for the uint8 x int8 kernels.
///
/// The packed layout is shared by every level (see `sq_qgemm_pack_b`): panels of 16 columns, each a run of
/// groups of 4 rows x 16 columns (64 bytes), with the group count padded to a multiple of 16 (AMX tiles).
/// Immutable after `init`, so one matrix serves any number of threads.
public final class PackedInt8Matrix: @unchecked Sendable {
    public let k: Int
    public let n: Int
    /// Σ_k B[k][j] per column, for zero-point corrections.
    public let columnSums: [Int32]
    /// The packed bytes, 64-byte aligned.
    let packed: UnsafeMutableRawBufferPointer
    /// Bytes from one 16-column panel to the next.
    let panelStride: Int

    /// `values` is B row-major [K, N], or [N, K] when `transposed` (the usual layout of Gemm/Conv weights).
    public convenience init(k: Int, n: Int, values: UnsafeBufferPointer<Int8>, transposed: Bool) {
        self.init(k: k, n: n, bytes: UnsafeRawBufferPointer(values), signFlip: false, transposed: transposed)
    }

    /// Packs uint8 values `u` as the int8 values `u - 128`, so uint8 weights run on the same kernels:
    /// `(u - z) = (u - 128) - (z - 128)`, i.e. the caller subtracts 128 from B's zero point as well.
    /// `columnSums` are those of the shifted values.
    public convenience init(k: Int, n: Int, unsignedValues: UnsafeBufferPointer<UInt8>, transposed: Bool) {
        self.init(k: k, n: n, bytes: UnsafeRawBufferPointer(unsignedValues), signFlip: true, transposed: transposed)
    }

    private init(k: Int, n: Int, bytes: UnsafeRawBufferPointer, signFlip: Bool, transposed: Bool) {
        precondition(k >= 0 && n >= 0, "PackedInt8Matrix: negative shape \(k) x \(n)")
        let (count, overflow) = k.multipliedReportingOverflow(by: n)
        precondition(!overflow && bytes.count >= count, "PackedInt8Matrix: \(bytes.count) values for \(k) x \(n)")
        self.k = k
        self.n = n
        panelStride = (((k + 3) / 4 + 15) / 16 * 16) * 64
        let size = sq_qgemm_packed_b_size(n, k)
        packed = .allocate(byteCount: max(size, 64), alignment: 64)
        let flip: UInt8 = signFlip ? 0x80 : 0
        if let base = bytes.baseAddress, count > 0 {
            sq_qgemm_pack_b(transposed ? 1 : 0, n, k, base, transposed ? k : n, flip,
                            packed.baseAddress!.assumingMemoryBound(to: Int8.self))
        } else {
            packed.initializeMemory(as: UInt8.self, repeating: 0)
        }
        // From the caller's values, not the packed copy: the sums must not share a packing mistake.
        var sums = [Int32](repeating: 0, count: n)
        let values = bytes.bindMemory(to: UInt8.self)
        for outer in 0..<(transposed ? n : k) {
            for inner in 0..<(transposed ? k : n) {
                let byte = values[outer * (transposed ? k : n) + inner] ^ flip
                sums[transposed ? outer : inner] &+= Int32(Int8(bitPattern: byte))
            }
        }
        columnSums = sums
    }

    deinit { packed.deallocate() }

    /// B[row][column] read back from the packed bytes (row < k, column < n).
    @inline(__always)
    func value(row: Int, column: Int) -> Int8 {
        let offset = column / 16 * panelStride + row / 4 * 64 + column % 16 * 4 + row % 4
        return Int8(bitPattern: packed[offset])
    }
}

/// Instruction-set levels of the int8 GEMM; tests force each level the CPU has.
public enum Int8GEMMLevel: Int, CaseIterable, Sendable {
    /// Pure Swift: plain loops, any CPU (the test oracle).
    case reference
    /// AVX2: bytes widened to int16, products summed in pairs by vpmaddwd.
    case avx2
    /// AVX-512BW: the AVX2 scheme on 512-bit registers.
    case avx512bw
    /// AVX-512 VNNI: vpdpbusd adds four uint8 x int8 products into each int32 lane.
    case avx512vnni
    /// AMX-INT8: 16 x 64 by 64 x 16 tile products (TDPBUSD).
    case amx

    private static let availability: [Bool] = allCases.map { $0 == .reference || sq_qgemm_level_available(Int32($0.rawValue)) != 0 }
    private static let bestAvailable: Int8GEMMLevel = allCases.last { availability[$0.rawValue] } ?? .reference

    /// The best level the CPU supports.
    public static var best: Int8GEMMLevel { bestAvailable }

    /// Whether this CPU (and, for AMX, the operating system) supports the level.
    public var isAvailable: Bool { Self.availability[rawValue] }
}

public enum Int8GEMM {
    /// C[i][j] = Σ_k A[i][k] · B[k][j] exactly in int32 (no zero points), for rows 0..<m and columns `columns`
    /// (caller may split columns across threads; any range start works, multiples of 16 fastest).
    /// A is uint8 m x k with row stride lda; C is int32 with row stride ldc, pointer at column 0.
    /// Sums wrap in int32 (they cannot overflow for k < 65,793). A level the CPU lacks runs as `.best`.
    public static func multiply(m: Int, a: UnsafePointer<UInt8>, lda: Int, b: PackedInt8Matrix,
                                c: UnsafeMutablePointer<Int32>, ldc: Int, columns: Range<Int>,
                                level: Int8GEMMLevel = .best) {
        precondition(m >= 0 && columns.lowerBound >= 0 && columns.upperBound <= b.n,
                     "Int8GEMM: columns \(columns) outside 0..<\(b.n) or negative m \(m)")
        precondition(m <= 1 || (lda >= b.k && ldc >= columns.upperBound), "Int8GEMM: lda \(lda) or ldc \(ldc) too small")
        guard m > 0, !columns.isEmpty else { return }
        let resolved = level.isAvailable ? level : .best
        if resolved == .reference {
            referenceMultiply(m: m, a: a, lda: lda, b: b, c: c, ldc: ldc, columns: columns)
        } else {
            sq_qgemm_u8s8(Int32(resolved.rawValue), m, b.n, b.k, a, lda,
                          UnsafePointer(b.packed.baseAddress!.assumingMemoryBound(to: Int8.self)),
                          columns.lowerBound, columns.upperBound, c, ldc)
        }
    }

    /// `multiply` over all columns, split across up to `threadCount` threads: by 64-column blocks when
    /// there are enough of them, otherwise by rows.
    public static func multiply(m: Int, a: UnsafePointer<UInt8>, lda: Int, b: PackedInt8Matrix,
                                c: UnsafeMutablePointer<Int32>, ldc: Int, level: Int8GEMMLevel = .best,
                                threadCount: Int) {
        let split = WorkSplit(rows: m, columns: b.n, threads: threadCount)
        Parallel.forEach(split.parts, threads: threadCount) { part in
            let (rows, columns) = split.region(part)
            multiply(m: rows.count, a: a + rows.lowerBound * lda, lda: lda, b: b, c: c + rows.lowerBound * ldc,
                     ldc: ldc, columns: columns, level: level)
        }
    }

    /// Σ_k A[i][k] for rows 0..<m (the row sums of zero-point corrections).
    public static func rowSums(m: Int, k: Int, a: UnsafePointer<UInt8>, lda: Int, into sums: UnsafeMutablePointer<Int32>) {
        for i in 0..<m {
            let row = a + i * lda
            var sum: Int32 = 0
            for p in 0..<k { sum &+= Int32(row[p]) }
            sums[i] = sum
        }
    }

    /// Turns C = A·B into C = (A - za)(B - zb) in place, for rows 0..<m and `columns`:
    /// `C[i][j] -= zb[j]·(rowSums[i] - K·za[i]) + za[i]·columnSums[j]` (wrapping int32, so exactly the
    /// wrapped direct sum). `aZeros` has one value per row and `bZeros` one per column of B (index j).
    /// `rowSums` is read only when some zb[j] of `columns` is nonzero: symmetric weights need no row sums.
    public static func subtractZeroPoints(
        m: Int, c: UnsafeMutablePointer<Int32>, ldc: Int, columns: Range<Int>, b: PackedInt8Matrix,
        rowSums: UnsafePointer<Int32>, aZeros: UnsafePointer<Int32>, bZeros: UnsafePointer<Int32>
    ) {
        guard m > 0, !columns.isEmpty else { return }
        let depth = Int32(truncatingIfNeeded: b.k), width = columns.count
        let symmetric = columns.allSatisfy { bZeros[$0] == 0 }
        // za · columnSums[j], recomputed only when za changes from one row to the next.
        let scaled = UnsafeMutablePointer<Int32>.allocate(capacity: width)
        defer { scaled.deallocate() }
        b.columnSums.withUnsafeBufferPointer { columnSums in
            let sums = columnSums.baseAddress! + columns.lowerBound, zb = bZeros + columns.lowerBound
            var scaledFor: Int32?
            for i in 0..<m {
                let za = aZeros[i]
                if scaledFor != za {
                    for j in 0..<width { scaled[j] = za &* sums[j] }
                    scaledFor = za
                }
                let row = c + i * ldc + columns.lowerBound
                if symmetric {
                    for j in 0..<width { row[j] &-= scaled[j] }
                } else {
                    let rowTerm = rowSums[i] &- depth &* za
                    for j in 0..<width { row[j] = row[j] &- zb[j] &* rowTerm &- scaled[j] }
                }
            }
        }
    }

    /// The pure-Swift twin: plain loops over B's values.
    static func referenceMultiply(m: Int, a: UnsafePointer<UInt8>, lda: Int, b: PackedInt8Matrix,
                                  c: UnsafeMutablePointer<Int32>, ldc: Int, columns: Range<Int>) {
        for i in 0..<m {
            let row = c + i * ldc
            for j in columns { row[j] = 0 }
            for p in 0..<b.k {
                let left = Int32(a[i * lda + p])
                for j in columns { row[j] &+= left &* Int32(b.value(row: p, column: j)) }
            }
        }
    }
}

/// How a GEMM of `rows` x `columns` is cut for `threads`: into 64-column blocks when there are at least
/// as many as threads (each thread then streams its own part of B), otherwise into row blocks of a
/// multiple of 8 (the VNNI tile height).
struct WorkSplit: Sendable {
    let rows: Int
    let columns: Int
    let byColumns: Bool
    let parts: Int

    init(rows: Int, columns: Int, threads: Int) {
        self.rows = rows
        self.columns = columns
        let threads = max(1, threads)
        let columnBlocks = (columns + 63) / 64
        let rowBlocks = (rows + 7) / 8
        byColumns = columnBlocks >= threads || columnBlocks >= rowBlocks
        parts = max(1, min(threads, byColumns ? columnBlocks : rowBlocks))
    }

    /// The rows and columns of part `index` (0..<parts).
    func region(_ index: Int) -> (rows: Range<Int>, columns: Range<Int>) {
        if byColumns {
            let blocks = (columns + 63) / 64
            let start = index * blocks / parts * 64, end = min(columns, (index + 1) * blocks / parts * 64)
            return (0..<rows, start..<end)
        }
        let blocks = (rows + 7) / 8
        let start = index * blocks / parts * 8, end = min(rows, (index + 1) * blocks / parts * 8)
        return (start..<end, 0..<columns)
    }
}
