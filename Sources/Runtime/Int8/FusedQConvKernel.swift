import GraphIR
import QuantCore
import Tensors
import _CKernels

/// `com.swiftquant::QConv`: the integer execution of
/// `DequantizeLinear(X) → Conv(·, DequantizeLinear(W), bias) [→ Relu | Clip] [→ QuantizeLinear]` and of
/// QLinearConv.
///
/// Inputs: 0 `X` (uint8/int8, `[N, C, D1…]`), 1 `x_scale`, 2 `x_zero_point`, 3 `W` (int8/uint8 constant,
/// `[M, C/group, k1…]`), 4 `w_scale`, 5 `w_zero_point` (one or M values), 6 `bias` (optional: int32 in
/// accumulator units or float32), 7 `y_scale`, 8 `y_zero_point` (omitted: float output). Attributes:
/// Conv's (`auto_pad`, `pads`, `strides`, `dilations`, `group`, `kernel_shape`), `clip_min`, `clip_max`.
///
///     acc[n, m, o] = Σ_{c, k} (X[n, c, o·s − p + k·d] − x_zp)(W[m, c, k] − w_zp[m]) + bias[m]
///
/// with padding taps contributing nothing (they hold the zero point), then requantized or scaled like
/// `QMatMul`. The optional `output_table` attribute (256 codes of the output type) maps each requantized
/// code through a table afterwards: an absorbed `DequantizeLinear → f → QuantizeLinear` (see `QLookup`).
///
/// 1-D and 2-D convolutions run the C kernels of `IntegerConvolution+NCHW.swift` straight on NCHW planes
/// (depthwise ones a direct vectorised loop, the rest an int8 GEMM with output channels as rows), with the
/// requantization and table fused. Other ranks, and CPUs without those kernels, run each group as one
/// GEMM over an im2col copy of the codes, or depthwise 2-D convolutions as a Swift loop.
struct FusedQConvKernel: Kernel {
    let attributes: IntegerConvAttributes
    let input: ActivationQuantization
    let weightValues: Tensor
    let weightQuantization: WeightQuantization
    let int32Bias: [Int32]?
    let output: FusedOutput
    /// One packed weight matrix per group (`[C/group · kernel, M/group]`), or nil for the depthwise path.
    let groups: [FusedInt8Weights]?
    /// Depthwise path: `W − w_zp` per output channel and tap, and the bias.
    let depthwiseWeights: [Int32]?
    /// Codes of the output type indexed by the requantized code's byte (quantized output only).
    let outputTable: [UInt8]?
    /// The output of each channel alone (float and dequantized outputs of the plane-wise paths).
    let channelStages: [FusedOutput]
    /// The C kernels' weights: a GEMM over rows, or depthwise taps (1-D and 2-D, when the CPU has them).
    let planeWeights: NCHWConvWeights?
    let planeDepthwise: DepthwiseConvWeights?
    /// The C form of a quantized output, table included.
    let codeRequantization: CodeRequantization?
    /// The instruction set of the C kernels (tests force each); `.reference` runs `runReference`.
    var level: Int8GEMMLevel = .best

