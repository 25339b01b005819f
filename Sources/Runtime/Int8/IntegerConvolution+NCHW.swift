import QuantCore
import Tensors
import _CKernels

// The CNN path of `QConv`: 1-D and 2-D integer convolutions computed straight into NCHW output planes
// by the C kernels of `_CKernels/qconv.c` and `depthwise_u8.c`, with the requantization (and a fused
// code table) applied while the results are in registers.
//
// Output channels are the rows of the product and output positions its columns:
//
//     acc[m][i] = Σ_r (x[r][i] − x_zp)(w[m][r] − w_zp[m]) + bias[m]
//               = Σ_r x·w_s − x_zp·Σ_r w_s[m] − w_zp_s[m]·Σ_r x[r][i] + K·x_zp·w_zp_s[m] + bias[m]
//
// with r running over the input channels of the group (1×1, unit strides, no padding: the input planes
// are the rows) or over (channel, tap) rows of an im2col copy whose padding holds the zero point. int8
// activations are flipped to uint8 (`x ^ 0x80`, zero point + 128) and uint8 weights shifted to int8
// (`w − 128`, zero point − 128), which leaves every difference intact. Everything wraps in int32, so
// the result equals the direct sum (`FusedQConvKernel.runReference`) bit for bit.

/// The C form of a quantized output (`ColumnRequantization`) and an optional code table, held at stable
/// addresses for the life of the kernel.
final class CodeRequantization: @unchecked Sendable {
    private let storage: UnsafeMutablePointer<Int64>
    private let tableStorage: UnsafeMutablePointer<UInt8>?
    private let count: Int
    let parameters: sq_qrequant

    init(_ columns: ColumnRequantization, table: [UInt8]?) {
        count = columns.count
        storage = .allocate(capacity: 4 * count)
        storage.initialize(from: columns.mantissas, count: count)
        (storage + count).initialize(from: columns.shifts, count: count)
        (storage + 2 * count).initialize(from: columns.roundings, count: count)
        (storage + 3 * count).initialize(from: columns.negativeMasks, count: count)
        if let table {
            let bytes = UnsafeMutablePointer<UInt8>.allocate(capacity: 256)
            bytes.initialize(from: table, count: 256)
            tableStorage = bytes
        } else {
            tableStorage = nil
        }
        parameters = sq_qrequant(
            mantissa: storage, shift: storage + count, rounding: storage + 2 * count, negative_mask: storage + 3 * count,
            per_channel: count > 1 ? 1 : 0, zero_point: Int32(truncatingIfNeeded: columns.zeroPoint),
            lower: Int32(truncatingIfNeeded: columns.lower), upper: Int32(truncatingIfNeeded: columns.upper),
            table: tableStorage.map { UnsafePointer($0) })
    }

    deinit {
        storage.deallocate()
        tableStorage?.deallocate()
    }

    /// Calls `body` with the parameters seen from output channel `channel` on, or nil without requantization.
    static func with<R>(_ requantization: CodeRequantization?, channel: Int,
                        _ body: (UnsafePointer<sq_qrequant>?) -> R) -> R {
        guard let requantization else { return body(nil) }
        var parameters = requantization.from(channel: channel)
        return withUnsafePointer(to: &parameters) { body($0) }
    }

    /// The parameters seen from output channel `first` on (per-channel constants advanced).
    func from(channel first: Int) -> sq_qrequant {
        guard count > 1 else { return parameters }
        var shifted = parameters
        shifted.mantissa += first
        shifted.shift += first
        shifted.rounding += first
        shifted.negative_mask += first
        return shifted
    }
}

