import Tensors

// ConvInteger / QLinearConv accumulators as im2col + int8 GEMM. Per batch, group and chunk of output
// positions, the window of every position becomes one uint8 row of K = C/group · kernel size bytes
// (channel-major, then kernel taps, as the weights are laid out), padding taps hold the input zero point
// (so they add nothing once corrected), and the rows are multiplied by the group's packed weights
// (transposed: one column per output channel). As for MatMulInteger, int8 x is stored as x + 128 and uint8
// w as w - 128, with their zero points shifted alike.

/// Conv weights `[M, C/group, k…]` packed for `Int8GEMM`, one K x (M/group) matrix per group; built once
/// for constant weights when the session compiles the node.
struct PackedConvWeights: Sendable {
    let shape: [Int]
    let dtype: DType
    let group: Int
    let groups: [PackedInt8Matrix]
    /// What was added to the weights (and must be added to their zero points): -128 for uint8.
    var shift: Int32 { dtype == .uint8 ? -128 : 0 }

    /// nil unless `w` is int8/uint8 of rank >= 3 with output channels divisible by `group`.
    init?(_ w: Tensor, group: Int) {
        guard w.dtype == .int8 || w.dtype == .uint8, w.rank >= 3, group >= 1, w.shape[0] % group == 0 else { return nil }
        let channels = w.shape[0], perGroup = channels / group
        let depth = channels == 0 ? 0 : w.count / channels
        shape = w.shape
        dtype = w.dtype
        self.group = group
        groups = w.withUnsafeBytes { raw in
            (0..<group).map { g in
                let slice = UnsafeRawBufferPointer(rebasing: raw[(g * perGroup * depth)..<((g + 1) * perGroup * depth)])
                return w.dtype == .uint8
                    ? PackedInt8Matrix(k: depth, n: perGroup, unsignedValues: slice.bindMemory(to: UInt8.self), transposed: true)
                    : PackedInt8Matrix(k: depth, n: perGroup, values: slice.bindMemory(to: Int8.self), transposed: true)
            }
        }
    }

    /// This packing when it was made from a tensor of `w`'s shape and type with the same group, else a fresh one.
    func matching(_ w: Tensor, group: Int) -> PackedConvWeights? {
        shape == w.shape && dtype == w.dtype && self.group == group ? self : PackedConvWeights(w, group: group)
    }
}

/// Bytes of one im2col chunk: rows of a chunk stay in L2 together with the group's weights.
private let im2colChunkBytes = 96 * 1024

