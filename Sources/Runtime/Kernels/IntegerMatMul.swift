import Tensors

// Shapes, parameter expansion and the reference int32 row loop shared by MatMulInteger and QLinearMatMul
// (the fast path is Int8/IntegerMatMul+GEMM.swift).

/// The numpy-matmul view of two integer operands: 1-D `a` is a row `[1, K]` and 1-D `b` a column
/// `[K, 1]` (their unit axis dropped from the output); leading batch axes broadcast.
struct IntegerMatMulShape: Sendable {
    let rows: Int     // M
    let depth: Int    // K
    let columns: Int  // N
    let outputShape: [Int]
    /// `a` and `b` with 1-D operands promoted to 2-D.
    let promotedA: [Int]
    let promotedB: [Int]
    /// For each output batch (row-major over the broadcast batch shape), the batch index into a and b.
    let aBatchIndex: [Int]
    let bBatchIndex: [Int]

    var batchCount: Int { aBatchIndex.count }

    init(a: [Int], b: [Int]) throws {
        guard !a.isEmpty, !b.isEmpty else {
            throw KernelError.invalid("matmul operands must have rank at least 1, got \(a) and \(b)")
        }
        let promotedA = a.count == 1 ? [1, a[0]] : a
        let promotedB = b.count == 1 ? [b[0], 1] : b
        let rows = promotedA[promotedA.count - 2], depth = promotedA[promotedA.count - 1]
        let columns = promotedB[promotedB.count - 1]
        guard promotedB[promotedB.count - 2] == depth else {
            throw KernelError.invalid("matmul inner dimensions differ: a \(a), b \(b)")
        }
        let aBatch = Array(promotedA.dropLast(2)), bBatch = Array(promotedB.dropLast(2))
        guard let batch = Shape.broadcast(aBatch, bBatch) else {
            throw KernelError.invalid("matmul batch dimensions of a \(a) and b \(b) do not broadcast")
        }
        var outputShape = batch
        if a.count > 1 { outputShape.append(rows) }
        if b.count > 1 { outputShape.append(columns) }
        _ = try Shape.elementCount(outputShape)
        self.rows = rows
        self.depth = depth
        self.columns = columns
        self.outputShape = outputShape
        self.promotedA = promotedA
        self.promotedB = promotedB
        aBatchIndex = broadcastSourceIndices(source: aBatch, target: batch)
        bBatchIndex = broadcastSourceIndices(source: bBatch, target: batch)
    }

    /// Which operand a per-row or per-column parameter belongs to.
    enum Side { case rows, columns }

    /// For a zero point or scale of `a` (`.rows`) or `b` (`.columns`): the parameter's element index for
    /// each (operand batch, row) or (operand batch, column), row-major.
    ///
    /// Accepted shapes: one element (per tensor); a vector of M for `a` / N for `b` (per row / per
    /// column, as the ONNX text describes for 2-D inputs); or any shape that broadcasts to the operand
    /// with its K axis set to 1 (`[..., M, 1]` / `[..., 1, N]`).
    func parameterIndices(_ parameterShape: [Int], side: Side, input index: Int) throws -> [Int] {
        let operand = side == .rows ? promotedA : promotedB
        var target = operand
        target[side == .rows ? target.count - 1 : target.count - 2] = 1
        let count = try Shape.elementCount(target)
        if try Shape.elementCount(parameterShape) == 1 { return [Int](repeating: 0, count: count) }
        var shape = parameterShape
        if shape.count == 1, side == .rows { shape = [shape[0], 1] }
        let fits = shape.count <= target.count
            && zip(shape.reversed(), target.reversed()).allSatisfy { $0 == 1 || $0 == $1 }
        guard fits else {
            let expected = side == .rows ? "a scalar, \(rows) values (per row) or a shape broadcasting to \(target)"
                                         : "a scalar, \(columns) values (per column) or a shape broadcasting to \(target)"
            throw KernelError.invalidInput(index: index, reason: "shape \(parameterShape) must be \(expected)")
        }
        return broadcastSourceIndices(source: shape, target: target)
    }
}

/// For every element of `target` (row-major), the row-major index of the `source` element numpy
/// broadcasting reads there. `source` must broadcast to `target`.
func broadcastSourceIndices(source: [Int], target: [Int]) -> [Int] {
    let strides = broadcastStrides(source, to: target)
    let count = target.reduce(1, *)
    var result = [Int](repeating: 0, count: count)
    guard count > 0 else { return result }
    var position = [Int](repeating: 0, count: target.count)
    var offset = 0
    for i in 0..<count {
        result[i] = offset
        var axis = target.count - 1
        while axis >= 0 {
            position[axis] += 1
            offset += strides[axis]
            if position[axis] < target[axis] { break }
            offset -= strides[axis] * target[axis]
            position[axis] = 0
            axis -= 1
        }
    }
    return result
}

