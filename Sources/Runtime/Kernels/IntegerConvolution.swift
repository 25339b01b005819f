import Tensors

// Geometry and the direct int32 loop shared by ConvInteger and QLinearConv.

/// Conv attributes as written on the node (`auto_pad`, `pads`, `strides`, `dilations`, `group`,
/// `kernel_shape`); checked against the operand shapes when the kernel runs.
struct IntegerConvAttributes: Sendable {
    enum AutoPad: String, Sendable { case notSet = "NOTSET", sameUpper = "SAME_UPPER", sameLower = "SAME_LOWER", valid = "VALID" }

    let autoPad: AutoPad
    let pads: [Int]?
    let strides: [Int]?
    let dilations: [Int]?
    let group: Int
    let kernelShape: [Int]?

    init(_ context: KernelBuildContext) throws {
        let padText = try context.string("auto_pad", default: "NOTSET")
        guard let autoPad = AutoPad(rawValue: padText) else {
            throw KernelError.invalidAttribute("auto_pad", "must be NOTSET, SAME_UPPER, SAME_LOWER or VALID, got '\(padText)'")
        }
        self.autoPad = autoPad
        pads = context.has("pads") ? try context.ints("pads") : nil
        strides = context.has("strides") ? try context.ints("strides") : nil
        dilations = context.has("dilations") ? try context.ints("dilations") : nil
        kernelShape = context.has("kernel_shape") ? try context.ints("kernel_shape") : nil
        group = try context.int("group", default: 1)
        guard group >= 1 else { throw KernelError.invalidAttribute("group", "must be at least 1, got \(group)") }
    }
}

/// The shapes of one convolution: `x` is `[N, C, D1…Dn]`, `w` is `[M, C/group, k1…kn]`, `y` is
/// `[N, M, O1…On]` with, per spatial axis,
/// `O = floor((D + pad_begin + pad_end - ((k - 1) * dilation + 1)) / stride) + 1`
/// (explicit pads), `ceil(D / stride)` (SAME_*; the total pad is split evenly, the odd pixel at the
/// end for SAME_UPPER and at the beginning for SAME_LOWER), or no padding (VALID).
struct IntegerConvGeometry: Sendable {
    let batch: Int
    let inputChannels: Int
    let outputChannels: Int
    let group: Int
    let inputSpatial: [Int]
    let kernelSpatial: [Int]
    let outputSpatial: [Int]
    let strides: [Int]
    let dilations: [Int]
    let padsBegin: [Int]
    /// Elements of one input channel plane, of the kernel window, and of one output plane.
    let planeSize: Int
    let kernelSize: Int
    let outputPlaneSize: Int

    var outputShape: [Int] { [batch, outputChannels] + outputSpatial }

