import GraphIR
import Tensors

// Reshape, Flatten, Squeeze, Unsqueeze (which relabel a shape and share storage), Shape, Size,
// ConstantOfShape and Range.

extension KernelRegistry {
    mutating func registerShapeKernels() {
        // Reshape-5 takes the shape as an input; Reshape-14 adds `allowzero`.
        register("Reshape", since: 5) { _ in ReshapeKernel(allowZero: false) }
        register("Reshape", since: 14) { context in ReshapeKernel(allowZero: try context.int("allowzero", default: 0) != 0) }

        // Flatten-11 accepts negative axes.
        register("Flatten", since: 1) { try FlattenKernel(context: $0, acceptsNegativeAxis: false) }
        register("Flatten", since: 11) { try FlattenKernel(context: $0, acceptsNegativeAxis: true) }

        // Squeeze/Unsqueeze-1: non-negative `axes` attribute; -11: negative axes; -13: `axes` input.
        register("Squeeze", since: 1) { try SqueezeKernel(context: $0, version: 1) }
        register("Squeeze", since: 11) { try SqueezeKernel(context: $0, version: 11) }
        register("Squeeze", since: 13) { try SqueezeKernel(context: $0, version: 13) }
        register("Unsqueeze", since: 1) { try UnsqueezeKernel(context: $0, version: 1) }
        register("Unsqueeze", since: 11) { try UnsqueezeKernel(context: $0, version: 11) }
        register("Unsqueeze", since: 13) { try UnsqueezeKernel(context: $0, version: 13) }

        // Shape-15 adds `start`/`end`.
        register("Shape", since: 1) { _ in ShapeKernel(start: 0, end: nil) }
        register("Shape", since: 15) { context in
            ShapeKernel(start: try context.int("start", default: 0),
                        end: context.has("end") ? try context.int("end") : nil)
        }
        register("Size", since: 1) { _ in SizeKernel() }
        register("ConstantOfShape", since: 9) { try ConstantOfShapeKernel(context: $0) }
        register("Range", since: 11) { _ in RangeKernel() }
    }
}

// MARK: - Reshape

/// Reshape: the same elements under a new shape; storage is shared, never copied.
///
/// In the requested shape, -1 (at most once) is inferred from the element count, and 0 copies the
/// input's dimension at that position unless `allowzero` is 1, when it means a zero dimension.
struct ReshapeKernel: Kernel {
    let allowZero: Bool

    static func outputShape(input: [Int], requested: [Int], allowZero: Bool) throws -> [Int] {
        if allowZero, requested.contains(0), requested.contains(-1) {
            throw KernelError.invalid("Reshape shape \(requested) has both 0 and -1 while allowzero is 1")
        }
        var shape = requested
        var inferredAxis: Int?
        for (axis, dimension) in requested.enumerated() {
            if dimension == -1 {
                guard inferredAxis == nil else {
                    throw KernelError.invalid("Reshape shape \(requested) has more than one -1")
                }
                inferredAxis = axis
            } else if dimension == 0 && !allowZero {
                guard axis < input.count else {
                    throw KernelError.invalid("Reshape shape \(requested) copies dimension \(axis) (0), but the input \(input) has rank \(input.count)")
                }
                shape[axis] = input[axis]
            } else if dimension < 0 {
                throw KernelError.invalid("Reshape shape \(requested) has invalid dimension \(dimension)")
            }
        }
        let total = try Shape.elementCount(input)
        let known = try checkedProduct(shape.enumerated().filter { $0.offset != inferredAxis }.map(\.element),
                                       what: "Reshape shape \(requested)")
        if let inferredAxis {
            guard known != 0, total % known == 0 else {
                throw KernelError.invalid("Reshape cannot infer the -1 in \(requested) for \(total) elements of \(input)")
            }
            shape[inferredAxis] = total / known
        } else if known != total {
            throw KernelError.invalid("Reshape shape \(requested) holds \(known) elements, the input \(input) has \(total)")
        }
        return shape
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try required(inputs, 0)
        let requested = try indexList(inputs, 1, "shape")
        return [try data.reshaped(Self.outputShape(input: data.shape, requested: requested, allowZero: allowZero))]
    }
}

// MARK: - Flatten

/// Flatten: `(d_0…d_{axis-1}, d_axis…d_n)` → `[∏ d_<axis, ∏ d_≥axis]`, sharing storage.
struct FlattenKernel: Kernel {
    let axis: Int
    let acceptsNegativeAxis: Bool

    init(context: KernelBuildContext, acceptsNegativeAxis: Bool) throws {
        axis = try context.int("axis", default: 1)
        self.acceptsNegativeAxis = acceptsNegativeAxis
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try required(inputs, 0)
        let rank = data.rank
        let axis = self.axis < 0 && acceptsNegativeAxis ? self.axis + rank : self.axis
        guard (0...rank).contains(axis) else {
            let range = acceptsNegativeAxis ? "[-\(rank), \(rank)]" : "[0, \(rank)]"
            throw KernelError.invalidAttribute("axis", "\(self.axis) is outside \(range) for input shape \(data.shape)")
        }
        let outer = data.shape[..<axis].reduce(1, *)
        let inner = data.shape[axis...].reduce(1, *)
        return [try data.reshaped([outer, inner])]
    }
}

