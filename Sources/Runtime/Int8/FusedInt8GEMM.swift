import QuantCore
import Tensors
import _CKernels

// The shared engine of the fused integer operators: `Int8GEMM` for Σ a·b, then the zero-point
// corrections and an output stage (requantization, float scaling or plain int32) over the same tile
// while it is still in cache.
//
// With `a` uint8 (zero point `za`) and `b` int8 (zero point `zb[j]` per column), over depth K:
//
//     acc[i][j] = Σ_k (a[i][k] − za)(b[k][j] − zb[j]) + bias[j]
//               = Σ_k a·b − za·colSum[j] − zb[j]·rowSum[i] + K·za·zb[j] + bias[j]
//
// The column terms are folded into one offset per column once per run; the row sums are only
// computed when some `zb[j]` is nonzero. Everything wraps in int32, as ONNX lets the accumulator do,
// so the identity holds exactly (modulo 2^32) and the result equals the direct sum bit for bit.
//
// int8 activations are flipped to uint8 (`a ^ 0x80 = a + 128`, zero point + 128), and uint8 weights are
// shifted to int8 (`w − 128`, zero point − 128): both leave every difference `a − za`, `b − zb` intact.

/// Weights of one fused integer GEMM, prepared when the session is built: B packed as int8 `[K, N]`,
/// per-column zero points in that int8 domain, and an int32 bias per column.
struct FusedInt8Weights: Sendable {
    let packed: PackedInt8Matrix
    /// `zb[j]` in the packed (int8) domain.
    let zeroPoints: [Int32]
    /// Whether any `zb[j]` is nonzero (row sums are needed only then).
    let hasZeroPoints: Bool
    /// int32 bias per column, in units of the accumulator (zeros when the operator has none).
    let bias: [Int32]
    /// `columnOffsets` for one activation zero point, computed ahead (see `precomputingOffsets`).
    private(set) var cachedOffsets: (zeroPoint: Int32, offsets: [Int32])?

    var depth: Int { packed.k }
    var columns: Int { packed.n }

    /// Packs an int8 or uint8 weight tensor.
    ///
    /// - Parameters:
    ///   - weights: `[K, N]`, or `[N, K]` when `transposed` (any leading shape flattened into the first axis).
    ///   - zeroPoints: one value, or one per column, in the weights' own type.
    ///   - bias: nil, or one int32 per column.
    init(weights: Tensor, k: Int, n: Int, transposed: Bool, zeroPoints: [Int32], bias: [Int32]?) throws {
        guard weights.count == k * n else {
            throw KernelError.invalid("weights hold \(weights.count) values, expected \(k) × \(n)")
        }
        guard weights.dtype == .int8 || weights.dtype == .uint8 else {
            throw KernelError.invalid("weights must be int8 or uint8, got \(weights.dtype)")
        }
        let packed = weights.withUnsafeBytes { raw in
            Self.pack(raw.baseAddress!, unsigned: weights.dtype == .uint8, k: k, n: n, transposed: transposed)
        }
        try self.init(packed: packed, zeroPoints: zeroPoints, shift: weights.dtype == .uint8 ? 128 : 0, bias: bias)
    }

    /// Weights already packed; `zeroPoints` (one or one per column) minus `shift` give the packed domain's.
    init(packed: PackedInt8Matrix, zeroPoints: [Int32], shift: Int32, bias: [Int32]?) throws {
        let n = packed.n
        guard zeroPoints.count == 1 || zeroPoints.count == n else {
            throw KernelError.invalid("weight zero points: expected 1 or \(n) values, got \(zeroPoints.count)")
        }
        if let bias, bias.count != n {
            throw KernelError.invalid("bias: expected \(n) values, got \(bias.count)")
        }
        self.packed = packed
        let perColumn = zeroPoints.count == 1 ? [Int32](repeating: zeroPoints[0], count: n) : zeroPoints
        self.zeroPoints = perColumn.map { $0 - shift }
        hasZeroPoints = self.zeroPoints.contains { $0 != 0 }
        self.bias = bias ?? [Int32](repeating: 0, count: n)
    }

