import Tensors

/// Layers: convolutions, pooling, normalisation, matrix products, resizing, recurrent cells, reductions.
extension NodeInference {
    /// The value of an overflow-reporting operation; an overflow (sizes from a hostile file) is a shape
    /// error, not a trap.
    func checked(_ result: (partialValue: Int, overflow: Bool)) throws -> Int {
        guard !result.overflow else { throw mismatch("a size computation overflows") }
        return result.partialValue
    }

    // MARK: Sliding windows

    /// Window geometry shared by convolutions and pooling, one entry per spatial axis.
    struct Window {
        var kernel: [Int]?
        var strides: [Int]
        var dilations: [Int]
        /// `[x1_begin, x2_begin, …, x1_end, x2_end, …]`
        var pads: [Int]
        var autoPad: String
    }

    /// Reads `kernel_shape`, `strides`, `dilations`, `pads` and `auto_pad`, checking their lengths.
    func window(spatialAxes count: Int, kernel fallbackKernel: [Int]?) throws -> Window {
        let kernel = try intsAttribute("kernel_shape") ?? fallbackKernel
        let strides = try intsAttribute("strides") ?? Array(repeating: 1, count: count)
        let dilations = try intsAttribute("dilations") ?? Array(repeating: 1, count: count)
        let pads = try intsAttribute("pads") ?? Array(repeating: 0, count: 2 * count)
        let autoPad = try stringAttribute("auto_pad", default: "NOTSET")
        guard ["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"].contains(autoPad) else {
            throw invalidAttribute("auto_pad", "must be NOTSET, SAME_UPPER, SAME_LOWER or VALID, not '\(autoPad)'")
        }
        if let kernel {
            guard kernel.count == count else { throw mismatch("kernel_shape \(kernel) does not match \(count) spatial axes") }
            guard kernel.allSatisfy({ $0 > 0 }) else { throw invalidAttribute("kernel_shape", "must be positive") }
        }
        guard strides.count == count, strides.allSatisfy({ $0 > 0 }) else {
            throw invalidAttribute("strides", "must hold \(count) positive values, got \(strides)")
        }
        guard dilations.count == count, dilations.allSatisfy({ $0 > 0 }) else {
            throw invalidAttribute("dilations", "must hold \(count) positive values, got \(dilations)")
        }
        guard pads.count == 2 * count, pads.allSatisfy({ $0 >= 0 }) else {
            throw invalidAttribute("pads", "must hold \(2 * count) non-negative values, got \(pads)")
        }
        return Window(kernel: kernel, strides: strides, dilations: dilations, pads: pads, autoPad: autoPad)
    }

    /// Output sizes of a window sliding over `spatial`:
    /// explicit pads `⌊(in + p_begin + p_end − ((k − 1)·d + 1)) / s⌋ + 1` (⌈·⌉ in ceil mode, dropping a last
    /// window that would start in the end padding), `SAME_*` `⌈in / s⌉`, `VALID` `⌈(in − ((k − 1)·d + 1) + 1) / s⌉`.
    func slidingOutput(_ spatial: [Dim], _ window: Window, ceilMode: Bool) throws -> [Dim] {
        let count = spatial.count
        return try (0..<count).map { i -> Dim in
            let stride = window.strides[i]
            if window.autoPad.hasPrefix("SAME") {
                if let size = spatial[i].intValue { return .value((size + stride - 1) / stride) }
                return stride == 1 ? spatial[i] : .unknown
            }
            guard let kernel = window.kernel?[i] else { return .unknown }
            let effectiveKernel = try checked(try checked((kernel - 1).multipliedReportingOverflow(by: window.dilations[i])).addingReportingOverflow(1))
            let padBegin = window.autoPad == "VALID" ? 0 : window.pads[i]
            let padEnd = window.autoPad == "VALID" ? 0 : window.pads[i + count]
            let padded = try checked(padBegin.addingReportingOverflow(padEnd))
            let slack = padded - effectiveKernel  // both non-negative: cannot overflow
            guard let size = spatial[i].intValue else {
                return stride == 1 && slack == -1 ? spatial[i] : .unknown
            }
            let span = try checked(size.addingReportingOverflow(slack))
            guard span >= 0 else {
                throw mismatch("window of \(effectiveKernel) exceeds input \(size) padded by \(padded) on spatial axis \(i)")
            }
            guard ceilMode, window.autoPad == "NOTSET" else { return .value(span / stride + 1) }
            var output = (span - 1) / stride + 2  // ⌈span / stride⌉ + 1 for span ≥ 1
            if span == 0 { output = 1 }
            let lastStart = try checked((output - 1).multipliedReportingOverflow(by: stride))
            if lastStart >= size &+ padBegin { output -= 1 }
            return .value(output)
        }
    }

