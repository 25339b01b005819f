import GraphIR
import Tensors
import _CKernels

// Per-token (per-row) dynamic quantization of a MatMul, as `swiftquant quantize --mode dynamic` writes it:
//
//     s = Div(Max(ReduceMax(Abs(x), axes = [-1], keepdims = 1), ε), d)          one scale per row
//     q = QuantizeLinear(Div(x, s), 1, z)                                         int8 codes
//     y = Mul(Mul(Cast(MatMulInteger(q, W, z_a, w_zp), float), w_scale), s) [+ bias]
//
// `QuantizeRows` computes (q, s) and `RowScaledQMatMul` the rest. Both perform the float32 operations of
// the nodes they replace, in the same order, so the outputs equal the unfused graph bit for bit.

/// `com.swiftquant::QuantizeRows`: `x` (float32 `[..., K]`) → codes `q` (the zero point's 8-bit type,
/// `x`'s shape) and row scales `s` (float32 `[..., 1]`):
///
///     m = max_k |x[k]| (NaN if any is NaN, −inf for K = 0)
///     s = Max(m, epsilon) / divisor
///     q = clamp(round_half_even(x / s) + zero_point)        (NaN to the type's minimum)
///
/// Inputs: `x`, `zero_point` (constant, one int8/uint8 value). Attributes: `epsilon` (default −inf: no
/// guard), `divisor`.
struct FusedQuantizeRowsKernel: Kernel {
    let epsilon: Float
    let divisor: Float
    let zeroPoint: Int32
    let codeType: DType

    init(_ context: KernelBuildContext) throws {
        epsilon = try context.float("epsilon", default: -.infinity)
        divisor = try context.float("divisor")
        guard let zero = try context.constantInput(1, "zero_point"), zero.count == 1,
              zero.dtype == .int8 || zero.dtype == .uint8 else {
            throw KernelError.invalid("zero_point must be one constant int8 or uint8 value")
        }
        zeroPoint = try zero.quantizedIntegerValues(input: 1)[0]
        codeType = zero.dtype
    }