    /// Packs `k × n` 8-bit values at `source` (`[N, K]` when `transposed`); uint8 values are shifted to
    /// int8 (`x − 128`, the bit pattern `x ^ 0x80`) on the way.
    static func pack(_ source: UnsafeRawPointer, unsigned: Bool, k: Int, n: Int, transposed: Bool) -> PackedInt8Matrix {
        let count = k * n
        guard unsigned else {
            return PackedInt8Matrix(k: k, n: n, values: UnsafeBufferPointer(start: source.assumingMemoryBound(to: Int8.self), count: count),
                                    transposed: transposed)
        }
        let shifted = UnsafeMutablePointer<Int8>.allocate(capacity: max(count, 1))
        defer { shifted.deallocate() }
        let bytes = source.assumingMemoryBound(to: UInt8.self)
        for i in 0..<count { shifted[i] = Int8(bitPattern: bytes[i] ^ 0x80) }
        return PackedInt8Matrix(k: k, n: n, values: UnsafeBufferPointer(start: shifted, count: count), transposed: transposed)
    }

    /// The same weights with `columnOffsets(activationZeroPoint: za)` computed once, for an operator whose
    /// activation zero point is a constant.
    func precomputingOffsets(activationZeroPoint za: Int32) -> FusedInt8Weights {
        var copy = self
        copy.cachedOffsets = (za, columnOffsets(activationZeroPoint: za))
        return copy
    }

    /// `bias[j] + K·za·zb[j] − za·colSum[j]` for an activation zero point `za` (uint8 domain), wrapping.
    func columnOffsets(activationZeroPoint za: Int32) -> [Int32] {
        if let cachedOffsets, cachedOffsets.zeroPoint == za { return cachedOffsets.offsets }
        let depth32 = Int32(truncatingIfNeeded: depth)
        let sums = packed.columnSums
        return (0..<columns).map { j in
            bias[j] &+ depth32 &* za &* zeroPoints[j] &- za &* sums[j]
        }
    }
}

/// The last step of a fused GEMM over one tile of corrected int32 accumulators.
protocol FusedGEMMOutputStage {
    /// Consumes `acc[i][j]` for `i ∈ rows`, `j ∈ columns`, where `acc` points at (row 0, column 0) with
    /// row stride `ldc`.
    func finish(_ acc: UnsafePointer<Int32>, ldc: Int, rows: Range<Int>, columns: Range<Int>)

    /// Applies the zero-point corrections to raw sums, then `finish`; a stage may do both in one pass
    /// (below `.reference` levels). The default corrects `acc` in place.
    func correctAndFinish(_ acc: UnsafeMutablePointer<Int32>, ldc: Int, rows: Range<Int>, columns: Range<Int>,
                          corrections: GEMMCorrections, level: Int8GEMMLevel)
}

/// The zero-point corrections of a fused GEMM (see `FusedInt8GEMM.correct`), indexed by absolute row and column.
struct GEMMCorrections {
    let offsets: UnsafeBufferPointer<Int32>
    /// nil when every weight zero point is 0 (no row sums needed).
    let zeroPoints: UnsafeBufferPointer<Int32>?
    let rowSums: UnsafeBufferPointer<Int32>
}

extension FusedGEMMOutputStage {
    func correctAndFinish(_ acc: UnsafeMutablePointer<Int32>, ldc: Int, rows: Range<Int>, columns: Range<Int>,
                          corrections: GEMMCorrections, level: Int8GEMMLevel) {
        FusedInt8GEMM.correct(acc, ldc: ldc, rows: rows, columns: columns, offsets: corrections.offsets,
                              zeroPoints: corrections.zeroPoints, rowSums: corrections.rowSums)
        finish(acc, ldc: ldc, rows: rows, columns: columns)
    }
}

/// A uint8 activation matrix fed to a fused GEMM: `m × k`, row stride `lda`, zero point in uint8 terms.
struct Int8GEMMActivations {
    let m: Int
    let a: UnsafePointer<UInt8>
    let lda: Int
    let zeroPoint: Int32
}