    /// Kernel sizes from a weight shape's spatial dims, when all are numbers.
    private func kernelFromWeight(_ weight: [Dim]?) -> [Int]? {
        guard let weight, weight.count > 2 else { return nil }
        let sizes = weight.dropFirst(2).compactMap(\.intValue)
        return sizes.count == weight.count - 2 ? sizes : nil
    }

    // MARK: Convolutions

    /// `Conv` and its integer/quantized forms: `[N, C, d…] ⊛ [M, C / group, k…] → [N, M, o…]`.
    func convolution(data: Int, weight: Int, dtype: DType?) throws -> InferredType {
        let x = input(data).shape
        let w = input(weight).shape
        guard let rank = x?.count ?? w?.count else { return InferredType(dtype: dtype) }
        guard rank >= 3 else { throw mismatch("needs inputs of rank 3 or more, got rank \(rank)") }
        if let x, let w, x.count != w.count {
            throw mismatch("input has rank \(x.count) but weight has rank \(w.count)")
        }
        let group = try intAttribute("group", default: 1)
        guard group > 0 else { throw invalidAttribute("group", "must be positive") }
        if let channels = x?[1].intValue, let perGroup = w?[1].intValue, channels != perGroup * group {
            throw mismatch("input has \(channels) channels but weight expects \(perGroup) × group \(group)")
        }
        let window = try window(spatialAxes: rank - 2, kernel: kernelFromWeight(w))
        let spatial = x.map { Array($0.dropFirst(2)) } ?? Array(repeating: .unknown, count: rank - 2)
        let output = [x?[0] ?? .unknown, w?[0] ?? .unknown] + (try slidingOutput(spatial, window, ceilMode: false))
        return InferredType(dtype: dtype, shape: output)
    }