/// A 1-D or 2-D convolution geometry as the C kernels take it (1-D as a height of one).
extension sq_qwindow {
    init?(_ g: IntegerConvGeometry) {
        let rank = g.inputSpatial.count
        guard rank == 1 || rank == 2 else { return nil }
        let leading = rank == 2
        self.init(input_h: leading ? g.inputSpatial[0] : 1, input_w: g.inputSpatial[rank - 1],
                  output_h: leading ? g.outputSpatial[0] : 1, output_w: g.outputSpatial[rank - 1],
                  kernel_h: leading ? g.kernelSpatial[0] : 1, kernel_w: g.kernelSpatial[rank - 1],
                  stride_h: leading ? g.strides[0] : 1, stride_w: g.strides[rank - 1],
                  dilation_h: leading ? g.dilations[0] : 1, dilation_w: g.dilations[rank - 1],
                  pad_top: leading ? g.padsBegin[0] : 0, pad_left: g.padsBegin[rank - 1])
    }
}

/// Weights of a grouped convolution prepared for `sq_qconv_gemm`, with every per-channel constant that
/// does not depend on the activations folded into one offset per output channel.
final class NCHWConvWeights: @unchecked Sendable {
    /// Rows of int8 weights (uint8 shifted), `rowStride` bytes apart, zero past `depth`.
    let rows: UnsafeMutablePointer<Int8>
    let rowStride: Int
    /// Reduction depth per group: input channels of a group × kernel taps.
    let depth: Int
    /// `bias[m] + K·x_zp·w_zp_s[m] − x_zp·Σ_r w_s[m][r]` per output channel (x_zp in uint8 terms).
    let offsets: [Int32]
    /// `w_zp_s[m]` per output channel, or nil when all are 0 (then no activation sums are needed).
    let zeroPoints: [Int32]?

    /// - Parameters:
    ///   - values: the weight codes `[M, C/group, k…]` as integers, in the weights' type.
    ///   - unsigned: whether the weights are uint8.
    ///   - zeroPoints: one per output channel, in the weights' type.
    ///   - bias: int32 per output channel (accumulator units), or nil.
    ///   - inputZeroPoint: the activations' zero point in uint8 terms.
    init(values: [Int32], channels: Int, depth: Int, unsigned: Bool, zeroPoints: [Int32], bias: [Int32]?,
         inputZeroPoint za: Int32) {
        self.depth = depth
        rowStride = (depth + 3) / 4 * 4
        rows = .allocate(capacity: max(channels * rowStride, 1))
        rows.initialize(repeating: 0, count: max(channels * rowStride, 1))
        let shift: Int32 = unsigned ? 128 : 0
        var offsets = [Int32](repeating: 0, count: channels)
        var shiftedZeros = [Int32](repeating: 0, count: channels)
        let depth32 = Int32(truncatingIfNeeded: depth)
        for m in 0..<channels {
            var sum: Int32 = 0
            for r in 0..<depth {
                let value = values[m * depth + r] - shift
                rows[m * rowStride + r] = Int8(truncatingIfNeeded: value)
                sum &+= value
            }
            let zb = zeroPoints[m] - shift
            shiftedZeros[m] = zb
            offsets[m] = (bias?[m] ?? 0) &+ depth32 &* za &* zb &- za &* sum
        }
        self.offsets = offsets
        self.zeroPoints = shiftedZeros.contains { $0 != 0 } ? shiftedZeros : nil
    }

    deinit { rows.deallocate() }
}

/// Depthwise weights (one input and one output channel per group) for `sq_qdepthwise`: `w − w_zp` per
/// tap, and per channel `bias − x_zp·Σ (w − w_zp)` (the padded plane holds x_zp, so taps add `x·w'`).
struct DepthwiseConvWeights: Sendable {
    let taps: [Int32]
    let bias: [Int32]

    init(values: [Int32], channels: Int, taps count: Int, zeroPoints: [Int32], bias: [Int32]?, inputZeroPoint za: Int32) {
        var taps = [Int32](repeating: 0, count: channels * count)
        var biases = [Int32](repeating: 0, count: channels)
        for m in 0..<channels {
            var sum: Int32 = 0
            for q in 0..<count {
                let value = values[m * count + q] &- zeroPoints[m]
                taps[m * count + q] = value
                sum &+= value
            }
            biases[m] = (bias?[m] ?? 0) &- za &* sum
        }
        self.taps = taps
        self.bias = biases
    }
}