    init(_ context: KernelBuildContext) throws {
        attributes = try IntegerConvAttributes(context)
        input = try ActivationQuantization(scale: try context.constantInput(1, "x_scale"),
                                           zeroPoint: try context.constantInput(2, "x_zero_point"), what: "X")
        guard let w = context.constant(3), w.rank >= 3, w.dtype == .int8 || w.dtype == .uint8 else {
            throw KernelError.invalid("W must be an int8/uint8 constant of rank ≥ 3")
        }
        let channels = w.shape[0], group = attributes.group
        guard channels % group == 0 else { throw KernelError.invalid("group \(group) does not divide the \(channels) output channels") }
        weightValues = w
        let quantization = try WeightQuantization(scale: try context.constantInput(4, "w_scale"),
                                                  zeroPoint: try context.constantInput(5, "w_zero_point"),
                                                  weightType: w.dtype, channels: channels)
        weightQuantization = quantization
        let scales = FusedQMatMulKernel.accumulatorScales(input.scale, quantization.scales)
        let yScale = try context.constantInput(7, "y_scale")
        let outputQuantization = try yScale.map {
            try ActivationQuantization(scale: $0, zeroPoint: try context.constantInput(8, "y_zero_point"), what: "y")
        }
        let floatBias: [Float]?
        let integerBias: [Int32]?
        (integerBias, floatBias) = try FusedQMatMulKernel.bias(try context.constantInput(6, "bias"), columns: channels,
                                                               scales: scales, floatOutput: yScale == nil)
        int32Bias = integerBias
        let clamp = try context.fusedClamp()
        let dequantizeOutput = try context.dequantizedOutput()
        let fusedOutput = try FusedOutput.make(output: outputQuantization, accumulatorScales: scales, columns: channels,
                                               floatBias: floatBias, low: clamp.low, high: clamp.high,
                                               dequantize: dequantizeOutput)
        output = fusedOutput
        outputTable = try Self.table(context, output: fusedOutput)
        channelStages = (0..<channels).map { fusedOutput.channels($0..<($0 + 1)) }
        if case .quantized(let quantized) = fusedOutput {
            codeRequantization = CodeRequantization(quantized.columns, table: outputTable)
        } else {
            codeRequantization = nil
        }

        let perGroup = channels / group
        let depth = w.count / max(channels, 1)
        let zeroPoints = (0..<channels).map { quantization.zeroPoints.count == 1 ? quantization.zeroPoints[0]
                                                                            : quantization.zeroPoints[$0] }
        let values = try w.quantizedIntegerValues(input: 3)
        let inputZeroByte = input.zeroPoint + (input.dtype == .int8 ? 128 : 0)
        if (w.rank == 3 || w.rank == 4), NCHWConvolution.isAvailable(.best) {
            if w.shape[1] == 1, perGroup == 1 {
                planeDepthwise = DepthwiseConvWeights(values: values, channels: channels, taps: depth, zeroPoints: zeroPoints,
                                                      bias: integerBias, inputZeroPoint: inputZeroByte)
                planeWeights = nil
            } else {
                planeWeights = NCHWConvWeights(values: values, channels: channels, depth: depth, unsigned: w.dtype == .uint8,
                                               zeroPoints: zeroPoints, bias: integerBias, inputZeroPoint: inputZeroByte)
                planeDepthwise = nil
            }
            depthwiseWeights = nil
            groups = nil
            return
        }
        planeWeights = nil
        planeDepthwise = nil
        if w.shape[1] == 1, perGroup == 1, w.rank == 4 {
            depthwiseWeights = (0..<(channels * depth)).map { values[$0] - zeroPoints[$0 / depth] }
            groups = nil
        } else {
            depthwiseWeights = nil
            groups = try (0..<group).map { g in
                let slice = Array(values[(g * perGroup * depth)..<((g + 1) * perGroup * depth)])
                let tensor = w.dtype == .int8 ? try Tensor(shape: [perGroup, depth], scalars: slice.map { Int8($0) })
                                              : try Tensor(shape: [perGroup, depth], scalars: slice.map { UInt8($0) })
                let range = (g * perGroup)..<((g + 1) * perGroup)
                return try FusedInt8Weights(
                    weights: tensor, k: depth, n: perGroup, transposed: true,
                    zeroPoints: quantization.zeroPoints.count == 1 ? quantization.zeroPoints : Array(zeroPoints[range]),
                    bias: integerBias.map { Array($0[range]) })
            }
        }
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try required(inputs, 0)
        guard x.dtype == input.dtype else {
            throw KernelError.invalidInput(index: 0, reason: "X is \(x.dtype) but its zero point is \(input.dtype)")
        }
        let geometry = try IntegerConvGeometry(x: x.shape, w: weightValues.shape, attributes: attributes)
        if planeWeights != nil || planeDepthwise != nil {
            guard level != .reference, let result = try runPlanes(x, geometry: geometry, context: context) else {
                return try runReference(inputs)
            }
            return [result]
        }
        var y = try Tensor(zeros: output.dtype, shape: geometry.outputShape)
        guard y.count > 0 else { return [y] }
        if let depthwiseWeights {
            try runDepthwise(x, geometry: geometry, weights: depthwiseWeights, into: &y, threads: context.threadCount)
        } else {
            runGroups(x, geometry: geometry, into: &y, threads: context.threadCount)
        }
        if let outputTable {
            y.withUnsafeMutableBytes { applyByteTable(outputTable, UnsafeRawBufferPointer($0), $0, threads: context.threadCount) }
        }
        return [y]
    }

