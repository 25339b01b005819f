import Foundation
import ONNX
import Tensors
import Testing

/// Node-test tensors read with `TensorProtoFile`, against the values python reports:
/// `onnx.numpy_helper.to_array(onnx.load_tensor(path))` (onnx 1.23).
@Suite struct TensorProtoFileTests {
    static let root = URL(fileURLWithPath: "/usr/share/libonnx-testdata/data/node")
    static var available: Bool { FileManager.default.fileExists(atPath: root.path) }

    static func read(_ relativePath: String) throws -> (name: String, tensor: Tensor) {
        try TensorProtoFile.read(root.appendingPathComponent(relativePath))
    }

    @Test(.enabled(if: available, "needs libonnx-testdata"))
    func float32Input() throws {
        let (name, tensor) = try Self.read("test_abs/test_data_set_0/input_0.pb")
        #expect(name == "x")
        #expect(tensor.dtype == .float32 && tensor.shape == [3, 4, 5])
        #expect(Array(tensor.scalars(as: Float.self).prefix(6))
            == [1.764052391052246, 0.40015721321105957, 0.978738009929657, 2.2408931255340576, 1.8675580024719238,
                -0.9772778749465942])
    }

    @Test(.enabled(if: available, "needs libonnx-testdata"))
    func boolAndIntegerTensors() throws {
        let (_, flags) = try Self.read("test_and2d/test_data_set_0/input_0.pb")
        #expect(flags.dtype == .bool && flags.shape == [3, 4])
        #expect(flags.scalars(as: Bool.self)
            == [true, true, true, true, true, false, true, false, false, true, true, true])

        let (name, argmax) = try Self.read("test_argmax_default_axis_example/test_data_set_0/output_0.pb")
        #expect(name == "result" && argmax.shape == [1, 2] && argmax.scalars(as: Int64.self) == [1, 1])

        let (_, uint32) = try Self.read("test_bitshift_left_uint32/test_data_set_0/input_0.pb")
        #expect(uint32.scalars(as: UInt32.self) == [16, 4, 1])
        let (_, uint64) = try Self.read("test_bitshift_right_uint64/test_data_set_0/output_0.pb")
        #expect(uint64.scalars(as: UInt64.self) == [8, 1, 0])
        let (_, uint16) = try Self.read("test_mod_uint16/test_data_set_0/input_1.pb")
        #expect(uint16.scalars(as: UInt16.self) == [2, 3, 8])
    }

    @Test(.enabled(if: available, "needs libonnx-testdata"))
    func halfAndDoubleTensors() throws {
        let (_, half) = try Self.read("test_cast_FLOAT_to_FLOAT16/test_data_set_0/output_0.pb")
        #expect(half.dtype == .float16 && half.shape == [3, 4])
        // Bit patterns as python reports them: a.view(np.uint16).
        #expect(Array(half.scalars(as: Float16.self).prefix(6).map(\.bitPattern))
            == [14436, 14777, 14546, 14428, 14023, 14635])
        let (_, double) = try Self.read("test_cast_FLOAT_to_DOUBLE/test_data_set_0/output_0.pb")
        #expect(Array(double.scalars(as: Double.self).prefix(3))
            == [0.5680445432662964, 0.9255966544151306, 0.07103605568408966])
    }

    @Test(.enabled(if: available, "needs libonnx-testdata"))
    func stringTensorsAreUnsupported() throws {
        let path = "test_cast_FLOAT_to_STRING/test_data_set_0/output_0.pb"
        #expect(throws: ONNXError.unsupportedDataType(
            file: Self.root.appendingPathComponent(path).path, tensor: "output", dataType: "STRING")) {
            try Self.read(path)
        }
    }
}
