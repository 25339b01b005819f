import GraphIR
import Tensors

/// Resize (opsets 10, 11, 13, 18, 19) and Upsample (7, 9).
///
/// Each resized axis maps output index j to a source coordinate x (see `CoordinateMode`), then:
/// - nearest: the input at round(x) by `nearest_mode`, clamped to the edge;
/// - linear: `(1 − t) · in[⌊x⌋] + t · in[⌊x⌋ + 1]`, t = x − ⌊x⌋, indices clamped to the edge;
/// - cubic: four taps ⌊x⌋ − 1 … ⌊x⌋ + 2 with Keys weights for `cubic_coeff_a`.
/// With `exclude_outside`, taps outside the input get weight 0 and the rest are renormalised. With
/// `tf_crop_and_resize`, a coordinate outside `[0, in − 1]` yields `extrapolation_value`. Interpolation
/// is separable, so linear and cubic run one axis at a time (N-linear / N-cubic); nearest gathers in one
/// pass and works for every dtype. Output sizes are `⌊in · scale⌋` (or `sizes`, optionally with
/// `keep_aspect_ratio_policy`). Opset 10 and Upsample use `asymmetric` coordinates and floor rounding
/// (ceil when downsampling), as ONNX Runtime does.
struct ResizeKernel: Kernel {
    enum Mode: String, Sendable { case nearest, linear, cubic }

    enum CoordinateMode: String, Sendable {
        case halfPixel = "half_pixel"
        case halfPixelSymmetric = "half_pixel_symmetric"
        case pytorchHalfPixel = "pytorch_half_pixel"
        case alignCorners = "align_corners"
        case asymmetric
        case tfHalfPixelForNN = "tf_half_pixel_for_nn"
        case tfCropAndResize = "tf_crop_and_resize"
    }

    enum NearestMode: String, Sendable {
        case roundPreferFloor = "round_prefer_floor"
        case roundPreferCeil = "round_prefer_ceil"
        case floor, ceil
        /// Opset 10 and Upsample: floor when upsampling, ceil when downsampling.
        case legacy
    }

    enum AspectPolicy: String, Sendable {
        case stretch
        case notLarger = "not_larger"
        case notSmaller = "not_smaller"
    }

    /// Where the control inputs sit for this operator version.
    enum Layout: Sendable {
        /// Upsample-7: scales is an attribute.
        case scalesAttribute([Float])
        /// Upsample-9 and Resize-10: X, scales.
        case scalesInput
        /// Resize-11+: X, roi, scales, sizes.
        case full
    }

    let layout: Layout
    /// Upsample (7, 9) rather than Resize: scales must be ≥ 1.
    let isUpsample: Bool
    let mode: Mode
    let coordinates: CoordinateMode
    let nearest: NearestMode
    let cubicA: Double
    let excludeOutside: Bool
    let extrapolation: Double
    let antialias: Bool
    let axes: [Int]?
    let aspect: AspectPolicy

