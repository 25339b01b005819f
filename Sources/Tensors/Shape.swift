/// Shape arithmetic with overflow checks, for shapes that come from untrusted files.
public enum Shape {
    /// The number of elements of `shape`; 1 for a scalar.
    public static func elementCount(_ shape: [Int]) throws -> Int {
        var count = 1
        for dimension in shape {
            guard dimension >= 0 else { throw TensorError.negativeDimension(shape: shape) }
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            guard !overflow else { throw TensorError.elementCountOverflow(shape: shape) }
            count = product
        }
        return count
    }

    /// Row-major strides in elements.
    public static func strides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var running = 1
        for axis in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[axis] = running
            running &*= shape[axis]
        }
        return strides
    }

    /// Normalises a possibly negative axis into `0..<rank`; `nil` when out of range.
    public static func normalizedAxis(_ axis: Int, rank: Int) -> Int? {
        let value = axis < 0 ? axis + rank : axis
        return (0..<max(rank, 0)).contains(value) ? value : nil
    }

    /// The numpy/ONNX multidirectional broadcast of two shapes, or `nil` when they are incompatible.
    public static func broadcast(_ a: [Int], _ b: [Int]) -> [Int]? {
        let rank = max(a.count, b.count)
        var result = [Int](repeating: 1, count: rank)
        for i in 0..<rank {
            let da = i < rank - a.count ? 1 : a[i - (rank - a.count)]
            let db = i < rank - b.count ? 1 : b[i - (rank - b.count)]
            if da == db || db == 1 { result[i] = da }
            else if da == 1 { result[i] = db }
            else { return nil }
        }
        return result
    }
}
