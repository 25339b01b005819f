import GraphIR
import Tensors

/// ConvTranspose (opsets 1, 11, 22): the adjoint of Conv. Input position i and kernel tap k feed output
/// position `o = i · stride − padBegin + k · dilation`:
///
///     Y[n, g·M/G + m, o] = B[m] + Σ_{c in group g} Σ_k X[n, c, i] · W[c, m, k]
///
/// The output size is `stride · (in − 1) + output_padding + dilation · (kernel − 1) + 1 − padBegin − padEnd`,
/// or `output_shape` when given (pads then follow from the difference: the odd unit at the end for
/// SAME_UPPER, at the start otherwise), or `in · stride` for SAME_*. float32 computes
/// `col = W_gᵀ · X_g` with SGEMM, then scatters col into Y (col2im).
struct ConvTransposeKernel: Kernel {
    let window: WindowAttributes
    let group: Int
    let outputPadding: [Int]?
    let outputShape: [Int]?
    let constantWeights: Tensor?

    init(_ context: KernelBuildContext) throws {
        window = try WindowAttributes(context)
        group = try context.int("group", default: 1)
        guard group > 0 else { throw KernelError.invalidAttribute("group", "must be positive, got \(group)") }
        outputPadding = context.has("output_padding") ? try context.ints("output_padding") : nil
        outputShape = context.has("output_shape") ? try context.ints("output_shape") : nil
        if let w = context.constant(1), w.dtype == .float32 || ReducedPrecision.isReduced(w.dtype) {
            constantWeights = try ReducedPrecision.widened(w)
        } else {
            constantWeights = nil
        }
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try required(inputs, 0), w = try required(inputs, 1)
        let bias = optional(inputs, 2)
        try x.requireDType(ConvKernel.dtypes, input: 0, "ConvTranspose")
        for (index, tensor) in [(1, w), (2, bias)] {
            if let tensor, tensor.dtype != x.dtype {
                throw KernelError.invalidInput(index: index, reason: "dtype \(tensor.dtype) differs from X's \(x.dtype)")
            }
        }
        let problem = try ConvTransposeProblem(
            x: x.shape, w: w.shape, bias: bias?.shape, group: group, window: window,
            outputPadding: outputPadding, outputShape: outputShape)
        return try problem.run(inputs, x: x, w: w, bias: bias, constantWeights: constantWeights, context: context)
    }
}

struct ConvTransposeProblem: FloatConvolutionProblem {
    var batch: Int
    var channels: Int
    var outputChannels: Int
    var groups: Int
    /// Three axes in Conv's terms with the roles swapped: `input` is the output size of the transposed
    /// convolution and `output` the input size, so `validOutputs(tap:)` gives the input positions whose
    /// tap lands inside the output.
    var axes: [WindowAxis]
    var outputShape: [Int]

    var channelsPerGroup: Int { channels / groups }
    var outputsPerGroup: Int { outputChannels / groups }
    var inputSpatial: Int { axes[0].output * axes[1].output * axes[2].output }
    var outputSpatial: Int { axes[0].input * axes[1].input * axes[2].input }
    var kernelSize: Int { axes[0].kernel * axes[1].kernel * axes[2].kernel }

