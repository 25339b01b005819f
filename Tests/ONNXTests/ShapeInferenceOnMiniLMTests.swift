import Foundation
import GraphIR
import ONNX
import Tensors
import Testing
import _TestSupport

/// Shape inference on the shared MiniLM-L6 export (inputs `[batch, seq]`).
///
/// Expected shapes: where `onnx.shape_inference.infer_shapes(model, data_prop=True)` (onnx 1.23) names a
/// number or an input symbol we expect the same; where it only says `unk__N`, the expectations are ours,
/// checked by running every intermediate value through onnxruntime 1.31 at (batch, seq) = (2, 7), (3, 1)
/// and (1, 5): all 685 values matched in rank, element type and every non-unknown dimension.
@Suite struct ShapeInferenceOnMiniLMTests {
    static var modelURL: URL? {
        TestSupport.sharedModels?.appendingPathComponent("minilm-l6/minilm-l6.onnx")
    }

    static var available: Bool {
        modelURL.map { FileManager.default.fileExists(atPath: $0.path) } ?? false
    }

    static func type(_ model: Model, _ name: String) -> ValueType? {
        model.graph.valueInfo[name]?.type ?? model.graph.outputs.first { $0.name == name }?.type
    }

    @Test(.enabled(if: available, "needs shared/models/minilm-l6"))
    func sentenceEmbeddingIsBatchBy384AndSymbolsPropagate() throws {
        let model = try Model(contentsOf: Self.modelURL!)
        let inferred = try ShapeInference.infer(model)
        let batch = Dim.symbol("batch"), seq = Dim.symbol("seq")
        // Declared [batch, "Divsentence_embedding_dim_1"]: inference pins the second dim to 384.
        #expect(Self.type(inferred, "sentence_embedding") == .tensor(elementType: .float32, shape: [batch, .value(384)]))

        let expectations: [(String, DType, [Dim])] = [
            // onnx.shape_inference agrees exactly on these.
            ("/m/embeddings/word_embeddings/Gather_output_0", .float32, [batch, seq, .value(384)]),
            ("/m/encoder/layer.0/attention/self/Concat_output_0", .int64, [.value(4)]),
            ("/Cast_output_0", .float32, [batch, seq, .value(1)]),
            ("/ReduceSum_1_output_0", .float32, [batch, .value(1)]),
            // onnx.shape_inference loses the symbols here (unk__N); onnxruntime confirms these.
            ("/m/embeddings/Slice_output_0", .int64, [.value(1), .minimumSymbol("seq", 512)]),
            ("/m/embeddings/LayerNorm/LayerNormalization_output_0", .float32, [batch, seq, .value(384)]),
            ("/m/Expand_output_0", .bool, [batch, .value(1), seq, seq]),
            ("/m/encoder/layer.0/attention/self/Reshape_output_0", .float32, [batch, seq, .value(12), .value(32)]),
            ("/m/encoder/layer.0/attention/self/Transpose_2_output_0", .float32, [batch, .value(12), .value(32), seq]),
            ("/m/encoder/layer.0/attention/self/MatMul_output_0", .float32, [batch, .value(12), seq, seq]),
            ("/m/encoder/layer.0/attention/self/Softmax_output_0", .float32, [batch, .value(12), seq, seq]),
            ("/m/encoder/layer.0/attention/self/Reshape_4_output_0", .float32, [batch, seq, .value(384)]),
            ("/m/encoder/layer.5/intermediate/intermediate_act_fn/Div_output_0", .float32, [batch, seq, .value(1536)]),
            ("/ReduceSum_output_0", .float32, [batch, .value(384)]),
            ("/ReduceL2_output_0", .float32, [batch, .value(1)]),
        ]
        for (name, dtype, shape) in expectations {
            #expect(Self.type(inferred, name) == .tensor(elementType: dtype, shape: shape), "\(name)")
        }

        // Every node output gets an element type and a rank; only two products of batch·seq stay unknown.
        var unknownDims = 0
        for node in inferred.graph.nodes {
            for output in node.outputs where !output.isEmpty {
                let type = Self.type(inferred, output)
                #expect(type?.tensorElementType != nil, "\(output)")
                #expect(type?.tensorShape != nil, "\(output)")
                unknownDims += type?.tensorShape?.filter { $0 == .unknown }.count ?? 0
            }
        }
        #expect(unknownDims == 2)
    }
}

extension Dim {
    /// The symbol shape inference uses for `min(symbol, bound)`.
    static func minimumSymbol(_ symbol: String, _ bound: Int) -> Dim { .symbol("min(\(symbol),\(bound))") }
}

@Suite struct PassPipelineOnMiniLMTests {
    @Test(.enabled(if: ShapeInferenceOnMiniLMTests.available, "needs shared/models/minilm-l6"))
    func standardPipelineFoldsStaticShapesAndKeepsTheInterface() throws {
        var model = try Model(contentsOf: ShapeInferenceOnMiniLMTests.modelURL!)
        let shapeNodes = model.graph.nodes.filter { $0.opType == "Shape" }.count
        let report = try PassPipeline.standard().run(on: &model)
        #expect(report.reachedFixpoint)
        // Shape of the 4-element mask target is static ([4]) and folds; the others depend on batch/seq.
        #expect(model.graph.nodes.filter { $0.opType == "Shape" }.count == shapeNodes - 1)
        // Constants only the folded Shape read went with it; the graph still checks and infers the same.
        try ModelChecker.check(model)
        let inferred = try ShapeInference.infer(model)
        #expect(ShapeInferenceOnMiniLMTests.type(inferred, "sentence_embedding")
                == .tensor(elementType: .float32, shape: [.symbol("batch"), .value(384)]))
        #expect(model.graph.inputs.map(\.name) == ["input_ids", "attention_mask", "token_type_ids"])
    }
}
