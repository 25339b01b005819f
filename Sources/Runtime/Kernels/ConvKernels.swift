import GraphIR
import Tensors
import _CKernels

/// Conv (opsets 1, 11, 22): `Y[n, m] = B[m] + Σ_{c in group(m)} Σ_taps W[m, c, taps] · X[n, c, o·stride − pad + tap·dilation]`
/// over 1-D, 2-D and 3-D inputs, with groups, dilations, strides, explicit pads or `auto_pad`, and an
/// optional bias. float32 picks one of three paths per node:
/// - depthwise (one input channel per group): a direct sliding-window loop per channel, or, for output
///   rows narrower than a vector, 16 channels at a time as vector lanes;
/// - 1×1 with unit strides and no padding: a GEMM straight on X (no im2col);
/// - everything else: im2col, written straight in the SGEMM's packed panels, then a GEMM
///   `W_g (M/g × C/g·k) · col (C/g·k × spatial)`.
/// The weights are the GEMM's A operand, which the SGEMM micro-kernel reads in k-major chunks; they
/// are converted to float32 once when constant. The bias (and a fused activation, see `FloatFusion`) is
/// the GEMM's epilogue. float64 runs the direct loop; float16/bfloat16 widen.
struct ConvKernel: Kernel {
    let window: WindowAttributes
    let group: Int
    /// Constant float32 weights (float16/bfloat16 constants widened once), used instead of input 1.
    let constantWeights: Tensor?
    /// A fused activation (see `FloatFusion`), applied to float32 results while they are in cache.
    var activation: SGEMM.Activation?
    /// A folded BatchNormalization's bias (see `FloatFusion`), used instead of input 2; float32 only.
    let foldedBias: Tensor?

    /// - Parameter folded: weights and bias with a BatchNormalization folded in, used instead of inputs 1 and 2.
    init(_ context: KernelBuildContext, activation: SGEMM.Activation? = nil,
         folded: (weights: Tensor, bias: Tensor)? = nil) throws {
        self.activation = activation
        window = try WindowAttributes(context)
        group = try context.int("group", default: 1)
        guard group > 0 else { throw KernelError.invalidAttribute("group", "must be positive, got \(group)") }
        foldedBias = folded?.bias
        if let folded {
            constantWeights = folded.weights
        } else if let w = context.constant(1), w.dtype == .float32 || ReducedPrecision.isReduced(w.dtype) {
            constantWeights = try ReducedPrecision.widened(w)
        } else {
            constantWeights = nil
        }
    }

    static let dtypes: Set<DType> = [.float32, .float64, .float16, .bfloat16]

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        if foldedBias != nil {
            // The fused group reads X only; other types run the original nodes.
            guard let x = inputs.first ?? nil, x.dtype == .float32, let w = constantWeights else { throw FusedKernelDeclined() }
            let problem = try ConvProblem(x: x.shape, w: w.shape, bias: foldedBias?.shape, group: group, window: window)
            var fused = problem
            fused.activation = activation
            return [try fused.runFloat(x: x, w: w, bias: foldedBias, context: context)]
        }
        let x = try required(inputs, 0), w = try required(inputs, 1)
        let bias = optional(inputs, 2)
        try x.requireDType(Self.dtypes, input: 0, "Conv")
        for (index, tensor) in [(1, w), (2, bias)] {
            if let tensor, tensor.dtype != x.dtype {
                throw KernelError.invalidInput(index: index, reason: "dtype \(tensor.dtype) differs from X's \(x.dtype)")
            }
        }
        var problem = try ConvProblem(x: x.shape, w: w.shape, bias: bias?.shape, group: group, window: window)
        if let activation {
            guard x.dtype == .float32 else { throw FusedKernelDeclined() }
            problem.activation = activation
        }
        return try problem.run(inputs, x: x, w: w, bias: bias, constantWeights: constantWeights, context: context)
    }
}