    init(_ context: KernelBuildContext, upsample: Bool) throws {
        let version = context.opsetVersion
        isUpsample = upsample
        let modeText = try context.string("mode", default: "nearest")
        // Upsample-7 also spelled linear as "bilinear".
        guard let mode = Mode(rawValue: upsample && modeText == "bilinear" ? "linear" : modeText),
              mode != .cubic || (version >= 11 && !upsample) else {
            throw KernelError.invalidAttribute("mode", "unsupported value '\(modeText)'")
        }
        self.mode = mode
        if upsample && version < 9 {
            let scales = try context.floats("scales")
            layout = .scalesAttribute(scales)
        } else {
            layout = upsample || version < 11 ? .scalesInput : .full
        }
        if case .full = layout {
            let coordinateText = try context.string("coordinate_transformation_mode", default: "half_pixel")
            guard let coordinates = CoordinateMode(rawValue: coordinateText),
                  coordinates != .tfHalfPixelForNN || version < 13,
                  coordinates != .halfPixelSymmetric || version >= 19 else {
                throw KernelError.invalidAttribute(
                    "coordinate_transformation_mode", "unsupported value '\(coordinateText)' at opset \(version)")
            }
            self.coordinates = coordinates
            let nearestText = try context.string("nearest_mode", default: "round_prefer_floor")
            guard let nearest = NearestMode(rawValue: nearestText), nearest != .legacy else {
                throw KernelError.invalidAttribute("nearest_mode", "unsupported value '\(nearestText)'")
            }
            self.nearest = nearest
            cubicA = Double(try context.float("cubic_coeff_a", default: -0.75))
            excludeOutside = try context.int("exclude_outside", default: 0) != 0
            extrapolation = Double(try context.float("extrapolation_value", default: 0))
        } else {
            coordinates = .asymmetric
            nearest = .legacy
            cubicA = -0.75
            excludeOutside = false
            extrapolation = 0
        }
        if version >= 18, case .full = layout {
            antialias = try context.int("antialias", default: 0) != 0
            axes = context.has("axes") ? try context.ints("axes") : nil
            let policyText = try context.string("keep_aspect_ratio_policy", default: "stretch")
            guard let aspect = AspectPolicy(rawValue: policyText) else {
                throw KernelError.invalidAttribute("keep_aspect_ratio_policy", "unsupported value '\(policyText)'")
            }
            self.aspect = aspect
        } else {
            antialias = false
            axes = nil
            aspect = .stretch
        }
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let x = try required(inputs, 0)
        let rank = x.rank
        // Axes the control inputs refer to.
        let axisList: [Int]
        if let axes {
            axisList = try axes.map {
                guard let axis = Shape.normalizedAxis($0, rank: rank) else {
                    throw KernelError.invalidAttribute("axes", "value \($0) is out of range for rank \(rank)")
                }
                return axis
            }
            guard Set(axisList).count == axisList.count else {
                throw KernelError.invalidAttribute("axes", "repeats an axis: \(axes)")
            }
        } else {
            axisList = Array(0..<rank)
        }

        var scaleValues: [Double]?
        var sizeValues: [Int]?
        var roi: [Double]?
        switch layout {
        case .scalesAttribute(let scales):
            scaleValues = scales.map { Double($0) }
        case .scalesInput:
            scaleValues = try Self.floatingValues(try required(inputs, 1), input: 1)
        case .full:
            if let scales = optional(inputs, 2), scales.count > 0 { scaleValues = try Self.floatingValues(scales, input: 2) }
            if let sizes = optional(inputs, 3), sizes.count > 0 {
                guard sizes.dtype == .int64 else {
                    throw KernelError.invalidInput(index: 3, reason: "sizes must be int64, got \(sizes.dtype)")
                }
                sizeValues = try sizes.integerValues()
            }
            if coordinates == .tfCropAndResize, let roiTensor = optional(inputs, 1), roiTensor.count > 0 {
                roi = try Self.floatingValues(roiTensor, input: 1)
            }
        }
        if scaleValues != nil && sizeValues != nil {
            throw KernelError.invalid("Resize: give scales or sizes, not both")
        }
        let controlCount = scaleValues?.count ?? sizeValues?.count ?? 0
        guard scaleValues != nil || sizeValues != nil else { throw KernelError.invalid("Resize: scales or sizes is required") }
        guard controlCount == axisList.count else {
            throw KernelError.invalid("Resize: expected \(axisList.count) scales or sizes, got \(controlCount)")
        }

        // Per-axis scale and output size.
        var scales = [Double](repeating: 1, count: rank)
        var outputShape = x.shape
        if let scaleValues {
            for (i, axis) in axisList.enumerated() {
                let scale = scaleValues[i]
                guard scale > 0, scale.isFinite else {
                    throw KernelError.invalid("Resize: scale \(scale) on axis \(axis) must be positive and finite")
                }
                if isUpsample, scale < 1 {
                    throw KernelError.invalid("Upsample: scale \(scale) on axis \(axis) must be ≥ 1")
                }
                scales[axis] = scale
                outputShape[axis] = try Self.checkedSize((Double(x.shape[axis]) * scale).rounded(.down), axis: axis)
            }
        } else if let sizeValues {
            for (i, axis) in axisList.enumerated() {
                guard sizeValues[i] >= 0 else { throw KernelError.invalid("Resize: size \(sizeValues[i]) is negative") }
                scales[axis] = x.shape[axis] == 0 ? 1 : Double(sizeValues[i]) / Double(x.shape[axis])
                outputShape[axis] = sizeValues[i]
            }
            if aspect != .stretch {
                let chosen = axisList.map { scales[$0] }
                let scale = aspect == .notLarger ? chosen.min()! : chosen.max()!
                for axis in axisList {
                    scales[axis] = scale
                    outputShape[axis] = try Self.checkedSize((scale * Double(x.shape[axis]) + 0.5).rounded(.down), axis: axis)
                }
            }
        }
        _ = try Shape.elementCount(outputShape)

        // Region of interest per axis (only tf_crop_and_resize reads it).
        var roiStart = [Double](repeating: 0, count: rank), roiEnd = [Double](repeating: 1, count: rank)
        if coordinates == .tfCropAndResize {
            guard let roi else { throw KernelError.invalidInput(index: 1, reason: "tf_crop_and_resize needs roi") }
            guard roi.count == 2 * axisList.count else {
                throw KernelError.invalidInput(index: 1, reason: "roi needs \(2 * axisList.count) values, got \(roi.count)")
            }
            for (i, axis) in axisList.enumerated() {
                roiStart[axis] = roi[i]
                roiEnd[axis] = roi[axisList.count + i]
            }
        }

        if antialias && mode != .nearest && (0..<rank).contains(where: { scales[$0] < 1 }) {
            throw KernelError.unsupported("Resize antialias when downsampling")
        }

        let tables = (0..<rank).map { axis -> ResizeAxisTable? in
            let isIdentity = scales[axis] == 1 && outputShape[axis] == x.shape[axis]
                && (coordinates != .tfCropAndResize || (roiStart[axis] == 0 && roiEnd[axis] == 1))
            if isIdentity || outputShape[axis] == 0 { return nil }
            return ResizeAxisTable(kernel: self, input: x.shape[axis], output: outputShape[axis], scale: scales[axis],
                                   roiStart: roiStart[axis], roiEnd: roiEnd[axis])
        }

        if outputShape.contains(0) || x.count == 0 {
            guard !outputShape.contains(0) else { return [try Tensor(zeros: x.dtype, shape: outputShape)] }
            throw KernelError.invalid("Resize: cannot resize an empty input to \(outputShape)")
        }
        if mode == .nearest {
            return [try ResizeExecution.gather(x, tables: tables, outputShape: outputShape, extrapolation: extrapolation)]
        }
        switch x.dtype {
        case .float32:
            return [try ResizeExecution.interpolate(x, tables: tables, outputShape: outputShape, extrapolation: extrapolation,
                                                    threads: context.threadCount, as: Float.self)]
        case .float64:
            return [try ResizeExecution.interpolate(x, tables: tables, outputShape: outputShape, extrapolation: extrapolation,
                                                    threads: context.threadCount, as: Double.self)]
        case .float16, .bfloat16:
            let y = try ResizeExecution.interpolate(ReducedPrecision.widened(x), tables: tables, outputShape: outputShape, extrapolation: extrapolation,
                                                    threads: context.threadCount, as: Float.self)
            return [try ReducedPrecision.narrowed(y, to: x.dtype)]
        default:
            throw KernelError.unsupported("Resize \(mode.rawValue) on \(x.dtype) (nearest supports every type)")
        }
    }

