import GraphIR
import Tensors

/// MaxPool, AveragePool, GlobalMaxPool and GlobalAveragePool over 1-D, 2-D and 3-D inputs.
///
/// A window's input positions along each axis are `o · stride − padBegin + k · dilation` for taps k;
/// positions in the padding never contribute to a max, and to an average only when
/// `count_include_pad = 1` (then the divisor counts the taps inside the padded extent
/// `[−padBegin, input + padEnd)`, so a `ceil_mode` window running past the end padding is not
/// over-counted). Windows are products of per-axis tap ranges, which are computed once per run.
struct PoolKernel: Kernel {
    enum Kind: Sendable { case max, average }

    let kind: Kind
    let window: WindowAttributes
    let ceilMode: Bool
    let countIncludePad: Bool
    /// 0: indices row-major over the spatial axes; 1: column-major (the first spatial axis fastest).
    let storageOrder: Int
    /// Whether the node asks for MaxPool's Indices output (computing them needs the slower window loop).
    let wantsIndices: Bool
    let dtypes: Set<DType>

    init(_ context: KernelBuildContext, kind: Kind) throws {
        self.kind = kind
        let version = context.opsetVersion
        // MaxPool gained dilations in 10, AveragePool in 19; ceil_mode arrived in 10 for both.
        let dilationsAllowed = kind == .max ? version >= 10 : version >= 19
        window = try WindowAttributes(context, dilations: dilationsAllowed)
        guard window.kernelShape != nil else { throw KernelError.invalidAttribute("kernel_shape", "is required") }
        if version < 10, context.has("ceil_mode") {
            throw KernelError.invalidAttribute("ceil_mode", "is not defined before opset 10")
        }
        ceilMode = try context.int("ceil_mode", default: 0) != 0
        let includePad = try context.int("count_include_pad", default: 0) != 0
        countIncludePad = kind == .average && includePad
        storageOrder = kind == .max ? try context.int("storage_order", default: 0) : 0
        guard storageOrder == 0 || storageOrder == 1 else {
            throw KernelError.invalidAttribute("storage_order", "must be 0 or 1, got \(storageOrder)")
        }
        wantsIndices = kind == .max && context.node.outputs.count > 1 && !context.node.outputs[1].isEmpty
        if wantsIndices, version < 8 {
            throw KernelError.invalidAttribute("Indices", "output is not defined before opset 8")
        }
        var types: Set<DType> = [.float32, .float64, .float16]
        if kind == .max && version >= 12 { types.formUnion([.int8, .uint8]) }
        if version >= 22 { types.insert(.bfloat16) }
        dtypes = types
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try required(inputs, 0)
        try x.requireDType(dtypes, input: 0, kind == .max ? "MaxPool" : "AveragePool")
        guard x.rank >= 3 else { throw KernelError.invalidInput(index: 0, reason: "pooling needs rank ≥ 3, got \(x.shape)") }
        let spatial = Array(x.shape.dropFirst(2))
        let kernel = try window.kernel(rank: spatial.count, fromWeights: nil)
        let spatialAxes = try window.poolingAxes(input: spatial, kernel: kernel, ceilMode: ceilMode)
        let plan = try PoolPlan(batch: x.shape[0], channels: x.shape[1], axes: WindowAxis.lifted(spatialAxes),
                                outputShape: [x.shape[0], x.shape[1]] + spatialAxes.map(\.output))
        // Small pools stay on the calling thread (as small GEMMs do, see `SGEMM.parallelThreshold`).
        let work = Double(try Shape.elementCount(plan.outputShape)) * kernel.reduce(1.0) { $0 * Double($1) }
        let threads = work < Double(SGEMM.parallelThreshold) ? 1 : context.threadCount
        switch (kind, x.dtype) {
        case (.average, .float32): return [try plan.average(x, includePad: countIncludePad, threads: threads, as: Float.self)]
        case (.average, .float64): return [try plan.average(x, includePad: countIncludePad, threads: threads, as: Double.self)]
        case (.max, .float32): return try maximum(plan, x, lowest: -Float.infinity, threads: threads)
        case (.max, .float64): return try maximum(plan, x, lowest: -Double.infinity, threads: threads)
        case (.max, .int8): return try maximum(plan, x, lowest: Int8.min, threads: threads)
        case (.max, .uint8): return try maximum(plan, x, lowest: UInt8.min, threads: threads)
        default:
            return try ReducedPrecision.bridged(inputs, dtype: x.dtype) { wide in
                try self.run(wide, context: context)
            }
        }
    }
}

