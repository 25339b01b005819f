import GraphIR
import QuantCore
import Tensors

/// `com.swiftquant::QConvTranspose`: the integer execution of
/// `DequantizeLinear(X) → ConvTranspose(·, DequantizeLinear(W), bias) [→ Relu | Clip] [→ QuantizeLinear]`.
///
/// Inputs as `QConv` (`W` is `[C, M/group, k…]`, per-channel parameters name output channels and need
/// one group); attributes ConvTranspose's plus `clip_min` / `clip_max`. Input position `i` and tap `k`
/// feed output `o = i·stride − pad_begin + k·dilation`:
///
///     acc[n, m, o] = bias[m] + Σ_{c in group} Σ_{(i, k) → o} (X[n, c, i] − x_zp)(W[c, m, k] − w_zp[m])
///
/// Each group runs one GEMM `col = (X_g − x_zp)ᵀ · (W_g − w_zp)` over the input channels (exact, with the
/// zero-point corrections), then col2im adds the columns into int32 accumulators, which are requantized
/// or scaled per output channel.
struct FusedQConvTransposeKernel: Kernel {
    let window: WindowAttributes
    let group: Int
    let outputPadding: [Int]?
    let outputShape: [Int]?
    let input: ActivationQuantization
    let weightValues: Tensor
    let weightQuantization: WeightQuantization
    let bias: [Int32]
    let output: FusedOutput
    /// Per group: `[C/group, M/group · taps]` packed, zero points per column (the column's channel's).
    let groups: [FusedInt8Weights]

    init(_ context: KernelBuildContext) throws {
        window = try WindowAttributes(context)
        group = try context.int("group", default: 1)
        guard group > 0 else { throw KernelError.invalidAttribute("group", "must be positive, got \(group)") }
        outputPadding = context.has("output_padding") ? try context.ints("output_padding") : nil
        outputShape = context.has("output_shape") ? try context.ints("output_shape") : nil
        input = try ActivationQuantization(scale: try context.constantInput(1, "x_scale"),
                                           zeroPoint: try context.constantInput(2, "x_zero_point"), what: "X")
        guard let w = context.constant(3), w.rank >= 3, w.dtype == .int8 || w.dtype == .uint8, w.shape[0] % group == 0 else {
            throw KernelError.invalid("W must be an int8/uint8 constant of rank ≥ 3 whose channels divide into the groups")
        }
        let perGroup = w.shape[1], channels = perGroup * group
        let quantization = try WeightQuantization(scale: try context.constantInput(4, "w_scale"),
                                                  zeroPoint: try context.constantInput(5, "w_zero_point"),
                                                  weightType: w.dtype, channels: channels)
        guard quantization.scales.count == 1 || group == 1 else {
            throw KernelError.unsupported("per-channel weights with \(group) groups")
        }
        weightValues = w
        weightQuantization = quantization
        let scales = FusedQMatMulKernel.accumulatorScales(input.scale, quantization.scales)
        let yScale = try context.constantInput(7, "y_scale")
        let outputQuantization = try yScale.map {
            try ActivationQuantization(scale: $0, zeroPoint: try context.constantInput(8, "y_zero_point"), what: "y")
        }
        let (integerBias, floatBias) = try FusedQMatMulKernel.bias(try context.constantInput(6, "bias"), columns: channels,
                                                                   scales: scales, floatOutput: yScale == nil)
        bias = integerBias ?? [Int32](repeating: 0, count: channels)
        let clamp = try context.fusedClamp()
        let dequantizeOutput = try context.dequantizedOutput()
        output = try FusedOutput.make(output: outputQuantization, accumulatorScales: scales, columns: channels,
                                      floatBias: floatBias, low: clamp.low, high: clamp.high,
                                          dequantize: dequantizeOutput)
        let inputsPerGroup = w.shape[0] / group, taps = w.count / max(w.shape[0] * perGroup, 1)
        let columns = perGroup * taps
        let values = try w.quantizedIntegerValues(input: 3)
        groups = try (0..<group).map { g in
            let slice = Array(values[(g * inputsPerGroup * columns)..<((g + 1) * inputsPerGroup * columns)])
            let tensor = w.dtype == .int8 ? try Tensor(shape: [inputsPerGroup, columns], scalars: slice.map { Int8($0) })
                                          : try Tensor(shape: [inputsPerGroup, columns], scalars: slice.map { UInt8($0) })
            let zeroPoints = (0..<columns).map { j in
                quantization.zeroPoints.count == 1 ? quantization.zeroPoints[0] : quantization.zeroPoints[g * perGroup + j / taps]
            }
            return try FusedInt8Weights(weights: tensor, k: inputsPerGroup, n: columns, transposed: false,
                                        zeroPoints: zeroPoints, bias: nil)
        }
    }