/// A validated convolution-like problem (Conv, ConvTranspose) with a float32 fast path and a direct
/// reference loop; `run` picks the path by dtype, the same way for both.
protocol FloatConvolutionProblem {
    func runFloat(x: Tensor, w: Tensor, bias: Tensor?, context: ExecutionContext) throws -> Tensor
    func runDirect<T: BinaryFloatingPoint & TensorScalar>(x: Tensor, w: Tensor, bias: Tensor?, as type: T.Type) throws -> Tensor
}

extension FloatConvolutionProblem {
    /// float32 on the fast path (with prepared constant weights when given), float64 on the direct loop,
    /// float16/bfloat16 widened to float32 and rounded back.
    func run(_ inputs: [Tensor?], x: Tensor, w: Tensor, bias: Tensor?, constantWeights: Tensor?,
             context: ExecutionContext) throws -> [Tensor] {
        switch x.dtype {
        case .float32:
            return [try runFloat(x: x, w: constantWeights ?? w, bias: bias, context: context)]
        case .float64:
            return [try runDirect(x: x, w: w, bias: bias, as: Double.self)]
        default:
            return try ReducedPrecision.bridged(inputs, dtype: x.dtype) { wide in
                [try runFloat(x: wide[0]!, w: constantWeights ?? wide[1]!, bias: wide.count > 2 ? wide[2] : nil,
                              context: context)]
            }
        }
    }
}

/// One convolution's shapes, validated, with the spatial axes lifted to three.
struct ConvProblem: FloatConvolutionProblem {
    var batch: Int
    var channels: Int
    var outputChannels: Int
    var groups: Int
    /// Three axes (depth, height, width), leading unit axes for 1-D and 2-D.
    var axes: [WindowAxis]
    var outputShape: [Int]
    /// Applied to every float32 output after its bias (a fused activation node).
    var activation: SGEMM.Activation?

    var channelsPerGroup: Int { channels / groups }
    var outputsPerGroup: Int { outputChannels / groups }
    var inputSpatial: Int { axes[0].input * axes[1].input * axes[2].input }
    var outputSpatial: Int { axes[0].output * axes[1].output * axes[2].output }
    var kernelSize: Int { axes[0].kernel * axes[1].kernel * axes[2].kernel }

    init(x: [Int], w: [Int], bias: [Int]?, group: Int, window: WindowAttributes) throws {
        guard x.count >= 3 else { throw KernelError.invalidInput(index: 0, reason: "Conv needs X of rank ≥ 3, got \(x)") }
        guard w.count == x.count else {
            throw KernelError.invalidInput(index: 1, reason: "W \(w) must have the rank of X \(x)")
        }
        batch = x[0]
        channels = x[1]
        outputChannels = w[0]
        groups = group
        guard w[1] * group == channels else {
            throw KernelError.invalid(
                "Conv: X has \(channels) channels but W expects \(w[1]) per group × \(group) groups")
        }
        guard outputChannels % group == 0 else {
            throw KernelError.invalid("Conv: group \(group) does not divide the \(outputChannels) output channels")
        }
        if let bias, bias != [outputChannels] {
            throw KernelError.invalidInput(index: 2, reason: "bias must have shape [\(outputChannels)], got \(bias)")
        }
        let spatial = Array(x.dropFirst(2))
        let kernel = try window.kernel(rank: spatial.count, fromWeights: Array(w.dropFirst(2)))
        let spatialAxes = try window.convolutionAxes(input: spatial, kernel: kernel)
        axes = try WindowAxis.lifted(spatialAxes)
        outputShape = [batch, outputChannels] + spatialAxes.map(\.output)
        _ = try Shape.elementCount(outputShape)
        _ = try SpatialMath.multiply(channelsPerGroup, kernelSize, "im2col rows")
        _ = try SpatialMath.multiply(channelsPerGroup * kernelSize, outputSpatial, "im2col size")
    }

    var isDepthwise: Bool { channelsPerGroup == 1 && groups > 1 }
    var isPointwise: Bool {
        kernelSize == 1 && axes.allSatisfy { $0.stride == 1 && $0.padBegin == 0 && $0.padEnd == 0 }
    }