    static func checkedSize(_ value: Double, axis: Int) throws -> Int {
        guard value.isFinite, value >= 0, value < Double(Int.max / 2) else {
            throw KernelError.invalid("Resize: output size \(value) on axis \(axis) is out of range")
        }
        return Int(value)
    }

    static func floatingValues(_ tensor: Tensor, input: Int) throws -> [Double] {
        switch tensor.dtype {
        case .float32: return tensor.scalars(as: Float.self).map { Double($0) }
        case .float64: return tensor.scalars(as: Double.self)
        case .float16: return tensor.scalars(as: Float16.self).map { Double($0) }
        case .bfloat16: return tensor.scalars(as: BFloat16.self).map { Double($0.floatValue) }
        default: throw KernelError.invalidInput(index: input, reason: "must be floating point, got \(tensor.dtype)")
        }
    }
}

/// For one resized axis: each output index's taps (input indices, already clamped) and weights, and
/// whether it lies outside a tf_crop_and_resize region.
struct ResizeAxisTable: Sendable {
    var input: Int
    var output: Int
    var taps: Int
    var indices: [Int]
    var weights: [Double]
    var extrapolated: [Bool]

    init(kernel: ResizeKernel, input: Int, output: Int, scale: Double, roiStart: Double, roiEnd: Double) {
        self.input = input
        self.output = output
        let mode = kernel.mode
        taps = mode == .nearest ? 1 : mode == .linear ? 2 : 4
        indices = []
        weights = []
        extrapolated = []
        indices.reserveCapacity(output * taps)
        weights.reserveCapacity(output * taps)
        let last = Double(input - 1)
        for j in 0..<output {
            let x = Self.sourceCoordinate(j, input: input, output: output, scale: scale, mode: kernel.coordinates,
                                          roiStart: roiStart, roiEnd: roiEnd)
            let outside = kernel.coordinates == .tfCropAndResize && (x < 0 || x > last || x.isNaN)
            extrapolated.append(outside)
            let clampedX = outside || !x.isFinite ? 0 : x
            switch mode {
            case .nearest:
                indices.append(Self.clamp(Self.nearestIndex(clampedX, mode: kernel.nearest, downsampling: scale < 1), input))
                weights.append(1)
            case .linear:
                let base = clampedX.rounded(.down)
                let t = clampedX - base
                append(base: Int(base) - 0, offsets: [0, 1], weights: [1 - t, t], exclude: kernel.excludeOutside)
            case .cubic:
                let base = clampedX.rounded(.down)
                let t = clampedX - base
                let a = kernel.cubicA
                let s = t + 1, u = 1 - t, v = 2 - t
                let w0 = ((a * s - 5 * a) * s + 8 * a) * s - 4 * a
                let w1 = ((a + 2) * t - (a + 3)) * t * t + 1
                let w2 = ((a + 2) * u - (a + 3)) * u * u + 1
                let w3 = ((a * v - 5 * a) * v + 8 * a) * v - 4 * a
                append(base: Int(base), offsets: [-1, 0, 1, 2], weights: [w0, w1, w2, w3], exclude: kernel.excludeOutside)
            }
        }
    }

