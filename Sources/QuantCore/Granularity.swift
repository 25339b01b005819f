import Tensors

/// Which elements share one scale and zero point.
///
/// - `perTensor`: one pair for the whole tensor (ONNX scalar scale).
/// - `perChannel(axis:)`: one pair per index along `axis` (ONNX 1-D scale with `axis`).
/// - `perGroup(axis:size:)`: one pair per block of `size` consecutive indices along `axis`, separately
///   for every index of the other axes (ONNX blocked quantization: the scale has the input's shape with
///   `shape[axis]` replaced by `ceil(shape[axis] / size)`; the last block may be shorter).
public enum Granularity: Hashable, Sendable, Codable, CustomStringConvertible {
    case perTensor
    case perChannel(axis: Int)
    case perGroup(axis: Int, size: Int)

    public var description: String {
        switch self {
        case .perTensor: return "per-tensor"
        case .perChannel(let axis): return "per-channel(axis: \(axis))"
        case .perGroup(let axis, let size): return "per-group(axis: \(axis), size: \(size))"
        }
    }

    /// The layout of parameters over a tensor of `shape`; throws when the granularity does not fit.
    public func layout(for shape: [Int]) throws -> ParameterLayout {
        try ParameterLayout(granularity: self, shape: shape)
    }
}

/// Where each element's scale and zero point live, for one granularity and one tensor shape.
///
/// The tensor is viewed as `[outer, axisLength, inner]` around the quantization axis. Parameters are
/// stored in the order of the ONNX scale tensor (`parameterShape`, row-major).
public struct ParameterLayout: Hashable, Sendable {
    public let granularity: Granularity
    public let shape: [Int]
    public let elementCount: Int
    /// The normalised axis (0 for per-tensor).
    public let axis: Int
    public let outer: Int
    public let axisLength: Int
    public let inner: Int
    /// Block length along the axis (per-group), `axisLength` for per-channel, the element count for per-tensor.
    public let groupSize: Int
    /// Blocks along the axis (per-group only; 1 otherwise).
    public let groupsAlongAxis: Int
    /// The shape of the scale / zero-point tensor: `[]`, `[C]`, or the blocked shape.
    public let parameterShape: [Int]
    /// Number of scale / zero-point pairs.
    public let parameterCount: Int

    public init(granularity: Granularity, shape: [Int]) throws {
        self.granularity = granularity
        self.shape = shape
        do { elementCount = try Shape.elementCount(shape) } catch {
            throw QuantError.invalidGranularity("tensor shape \(shape) is invalid: \(error)")
        }
        switch granularity {
        case .perTensor:
            axis = 0; outer = 1; axisLength = 1; inner = elementCount
            groupSize = elementCount; groupsAlongAxis = 1
            parameterShape = []; parameterCount = 1
        case .perChannel(let requested):
            guard let normalized = Shape.normalizedAxis(requested, rank: shape.count) else {
                throw QuantError.invalidGranularity(
                    "per-channel axis \(requested) is out of range for shape \(shape); allowed axes are "
                        + (shape.isEmpty ? "none (a scalar has no channels: use per-tensor)" : "\(-shape.count)…\(shape.count - 1)"))
            }
            axis = normalized
            (outer, axisLength, inner) = ParameterLayout.split(shape, at: normalized)
            groupSize = axisLength; groupsAlongAxis = 1
            parameterShape = [axisLength]; parameterCount = axisLength
        case .perGroup(let requested, let size):
            guard shape.count >= 2 else {
                throw QuantError.invalidGranularity(
                    "per-group granularity needs a tensor of rank ≥ 2 (blocks along one axis, a scale per index of the "
                        + "others); shape \(shape) has rank \(shape.count): use per-tensor, or reshape to [1, n]")
            }
            guard let normalized = Shape.normalizedAxis(requested, rank: shape.count) else {
                throw QuantError.invalidGranularity(
                    "per-group axis \(requested) is out of range for shape \(shape); allowed axes are \(-shape.count)…\(shape.count - 1)")
            }
            guard size >= 1 else {
                throw QuantError.invalidGranularity("per-group block size \(size) must be at least 1")
            }
            axis = normalized
            (outer, axisLength, inner) = ParameterLayout.split(shape, at: normalized)
            groupSize = size
            groupsAlongAxis = axisLength == 0 ? 0 : (axisLength - 1) / size + 1
            var blocked = shape
            blocked[normalized] = groupsAlongAxis
            parameterShape = blocked
            // Cannot overflow: it is at most the element count.
            parameterCount = outer * groupsAlongAxis * inner
        }
    }

    private static func split(_ shape: [Int], at axis: Int) -> (Int, Int, Int) {
        // The element count fits in Int, so every partial product does too.
        let outer = shape[..<axis].reduce(1, *)
        let inner = shape[(axis + 1)...].reduce(1, *)
        return (outer, shape[axis], inner)
    }

    /// A contiguous run of elements whose parameter index is `parameter + i · parameterStride` for the
    /// run's i-th element (`parameterStride` is 0 or 1).
    public struct Run: Sendable {
        public var elements: Range<Int>
        public var parameter: Int
        public var parameterStride: Int
    }

    /// Calls `body` once per run; together the runs cover every element once, in order.
    ///
    /// Runs are as long as the layout allows, so callers loop tightly inside each one.
    public func forEachRun(_ body: (Run) throws -> Void) rethrows {
        guard elementCount > 0 else { return }
        switch granularity {
        case .perTensor:
            try body(Run(elements: 0..<elementCount, parameter: 0, parameterStride: 0))
        case .perChannel:
            if inner == 1 {
                for o in 0..<outer {
                    try body(Run(elements: (o * axisLength)..<((o + 1) * axisLength), parameter: 0, parameterStride: 1))
                }
            } else {
                for o in 0..<outer {
                    for a in 0..<axisLength {
                        let start = (o * axisLength + a) * inner
                        try body(Run(elements: start..<(start + inner), parameter: a, parameterStride: 0))
                    }
                }
            }
        case .perGroup:
            if inner == 1 {
                for o in 0..<outer {
                    for g in 0..<groupsAlongAxis {
                        let start = o * axisLength + g * groupSize
                        let end = min(start + groupSize, (o + 1) * axisLength)
                        try body(Run(elements: start..<end, parameter: o * groupsAlongAxis + g, parameterStride: 0))
                    }
                }
            } else {
                for o in 0..<outer {
                    for a in 0..<axisLength {
                        let start = (o * axisLength + a) * inner
                        let parameter = (o * groupsAlongAxis + a / groupSize) * inner
                        try body(Run(elements: start..<(start + inner), parameter: parameter, parameterStride: 1))
                    }
                }
            }
        }
    }
}