    private func problem(_ x: Tensor) throws -> ConvTransposeProblem {
        try ConvTransposeProblem(x: x.shape, w: weightValues.shape, bias: nil, group: group, window: window,
                                 outputPadding: outputPadding, outputShape: outputShape)
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try required(inputs, 0)
        guard x.dtype == input.dtype else {
            throw KernelError.invalidInput(index: 0, reason: "X is \(x.dtype) but its zero point is \(input.dtype)")
        }
        let p = try problem(x)
        let acc = try accumulate(x, p, context: context)
        return [try finish(acc, p, threads: context.threadCount)]
    }

    /// The reference twin: accumulators summed directly over (input position, tap) pairs, then the output
    /// stage element by element.
    func runReference(_ inputs: [Tensor?]) throws -> [Tensor] {
        let x = try required(inputs, 0)
        let p = try problem(x)
        let xValues = try x.quantizedIntegerValues(input: 0).map { $0 &- input.zeroPoint }
        let wValues = try weightValues.quantizedIntegerValues(input: 3)
        let (inSize, outSize, taps) = (p.inputSpatial, p.outputSpatial, p.kernelSize)
        let (ad, ah, aw) = (p.axes[0], p.axes[1], p.axes[2])
        var acc = [Int32](repeating: 0, count: p.batch * p.outputChannels * outSize)
        for n in 0..<p.batch {
            for channel in 0..<p.outputChannels {
                let (g, m) = channel.quotientAndRemainder(dividingBy: p.outputsPerGroup)
                let zero = weightQuantization.zeroPoints.count == 1 ? weightQuantization.zeroPoints[0] : weightQuantization.zeroPoints[channel]
                let plane = (n * p.outputChannels + channel) * outSize
                for o in 0..<outSize { acc[plane + o] = bias[channel] }
                for c in 0..<p.channelsPerGroup {
                    let inputChannel = g * p.channelsPerGroup + c
                    for tap in 0..<taps {
                        let weight = wValues[(inputChannel * p.outputsPerGroup + m) * taps + tap] &- zero
                        let (kd, rest) = tap.quotientAndRemainder(dividingBy: ah.kernel * aw.kernel)
                        let (kh, kw) = rest.quotientAndRemainder(dividingBy: aw.kernel)
                        for i in 0..<inSize {
                            let (id, inner) = i.quotientAndRemainder(dividingBy: ah.output * aw.output)
                            let (ih, iw) = inner.quotientAndRemainder(dividingBy: aw.output)
                            let od = id * ad.stride - ad.padBegin + kd * ad.dilation
                            let oh = ih * ah.stride - ah.padBegin + kh * ah.dilation
                            let ow = iw * aw.stride - aw.padBegin + kw * aw.dilation
                            guard od >= 0, od < ad.input, oh >= 0, oh < ah.input, ow >= 0, ow < aw.input else { continue }
                            let target = plane + (od * ah.input + oh) * aw.input + ow
                            acc[target] = acc[target] &+ xValues[(n * p.channels + inputChannel) * inSize + i] &* weight
                        }
                    }
                }
            }
        }
        // The output stage works channels-last.
        var channelsLast = [Int32](repeating: 0, count: acc.count)
        for plane in 0..<(p.batch * p.outputChannels) {
            let (n, m) = plane.quotientAndRemainder(dividingBy: p.outputChannels)
            for o in 0..<outSize { channelsLast[(n * outSize + o) * p.outputChannels + m] = acc[plane * outSize + o] }
        }
        let result = output.reference(channelsLast)
        var y = try Tensor(zeros: output.dtype, shape: p.outputShape)
        for plane in 0..<(p.batch * p.outputChannels) {
            let (n, m) = plane.quotientAndRemainder(dividingBy: p.outputChannels)
            for o in 0..<outSize {
                y.setReferenceElement(plane * outSize + o, codes: result.codes, floats: result.floats,
                                      source: (n * outSize + o) * p.outputChannels + m)
            }
        }
        return [y]
    }