enum FusedInt8GEMM {
    /// Column blocks start on multiples of this (the int8 GEMM's split granularity).
    static let columnGranularity = 64
    /// Rows per tile at most, so a tile of accumulators stays in cache for the output stage.
    static let maximumTileRows = 256

    /// Runs `stage` over `acc = (A − za)(B − zb) + bias` for every row and column, in tiles spread over
    /// `threads` threads.
    static func run<Stage: FusedGEMMOutputStage>(
        _ activations: Int8GEMMActivations, weights: FusedInt8Weights, stage: Stage, threads: Int,
        level: Int8GEMMLevel = .best
    ) {
        let m = activations.m, n = weights.columns, k = weights.depth
        guard m > 0, n > 0 else { return }
        let offsets = weights.columnOffsets(activationZeroPoint: activations.zeroPoint)
        var rowSums: [Int32] = []
        if weights.hasZeroPoints {
            rowSums = [Int32](repeating: 0, count: m)
            rowSums.withUnsafeMutableBufferPointer { sums in
                for i in 0..<m {
                    let row = activations.a + i * activations.lda
                    var sum: Int32 = 0
                    for kk in 0..<k { sum &+= Int32(row[kk]) }
                    sums[i] = sum
                }
            }
        }
        let accumulators = UnsafeMutablePointer<Int32>.allocate(capacity: m * n)
        defer { accumulators.deallocate() }
        let (rowTiles, columnTiles) = tiling(m: m, n: n, threads: threads)
        let panels = (n + columnGranularity - 1) / columnGranularity
        offsets.withUnsafeBufferPointer { offsets in
            weights.zeroPoints.withUnsafeBufferPointer { zeroPoints in
                rowSums.withUnsafeBufferPointer { rowSums in
                    Parallel.forEach(rowTiles * columnTiles, threads: threads) { tile in
                        let rowTile = tile / columnTiles, columnTile = tile % columnTiles
                        let rows = (rowTile * m / rowTiles)..<((rowTile + 1) * m / rowTiles)
                        let columns = min(n, columnTile * panels / columnTiles * columnGranularity)
                            ..< min(n, (columnTile + 1) * panels / columnTiles * columnGranularity)
                        guard !rows.isEmpty, !columns.isEmpty else { return }
                        Int8GEMM.multiply(
                            m: rows.count, a: activations.a + rows.lowerBound * activations.lda, lda: activations.lda,
                            b: weights.packed, c: accumulators + rows.lowerBound * n, ldc: n, columns: columns,
                            level: level)
                        stage.correctAndFinish(
                            accumulators, ldc: n, rows: rows, columns: columns,
                            corrections: GEMMCorrections(offsets: offsets, zeroPoints: weights.hasZeroPoints ? zeroPoints : nil,
                                                         rowSums: rowSums),
                            level: level)
                    }
                }
            }
        }
    }

    /// Row and column tile counts: columns split on 64-column panels first (each thread streams its own
    /// part of B), rows when there are too few panels for the threads or the rows are many.
    static func tiling(m: Int, n: Int, threads: Int) -> (rows: Int, columns: Int) {
        let panels = (n + columnGranularity - 1) / columnGranularity
        let columnTiles = max(1, min(panels, threads))
        let rowTilesForThreads = (threads + columnTiles - 1) / columnTiles
        let rowTilesForCache = (m + maximumTileRows - 1) / maximumTileRows
        let rowTiles = max(1, min(m, max(rowTilesForThreads, rowTilesForCache)))
        return (rowTiles, columnTiles)
    }

    /// `acc += offsets[j] − zb[j]·rowSum[i]` over a tile.
    @inline(__always)
    static func correct(
        _ acc: UnsafeMutablePointer<Int32>, ldc: Int, rows: Range<Int>, columns: Range<Int>,
        offsets: UnsafeBufferPointer<Int32>, zeroPoints: UnsafeBufferPointer<Int32>?, rowSums: UnsafeBufferPointer<Int32>
    ) {
        let offsetBase = offsets.baseAddress! + columns.lowerBound
        let width = columns.count
        if let zeroPoints {
            let zeroBase = zeroPoints.baseAddress! + columns.lowerBound
            for i in rows {
                let row = acc + i * ldc + columns.lowerBound
                let rowSum = rowSums[i]
                for j in 0..<width { row[j] = row[j] &+ offsetBase[j] &- zeroBase[j] &* rowSum }
            }
        } else {
            for i in rows {
                let row = acc + i * ldc + columns.lowerBound
                for j in 0..<width { row[j] = row[j] &+ offsetBase[j] }
            }
        }
    }
}

