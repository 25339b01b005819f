import GraphIR
import Tensors

// Concat, Split, Slice, Pad, Transpose, Tile and Expand: kernels that copy element bytes into a new
// layout. Each works for every dtype of 1, 2, 4 or 8 bytes per element.

extension KernelRegistry {
    mutating func registerDataMovementKernels() {
        // Concat-4 made `axis` required; Concat-11 allows negative axes.
        register("Concat", since: 4) { try ConcatKernel(context: $0, acceptsNegativeAxis: false) }
        register("Concat", since: 11) { try ConcatKernel(context: $0, acceptsNegativeAxis: true) }

        // Split-2: `split` attribute; -11: negative axis; -13: `split` input; -18: `num_outputs`.
        register("Split", since: 2) { try SplitKernel(context: $0, version: 2) }
        register("Split", since: 11) { try SplitKernel(context: $0, version: 11) }
        register("Split", since: 13) { try SplitKernel(context: $0, version: 13) }
        register("Split", since: 18) { try SplitKernel(context: $0, version: 18) }

        // Slice-1: attributes; -10: inputs with steps; -11: negative axes.
        register("Slice", since: 1) { context in
            SliceKernel(attributes: SliceKernel.Attributes(
                starts: try context.ints("starts"), ends: try context.ints("ends"),
                axes: context.has("axes") ? try context.ints("axes") : nil), acceptsNegativeAxes: false)
        }
        register("Slice", since: 10) { _ in SliceKernel(attributes: nil, acceptsNegativeAxes: false) }
        register("Slice", since: 11) { _ in SliceKernel(attributes: nil, acceptsNegativeAxes: true) }

        // Pad-2: attributes; -11: `pads`/`constant_value` inputs; -18: `axes` input; -19: wrap mode.
        register("Pad", since: 2) { try PadKernel(context: $0, version: 2) }
        register("Pad", since: 11) { try PadKernel(context: $0, version: 11) }
        register("Pad", since: 18) { try PadKernel(context: $0, version: 18) }
        register("Pad", since: 19) { try PadKernel(context: $0, version: 19) }

        register("Transpose", since: 1) { context in
            TransposeKernel(permutation: context.has("perm") ? try context.ints("perm") : nil)
        }
        register("Tile", since: 6) { _ in TileKernel() }
        register("Expand", since: 8) { _ in ExpandKernel() }
    }
}

/// Raw base addresses of several tensors at once. The tensors must outlive every use of the pointers
/// (callers hold them in an array across the call); storage never moves while a tensor references it.
func baseAddresses(_ tensors: [Tensor]) -> [UnsafeRawPointer] {
    tensors.map { tensor in
        tensor.withUnsafeBytes { UnsafeRawPointer($0.baseAddress!) }
    }
}

// MARK: - Concat

/// Concat: joins tensors along `axis`; all other dimensions must agree.
struct ConcatKernel: Kernel {
    let axis: Int

