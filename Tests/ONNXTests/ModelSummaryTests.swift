import Foundation
import GraphIR
import ONNX
import Tensors
import Testing

@Suite struct ModelSummaryTests {
    /// Counts from python onnx over MiniLM's initializers and Constant `value` tensors:
    /// float32 151 tensors, 22,565,426 elements, 90,261,704 bytes; int64 178, 688, 5,504.
    @Test(.enabled(if: MiniLMLoadingTests.available, "needs shared/models/minilm-l6"))
    func miniLMSummary() throws {
        let summary = ModelSummary(try Model(contentsOf: MiniLMLoadingTests.modelURL!))
        #expect(summary.parameters == [
            .init(dtype: "float32", tensors: 151, elements: 22_565_426, bytes: 90_261_704),
            .init(dtype: "int64", tensors: 178, elements: 688, bytes: 5_504),
        ])
        #expect(summary.parameterCount == 22_566_114)
        #expect(summary.nodeCount == 685)
        #expect(summary.operators.first == .init(opType: "Constant", count: 228))
        #expect(summary.operators.count == 28)
        #expect(summary.opsetImports == [.init(domain: "ai.onnx", version: 17)])
        #expect(summary.inputs.map(\.name) == ["input_ids", "attention_mask", "token_type_ids"])
        #expect(summary.inputs[0].dtype == "int64" && summary.inputs[0].shape == [.symbol("batch"), .symbol("seq")])
        #expect(summary.outputs.map(\.name) == ["sentence_embedding"])
        let text = summary.formatted()
        #expect(text.contains("input_ids       int64  [batch, seq]"))
        #expect(text.contains("Operators: 685 nodes, 28 types"))
    }

    @Test func summaryCountsSubgraphsSparseAndConstants() throws {
        let summary = ModelSummary(try ONNXFixtures.everyKindModel())
        // Main graph 5 nodes, two If branches with one node each, and three graphs with one Identity
        // each in the Custom node's graph attributes.
        #expect(summary.nodeCount == 10)
        #expect(summary.operators.first == .init(opType: "Identity", count: 3))
        #expect(summary.operators.first { $0.opType == "test.domain.Custom" }?.count == 1)
        // Runtime inputs only; the untyped input has no dtype or shape.
        #expect(summary.inputs.count == 5)
        #expect(summary.inputs[2].shape == [.unknown, .value(0)])
        #expect(summary.inputs[3].shape == nil && summary.inputs[3].type == "tensor(float32)")
        #expect(summary.inputs[4].type == "unknown" && summary.inputs[4].dtype == nil)
        // float32: weight_t (6), empty (0), sparse values (2, plus 16 bytes of int64 indices),
        // Constant bias (3), the else branch's initializer (1).
        let float32 = summary.parameters.first { $0.dtype == "float32" }
        #expect(float32 == .init(dtype: "float32", tensors: 5, elements: 12, bytes: 12 * 4 + 16))
        #expect(summary.parameters.first { $0.dtype == "int4" } == .init(dtype: "int4", tensors: 1, elements: 3, bytes: 2))
        #expect(summary.metadata == ["author": "tests", "licence": "MIT", "empty": ""])
    }

    @Test func jsonUsesNumbersStringsAndNullForDims() throws {
        let model = Model(graph: Graph(
            inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.value(1), .symbol("n"), .unknown])],
            outputs: [ValueInfo(name: "x")]))
        let summary = ModelSummary(model)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = String(decoding: try encoder.encode(summary.inputs[0]), as: UTF8.self)
        #expect(json == #"{"dtype":"float32","name":"x","shape":[1,"n",null],"type":"tensor(float32)"}"#)
        let decoded = try JSONDecoder().decode(ModelSummary.self, from: try encoder.encode(summary))
        #expect(decoded == summary)
    }
}