    private mutating func append(base: Int, offsets: [Int], weights tapWeights: [Double], exclude: Bool) {
        var tapWeights = tapWeights
        if exclude {
            var sum = 0.0
            for (i, offset) in offsets.enumerated() {
                let index = base + offset
                if index < 0 || index >= input { tapWeights[i] = 0 }
                sum += tapWeights[i]
            }
            if sum != 0 { tapWeights = tapWeights.map { $0 / sum } }
        }
        for (offset, weight) in zip(offsets, tapWeights) {
            indices.append(Self.clamp(base + offset, input))
            weights.append(weight)
        }
    }

    @inline(__always) static func clamp(_ index: Int, _ size: Int) -> Int { min(max(index, 0), size - 1) }

    static func sourceCoordinate(_ j: Int, input: Int, output: Int, scale: Double, mode: ResizeKernel.CoordinateMode,
                                 roiStart: Double, roiEnd: Double) -> Double {
        let y = Double(j)
        switch mode {
        case .halfPixel:
            return (y + 0.5) / scale - 0.5
        case .halfPixelSymmetric:
            let adjustment = Double(output) / (scale * Double(input))
            let offset = Double(input) / 2 * (1 - adjustment)
            return offset + (y + 0.5) / scale - 0.5
        case .pytorchHalfPixel:
            return output > 1 ? (y + 0.5) / scale - 0.5 : 0
        case .alignCorners:
            // The ONNX reference and node tests divide by the fractional target width `scale · input`,
            // not the integer output size (they differ when ⌊input · scale⌋ is not exact).
            let width = scale * Double(input)
            return width != 1 ? y * Double(input - 1) / (width - 1) : 0
        case .asymmetric:
            return y / scale
        case .tfHalfPixelForNN:
            return (y + 0.5) / scale
        case .tfCropAndResize:
            let span = Double(input - 1)
            return output > 1
                ? roiStart * span + y * (roiEnd - roiStart) * span / Double(output - 1)
                : 0.5 * (roiStart + roiEnd) * span
        }
    }

