import GraphIR
@testable import Runtime
import Tensors
import _TestSupport

/// The zero points the integer GEMM tests sweep (MLAS's list), in uint8 terms.
let sweepZeroPoints: [Int32] = [0, 18, 75, 128, 157, 231, 255]
/// The reduction depths the integer GEMM tests sweep.
let sweepDepths: [Int] = Array(1...10) + Array(118...122)

enum FusedTestData {
    /// A tensor of `dtype` (uint8/int8) over the full range, with both ends present.
    static func codes(_ dtype: DType, shape: [Int], using generator: inout SeededGenerator) throws -> Tensor {
        let count = shape.reduce(1, *)
        if dtype == .uint8 {
            var values = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if count > 1 { values[0] = 0; values[count - 1] = 255 }
            return try Tensor(shape: shape, scalars: values)
        }
        var values = (0..<count).map { _ in Int8.random(in: -128...127, using: &generator) }
        if count > 1 { values[0] = -128; values[count - 1] = 127 }
        return try Tensor(shape: shape, scalars: values)
    }

    /// A one-element zero point of `dtype` from a uint8-terms value (int8 zero points are shifted by −128).
    static func zeroPoint(_ dtype: DType, _ uint8Value: Int32) -> Tensor {
        dtype == .uint8 ? Tensor(scalar: UInt8(uint8Value)) : Tensor(scalar: Int8(uint8Value - 128))
    }

    static func floats(_ values: [Float], shape: [Int]? = nil) throws -> Tensor {
        try Tensor(shape: shape ?? [values.count], scalars: values)
    }
}

/// Builds a kernel from a node whose constant inputs come from `constants`.
func buildContext(_ node: Node, constants: [String: Tensor], opset: Int = 1) -> KernelBuildContext {
    KernelBuildContext(node: node, opsetVersion: opset,
                       constantInputs: node.inputs.map { $0.isEmpty ? nil : constants[$0] },
                       compileSubgraph: { _, _ in throw KernelError.unsupported("subgraphs") })
}

/// The inputs of `node` in order: constants by name, the rest from `feeds`.
func orderedInputs(_ node: Node, constants: [String: Tensor], feeds: [String: Tensor]) -> [Tensor?] {
    node.inputs.map { $0.isEmpty ? nil : (constants[$0] ?? feeds[$0]) }
}

extension Tensor {
    /// Values of an 8-bit, int32 or float32 tensor as doubles, for tolerance comparisons.
    var doubleValues: [Double] {
        switch dtype {
        case .float32: return scalars(as: Float.self).map(Double.init)
        case .uint8: return scalars(as: UInt8.self).map(Double.init)
        case .int8: return scalars(as: Int8.self).map(Double.init)
        case .int32: return scalars(as: Int32.self).map(Double.init)
        default: return []
        }
    }
}