    init(context: KernelBuildContext, acceptsNegativeAxis: Bool) throws {
        axis = try context.int("axis")
        if !acceptsNegativeAxis && axis < 0 {
            throw KernelError.invalidAttribute(
                "axis", "is \(axis); negative axes need opset 11 or later (Concat-\(context.opsetVersion))")
        }
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        guard !inputs.isEmpty else { throw KernelError.invalid("Concat needs at least one input") }
        let tensors = try inputs.indices.map { try required(inputs, $0) }
        let first = tensors[0]
        let rank = first.rank
        guard let axis = Shape.normalizedAxis(self.axis, rank: rank) else {
            throw KernelError.invalidAttribute("axis", "\(self.axis) is outside [-\(rank), \(rank - 1)] for inputs of shape \(first.shape)")
        }
        var axisTotal = 0
        for (index, tensor) in tensors.enumerated() {
            guard tensor.dtype == first.dtype else {
                throw KernelError.invalidInput(index: index, reason: "dtype \(tensor.dtype) differs from input 0's \(first.dtype)")
            }
            guard tensor.rank == rank,
                  tensor.shape.indices.allSatisfy({ $0 == axis || tensor.shape[$0] == first.shape[$0] }) else {
                throw KernelError.invalidInput(
                    index: index, reason: "shape \(tensor.shape) does not match input 0's \(first.shape) outside axis \(axis)")
            }
            let (sum, overflow) = axisTotal.addingReportingOverflow(tensor.shape[axis])
            guard !overflow else { throw KernelError.invalid("Concat output dimension overflows Int") }
            axisTotal = sum
        }
        var outputShape = first.shape
        outputShape[axis] = axisTotal
        if tensors.count == 1 { return [first] }
        let elementSize = try movableElementSize(first.dtype, operator: "Concat")
        var output = try makeOutputTensor(first.dtype, shape: outputShape)

        let outer = first.shape[..<axis].reduce(1, *)
        let inner = first.shape[(axis + 1)...].reduce(1, *)
        let chunkBytes = tensors.map { $0.shape[axis] &* inner &* elementSize }
        let rowBytes = chunkBytes.reduce(0, +)
        let sources = baseAddresses(tensors)
        let threads = output.byteCount >= parallelCopyThreshold ? context.threadCount : 1
        withExtendedLifetime(tensors) {
            output.withUnsafeMutableBytes { destination in
                guard let base = destination.baseAddress else { return }
                Parallel.forRanges(outer, threads: threads, grain: max(1, (64 << 10) / max(rowBytes, 1))) { rows in
                    for row in rows {
                        var to = base + row &* rowBytes
                        for (source, bytes) in zip(sources, chunkBytes) {
                            to.copyMemory(from: source + row &* bytes, byteCount: bytes)
                            to += bytes
                        }
                    }
                }
            }
        }
        return [output]
    }
}

// MARK: - Split

/// Split: cuts a tensor into consecutive parts along `axis`.
///
/// Part sizes come from the `split` attribute (opset 2–12) or input (13+), else the dimension is
/// divided evenly over the outputs; from opset 18 `num_outputs` allows a smaller last part
/// (parts of `ceil(d / n)`).
struct SplitKernel: Kernel {
    let axis: Int
    let version: Int
    let attributeSizes: [Int]?
    let numOutputs: Int?
    let outputCount: Int

    init(context: KernelBuildContext, version: Int) throws {
        self.version = version
        axis = try context.int("axis", default: 0)
        if version < 11 && axis < 0 {
            throw KernelError.invalidAttribute("axis", "is \(axis); negative axes need opset 11 or later")
        }
        attributeSizes = version < 13 && context.has("split") ? try context.ints("split") : nil
        numOutputs = version >= 18 && context.has("num_outputs") ? try context.int("num_outputs") : nil
        outputCount = context.node.outputs.count
        guard outputCount >= 1 else { throw KernelError.invalid("Split needs at least one output") }
        if let numOutputs, numOutputs != outputCount {
            throw KernelError.invalidAttribute(
                "num_outputs", "is \(numOutputs) but the node has \(outputCount) outputs")
        }
    }

