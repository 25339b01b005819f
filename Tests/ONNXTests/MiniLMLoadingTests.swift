import Foundation
import GraphIR
import ONNX
import Tensors
import Testing
import _TestSupport

/// Facts about the shared MiniLM-L6 export, taken from python `onnx.load` (onnx 1.23):
/// 101 initializers (all FLOAT, 22,565,376 elements), 685 nodes of which 228 are Constant,
/// opset 17 (default domain only), IR version 8, producer pytorch 2.15.0.
@Suite struct MiniLMLoadingTests {
    static var modelURL: URL? {
        TestSupport.sharedModels?.appendingPathComponent("minilm-l6/minilm-l6.onnx")
    }

    static var available: Bool {
        modelURL.map { FileManager.default.fileExists(atPath: $0.path) } ?? false
    }

    @Test(.enabled(if: available, "needs shared/models/minilm-l6"))
    func loadsKnownFacts() throws {
        let model = try Model(contentsOf: Self.modelURL!)
        #expect(model.irVersion == 8)
        #expect(model.opsetImports.count == 1)
        #expect(model.opsetVersion(domain: "") == 17)
        #expect(model.producerName == "pytorch")
        #expect(model.producerVersion == "2.15.0")

        let graph = model.graph
        #expect(graph.inputs.map(\.name) == ["input_ids", "attention_mask", "token_type_ids"])
        for input in graph.inputs {
            #expect(input.type == .tensor(elementType: .int64, shape: [.symbol("batch"), .symbol("seq")]))
        }
        #expect(graph.outputs.map(\.name) == ["sentence_embedding"])
        #expect(graph.outputs.first?.type?.tensorElementType == .float32)
        #expect(graph.outputs.first?.type?.tensorShape
            == [.symbol("batch"), .symbol("Divsentence_embedding_dim_1")])

        #expect(graph.initializers.count == 101)
        #expect(graph.initializers.values.allSatisfy { $0.dtype == .float32 })
        #expect(graph.initializers.values.reduce(0) { $0 + $1.count } == 22_565_376)
        #expect(graph.nodes.count == 685)
        #expect(graph.nodes.filter { $0.opType == "Constant" }.count == 228)
        #expect(graph.nodes.filter { $0.opType == "MatMul" }.count == 48)
        try ModelChecker.check(model)
    }

    @Test(.enabled(if: available, "needs shared/models/minilm-l6"))
    func roundTripsThroughBytesAndFiles() throws {
        let model = try Model(contentsOf: Self.modelURL!)
        let reread = try Model(serializedData: try model.serializedData(), baseDirectory: nil, source: "memory")
        #expect(reread == model)

        let folder = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("minilm.onnx")
        try model.write(to: url, externalData: ExternalDataOptions())
        let external = try Model(contentsOf: url)
        #expect(external == model)
        let sideFile = folder.appendingPathComponent("minilm.onnx.data")
        let sideSize = try FileManager.default.attributesOfItem(atPath: sideFile.path)[.size] as? Int ?? 0
        let modelSize = try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int ?? 0
        // The 90,261,504 bytes of weights (python onnx: 22,565,376 floats) moved to the side file, bar a
        // few tiny tensors under the 1 KiB threshold; page alignment adds under 4 KiB per tensor.
        #expect(sideSize > 90_000_000 && sideSize < 90_261_504 + 101 * 4096)
        #expect(modelSize < 1_000_000)
    }
}