    var codeRange: ClosedRange<Int32> { codeType == .int8 ? -128...127 : 0...255 }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        try run(inputs, context: context, level: nil)
    }

    /// `run` with the vector level forced (tests); `.portable` runs the Swift loops.
    func run(_ inputs: [Tensor?], context: ExecutionContext, level: SGEMM.Level?) throws -> [Tensor] {
        let x = try required(inputs, 0)
        guard x.dtype == .float32, x.rank >= 1 else {
            throw KernelError.invalidInput(index: 0, reason: "x must be float32 of rank >= 1, got \(x.dtype) \(x.shape)")
        }
        let k = x.shape[x.rank - 1]
        let rowShape = Array(x.shape.dropLast()) + [1]
        let rows = try Shape.elementCount(rowShape)
        let codes = try context.output(codeType, shape: x.shape)
        let scales = try context.output(.float32, shape: rowShape)
        let s = scales.pointer(as: Float.self)
        let q = codes.bytes.assumingMemoryBound(to: UInt8.self)
        let (epsilon, divisor, zero) = (self.epsilon, self.divisor, zeroPoint)
        let range = codeRange
        let levelCode = (level ?? .best).rawValue
        x.withUnsafeBufferPointer(as: Float.self) { source in
            guard let base = source.baseAddress, k > 0 else {
                // No elements: every row's maximum is ReduceMax's −inf.
                for row in 0..<rows { s[row] = Self.rowScale(nil, 0, epsilon: epsilon, divisor: divisor) }
                return
            }
            let threads = rows * k >= 1 << 15 ? context.threadCount : 1
            Parallel.forRanges(rows, threads: threads, grain: max(1, 4096 / k)) { block in
                let values = base + block.lowerBound * k, codes = q + block.lowerBound * k, scales = s + block.lowerBound
                if sq_quantize_rows(levelCode, values, block.count, k, epsilon, divisor, zero, range.lowerBound,
                                    range.upperBound, codes, scales) == 0 {
                    Self.quantizeRows(values, block.count, k, epsilon: epsilon, divisor: divisor, zero: zero,
                                      range: range, codes: codes, scales: scales)
                }
            }
        }
        return [codes.tensor, scales.tensor]
    }

    /// The portable loops of `sq_quantize_rows`.
    static func quantizeRows(_ x: UnsafePointer<Float>, _ rows: Int, _ k: Int, epsilon: Float, divisor: Float,
                             zero: Int32, range: ClosedRange<Int32>, codes: UnsafeMutablePointer<UInt8>,
                             scales: UnsafeMutablePointer<Float>) {
        let lower = Float(range.lowerBound), upper = Float(range.upperBound), zeroValue = Float(zero)
        for row in 0..<rows {
            let values = x + row * k
            let scale = rowScale(values, k, epsilon: epsilon, divisor: divisor)
            scales[row] = scale
            if range.lowerBound < 0 {
                FloatQuantization.quantize(values, k, scale, zeroValue, lower, upper,
                                             UnsafeMutableRawPointer(codes + row * k).assumingMemoryBound(to: Int8.self))
            } else {
                FloatQuantization.quantize(values, k, scale, zeroValue, lower, upper, codes + row * k)
            }
        }
    }

    /// `Max(ReduceMax(|x|), ε) / d` for one row, with ReduceMax's and Max's NaN propagation.
    @inline(__always)
    static func rowScale(_ x: UnsafePointer<Float>?, _ count: Int, epsilon: Float, divisor: Float) -> Float {
        // ReduceMax(Abs(x))'s fold: NaN if any element is NaN, −inf for none.
        let magnitude = x.map { foldRow($0, count, MaximumFold.self, MagnitudePrelude.self) } ?? -.infinity
        // Max as the elementwise kernel computes it: NaN in either operand wins.
        let guarded = (magnitude < epsilon || epsilon.isNaN) ? epsilon : magnitude
        return guarded / divisor
    }

    /// The reference twin: each replaced operator's float32 step, element by element.
    func runReference(_ x: Tensor) throws -> (codes: [Int32], scales: [Float]) {
        let values = x.scalars(as: Float.self)
        let k = x.shape.last ?? 0
        let rows = k == 0 ? try Shape.elementCount(Array(x.shape.dropLast())) : values.count / k
        var codes: [Int32] = [], scales: [Float] = []
        let lower = Float(codeRange.lowerBound), upper = Float(codeRange.upperBound)
        for row in 0..<rows {
            var maximum = -Float.infinity
            for value in values[(row * k)..<(row * k + k)] {
                let magnitude = abs(value)
                if maximum < magnitude || magnitude.isNaN { maximum = magnitude }
            }
            let guarded = (maximum < epsilon || epsilon.isNaN) ? epsilon : maximum
            let scale = guarded / divisor
            scales.append(scale)
            for value in values[(row * k)..<(row * k + k)] {
                let shifted = ((value / scale) / 1).rounded(.toNearestOrEven) + Float(zeroPoint)
                codes.append(Int32(shifted > upper ? upper : (shifted >= lower ? shifted : lower)))
            }
        }
        return (codes, scales)
    }
}

/// `com.swiftquant::RowScaledQMatMul`: the tail of a per-row dynamic MatMul,
///
///     y[i][j] = (Float(Σ_k (q[i][k] − z_a)(W[k][j] − w_zp[j])) · w_scale[j]) · s[i]   [+ bias[j]]
///
/// (with `row_scale_first = 1` the two products swap: `(Float(acc) · s[i]) · w_scale[j]`), each product
/// rounded to float32 as the separate Mul nodes round it; with `activation = "Gelu"`, the exact Gelu of
/// that (the vector function `FloatFusion`'s Gelu kernel runs). Inputs: 0 `q` (int8/uint8 `[..., K]`), 1 `s`
/// (float32, one value per row of `q`), 2 `W` (int8/uint8 constant `[K, N]`), 3 `w_scale` (float32 constant,
/// 1 or N values), 4 `w_zero_point` (optional constant, 1 or N values of W's type), 5 `bias` (optional
/// float32 constant, N values), 6 `a_zero_point` (optional constant, one value of q's type).
/// W is packed for the int8 GEMM when the session is built.
struct FusedRowScaledQMatMulKernel: Kernel {
    let weights: FusedInt8Weights
    let weightValues: Tensor
    let weightQuantization: WeightQuantization
    let bias: [Float]?
    let activationZeroPoint: (value: Int32, dtype: DType)?
    let rowScaleFirst: Bool
    let activation: SGEMM.Activation?
    /// The column offsets for the activation zero point of int8 codes (`QuantizeRows`' type), made once.
    let usualOffsets: (zeroPoint: Int32, offsets: [Int32])