    func partSizes(dimension: Int, splitInput: Tensor?) throws -> [Int] {
        var sizes: [Int]?
        if version >= 13, let splitInput, splitInput.count > 0 {
            guard numOutputs == nil else {
                throw KernelError.invalid("Split takes either the 'split' input or 'num_outputs', not both")
            }
            sizes = try splitInput.integerValues()
        } else if let attributeSizes {
            sizes = attributeSizes
        }
        guard let sizes else {
            let parts = outputCount
            if dimension % parts == 0 { return [Int](repeating: dimension / parts, count: parts) }
            guard version >= 18 else {
                throw KernelError.invalid("dimension \(dimension) cannot be split evenly into \(parts) outputs")
            }
            let chunk = dimension / parts + 1
            let last = dimension - chunk * (parts - 1)
            guard last >= 0 else {
                throw KernelError.invalid("dimension \(dimension) cannot be split into \(parts) parts of \(chunk)")
            }
            return [Int](repeating: chunk, count: parts - 1) + [last]
        }
        guard sizes.count == outputCount else {
            throw KernelError.invalid("'split' has \(sizes.count) sizes for \(outputCount) outputs")
        }
        var total = 0
        for size in sizes {
            guard size >= 0 else { throw KernelError.invalid("'split' sizes must be >= 0, got \(sizes)") }
            let (sum, overflow) = total.addingReportingOverflow(size)
            guard !overflow else { throw KernelError.invalid("'split' sizes \(sizes) overflow") }
            total = sum
        }
        guard total == dimension else {
            throw KernelError.invalid("'split' sizes \(sizes) sum to \(total), but the axis has \(dimension)")
        }
        return sizes
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try required(inputs, 0)
        guard let axis = Shape.normalizedAxis(self.axis, rank: data.rank) else {
            throw KernelError.invalidAttribute("axis", "\(self.axis) is out of range for input shape \(data.shape)")
        }
        let sizes = try partSizes(dimension: data.shape[axis], splitInput: version >= 13 ? optional(inputs, 1) : nil)
        let elementSize = try movableElementSize(data.dtype, operator: "Split")
        let outer = data.shape[..<axis].reduce(1, *)
        let inner = data.shape[(axis + 1)...].reduce(1, *)
        let sourceRowBytes = data.shape[axis] &* inner &* elementSize
        var outputs: [Tensor] = []
        var offsetBytes = 0
        for size in sizes {
            var shape = data.shape
            shape[axis] = size
            var part = try makeOutputTensor(data.dtype, shape: shape)
            let partRowBytes = size &* inner &* elementSize
            let start = offsetBytes
            let threads = part.byteCount >= parallelCopyThreshold ? context.threadCount : 1
            data.withUnsafeBytes { source in
                part.withUnsafeMutableBytes { destination in
                    guard let from = source.baseAddress, let to = destination.baseAddress, partRowBytes > 0 else { return }
                    Parallel.forRanges(outer, threads: threads, grain: max(1, (64 << 10) / partRowBytes)) { rows in
                        for row in rows {
                            (to + row &* partRowBytes).copyMemory(
                                from: from + (row &* sourceRowBytes &+ start), byteCount: partRowBytes)
                        }
                    }
                }
            }
            offsetBytes += partRowBytes
            outputs.append(part)
        }
        return outputs
    }
}

// MARK: - Slice

/// Slice: a strided sub-tensor, numpy `data[start:end:step]` per listed axis.
///
/// Per axis of extent d: negative starts/ends get d added; then for step > 0, start and end are
/// clamped to [0, d]; for step < 0, start to [0, d-1] and end to [-1, d-1]. The output extent is
/// `max(0, ceil((end - start) / step))`.
struct SliceKernel: Kernel {
    struct Attributes: Sendable {
        var starts: [Int]
        var ends: [Int]
        var axes: [Int]?
    }

    /// Opset 1 reads starts/ends/axes from attributes; later versions from inputs 1…4.
    let attributes: Attributes?
    let acceptsNegativeAxes: Bool

    /// Where the slice of `shape` starts (in elements) and how it walks the source.
    struct Geometry: Equatable {
        var outputShape: [Int]
        var offset: Int
        var strides: [Int]
    }