/// `conv(x - xZero, w - wZeros[m])` as an int32 `[N, M, O…]` tensor: im2col + `Int8GEMM` at `level`, or
/// the direct loop of `integerConvolution` (the reference twin) at `.reference`.
func integerConvolutionAccumulators(
    x: Tensor, xZero: Int32, w: Tensor, wZeros: [Int32], geometry g: IntegerConvGeometry,
    prepacked: PackedConvWeights?, level: Int8GEMMLevel, context: ExecutionContext
) throws -> Tensor {
    var y = try Tensor(zeros: .int32, shape: g.outputShape)
    let positions = g.outputPlaneSize
    let groupInputs = g.inputChannels / g.group, groupOutputs = g.outputChannels / g.group
    let depth = groupInputs * g.kernelSize
    guard positions > 0, g.batch > 0, groupOutputs > 0, depth > 0 else { return y }
    guard level != .reference, let packed = prepacked?.matching(w, group: g.group) ?? PackedConvWeights(w, group: g.group) else {
        let xValues = try x.quantizedIntegerValues(input: 0).map { $0 &- xZero }
        var wValues = try w.quantizedIntegerValues(input: 1)
        for m in 0..<g.outputChannels {
            for i in (m * depth)..<((m + 1) * depth) { wValues[i] = wValues[i] &- wZeros[m] }
        }
        y.withUnsafeMutableBufferPointer(as: Int32.self) { output in
            xValues.withUnsafeBufferPointer { xValues in
                wValues.withUnsafeBufferPointer { wValues in
                    integerConvolution(x: xValues, w: wValues, geometry: g, output: output, context: context)
                }
            }
        }
        return y
    }

    let flip: UInt8 = x.dtype == .int8 ? 0x80 : 0
    let xZeroShifted = xZero &+ (x.dtype == .int8 ? 128 : 0)  // in 0...255: it is a stored byte value
    let padding = UInt8(truncatingIfNeeded: xZeroShifted)
    let wZerosShifted = wZeros.map { $0 &+ packed.shift }
    let table = ConvWindowTable(g)
    // Chunks of positions: small enough for L2, and enough of them to keep every thread busy.
    let planes = g.batch * g.group
    let wanted = max(1, (context.threadCount + planes - 1) / planes)
    var rowsPerChunk = min(max(8, im2colChunkBytes / depth), (positions + wanted - 1) / wanted)
    rowsPerChunk = max(1, min(positions, (rowsPerChunk + 7) / 8 * 8))
    let chunks = (positions + rowsPerChunk - 1) / rowsPerChunk
    let rowZeros = [Int32](repeating: xZeroShifted, count: rowsPerChunk)

    x.withUnsafeBytes { xRaw in
    y.withUnsafeMutableBufferPointer(as: Int32.self) { output in
    wZerosShifted.withUnsafeBufferPointer { wZeros in
    rowZeros.withUnsafeBufferPointer { rowZeros in
        let xBase = xRaw.bindMemory(to: UInt8.self).baseAddress!, yBase = output.baseAddress!
        context.parallelFor(planes * chunks) { item in
            let plane = item / chunks, n = plane / g.group, group = plane % g.group
            let first = item % chunks * rowsPerChunk
            let rows = min(rowsPerChunk, positions - first)
            let matrix = packed.groups[group]
            let im2col = UnsafeMutablePointer<UInt8>.allocate(capacity: rows * depth)
            let sums = UnsafeMutablePointer<Int32>.allocate(capacity: rows)
            let products = UnsafeMutablePointer<Int32>.allocate(capacity: rows * groupOutputs)
            defer { im2col.deallocate(); sums.deallocate(); products.deallocate() }
            let xGroup = xBase + (n * g.inputChannels + group * groupInputs) * g.planeSize
            fillIm2col(x: xGroup, channels: groupInputs, positions: first..<(first + rows), geometry: g, table: table,
                       flip: flip, padding: padding, into: im2col)
            Int8GEMM.rowSums(m: rows, k: depth, a: im2col, lda: depth, into: sums)
            Int8GEMM.multiply(m: rows, a: im2col, lda: depth, b: matrix, c: products, ldc: groupOutputs,
                              columns: 0..<groupOutputs, level: level)
            Int8GEMM.subtractZeroPoints(m: rows, c: products, ldc: groupOutputs, columns: 0..<groupOutputs, b: matrix,
                                        rowSums: sums, aZeros: rowZeros.baseAddress!,
                                        bZeros: wZeros.baseAddress! + group * groupOutputs)
            // Rows are positions, columns output channels: write them back channel-major.
            for j in 0..<groupOutputs {
                let target = yBase + (n * g.outputChannels + group * groupOutputs + j) * positions + first
                for r in 0..<rows { target[r] = products[r * groupOutputs + j] }
            }
        }
    }}}}
    return y
}

/// Rows `positions` of the im2col matrix of one batch and group: row p holds, for each of the group's
/// `channels` input planes (starting at `x`) and each kernel tap q, the byte at tap q of position p's
/// window XOR `flip`, or `padding` where the tap lies outside the input.
private func fillIm2col(
    x: UnsafePointer<UInt8>, channels: Int, positions: Range<Int>, geometry g: IntegerConvGeometry,
    table: ConvWindowTable, flip: UInt8, padding: UInt8, into rows: UnsafeMutablePointer<UInt8>
) {
    let taps = g.kernelSize, plane = g.planeSize
    var row = rows
    for p in positions {
        let interior = table.interior[p], origin = table.originOffset[p]
        for c in 0..<channels {
            let xPlane = x + c * plane
            let destination = row + c * taps
            if interior {
                let window = xPlane + origin
                for q in 0..<taps { destination[q] = window[table.kernelOffset[q]] ^ flip }
            } else {
                for q in 0..<taps {
                    destination[q] = table.borderOffset(position: p, tap: q, geometry: g).map { xPlane[$0] ^ flip } ?? padding
                }
            }
        }
        row += channels * taps
    }
}
