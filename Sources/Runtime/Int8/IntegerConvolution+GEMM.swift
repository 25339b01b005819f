import Tensors
import _CKernels

// ConvInteger / QLinearConv on the int8 GEMM, or a direct loop for depthwise convolutions.
//
// GEMM path: per batch and group the input planes are first transposed to channels-last bytes, so the
// window of an output position is a run of (kernel tap, channel) bytes, each tap one contiguous copy of
// C/group channels (padding taps hold the input zero point and add nothing once corrected). Chunks of
// positions become uint8 rows multiplied by the group's weights, packed once with K in the same
// (tap, channel) order and one column per output channel. A 1 x 1 convolution with unit strides and no
// padding multiplies the channels-last input directly. As for MatMulInteger, int8 x is stored as x + 128
// and uint8 w as w - 128, with their zero points shifted alike.

/// Conv weights `[M, C/group, k…]` packed for `Int8GEMM`: one K x (M/group) matrix per group, K ordered
/// (kernel tap, channel) to match the channels-last im2col rows. Built once for constant weights.
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
        let inputs = w.shape[1], taps = w.shape[2...].reduce(1, *)
        let depth = inputs * taps
        shape = w.shape
        dtype = w.dtype
        self.group = group
        groups = w.withUnsafeBytes { raw in
            (0..<group).map { g in
                // Row m of the group, reordered from (channel, tap) to (tap, channel).
                var reordered = [UInt8](repeating: 0, count: perGroup * depth)
                for m in 0..<perGroup {
                    let source = (g * perGroup + m) * depth
                    for c in 0..<inputs {
                        for q in 0..<taps { reordered[m * depth + q * inputs + c] = raw[source + c * taps + q] }
                    }
                }
                return reordered.withUnsafeBufferPointer { bytes in
                    w.dtype == .uint8
                        ? PackedInt8Matrix(k: depth, n: perGroup, unsignedValues: bytes, transposed: true)
                        : bytes.withMemoryRebound(to: Int8.self) {
                            PackedInt8Matrix(k: depth, n: perGroup, values: $0, transposed: true)
                        }
                }
            }
        }
    }

    /// This packing when it was made from a tensor of `w`'s shape and type with the same group, else a fresh one.
    func matching(_ w: Tensor, group: Int) -> PackedConvWeights? {
        shape == w.shape && dtype == w.dtype && self.group == group ? self : PackedConvWeights(w, group: group)
    }
}

/// Receives a block of finished int32 sums of batch `batch`: the sum for output position
/// `positions.lowerBound + r` and output channel `channels.lowerBound + j` is at `values[r * rowStride + j]`.
/// Called from several threads at once, always for disjoint outputs.
typealias ConvolutionSink = (_ batch: Int, _ channels: Range<Int>, _ positions: Range<Int>, _ values: UnsafePointer<Int32>,
                             _ rowStride: Int) -> Void

/// Copies a sink's block (position-major) into `[N, M, positions]` output planes (channel-major).
@inline(__always)
func storeChannelPlanes<T>(
    _ values: UnsafePointer<T>, rowStride: Int, batch: Int, channels: Range<Int>, positions: Range<Int>,
    into output: UnsafeMutablePointer<T>, outputChannels: Int, planeSize: Int
) {
    for j in 0..<channels.count {
        let target = output + (batch * outputChannels + channels.lowerBound + j) * planeSize + positions.lowerBound
        let source = values + j
        if rowStride == 1 {
            target.update(from: source, count: positions.count)
        } else {
            for r in 0..<positions.count { target[r] = source[r * rowStride] }
        }
    }
}

/// Bytes of one im2col chunk: a chunk's rows stay in L2 together with the group's weights.
private let im2colChunkBytes = 96 * 1024

