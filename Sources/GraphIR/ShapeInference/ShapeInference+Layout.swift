import Tensors

/// Shape-producing and layout operators: `Shape`, `Reshape`, `Concat`, `Slice`, `Gather`, … These carry
/// tracked elements along, which is what resolves the shape arithmetic of exported transformers.
extension NodeInference {
    /// Slice ends at or beyond this count as "to the end" for any symbolic dim: no real axis is longer.
    static let unboundedEnd = Int(Int32.max)

    // MARK: Shape, Size, constants

    func shapeOf(opset: Int) -> InferredType {
        guard let shape = input(0).shape else {
            return InferredType(dtype: .int64, shape: [.unknown])
        }
        var selected = shape[...]
        if opset >= 15 {
            let start = node[attribute: "start"]?.intValue
            let end = node[attribute: "end"]?.intValue
            selected = shape[ShapeInference.shapeOperatorRange(rank: shape.count, start: start, end: end)]
        }
        return .vector(Array(selected))
    }

    func size() -> InferredType {
        var result = InferredType(dtype: .int64, shape: [])
        if let shape = input(0).shape {
            let count = Dim.product(shape)
            if count != .unknown { result.value = [count] }
        }
        return result
    }

    func constantOutput() throws -> InferredType {
        if let tensor = node.constantNodeValue { return InferredType(constant: tensor) }
        if let sparse = node[attribute: "sparse_value"], case .sparseTensor(let tensor) = sparse {
            return InferredType(dtype: tensor.values.dtype, shape: tensor.dims.map { .value($0) })
        }
        if node[attribute: "value_string"] != nil { return InferredType(shape: []) }
        if let strings = node[attribute: "value_strings"]?.stringsValue { return InferredType(shape: [.value(strings.count)]) }
        throw invalidAttribute("value", "is required (one of the value attributes must be set)")
    }

    func constantOfShape() throws -> InferredType {
        var fill: Tensor? = nil
        if let attribute = node[attribute: "value"] {
            guard let tensor = attribute.tensorValue, tensor.count == 1 else {
                throw invalidAttribute("value", "must be a one-element tensor")
            }
            fill = tensor
        }
        let dtype = fill?.dtype ?? .float32
        guard let dims = elements(0) else {
            // The rank is the length of the shape input, when that is known.
            let rank = input(0).shape?.first?.intValue
            return InferredType(dtype: dtype, shape: rank.map { Array(repeating: Dim.unknown, count: $0) })
        }
        for dim in dims { if let v = dim.intValue, v < 0 { throw mismatch("negative dimension in shape \(dims)") } }
        var result = InferredType(dtype: dtype, shape: dims)
        if dims.count <= 1, let count = Dim.staticElementCount(dims), count <= InferredType.maxTrackedElements,
           let element = fill?.integerElements?.first {
            result.value = Array(repeating: .value(element), count: count)
        }
        return result
    }

    /// `Range(start, limit, delta)`: `max(ceil((limit − start) / delta), 0)` elements.
    func range() throws -> InferredType {
        let dtype = input(0).dtype
        var result = InferredType(dtype: dtype, shape: [.unknown])
        if let start = integers(0)?.first, let limit = integers(1)?.first, let delta = integers(2)?.first {
            guard delta != 0 else { throw mismatch("delta is 0") }
            guard let count = NodeInference.rangeCount(start: start, limit: limit, delta: delta) else { return result }
            result.shape = [.value(count)]
            if count <= InferredType.maxTrackedElements {
                result.value = (0..<count).map { Dim.add(.value(start), Dim.multiply(.value($0), .value(delta))) }
            }
        } else if let start = doubles(0)?.first, let limit = doubles(1)?.first, let delta = doubles(2)?.first {
            guard delta != 0 else { throw mismatch("delta is 0") }
            let count = ((limit - start) / delta).rounded(.up)
            if count.isFinite, count < Double(Int32.max) { result.shape = [.value(max(Int(count), 0))] }
        } else if integers(0)?.first == 0, integers(2)?.first == 1, let limit = elements(1)?.first, case .symbol = limit {
            // range(0, n, 1) of a symbolic size n has n elements.
            result.shape = [limit]
        }
        return result
    }