    static func geometry(
        shape: [Int], starts: [Int], ends: [Int], axes: [Int]?, steps: [Int]?, acceptsNegativeAxes: Bool
    ) throws -> Geometry {
        let rank = shape.count
        let count = starts.count
        guard ends.count == count else {
            throw KernelError.invalid("Slice has \(count) starts but \(ends.count) ends")
        }
        if let axes, axes.count != count {
            throw KernelError.invalid("Slice has \(count) starts but \(axes.count) axes")
        }
        if let steps, steps.count != count {
            throw KernelError.invalid("Slice has \(count) starts but \(steps.count) steps")
        }
        var outputShape = shape
        var strides = Shape.strides(shape)
        var offset = 0
        var seen = Set<Int>()
        for i in 0..<count {
            let rawAxis = axes?[i] ?? i
            guard acceptsNegativeAxes || rawAxis >= 0 else {
                throw KernelError.invalid("Slice axis \(rawAxis) is negative; negative axes need opset 11 or later")
            }
            guard let axis = Shape.normalizedAxis(rawAxis, rank: rank) else {
                throw KernelError.invalid("Slice axis \(rawAxis) is out of range for input shape \(shape)")
            }
            guard seen.insert(axis).inserted else { throw KernelError.invalid("Slice axis \(axis) is repeated") }
            let dim = shape[axis]
            var step = steps?[i] ?? 1
            guard step != 0 else { throw KernelError.invalid("Slice step for axis \(axis) is 0") }
            // A step longer than the axis picks at most one element either way; clamping keeps -step
            // representable (INT64_MIN) and the arithmetic below in range.
            step = min(max(step, -(dim + 1)), dim + 1)
            var start = starts[i], end = ends[i]
            if start < 0 { start += dim }
            if end < 0 { end += dim }
            let extent: Int
            if step > 0 {
                start = min(max(start, 0), dim)
                end = min(max(end, 0), dim)
                extent = end > start ? (end - start + step - 1) / step : 0
            } else {
                start = min(max(start, 0), dim - 1)
                end = min(max(end, -1), dim - 1)
                extent = start > end ? (start - end - step - 1) / -step : 0
            }
            outputShape[axis] = extent
            if extent > 0 { offset += start * strides[axis] }
            let (stride, overflow) = strides[axis].multipliedReportingOverflow(by: step)
            guard !overflow else { throw KernelError.invalid("Slice stride overflows Int") }
            strides[axis] = stride
        }
        return Geometry(outputShape: outputShape, offset: offset, strides: strides)
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try required(inputs, 0)
        let geometry: Geometry
        if let attributes {
            geometry = try Self.geometry(
                shape: data.shape, starts: attributes.starts, ends: attributes.ends, axes: attributes.axes,
                steps: nil, acceptsNegativeAxes: acceptsNegativeAxes)
        } else {
            geometry = try Self.geometry(
                shape: data.shape, starts: try indexList(inputs, 1, "starts"), ends: try indexList(inputs, 2, "ends"),
                axes: try optionalIndexList(inputs, 3, "axes"), steps: try optionalIndexList(inputs, 4, "steps"),
                acceptsNegativeAxes: acceptsNegativeAxes)
        }
        let plan = StridedCopy(shape: geometry.outputShape, sourceStrides: geometry.strides,
                               destinationStrides: Shape.strides(geometry.outputShape))
        if plan.isIdentity, geometry.offset == 0, try Shape.elementCount(geometry.outputShape) == data.count {
            return [try data.reshaped(geometry.outputShape)]
        }
        return [try data.stridedCopy(plan, sourceOffset: geometry.offset, into: geometry.outputShape,
                                     threads: context.threadCount, operator: "Slice")]
    }
}

/// A required 1-D int32/int64 control input (starts, ends, pads, repeats…) as `Int`s.
func indexList(_ inputs: [Tensor?], _ index: Int, _ name: String) throws -> [Int] {
    try validatedIndexList(required(inputs, index), index, name)
}

/// An optional 1-D int32/int64 control input as `Int`s; nil when omitted.
func optionalIndexList(_ inputs: [Tensor?], _ index: Int, _ name: String) throws -> [Int]? {
    try optional(inputs, index).map { try validatedIndexList($0, index, name) }
}

private func validatedIndexList(_ tensor: Tensor, _ index: Int, _ name: String) throws -> [Int] {
    guard tensor.dtype == .int64 || tensor.dtype == .int32 else {
        throw KernelError.invalidInput(index: index, reason: "'\(name)' must be int32 or int64, got \(tensor.dtype)")
    }
    guard tensor.rank <= 1 else {
        throw KernelError.invalidInput(index: index, reason: "'\(name)' must be 1-D, got shape \(tensor.shape)")
    }
    return try tensor.integerValues()
}

// MARK: - Pad

/// Pad: grows (or, with negative pads, crops) each axis.
///
/// `pads = [b_0, …, b_{n-1}, e_0, …, e_{n-1}]` adds `b_i` elements before and `e_i` after axis i.
/// Negative pads crop first; the remaining elements are then padded with a constant, by reflection
/// about the edge elements (numpy `reflect`), by repeating the edge (`edge`), or periodically (`wrap`).
struct PadKernel: Kernel {
    enum Mode: String, Sendable { case constant, reflect, edge, wrap }

    let mode: Mode
    let version: Int
    /// Opset 2 reads pads and the fill value from attributes.
    let attributePads: [Int]?
    let attributeValue: Float