    // MARK: float32

    /// Every path writes every output element: depthwise planes start from their bias, the GEMMs run
    /// with beta = 0 and the bias in their epilogue.
    func runFloat(x: Tensor, w: Tensor, bias: Tensor?, context: ExecutionContext) throws -> Tensor {
        let output = try context.output(.float32, shape: outputShape)
        guard output.tensor.count > 0 else { return output.tensor }
        let threads = context.threadCount
        x.withUnsafeBufferPointer(as: Float.self) { xBuffer in
            w.withUnsafeBufferPointer(as: Float.self) { wBuffer in
                // Without a bias, any float32 tensor serves as the buffer; its pointer is not used.
                (bias ?? x).withUnsafeBufferPointer(as: Float.self) { biasBuffer in
                    let biasValues = bias == nil ? nil : biasBuffer.baseAddress
                    let x = xBuffer.baseAddress!, w = wBuffer.baseAddress!, y = output.pointer(as: Float.self)
                    if isDepthwise {
                        runDepthwise(x: x, w: w, bias: biasValues, y: y, threads: threads)
                    } else {
                        runGEMM(x: x, w: w, bias: biasValues, y: y, threads: threads)
                    }
                }
            }
        }
        return output.tensor
    }

    private func runDepthwise(x: UnsafePointer<Float>, w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                              y: UnsafeMutablePointer<Float>, threads: Int) {
        let (inSize, outSize, taps, perGroup) = (inputSpatial, outputSpatial, kernelSize, outputsPerGroup)
        let geometry = windowGeometry
        let activation = self.activation.map { SGEMM.Epilogue(activation: $0) }
        // Small layers stay on the calling thread (see `SGEMM.parallelThreshold`).
        let threads = batch * outputChannels * outSize * taps < SGEMM.parallelThreshold ? 1 : threads
        // Output rows narrower than a vector: channels as lanes, 16 planes at a time (one input plane
        // per output channel). The kernel declines where it does not apply; the planes then run below.
        if perGroup == 1, axes[2].output < 16 {
            let blocks = (outputChannels + 15) / 16
            let declined = UnsafeMutablePointer<Bool>.allocate(capacity: batch * blocks)
            defer { declined.deallocate() }
            Parallel.forEach(batch * blocks, threads: threads) { task in
                let (n, block) = task.quotientAndRemainder(dividingBy: blocks)
                let first = block * 16, count = min(16, outputChannels - first)
                let out = y + (n * outputChannels + first) * outSize
                let done = withUnsafePointer(to: geometry) { g in
                    sq_conv_depthwise_channels(-1, x + (n * channels + first) * inSize, w + first * taps,
                                               bias.map { $0 + first }, out, count, g)
                }
                declined[task] = done == 0
                if done != 0 { activation?.apply(to: out, rows: 1, columns: count * outSize, ldc: count * outSize) }
            }
            guard (0..<(batch * blocks)).contains(where: { declined[$0] }) else { return }
        }
        Parallel.forEach(batch * outputChannels, threads: threads) { index in
            let (n, m) = index.quotientAndRemainder(dividingBy: outputChannels)
            let inputChannel = m / perGroup
            withUnsafePointer(to: geometry) { g in
                sq_conv_depthwise_plane(-1, x + (n * channels + inputChannel) * inSize, w + m * taps, bias?[m] ?? 0,
                                        y + index * outSize, g)
            }
            // The plane is still in cache.
            activation?.apply(to: y + index * outSize, rows: 1, columns: outSize, ldc: outSize)
        }
    }

