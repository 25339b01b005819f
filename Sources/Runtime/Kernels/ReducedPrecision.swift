import Tensors
import _CKernels

/// float16 and bfloat16 tensors are computed in float32: widened on the way in, rounded to nearest even
/// on the way out. For one arithmetic operation this gives the correctly rounded half-precision result
/// (float32 carries more than twice the 11/8 significand bits), and it is what ONNX Runtime does for
/// transcendental functions.
enum ReducedPrecision {
    static func isReduced(_ dtype: DType) -> Bool { dtype == .float16 || dtype == .bfloat16 }

    /// Runs `body` on the inputs with every float16/bfloat16 tensor widened to float32, and narrows its
    /// float32 outputs back to that type. Returns nil when no input is float16/bfloat16.
    static func run(_ inputs: [Tensor?], _ body: ([Tensor?]) throws -> [Tensor]) throws -> [Tensor]? {
        guard let reduced = inputs.lazy.compactMap({ $0?.dtype }).first(where: isReduced) else { return nil }
        let widened = try inputs.map { tensor -> Tensor? in
            guard let tensor, isReduced(tensor.dtype) else { return tensor }
            return try widen(tensor)
        }
        return try body(widened).map { $0.dtype == .float32 ? try narrow($0, to: reduced) : $0 }
    }

    static func widen(_ tensor: Tensor) throws -> Tensor {
        var result = try Tensor(zeros: .float32, shape: tensor.shape)
        result.withUnsafeMutableBufferPointer(as: Float.self) { out in
            switch tensor.dtype {
            case .float16:
                tensor.withUnsafeBufferPointer(as: Float16.self) { halves in
                    halves.withMemoryRebound(to: UInt16.self) { source in
                        guard let from = source.baseAddress, let to = out.baseAddress,
                              sq_f16_to_f32(from, to, out.count) == 0 else { return }
                        widenHalves(source, into: out)
                    }
                }
            case .bfloat16:
                tensor.withUnsafeBufferPointer(as: BFloat16.self) { source in
                    for i in 0..<out.count { out[i] = Float(bitPattern: UInt32(source[i].bitPattern) << 16) }
                }
            default:
                preconditionFailure("widen called on \(tensor.dtype)")
            }
        }
        return result
    }

    static func narrow(_ tensor: Tensor, to dtype: DType) throws -> Tensor {
        var result = try Tensor(zeros: dtype, shape: tensor.shape)
        tensor.withUnsafeBufferPointer(as: Float.self) { source in
            switch dtype {
            case .float16:
                result.withUnsafeMutableBufferPointer(as: Float16.self) { halves in
                    halves.withMemoryRebound(to: UInt16.self) { out in
                        guard let from = source.baseAddress, let to = out.baseAddress,
                              sq_f32_to_f16(from, to, out.count) == 0 else { return }
                        narrowToHalves(source, into: out)
                    }
                }
            case .bfloat16:
                result.withUnsafeMutableBufferPointer(as: BFloat16.self) { out in
                    for i in 0..<out.count { out[i] = BFloat16(source[i]) }
                }
            default:
                preconditionFailure("narrow called for \(dtype)")
            }
        }
        return result
    }

    /// float16 bit patterns to float32, one element at a time: the reference of `sq_f16_to_f32`.
    static func widenHalves(_ source: UnsafeBufferPointer<UInt16>, into out: UnsafeMutableBufferPointer<Float>) {
        for i in 0..<out.count { out[i] = Float(Float16(bitPattern: source[i])) }
    }

    /// float32 to float16 bit patterns, rounded to nearest even: the reference of `sq_f32_to_f16`.
    static func narrowToHalves(_ source: UnsafeBufferPointer<Float>, into out: UnsafeMutableBufferPointer<UInt16>) {
        for i in 0..<out.count { out[i] = Float16(source[i]).bitPattern }
    }

    /// `widen` for float16/bfloat16 tensors; any other tensor is returned unchanged.
    static func widened(_ tensor: Tensor) throws -> Tensor {
        isReduced(tensor.dtype) ? try widen(tensor) : tensor
    }

    /// `narrow` to float16/bfloat16; for any other `dtype` the tensor is returned unchanged.
    static func narrowed(_ tensor: Tensor, to dtype: DType) throws -> Tensor {
        isReduced(dtype) ? try narrow(tensor, to: dtype) : tensor
    }

    /// Like `run`, for callers that already know the reduced dtype: widens inputs of that dtype and
    /// narrows float32 outputs back to it.
    static func bridged(_ inputs: [Tensor?], dtype: DType, _ body: ([Tensor?]) throws -> [Tensor]) throws -> [Tensor] {
        let wide = try inputs.map { try $0.map { $0.dtype == dtype ? try widened($0) : $0 } }
        return try body(wide).map { $0.dtype == .float32 ? try narrowed($0, to: dtype) : $0 }
    }
}