    /// int32 accumulators `[N, M, out…]`: per image and group, the GEMM into col, then col2im.
    private func accumulate(_ x: Tensor, _ p: ConvTransposeProblem, context: ExecutionContext) throws -> [Int32] {
        let (inSize, outSize, taps) = (p.inputSpatial, p.outputSpatial, p.kernelSize)
        let depth = p.channelsPerGroup, columns = p.outputsPerGroup * taps
        var acc = [Int32](repeating: 0, count: p.batch * p.outputChannels * outSize)
        guard !acc.isEmpty, inSize > 0 else {
            for plane in 0..<(p.batch * p.outputChannels) {
                for o in 0..<outSize { acc[plane * outSize + o] = bias[plane % p.outputChannels] }
            }
            return acc
        }
        let transposed = UnsafeMutablePointer<UInt8>.allocate(capacity: inSize * max(depth, 1))
        let col = UnsafeMutablePointer<Int32>.allocate(capacity: inSize * columns)
        defer { transposed.deallocate(); col.deallocate() }
        let flip: UInt8 = x.dtype == .int8 ? 0x80 : 0
        let zeroPoint = input.dtype == .int8 ? input.zeroPoint + 128 : input.zeroPoint
        x.withUnsafeBytes { raw in
            let codes = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            for n in 0..<p.batch {
                for g in 0..<p.groups {
                    // A = X_gᵀ: positions × channels, flipped to uint8.
                    let source = codes + (n * p.channels + g * depth) * inSize
                    for c in 0..<depth {
                        for i in 0..<inSize { transposed[i * depth + c] = source[c * inSize + i] ^ flip }
                    }
                    FusedInt8GEMM.run(Int8GEMMActivations(m: inSize, a: transposed, lda: depth, zeroPoint: zeroPoint),
                                      weights: groups[g], stage: Int32OutputStage(output: col, rowStride: columns),
                                      threads: context.threadCount)
                    acc.withUnsafeMutableBufferPointer { acc in
                        let accBase = acc.baseAddress!
                        Parallel.forEach(p.outputsPerGroup, threads: context.threadCount) { m in
                            let channel = g * p.outputsPerGroup + m
                            let out = accBase + (n * p.outputChannels + channel) * outSize
                            out.update(repeating: bias[channel], count: outSize)
                            scatter(col + m * taps, stride: columns, into: out, p)
                        }
                    }
                }
            }
        }
        return acc
    }

    /// col2im for one output channel: `col[i·stride + tap]` (input position i) adds into its output position.
    private func scatter(_ col: UnsafePointer<Int32>, stride: Int, into out: UnsafeMutablePointer<Int32>,
                         _ p: ConvTransposeProblem) {
        let (ad, ah, aw) = (p.axes[0], p.axes[1], p.axes[2])
        var tap = 0
        for kd in 0..<ad.kernel {
            let dRange = ad.validOutputs(tap: kd)
            for kh in 0..<ah.kernel {
                let hRange = ah.validOutputs(tap: kh)
                for kw in 0..<aw.kernel {
                    let wRange = aw.validOutputs(tap: kw)
                    for id in dRange {
                        let od = id * ad.stride - ad.padBegin + kd * ad.dilation
                        for ih in hRange {
                            let oh = ih * ah.stride - ah.padBegin + kh * ah.dilation
                            let source = col + ((id * ah.output + ih) * aw.output) * stride + tap
                            let target = out + (od * ah.input + oh) * aw.input + kw * aw.dilation - aw.padBegin
                            for iw in wRange {
                                target[iw * aw.stride] = target[iw * aw.stride] &+ source[iw * stride]
                            }
                        }
                    }
                    tap += 1
                }
            }
        }
    }

    /// Requantizes or scales the accumulators per output channel into `[N, M, out…]`.
    private func finish(_ acc: [Int32], _ p: ConvTransposeProblem, threads: Int) throws -> Tensor {
        var y = try Tensor(zeros: output.dtype, shape: p.outputShape)
        let outSize = p.outputSpatial, elementSize = output.dtype == .float32 ? 4 : 1
        let stages = (0..<p.outputChannels).map { output.channels($0..<($0 + 1)) }
        acc.withUnsafeBufferPointer { acc in
            y.withUnsafeMutableBytes { raw in
                Parallel.forEach(p.batch * p.outputChannels, threads: threads) { plane in
                    let stage = stages[plane % p.outputChannels].contiguousStage(raw.baseAddress! + plane * outSize * elementSize)
                    stage(acc.baseAddress! + plane * outSize, outSize)
                }
            }
        }
        return y
    }
}