    init(context: KernelBuildContext, version: Int) throws {
        self.version = version
        let name = try context.string("mode", default: "constant")
        guard let mode = Mode(rawValue: name), mode != .wrap || version >= 19 else {
            let allowed = version >= 19 ? "constant, reflect, edge or wrap" : "constant, reflect or edge"
            throw KernelError.invalidAttribute("mode", "is '\(name)'; Pad-\(version) supports \(allowed)")
        }
        self.mode = mode
        attributePads = version < 11 ? try context.ints("pads") : nil
        attributeValue = version < 11 ? try context.float("value", default: 0) : 0
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try required(inputs, 0)
        let rank = data.rank
        let pads = try attributePads ?? indexList(inputs, 1, "pads")
        var axes = Array(0..<rank)
        if version >= 18, let axesList = try optionalIndexList(inputs, 3, "axes") {
            axes = try axesList.map { raw in
                guard let axis = Shape.normalizedAxis(raw, rank: rank) else {
                    throw KernelError.invalidInput(index: 3, reason: "axis \(raw) is out of range for shape \(data.shape)")
                }
                return axis
            }
            guard Set(axes).count == axes.count else {
                throw KernelError.invalidInput(index: 3, reason: "axes \(axes) repeat an axis")
            }
        }
        guard pads.count == 2 * axes.count else {
            throw KernelError.invalid("Pad needs \(2 * axes.count) pads for \(axes.count) axes, got \(pads.count)")
        }
        var before = [Int](repeating: 0, count: rank), after = before
        for (i, axis) in axes.enumerated() {
            before[axis] = pads[i]
            after[axis] = pads[axes.count + i]
        }
        var outputShape = data.shape
        for axis in 0..<rank {
            // Cropping more than the whole axis is meaningless (and keeps -pad representable below).
            guard before[axis] >= -data.shape[axis], after[axis] >= -data.shape[axis] else {
                throw KernelError.invalid("Pad of axis \(axis) (extent \(data.shape[axis])) by \(before[axis]), \(after[axis]) crops more than the axis")
            }
            let (grown, o1) = data.shape[axis].addingReportingOverflow(before[axis])
            let (total, o2) = grown.addingReportingOverflow(after[axis])
            guard !o1, !o2, total >= 0 else {
                throw KernelError.invalid("Pad of axis \(axis) (extent \(data.shape[axis])) by \(before[axis]), \(after[axis]) gives a negative or overflowing extent")
            }
            outputShape[axis] = total
        }
        if rank == 0 { return [data] }
        let elementSize = try movableElementSize(data.dtype, operator: "Pad")
        var output = try makeOutputTensor(data.dtype, shape: outputShape)
        if output.count == 0 { return [output] }

        if mode == .constant {
            let value = try constantBytes(inputs, dtype: data.dtype, elementSize: elementSize)
            // Kept elements: the input minus cropped edges, placed after the leading pads.
            var keptShape = data.shape
            var sourceOffset = 0, destinationOffset = 0
            let inputStrides = Shape.strides(data.shape), outputStrides = Shape.strides(outputShape)
            for axis in 0..<rank {
                keptShape[axis] = max(0, data.shape[axis] - max(0, -before[axis]) - max(0, -after[axis]))
                sourceOffset += max(0, -before[axis]) * inputStrides[axis]
                destinationOffset += max(0, before[axis]) * outputStrides[axis]
            }
            let plan = StridedCopy(shape: keptShape, sourceStrides: inputStrides, destinationStrides: outputStrides)
            let threads = output.byteCount >= parallelCopyThreshold ? context.threadCount : 1
            let outputCount = output.count
            data.withUnsafeBytes { source in
                output.withUnsafeMutableBytes { destination in
                    guard let from = source.baseAddress, let to = destination.baseAddress else { return }
                    if value.contains(where: { $0 != 0 }) {
                        value.withUnsafeBytes { fillElements(to, count: outputCount, elementSize: elementSize, value: $0.baseAddress!) }
                    }
                    plan.run(elementSize: elementSize, source: from, sourceOffset: sourceOffset,
                             destination: to, destinationOffset: destinationOffset, threads: threads)
                }
            }
            return [output]
        }

        // reflect / edge / wrap: every output index along an axis maps to one source index.
        let inputStrides = Shape.strides(data.shape)
        var maps: [[Int]] = []
        for axis in 0..<rank {
            let low = max(0, -before[axis])
            let kept = data.shape[axis] - low - max(0, -after[axis])
            guard kept > 0 else {
                throw KernelError.invalid("Pad cannot use \(mode) mode on axis \(axis): no elements remain to copy from")
            }
            let lead = max(0, before[axis])
            maps.append((0..<outputShape[axis]).map { o in
                (low + Self.sourceIndex(o - lead, extent: kept, mode: mode)) * inputStrides[axis]
            })
        }
        data.withUnsafeBytes { source in
            output.withUnsafeMutableBytes { destination in
                guard let from = source.baseAddress, let to = destination.baseAddress else { return }
                switch elementSize {
                case 1: Self.gatherRows(UInt8.self, from, to, maps: maps)
                case 2: Self.gatherRows(UInt16.self, from, to, maps: maps)
                case 4: Self.gatherRows(UInt32.self, from, to, maps: maps)
                default: Self.gatherRows(UInt64.self, from, to, maps: maps)
                }
            }
        }
        return [output]
    }