// MARK: - Squeeze / Unsqueeze

/// Normalises a list of axes against `rank`, rejecting out-of-range, repeated, and (before opset 11)
/// negative entries.
func normalizedAxes(_ axes: [Int], rank: Int, acceptsNegative: Bool, what: String) throws -> [Int] {
    var seen = Set<Int>()
    return try axes.map { raw in
        guard acceptsNegative || raw >= 0 else {
            throw KernelError.invalid("\(what) axis \(raw) is negative; negative axes need opset 11 or later")
        }
        guard let axis = Shape.normalizedAxis(raw, rank: rank) else {
            throw KernelError.invalid("\(what) axis \(raw) is outside [-\(rank), \(rank - 1)]")
        }
        guard seen.insert(axis).inserted else { throw KernelError.invalid("\(what) axes \(axes) repeat axis \(axis)") }
        return axis
    }
}

/// Squeeze: removes the listed axes, each of extent 1 (or every extent-1 axis when none are listed).
struct SqueezeKernel: Kernel {
    let version: Int
    let attributeAxes: [Int]?

    init(context: KernelBuildContext, version: Int) throws {
        self.version = version
        attributeAxes = version < 13 && context.has("axes") ? try context.ints("axes") : nil
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try required(inputs, 0)
        let requested = version >= 13 ? try optionalIndexList(inputs, 1, "axes") : attributeAxes
        guard let requested else { return [try data.reshaped(data.shape.filter { $0 != 1 })] }
        let axes = Set(try normalizedAxes(requested, rank: data.rank, acceptsNegative: version >= 11, what: "Squeeze"))
        for axis in axes where data.shape[axis] != 1 {
            throw KernelError.invalid("Squeeze axis \(axis) has extent \(data.shape[axis]), not 1, in shape \(data.shape)")
        }
        return [try data.reshaped(data.shape.indices.filter { !axes.contains($0) }.map { data.shape[$0] })]
    }
}

/// Unsqueeze: inserts extent-1 axes at the listed positions of the output.
struct UnsqueezeKernel: Kernel {
    let version: Int
    let attributeAxes: [Int]?

    init(context: KernelBuildContext, version: Int) throws {
        self.version = version
        attributeAxes = version < 13 ? try context.ints("axes") : nil
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try required(inputs, 0)
        let requested = try attributeAxes ?? indexList(inputs, 1, "axes")
        let outputRank = data.rank + requested.count
        let axes = Set(try normalizedAxes(requested, rank: outputRank, acceptsNegative: version >= 11, what: "Unsqueeze"))
        var remaining = data.shape.makeIterator()
        let shape = (0..<outputRank).map { axes.contains($0) ? 1 : remaining.next()! }
        return [try data.reshaped(shape)]
    }
}

// MARK: - Shape / Size

/// Shape: the input's dimensions as a 1-D int64 tensor, optionally only axes `start..<end`
/// (negative values count from the back; both are clamped to [0, rank]).
struct ShapeKernel: Kernel {
    let start: Int
    let end: Int?

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let data = try required(inputs, 0)
        let rank = data.rank
        func clamp(_ axis: Int) -> Int { min(max(axis < 0 ? axis + rank : axis, 0), rank) }
        let from = clamp(start), to = clamp(end ?? rank)
        let dims = from < to ? data.shape[from..<to].map { Int64($0) } : []
        return [try Tensor(shape: [dims.count], scalars: dims)]
    }
}

/// Size: the input's element count as an int64 scalar.
struct SizeKernel: Kernel {
    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        [Tensor(scalar: Int64(try required(inputs, 0).count))]
    }
}

// MARK: - ConstantOfShape

/// ConstantOfShape: a tensor of the shape given by input 0, every element equal to the one-element
/// `value` attribute (default float32 0).
struct ConstantOfShapeKernel: Kernel {
    let value: Tensor

    init(context: KernelBuildContext) throws {
        switch context.node.attributes["value"] {
        case nil:
            value = Tensor(scalar: Float(0))
        case .tensor(let tensor)?:
            guard tensor.count == 1 else {
                throw KernelError.invalidAttribute("value", "must hold exactly one element, has \(tensor.count)")
            }
            value = tensor
        default:
            throw KernelError.invalidAttribute("value", "must be a tensor")
        }
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let shape = try indexList(inputs, 0, "input")
        guard shape.allSatisfy({ $0 >= 0 }) else {
            throw KernelError.invalidInput(index: 0, reason: "shape \(shape) has a negative dimension")
        }
        var output = try makeOutputTensor(value.dtype, shape: shape)
        let pattern = value.withUnsafeBytes { Array($0) }
        guard pattern.contains(where: { $0 != 0 }), output.count > 0 else { return [output] }
        let count = output.count
        output.withUnsafeMutableBytes { bytes in
            guard let base = bytes.baseAddress else { return }
            if value.dtype.bitWidth == 4 {
                // Two packed elements per byte; an odd count leaves the last high nibble as zero padding.
                let nibble = pattern[0] & 0x0F
                base.initializeMemory(as: UInt8.self, repeating: nibble | nibble << 4, count: bytes.count)
                if count % 2 == 1 { bytes[bytes.count - 1] = nibble }
            } else {
                pattern.withUnsafeBytes { fillElements(base, count: count, elementSize: pattern.count, value: $0.baseAddress!) }
            }
        }
        return [output]
    }
}