    private func runGEMM(x: UnsafePointer<Float>, w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                         y: UnsafeMutablePointer<Float>, threads: Int) {
        let rowsPerGroup = outputsPerGroup
        let depth = channelsPerGroup * kernelSize
        let (inSize, outSize) = (inputSpatial, outputSpatial)
        let pointwise = isPointwise
        let tasks = batch * groups
        // Enough independent (image, group) products: one per thread, each single-threaded. Otherwise
        // the GEMM itself is split.
        let outerThreads = tasks >= threads ? threads : 1
        let innerThreads = outerThreads == 1 ? threads : 1
        Parallel.forEach(tasks, threads: outerThreads) { task in
            let (n, g) = task.quotientAndRemainder(dividingBy: groups)
            let xGroup = x + (n * channels + g * channelsPerGroup) * inSize
            let yGroup = y + (n * outputChannels + g * rowsPerGroup) * outSize
            // The bias (one per output channel, a row of C) and activation are the GEMM's epilogue.
            let epilogue: SGEMM.Epilogue? = bias == nil && activation == nil ? nil
                : SGEMM.Epilogue(rowBias: bias.map { $0 + g * rowsPerGroup }, activation: activation)
            let beta: Float = 0
            let weights = w + g * rowsPerGroup * depth
            if pointwise {
                SGEMM.multiply(m: rowsPerGroup, n: outSize, k: depth, a: weights, lda: depth, b: xGroup, ldb: inSize,
                               beta: beta, c: yGroup, ldc: outSize, threads: innerThreads, epilogue: epilogue)
            } else {
                runPatchGEMM(x: xGroup, weights: weights, epilogue: epilogue, y: yGroup, threads: innerThreads)
            }
        }
    }

    /// The sliding window of one plane for the C kernels.
    var windowGeometry: sq_window3d {
        func triple(_ field: (WindowAxis) -> Int) -> (Int, Int, Int) { (field(axes[0]), field(axes[1]), field(axes[2])) }
        return sq_window3d(input: triple(\.input), output: triple(\.output), kernel: triple(\.kernel),
                           stride: triple(\.stride), dilation: triple(\.dilation), pad_begin: triple(\.padBegin))
    }

    /// One group of one image through im2col and SGEMM: the patch matrix of a block of whole output rows
    /// is written straight in the SGEMM's packed-B layout (`sq_im2col_packed`), then multiplied by the
    /// group's weights with the epilogue.
    ///
    /// Blocks hold about 256 KB of patches, which stay in L2 next to the weights and the output rows
    /// while the GEMM reads them (measured on Zen 5: 1 MB blocks cost 15% on a 64-channel 56 × 56 layer),
    /// grown to whole 16-column panels when that at most quadruples them, so only the last block pads
    /// its last panel. Planes of at most 256 columns are one block: 7 × 7 = 49 columns in four row
    /// blocks would compute 64 × 4, in one block 64. Threads take
    /// whole blocks (each writes its own), or, with a single block, split the output channels, so each
    /// streams only its share of the weights.
    private func runPatchGEMM(x: UnsafePointer<Float>, weights: UnsafePointer<Float>, epilogue: SGEMM.Epilogue?,
                              y: UnsafeMutablePointer<Float>, threads: Int) {
        let depth = channelsPerGroup * kernelSize
        let rowsPerGroup = outputsPerGroup
        let width = axes[2].output
        let outSize = outputSpatial
        let totalRows = axes[0].output * axes[1].output
        let rowFloats = max(depth * width, 1)
        var rowsPerBlock = max(1, min(totalRows, (1 << 16) / rowFloats))
        if totalRows * width <= 256, rowFloats * totalRows <= 1 << 20 {
            rowsPerBlock = totalRows
        } else if let aligned = (rowsPerBlock...min(totalRows, 4 * rowsPerBlock)).first(where: { $0 * width % 16 == 0 }) {
            rowsPerBlock = aligned
        }
        var blocks = (totalRows + rowsPerBlock - 1) / rowsPerBlock
        let threads = rowsPerGroup * outSize * depth < SGEMM.parallelThreshold ? 1 : threads
        if threads > 1, blocks > 1 {
            // Whole rounds of blocks, so no thread waits for one last block.
            blocks = (blocks + threads - 1) / threads * threads
            rowsPerBlock = (totalRows + blocks - 1) / blocks
            blocks = (totalRows + rowsPerBlock - 1) / rowsPerBlock
        }
        var geometry = windowGeometry
        /// Output channels `outputs` of the columns of rows [first, last), from their packed patches.
        func multiply(_ packed: UnsafePointer<Float>, outputs: Range<Int>, first: Int, last: Int) {
            let columns = (last - first) * width
            let a = weights + outputs.lowerBound * depth, c = y + outputs.lowerBound * outSize + first * width
            if var raw = epilogue?.raw(row: outputs.lowerBound) {
                sq_sgemm_packed_fused(-1, 0, outputs.count, columns, depth, 1, a, depth, packed, 0, columns, 0, c, outSize, &raw)
            } else {
                sq_sgemm_packed_fused(-1, 0, outputs.count, columns, depth, 1, a, depth, packed, 0, columns, 0, c, outSize, nil)
            }
        }
        if blocks == 1, threads > 1 {
            withPatches(x, &geometry, first: 0, last: totalRows) { packed in
                Parallel.forRanges(rowsPerGroup, threads: threads, grain: 16) { outputs in
                    multiply(packed, outputs: outputs, first: 0, last: totalRows)
                }
            }
            return
        }
        Parallel.forEach(blocks, threads: threads) { block in
            let first = block * rowsPerBlock, last = min(totalRows, first + rowsPerBlock)
            guard first < last else { return }
            var geometry = geometry
            withPatches(x, &geometry, first: first, last: last) { packed in
                multiply(packed, outputs: 0..<rowsPerGroup, first: first, last: last)
            }
        }
    }