    init(x: [Int], w: [Int], attributes: IntegerConvAttributes) throws {
        guard x.count >= 3 else {
            throw KernelError.invalidInput(index: 0, reason: "input must be [N, C, D1, ...] (rank >= 3), got \(x)")
        }
        guard w.count == x.count else {
            throw KernelError.invalidInput(index: 1, reason: "weight rank \(w.count) must equal input rank \(x.count)")
        }
        let spatialRank = x.count - 2
        let group = attributes.group
        let (groupedChannels, channelOverflow) = w[1].multipliedReportingOverflow(by: group)
        guard !channelOverflow, x[1] == groupedChannels else {
            throw KernelError.invalidInput(
                index: 1, reason: "weight \(w) with group \(group) does not match the input's \(x[1]) channels")
        }
        guard w[0] % group == 0 else {
            throw KernelError.invalidInput(index: 1, reason: "output channels \(w[0]) are not divisible by group \(group)")
        }
        let kernel = Array(w[2...])
        if let declared = attributes.kernelShape, declared != kernel {
            throw KernelError.invalidAttribute("kernel_shape", "\(declared) does not match the weight's spatial shape \(kernel)")
        }
        let strides = attributes.strides ?? [Int](repeating: 1, count: spatialRank)
        let dilations = attributes.dilations ?? [Int](repeating: 1, count: spatialRank)
        let pads = attributes.pads ?? [Int](repeating: 0, count: 2 * spatialRank)
        guard strides.count == spatialRank, strides.allSatisfy({ $0 >= 1 }) else {
            throw KernelError.invalidAttribute("strides", "must be \(spatialRank) values >= 1, got \(strides)")
        }
        guard dilations.count == spatialRank, dilations.allSatisfy({ $0 >= 1 }) else {
            throw KernelError.invalidAttribute("dilations", "must be \(spatialRank) values >= 1, got \(dilations)")
        }
        guard pads.count == 2 * spatialRank, pads.allSatisfy({ $0 >= 0 }) else {
            throw KernelError.invalidAttribute("pads", "must be \(2 * spatialRank) values >= 0, got \(pads)")
        }

        var outputSpatial: [Int] = [], padsBegin: [Int] = []
        for axis in 0..<spatialRank {
            let size = x[axis + 2], stride = strides[axis]
            let (span, spanOverflow) = (kernel[axis] - 1).multipliedReportingOverflow(by: dilations[axis])
            guard !spanOverflow, kernel[axis] >= 1 else {
                throw KernelError.invalidInput(index: 1, reason: "kernel \(kernel) with dilations \(dilations) is invalid")
            }
            let dilatedKernel = span + 1
            switch attributes.autoPad {
            case .notSet, .valid:
                let begin = attributes.autoPad == .valid ? 0 : pads[axis]
                let end = attributes.autoPad == .valid ? 0 : pads[axis + spatialRank]
                let (padded, overflowA) = size.addingReportingOverflow(begin)
                let (total, overflowB) = padded.addingReportingOverflow(end)
                guard !overflowA, !overflowB else { throw KernelError.invalidAttribute("pads", "\(pads) overflow") }
                guard total >= dilatedKernel else {
                    throw KernelError.invalid(
                        "spatial axis \(axis): dilated kernel \(dilatedKernel) is larger than the padded input \(total)")
                }
                outputSpatial.append((total - dilatedKernel) / stride + 1)
                padsBegin.append(begin)
            case .sameUpper, .sameLower:
                let output = size / stride + (size % stride == 0 ? 0 : 1)
                // (output - 1) * stride < size + stride, so only the kernel term can be large.
                let (needed, overflow) = ((max(output, 1) - 1) * stride).addingReportingOverflow(dilatedKernel)
                guard !overflow else { throw KernelError.invalidAttribute("dilations", "\(dilations) overflow") }
                let totalPad = max(0, needed - size)
                outputSpatial.append(output)
                padsBegin.append(attributes.autoPad == .sameUpper ? totalPad / 2 : totalPad - totalPad / 2)
            }
        }
        self.batch = x[0]
        self.inputChannels = x[1]
        self.outputChannels = w[0]
        self.group = group
        self.inputSpatial = Array(x[2...])
        self.kernelSpatial = kernel
        self.outputSpatial = outputSpatial
        self.strides = strides
        self.dilations = dilations
        self.padsBegin = padsBegin
        // Checked separately: a zero batch or channel count lets these products escape the tensors' checks.
        planeSize = try Shape.elementCount(Array(x[2...]))
        kernelSize = try Shape.elementCount(kernel)
        outputPlaneSize = try Shape.elementCount(outputSpatial)
        _ = try Shape.elementCount(outputShape)
    }
}

/// Index tables of one convolution geometry, shared by the direct loop and im2col. Kernel tap q: its
/// index per spatial axis and its offset from the window origin inside one input plane. Output position
/// p: its window origin per axis, that origin's plane offset, and whether the whole window lies inside
/// the input (interior windows need no bounds checks).
final class ConvWindowTable: @unchecked Sendable {
    let rank: Int
    let kernelIndex: UnsafeMutableBufferPointer<Int>
    let kernelOffset: UnsafeMutableBufferPointer<Int>
    let origin: UnsafeMutableBufferPointer<Int>
    let originOffset: UnsafeMutableBufferPointer<Int>
    let interior: UnsafeMutableBufferPointer<Bool>
    let planeStrides: [Int]