/// `conv(x - xZero, w - wZeros[m])` in int32, handed to `sink` per output channel and chunk of positions:
/// the int8 GEMM (or the depthwise loop) at `level`, or the direct loop of `integerConvolution` (the
/// reference twin) at `.reference`. Every output is handed over exactly once.
func integerConvolution(
    x: Tensor, xZero: Int32, w: Tensor, wZeros: [Int32], geometry g: IntegerConvGeometry,
    prepacked: PackedConvWeights?, level: Int8GEMMLevel, context: ExecutionContext, sink: ConvolutionSink
) throws {
    let positions = g.outputPlaneSize
    let groupInputs = g.inputChannels / g.group, groupOutputs = g.outputChannels / g.group
    guard positions > 0, g.batch > 0, groupOutputs > 0 else { return }
    guard groupInputs > 0, g.kernelSize > 0 else {
        // No input channels: every sum is empty.
        let zeros = [Int32](repeating: 0, count: positions)
        zeros.withUnsafeBufferPointer { zeros in
            for plane in 0..<(g.batch * g.outputChannels) {
                let m = plane % g.outputChannels
                sink(plane / g.outputChannels, m..<(m + 1), 0..<positions, zeros.baseAddress!, 1)
            }
        }
        return
    }
    if level == .reference {
        try referenceConvolution(x: x, xZero: xZero, w: w, wZeros: wZeros, geometry: g, context: context, sink: sink)
        return
    }
    let flip: UInt8 = x.dtype == .int8 ? 0x80 : 0
    // The zero point as a stored byte (0...255 after the int8 shift): padding taps hold it.
    let xZeroByte = xZero &+ (x.dtype == .int8 ? 128 : 0)
    if groupInputs == 1, g.inputSpatial.count <= 2 {
        try depthwiseConvolution(x: x, flip: flip, xZero: xZeroByte, w: w, wZeros: wZeros, geometry: g, level: level,
                                 context: context, sink: sink)
        return
    }
    guard let packed = prepacked?.matching(w, group: g.group) ?? PackedConvWeights(w, group: g.group) else {
        throw KernelError.invalidInput(index: 1, reason: "weights \(w.dtype) \(w.shape) cannot be packed for group \(g.group)")
    }
    let wZerosShifted = wZeros.map { $0 &+ packed.shift }
    let symmetric = wZerosShifted.allSatisfy { $0 == 0 }  // then no row sums are needed
    let depth = groupInputs * g.kernelSize
    let table = ConvWindowTable(g)
    let planes = g.batch * g.group
    let direct = g.kernelSize == 1 && g.strides.allSatisfy { $0 == 1 } && g.padsBegin.allSatisfy { $0 == 0 }
        && g.outputSpatial == g.inputSpatial
    // Chunks of positions: small enough for L2, and enough of them to keep every thread busy.
    let wanted = max(1, (context.threadCount + planes - 1) / planes)
    var rowsPerChunk = min(max(8, im2colChunkBytes / depth), (positions + wanted - 1) / wanted)
    rowsPerChunk = max(1, min(positions, (rowsPerChunk + 7) / 8 * 8))
    let chunks = (positions + rowsPerChunk - 1) / rowsPerChunk
    let rowZeros = [Int32](repeating: xZeroByte, count: rowsPerChunk)

    // Channels-last input, per (batch, group): plane size x C/group bytes.
    let channelsLast = UnsafeMutablePointer<UInt8>.allocate(capacity: planes * g.planeSize * groupInputs)
    defer { channelsLast.deallocate() }
    x.withUnsafeBytes { raw in
        let source = raw.bindMemory(to: UInt8.self).baseAddress!
        context.parallelFor(planes) { plane in
            transposeToChannelsLast(source + plane * groupInputs * g.planeSize, channels: groupInputs, pixels: g.planeSize,
                                    flip: flip, into: channelsLast + plane * g.planeSize * groupInputs)
        }
    }
    wZerosShifted.withUnsafeBufferPointer { wZeros in
    rowZeros.withUnsafeBufferPointer { rowZeros in
        context.parallelFor(planes * chunks) { item in
            let plane = item / chunks, n = plane / g.group, group = plane % g.group
            let first = item % chunks * rowsPerChunk
            let rows = min(rowsPerChunk, positions - first)
            let matrix = packed.groups[group]
            let input = channelsLast + plane * g.planeSize * groupInputs
            let im2col = direct ? nil : UnsafeMutablePointer<UInt8>.allocate(capacity: rows * depth)
            let sums = UnsafeMutablePointer<Int32>.allocate(capacity: rows)
            let products = UnsafeMutablePointer<Int32>.allocate(capacity: rows * groupOutputs)
            defer { im2col?.deallocate(); sums.deallocate(); products.deallocate() }
            let a: UnsafePointer<UInt8>
            if let im2col {
                fillIm2col(channelsLast: input, channels: groupInputs, positions: first..<(first + rows), geometry: g,
                           table: table, padding: UInt8(truncatingIfNeeded: xZeroByte), into: im2col)
                a = UnsafePointer(im2col)
            } else {
                a = UnsafePointer(input + first * groupInputs)
            }
            if !symmetric { Int8GEMM.rowSums(m: rows, k: depth, a: a, lda: depth, into: sums) }
            Int8GEMM.multiply(m: rows, a: a, lda: depth, b: matrix, c: products, ldc: groupOutputs,
                              columns: 0..<groupOutputs, level: level)
            Int8GEMM.subtractZeroPoints(m: rows, c: products, ldc: groupOutputs, columns: 0..<groupOutputs, b: matrix,
                                        rowSums: sums, aZeros: rowZeros.baseAddress!,
                                        bZeros: wZeros.baseAddress! + group * groupOutputs)
            sink(n, (group * groupOutputs)..<((group + 1) * groupOutputs), first..<(first + rows), products, groupOutputs)
        }
    }}
}