// MARK: - Activations

/// A uint8 view of 8-bit activations: uint8 data as is, int8 data flipped (`x ^ 0x80`) into a scratch
/// copy, with the zero point moved the same way.
struct UInt8Activations {
    let pointer: UnsafePointer<UInt8>
    let zeroPoint: Int32
    private let scratch: UnsafeMutablePointer<UInt8>?

    /// Views `tensor` (uint8 or int8) with zero point `zeroPoint` given in the tensor's own type.
    init(_ tensor: Tensor, zeroPoint: Int32) throws {
        switch tensor.dtype {
        case .uint8:
            pointer = tensor.withUnsafeBufferPointer(as: UInt8.self) { UnsafePointer($0.baseAddress!) }
            self.zeroPoint = zeroPoint
            scratch = nil
        case .int8:
            let copy = UnsafeMutablePointer<UInt8>.allocate(capacity: max(tensor.count, 1))
            tensor.withUnsafeBufferPointer(as: Int8.self) { source in
                for i in 0..<source.count { copy[i] = UInt8(bitPattern: source[i]) ^ 0x80 }
            }
            pointer = UnsafePointer(copy)
            self.zeroPoint = zeroPoint + 128
            scratch = copy
        default:
            throw KernelError.invalidInput(index: 0, reason: "activations must be uint8 or int8, got \(tensor.dtype)")
        }
    }

    /// Frees the flipped copy, if one was made. The tensor viewed must outlive the view otherwise.
    func release() { scratch?.deallocate() }
}

// MARK: - Output stages

/// Requantization constants per output column, split so the element loop has no branches. For a
/// column with fixed-point multiplier `M · 2^(e − 31)` and `s = 31 − e`:
///
///     p = acc · M
///     q = clamp(((p + 2^(s−1) − [p < 0]) >> s) + z, lower, upper)
///
/// which is `round(acc · M · 2^(e − 31))` with ties away from zero (`RequantizationRounding.halfAwayFromZero`),
/// plus the zero point, clamped. Columns whose shift reaches 63 round everything to 0 (mantissa 0).
struct ColumnRequantization: Sendable {
    let mantissas: [Int64]
    let shifts: [Int64]
    let roundings: [Int64]
    /// −1 where the shift is positive (ties of negative products round down), 0 where it is 0.
    let negativeMasks: [Int64]
    let zeroPoint: Int64
    let lower: Int64
    let upper: Int64

    init(multipliers: [FixedPointMultiplier], zeroPoint: Int32, clamp: ClosedRange<Int32>) {
        var mantissas: [Int64] = [], shifts: [Int64] = [], roundings: [Int64] = [], masks: [Int64] = []
        for multiplier in multipliers {
            let shift = 31 - multiplier.exponent
            if shift >= 63 {
                mantissas.append(0); shifts.append(0); roundings.append(0); masks.append(0)
            } else {
                mantissas.append(Int64(multiplier.mantissa))
                shifts.append(Int64(shift))
                roundings.append(shift == 0 ? 0 : Int64(1) << (shift - 1))
                masks.append(shift == 0 ? 0 : -1)
            }
        }
        self.mantissas = mantissas
        self.shifts = shifts
        self.roundings = roundings
        negativeMasks = masks
        self.zeroPoint = Int64(zeroPoint)
        lower = Int64(clamp.lowerBound)
        upper = Int64(clamp.upperBound)
    }

    var count: Int { mantissas.count }