    init(_ g: IntegerConvGeometry) {
        let rank = g.inputSpatial.count
        let kernelCount = g.kernelSize, positions = g.outputPlaneSize
        self.rank = rank
        planeStrides = Shape.strides(g.inputSpatial)
        kernelIndex = .allocate(capacity: kernelCount * rank)
        kernelOffset = .allocate(capacity: kernelCount)
        origin = .allocate(capacity: positions * rank)
        originOffset = .allocate(capacity: positions)
        interior = .allocate(capacity: positions)
        for q in 0..<kernelCount {
            var rest = q, offset = 0
            for axis in stride(from: rank - 1, through: 0, by: -1) {
                let k = rest % g.kernelSpatial[axis]
                rest /= g.kernelSpatial[axis]
                kernelIndex[q * rank + axis] = k
                // Wrapping: with huge pads and dilations the offset may not fit, but it is only used for
                // interior windows, where every tap lies inside the plane and so no wrap happened.
                offset = offset &+ k &* g.dilations[axis] &* planeStrides[axis]
            }
            kernelOffset[q] = offset
        }
        for p in 0..<positions {
            var rest = p, offset = 0
            var inside = true
            for axis in stride(from: rank - 1, through: 0, by: -1) {
                let o = rest % g.outputSpatial[axis]
                rest /= g.outputSpatial[axis]
                let start = o * g.strides[axis] - g.padsBegin[axis]
                origin[p * rank + axis] = start
                offset = offset &+ start &* planeStrides[axis]  // used for interior windows only, as above
                let last = start + (g.kernelSpatial[axis] - 1) * g.dilations[axis]
                if start < 0 || last >= g.inputSpatial[axis] { inside = false }
            }
            originOffset[p] = offset
            interior[p] = inside
        }
    }

    deinit {
        kernelIndex.deallocate()
        kernelOffset.deallocate()
        origin.deallocate()
        originOffset.deallocate()
        interior.deallocate()
    }

    /// The plane offset of tap q of position p's window, or nil when the tap falls in the padding.
    @inline(__always)
    func borderOffset(position p: Int, tap q: Int, geometry g: IntegerConvGeometry) -> Int? {
        var offset = 0
        for axis in 0..<rank {
            let i = origin[p * rank + axis] + kernelIndex[q * rank + axis] * g.dilations[axis]
            if i < 0 || i >= g.inputSpatial[axis] { return nil }
            offset += i * planeStrides[axis]
        }
        return offset
    }
}

/// Direct integer convolution over zero-point-adjusted int32 operands:
/// `y[n, m, o] = Σ_{c, k} w[m, c, k] * x[n, g·C/group + c, o·stride - pad_begin + k·dilation]`,
/// where positions in the padding add nothing (the padding is the zero point, i.e. 0 once adjusted).
/// Accumulation wraps in int32 like a hardware accumulator. Parallel over (batch, output channel).
/// This is the reference twin of the im2col + int8 GEMM path (Int8/IntegerConvolution+GEMM.swift).
func integerConvolution(
    x: UnsafeBufferPointer<Int32>, w: UnsafeBufferPointer<Int32>, geometry g: IntegerConvGeometry,
    output: UnsafeMutableBufferPointer<Int32>, context: ExecutionContext
) {
    let plane = g.planeSize
    let kernelCount = g.kernelSize
    let positions = g.outputPlaneSize
    let groupInputs = g.inputChannels / g.group
    let groupOutputs = g.outputChannels / g.group
    // Nothing to compute (an empty output), or every sum is empty (no input channels or kernel taps):
    // the output stays zero.
    guard positions > 0, g.batch > 0, g.outputChannels > 0, groupInputs > 0, kernelCount > 0,
          let xBase = x.baseAddress, let wBase = w.baseAddress, let yBase = output.baseAddress else { return }
    let table = ConvWindowTable(g)
    context.parallelFor(g.batch * g.outputChannels) { chunk in
        let n = chunk / g.outputChannels, m = chunk % g.outputChannels
        let firstChannel = (m / groupOutputs) * groupInputs
        let out = yBase + chunk * positions
        for p in 0..<positions {
            var accumulator: Int32 = 0
            for c in 0..<groupInputs {
                let xPlane = xBase + (n * g.inputChannels + firstChannel + c) * plane
                let weights = wBase + (m * groupInputs + c) * kernelCount
                if table.interior[p] {
                    let window = xPlane + table.originOffset[p]
                    for q in 0..<kernelCount {
                        accumulator = accumulator &+ weights[q] &* window[table.kernelOffset[q]]
                    }
                } else {
                    for q in 0..<kernelCount {
                        if let offset = table.borderOffset(position: p, tap: q, geometry: g) {
                            accumulator = accumulator &+ weights[q] &* xPlane[offset]
                        }
                    }
                }
            }
            out[p] = accumulator
        }
    }
}
