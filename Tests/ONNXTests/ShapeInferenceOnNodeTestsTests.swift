import Foundation
import GraphIR
import ONNX
import Tensors
import Testing

/// Shape inference over every model of the ONNX backend node tests: the declared output types there
/// were written from the reference outputs, so an inferred type must never contradict them.
///
/// Each model is inferred with its output annotations removed, after turning its small inputs (up to 64
/// elements: shapes, axes, scales, sizes, indices) into initializers from `test_data_set_0`, so that the
/// rules depending on constant inputs are exercised too.
@Suite struct ShapeInferenceOnNodeTestsTests {
    static let root = URL(fileURLWithPath: "/usr/share/libonnx-testdata/data/node")
    static var available: Bool { FileManager.default.fileExists(atPath: root.path) }

    @Test(.enabled(if: available, "needs the libonnx-testdata node tests"))
    func inferredOutputsAgreeWithTheReference() throws {
        var contradictions: [String] = []
        var fullyInferred = 0
        for name in try FileManager.default.contentsOfDirectory(atPath: Self.root.path).sorted() {
            let folder = Self.root.appendingPathComponent(name)
            guard let model = try? Model(contentsOf: folder.appendingPathComponent("model.onnx")) else { continue }
            var stripped = model
            for (index, input) in model.graph.runtimeInputs.enumerated() {
                let file = folder.appendingPathComponent("test_data_set_0/input_\(index).pb")
                guard let (_, tensor) = try? TensorProtoFile.read(file), tensor.count <= 64,
                      tensor.dtype == input.type?.tensorElementType else { continue }
                stripped.graph.inputs.removeAll { $0.name == input.name }
                stripped.graph.initializers[input.name] = tensor
            }
            for index in stripped.graph.outputs.indices { stripped.graph.outputs[index].type = nil }
            stripped.graph.valueInfo = [:]

            let inferred: Model
            do {
                inferred = try ShapeInference.infer(stripped)
            } catch {
                contradictions.append("\(name): \(error)")
                continue
            }
            for (reference, output) in zip(model.graph.outputs, inferred.graph.outputs) {
                guard case .tensor(let referenceType, let referenceShape)? = reference.type else { continue }
                let type = output.type?.tensorElementType
                let shape = output.type?.tensorShape
                if let type, let referenceType, type != referenceType {
                    contradictions.append("\(name) \(output.name): \(type), reference \(referenceType)")
                }
                guard let shape, let referenceShape else { continue }
                let agrees = shape.count == referenceShape.count && zip(shape, referenceShape).allSatisfy { ours, theirs in
                    guard let a = ours.intValue, let b = theirs.intValue else { return true }
                    return a == b
                }
                if !agrees { contradictions.append("\(name) \(output.name): \(shape), reference \(referenceShape)") }
                if agrees, shape.allSatisfy({ $0.intValue != nil }) { fullyInferred += 1 }
            }
        }
        #expect(contradictions == [])
        // 858 outputs were fully static when this test was written (the rest are ops without rules,
        // loss functions, data-dependent sizes, …); a drop means a rule stopped working.
        #expect(fullyInferred >= 850)
    }
}
