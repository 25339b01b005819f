import Foundation
import GraphIR
import ONNX
import QuantCore
import Quantization
import Runtime
import Tensors
import Testing
import _TestSupport

/// Static quantization of real models: the fixture CNNs (MobileNet/ResNet blocks, ConvTranspose and Resize
/// decoder; weights as initializers and as Constant nodes) in both formats, and MiniLM-L6 with default
/// options against the acceptance gates of issue 4.
@Suite struct StaticModelTests {
    typealias F = StaticFixtures
    static let models = TestSupport.fixtures.appendingPathComponent("models")

    @Test(arguments: ["mixed-cnn", "mixed-cnn-constants"], [QuantizedFormat.qdq, .qoperator])
    func cnnQuantizesInBothFormatsAndKeepsItsOutputs(name: String, format: QuantizedFormat) throws {
        let model = try Model(contentsOf: Self.models.appendingPathComponent(name + ".onnx"))
        let data = try NPZ.readDictionary(Self.models.appendingPathComponent("mixed-cnn-input.npz"))
        var options = QuantizationOptions()
        options.format = format
        let result = try F.quantize(model, data, options, name: "\(name)-\(format.rawValue)")
        let graph = result.model.graph
        if format == .qoperator {
            #expect(graph.nodes("QLinearConv").count == 7)
            #expect(graph.nodes("Conv").isEmpty)
        } else {
            #expect(graph.nodes("Conv").count == 7)
            #expect(graph.nodes("Relu").isEmpty)
        }
        let expected = try F.run(model, data)
        let actual = try F.run(result.model, data)
        for output in ["log_probs", "features"] {
            let cosines = try F.rowCosines(expected[output]!, actual[output]!)
            #expect(cosines.allSatisfy { $0 > 0.999 }, "\(output): \(cosines)")
        }
        let macs = try #require(result.report.multiplyAccumulates)
        #expect(macs.integer8Share > (format == .qdq ? 0.99 : 0.75))
    }

    /// MiniLM-L6, static int8 with default options, calibrated on 64 rows of minilm-calib.npz and checked on
    /// 64 rows of minilm-eval.npz (the CLI figures use 256 and 1024).
    @Test(.enabled(if: TestSupport.sharedModels != nil))
    func miniLMMeetsTheAccuracyAndIntegerShareGates() throws {
        let folder = TestSupport.sharedModels!.appendingPathComponent("minilm-l6")
        let model = try Model(contentsOf: folder.appendingPathComponent("minilm-l6.onnx"))
        let calibration = try NPZ.readDictionary(folder.appendingPathComponent("minilm-calib.npz")).mapValues { try $0.leadingRows(64) }
        let evaluation = try NPZ.readDictionary(folder.appendingPathComponent("minilm-eval.npz")).mapValues { try $0.leadingRows(64) }
        let result = try Quantizer().quantize(model, calibration: CalibrationData(arrays: calibration, source: "minilm-calib.npz"))
        try ModelChecker.check(result.model)
        try TestSupport.keepForOracle(result.model, name: "static-minilm")

        let expected = try Session(model: model).run(evaluation)["sentence_embedding"]!
        let actual = try Session(model: result.model).run(evaluation)["sentence_embedding"]!
        let cosines = try F.rowCosines(expected, actual)
        let mean = cosines.reduce(0, +) / Double(cosines.count)
        #expect(mean >= 0.99, "mean cosine \(mean)")
        #expect(cosines.min()! >= 0.97, "worst cosine \(cosines.min()!)")
        let share = try #require(result.report.multiplyAccumulates).integer8Share
        #expect(share >= 0.65, "int8 share of MatMul MACs \(share)")
        // The attention-mask arithmetic and Softmax stay float.
        #expect(result.report.nodes.filter { $0.opType == "Softmax" }.allSatisfy { !$0.quantized })
    }
}
