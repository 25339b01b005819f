import GraphIR
import Tensors

/// Small helpers shared by kernel files: reading inputs, integer lists, and broadcast strides.

/// Input `index`, which must be present.
@inline(__always)
func required(_ inputs: [Tensor?], _ index: Int) throws -> Tensor {
    guard index < inputs.count, let value = inputs[index] else {
        throw KernelError.invalidInput(index: index, reason: "required input is missing")
    }
    return value
}

/// Input `index` if given (optional inputs may be absent or empty-named).
@inline(__always)
func optional(_ inputs: [Tensor?], _ index: Int) -> Tensor? {
    index < inputs.count ? inputs[index] : nil
}

extension Tensor {
    /// The elements of an integer tensor (int8…int64, uint8…uint64) as `Int`s — for shapes, axes,
    /// indices and other small control inputs. Throws for other dtypes or values that do not fit.
    public func integerValues() throws -> [Int] {
        switch dtype {
        case .int64: return scalars(as: Int64.self).map { Int($0) }
        case .int32: return scalars(as: Int32.self).map { Int($0) }
        case .int16: return scalars(as: Int16.self).map { Int($0) }
        case .int8: return scalars(as: Int8.self).map { Int($0) }
        case .uint8: return scalars(as: UInt8.self).map { Int($0) }
        case .uint16: return scalars(as: UInt16.self).map { Int($0) }
        case .uint32: return scalars(as: UInt32.self).map { Int($0) }
        case .uint64:
            return try scalars(as: UInt64.self).map {
                guard let v = Int(exactly: $0) else { throw KernelError.invalid("value \($0) does not fit in Int") }
                return v
            }
        default: throw KernelError.invalid("expected an integer tensor, got \(dtype)")
        }
    }

    /// A float32 tensor's elements.
    public var floats: [Float] { scalars(as: Float.self) }
}

/// Strides that read `shape` as if broadcast to `outputShape` (0 on broadcast axes), right-aligned as
/// numpy aligns shapes. `shape` must broadcast to `outputShape`.
func broadcastStrides(_ shape: [Int], to outputShape: [Int]) -> [Int] {
    let own = Shape.strides(shape)
    let offset = outputShape.count - shape.count
    return (0..<outputShape.count).map { axis in
        let source = axis - offset
        guard source >= 0, shape[source] != 1 else { return 0 }
        return own[source]
    }
}

/// Visits every index of `shape` in row-major order, calling `body` with the linear offsets of up to
/// two strided operands. Inner-most axis runs as a tight loop: callers get (offsetA, offsetB, count,
/// strideA, strideB) for each contiguous row so that the element loop has no dispatch in it.
func forEachRow(
    shape: [Int], stridesA: [Int], stridesB: [Int],
    _ body: (_ outputOffset: Int, _ offsetA: Int, _ offsetB: Int, _ count: Int, _ innerA: Int, _ innerB: Int) -> Void
) {
    let rank = shape.count
    guard rank > 0 else { body(0, 0, 0, 1, 0, 0); return }
    let inner = shape[rank - 1]
    guard inner > 0 else { return }
    let rows = shape.dropLast().reduce(1, *)
    guard rows > 0 else { return }
    var index = [Int](repeating: 0, count: rank)
    var offA = 0, offB = 0
    for row in 0..<rows {
        body(row * inner, offA, offB, inner, stridesA[rank - 1], stridesB[rank - 1])
        // Advance the outer index like an odometer.
        var axis = rank - 2
        while axis >= 0 {
            index[axis] += 1
            offA += stridesA[axis]
            offB += stridesB[axis]
            if index[axis] < shape[axis] { break }
            offA -= stridesA[axis] * shape[axis]
            offB -= stridesB[axis] * shape[axis]
            index[axis] = 0
            axis -= 1
        }
    }
}