    /// `ConvTranspose`: `[N, C, d…]` with weight `[C, M / group, k…]` → `[N, M, o…]`,
    /// `o = s·(in − 1) + output_padding + (k − 1)·d + 1 − p_begin − p_end` (`in·s` for `SAME_*`),
    /// or `output_shape` when given.
    func convolutionTranspose() throws -> InferredType {
        let x = input(0).shape
        let w = input(1).shape
        let dtype = try commonType([0, 1])
        guard let rank = x?.count ?? w?.count else { return InferredType(dtype: dtype) }
        guard rank >= 3 else { throw mismatch("needs inputs of rank 3 or more, got rank \(rank)") }
        if let x, let w, x.count != w.count {
            throw mismatch("input has rank \(x.count) but weight has rank \(w.count)")
        }
        let group = try intAttribute("group", default: 1)
        guard group > 0 else { throw invalidAttribute("group", "must be positive") }
        if let x, let w, let channels = x[1].intValue, let weightChannels = w[0].intValue, channels != weightChannels {
            throw mismatch("input has \(channels) channels but the weight's first dimension is \(weightChannels)")
        }
        let spatialCount = rank - 2
        let window = try window(spatialAxes: spatialCount, kernel: kernelFromWeight(w))
        let outputPadding = try intsAttribute("output_padding") ?? Array(repeating: 0, count: spatialCount)
        guard outputPadding.count == spatialCount else {
            throw invalidAttribute("output_padding", "must hold \(spatialCount) values")
        }
        let outputChannels = Dim.multiply(w?[1] ?? .unknown, .value(group))
        var spatial: [Dim] = Array(repeating: .unknown, count: spatialCount)
        if let explicit = try intsAttribute("output_shape") {
            guard explicit.count == spatialCount || explicit.count == rank else {
                throw invalidAttribute("output_shape", "must hold \(spatialCount) spatial sizes")
            }
            spatial = explicit.suffix(spatialCount).map { .value($0) }
        } else if let x {
            for i in 0..<spatialCount {
                let size = x[i + 2]
                let stride = window.strides[i]
                if window.autoPad.hasPrefix("SAME") {
                    spatial[i] = Dim.multiply(size, .value(stride))
                    continue
                }
                guard let kernel = window.kernel?[i] else { continue }
                let padTotal = window.autoPad == "VALID" ? 0 : try checked(window.pads[i].addingReportingOverflow(window.pads[i + spatialCount]))
                let reach = try checked((kernel - 1).multipliedReportingOverflow(by: window.dilations[i]))
                let extra = try checked(try checked(outputPadding[i].addingReportingOverflow(reach)).addingReportingOverflow(1 - padTotal))
                if let value = size.intValue {
                    let computed = try checked(try checked(stride.multipliedReportingOverflow(by: value - 1)).addingReportingOverflow(extra))
                    guard computed >= 0 else { throw mismatch("computes a negative size on spatial axis \(i)") }
                    spatial[i] = .value(computed)
                } else if stride == 1, extra == 1 {
                    spatial[i] = size
                }
            }
        }
        return InferredType(dtype: dtype, shape: [x?[0] ?? .unknown, outputChannels] + spatial)
    }

    // MARK: Pooling

    func pooling(opset: Int) throws -> [InferredType] {
        let data = input(0)
        guard let shape = data.shape else {
            return [InferredType(dtype: data.dtype), InferredType(dtype: .int64)]
        }
        guard shape.count >= 3 else { throw mismatch("needs an input of rank 3 or more, got rank \(shape.count)") }
        guard node[attribute: "kernel_shape"] != nil else { throw invalidAttribute("kernel_shape", "is required") }
        let window = try window(spatialAxes: shape.count - 2, kernel: nil)
        let ceilMode = try intAttribute("ceil_mode", default: 0) != 0
        let output = Array(shape.prefix(2)) + (try slidingOutput(Array(shape.dropFirst(2)), window, ceilMode: ceilMode))
        return [InferredType(dtype: data.dtype, shape: output), InferredType(dtype: .int64, shape: output)]
    }

    func globalPooling() throws -> InferredType {
        let data = input(0)
        guard let shape = data.shape else { return InferredType(dtype: data.dtype) }
        guard shape.count >= 2 else { throw mismatch("needs an input of rank 2 or more, got rank \(shape.count)") }
        return InferredType(dtype: data.dtype, shape: Array(shape.prefix(2)) + Array(repeating: .value(1), count: shape.count - 2))
    }

    // MARK: Normalisation

    func batchNormalization(opset: Int) throws -> [InferredType] {
        let data = input(0)
        let channels: [Dim]? = data.shape.map { $0.count > 1 ? [$0[1]] : [.unknown] }
        let statistics = InferredType(dtype: input(3).dtype ?? data.dtype, shape: channels)
        return [sameAsInput(0)] + Array(repeating: statistics, count: max(node.outputs.count - 1, 0))
    }

    func layerNormalization() throws -> [InferredType] {
        let data = input(0)
        let stashType = DType(onnxCode: try intAttribute("stash_type", default: 1))
        var statisticsShape: [Dim]? = nil
        if let shape = data.shape {
            let axis = try normalizedAxis(try intAttribute("axis", default: -1), rank: shape.count)
            statisticsShape = Array(shape[..<axis]) + Array(repeating: .value(1), count: shape.count - axis)
        }
        let statistics = InferredType(dtype: stashType, shape: statisticsShape)
        return [sameAsInput(0), statistics, statistics]
    }