    /// Calls `body` with the packed patches of output rows [first, last), in the calling thread's
    /// reusable buffer (or a new one when that cannot grow).
    private func withPatches(_ x: UnsafePointer<Float>, _ geometry: inout sq_window3d, first: Int, last: Int,
                             _ body: (UnsafePointer<Float>) -> Void) {
        let count = max(sq_im2col_packed_count(channelsPerGroup, &geometry, first, last), 1)
        if let scratch = sq_im2col_scratch(count) {
            sq_im2col_packed(-1, x, channelsPerGroup, &geometry, first, last, scratch)
            body(scratch)
        } else {
            let packed = UnsafeMutablePointer<Float>.allocate(capacity: count)
            defer { packed.deallocate() }
            sq_im2col_packed(-1, x, channelsPerGroup, &geometry, first, last, packed)
            body(packed)
        }
    }

    /// The reference twin of `sq_im2col_packed` (before packing). Writes the patch matrix of `channels` input planes for the output rows `rows` (flattened (od, oh)
    /// indices): row (c, kd, kh, kw) of `col`, column (od, oh, ow) relative to the first row, zero where a
    /// tap falls in the padding. `col` has `rows.count · outputWidth` columns.
    func im2col(x: UnsafePointer<Float>, channels: Int, rows: Range<Int>, into col: UnsafeMutablePointer<Float>) {
        let (ad, ah, aw) = (axes[0], axes[1], axes[2])
        let inSize = inputSpatial
        let width = aw.output
        let blockColumns = rows.count * width
        var colRow = col
        for c in 0..<channels {
            let plane = x + c * inSize
            for kd in 0..<ad.kernel {
                let dRange = ad.validOutputs(tap: kd)
                for kh in 0..<ah.kernel {
                    let hRange = ah.validOutputs(tap: kh)
                    for kw in 0..<aw.kernel {
                        let wRange = aw.validOutputs(tap: kw)
                        let wOffset = kw * aw.dilation - aw.padBegin
                        var out = colRow
                        for r in rows {
                            defer { out += width }
                            let (od, oh) = r.quotientAndRemainder(dividingBy: ah.output)
                            guard dRange.contains(od), hRange.contains(oh) else {
                                out.update(repeating: 0, count: width)
                                continue
                            }
                            let id = od * ad.stride - ad.padBegin + kd * ad.dilation
                            let ih = oh * ah.stride - ah.padBegin + kh * ah.dilation
                            let source = plane + (id * ah.input + ih) * aw.input + wOffset
                            if wRange.lowerBound > 0 { out.update(repeating: 0, count: wRange.lowerBound) }
                            if aw.stride == 1 {
                                (out + wRange.lowerBound).update(from: source + wRange.lowerBound, count: wRange.count)
                            } else if !wRange.isEmpty {
                                sq_copy_strided(-1, out + wRange.lowerBound, source + wRange.lowerBound * aw.stride,
                                                wRange.count, aw.stride)
                            }
                            if wRange.upperBound < width {
                                (out + wRange.upperBound).update(repeating: 0, count: width - wRange.upperBound)
                            }
                        }
                        colRow += blockColumns
                    }
                }
            }
        }
    }