    /// `max(ceil((limit − start) / delta), 0)` in integers; nil when it overflows.
    static func rangeCount(start: Int, limit: Int, delta: Int) -> Int? {
        let (span, overflow) = limit.subtractingReportingOverflow(start)
        guard !overflow, delta != 0 else { return nil }
        if delta > 0 { return span <= 0 ? 0 : (span - 1) / delta + 1 }
        guard span != Int.min, delta != Int.min else { return nil }
        return span >= 0 ? 0 : (-span - 1) / (-delta) + 1
    }

    // MARK: Reshaping

    func reshape(opset: Int) throws -> InferredType {
        let data = input(0)
        let allowZero = opset >= 14 ? try intAttribute("allowzero", default: 0) != 0 : false
        let target: [Dim]
        if opset < 5 {
            guard let attribute = try intsAttribute("shape") else { return InferredType(dtype: data.dtype) }
            target = attribute.map { .value($0) }
        } else if let elements = elements(1) {
            target = elements
        } else {
            let rank = input(1).shape?.first?.intValue
            return InferredType(dtype: data.dtype, shape: rank.map { Array(repeating: Dim.unknown, count: $0) })
        }

        var output: [Dim] = []
        var inferredAxis: Int? = nil
        for (axis, dim) in target.enumerated() {
            switch dim {
            case .value(-1):
                guard inferredAxis == nil else { throw mismatch("shape \(target) has more than one -1") }
                inferredAxis = axis
                output.append(.unknown)
            case .value(0) where !allowZero:
                if let shape = data.shape {
                    guard axis < shape.count else {
                        throw mismatch("shape \(target) copies dimension \(axis) of a rank-\(shape.count) input")
                    }
                    output.append(shape[axis])
                } else {
                    output.append(.unknown)
                }
            case .value(let v) where v < 0:
                throw mismatch("shape \(target) has invalid dimension \(v)")
            default:
                output.append(dim)
            }
        }
        if allowZero, inferredAxis != nil, target.contains(.value(0)) {
            throw mismatch("shape \(target) has both 0 and -1 with allowzero set")
        }

        if let shape = data.shape, let total = SymbolicProduct(shape) {
            if let inferredAxis {
                var others = output
                others.remove(at: inferredAxis)
                if let known = SymbolicProduct(others) {
                    if let quotient = total.dividing(by: known) {
                        output[inferredAxis] = quotient.dim
                    } else if known.symbols.isEmpty, total.symbols.isEmpty, known.coefficient != 0 {
                        throw mismatch("cannot reshape \(shape) to \(target): \(total.coefficient) elements do not divide by \(known.coefficient)")
                    }
                }
            } else if let produced = SymbolicProduct(output), produced.symbols.isEmpty, total.symbols.isEmpty,
                      produced.coefficient != total.coefficient {
                throw mismatch("cannot reshape \(shape) (\(total.coefficient) elements) to \(output) (\(produced.coefficient) elements)")
            }
        }
        var result = InferredType(dtype: data.dtype, shape: output)
        result.value = data.value
        return result
    }

    func transpose() throws -> InferredType {
        let data = input(0)
        guard let shape = data.shape else { return InferredType(dtype: data.dtype) }
        let permutation = try intsAttribute("perm") ?? Array((0..<shape.count).reversed())
        guard permutation.count == shape.count, Set(permutation) == Set(0..<shape.count) else {
            throw mismatch("perm \(permutation) is not a permutation of the \(shape.count) axes")
        }
        var result = InferredType(dtype: data.dtype, shape: permutation.map { shape[$0] })
        if shape.count <= 1 { result.value = data.value }
        return result
    }