    init(_ context: KernelBuildContext) throws {
        guard let w = context.constant(2), w.rank == 2 else { throw KernelError.invalid("W must be a 2-D constant") }
        let (k, n) = (w.shape[0], w.shape[1])
        weightQuantization = try WeightQuantization(scale: try context.constantInput(3, "w_scale"),
                                                    zeroPoint: try context.constantInput(4, "w_zero_point"),
                                                    weightType: w.dtype, channels: n)
        let bias = try FusedBias.read(try context.constantInput(5, "bias"), channels: n)
        if bias.int32 != nil { throw KernelError.invalid("bias must be float32") }
        self.bias = bias.float
        if let zero = try context.constantInput(6, "a_zero_point") {
            guard zero.count == 1, zero.dtype == .int8 || zero.dtype == .uint8 else {
                throw KernelError.invalid("a_zero_point must be one int8 or uint8 value")
            }
            activationZeroPoint = (try zero.quantizedIntegerValues(input: 6)[0], zero.dtype)
        } else {
            activationZeroPoint = nil
        }
        rowScaleFirst = try context.int("row_scale_first", default: 0) != 0
        activation = try WeightOnlyActivation.read(context)
        guard activation == nil || activation == .gelu else {
            throw KernelError.invalidAttribute("activation", "must be Gelu when given")
        }
        weights = try FusedInt8Weights(weights: w, k: k, n: n, transposed: false,
                                       zeroPoints: weightQuantization.zeroPoints, bias: nil)
        weightValues = w
        // int8 codes are flipped to uint8 for the GEMM, their zero point with them.
        let flipped = (activationZeroPoint?.value ?? 0) + (activationZeroPoint?.dtype == .uint8 ? 0 : 128)
        usualOffsets = (flipped, weights.columnOffsets(activationZeroPoint: flipped))
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        try run(inputs, context: context, level: .best)
    }

    /// `run` with the int8 GEMM level forced (tests).
    func run(_ inputs: [Tensor?], context: ExecutionContext, level: Int8GEMMLevel) throws -> [Tensor] {
        let (q, rowScales, m, shape) = try checkedInputs(inputs)
        let output = try context.output(.float32, shape: shape)
        guard m > 0, weights.columns > 0 else { return [output.tensor] }
        let activations = try UInt8Activations(q, zeroPoint: activationZeroPoint?.value ?? 0)
        defer { activations.release() }
        let columnScales = weightQuantization.scales.count == 1
            ? [Float](repeating: weightQuantization.scales[0], count: weights.columns) : weightQuantization.scales
        columnScales.withUnsafeBufferPointer { columnScales in
            rowScales.withUnsafeBufferPointer(as: Float.self) { rowScales in
                let run = { (bias: UnsafePointer<Float>?) in
                    let stage = RowColumnScaledOutputStage(
                        columnScales: columnScales.baseAddress!, rowScales: rowScales.baseAddress!, bias: bias,
                        rowScaleFirst: rowScaleFirst, output: output.pointer(as: Float.self), rowStride: weights.columns,
                        level: level == .reference ? .portable : (level == .avx2 ? .avx2 : .best), activation: activation)
                    let za = activations.zeroPoint
                    RowScaledGEMM.run(m: m, a: activations.pointer,
                                      offsets: za == usualOffsets.zeroPoint ? usualOffsets.offsets
                                                                            : weights.columnOffsets(activationZeroPoint: za),
                                      weights: weights, stage: stage, threads: context.threadCount, level: level)
                }
                if let bias { bias.withUnsafeBufferPointer { run($0.baseAddress!) } } else { run(nil) }
            }
        }
        return [output.tensor]
    }

    /// The reference twin: accumulators from the original values, then Cast, Mul, Mul [and Add] per element.
    func runReference(_ inputs: [Tensor?]) throws -> [Tensor] {
        let (q, rowScales, m, shape) = try checkedInputs(inputs)
        let n = weights.columns
        let acc = FusedInt8Reference.accumulators(
            m: m, k: weights.depth, n: n, a: try q.quantizedIntegerValues(input: 0),
            activationZeroPoint: activationZeroPoint?.value ?? 0, b: try weightValues.quantizedIntegerValues(input: 2),
            weightZeroPoints: weightQuantization.zeroPoints, bias: nil)
        let s = rowScales.scalars(as: Float.self)
        let values = acc.indices.map { index -> Float in
            let (i, j) = (index / n, index % n)
            let widened = Float(acc[index])
            var y = rowScaleFirst ? (widened * s[i]) * weightQuantization.scale(j)
                                  : (widened * weightQuantization.scale(j)) * s[i]
            if let bias { y = y + bias[j] }
            return y
        }
        guard activation == .gelu else { return [try Tensor(shape: shape, scalars: values)] }
        var activated = values
        values.withUnsafeBufferPointer { source in
            activated.withUnsafeMutableBufferPointer { VectorMath.gelu(source.baseAddress!, $0.baseAddress!, count: values.count) }
        }
        return [try Tensor(shape: shape, scalars: activated)]
    }