    /// Calls `body(j, code)` with the requantized, clamped code of `acc[j]` for `j` in `0..<count`, using the
    /// constants of column `firstColumn + j` (or the single column's when not `perColumn`).
    @inline(__always)
    func forEachCode(_ acc: UnsafePointer<Int32>, count: Int, firstColumn: Int, perColumn: Bool,
                     _ body: (Int, Int32) -> Void) {
        mantissas.withUnsafeBufferPointer { mantissas in
        shifts.withUnsafeBufferPointer { shifts in
        roundings.withUnsafeBufferPointer { roundings in
        negativeMasks.withUnsafeBufferPointer { masks in
            let z = zeroPoint, lo = lower, hi = upper
            @inline(__always) func code(_ acc: Int32, _ mantissa: Int64, _ rounding: Int64, _ mask: Int64, _ shift: Int64) -> Int32 {
                let p = Int64(acc) &* mantissa
                let q = ((p &+ rounding &+ ((p >> 63) & mask)) >> shift) &+ z
                return Int32(truncatingIfNeeded: q < lo ? lo : (q > hi ? hi : q))
            }
            if perColumn {
                let mb = mantissas.baseAddress! + firstColumn, sb = shifts.baseAddress! + firstColumn
                let rb = roundings.baseAddress! + firstColumn, nb = masks.baseAddress! + firstColumn
                for j in 0..<count { body(j, code(acc[j], mb[j], rb[j], nb[j], sb[j])) }
            } else {
                let mantissa = mantissas[0], shift = shifts[0], rounding = roundings[0], mask = masks[0]
                for j in 0..<count { body(j, code(acc[j], mantissa, rounding, mask, shift)) }
            }
        }}}}
    }

    /// Writes `count` requantized values: `acc[j]` with the constants of column `firstColumn + j`, to
    /// `output[j·stride]`.
    @inline(__always)
    func apply<Output: FixedWidthInteger>(
        _ acc: UnsafePointer<Int32>, count: Int, firstColumn: Int, perColumn: Bool,
        output: UnsafeMutablePointer<Output>, stride: Int
    ) {
        forEachCode(acc, count: count, firstColumn: firstColumn, perColumn: perColumn) { j, code in
            output[j &* stride] = Output(truncatingIfNeeded: code)
        }
    }

    /// Like `apply`, then dequantizes the code at once: `y = Float(q − z) · scale [+ bias]` (DequantizeLinear's
    /// arithmetic, then Add's). `bias` advances by `biasStride` per element (0: one value for all).
    @inline(__always)
    func applyDequantized(
        _ acc: UnsafePointer<Int32>, count: Int, firstColumn: Int, perColumn: Bool, scale: Float,
        bias: UnsafePointer<Float>?, biasStride: Int, output: UnsafeMutablePointer<Float>, stride: Int
    ) {
        let zero = Int32(truncatingIfNeeded: zeroPoint)
        if let bias {
            forEachCode(acc, count: count, firstColumn: firstColumn, perColumn: perColumn) { j, code in
                output[j &* stride] = Float(code &- zero) * scale + bias[j &* biasStride]
            }
        } else {
            forEachCode(acc, count: count, firstColumn: firstColumn, perColumn: perColumn) { j, code in
                output[j &* stride] = Float(code &- zero) * scale
            }
        }
    }
}

/// Requantizes, then dequantizes (`ColumnRequantization.applyDequantized`), element (i, j) at
/// `y[i·rowStride + j·columnStride]`, with an optional float bias per column.
struct DequantizedOutputStage: FusedGEMMOutputStage {
    let requantization: ColumnRequantization
    let scale: Float
    let bias: UnsafePointer<Float>?
    let output: UnsafeMutablePointer<Float>
    let rowStride: Int
    let columnStride: Int

    func finish(_ acc: UnsafePointer<Int32>, ldc: Int, rows: Range<Int>, columns: Range<Int>) {
        let perColumn = requantization.count > 1
        for i in rows {
            requantization.applyDequantized(
                acc + i * ldc + columns.lowerBound, count: columns.count, firstColumn: columns.lowerBound,
                perColumn: perColumn, scale: scale, bias: bias.map { $0 + columns.lowerBound }, biasStride: 1,
                output: output + i * rowStride + columns.lowerBound * columnStride, stride: columnStride)
        }
    }
}