/// One output row of an integer matmul: `out[n] = Σ_k (a[k] - za) * (b[k, n] - zb[n])`, in int32 with
/// wrapping (two's complement) accumulation, as hardware int32 accumulators behave. ONNX allows the
/// accumulation to overflow only in 32 bits; the products themselves (|a - za|, |b - zb| < 384) never do.
@inline(__always)
func integerMatMulRow<A: FixedWidthInteger, B: FixedWidthInteger>(
    aRow: UnsafePointer<A>, aZero: Int32, b: UnsafePointer<B>, bZero: UnsafePointer<Int32>,
    depth: Int, columns: Int, output: UnsafeMutablePointer<Int32>
) {
    output.update(repeating: 0, count: columns)
    for k in 0..<depth {
        let left = Int32(truncatingIfNeeded: aRow[k]) &- aZero
        let bRow = b + k * columns
        for n in 0..<columns {
            output[n] = output[n] &+ left &* (Int32(truncatingIfNeeded: bRow[n]) &- bZero[n])
        }
    }
}

/// The reference twin of the GEMM path: `integerMatMulRow` for every output row (batch · M rows of N
/// int32 in `output`), in parallel over rows.
func referenceIntegerMatMul<A: FixedWidthInteger & TensorScalar, B: FixedWidthInteger & TensorScalar>(
    a: Tensor, _ aType: A.Type, b: Tensor, _ bType: B.Type, shape: IntegerMatMulShape,
    aZeros: [Int32], bZeros: [Int32], into output: UnsafeMutablePointer<Int32>, context: ExecutionContext
) {
    let rows = shape.rows, depth = shape.depth, columns = shape.columns
    let totalRows = shape.batchCount * rows
    guard totalRows > 0, columns > 0 else { return }
    a.withUnsafeBufferPointer(as: A.self) { aBuffer in
        b.withUnsafeBufferPointer(as: B.self) { bBuffer in
            aZeros.withUnsafeBufferPointer { aZeroBuffer in
                bZeros.withUnsafeBufferPointer { bZeroBuffer in
                    guard let aBase = aBuffer.baseAddress, let bBase = bBuffer.baseAddress,
                          let bZeroBase = bZeroBuffer.baseAddress else { return }
                    context.parallelFor(totalRows) { row in
                        let batch = row / rows, m = row % rows
                        let aBatch = shape.aBatchIndex[batch], bBatch = shape.bBatchIndex[batch]
                        integerMatMulRow(
                            aRow: aBase + (aBatch * rows + m) * depth, aZero: aZeroBuffer[aBatch * rows + m],
                            b: bBase + bBatch * depth * columns, bZero: bZeroBase + bBatch * columns,
                            depth: depth, columns: columns, output: output + row * columns)
                    }
                }
            }
        }
    }
}

/// Requantizes int32 accumulators the way the ONNX reference implementation does:
/// `y = saturate(round_half_even(Double(acc) * Double(multiplier)) + y_zero_point)`, the multiplier
/// `in_scale * w_scale / y_scale` having been computed in the scales' own precision (float32 for
/// float32 scales). The product is taken in float64 (numpy promotes int32 × float32 to float64). ONNX
/// Runtime instead multiplies in float32, so rare results next to a .5 boundary can differ by one from
/// it (e.g. acc 33259, multiplier 0.0034426772: 115 here and in the ONNX reference, 114 in ORT).
/// NaN results (a 0/0 scale) saturate to the lower bound, like QuantizeLinear.
///
/// Rounding adds 1.5 · 2^52: the sum lands in [2^52, 2^53), where doubles are spaced 1 apart, so the
/// default rounding mode rounds half to even and the integer sits in the low bits of the sum's pattern.
/// That avoids a libm call and a checked float-to-int conversion, so the loops around it vectorize. It is
/// exact for |x| < 2^51; larger products (and ±inf) are first clamped to ±2^40, far outside any 8- or
/// 16-bit range.
@inline(__always)
func requantize(_ accumulator: Int32, multiplier: Double, zeroPoint: Int32, lower: Int32, upper: Int32) -> Int32 {
    let limit = 1_099_511_627_776.0, roundingShift = 6_755_399_441_055_744.0
    let scaled = Double(accumulator) * multiplier
    let bounded = scaled > limit ? limit : (scaled >= -limit ? scaled : -limit)  // NaN becomes -limit
    let rounded = Int64(bitPattern: (bounded + roundingShift).bitPattern) &- Int64(bitPattern: roundingShift.bitPattern)
    let shifted = rounded &+ Int64(zeroPoint)
    let clamped = shifted > Int64(upper) ? Int64(upper) : (shifted >= Int64(lower) ? shifted : Int64(lower))
    return Int32(truncatingIfNeeded: clamped)
}

/// `(a * b) / y` with each step rounded to the scale type `S`, as numpy evaluates the ONNX reference's
/// `a_scale * b_scale / y_scale`. Float32 holds every float16/bfloat16 product and quotient closely
/// enough that rounding it to `S` gives the correctly rounded `S` result.
@inline(__always)
func requantizationMultiplier<S: QuantizationFloatElement>(_ a: Float, _ b: Float, _ y: Float, as type: S.Type) -> Double {
    let product = S(quantizationFloat: a * b).quantizationFloat
    return Double(S(quantizationFloat: product / y).quantizationFloat)
}