    // MARK: Matrix products

    func gemm() throws -> InferredType {
        let dtype = try commonType([0, 1])
        let a = input(0).shape
        let b = input(1).shape
        for (name, shape) in [("A", a), ("B", b)] {
            if let shape, shape.count != 2 { throw mismatch("\(name) must have rank 2, got \(shape)") }
        }
        let transA = try intAttribute("transA", default: 0) != 0
        let transB = try intAttribute("transB", default: 0) != 0
        let rows = a.map { transA ? $0[1] : $0[0] } ?? .unknown
        let columns = b.map { transB ? $0[0] : $0[1] } ?? .unknown
        if let a, let b {
            let inner = transA ? a[0] : a[1]
            let innerB = transB ? b[1] : b[0]
            guard Dim.unify(inner, innerB) != nil else {
                throw mismatch("inner dimensions differ: A \(a)\(transA ? "ᵀ" : "") by B \(b)\(transB ? "ᵀ" : "")")
            }
        }
        let output = [rows, columns]
        if has(2), let bias = input(2).shape {
            // C broadcasts one way to [M, N], so a C dim other than 1 is the output's.
            let combined = try broadcast(output, bias)
            guard combined.count == 2, zip(output, combined).allSatisfy({ own, joint in !own.isValue || own == joint }) else {
                throw mismatch("C \(bias) does not broadcast to the [M, N] = \(output) result")
            }
            return InferredType(dtype: dtype, shape: combined)
        }
        return InferredType(dtype: dtype, shape: output)
    }

    /// numpy `matmul` shapes: batch dims broadcast, 1-D operands promoted and the added axis dropped.
    func matMul(left: Int, right: Int, dtype: DType?) throws -> InferredType {
        let checkedType = node.opType == "MatMul" ? try commonType([left, right]) : dtype
        guard let a = input(left).shape, let b = input(right).shape else { return InferredType(dtype: checkedType) }
        guard !a.isEmpty, !b.isEmpty else { throw mismatch("cannot multiply a scalar (shapes \(a) and \(b))") }
        let lhs = a.count == 1 ? [.value(1)] + a : a
        let rhs = b.count == 1 ? b + [.value(1)] : b
        guard Dim.unify(lhs[lhs.count - 1], rhs[rhs.count - 2]) != nil else {
            throw mismatch("inner dimensions differ: \(a) by \(b)")
        }
        var output = try broadcast(Array(lhs.dropLast(2)), Array(rhs.dropLast(2)))
        if a.count > 1 { output.append(lhs[lhs.count - 2]) }
        if b.count > 1 { output.append(rhs[rhs.count - 1]) }
        return InferredType(dtype: checkedType, shape: output)
    }

    // MARK: Resizing