enum NCHWConvolution {
    /// Whether `level` has the C kernels on this CPU (an empty row range only asks).
    static func isAvailable(_ level: Int8GEMMLevel) -> Bool {
        sq_qconv_gemm(Int32(level.rawValue), nil, 0, 0, nil, 0, 0, 0, 0, 0, nil, nil, nil, nil, nil, 0) != 0
    }

    /// Runs the GEMM path into `y` (`[N, M, positions]`, 8-bit codes with `requantization`, else int32
    /// accumulators). Returns false, writing nothing, when `level` has no C kernel.
    static func run(
        _ x: Tensor, geometry g: IntegerConvGeometry, window: sq_qwindow, weights: NCHWConvWeights, flip: UInt8,
        zeroByte: UInt8, requantization: CodeRequantization?, y: UnsafeMutableRawPointer, level: Int8GEMMLevel,
        threads: Int
    ) -> Bool {
        guard isAvailable(level) else { return false }
        let groupInputs = g.inputChannels / g.group, groupOutputs = g.outputChannels / g.group
        let positions = g.outputPlaneSize, depth = weights.depth
        let direct = g.kernelSize == 1 && g.strides.allSatisfy { $0 == 1 } && g.padsBegin.allSatisfy { $0 == 0 }
            && g.outputSpatial == g.inputSpatial
        let planes = g.batch * g.group
        let packedSize = sq_qconv_packed_size(depth, positions)
        let packed = UnsafeMutablePointer<UInt8>.allocate(capacity: max(planes * packedSize, 1))
        defer { packed.deallocate() }
        let needsSums = weights.zeroPoints != nil
        let sums = UnsafeMutablePointer<Int32>.allocate(capacity: needsSums ? planes * positions : 1)
        defer { sums.deallocate() }
        let blocks = (positions + 63) / 64
        // Without activation sums, windows with unit width stride pack straight from the planes.
        var fullWindow = window
        let fromPlanes = !direct && !needsSums && sq_qconv_window_packable(Int32(level.rawValue), &fullWindow) != 0
        // Those and direct planes pack in parts of whole 64-position blocks (the packed layout is block-major).
        let packParts = direct || fromPlanes ? min(blocks, max(1, (threads + planes - 1) / planes)) : 1
        x.withUnsafeBytes { raw in
            let source = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            Parallel.forEach(planes * packParts, threads: threads) { item in
                let plane = item / packParts, part = item % packParts
                var local = window
                let input = source + plane * groupInputs * g.planeSize
                let target = packed + plane * packedSize
                let planeSums = needsSums ? sums + plane * positions : nil
                if direct {
                    let first = part * blocks / packParts * 64, end = min(positions, (part + 1) * blocks / packParts * 64)
                    sq_qconv_pack(Int32(level.rawValue), input + first, g.planeSize, depth, end - first, flip, target + first * 4 * ((depth + 3) / 4),
                                  planeSums.map { $0 + first })
                } else if fromPlanes {
                    sq_qconv_pack_window(Int32(level.rawValue), input, g.planeSize, groupInputs, &local, flip, zeroByte,
                                         part * blocks / packParts, (part + 1) * blocks / packParts, target)
                } else {
                    let rows = UnsafeMutablePointer<UInt8>.allocate(capacity: max(depth * positions, 1))
                    defer { rows.deallocate() }
                    sq_qconv_im2col(input, g.planeSize, groupInputs, &local, flip, zeroByte, rows)
                    // im2col already flipped the bytes.
                    sq_qconv_pack(Int32(level.rawValue), rows, positions, depth, positions, 0, target, planeSums)
                }
            }
        }
        // Work items: (plane, block range, row range), enough of them for the threads.
        let wanted = max(1, (threads + planes - 1) / planes)
        let blockParts = min(blocks, wanted)
        let rowParts = min(max(1, wanted / blockParts), max(1, groupOutputs / 6))
        let elementSize = requantization == nil ? 4 : 1
        weights.offsets.withUnsafeBufferPointer { offsets in
            withOptionalInt32Pointer(weights.zeroPoints) { zeroPoints in
                Parallel.forEach(planes * blockParts * rowParts, threads: threads) { item in
                    let plane = item / (blockParts * rowParts), part = item % (blockParts * rowParts)
                    let blockPart = part / rowParts, rowPart = part % rowParts
                    let n = plane / g.group, group = plane % g.group
                    let firstBlock = blockPart * blocks / blockParts, endBlock = (blockPart + 1) * blocks / blockParts
                    let firstRow = rowPart * groupOutputs / rowParts, endRow = (rowPart + 1) * groupOutputs / rowParts
                    let channel = group * groupOutputs
                    let output = y + (n * g.outputChannels + channel) * positions * elementSize
                    CodeRequantization.with(requantization, channel: channel) { parameters in
                        _ = sq_qconv_gemm(Int32(level.rawValue), weights.rows + channel * weights.rowStride, weights.rowStride,
                                          depth, packed + plane * packedSize, positions, firstRow, endRow, firstBlock, endBlock,
                                          offsets.baseAddress! + channel, zeroPoints.map { $0 + channel },
                                          needsSums ? sums + plane * positions : nil, parameters, output, positions)
                    }
                }
            }
        }
        return true
    }