    /// The source position for position `x` (relative to the first kept element) on an axis with
    /// `extent` kept elements; `x` may lie before or after them.
    static func sourceIndex(_ x: Int, extent: Int, mode: Mode) -> Int {
        switch mode {
        case .edge, .constant:
            return min(max(x, 0), extent - 1)
        case .wrap:
            return ((x % extent) + extent) % extent
        case .reflect:
            guard extent > 1 else { return 0 }
            let period = 2 * (extent - 1)
            let y = ((x % period) + period) % period
            return y < extent ? y : period - y
        }
    }

    /// Writes the output row by row: each element reads the source at the sum of its axes' map entries.
    static func gatherRows<E: FixedWidthInteger>(
        _: E.Type, _ source: UnsafeRawPointer, _ destination: UnsafeMutableRawPointer, maps: [[Int]]
    ) {
        let src = source.assumingMemoryBound(to: E.self)
        var dst = destination.assumingMemoryBound(to: E.self)
        let rank = maps.count
        let outerShape = maps.dropLast().map(\.count)
        let rows = outerShape.reduce(1, *)
        var index = [Int](repeating: 0, count: rank - 1)
        maps[rank - 1].withUnsafeBufferPointer { inner in
            for _ in 0..<rows {
                var base = 0
                for axis in 0..<(rank - 1) { base &+= maps[axis][index[axis]] }
                let row = src + base
                for j in 0..<inner.count { dst[j] = row[inner[j]] }
                dst += inner.count
                var axis = rank - 2
                while axis >= 0 {
                    index[axis] += 1
                    if index[axis] < outerShape[axis] { break }
                    index[axis] = 0
                    axis -= 1
                }
            }
        }
    }

    /// The fill value's bytes in the data's dtype: the `value` attribute converted (opset 2), else the
    /// first element of `constant_value` (which must share the data's dtype), else zero.
    func constantBytes(_ inputs: [Tensor?], dtype: DType, elementSize: Int) throws -> [UInt8] {
        if version < 11 {
            return try floatBytes(attributeValue, as: dtype)
        }
        guard let value = optional(inputs, 2), value.count > 0 else {
            return [UInt8](repeating: 0, count: elementSize)
        }
        guard value.dtype == dtype else {
            throw KernelError.invalidInput(index: 2, reason: "constant_value is \(value.dtype) but data is \(dtype)")
        }
        return value.withUnsafeBytes { Array($0.prefix(elementSize)) }
    }
}

/// The bytes of `value` stored as one element of `dtype` (for float-valued attributes such as Pad-2's
/// `value`). Integer targets require an integral, in-range value.
func floatBytes(_ value: Float, as dtype: DType) throws -> [UInt8] {
    func bytes<T>(_ x: T) -> [UInt8] { withUnsafeBytes(of: x) { Array($0) } }
    func integer<T: FixedWidthInteger>(_: T.Type) throws -> [UInt8] {
        guard let exact = T(exactly: value) else {
            throw KernelError.invalid("value \(value) is not representable as \(dtype)")
        }
        return bytes(exact)
    }
    switch dtype {
    case .float32: return bytes(value)
    case .float64: return bytes(Double(value))
    case .float16: return bytes(Float16(value))
    case .bfloat16: return bytes(BFloat16(value).bitPattern)
    case .int8: return try integer(Int8.self)
    case .uint8: return try integer(UInt8.self)
    case .int16: return try integer(Int16.self)
    case .uint16: return try integer(UInt16.self)
    case .int32: return try integer(Int32.self)
    case .uint32: return try integer(UInt32.self)
    case .int64: return try integer(Int64.self)
    case .uint64: return try integer(UInt64.self)
    case .bool: return [value != 0 ? 1 : 0]
    default: throw KernelError.unsupported("a float fill value for \(dtype) tensors")
    }
}