// MARK: - Range

/// Range: `output[i] = start + i·delta` for `i < max(ceil((limit - start) / delta), 0)`.
///
/// float32, float64, int16, int32 and int64 scalars. A zero delta, non-finite float inputs, or a count
/// too large to allocate are errors.
struct RangeKernel: Kernel {
    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let start = try required(inputs, 0), limit = try required(inputs, 1), delta = try required(inputs, 2)
        for (index, tensor) in [start, limit, delta].enumerated() {
            guard tensor.dtype == start.dtype else {
                throw KernelError.invalidInput(index: index, reason: "dtype \(tensor.dtype) differs from start's \(start.dtype)")
            }
            guard tensor.count == 1, tensor.rank <= 1 else {
                throw KernelError.invalidInput(index: index, reason: "must be a scalar, got shape \(tensor.shape)")
            }
        }
        switch start.dtype {
        case .float32: return [try Self.floatRange(start, limit, delta, as: Float.self)]
        case .float64: return [try Self.floatRange(start, limit, delta, as: Double.self)]
        case .int16: return [try Self.integerRange(start, limit, delta, as: Int16.self)]
        case .int32: return [try Self.integerRange(start, limit, delta, as: Int32.self)]
        case .int64: return [try Self.integerRange(start, limit, delta, as: Int64.self)]
        default: throw KernelError.unsupported("Range of \(start.dtype) (float, double, int16, int32, int64 only)")
        }
    }

    static func floatRange<T: BinaryFloatingPoint & TensorScalar>(
        _ startTensor: Tensor, _ limitTensor: Tensor, _ deltaTensor: Tensor, as: T.Type
    ) throws -> Tensor {
        let start = startTensor.scalars(as: T.self)[0], limit = limitTensor.scalars(as: T.self)[0]
        let delta = deltaTensor.scalars(as: T.self)[0]
        guard start.isFinite, limit.isFinite, delta.isFinite else {
            throw KernelError.invalid("Range needs finite start, limit and delta, got \(start), \(limit), \(delta)")
        }
        guard delta != 0 else { throw KernelError.invalid("Range delta is 0") }
        // The difference is taken in T and divided in double precision, as ONNX Runtime does.
        let steps = (Double(limit - start) / Double(delta)).rounded(.up)
        guard steps.isFinite, steps < Double(maximumOutputBytes) else {
            throw KernelError.invalid("Range from \(start) to \(limit) by \(delta) has too many elements")
        }
        let count = steps > 0 ? Int(steps) : 0
        var output = try makeOutputTensor(T.dtype, shape: [count])
        output.withUnsafeMutableBufferPointer(as: T.self) { values in
            for i in 0..<count { values[i] = start + T(i) * delta }
        }
        return output
    }

    static func integerRange<T: FixedWidthInteger & SignedInteger & TensorScalar>(
        _ startTensor: Tensor, _ limitTensor: Tensor, _ deltaTensor: Tensor, as: T.Type
    ) throws -> Tensor {
        let start = startTensor.scalars(as: T.self)[0], limit = limitTensor.scalars(as: T.self)[0]
        let delta = deltaTensor.scalars(as: T.self)[0]
        guard delta != 0 else { throw KernelError.invalid("Range delta is 0") }
        // Work on the distance towards the limit as an unsigned magnitude: it always fits in UInt64.
        let s = Int64(start), l = Int64(limit), d = Int64(delta)
        var count: UInt64 = 0
        if (d > 0 && l > s) || (d < 0 && s > l) {
            let span = d > 0 ? UInt64(bitPattern: l &- s) : UInt64(bitPattern: s &- l)
            let step = d.magnitude
            count = span / step + (span % step == 0 ? 0 : 1)
        }
        guard count <= UInt64(maximumOutputBytes) else {
            throw KernelError.invalid("Range from \(start) to \(limit) by \(delta) has too many elements")
        }
        let length = Int(count)
        var output = try makeOutputTensor(T.dtype, shape: [length])
        output.withUnsafeMutableBufferPointer(as: T.self) { values in
            // Every value lies between start and limit, so wrapping arithmetic gives it exactly.
            for i in 0..<length { values[i] = start &+ T(truncatingIfNeeded: i) &* delta }
        }
        return output
    }
}