extension PoolKernel {
    private func maximum<T: Comparable & TensorScalar>(_ plan: PoolPlan, _ x: Tensor, lowest: T, threads: Int) throws -> [Tensor] {
        wantsIndices
            ? try plan.maximumWithIndices(x, lowest: lowest, storageOrder: storageOrder, threads: threads)
            : [try plan.maximum(x, lowest: lowest, threads: threads)]
    }
}

/// How a pool folds one input value into its running result; resolved statically, so the tap loops
/// specialise per element type and operation.
protocol WindowFold {
    associatedtype Element
    static func fold(_ accumulated: Element, _ value: Element) -> Element
}

/// The larger value; NaN inputs never replace the running maximum (as in ONNX Runtime).
enum WindowMaximum<Element: Comparable>: WindowFold {
    @inline(__always) static func fold(_ accumulated: Element, _ value: Element) -> Element {
        value > accumulated ? value : accumulated
    }
}

enum WindowSum<Element: BinaryFloatingPoint>: WindowFold {
    @inline(__always) static func fold(_ accumulated: Element, _ value: Element) -> Element { accumulated + value }
}

/// The per-axis tap ranges of every window, and the pooling loops over (image, channel) planes.
struct PoolPlan {
    var batch: Int
    var channels: Int
    var axes: [WindowAxis]
    var outputShape: [Int]

    /// For one axis and output position: the taps landing inside the input, the first one's input
    /// position, and how many taps land inside the padded extent.
    struct Span {
        var firstTap: Int
        var endTap: Int
        var start: Int
        var paddedCount: Int
    }

    let spans: [[Span]]

    init(batch: Int, channels: Int, axes: [WindowAxis], outputShape: [Int]) throws {
        self.batch = batch
        self.channels = channels
        self.axes = axes
        self.outputShape = outputShape
        _ = try Shape.elementCount(outputShape)
        spans = axes.map { axis in
            (0..<axis.output).map { o in
                let origin = o * axis.stride - axis.padBegin
                // Taps k with 0 <= origin + k·d < input, and with −padBegin <= origin + k·d < input + padEnd.
                let first = max(0, SpatialMath.ceilDiv(-origin, axis.dilation))
                let end = min(axis.kernel, SpatialMath.floorDiv(axis.input - 1 - origin, axis.dilation) + 1)
                let paddedFirst = max(0, SpatialMath.ceilDiv(-axis.padBegin - origin, axis.dilation))
                let paddedEnd = min(axis.kernel,
                                    SpatialMath.floorDiv(axis.input + axis.padEnd - 1 - origin, axis.dilation) + 1)
                return Span(firstTap: first, endTap: max(first, end), start: origin + first * axis.dilation,
                            paddedCount: max(0, paddedEnd - paddedFirst))
            }
        }
    }

    var inputPlane: Int { axes[0].input * axes[1].input * axes[2].input }
    var outputPlane: Int { axes[0].output * axes[1].output * axes[2].output }

