extension Tensor {
    /// Rows `range` along the first axis (the sample axis of .npz data), copied into a new tensor.
    public func rows(_ range: Range<Int>) throws -> Tensor {
        guard let first = shape.first else {
            throw TensorError.sizeMismatch(what: "rows of a scalar", expected: 1, actual: 0)
        }
        guard range.lowerBound >= 0, range.upperBound <= first else {
            throw TensorError.sizeMismatch(what: "rows \(range) of shape \(shape)", expected: first, actual: range.upperBound)
        }
        guard dtype.bitWidth >= 8 else {
            throw TensorError.dtypeMismatch(what: "row slicing needs whole-byte elements", expected: .int8, actual: dtype)
        }
        var result = try Tensor(zeros: dtype, shape: [range.count] + shape.dropFirst())
        let rowBytes = first == 0 ? 0 : byteCount / first
        withUnsafeBytes { source in
            result.withUnsafeMutableBytes { target in
                guard rowBytes > 0, range.count > 0 else { return }
                target.baseAddress!.copyMemory(from: source.baseAddress! + range.lowerBound * rowBytes,
                                               byteCount: range.count * rowBytes)
            }
        }
        return result
    }

    /// The first `count` rows (all of them when the tensor has fewer).
    public func leadingRows(_ count: Int) throws -> Tensor {
        try rows(0..<min(max(count, 0), shape.first ?? 0))
    }
}
