import ONNX
import Testing

@Suite struct GeneratedSchemaTests {
    @Test func modelProtoRoundTripsThroughBinary() throws {
        var model = Onnx_ModelProto()
        model.irVersion = 8
        model.graph.name = "g"
        let decoded = try Onnx_ModelProto(serializedBytes: try model.serializedBytes() as [UInt8])
        #expect(decoded.irVersion == 8 && decoded.graph.name == "g")
    }
}
