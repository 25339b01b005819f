import Tensors

// MatMulInteger / QLinearMatMul accumulators on the int8 GEMM. Every 8-bit signedness pair maps onto
// uint8 × int8: int8 A is stored as a + 128 (its zero point too) and uint8 B as b - 128 (likewise), which
// leaves every (a - za)(b - zb) unchanged. The zero points then come out of the GEMM as row and column
// sum corrections (`Int8GEMM.subtractZeroPoints`), exact in wrapping int32 like the direct loops.

/// The B operand of an integer matmul packed for `Int8GEMM`, one matrix per B batch; built once for a
/// constant B when the session compiles the node.
struct PackedIntegerMatMulB: Sendable {
    let shape: [Int]
    let dtype: DType
    let matrices: [PackedInt8Matrix]
    /// What was added to B's values (and must be added to its zero points): -128 for uint8, 0 for int8.
    var shift: Int32 { dtype == .uint8 ? -128 : 0 }

    /// Packs `b` ([..., K, N], or [K] as a column); nil unless it is int8 or uint8 of rank >= 1.
    init?(_ b: Tensor) {
        guard b.dtype == .int8 || b.dtype == .uint8, b.rank >= 1 else { return nil }
        let promoted = b.rank == 1 ? [b.shape[0], 1] : b.shape
        let k = promoted[promoted.count - 2], n = promoted[promoted.count - 1]
        let batches = k * n == 0 ? 0 : b.count / (k * n)
        shape = b.shape
        dtype = b.dtype
        matrices = b.withUnsafeBytes { raw in
            (0..<batches).map { batch in
                let slice = UnsafeRawBufferPointer(rebasing: raw[(batch * k * n)..<((batch + 1) * k * n)])
                return b.dtype == .uint8
                    ? PackedInt8Matrix(k: k, n: n, unsignedValues: slice.bindMemory(to: UInt8.self), transposed: false)
                    : PackedInt8Matrix(k: k, n: n, values: slice.bindMemory(to: Int8.self), transposed: false)
            }
        }
    }

    /// This packing when it was made from a tensor of `b`'s shape and type, else a fresh one.
    func matching(_ b: Tensor) -> PackedIntegerMatMulB? {
        shape == b.shape && dtype == b.dtype ? self : PackedIntegerMatMulB(b)
    }
}

/// A 8-bit operand as uint8 bytes: uint8 as is, int8 as a + 128 (the sign bit flipped).
struct UnsignedOperand {
    let bytes: [UInt8]?
    let tensor: Tensor
    /// What was added to the values (and must be added to the zero points).
    let shift: Int32

    init(_ tensor: Tensor) {
        self.tensor = tensor
        if tensor.dtype == .int8 {
            bytes = tensor.withUnsafeBytes { raw in raw.map { $0 ^ 0x80 } }
            shift = 128
        } else {
            bytes = nil
            shift = 0
        }
    }

    func withPointer<R>(_ body: (UnsafePointer<UInt8>) -> R) -> R {
        if let bytes { return bytes.withUnsafeBufferPointer { body($0.baseAddress!) } }
        return tensor.withUnsafeBytes { body($0.bindMemory(to: UInt8.self).baseAddress!) }
    }
}

/// Fills `output` (batch · M · N int32, row-major) with `(A - za) @ (B - zb)` for every output batch:
/// `Int8GEMM` at `level`, or the direct loops of `referenceIntegerMatMul` at `.reference`.
/// `aZeros`/`bZeros` are the expanded per-(batch, row) / per-(batch, column) zero points.
func integerMatMulAccumulators(
    a: Tensor, b: Tensor, prepacked: PackedIntegerMatMulB?, shape: IntegerMatMulShape,
    aZeros: [Int32], bZeros: [Int32], level: Int8GEMMLevel, output: UnsafeMutablePointer<Int32>,
    context: ExecutionContext
) {
    let rows = shape.rows, depth = shape.depth, columns = shape.columns
    guard shape.batchCount * rows > 0, columns > 0 else { return }
    guard level != .reference, depth > 0, let packedB = prepacked?.matching(b) ?? PackedIntegerMatMulB(b) else {
        func reference<A: FixedWidthInteger & TensorScalar, B: FixedWidthInteger & TensorScalar>(_: A.Type, _: B.Type) {
            referenceIntegerMatMul(a: a, A.self, b: b, B.self, shape: shape, aZeros: aZeros, bZeros: bZeros,
                                   into: output, context: context)
        }
        switch (a.dtype, b.dtype) {
        case (.uint8, .uint8): reference(UInt8.self, UInt8.self)
        case (.uint8, _): reference(UInt8.self, Int8.self)
        case (_, .uint8): reference(Int8.self, UInt8.self)
        default: reference(Int8.self, Int8.self)
        }
        return
    }
    let aOperand = UnsignedOperand(a)
    let aShift = aOperand.shift, bShift = packedB.shift
    let shiftedA = aZeros.map { $0 &+ aShift }, shiftedB = bZeros.map { $0 &+ bShift }
    let aBatches = shiftedA.count / max(rows, 1)
    aOperand.withPointer { aBase in
        var rowSums = [Int32](repeating: 0, count: aBatches * rows)
        if shiftedB.contains(where: { $0 != 0 }) {
            Int8GEMM.rowSums(m: aBatches * rows, k: depth, a: aBase, lda: depth, into: &rowSums)
        }
        // Batches first; a batch's GEMM is split further only when there are fewer batches than threads.
        let split = WorkSplit(rows: rows, columns: columns,
                              threads: shape.batchCount >= context.threadCount ? 1 : context.threadCount)
        rowSums.withUnsafeBufferPointer { rowSums in
        shiftedA.withUnsafeBufferPointer { aZero in
        shiftedB.withUnsafeBufferPointer { bZero in
            context.parallelFor(shape.batchCount * split.parts) { item in
                let batch = item / split.parts
                let (rowRange, columnRange) = split.region(item % split.parts)
                let aBatch = shape.aBatchIndex[batch], bBatch = shape.bBatchIndex[batch]
                let firstRow = aBatch * rows + rowRange.lowerBound
                let c = output + (batch * rows + rowRange.lowerBound) * columns
                let matrix = packedB.matrices[bBatch]
                Int8GEMM.multiply(m: rowRange.count, a: aBase + firstRow * depth, lda: depth, b: matrix, c: c,
                                  ldc: columns, columns: columnRange, level: level)
                Int8GEMM.subtractZeroPoints(
                    m: rowRange.count, c: c, ldc: columns, columns: columnRange, b: matrix,
                    rowSums: rowSums.baseAddress! + firstRow, aZeros: aZero.baseAddress! + firstRow,
                    bZeros: bZero.baseAddress! + bBatch * columns)
            }
        }}}
    }
}