    private func checkedInputs(_ inputs: [Tensor?]) throws -> (Tensor, Tensor, rows: Int, shape: [Int]) {
        let q = try required(inputs, 0), s = try required(inputs, 1)
        guard q.dtype == .int8 || q.dtype == .uint8 else {
            throw KernelError.invalidInput(index: 0, reason: "q must be int8 or uint8, got \(q.dtype)")
        }
        if let zero = activationZeroPoint, zero.dtype != q.dtype {
            throw KernelError.invalidInput(index: 6, reason: "a_zero_point of \(zero.dtype) does not match q of \(q.dtype)")
        }
        guard q.rank >= 1, q.shape[q.rank - 1] == weights.depth else {
            throw KernelError.invalidInput(index: 0, reason: "q \(q.shape) does not end in K = \(weights.depth)")
        }
        let leading = Array(q.shape.dropLast())
        let rows = try Shape.elementCount(leading)
        guard s.dtype == .float32, s.count == rows else {
            throw KernelError.invalidInput(index: 1, reason: "row scales must be \(rows) float32 values, got \(s.dtype) \(s.shape)")
        }
        return (q, s, rows, leading + [weights.columns])
    }
}

/// The int8 GEMM of `RowScaledQMatMul` in tiles of at most 64 rows × 192 columns: each tile's int32 sums
/// stay in a 48 KB buffer (in L1/L2) while the zero-point correction and the float scaling read them.
/// 192 columns are whole micro-kernel widths at every level (48 columns for VNNI, 32, 16), so no tile
/// runs a narrow remainder except at the matrix's edge.
enum RowScaledGEMM {
    static let tileRows = 64
    static let tileColumns = 192

    /// `stage` over `acc = (A − za)(B − zb)` for A uint8 `m × K` (row stride K) and the packed weights.
    /// `offsets` are `weights.columnOffsets(activationZeroPoint: za)`.
    static func run(m: Int, a: UnsafePointer<UInt8>, offsets: [Int32], weights: FusedInt8Weights,
                    stage: RowColumnScaledOutputStage, threads: Int, level: Int8GEMMLevel) {
        let n = weights.columns, k = weights.depth
        guard m > 0, n > 0 else { return }
        var rowSums: [Int32] = []
        if weights.hasZeroPoints {
            rowSums = [Int32](repeating: 0, count: m)
            rowSums.withUnsafeMutableBufferPointer { Int8GEMM.rowSums(m: m, k: k, a: a, lda: k, into: $0.baseAddress!) }
        }
        let rowTiles = (m + tileRows - 1) / tileRows, columnTiles = (n + tileColumns - 1) / tileColumns
        let tiles = rowTiles * columnTiles
        // Below about 1 M multiply-adds, waking another thread costs more than it saves.
        let workers = m * n * k < 1 << 20 ? 1 : threads
        offsets.withUnsafeBufferPointer { offsets in
            weights.zeroPoints.withUnsafeBufferPointer { zeroPoints in
                rowSums.withUnsafeBufferPointer { rowSums in
                    let corrections = TileCorrections(offsets: offsets.baseAddress!,
                                                      zeroPoints: weights.hasZeroPoints ? zeroPoints.baseAddress! : nil,
                                                      rowSums: rowSums.baseAddress)
                    Parallel.forRanges(tiles, threads: workers, grain: 1) { range in
                        let tile = UnsafeMutablePointer<Int32>.allocate(capacity: tileRows * tileColumns)
                        defer { tile.deallocate() }
                        for index in range {
                            // Column-major over tiles: consecutive tiles of a thread share a panel of B.
                            let rowTile = index % rowTiles, columnTile = index / rowTiles
                            let rows = (rowTile * tileRows)..<min(m, (rowTile + 1) * tileRows)
                            let columns = (columnTile * tileColumns)..<min(n, (columnTile + 1) * tileColumns)
                            multiplyTile(rows: rows, columns: columns, a: a, k: k, b: weights.packed, tile: tile,
                                         level: level)
                            stage.finish(tile, rows: rows, columns: columns, corrections: corrections)
                        }
                    }
                }
            }
        }
    }