// MARK: - Transpose

/// Transpose: `output[i_0, …] = input[…]` with output axis k taken from input axis `perm[k]`
/// (default: axes reversed). A permutation that keeps the element order shares the input's storage.
struct TransposeKernel: Kernel {
    let permutation: [Int]?

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try required(inputs, 0)
        let rank = data.rank
        let perm = permutation ?? Array((0..<rank).reversed())
        guard perm.count == rank, Set(perm) == Set(0..<rank) else {
            throw KernelError.invalidAttribute("perm", "\(perm) is not a permutation of the \(rank) axes of \(data.shape)")
        }
        let inputStrides = Shape.strides(data.shape)
        let outputShape = perm.map { data.shape[$0] }
        let plan = StridedCopy(shape: outputShape, sourceStrides: perm.map { inputStrides[$0] },
                               destinationStrides: Shape.strides(outputShape))
        if plan.isIdentity { return [try data.reshaped(outputShape)] }
        return [try data.stridedCopy(plan, into: outputShape, threads: context.threadCount, operator: "Transpose")]
    }
}

// MARK: - Tile

/// Tile: numpy `tile` without broadcasting; `repeats` has one entry ≥ 0 per axis.
struct TileKernel: Kernel {
    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try required(inputs, 0)
        let repeats = try indexList(inputs, 1, "repeats")
        guard repeats.count == data.rank else {
            throw KernelError.invalidInput(index: 1, reason: "repeats has \(repeats.count) entries for rank \(data.rank)")
        }
        guard repeats.allSatisfy({ $0 >= 0 }) else {
            throw KernelError.invalidInput(index: 1, reason: "repeats \(repeats) must be >= 0")
        }
        // Seen as [r_0, d_0, r_1, d_1, …] the output is the input broadcast over the repeat axes.
        var outputShape: [Int] = [], expandedShape: [Int] = [], sourceStrides: [Int] = []
        let inputStrides = Shape.strides(data.shape)
        for axis in 0..<data.rank {
            outputShape.append(try checkedProduct([data.shape[axis], repeats[axis]], what: "Tile output dimension"))
            expandedShape += [repeats[axis], data.shape[axis]]
            sourceStrides += [0, inputStrides[axis]]
        }
        _ = try Shape.elementCount(outputShape)
        let plan = StridedCopy(shape: expandedShape, sourceStrides: sourceStrides,
                               destinationStrides: Shape.strides(expandedShape))
        if plan.isIdentity { return [try data.reshaped(outputShape)] }
        return [try data.stridedCopy(plan, into: outputShape, threads: context.threadCount, operator: "Tile")]
    }
}

// MARK: - Expand

/// Expand: broadcasts the input against `shape` in both directions (numpy `input * ones(shape)`).
struct ExpandKernel: Kernel {
    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try required(inputs, 0)
        let target = try indexList(inputs, 1, "shape")
        guard target.allSatisfy({ $0 >= 0 }) else {
            throw KernelError.invalidInput(index: 1, reason: "shape \(target) has a negative dimension")
        }
        guard let outputShape = Shape.broadcast(data.shape, target) else {
            throw KernelError.invalidInput(index: 1, reason: "input shape \(data.shape) cannot be broadcast to \(target)")
        }
        if outputShape == data.shape { return [data] }
        let plan = StridedCopy(shape: outputShape, sourceStrides: broadcastStrides(data.shape, to: outputShape),
                               destinationStrides: Shape.strides(outputShape))
        if plan.isIdentity, try Shape.elementCount(outputShape) == data.count {
            return [try data.reshaped(outputShape)]
        }
        return [try data.stridedCopy(plan, into: outputShape, threads: context.threadCount, operator: "Expand")]
    }
}