    func resize(opset: Int) throws -> InferredType {
        let data = input(0)
        guard let shape = data.shape else { return InferredType(dtype: data.dtype) }
        let axes = try intsAttribute("axes").map { try normalizedAxes($0, rank: shape.count) } ?? Array(0..<shape.count)
        let scalesIndex = opset >= 11 ? 2 : 1
        var output = shape
        func isGiven(_ index: Int) -> Bool {
            has(index) && input(index).shape != [.value(0)] && constant(index)?.count != 0
        }
        if opset >= 11, isGiven(3) {
            let policy = try stringAttribute("keep_aspect_ratio_policy", default: "stretch")
            guard let sizes = elements(3) else {
                for axis in axes { output[axis] = .unknown }
                return InferredType(dtype: data.dtype, shape: output)
            }
            guard sizes.count == axes.count else {
                throw mismatch("sizes has \(sizes.count) entries for \(axes.count) axes")
            }
            switch policy {
            case "stretch":
                for (axis, size) in zip(axes, sizes) { output[axis] = size }
            case "not_larger", "not_smaller":
                let numbers = sizes.compactMap(\.intValue)
                let inputs = axes.compactMap { shape[$0].intValue }
                guard numbers.count == axes.count, inputs.count == axes.count, !inputs.contains(0) else {
                    for axis in axes { output[axis] = .unknown }
                    break
                }
                let ratios = zip(numbers, inputs).map { Double($0) / Double($1) }
                let scale = policy == "not_larger" ? ratios.min()! : ratios.max()!
                for (axis, size) in zip(axes, inputs) {
                    let rounded = (scale * Double(size) + 0.5).rounded(.down)
                    guard rounded.isFinite, rounded < Double(Int32.max) else { throw mismatch("sizes make axis \(axis) too large") }
                    output[axis] = .value(Int(rounded))
                }
            default:
                throw invalidAttribute("keep_aspect_ratio_policy", "must be stretch, not_larger or not_smaller, not '\(policy)'")
            }
            return InferredType(dtype: data.dtype, shape: output)
        }
        guard isGiven(scalesIndex) else {
            for axis in axes { output[axis] = .unknown }
            return InferredType(dtype: data.dtype, shape: output)
        }
        output = try scaled(shape, axes: axes, scales: doubles(scalesIndex))
        return InferredType(dtype: data.dtype, shape: output)
    }

    /// `Upsample` (deprecated since opset 10): scales as an attribute (opset 7–8) or input 1 (opset 9).
    func upsample(opset: Int) throws -> InferredType {
        let data = input(0)
        guard let shape = data.shape else { return InferredType(dtype: data.dtype) }
        let scales = opset < 9 ? try floatsAttribute("scales")?.map(Double.init) : doubles(1)
        return InferredType(dtype: data.dtype, shape: try scaled(shape, axes: Array(0..<shape.count), scales: scales))
    }

    /// `⌊in · scale⌋` per axis (computed in Double, as the ONNX reference does); unknown scales give
    /// unknown sizes.
    private func scaled(_ shape: [Dim], axes: [Int], scales: [Double]?) throws -> [Dim] {
        var output = shape
        guard let scales else {
            for axis in axes { output[axis] = .unknown }
            return output
        }
        guard scales.count == axes.count else { throw mismatch("scales has \(scales.count) entries for \(axes.count) axes") }
        for (axis, scale) in zip(axes, scales) {
            guard scale > 0, scale.isFinite else { throw mismatch("scale \(scale) on axis \(axis) is not positive") }
            if let size = shape[axis].intValue {
                let product = (Double(size) * scale).rounded(.down)
                guard product < Double(Int32.max) else { throw mismatch("scale \(scale) makes axis \(axis) too large") }
                output[axis] = .value(Int(product))
            } else {
                output[axis] = scale == 1 ? shape[axis] : .unknown
            }
        }
        return output
    }

    // MARK: Recurrent layers

    /// `LSTM`/`GRU`/`RNN`. Layout 0: `Y [seq, dirs, batch, hidden]`, `Y_h`/`Y_c [dirs, batch, hidden]`;
    /// layout 1: `Y [batch, seq, dirs, hidden]`, `Y_h`/`Y_c [batch, dirs, hidden]`.
    func recurrent(gates: Int, hasCellState: Bool) throws -> [InferredType] {
        let data = input(0)
        let direction = try stringAttribute("direction", default: "forward")
        let directions: Dim
        switch direction {
        case "forward", "reverse": directions = .value(1)
        case "bidirectional": directions = .value(2)
        default: throw invalidAttribute("direction", "must be forward, reverse or bidirectional, not '\(direction)'")
        }
        let layout = try intAttribute("layout", default: 0)
        guard layout == 0 || layout == 1 else { throw invalidAttribute("layout", "must be 0 or 1") }
        var hidden: Dim = try intAttribute("hidden_size").map { .value($0) } ?? .unknown
        if hidden == .unknown, let recurrence = input(2).shape, recurrence.count == 3 { hidden = recurrence[2] }
        if let recurrence = input(2).shape, recurrence.count == 3, Dim.unify(recurrence[0], directions) == nil {
            throw mismatch("R has \(recurrence[0]) directions but direction is \(direction)")
        }
        var sequence = Dim.unknown, batch = Dim.unknown
        if let shape = data.shape {
            guard shape.count == 3 else { throw mismatch("X must have rank 3, got \(shape)") }
            (sequence, batch) = layout == 0 ? (shape[0], shape[1]) : (shape[1], shape[0])
        }
        let outputs = layout == 0 ? [sequence, directions, batch, hidden] : [batch, sequence, directions, hidden]
        let state = layout == 0 ? [directions, batch, hidden] : [batch, directions, hidden]
        var result = [InferredType(dtype: data.dtype, shape: outputs), InferredType(dtype: data.dtype, shape: state)]
        if hasCellState { result.append(InferredType(dtype: data.dtype, shape: state)) }
        return result
    }