    /// Adds one input plane convolved with one filter plane into an output plane (the direct loop;
    /// taps outermost so the innermost loop runs along a contiguous output row).
    func accumulateChannel<T: BinaryFloatingPoint>(
        x: UnsafePointer<T>, weights: UnsafePointer<T>, into out: UnsafeMutablePointer<T>
    ) {
        let (ad, ah, aw) = (axes[0], axes[1], axes[2])
        var tap = 0
        for kd in 0..<ad.kernel {
            let dRange = ad.validOutputs(tap: kd)
            for kh in 0..<ah.kernel {
                let hRange = ah.validOutputs(tap: kh)
                for kw in 0..<aw.kernel {
                    let weight = weights[tap]
                    tap += 1
                    let wRange = aw.validOutputs(tap: kw)
                    guard !wRange.isEmpty else { continue }
                    let wOffset = kw * aw.dilation - aw.padBegin
                    for od in dRange {
                        let id = od * ad.stride - ad.padBegin + kd * ad.dilation
                        for oh in hRange {
                            let ih = oh * ah.stride - ah.padBegin + kh * ah.dilation
                            let source = x + (id * ah.input + ih) * aw.input + wOffset
                            let row = out + (od * ah.output + oh) * aw.output
                            if aw.stride == 1 {
                                for ow in wRange { row[ow] += weight * source[ow] }
                            } else {
                                for ow in wRange { row[ow] += weight * source[ow * aw.stride] }
                            }
                        }
                    }
                }
            }
        }
    }

    // MARK: Direct (float64, and the reference twin of the float32 paths)

    /// The direct convolution: for each output channel, bias plus every input plane of its group
    /// convolved with the matching filter plane.
    func runDirect<T: BinaryFloatingPoint & TensorScalar>(x: Tensor, w: Tensor, bias: Tensor?, as type: T.Type) throws -> Tensor {
        var y = try Tensor(zeros: x.dtype, shape: outputShape)
        guard y.count > 0 else { return y }
        let biasValues = bias?.scalars(as: T.self)
        x.withUnsafeBufferPointer(as: T.self) { xBuffer in
            w.withUnsafeBufferPointer(as: T.self) { wBuffer in
                y.withUnsafeMutableBufferPointer(as: T.self) { yBuffer in
                    for n in 0..<batch {
                        for m in 0..<outputChannels {
                            let g = m / outputsPerGroup
                            let out = yBuffer.baseAddress! + (n * outputChannels + m) * outputSpatial
                            out.update(repeating: biasValues?[m] ?? 0, count: outputSpatial)
                            for c in 0..<channelsPerGroup {
                                let plane = xBuffer.baseAddress! + (n * channels + g * channelsPerGroup + c) * inputSpatial
                                let filter = wBuffer.baseAddress! + (m * channelsPerGroup + c) * kernelSize
                                accumulateChannel(x: plane, weights: filter, into: out)
                            }
                        }
                    }
                }
            }
        }
        return y
    }
}

extension KernelRegistry {
    mutating func registerConvKernels() {
        // 1 and 11 differ in wording only; 22 adds bfloat16.
        for version in [1, 11, 22] {
            register("Conv", since: version) { context in try ConvKernel(context) }
        }
    }
}
