import Foundation
import Testing
import Tensors
import _TestSupport
@testable import QuantCore

/// quantize / dequantize against ONNX's reference QuantizeLinear / DequantizeLinear (opset 25), including
/// ties, saturation, per-axis and blocked parameters, the int4/int2 packing and FP8 with saturate on and off.
@Suite struct QuantizeLinearParityTests {
    struct Case: Decodable, CustomTestStringConvertible {
        let name: String, type: String, granularity: String
        let axis: Int, block_size: Int, saturate: Bool
        let shape: [Int], x: [Double]
        let scale_shape: [Int], scale: [Double]
        let zero_point: [Int32]?
        let codes: [Int32], dequantized: [UInt32]
        let packed: String?
        var testDescription: String { name }
    }

    struct Fixture: Decodable { let cases: [Case] }

    static func load() throws -> [Case] {
        let url = TestSupport.fixtures.appendingPathComponent("calibration/quantize_linear.json")
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url)).cases
    }

    /// Empty when the fixture cannot be read; `fixtureIsReadable` then fails with the reason.
    static let cases: [Case] = (try? load()) ?? []

    @Test func fixtureIsReadable() throws {
        #expect(try Self.load().count >= 15)
    }

    @Test(arguments: cases)
    func matchesTheONNXReference(_ c: Case) throws {
        let type = try QuantType(name: c.type)
        let granularity: Granularity = switch c.granularity {
        case "channel": .perChannel(axis: c.axis)
        case "group": .perGroup(axis: c.axis, size: c.block_size)
        default: .perTensor
        }
        let params = try QuantParams(type: type, granularity: granularity,
                                     parameterShape: c.granularity == "tensor" ? [] : c.scale_shape,
                                     scales: c.scale.map { Float($0) }, zeroPoints: c.zero_point,
                                     saturate: c.saturate)
        let x = try Tensor(shape: c.shape, scalars: c.x.map { Float($0) })
        let q = try x.quantized(with: params)
        #expect(q.codes() == c.codes)
        if let packed = c.packed {
            let bytes = q.storage.withUnsafeBytes { Array($0) }
            #expect(bytes.map { String(format: "%02x", $0) }.joined() == packed)
        }
        let y = try q.dequantized().scalars(as: Float.self)
        #expect(y.map(\.bitPattern) == c.dequantized)
        // Fake-quantization is the same two steps in one pass.
        let fake = try x.fakeQuantized(with: params).scalars(as: Float.self)
        #expect(fake.map(\.bitPattern) == c.dequantized)
        // And the scalar API agrees element by element.
        let layout = try params.layout(for: c.shape)
        var index = 0
        layout.forEachRun { run in
            var p = run.parameter
            for i in run.elements {
                if params.quantize(Float(c.x[i]), parameter: p) != c.codes[i] { index += 1 }
                p += run.parameterStride
            }
        }
        #expect(index == 0, "scalar quantize disagrees with the reference on \(index) elements")
    }
}