    /// Each group as one GEMM over an im2col copy of its codes (positions as rows).
    private func runGroups(_ x: Tensor, geometry: IntegerConvGeometry, into y: inout Tensor, threads: Int) {
        let positions = geometry.outputPlaneSize
        let perGroup = geometry.outputChannels / geometry.group
        let depth = geometry.inputChannels / geometry.group * geometry.kernelSize
        let columns = UnsafeMutablePointer<UInt8>.allocate(capacity: max(positions * depth, 1))
        defer { columns.deallocate() }
        let elementSize = output.dtype == .float32 ? 4 : 1
        let zeroPoint = input.dtype == .int8 ? input.zeroPoint + 128 : input.zeroPoint
        let im2col = Im2Col(geometry: geometry)
        y.withUnsafeMutableBytes { raw in
            for n in 0..<geometry.batch {
                for g in 0..<geometry.group {
                    im2col.fill(columns, x: x, image: n, group: g, paddingCode: UInt8(truncatingIfNeeded: zeroPoint),
                                threads: threads)
                    let group = groups![g]
                    let offset = (n * geometry.outputChannels + g * perGroup) * positions * elementSize
                    output.channels((g * perGroup)..<((g + 1) * perGroup)).execute(
                        Int8GEMMActivations(m: positions, a: columns, lda: depth, zeroPoint: zeroPoint),
                        weights: group, output: raw.baseAddress! + offset, rowStride: 1, columnStride: positions,
                        threads: threads)
                }
            }
        }
    }

    /// The C kernels straight into NCHW planes: codes when the output is quantized, else int32 sums that
    /// each channel's output stage turns into floats. nil when `level` has no C kernel here.
    private func runPlanes(_ x: Tensor, geometry: IntegerConvGeometry, context: ExecutionContext) throws -> Tensor? {
        guard let window = sq_qwindow(geometry) else { return nil }
        let result = try context.output(output.dtype, shape: geometry.outputShape)
        guard result.tensor.count > 0 else { return result.tensor }
        let flip: UInt8 = x.dtype == .int8 ? 0x80 : 0
        let zeroByte = UInt8(truncatingIfNeeded: input.zeroPoint + (x.dtype == .int8 ? 128 : 0))
        let threads = context.threadCount
        let accumulators = codeRequantization == nil ? UnsafeMutablePointer<Int32>.allocate(capacity: result.tensor.count) : nil
        defer { accumulators?.deallocate() }
        let target = accumulators.map { UnsafeMutableRawPointer($0) } ?? result.bytes
        let ran: Bool
        if let planeDepthwise {
            ran = NCHWConvolution.runDepthwise(x, geometry: geometry, window: window, weights: planeDepthwise, flip: flip,
                                               zeroByte: zeroByte, requantization: codeRequantization, y: target,
                                               level: level, threads: threads)
        } else {
            ran = NCHWConvolution.run(x, geometry: geometry, window: window, weights: planeWeights!, flip: flip,
                                      zeroByte: zeroByte, requantization: codeRequantization, y: target, level: level,
                                      threads: threads)
        }
        guard ran else { return nil }
        if let accumulators {
            let positions = geometry.outputPlaneSize, channels = geometry.outputChannels
            Parallel.forEach(geometry.batch * channels, threads: threads) { plane in
                let stage = channelStages[plane % channels].contiguousStage(result.bytes + plane * positions * 4)
                stage(accumulators + plane * positions, positions)
            }
        }
        return result.tensor
    }

    /// The code table of the `output_table` attribute: 256 codes of the (quantized) output's type.
    private static func table(_ context: KernelBuildContext, output: FusedOutput) throws -> [UInt8]? {
        guard let attribute = context.node.attributes["output_table"] else { return nil }
        guard let table = attribute.tensorValue, table.count == 256, case .quantized(let quantized) = output,
              table.dtype == quantized.quantization.dtype else {
            throw KernelError.invalidAttribute("output_table", "must be 256 codes of the quantized output's type")
        }
        return table.withUnsafeBytes { Array($0.bindMemory(to: UInt8.self)) }
    }