/// `channels` planes of `pixels` bytes → `pixels` rows of `channels` bytes, each byte XOR `flip`.
private func transposeToChannelsLast(_ source: UnsafePointer<UInt8>, channels: Int, pixels: Int, flip: UInt8,
                                     into target: UnsafeMutablePointer<UInt8>) {
    sq_transpose_u8(source, channels, pixels, pixels, target, channels, flip)
}

/// Rows `positions` of the im2col matrix from a channels-last input: row p holds, for each kernel tap q,
/// the `channels` bytes of the pixel under tap q of position p's window, or `padding` bytes where the tap
/// lies outside the input.
private func fillIm2col(
    channelsLast input: UnsafePointer<UInt8>, channels: Int, positions: Range<Int>, geometry g: IntegerConvGeometry,
    table: ConvWindowTable, padding: UInt8, into rows: UnsafeMutablePointer<UInt8>
) {
    let taps = g.kernelSize
    var row = rows
    for p in positions {
        if table.interior[p] {
            let origin = table.originOffset[p]
            for q in 0..<taps {
                (row + q * channels).update(from: input + (origin + table.kernelOffset[q]) * channels, count: channels)
            }
        } else {
            for q in 0..<taps {
                if let pixel = table.borderOffset(position: p, tap: q, geometry: g) {
                    (row + q * channels).update(from: input + pixel * channels, count: channels)
                } else {
                    (row + q * channels).update(repeating: padding, count: channels)
                }
            }
        }
        row += taps * channels
    }
}