    /// Runs a depthwise convolution (M = C = group) into `y` like `run`. Returns false when `level` has
    /// no C kernel.
    static func runDepthwise(
        _ x: Tensor, geometry g: IntegerConvGeometry, window: sq_qwindow, weights: DepthwiseConvWeights, flip: UInt8,
        zeroByte: UInt8, requantization: CodeRequantization?, y: UnsafeMutableRawPointer, level: Int8GEMMLevel,
        threads: Int
    ) -> Bool {
        let channels = g.outputChannels, positions = g.outputPlaneSize, taps = g.kernelSize
        var window = window
        // No channels only asks whether the level has a kernel.
        guard sq_qdepthwise(Int32(level.rawValue), nil, 0, 0, &window, 0, 0, nil, nil, nil, nil, nil, 0) != 0 else {
            return false
        }
        let scratchSize = sq_qdepthwise_scratch_size(&window)
        let chunks = min(channels, max(1, threads))
        let elementSize = requantization == nil ? 4 : 1
        x.withUnsafeBytes { raw in
            let source = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            weights.taps.withUnsafeBufferPointer { taps32 in
                weights.bias.withUnsafeBufferPointer { bias in
                    Parallel.forEach(g.batch * chunks, threads: threads) { item in
                        let n = item / chunks, chunk = item % chunks
                        let first = chunk * channels / chunks, end = (chunk + 1) * channels / chunks
                        let scratch = UnsafeMutablePointer<UInt8>.allocate(capacity: scratchSize)
                        defer { scratch.deallocate() }
                        var local = window
                        CodeRequantization.with(requantization, channel: first) { parameters in
                            _ = sq_qdepthwise(Int32(level.rawValue), source + (n * channels + first) * g.planeSize, g.planeSize,
                                              end - first, &local, flip, zeroByte, taps32.baseAddress! + first * taps,
                                              bias.baseAddress! + first, scratch, parameters,
                                              y + (n * channels + first) * positions * elementSize, positions)
                        }
                    }
                }
            }
        }
        return true
    }
}

/// Calls `body` with a pointer to the array's elements, or nil.
@inline(__always)
func withOptionalInt32Pointer<R>(_ array: [Int32]?, _ body: (UnsafePointer<Int32>?) -> R) -> R {
    guard let array else { return body(nil) }
    return array.withUnsafeBufferPointer { body($0.baseAddress!) }
}