    /// Depthwise 2-D: per channel, `acc[o] = Σ_taps (x − x_zp)·(w − w_zp) + bias` over output rows, taps
    /// outside the input skipped (they would add `(x_zp − x_zp)·w = 0`).
    private func runDepthwise(_ x: Tensor, geometry g: IntegerConvGeometry, weights: [Int32], into y: inout Tensor,
                              threads: Int) throws {
        let (height, width) = (g.inputSpatial[0], g.inputSpatial[1])
        let (outHeight, outWidth) = (g.outputSpatial[0], g.outputSpatial[1])
        let (kernelHeight, kernelWidth) = (g.kernelSpatial[0], g.kernelSpatial[1])
        let (strideH, strideW) = (g.strides[0], g.strides[1]), (dilationH, dilationW) = (g.dilations[0], g.dilations[1])
        let (padTop, padLeft) = (g.padsBegin[0], g.padsBegin[1])
        let taps = kernelHeight * kernelWidth, positions = g.outputPlaneSize, channels = g.outputChannels
        let widened = try x.quantizedIntegerValues(input: 0).map { $0 &- input.zeroPoint }
        let bias = int32Bias ?? [Int32](repeating: 0, count: channels)
        let elementSize = output.dtype == .float32 ? 4 : 1
        y.withUnsafeMutableBytes { raw in
            widened.withUnsafeBufferPointer { source in
                weights.withUnsafeBufferPointer { filters in
                    Parallel.forEach(g.batch * channels, threads: threads) { plane in
                        let channel = plane % channels
                        let input = source.baseAddress! + plane * height * width
                        let filter = filters.baseAddress! + channel * taps
                        var acc = [Int32](repeating: bias[channel], count: positions)
                        acc.withUnsafeMutableBufferPointer { acc in
                            for oh in 0..<outHeight {
                                let row = acc.baseAddress! + oh * outWidth
                                for kh in 0..<kernelHeight {
                                    let ih = oh * strideH - padTop + kh * dilationH
                                    guard ih >= 0, ih < height else { continue }
                                    let inputRow = input + ih * width
                                    for kw in 0..<kernelWidth {
                                        let weight = filter[kh * kernelWidth + kw]
                                        let shift = kw * dilationW - padLeft
                                        // Output columns whose tap lands inside the row: 0 ≤ ow·s + shift < width.
                                        let first = shift >= 0 ? 0 : (-shift + strideW - 1) / strideW
                                        let last = width - 1 - shift < 0 ? -1 : min(outWidth - 1, (width - 1 - shift) / strideW)
                                        guard first <= last else { continue }
                                        if strideW == 1 {
                                            let base = inputRow + shift
                                            for ow in first...last { row[ow] = row[ow] &+ base[ow] &* weight }
                                        } else {
                                            for ow in first...last { row[ow] = row[ow] &+ inputRow[ow * strideW + shift] &* weight }
                                        }
                                    }
                                }
                            }
                        }
                        let stage = channelStages[channel].contiguousStage(raw.baseAddress! + plane * positions * elementSize)
                        acc.withUnsafeBufferPointer { stage($0.baseAddress!, positions) }
                    }
                }
            }
        }
    }

    /// The reference twin: the direct integer convolution of the ConvInteger reference on `x − x_zp` and
    /// `w − w_zp`, plus bias, then the output stage element by element.
    func runReference(_ inputs: [Tensor?]) throws -> [Tensor] {
        let x = try required(inputs, 0)
        let geometry = try IntegerConvGeometry(x: x.shape, w: weightValues.shape, attributes: attributes)
        let channels = geometry.outputChannels, positions = geometry.outputPlaneSize
        let xValues = try x.quantizedIntegerValues(input: 0).map { $0 &- input.zeroPoint }
        let perChannel = weightValues.count / max(channels, 1)
        let wValues = try weightValues.quantizedIntegerValues(input: 3).enumerated().map { index, value in
            value &- weightQuantization.zeroPoints[weightQuantization.zeroPoints.count == 1 ? 0 : index / perChannel]
        }
        var acc = [Int32](repeating: 0, count: geometry.batch * channels * positions)
        xValues.withUnsafeBufferPointer { xBuffer in
            wValues.withUnsafeBufferPointer { wBuffer in
                acc.withUnsafeMutableBufferPointer { output in
                    integerConvolution(x: xBuffer, w: wBuffer, geometry: geometry, output: output,
                                       context: ExecutionContext(threadCount: 1))
                }
            }
        }
        // Channels last for the output stage, then back.
        var channelsLast = [Int32](repeating: 0, count: acc.count)
        for n in 0..<geometry.batch {
            for m in 0..<channels {
                for p in 0..<positions {
                    channelsLast[(n * positions + p) * channels + m] = acc[(n * channels + m) * positions + p] &+ (int32Bias?[m] ?? 0)
                }
            }
        }
        var result = output.reference(channelsLast)
        if let outputTable, let codes = result.codes {
            result.codes = codes.map { Int32(outputTable[Int(UInt8(truncatingIfNeeded: $0))]) }
        }
        var y = try Tensor(zeros: output.dtype, shape: geometry.outputShape)
        for n in 0..<geometry.batch {
            for m in 0..<channels {
                for p in 0..<positions {
                    let source = (n * positions + p) * channels + m, target = (n * channels + m) * positions + p
                    y.setReferenceElement(target, codes: result.codes, floats: result.floats, source: source)
                }
            }
        }
        return [y]
    }
}