    /// Raw sums of A's `rows` and B's `columns` into `tile` (row stride `tileColumns`). `Int8GEMM.multiply`
    /// wants C's row stride to cover the column range, which a tile's does not, hence the direct call.
    @inline(__always)
    static func multiplyTile(rows: Range<Int>, columns: Range<Int>, a: UnsafePointer<UInt8>, k: Int,
                             b: PackedInt8Matrix, tile: UnsafeMutablePointer<Int32>, level: Int8GEMMLevel) {
        let resolved = level.isAvailable ? level : .best
        // Both kernels write column j at c[i·ldc + j]: shift the tile back by its first column.
        let c = tile - columns.lowerBound, rowsA = a + rows.lowerBound * k
        if resolved == .reference {
            Int8GEMM.referenceMultiply(m: rows.count, a: rowsA, lda: k, b: b, c: c, ldc: tileColumns, columns: columns)
        } else {
            sq_qgemm_u8s8(Int32(resolved.rawValue), rows.count, b.n, b.k, rowsA, k,
                          UnsafePointer(b.packed.baseAddress!.assumingMemoryBound(to: Int8.self)),
                          columns.lowerBound, columns.upperBound, c, tileColumns)
        }
    }
}

/// The zero-point terms of `FusedInt8GEMM`'s identity: `acc += offsets[j] − zb[j]·rowSums[i]`.
struct TileCorrections {
    let offsets: UnsafePointer<Int32>
    /// nil when every weight zero point is 0 (no row sums needed).
    let zeroPoints: UnsafePointer<Int32>?
    let rowSums: UnsafePointer<Int32>?
}

/// Float outputs `y[i][j] = (Float(acc) · columnScales[j]) · rowScales[i] [+ bias[j]]` (or the row scale
/// first), each operation rounded to float32 on its own, rows contiguous with stride `rowStride`.
struct RowColumnScaledOutputStage {
    let columnScales: UnsafePointer<Float>
    let rowScales: UnsafePointer<Float>
    let bias: UnsafePointer<Float>?
    let rowScaleFirst: Bool
    let output: UnsafeMutablePointer<Float>
    let rowStride: Int

    /// The vector level of the float steps (`.portable` runs the Swift loops below, their twin).
    let level: SGEMM.Level
    /// Applied to each finished tile while it is in cache.
    var activation: SGEMM.Activation? = nil

    /// Corrects and scales one tile of raw sums (`tile[r · tileColumns + c]` for row `rows.lowerBound + r` and
    /// column `columns.lowerBound + c`).
    func finish(_ tile: UnsafeMutablePointer<Int32>, rows: Range<Int>, columns: Range<Int>, corrections: TileCorrections) {
        scale(tile, rows: rows, columns: columns, corrections: corrections)
        if let activation {
            SGEMM.Epilogue(activation: activation).apply(to: output + rows.lowerBound * rowStride + columns.lowerBound,
                                                         rows: rows.count, columns: columns.count, ldc: rowStride)
        }
    }

    private func scale(_ tile: UnsafeMutablePointer<Int32>, rows: Range<Int>, columns: Range<Int>, corrections: TileCorrections) {
        let width = columns.count, first = columns.lowerBound
        let scale = columnScales + first, offset = corrections.offsets + first
        let zeroPoints = corrections.rowSums == nil ? nil : corrections.zeroPoints.map { $0 + first }
        let shift = bias.map { $0 + first }
        if sq_row_scaled_output(level.rawValue, tile, RowScaledGEMM.tileColumns, rows.count, width, offset, zeroPoints,
                                corrections.rowSums.map { $0 + rows.lowerBound }, scale, rowScales + rows.lowerBound,
                                shift, rowScaleFirst ? 1 : 0, output + rows.lowerBound * rowStride + first, rowStride) != 0 {
            return
        }
        for i in rows {
            let row = tile + (i - rows.lowerBound) * RowScaledGEMM.tileColumns
            if let zeroPoints, let rowSums = corrections.rowSums {
                let rowSum = rowSums[i]
                for j in 0..<width { row[j] = row[j] &+ offset[j] &- zeroPoints[j] &* rowSum }
            } else {
                for j in 0..<width { row[j] = row[j] &+ offset[j] }
            }
            let target = output + i * rowStride + first
            let rowScale = rowScales[i]
            switch (rowScaleFirst, shift) {
            case (false, nil):
                for j in 0..<width { target[j] = (Float(row[j]) * scale[j]) * rowScale }
            case (false, let shift?):
                for j in 0..<width { target[j] = (Float(row[j]) * scale[j]) * rowScale + shift[j] }
            case (true, nil):
                for j in 0..<width { target[j] = (Float(row[j]) * rowScale) * scale[j] }
            case (true, let shift?):
                for j in 0..<width { target[j] = (Float(row[j]) * rowScale) * scale[j] + shift[j] }
            }
        }
    }
}