    init(x: [Int], w: [Int], bias: [Int]?, group: Int, window: WindowAttributes, outputPadding: [Int]?,
         outputShape requested: [Int]?) throws {
        guard x.count >= 3 else {
            throw KernelError.invalidInput(index: 0, reason: "ConvTranspose needs X of rank ≥ 3, got \(x)")
        }
        guard w.count == x.count else {
            throw KernelError.invalidInput(index: 1, reason: "W \(w) must have the rank of X \(x)")
        }
        batch = x[0]
        channels = x[1]
        groups = group
        guard w[0] == channels else {
            throw KernelError.invalid("ConvTranspose: X has \(channels) channels but W has \(w[0]) input channels")
        }
        guard channels % group == 0 else {
            throw KernelError.invalid("ConvTranspose: group \(group) does not divide the \(channels) input channels")
        }
        outputChannels = try SpatialMath.multiply(w[1], group, "output channels")
        if let bias, bias != [outputChannels] {
            throw KernelError.invalidInput(index: 2, reason: "bias must have shape [\(outputChannels)], got \(bias)")
        }
        let rank = x.count - 2
        let spatial = Array(x.dropFirst(2))
        let kernel = try window.kernel(rank: rank, fromWeights: Array(w.dropFirst(2)))
        let (strides, dilations, pads) = try window.resolved(rank: rank)
        let adjustments = outputPadding ?? Array(repeating: 0, count: rank)
        guard adjustments.count == rank else {
            throw KernelError.invalidAttribute("output_padding", "needs \(rank) values, got \(adjustments.count)")
        }
        var targets: [Int]?
        if let requested {
            if requested.count == rank { targets = requested }
            else if requested.count == rank + 2 { targets = Array(requested.dropFirst(2)) }  // older exporters
            else { throw KernelError.invalidAttribute("output_shape", "needs \(rank) values, got \(requested.count)") }
            if targets!.contains(where: { $0 < 0 }) {
                throw KernelError.invalidAttribute("output_shape", "must not be negative, got \(requested)")
            }
        }
        var lifted: [WindowAxis] = []
        for axis in 0..<rank {
            let stride = strides[axis], dilation = dilations[axis]
            guard adjustments[axis] >= 0, adjustments[axis] < max(stride, dilation) else {
                throw KernelError.invalidAttribute(
                    "output_padding", "must be in 0..<max(stride, dilation), got \(adjustments[axis]) on axis \(axis)")
            }
            let extent = try SpatialMath.windowExtent(kernel: kernel[axis], dilation: dilation)
            let natural = try SpatialMath.add(
                SpatialMath.add(SpatialMath.multiply(stride, max(spatial[axis] - 1, 0), "output size"),
                                adjustments[axis], "output size"), extent, "output size")
            var padBegin = 0, padEnd = 0, size: Int
            if let targets {
                size = targets[axis]
                let total = natural - size
                padBegin = window.autoPad == .sameUpper ? SpatialMath.floorDiv(total, 2) : total - SpatialMath.floorDiv(total, 2)
                padEnd = total - padBegin
            } else {
                switch window.autoPad {
                case .sameUpper, .sameLower:
                    size = try SpatialMath.multiply(spatial[axis], stride, "output size")
                    let total = natural - size
                    padBegin = window.autoPad == .sameUpper ? SpatialMath.floorDiv(total, 2) : total - SpatialMath.floorDiv(total, 2)
                    padEnd = total - padBegin
                case .valid:
                    size = natural
                case .notSet:
                    padBegin = pads[axis]
                    padEnd = pads[rank + axis]
                    let (afterBegin, overflowBegin) = natural.subtractingReportingOverflow(padBegin)
                    let (remaining, overflowEnd) = afterBegin.subtractingReportingOverflow(padEnd)
                    size = remaining
                    guard !overflowBegin, !overflowEnd, size >= 0 else {
                        throw KernelError.invalid("ConvTranspose: pads \(pads) leave a negative output size on axis \(axis)")
                    }
                }
            }
            lifted.append(WindowAxis(input: size, kernel: kernel[axis], stride: stride, dilation: dilation,
                                     padBegin: padBegin, padEnd: padEnd, output: spatial[axis]))
        }
        axes = try WindowAxis.lifted(lifted)
        outputShape = [batch, outputChannels] + lifted.map(\.input)
        _ = try Shape.elementCount(outputShape)
        _ = try SpatialMath.multiply(try SpatialMath.multiply(outputsPerGroup, kernelSize, "col rows"),
                                     inputSpatial, "col size")
    }

    // MARK: float32