    /// Folds every tap of every window of one plane into `out` (which holds the starting values), taps
    /// outermost so the innermost loop runs along an output row. With a W stride s > 1, each input row is
    /// first split into s phase rows (columns i ≡ p mod s), which turns every tap's loop into a unit-stride
    /// one that vectorises.
    func sweepTaps<F: WindowFold>(_ fold: F.Type, x: UnsafePointer<F.Element>, into out: UnsafeMutablePointer<F.Element>) {
        let (ad, ah, aw) = (axes[0], axes[1], axes[2])
        let stride = aw.stride
        let phaseLength = (aw.input + stride - 1) / stride
        var phases: UnsafeMutablePointer<F.Element>?
        if stride > 1 {
            let rows = ad.input * ah.input
            let buffer = UnsafeMutablePointer<F.Element>.allocate(capacity: max(rows * stride * phaseLength, 1))
            // Sizes here are bounded by the input tensor's, so plain wrapping arithmetic cannot overflow.
            for row in 0..<rows {
                let source = x + row &* aw.input
                let target = buffer + row &* stride &* phaseLength
                for phase in 0..<min(stride, aw.input) {
                    let count = (aw.input &- phase &+ stride &- 1) / stride
                    let phaseRow = target + phase &* phaseLength
                    var column = phase
                    for index in 0..<count {
                        (phaseRow + index).initialize(to: source[column])
                        column &+= stride
                    }
                }
            }
            phases = buffer
        }
        defer { phases?.deallocate() }
        for kd in 0..<ad.kernel {
            let dRange = ad.validOutputs(tap: kd)
            for kh in 0..<ah.kernel {
                let hRange = ah.validOutputs(tap: kh)
                for kw in 0..<aw.kernel {
                    let wRange = aw.validOutputs(tap: kw)
                    guard !wRange.isEmpty else { continue }
                    // Input column of output ow: ow · stride + wOffset = (ow + shift) · stride + phase.
                    let wOffset = kw * aw.dilation - aw.padBegin
                    let shift = SpatialMath.floorDiv(wOffset, stride)
                    let phase = wOffset - shift * stride
                    for od in dRange {
                        let id = od * ad.stride - ad.padBegin + kd * ad.dilation
                        for oh in hRange {
                            let ih = oh * ah.stride - ah.padBegin + kh * ah.dilation
                            let inputRow = id * ah.input + ih
                            let source: UnsafePointer<F.Element>
                            if let phases {
                                source = UnsafePointer(phases + ((inputRow * stride + phase) * phaseLength + shift))
                            } else {
                                source = x + (inputRow * aw.input + wOffset)
                            }
                            let row = out + (od * ah.output + oh) * aw.output
                            for ow in wRange { row[ow] = F.fold(row[ow], source[ow]) }
                        }
                    }
                }
            }
        }
    }

    /// Average pool: window sums, then each divided by its count of taps (inside the input, or inside the
    /// padded extent with `includePad`).
    func average<T: BinaryFloatingPoint & TensorScalar>(_ x: Tensor, includePad: Bool, threads: Int, as type: T.Type) throws -> Tensor {
        var y = try Tensor(zeros: x.dtype, shape: outputShape)
        guard y.count > 0 else { return y }
        let counts = spans.map { axis in axis.map { includePad ? $0.paddedCount : $0.endTap - $0.firstTap } }
        let (cd, ch, cw) = (counts[0], counts[1], counts[2])
        let (inPlane, outPlane) = (inputPlane, outputPlane)
        x.withUnsafeBufferPointer(as: T.self) { source in
            y.withUnsafeMutableBufferPointer(as: T.self) { target in
                let input = source.baseAddress!, output = target.baseAddress!
                Parallel.forEach(batch * channels, threads: threads) { plane in
                    let out = output + plane * outPlane
                    sweepTaps(WindowSum<T>.self, x: input + plane * inPlane, into: out)
                    var index = 0
                    for d in cd {
                        for h in ch {
                            for w in cw {
                                let count = d * h * w
                                out[index] = count > 0 ? out[index] / T(count) : .nan
                                index += 1
                            }
                        }
                    }
                }
            }
        }
        return y
    }