    func flatten() throws -> InferredType {
        let data = input(0)
        guard let shape = data.shape else {
            return InferredType(dtype: data.dtype, shape: [.unknown, .unknown])
        }
        let axis = try intAttribute("axis", default: 1)
        let position = axis < 0 ? axis + shape.count : axis
        guard (0...shape.count).contains(position) else {
            throw mismatch("axis \(axis) is out of range for rank \(shape.count)")
        }
        var result = InferredType(
            dtype: data.dtype, shape: [Dim.product(shape[..<position]), Dim.product(shape[position...])])
        result.value = data.value
        return result
    }

    /// Axes from the attribute (before `inputFromOpset`) or from input 1; `.some(nil)` when given but unknown.
    private func axesArgument(opset: Int, inputFromOpset: Int) throws -> [Int]?? {
        if opset < inputFromOpset {
            return try intsAttribute("axes").map { .some($0) }
        }
        guard has(1) else { return nil }
        return .some(integers(1))
    }

    func squeeze(opset: Int) throws -> InferredType {
        let data = input(0)
        guard let shape = data.shape else { return InferredType(dtype: data.dtype) }
        var output: [Dim] = []
        switch try axesArgument(opset: opset, inputFromOpset: 13) {
        case .some(.some(let axes)):
            let dropped = Set(try normalizedAxes(axes, rank: shape.count))
            for (axis, dim) in shape.enumerated() {
                if dropped.contains(axis) {
                    if let v = dim.intValue, v != 1 { throw mismatch("cannot squeeze axis \(axis) of size \(v)") }
                } else {
                    output.append(dim)
                }
            }
        case .some(.none):
            return InferredType(dtype: data.dtype)
        case .none:
            // Without axes every size-1 axis goes; a symbolic axis might be 1, so the shape is unknown.
            guard shape.allSatisfy(\.isValue) else { return InferredType(dtype: data.dtype) }
            output = shape.filter { $0 != .value(1) }
        }
        var result = InferredType(dtype: data.dtype, shape: output)
        result.value = data.value
        return result
    }

    func unsqueeze(opset: Int) throws -> InferredType {
        let data = input(0)
        guard case .some(.some(let axes)) = try axesArgument(opset: opset, inputFromOpset: 13) else {
            if opset < 13 { throw invalidAttribute("axes", "is required") }
            let count = input(1).shape?.first?.intValue
            if let rank = data.rank, let count { return InferredType(dtype: data.dtype, shape: Array(repeating: .unknown, count: rank + count)) }
            return InferredType(dtype: data.dtype)
        }
        guard let shape = data.shape else { return InferredType(dtype: data.dtype) }
        let rank = shape.count + axes.count
        let inserted = Set(try normalizedAxes(axes, rank: rank))
        var remaining = shape.makeIterator()
        let output = (0..<rank).map { axis in inserted.contains(axis) ? Dim.value(1) : (remaining.next() ?? .unknown) }
        var result = InferredType(dtype: data.dtype, shape: output)
        result.value = data.value
        return result
    }

    // MARK: Joining and cutting

    func concat() throws -> InferredType {
        guard let axis = try intAttribute("axis") else { throw invalidAttribute("axis", "is required") }
        let parts = Array(0..<inputCount).filter(has)
        let dtype = try commonType(parts)
        guard let rank = parts.lazy.compactMap({ input($0).rank }).first else { return InferredType(dtype: dtype) }
        let position = try normalizedAxis(axis, rank: rank)
        var output = Array(repeating: Dim.unknown, count: rank)
        var axisSizes: [Dim] = []
        for part in parts {
            guard let shape = input(part).shape else {
                axisSizes.append(.unknown)
                continue
            }
            guard shape.count == rank else { throw mismatch("inputs have ranks \(rank) and \(shape.count)") }
            for (dimension, dim) in shape.enumerated() where dimension != position {
                guard let merged = Dim.unify(output[dimension], dim) else {
                    throw mismatch("inputs differ in dimension \(dimension) (\(output[dimension]) vs \(dim))")
                }
                output[dimension] = merged
            }
            axisSizes.append(shape[position])
        }
        output[position] = Dim.sum(axisSizes)
        var result = InferredType(dtype: dtype, shape: output)
        if rank == 1 {
            var joined: [Dim] = []
            var complete = true
            for part in parts {
                guard let elements = elements(part) else { complete = false; break }
                joined += elements
            }
            if complete { result.value = joined }
        }
        return result
    }

