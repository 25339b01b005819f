import Tensors

/// Reading small constant tensors (weights being folded, shapes, scales) as plain numbers. These run
/// once per constant, not in kernels, so clarity wins over speed here.
extension Tensor {
    /// The elements as `Int`s for integer and bool tensors; nil for other dtypes, 4-bit types and
    /// `uint64` values above `Int.max`.
    var integerElements: [Int]? {
        switch dtype {
        case .int64: return scalars(as: Int64.self).map { Int($0) }
        case .int32: return scalars(as: Int32.self).map { Int($0) }
        case .int16: return scalars(as: Int16.self).map { Int($0) }
        case .int8: return scalars(as: Int8.self).map { Int($0) }
        case .uint8: return scalars(as: UInt8.self).map { Int($0) }
        case .uint16: return scalars(as: UInt16.self).map { Int($0) }
        case .uint32: return scalars(as: UInt32.self).map { Int($0) }
        case .uint64:
            var values: [Int] = []
            for value in scalars(as: UInt64.self) {
                guard let exact = Int(exactly: value) else { return nil }
                values.append(exact)
            }
            return values
        case .bool: return scalars(as: Bool.self).map { $0 ? 1 : 0 }
        default: return nil
        }
    }

    /// The elements widened to `Double` for float32, float64, float16 and bfloat16 tensors, and for
    /// integer tensors; nil otherwise.
    var doubleElements: [Double]? {
        switch dtype {
        case .float32: return scalars(as: Float.self).map { Double($0) }
        case .float64: return scalars(as: Double.self)
        case .float16: return scalars(as: Float16.self).map { Double($0) }
        case .bfloat16: return scalars(as: BFloat16.self).map { Double($0.floatValue) }
        default: return integerElements?.map { Double($0) }
        }
    }

    /// A tensor of `dtype` (float32, float64, float16 or bfloat16) holding `values` rounded to nearest.
    static func floating(_ dtype: DType, shape: [Int], values: [Double]) throws -> Tensor? {
        switch dtype {
        case .float32: return try Tensor(shape: shape, scalars: values.map { Float($0) })
        case .float64: return try Tensor(shape: shape, scalars: values)
        case .float16: return try Tensor(shape: shape, scalars: values.map { Float16($0) })
        case .bfloat16: return try Tensor(shape: shape, scalars: values.map { BFloat16(Float($0)) })
        default: return nil
        }
    }
}
