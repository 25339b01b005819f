import Foundation
import GraphIR
import ONNX
import Runtime
import Tensors
import Testing
import _TestSupport

/// Load → save → load → run must give the very same outputs, and the graph passes must not change
/// what a model computes.
@Suite struct ModelRoundTripTests {
    static func outputs(_ model: Model, _ feeds: [String: Tensor]) throws -> [String: Tensor] {
        try Session(model: model, options: SessionOptions(threadCount: 1)).run(feeds)
    }

    static func roundTripped(_ model: Model) throws -> Model {
        let folder = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("model.onnx")
        try model.write(to: url)
        return try Model(contentsOf: url)
    }

    @Test(arguments: ["mixed-cnn", "mixed-cnn-constants", "recurrent"])
    func fixtureModelsGiveIdenticalOutputsAfterARoundTrip(name: String) throws {
        let models = TestSupport.fixtures.appendingPathComponent("models")
        let model = try Model(contentsOf: models.appendingPathComponent("\(name).onnx"))
        let inputName = name == "recurrent" ? "recurrent-input.npz" : "mixed-cnn-input.npz"
        let feeds = try NPZ.readDictionary(models.appendingPathComponent(inputName))
        let before = try Self.outputs(model, feeds)
        let reloaded = try Self.roundTripped(model)
        #expect(reloaded == model)
        #expect(try Self.outputs(reloaded, feeds) == before)
    }

    @Test func miniLMGivesIdenticalOutputsAfterARoundTrip() throws {
        guard let shared = TestSupport.sharedModels else { return }
        let folder = shared.appendingPathComponent("minilm-l6")
        let model = try Model(contentsOf: folder.appendingPathComponent("minilm-l6.onnx"))
        var feeds: [String: Tensor] = [:]
        for (name, tensor) in try NPZ.read(folder.appendingPathComponent("minilm-eval.npz")) {
            feeds[name] = try tensor.leadingRows(2)
        }
        let before = try Self.outputs(model, feeds)
        #expect(before["sentence_embedding"]?.shape == [2, 384])
        #expect(try Self.outputs(try Self.roundTripped(model), feeds) == before)
    }

    @Test func standardPassesKeepTheCNNsOutputs() throws {
        let models = TestSupport.fixtures.appendingPathComponent("models")
        var model = try Model(contentsOf: models.appendingPathComponent("mixed-cnn.onnx"))
        let feeds = try NPZ.readDictionary(models.appendingPathComponent("mixed-cnn-input.npz"))
        let before = try Self.outputs(model, feeds)["log_probs"]!.scalars(as: Float.self)
        let batchNorms = model.graph.nodes.filter { $0.opType == "BatchNormalization" }.count
        _ = try PassPipeline.standard(evaluator: KernelEvaluator.standard).run(on: &model)
        // Every BatchNormalization of this model follows a Conv, so folding removes them all.
        #expect(batchNorms > 0)
        #expect(model.graph.nodes.filter { $0.opType == "BatchNormalization" }.isEmpty)
        let after = try Self.outputs(model, feeds)["log_probs"]!.scalars(as: Float.self)
        #expect(TestSupport.maxAbsDifference(before, after) < 1e-5)
    }
}