/// Requantizes accumulators into uint8/int8 `y`, element (i, j) at `y[i·rowStride + j·columnStride]`.
struct QuantizedOutputStage<Output: FixedWidthInteger>: FusedGEMMOutputStage {
    let requantization: ColumnRequantization
    let output: UnsafeMutablePointer<Output>
    let rowStride: Int
    let columnStride: Int

    func finish(_ acc: UnsafePointer<Int32>, ldc: Int, rows: Range<Int>, columns: Range<Int>) {
        let perColumn = requantization.count > 1
        for i in rows {
            requantization.apply(
                acc + i * ldc + columns.lowerBound, count: columns.count, firstColumn: columns.lowerBound,
                perColumn: perColumn, output: output + i * rowStride + columns.lowerBound * columnStride,
                stride: columnStride)
        }
    }
}

/// Float outputs `y = clamp(Float(acc) · scale[j] + bias[j], lower, upper)`, element (i, j) at
/// `y[i·rowStride + j·columnStride]`. The product is rounded to float32 before the bias is added
/// (no fused multiply-add), as a Cast → Mul → Add chain computes it.
struct FloatOutputStage: FusedGEMMOutputStage {
    let scales: UnsafePointer<Float>
    let bias: UnsafePointer<Float>?
    let lower: Float
    let upper: Float
    let output: UnsafeMutablePointer<Float>
    let rowStride: Int
    let columnStride: Int

    /// Corrections and output in one vectorised pass (`sq_qgemm_float_output`) when columns are contiguous.
    func correctAndFinish(_ acc: UnsafeMutablePointer<Int32>, ldc: Int, rows: Range<Int>, columns: Range<Int>,
                          corrections: GEMMCorrections, level: Int8GEMMLevel) {
        let first = columns.lowerBound
        if level != .reference, columnStride == 1,
           sq_qgemm_float_output(TransformerKernelLevel.best.rawValue, acc + rows.lowerBound * ldc + first, ldc, rows.count,
                                 columns.count, corrections.offsets.baseAddress! + first,
                                 corrections.zeroPoints.map { $0.baseAddress! + first },
                                 corrections.rowSums.baseAddress.map { $0 + rows.lowerBound },
                                 scales + first, bias.map { $0 + first }, lower, upper,
                                 output + rows.lowerBound * rowStride + first, rowStride) != 0 {
            return
        }
        FusedInt8GEMM.correct(acc, ldc: ldc, rows: rows, columns: columns, offsets: corrections.offsets,
                              zeroPoints: corrections.zeroPoints, rowSums: corrections.rowSums)
        finish(acc, ldc: ldc, rows: rows, columns: columns)
    }

    func finish(_ acc: UnsafePointer<Int32>, ldc: Int, rows: Range<Int>, columns: Range<Int>) {
        let width = columns.count, first = columns.lowerBound
        let scale = scales + first
        let lo = lower, hi = upper, stride = columnStride
        for i in rows {
            let row = acc + i * ldc + first
            let target = output + i * rowStride + first * columnStride
            if let bias {
                let shift = bias + first
                for j in 0..<width {
                    let value = Float(row[j]) * scale[j] + shift[j]
                    target[j &* stride] = value < lo ? lo : (value > hi ? hi : value)
                }
            } else {
                for j in 0..<width {
                    let value = Float(row[j]) * scale[j]
                    target[j &* stride] = value < lo ? lo : (value > hi ? hi : value)
                }
            }
        }
    }
}

/// Copies the corrected accumulators to `y` (row stride `rowStride`, columns contiguous).
struct Int32OutputStage: FusedGEMMOutputStage {
    let output: UnsafeMutablePointer<Int32>
    let rowStride: Int

    func finish(_ acc: UnsafePointer<Int32>, ldc: Int, rows: Range<Int>, columns: Range<Int>) {
        for i in rows {
            (output + i * rowStride + columns.lowerBound).update(from: acc + i * ldc + columns.lowerBound,
                                                                 count: columns.count)
        }
    }
}
