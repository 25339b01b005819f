import GraphIR
import Tensors

// Gather and GatherElements: index-driven copies of element bytes.

extension KernelRegistry {
    mutating func registerGatherKernels() {
        // Gather-1 already accepts negative axes; Gather-11 only spells out negative indices, which
        // both versions accept here (as ONNX Runtime does).
        register("Gather", since: 1) { context in GatherKernel(axis: try context.int("axis", default: 0)) }
        register("GatherElements", since: 11) { context in
            GatherElementsKernel(axis: try context.int("axis", default: 0))
        }
    }
}

/// Reads an int32/int64 index tensor, mapping negative indices to `index + extent` and rejecting any
/// index outside `[-extent, extent - 1]`.
func normalizedIndices(_ indices: Tensor, inputIndex: Int, extent: Int, axis: Int) throws -> [Int] {
    func normalize<I: BinaryInteger & TensorScalar>(_: I.Type) throws -> [Int] {
        try indices.withUnsafeBufferPointer(as: I.self) { values in
            var result = [Int](repeating: 0, count: values.count)
            for (position, value) in values.enumerated() {
                let index = Int(value)
                let resolved = index < 0 ? index + extent : index
                guard resolved >= 0 && resolved < extent else {
                    throw KernelError.invalidInput(
                        index: inputIndex,
                        reason: "index \(index) at position \(position) is out of range [-\(extent), \(extent - 1)] for axis \(axis)")
                }
                result[position] = resolved
            }
            return result
        }
    }
    switch indices.dtype {
    case .int64: return try normalize(Int64.self)
    case .int32: return try normalize(Int32.self)
    default:
        throw KernelError.invalidInput(index: inputIndex, reason: "indices must be int32 or int64, got \(indices.dtype)")
    }
}

// MARK: - Gather

/// Gather: `output[i_<axis, j…, i_>axis] = data[i_<axis, indices[j…], i_>axis]`; the output has
/// rank `q + r - 1`.
struct GatherKernel: Kernel {
    let axis: Int

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try required(inputs, 0), indices = try required(inputs, 1)
        guard data.rank >= 1 else { throw KernelError.invalidInput(index: 0, reason: "Gather needs data of rank >= 1") }
        guard let axis = Shape.normalizedAxis(self.axis, rank: data.rank) else {
            throw KernelError.invalidAttribute("axis", "\(self.axis) is out of range for data shape \(data.shape)")
        }
        let extent = data.shape[axis]
        let positions = try normalizedIndices(indices, inputIndex: 1, extent: extent, axis: axis)
        let outputShape = Array(data.shape[..<axis]) + indices.shape + Array(data.shape[(axis + 1)...])
        let elementSize = try movableElementSize(data.dtype, operator: "Gather")
        var output = try makeOutputTensor(data.dtype, shape: outputShape)
        if output.count == 0 { return [output] }

        let outer = data.shape[..<axis].reduce(1, *)
        let inner = data.shape[(axis + 1)...].reduce(1, *)
        let threads = output.byteCount >= parallelCopyThreshold ? context.threadCount : 1
        data.withUnsafeBytes { source in
            output.withUnsafeMutableBytes { destination in
                guard let from = source.baseAddress, let to = destination.baseAddress else { return }
                positions.withUnsafeBufferPointer { positions in
                    if inner == 1 {
                        // One element per index: a typed gather loop, no memcpy calls.
                        switch elementSize {
                        case 1: Self.gatherScalars(UInt8.self, from, to, positions, outer: outer, extent: extent, threads: threads)
                        case 2: Self.gatherScalars(UInt16.self, from, to, positions, outer: outer, extent: extent, threads: threads)
                        case 4: Self.gatherScalars(UInt32.self, from, to, positions, outer: outer, extent: extent, threads: threads)
                        default: Self.gatherScalars(UInt64.self, from, to, positions, outer: outer, extent: extent, threads: threads)
                        }
                        return
                    }
                    let sliceBytes = inner &* elementSize
                    let count = positions.count
                    Parallel.forRanges(outer &* count, threads: threads, grain: max(1, (64 << 10) / sliceBytes)) { units in
                        for unit in units {
                            let row = unit / count, position = positions[unit % count]
                            (to + unit &* sliceBytes).copyMemory(
                                from: from + (row &* extent &+ position) &* sliceBytes, byteCount: sliceBytes)
                        }
                    }
                }
            }
        }
        return [output]
    }

    static func gatherScalars<E: FixedWidthInteger>(
        _: E.Type, _ source: UnsafeRawPointer, _ destination: UnsafeMutableRawPointer,
        _ positions: UnsafeBufferPointer<Int>, outer: Int, extent: Int, threads: Int
    ) {
        let src = source.assumingMemoryBound(to: E.self)
        let dst = destination.assumingMemoryBound(to: E.self)
        let count = positions.count
        Parallel.forRanges(outer, threads: threads, grain: max(1, 16384 / max(count, 1))) { rows in
            for row in rows {
                let from = src + row &* extent
                let to = dst + row &* count
                for k in 0..<count { to[k] = from[positions[k]] }
            }
        }
    }
}