    /// Max pool without indices.
    func maximum<T: Comparable & TensorScalar>(_ x: Tensor, lowest: T, threads: Int) throws -> Tensor {
        var y = try Tensor(zeros: x.dtype, shape: outputShape)
        guard y.count > 0 else { return y }
        let (inPlane, outPlane) = (inputPlane, outputPlane)
        x.withUnsafeBufferPointer(as: T.self) { source in
            y.withUnsafeMutableBufferPointer(as: T.self) { target in
                let input = source.baseAddress!, output = target.baseAddress!
                Parallel.forEach(batch * channels, threads: threads) { plane in
                    let out = output + plane * outPlane
                    out.update(repeating: lowest, count: outPlane)
                    sweepTaps(WindowMaximum<T>.self, x: input + plane * inPlane, into: out)
                }
            }
        }
        return y
    }

    /// Max over each window, and the flattened input index of the first maximum (int64), which counts
    /// from the start of the tensor: `(n · C + c) · plane + spatial index`.
    func maximumWithIndices<T: Comparable & TensorScalar>(_ x: Tensor, lowest: T, storageOrder: Int, threads: Int) throws -> [Tensor] {
        var y = try Tensor(zeros: x.dtype, shape: outputShape)
        var indices = try Tensor(zeros: .int64, shape: outputShape)
        guard y.count > 0 else { return [y, indices] }
        let (ad, ah, aw) = (axes[0], axes[1], axes[2])
        let (sd, sh, sw) = (spans[0], spans[1], spans[2])
        let (inPlane, outPlane) = (inputPlane, outputPlane)
        // Strides of (d, h, w) in the flattened index: row-major, or column-major over the spatial axes.
        let strides = storageOrder == 0
            ? (ah.input * aw.input, aw.input, 1)
            : (1, ad.input, ad.input * ah.input)
        x.withUnsafeBufferPointer(as: T.self) { source in
            y.withUnsafeMutableBufferPointer(as: T.self) { target in
                indices.withUnsafeMutableBufferPointer(as: Int64.self) { indexTarget in
                    let input = source.baseAddress!, output = target.baseAddress!, indexOutput = indexTarget.baseAddress!
                    Parallel.forEach(batch * channels, threads: threads) { plane in
                        let xPlane = input + plane * inPlane
                        var out = output + plane * outPlane
                        var indexOut = indexOutput + plane * outPlane
                        let planeOffset = plane * inPlane
                        for od in 0..<ad.output {
                            let d = sd[od]
                            for oh in 0..<ah.output {
                                let h = sh[oh]
                                for ow in 0..<aw.output {
                                    let w = sw[ow]
                                    var best = lowest
                                    var bestIndex = -1
                                    var id = d.start
                                    for _ in d.firstTap..<d.endTap {
                                        var ih = h.start
                                        for _ in h.firstTap..<h.endTap {
                                            let row = xPlane + (id * ah.input + ih) * aw.input
                                            var iw = w.start
                                            for _ in w.firstTap..<w.endTap {
                                                let value = row[iw]
                                                if value > best || (bestIndex < 0 && value == best) {
                                                    best = value
                                                    bestIndex = id * strides.0 + ih * strides.1 + iw * strides.2
                                                }
                                                iw += aw.dilation
                                            }
                                            ih += ah.dilation
                                        }
                                        id += ad.dilation
                                    }
                                    out.pointee = best
                                    indexOut.pointee = Int64(bestIndex < 0 ? -1 : planeOffset + bestIndex)
                                    out += 1
                                    indexOut += 1
                                }
                            }
                        }
                    }
                }
            }
        }
        return [y, indices]
    }
}