    func split(opset: Int) throws -> [InferredType] {
        let data = input(0)
        let outputCount = node.outputs.count
        guard let shape = data.shape else { return Array(repeating: InferredType(dtype: data.dtype), count: outputCount) }
        let axis = try normalizedAxis(try intAttribute("axis", default: 0), rank: shape.count)
        var sizes: [Dim]
        let explicit: [Int]?? = opset < 13
            ? try intsAttribute("split").map { .some($0) }
            : (has(1) ? .some(integers(1)) : nil)
        switch explicit {
        case .some(.some(let list)):
            guard list.count == outputCount else {
                throw mismatch("split lists \(list.count) sizes for \(outputCount) outputs")
            }
            if let total = shape[axis].intValue, list.reduce(0, &+) != total {
                throw mismatch("split sizes \(list) do not add up to dimension \(total)")
            }
            sizes = list.map { .value($0) }
        case .some(.none):
            sizes = Array(repeating: .unknown, count: outputCount)
        case .none:
            let parts = opset >= 18 ? try intAttribute("num_outputs") ?? outputCount : outputCount
            guard parts == outputCount, parts > 0 else {
                throw mismatch("num_outputs \(parts) does not match \(outputCount) outputs")
            }
            if let total = shape[axis].intValue {
                if total % parts == 0 {
                    sizes = Array(repeating: .value(total / parts), count: parts)
                } else if opset >= 18 {
                    let chunk = total / parts + 1
                    let (used, overflow) = chunk.multipliedReportingOverflow(by: parts - 1)
                    let last = overflow ? -1 : total - used
                    guard last > 0 else { throw mismatch("dimension \(total) cannot be split into \(parts) parts") }
                    sizes = Array(repeating: .value(chunk), count: parts - 1) + [.value(last)]
                } else {
                    throw mismatch("dimension \(total) does not split evenly into \(parts) parts")
                }
            } else {
                sizes = Array(repeating: .unknown, count: parts)
            }
        }
        var offset = 0
        return sizes.map { size in
            var pieceShape = shape
            pieceShape[axis] = size
            var piece = InferredType(dtype: data.dtype, shape: pieceShape)
            if shape.count == 1, let elements = data.value, let length = size.intValue, offset >= 0,
               offset + length <= elements.count {
                piece.value = Array(elements[offset..<(offset + length)])
            }
            offset = size.intValue.map { offset + $0 } ?? -1
            return piece
        }
    }

    func slice(opset: Int) throws -> InferredType {
        let data = input(0)
        guard let shape = data.shape else { return InferredType(dtype: data.dtype) }
        let starts, ends: [Int]?
        var axes: [Int]?
        var steps: [Int]?
        if opset < 10 {
            starts = try intsAttribute("starts")
            ends = try intsAttribute("ends")
            axes = try intsAttribute("axes")
        } else {
            starts = integers(1)
            ends = integers(2)
            axes = has(3) ? integers(3) : nil
            steps = has(4) ? integers(4) : nil
            if has(3), axes == nil {
                // Which axes are sliced is unknown: only the rank survives.
                return InferredType(dtype: data.dtype, shape: Array(repeating: .unknown, count: shape.count))
            }
        }
        let count = starts?.count ?? ends?.count ?? axes?.count ?? input(1).shape?.first?.intValue
        guard let count else {
            return InferredType(dtype: data.dtype, shape: Array(repeating: .unknown, count: shape.count))
        }
        let normalizedAxes = try normalizedAxes(axes ?? Array(0..<count), rank: shape.count)
        for (name, list) in [("starts", starts), ("ends", ends), ("axes", axes), ("steps", steps)] {
            if let list, list.count != count { throw mismatch("\(name) has \(list.count) entries, expected \(count)") }
        }
        var output = shape
        var ranges: [(axis: Int, start: Int, step: Int)] = []
        for (i, axis) in normalizedAxes.enumerated() {
            let step = steps?[i] ?? 1
            guard step != 0 else { throw mismatch("step 0 on axis \(axis)") }
            guard let start = starts?[i], let end = ends?[i] else {
                output[axis] = .unknown
                continue
            }
            if let size = shape[axis].intValue {
                let (first, length) = NodeInference.sliceExtent(size: size, start: start, end: end, step: step)
                output[axis] = .value(length)
                ranges.append((axis, first, step))
            } else if step == 1, start == 0, end >= NodeInference.unboundedEnd {
                output[axis] = shape[axis]
            } else {
                output[axis] = .unknown
            }
        }
        // `[0:s]` with a symbolic end s: all of an axis of length s, or min(s, n) of one of length n.
        if opset >= 10, let endDims = elements(2), endDims.count == count {
            for (i, axis) in normalizedAxes.enumerated() where ends?[i] == nil {
                guard starts?[i] == 0, (steps?[i] ?? 1) == 1, case .symbol(let symbol) = endDims[i] else { continue }
                if shape[axis] == endDims[i] {
                    output[axis] = shape[axis]
                } else if let size = shape[axis].intValue, size >= 1 {
                    output[axis] = .minimum(of: symbol, size)
                }
            }
        }
        var result = InferredType(dtype: data.dtype, shape: output)
        if shape.count == 1, let elements = data.value, let length = output[0].intValue {
            if let range = ranges.first {
                result.value = (0..<length).map { elements[range.start + $0 * range.step] }
            } else if normalizedAxes.isEmpty {
                result.value = elements
            }
        }
        return result
    }