    static func nearestIndex(_ x: Double, mode: ResizeKernel.NearestMode, downsampling: Bool) -> Int {
        let value: Double
        switch mode {
        case .roundPreferFloor: value = (x - 0.5).rounded(.up)
        case .roundPreferCeil: value = (x + 0.5).rounded(.down)
        case .floor: value = x.rounded(.down)
        case .ceil: value = x.rounded(.up)
        case .legacy: value = downsampling ? x.rounded(.up) : x.rounded(.down)
        }
        // Coordinates are bounded by the tensor size times the scale, far inside Int's range.
        guard value.isFinite, abs(value) < 1e15 else { return 0 }
        return Int(value)
    }
}

enum ResizeExecution {
    /// Nearest resize: one gather pass over every axis at once, on raw elements of any width.
    static func gather(_ x: Tensor, tables: [ResizeAxisTable?], outputShape: [Int], extrapolation: Double) throws -> Tensor {
        let hasExtrapolation = tables.contains { $0?.extrapolated.contains(true) ?? false }
        var fill: Tensor?
        if hasExtrapolation {
            switch x.dtype {
            case .float32: fill = Tensor(scalar: Float(extrapolation))
            case .float64: fill = Tensor(scalar: extrapolation)
            case .float16: fill = Tensor(scalar: Float16(Float(extrapolation)))
            case .bfloat16: fill = Tensor(scalar: BFloat16(Float(extrapolation)))
            default: throw KernelError.unsupported("tf_crop_and_resize extrapolation on \(x.dtype)")
            }
        }
        var y = try Tensor(zeros: x.dtype, shape: outputShape)
        let rank = x.rank
        let inputStrides = Shape.strides(x.shape)
        // Per axis: source offset (in elements) of each output index, or −1 when extrapolated.
        let offsets: [[Int]] = (0..<rank).map { axis in
            guard let table = tables[axis] else { return (0..<outputShape[axis]).map { $0 * inputStrides[axis] } }
            return (0..<table.output).map { table.extrapolated[$0] ? -1 : table.indices[$0] * inputStrides[axis] }
        }
        // Elements move as raw bit patterns; the width is resolved once, outside the loops.
        switch x.dtype.bitWidth {
        case 8: gatherElements(x, into: &y, offsets: offsets, fill: fill, as: UInt8.self)
        case 16: gatherElements(x, into: &y, offsets: offsets, fill: fill, as: UInt16.self)
        case 32: gatherElements(x, into: &y, offsets: offsets, fill: fill, as: UInt32.self)
        case 64: gatherElements(x, into: &y, offsets: offsets, fill: fill, as: UInt64.self)
        default: throw KernelError.unsupported("Resize on \(x.dtype)")
        }
        return y
    }

    /// `y[i₀, …] = x[Σ offsets[axis][i_axis]]`, or `fill` where any axis offset is −1.
    private static func gatherElements<T: FixedWidthInteger>(
        _ x: Tensor, into y: inout Tensor, offsets: [[Int]], fill: Tensor?, as type: T.Type
    ) {
        let shape = y.shape
        let rank = shape.count
        let fillValue = fill?.withUnsafeBytes { $0.loadUnaligned(as: T.self) } ?? 0
        x.withUnsafeBytes { sourceBytes in
            y.withUnsafeMutableBytes { targetBytes in
                let source = sourceBytes.bindMemory(to: T.self).baseAddress!
                let target = targetBytes.bindMemory(to: T.self).baseAddress!
                guard rank > 0 else {
                    target[0] = source[0]
                    return
                }
                let total = shape.reduce(1, *)
                let inner = shape[rank - 1]
                let innerOffsets = offsets[rank - 1]
                var index = [Int](repeating: 0, count: rank)
                var position = 0
                while position < total {
                    var base = 0
                    var outside = false
                    for axis in 0..<(rank - 1) {
                        let offset = offsets[axis][index[axis]]
                        if offset < 0 { outside = true }
                        base += offset
                    }
                    let row = target + position
                    if outside {
                        row.update(repeating: fillValue, count: inner)
                    } else {
                        for j in 0..<inner {
                            let offset = innerOffsets[j]
                            row[j] = offset < 0 ? fillValue : source[base + offset]
                        }
                    }
                    position += inner
                    var axis = rank - 2
                    while axis >= 0 {
                        index[axis] += 1
                        if index[axis] < shape[axis] { break }
                        index[axis] = 0
                        axis -= 1
                    }
                }
            }
        }
    }