/// GlobalAveragePool / GlobalMaxPool: one value per (image, channel) over all spatial positions;
/// the output keeps the rank with every spatial dimension 1.
struct GlobalPoolKernel: Kernel {
    let kind: PoolKernel.Kind
    let dtypes: Set<DType>

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try required(inputs, 0)
        try x.requireDType(dtypes, input: 0, kind == .max ? "GlobalMaxPool" : "GlobalAveragePool")
        guard x.rank >= 2 else { throw KernelError.invalidInput(index: 0, reason: "needs rank ≥ 2, got \(x.shape)") }
        let planes = x.shape[0] * x.shape[1]
        let planeSize = try Shape.elementCount(Array(x.shape.dropFirst(2)))
        let outputShape = Array(x.shape.prefix(2)) + Array(repeating: 1, count: x.rank - 2)
        switch x.dtype {
        case .float32: return [try reduce(x, planes: planes, size: planeSize, shape: outputShape, as: Float.self)]
        case .float64: return [try reduce(x, planes: planes, size: planeSize, shape: outputShape, as: Double.self)]
        default:
            return try ReducedPrecision.bridged(inputs, dtype: x.dtype) { wide in try self.run(wide, context: context) }
        }
    }

    private func reduce<T: BinaryFloatingPoint & TensorScalar>(
        _ x: Tensor, planes: Int, size: Int, shape: [Int], as type: T.Type
    ) throws -> Tensor {
        var y = try Tensor(zeros: x.dtype, shape: shape)
        let isMax = kind == .max
        x.withUnsafeBufferPointer(as: T.self) { source in
            y.withUnsafeMutableBufferPointer(as: T.self) { target in
                let input = source.baseAddress!
                for plane in 0..<planes {
                    let values = input + plane * size
                    if isMax {
                        target[plane] = size == 0 ? .nan : Self.fold(WindowMaximum<T>.self, values, count: size, initial: -.infinity)
                    } else {
                        target[plane] = Self.fold(WindowSum<T>.self, values, count: size, initial: 0) / T(size)
                    }
                }
            }
        }
        return y
    }
}

extension GlobalPoolKernel {
    /// Folds `count` values in eight independent lanes (one running value would serialise on the add
    /// latency), then folds the lanes.
    static func fold<F: WindowFold>(_ fold: F.Type, _ values: UnsafePointer<F.Element>, count: Int,
                                    initial: F.Element) -> F.Element {
        var lanes = (initial, initial, initial, initial, initial, initial, initial, initial)
        var i = 0
        while i + 8 <= count {
            lanes.0 = F.fold(lanes.0, values[i]); lanes.1 = F.fold(lanes.1, values[i + 1])
            lanes.2 = F.fold(lanes.2, values[i + 2]); lanes.3 = F.fold(lanes.3, values[i + 3])
            lanes.4 = F.fold(lanes.4, values[i + 4]); lanes.5 = F.fold(lanes.5, values[i + 5])
            lanes.6 = F.fold(lanes.6, values[i + 6]); lanes.7 = F.fold(lanes.7, values[i + 7])
            i += 8
        }
        while i < count {
            lanes.0 = F.fold(lanes.0, values[i])
            i += 1
        }
        let pairs = (F.fold(lanes.0, lanes.4), F.fold(lanes.1, lanes.5), F.fold(lanes.2, lanes.6), F.fold(lanes.3, lanes.7))
        return F.fold(F.fold(pairs.0, pairs.2), F.fold(pairs.1, pairs.3))
    }
}

extension KernelRegistry {
    mutating func registerPoolingKernels() {
        // MaxPool: 8 adds Indices and storage_order, 10 ceil_mode and dilations, 12 int8/uint8, 22 bfloat16.
        for version in [1, 8, 10, 11, 12, 22] {
            register("MaxPool", since: version) { context in try PoolKernel(context, kind: .max) }
        }
        // AveragePool: 7 count_include_pad, 10 ceil_mode, 11 pads wording, 19 dilations, 22 bfloat16.
        for version in [1, 7, 10, 11, 19, 22] {
            register("AveragePool", since: version) { context in try PoolKernel(context, kind: .average) }
        }
        for version in [1, 22] {
            let types: Set<DType> = version >= 22 ? [.float32, .float64, .float16, .bfloat16] : [.float32, .float64, .float16]
            register("GlobalAveragePool", since: version) { _ in GlobalPoolKernel(kind: .average, dtypes: types) }
            register("GlobalMaxPool", since: version) { _ in GlobalPoolKernel(kind: .max, dtypes: types) }
        }
    }
}