    /// The first index and element count of `start:end:step` on an axis of `size`, clamped as ONNX does.
    static func sliceExtent(size: Int, start: Int, end: Int, step: Int) -> (first: Int, count: Int) {
        func shifted(_ position: Int) -> Int { position < 0 ? position &+ size : position }
        if step > 0 {
            let first = min(max(shifted(start), 0), size)
            let last = min(max(shifted(end), 0), size)
            let span = last - first
            return (first, span <= 0 ? 0 : (span - 1) / step + 1)
        }
        let first = min(max(shifted(start), 0), size - 1)
        let last = min(max(shifted(end), -1), size - 1)
        let span = first - last
        // `magnitude` because -Int.min does not exist.
        return (first, span <= 0 ? 0 : Int(UInt(span - 1) / step.magnitude) + 1)
    }

    func pad(opset: Int) throws -> InferredType {
        let data = input(0)
        guard let shape = data.shape else { return InferredType(dtype: data.dtype) }
        var pads: [Int]?
        var axes = Array(0..<shape.count)
        if opset < 11 {
            pads = try intsAttribute("pads") ?? intsAttribute("paddings")
        } else {
            pads = integers(1)
            if opset >= 18, has(3) {
                guard let given = integers(3) else {
                    return InferredType(dtype: data.dtype, shape: Array(repeating: .unknown, count: shape.count))
                }
                axes = try normalizedAxes(given, rank: shape.count)
            }
        }
        guard let pads else {
            return InferredType(dtype: data.dtype, shape: Array(repeating: .unknown, count: shape.count))
        }
        guard pads.count == 2 * axes.count else {
            throw mismatch("pads has \(pads.count) entries for \(axes.count) axes")
        }
        var output = shape
        for (i, axis) in axes.enumerated() {
            let added = Dim.add(.value(pads[i]), .value(pads[i + axes.count]))
            let padded = Dim.add(shape[axis], added)
            if let size = padded.intValue, size < 0 { throw mismatch("padding makes axis \(axis) negative") }
            output[axis] = padded
        }
        return InferredType(dtype: data.dtype, shape: output)
    }

    // MARK: Indexing

