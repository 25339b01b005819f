import Calibration
import Foundation
import GraphIR
import ONNX
import QuantCore
import Quantization
import Runtime
import Tensors
import Testing
import _TestSupport

@Suite struct CalibrationDriverTests {
    static let models = TestSupport.fixtures.appendingPathComponent("models")

    static func cnnSession() throws -> Session {
        try Session(model: Model(contentsOf: models.appendingPathComponent("mixed-cnn.onnx")),
                    options: SessionOptions(threadCount: 1))
    }

    @Test func observesTheActivationsAroundIntegerOperators() throws {
        let session = try Self.cnnSession()
        let names = ActivationSelection.tensorsToObserve(in: session.model.graph)
        #expect(names.first == "image")
        // No weight or bias is an activation.
        #expect(names.allSatisfy { session.model.graph.initializers[$0] == nil })
        let convOutputs = session.model.graph.nodes.filter { $0.opType == "Conv" }.flatMap(\.outputs)
        #expect(Set(convOutputs).isSubset(of: Set(names)))
    }

    @Test func minMaxOfTheInputEqualsTheDataAndBatchesDoNotMatter() throws {
        let session = try Self.cnnSession()
        let data = try NPZ.readDictionary(Self.models.appendingPathComponent("mixed-cnn-input.npz"))
        let image = data["image"]!.scalars(as: Float.self)
        let configuration = CalibrationConfiguration(method: .minMax, scheme: .uint8Activations)
        var batches: [Int] = []
        let whole = try CalibrationDriver(session: session, configuration: configuration, batchSize: 1)
            .run(data: data, source: "cnn") { done, _ in batches.append(done) }
        #expect(batches == [1, 2])
        let input = try #require(whole["image"])
        #expect(input.range.minimum == [image.min()!])
        #expect(input.range.maximum == [image.max()!])
        #expect(input.params.scales[0] > 0)
        let together = try CalibrationDriver(session: session, configuration: configuration, batchSize: 8)
            .run(data: data, source: "cnn")
        // Batching changes only the batch count, never a range or a parameter.
        #expect(together.tensors.map(\.name) == whole.tensors.map(\.name))
        #expect(together.tensors.map(\.params) == whole.tensors.map(\.params))
        #expect(together.tensors.map(\.range) == whole.tensors.map(\.range))
        #expect(whole.tensors.allSatisfy { $0.statistics.batches == 2 })
    }

    @Test func badDataIsATypedErrorNamingTheSource() throws {
        let session = try Self.cnnSession()
        let configuration = CalibrationConfiguration()
        let driver = CalibrationDriver(session: session, configuration: configuration)
        #expect(throws: CalibrationError.missingInput(source: "calib.npz", input: "image")) {
            try driver.run(data: ["other": Tensor(scalar: Float(1))], source: "calib.npz")
        }
        #expect(throws: CalibrationError.empty(source: "calib.npz")) {
            try driver.run(data: ["image": Tensor(zeros: .float32, shape: [0, 3, 32, 32])], source: "calib.npz")
        }
        var zeroBatch = driver
        zeroBatch.batchSize = 0
        #expect(throws: CalibrationError.invalidBatchSize(0)) {
            try zeroBatch.run(data: ["image": Tensor(zeros: .float32, shape: [1, 3, 32, 32])], source: "calib.npz")
        }
    }
}