/// Convolutions where each output channel reads one input channel (group = C, any channel multiplier),
/// for 1-D and 2-D inputs: per output channel, the input plane is copied into a buffer padded with the
/// zero point, so every window is interior; then, row by row,
/// `acc[o] = Σ_taps w'[tap] · xpad[o · stride + tap offset] - xZero · Σ w'` with `w' = w - wZero`,
/// which equals Σ over in-bounds taps of (x - xZero) · w' (padding bytes contribute (xZero - xZero) · w' = 0).
/// Rows run in C (`sq_depthwise_row_u8`) where `level` has a kernel for the stride, else in the Swift loop.
private func depthwiseConvolution(
    x: Tensor, flip: UInt8, xZero: Int32, w: Tensor, wZeros: [Int32], geometry g: IntegerConvGeometry,
    level: Int8GEMMLevel, context: ExecutionContext, sink: ConvolutionSink
) throws {
    // 1-D as 2-D with a height of one.
    let twoD = g.inputSpatial.count == 2
    let inputHeight = twoD ? g.inputSpatial[0] : 1, inputWidth = g.inputSpatial[twoD ? 1 : 0]
    let outputHeight = twoD ? g.outputSpatial[0] : 1, outputWidth = g.outputSpatial[twoD ? 1 : 0]
    let kernelHeight = twoD ? g.kernelSpatial[0] : 1, kernelWidth = g.kernelSpatial[twoD ? 1 : 0]
    let strideY = twoD ? g.strides[0] : 1, strideX = g.strides[twoD ? 1 : 0]
    let dilationY = twoD ? g.dilations[0] : 1, dilationX = g.dilations[twoD ? 1 : 0]
    let padTop = twoD ? g.padsBegin[0] : 0, padLeft = g.padsBegin[twoD ? 1 : 0]
    let paddedHeight = (outputHeight - 1) * strideY + (kernelHeight - 1) * dilationY + 1
    let paddedWidth = (outputWidth - 1) * strideX + (kernelWidth - 1) * dilationX + 1
    let multiplier = g.outputChannels / g.group
    let taps = kernelHeight * kernelWidth
    let weights = try w.quantizedIntegerValues(input: 1)
    weights.withUnsafeBufferPointer { weights in
    x.withUnsafeBytes { raw in
        let source = raw.bindMemory(to: UInt8.self).baseAddress!
        context.parallelFor(g.batch * g.outputChannels) { item in
            let n = item / g.outputChannels, m = item % g.outputChannels
            let inputPlane = source + (n * g.inputChannels + m / multiplier) * g.planeSize
            let padded = UnsafeMutablePointer<UInt8>.allocate(capacity: paddedHeight * paddedWidth)
            let accumulators = UnsafeMutablePointer<Int32>.allocate(capacity: outputWidth)
            let tapWeights = UnsafeMutablePointer<Int32>.allocate(capacity: taps)
            defer { padded.deallocate(); accumulators.deallocate(); tapWeights.deallocate() }
            padded.update(repeating: UInt8(truncatingIfNeeded: xZero), count: paddedHeight * paddedWidth)
            for row in 0..<paddedHeight {
                let inputRow = row - padTop
                guard inputRow >= 0, inputRow < inputHeight else { continue }
                let first = max(0, padLeft), last = min(paddedWidth, inputWidth + padLeft)  // padded columns holding input
                guard first < last else { continue }
                let target = padded + row * paddedWidth, from = inputPlane + inputRow * inputWidth - padLeft
                for column in first..<last { target[column] = from[column] ^ flip }
            }
            var weightSum: Int32 = 0
            for q in 0..<taps {
                tapWeights[q] = weights[m * taps + q] &- wZeros[m]
                weightSum &+= tapWeights[q]
            }
            let correction = xZero &* weightSum
            let out = UnsafeMutablePointer<Int32>.allocate(capacity: outputHeight * outputWidth)
            defer { out.deallocate() }
            for oh in 0..<outputHeight {
                let top = padded + oh * strideY * paddedWidth
                if sq_depthwise_row_u8(Int32(level.rawValue), top, dilationY * paddedWidth, kernelHeight, kernelWidth, strideX,
                                       dilationX, tapWeights, outputWidth, accumulators) != 0 {
                    for ow in 0..<outputWidth { out[oh * outputWidth + ow] = accumulators[ow] &- correction }
                    continue
                }
                accumulators.update(repeating: 0, count: outputWidth)
                for kh in 0..<kernelHeight {
                    for kw in 0..<kernelWidth {
                        let weight = tapWeights[kh * kernelWidth + kw]
                        let row = padded + (oh * strideY + kh * dilationY) * paddedWidth + kw * dilationX
                        if strideX == 1 {
                            for ow in 0..<outputWidth { accumulators[ow] &+= weight &* Int32(row[ow]) }
                        } else {
                            for ow in 0..<outputWidth { accumulators[ow] &+= weight &* Int32(row[ow * strideX]) }
                        }
                    }
                }
                for ow in 0..<outputWidth { out[oh * outputWidth + ow] = accumulators[ow] &- correction }
            }
            sink(n, m..<(m + 1), 0..<(outputHeight * outputWidth), out, 1)
        }
    }}
}

/// The reference twin: zero-point-adjusted int32 operands through the direct loop, then the sink.
private func referenceConvolution(
    x: Tensor, xZero: Int32, w: Tensor, wZeros: [Int32], geometry g: IntegerConvGeometry,
    context: ExecutionContext, sink: ConvolutionSink
) throws {
    let depth = g.inputChannels / g.group * g.kernelSize
    let xValues = try x.quantizedIntegerValues(input: 0).map { $0 &- xZero }
    var wValues = try w.quantizedIntegerValues(input: 1)
    for m in 0..<g.outputChannels {
        for i in (m * depth)..<((m + 1) * depth) { wValues[i] = wValues[i] &- wZeros[m] }
    }
    let positions = g.outputPlaneSize
    var sums = [Int32](repeating: 0, count: g.batch * g.outputChannels * positions)
    sums.withUnsafeMutableBufferPointer { output in
        xValues.withUnsafeBufferPointer { xValues in
            wValues.withUnsafeBufferPointer { wValues in
                integerConvolution(x: xValues, w: wValues, geometry: g, output: output, context: context)
            }
        }
        let base = UnsafePointer(output.baseAddress!)
        for plane in 0..<(g.batch * g.outputChannels) {
            let m = plane % g.outputChannels
            sink(plane / g.outputChannels, m..<(m + 1), 0..<positions, base + plane * positions, 1)
        }
    }
}