// MARK: - GatherElements

/// GatherElements: `output[i…] = data[i…]` with the `axis` coordinate replaced by `indices[i…]`; the
/// output has the indices' shape (numpy `take_along_axis`). Outside `axis`, the indices' extents may
/// not exceed the data's.
struct GatherElementsKernel: Kernel {
    let axis: Int

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try required(inputs, 0), indices = try required(inputs, 1)
        let rank = data.rank
        guard rank >= 1 else { throw KernelError.invalidInput(index: 0, reason: "GatherElements needs data of rank >= 1") }
        guard indices.rank == rank else {
            throw KernelError.invalidInput(index: 1, reason: "indices rank \(indices.rank) differs from data rank \(rank)")
        }
        guard let axis = Shape.normalizedAxis(self.axis, rank: rank) else {
            throw KernelError.invalidAttribute("axis", "\(self.axis) is out of range for data shape \(data.shape)")
        }
        for d in 0..<rank where d != axis && indices.shape[d] > data.shape[d] {
            throw KernelError.invalidInput(
                index: 1, reason: "indices shape \(indices.shape) exceeds data shape \(data.shape) on axis \(d)")
        }
        let positions = try normalizedIndices(indices, inputIndex: 1, extent: data.shape[axis], axis: axis)
        let elementSize = try movableElementSize(data.dtype, operator: "GatherElements")
        var output = try makeOutputTensor(data.dtype, shape: indices.shape)
        if output.count == 0 { return [output] }

        var dataStrides = Shape.strides(data.shape)
        let axisStride = dataStrides[axis]
        dataStrides[axis] = 0   // the axis coordinate comes from the index, not the position
        data.withUnsafeBytes { source in
            output.withUnsafeMutableBytes { destination in
                guard let from = source.baseAddress, let to = destination.baseAddress else { return }
                positions.withUnsafeBufferPointer { positions in
                    switch elementSize {
                    case 1: Self.gather(UInt8.self, from, to, positions, indices.shape, dataStrides, axisStride)
                    case 2: Self.gather(UInt16.self, from, to, positions, indices.shape, dataStrides, axisStride)
                    case 4: Self.gather(UInt32.self, from, to, positions, indices.shape, dataStrides, axisStride)
                    default: Self.gather(UInt64.self, from, to, positions, indices.shape, dataStrides, axisStride)
                    }
                }
            }
        }
        return [output]
    }

    static func gather<E: FixedWidthInteger>(
        _: E.Type, _ source: UnsafeRawPointer, _ destination: UnsafeMutableRawPointer,
        _ positions: UnsafeBufferPointer<Int>, _ shape: [Int], _ dataStrides: [Int], _ axisStride: Int
    ) {
        let src = source.assumingMemoryBound(to: E.self)
        let dst = destination.assumingMemoryBound(to: E.self)
        let last = shape.count - 1
        let innerCount = shape[last], innerStride = dataStrides[last]
        let outer = OuterAxes(shape: shape, sourceStrides: dataStrides,
                              destinationStrides: Shape.strides(shape), excluding: [last])
        var cursor = outer.cursor(at: 0)
        for _ in 0..<outer.count {
            let row = src + cursor.source
            let to = dst + cursor.destination
            let indexRow = positions.baseAddress! + cursor.destination
            for j in 0..<innerCount { to[j] = row[j &* innerStride &+ indexRow[j] &* axisStride] }
            outer.advance(&cursor)
        }
    }
}