/// im2col of 8-bit codes for one image and group: row p (an output position) holds, for each input
/// channel of the group and each kernel tap, the code under that tap, or the padding code outside the
/// input. int8 codes are flipped to uint8 on the way (`^ 0x80`).
struct Im2Col {
    let geometry: IntegerConvGeometry
    /// Per kernel tap: its offset inside a channel plane from the window origin.
    let tapOffsets: [Int]
    /// Per kernel tap and axis: the tap's index along the axis, times the dilation.
    let tapSteps: [Int]
    /// Per output position and axis: the window origin.
    let origins: [Int]
    /// Per output position: the origin's plane offset, and whether the whole window is inside.
    let originOffsets: [Int]
    let interior: [Bool]

    init(geometry g: IntegerConvGeometry) {
        geometry = g
        let rank = g.inputSpatial.count
        let planeStrides = Shape.strides(g.inputSpatial)
        var tapOffsets = [Int](repeating: 0, count: g.kernelSize), tapSteps = [Int](repeating: 0, count: g.kernelSize * rank)
        for q in 0..<g.kernelSize {
            var rest = q, offset = 0
            for axis in stride(from: rank - 1, through: 0, by: -1) {
                let k = rest % g.kernelSpatial[axis]
                rest /= g.kernelSpatial[axis]
                tapSteps[q * rank + axis] = k * g.dilations[axis]
                offset = offset &+ k &* g.dilations[axis] &* planeStrides[axis]
            }
            tapOffsets[q] = offset
        }
        var origins = [Int](repeating: 0, count: g.outputPlaneSize * rank)
        var originOffsets = [Int](repeating: 0, count: g.outputPlaneSize), interior = [Bool](repeating: true, count: g.outputPlaneSize)
        for p in 0..<g.outputPlaneSize {
            var rest = p, offset = 0
            for axis in stride(from: rank - 1, through: 0, by: -1) {
                let o = rest % g.outputSpatial[axis]
                rest /= g.outputSpatial[axis]
                let start = o * g.strides[axis] - g.padsBegin[axis]
                origins[p * rank + axis] = start
                offset = offset &+ start &* planeStrides[axis]
                if start < 0 || start + (g.kernelSpatial[axis] - 1) * g.dilations[axis] >= g.inputSpatial[axis] {
                    interior[p] = false
                }
            }
            originOffsets[p] = offset
        }
        self.tapOffsets = tapOffsets
        self.tapSteps = tapSteps
        self.origins = origins
        self.originOffsets = originOffsets
        self.interior = interior
    }

    /// Fills `columns` (`positions × (C/group · taps)`) for image `n`, group `group`.
    func fill(_ columns: UnsafeMutablePointer<UInt8>, x: Tensor, image n: Int, group: Int, paddingCode: UInt8,
              threads: Int) {
        let g = geometry
        let rank = g.inputSpatial.count, plane = g.planeSize, taps = g.kernelSize
        let groupChannels = g.inputChannels / g.group
        let depth = groupChannels * taps
        let flip: UInt8 = x.dtype == .int8 ? 0x80 : 0
        let planeStrides = Shape.strides(g.inputSpatial)
        x.withUnsafeBytes { raw in
            let source = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
                + (n * g.inputChannels + group * groupChannels) * plane
            tapOffsets.withUnsafeBufferPointer { tapOffsets in
            tapSteps.withUnsafeBufferPointer { tapSteps in
            origins.withUnsafeBufferPointer { origins in
            originOffsets.withUnsafeBufferPointer { originOffsets in
            interior.withUnsafeBufferPointer { interior in
                Parallel.forRanges(g.outputPlaneSize, threads: threads, grain: 64) { positions in
                    for p in positions {
                        let row = columns + p * depth
                        if interior[p] {
                            let origin = originOffsets[p]
                            for c in 0..<groupChannels {
                                let window = source + c * plane + origin
                                let target = row + c * taps
                                for q in 0..<taps { target[q] = window[tapOffsets[q]] ^ flip }
                            }
                        } else {
                            for q in 0..<taps {
                                var offset = 0, inside = true
                                for axis in 0..<rank {
                                    let i = origins[p * rank + axis] + tapSteps[q * rank + axis]
                                    if i < 0 || i >= g.inputSpatial[axis] { inside = false; break }
                                    offset += i * planeStrides[axis]
                                }
                                for c in 0..<groupChannels {
                                    row[c * taps + q] = inside ? source[c * plane + offset] ^ flip : paddingCode
                                }
                            }
                        }
                    }
                }
            }}}}}
        }
    }
}