    /// Linear or cubic resize: one pass per resized axis, `out[o, j, i] = Σ_t w[j, t] · in[o, idx[j, t], i]`.
    static func interpolate<T: BinaryFloatingPoint & TensorScalar>(
        _ x: Tensor, tables: [ResizeAxisTable?], outputShape: [Int], extrapolation: Double, threads: Int,
        as type: T.Type
    ) throws -> Tensor {
        var current = x
        var shape = x.shape
        // The passes commute; shrinking axes go first and, among equal ratios, later axes first, so the
        // costly per-element pass along the last axis runs on the smaller tensor.
        let order = tables.indices.filter { tables[$0] != nil }.sorted { a, b in
            let ratioA = Double(tables[a]!.output) / Double(tables[a]!.input)
            let ratioB = Double(tables[b]!.output) / Double(tables[b]!.input)
            return ratioA != ratioB ? ratioA < ratioB : a > b
        }
        for axis in order {
            let table = tables[axis]!
            var nextShape = shape
            nextShape[axis] = table.output
            var next = try Tensor(zeros: x.dtype, shape: nextShape)
            let outer = shape[..<axis].reduce(1, *)
            let inner = shape[(axis + 1)...].reduce(1, *)
            let weights = table.weights.map { T($0) }
            let fill = T(extrapolation)
            let (taps, inSize, outSize) = (table.taps, table.input, table.output)
            let parallel = outer * outSize * inner >= 1 << 15 ? threads : 1
            table.indices.withUnsafeBufferPointer { indices in
                weights.withUnsafeBufferPointer { weights in
                    table.extrapolated.withUnsafeBufferPointer { extrapolated in
                        current.withUnsafeBufferPointer(as: T.self) { source in
                            next.withUnsafeMutableBufferPointer(as: T.self) { target in
                                let input = source.baseAddress!, output = target.baseAddress!
                                Parallel.forEach(outer, threads: parallel) { o in
                                    let src = input + o * inSize * inner
                                    let dst = output + o * outSize * inner
                                    if inner == 1 {
                                        // The last axis: a short dot product per output.
                                        for j in 0..<outSize {
                                            if extrapolated[j] {
                                                dst[j] = fill
                                                continue
                                            }
                                            let base = j * taps
                                            var sum: T = 0
                                            for t in 0..<taps { sum += weights[base + t] * src[indices[base + t]] }
                                            dst[j] = sum
                                        }
                                        return
                                    }
                                    // Inner axes: whole rows scaled and added, which vectorises.
                                    for j in 0..<outSize {
                                        let row = dst + j * inner
                                        if extrapolated[j] {
                                            row.update(repeating: fill, count: inner)
                                            continue
                                        }
                                        let base = j * taps
                                        let first = src + indices[base] * inner
                                        let w0 = weights[base]
                                        for i in 0..<inner { row[i] = w0 * first[i] }
                                        for t in 1..<taps {
                                            let tapRow = src + indices[base + t] * inner
                                            let w = weights[base + t]
                                            for i in 0..<inner { row[i] += w * tapRow[i] }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            current = next
            shape = nextShape
        }
        return current
    }
}

extension KernelRegistry {
    mutating func registerResizeKernels() {
        // 10: scales only, asymmetric; 11: roi/sizes and the coordinate modes; 13: optional roi and scales;
        // 18: axes, antialias, keep_aspect_ratio_policy; 19: half_pixel_symmetric.
        for version in [10, 11, 13, 18, 19] {
            register("Resize", since: version) { context in try ResizeKernel(context, upsample: false) }
        }
        // Upsample: 7 has scales as an attribute, 9 as an input; deprecated from 10.
        for version in [7, 9] {
            register("Upsample", since: version) { context in try ResizeKernel(context, upsample: true) }
        }
    }
}