    func runFloat(x: Tensor, w: Tensor, bias: Tensor?, context: ExecutionContext) throws -> Tensor {
        let threads = context.threadCount
        var y = try Tensor(zeros: .float32, shape: outputShape)
        guard y.count > 0 else { return y }
        let biasValues = bias?.scalars(as: Float.self)
        let rows = outputsPerGroup * kernelSize
        let (inSize, outSize, perGroup, taps) = (inputSpatial, outputSpatial, outputsPerGroup, kernelSize)
        x.withUnsafeBufferPointer(as: Float.self) { xBuffer in
            w.withUnsafeBufferPointer(as: Float.self) { wBuffer in
                y.withUnsafeMutableBufferPointer(as: Float.self) { yBuffer in
                    let col = UnsafeMutablePointer<Float>.allocate(capacity: max(rows * inSize, 1))
                    defer { col.deallocate() }
                    for n in 0..<batch {
                        for g in 0..<groups {
                            let xGroup = xBuffer.baseAddress! + (n * channels + g * channelsPerGroup) * inSize
                            let wGroup = wBuffer.baseAddress! + g * channelsPerGroup * rows
                            // col (M/G·k × in) = W_gᵀ (M/G·k × C/G) · X_g (C/G × in)
                            SGEMM.multiply(m: rows, n: inSize, k: channelsPerGroup, a: wGroup, lda: rows,
                                           transposeA: true, b: xGroup, ldb: inSize, c: col, ldc: inSize,
                                           threads: threads)
                            // Each output channel reads only its own rows of col: channels run in parallel.
                            Parallel.forEach(perGroup, threads: threads) { m in
                                let channel = g * perGroup + m
                                let out = yBuffer.baseAddress! + (n * outputChannels + channel) * outSize
                                out.update(repeating: biasValues?[channel] ?? 0, count: outSize)
                                scatter(col: col + m * taps * inSize, into: out)
                            }
                        }
                    }
                }
            }
        }
        return y
    }

    /// col2im for one output channel: adds the `kernelSize` rows of `col` (one per tap, each over the
    /// input positions) into the output plane.
    func scatter<T: BinaryFloatingPoint>(col: UnsafePointer<T>, into out: UnsafeMutablePointer<T>) {
        let (ad, ah, aw) = (axes[0], axes[1], axes[2])
        let inSize = inputSpatial
        var row = col
        for kd in 0..<ad.kernel {
            let dRange = ad.validOutputs(tap: kd)
            for kh in 0..<ah.kernel {
                let hRange = ah.validOutputs(tap: kh)
                for kw in 0..<aw.kernel {
                    let wRange = aw.validOutputs(tap: kw)
                    let wOffset = kw * aw.dilation - aw.padBegin
                    for id in dRange {
                        let od = id * ad.stride - ad.padBegin + kd * ad.dilation
                        for ih in hRange {
                            let oh = ih * ah.stride - ah.padBegin + kh * ah.dilation
                            let source = row + (id * ah.output + ih) * aw.output
                            let target = out + (od * ah.input + oh) * aw.input + wOffset
                            if aw.stride == 1 {
                                for iw in wRange { target[iw] += source[iw] }
                            } else {
                                for iw in wRange { target[iw * aw.stride] += source[iw] }
                            }
                        }
                    }
                    row += inSize
                }
            }
        }
    }

    // MARK: Direct (float64, and the reference twin)

    func runDirect<T: BinaryFloatingPoint & TensorScalar>(x: Tensor, w: Tensor, bias: Tensor?, as type: T.Type) throws -> Tensor {
        var y = try Tensor(zeros: x.dtype, shape: outputShape)
        guard y.count > 0 else { return y }
        let biasValues = bias?.scalars(as: T.self)
        let (inSize, outSize, taps) = (inputSpatial, outputSpatial, kernelSize)
        let plane = UnsafeMutablePointer<T>.allocate(capacity: max(taps * inSize, 1))
        defer { plane.deallocate() }
        x.withUnsafeBufferPointer(as: T.self) { xBuffer in
            w.withUnsafeBufferPointer(as: T.self) { wBuffer in
                y.withUnsafeMutableBufferPointer(as: T.self) { yBuffer in
                    for n in 0..<batch {
                        for channel in 0..<outputChannels {
                            let (g, m) = channel.quotientAndRemainder(dividingBy: outputsPerGroup)
                            let out = yBuffer.baseAddress! + (n * outputChannels + channel) * outSize
                            out.update(repeating: biasValues?[channel] ?? 0, count: outSize)
                            for c in 0..<channelsPerGroup {
                                let input = g * channelsPerGroup + c
                                let source = xBuffer.baseAddress! + (n * channels + input) * inSize
                                let filter = wBuffer.baseAddress! + (input * outputsPerGroup + m) * taps
                                // One input plane times each tap weight, then scattered like col rows.
                                for tap in 0..<taps {
                                    for i in 0..<inSize { plane[tap * inSize + i] = filter[tap] * source[i] }
                                }
                                scatter(col: plane, into: out)
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
    mutating func registerConvTransposeKernels() {
        for version in [1, 11, 22] {
            register("ConvTranspose", since: version) { context in try ConvTransposeKernel(context) }
        }
    }
}