    // MARK: Reductions

    func reduce(opset: Int) throws -> InferredType {
        let data = input(0)
        let keepDims = try intAttribute("keepdims", default: 1) != 0
        let axesAreInput = node.opType == "ReduceSum" ? opset >= 13 : opset >= 18
        var axes: [Int]?
        var noOpWhenEmpty = false
        if axesAreInput {
            axes = has(1) ? integers(1) : []
            noOpWhenEmpty = try intAttribute("noop_with_empty_axes", default: 0) != 0
        } else {
            axes = try intsAttribute("axes") ?? []
        }
        guard let shape = data.shape else { return InferredType(dtype: data.dtype) }
        guard let axes else {
            // Unknown axes: with keepdims every axis is either kept or becomes 1.
            if keepDims { return InferredType(dtype: data.dtype, shape: shape.map { $0 == .value(1) ? $0 : .unknown }) }
            return InferredType(dtype: data.dtype)
        }
        if axes.isEmpty && noOpWhenEmpty { return sameAsInput(0) }
        let reduced = axes.isEmpty ? Set(0..<shape.count) : Set(try normalizedAxes(axes, rank: shape.count))
        var output: [Dim] = []
        for (axis, dim) in shape.enumerated() {
            if !reduced.contains(axis) { output.append(dim) } else if keepDims { output.append(.value(1)) }
        }
        var result = InferredType(dtype: data.dtype, shape: output)
        if shape.count == 1, reduced == [0], let elements = data.value {
            switch node.opType {
            case "ReduceSum": result.value = [Dim.sum(elements)]
            case "ReduceProd": result.value = [Dim.product(elements)]
            default: break
            }
        }
        return result
    }

    func argReduce() throws -> InferredType {
        guard let shape = input(0).shape else { return InferredType(dtype: .int64) }
        let axis = try normalizedAxis(try intAttribute("axis", default: 0), rank: shape.count)
        var output = shape
        if try intAttribute("keepdims", default: 1) != 0 { output[axis] = .value(1) } else { output.remove(at: axis) }
        return InferredType(dtype: .int64, shape: output)
    }

    func topK(opset: Int) throws -> [InferredType] {
        let data = input(0)
        guard var shape = data.shape else { return [InferredType(dtype: data.dtype), InferredType(dtype: .int64)] }
        let axis = try normalizedAxis(try intAttribute("axis", default: -1), rank: shape.count)
        let k: Dim
        if opset < 10 {
            guard let attribute = try intAttribute("k") else { throw invalidAttribute("k", "is required") }
            k = .value(attribute)
        } else {
            k = elements(1)?.first ?? .unknown
        }
        if let count = k.intValue {
            guard count >= 0 else { throw mismatch("k = \(count) is negative") }
            if let size = shape[axis].intValue, count > size {
                throw mismatch("k = \(count) exceeds dimension \(size) of axis \(axis)")
            }
        }
        shape[axis] = k
        return [InferredType(dtype: data.dtype, shape: shape), InferredType(dtype: .int64, shape: shape)]
    }
}