    func gather() throws -> InferredType {
        let data = input(0)
        let indices = input(1)
        guard let shape = data.shape else { return InferredType(dtype: data.dtype) }
        guard !shape.isEmpty else { throw mismatch("cannot gather from a scalar") }
        let axis = try normalizedAxis(try intAttribute("axis", default: 0), rank: shape.count)
        guard let indexShape = indices.shape else { return InferredType(dtype: data.dtype) }
        var result = InferredType(
            dtype: data.dtype, shape: Array(shape[..<axis]) + indexShape + Array(shape[(axis + 1)...]))
        if let positions = indices.integerValue, let size = shape[axis].intValue {
            for position in positions where position < -size || position >= size {
                throw mismatch("index \(position) is out of range for dimension \(size)")
            }
            if shape.count == 1, let elements = data.value {
                result.value = positions.map { elements[$0 < 0 ? $0 + size : $0] }
            }
        }
        return result
    }

    func gatherND() throws -> InferredType {
        let data = input(0)
        let batchDims = try intAttribute("batch_dims", default: 0)
        guard let shape = data.shape, let indexShape = input(1).shape, let last = indexShape.last?.intValue else {
            return InferredType(dtype: data.dtype)
        }
        guard batchDims >= 0, batchDims + last <= shape.count else {
            throw mismatch("index depth \(last) with batch_dims \(batchDims) exceeds rank \(shape.count)")
        }
        return InferredType(dtype: data.dtype, shape: Array(indexShape.dropLast()) + Array(shape[(batchDims + last)...]))
    }

    func expand() throws -> InferredType {
        let data = input(0)
        guard let target = elements(1) else {
            guard let length = input(1).shape?.first?.intValue, let shape = data.shape else {
                return InferredType(dtype: data.dtype)
            }
            // Each output dim is the target's unless the data's is a number other than 1.
            let rank = max(length, shape.count)
            let output = (0..<rank).map { axis -> Dim in
                let source = axis - (rank - shape.count)
                guard source >= 0, let size = shape[source].intValue, size != 1 else { return .unknown }
                return .value(size)
            }
            return InferredType(dtype: data.dtype, shape: output)
        }
        guard let shape = data.shape else { return InferredType(dtype: data.dtype) }
        var result = InferredType(dtype: data.dtype, shape: try broadcast(shape, target))
        if let expanded = broadcastElements([0], to: result.shape) { result.value = expanded[0] }
        return result
    }

    func tile() throws -> InferredType {
        let data = input(0)
        guard let shape = data.shape else { return InferredType(dtype: data.dtype) }
        guard let repeats = elements(1) else {
            return InferredType(dtype: data.dtype, shape: Array(repeating: .unknown, count: shape.count))
        }
        guard repeats.count == shape.count else {
            throw mismatch("repeats has \(repeats.count) entries for rank \(shape.count)")
        }
        return InferredType(dtype: data.dtype, shape: zip(shape, repeats).map { Dim.multiply($0, $1) })
    }

    func depthSpace() throws -> InferredType {
        let data = input(0)
        guard let blockSize = try intAttribute("blocksize"), blockSize > 0 else {
            throw invalidAttribute("blocksize", "is required and must be positive")
        }
        guard let shape = data.shape else { return InferredType(dtype: data.dtype, shape: Array(repeating: .unknown, count: 4)) }
        guard shape.count == 4 else { throw mismatch("expects a rank-4 input, got rank \(shape.count)") }
        let (squared, overflow) = blockSize.multipliedReportingOverflow(by: blockSize)
        guard !overflow else { throw invalidAttribute("blocksize", "is too large") }
        let square = Dim.value(squared)
        let block = Dim.value(blockSize)
        if node.opType == "DepthToSpace" {
            if let channels = shape[1].intValue, channels % squared != 0 {
                throw mismatch("\(channels) channels do not divide by blocksize² = \(squared)")
            }
            return InferredType(dtype: data.dtype, shape: [
                shape[0], Dim.divide(shape[1], square), Dim.multiply(shape[2], block), Dim.multiply(shape[3], block),
            ])
        }
        for axis in 2...3 {
            if let size = shape[axis].intValue, size % blockSize != 0 {
                throw mismatch("dimension \(size) does not divide by blocksize \(blockSize)")
            }
        }
        return InferredType(dtype: data.dtype, shape: [
            shape[0], Dim.multiply(shape[1], square), Dim.divide(shape[2], block), Dim.divide(shape[3], block),
        ])
    }
}
