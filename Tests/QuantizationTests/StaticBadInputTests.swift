import Foundation
import GraphIR
import QuantCore
import Quantization
import Tensors
import Testing
import _TestSupport

/// Bad calibration data, models with nothing to quantize and option combinations static mode cannot
/// honour end in a typed error naming the cause.
@Suite struct StaticBadInputTests {
    typealias F = StaticFixtures

    static let model = F.model([Node(name: "mm", opType: "MatMul", inputs: ["x", "w"], outputs: ["y"])],
                               inputs: [("x", [4, 3])], outputs: ["y"],
                               initializers: [("w", F.floats([3, 2], F.noise(6, seed: 1)))])

    static func quantize(_ data: [String: Tensor], options: QuantizationOptions = QuantizationOptions(),
                         model: Model = StaticBadInputTests.model) throws {
        _ = try Quantizer(options: options).quantize(model, calibration: CalibrationData(arrays: data, source: "calib.npz"))
    }

    @Test func calibrationDataThatDoesNotFitTheModelIsRejected() throws {
        let good = F.floats([4, 3], F.noise(12, seed: 2))
        #expect(throws: CalibrationError.missingInput(source: "calib.npz", input: "x")) {
            try Self.quantize(["input": good])
        }
        #expect(throws: CalibrationError.unexpectedArray(source: "calib.npz", array: "label", inputs: ["x"])) {
            try Self.quantize(["x": good, "label": F.floats([4], [0, 1, 2, 3])])
        }
        #expect(throws: CalibrationError.self) { try Self.quantize(["x": F.floats([4, 2], F.noise(8, seed: 3))]) }
        #expect(throws: CalibrationError.self) { try Self.quantize(["x": F.floats([12], F.noise(12, seed: 3))]) }
        #expect(throws: CalibrationError.self) {
            try Self.quantize(["x": try Tensor(shape: [4, 3], scalars: [Int64](repeating: 1, count: 12))])
        }
        #expect(throws: CalibrationError.empty(source: "calib.npz")) {
            try Self.quantize(["x": try Tensor(zeros: .float32, shape: [0, 3])])
        }
        var values = F.noise(12, seed: 4)
        values[5] = .nan
        values[7] = .infinity
        #expect(throws: CalibrationError.nonFiniteData(source: "calib.npz", array: "x", count: 2)) {
            try Self.quantize(["x": F.floats([4, 3], values)])
        }
    }

    @Test func errorMessagesNameTheFileAndTheArray() {
        let error = CalibrationError.mismatchedInput(source: "calib.npz", array: "x", reason: "has shape [4, 2]")
        #expect(error.description.contains("calib.npz") && error.description.contains("'x'"))
        let extra = CalibrationError.unexpectedArray(source: "calib.npz", array: "label", inputs: ["x"])
        #expect(extra.description.contains("'label'") && extra.description.contains("x"))
    }

    @Test func aModelWithoutAQuantizableOperatorIsRejected() {
        let model = F.model([Node(name: "act", opType: "Relu", inputs: ["x"], outputs: ["y"])],
                            inputs: [("x", [4, 3])], outputs: ["y"], initializers: [])
        do {
            try Self.quantize(["x": F.floats([4, 3], F.noise(12, seed: 5))], model: model)
            Issue.record("expected an error")
        } catch QuantizationError.nothingToQuantize(let reason) {
            #expect(reason.contains("Relu"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func unsupportedOptionCombinationsAreRejected() {
        let data = ["x": F.floats([4, 3], F.noise(12, seed: 6))]
        var options = QuantizationOptions()
        options.weightType = .int4
        options.format = .qoperator
        #expect(throws: QuantizationError.self) { try Self.quantize(data, options: options) }
        do {
            try Self.quantize(data, options: options)
        } catch let error as QuantizationError {
            #expect(error.description.contains("int4") && error.description.contains("qoperator"))
        } catch {
            Issue.record("unexpected error \(error)")
        }

        options = QuantizationOptions()
        options.groupSize = 32
        #expect(throws: QuantizationError.self) { try Self.quantize(data, options: options) }
        options = QuantizationOptions()
        options.activationType = .int4
        #expect(throws: QuantizationError.self) { try Self.quantize(data, options: options) }
        options = QuantizationOptions()
        options.weightType = .binary
        #expect(throws: QuantizationError.self) { try Self.quantize(data, options: options) }
        #expect(throws: QuantizationError.calibrationDataRequired) {
            try Quantizer().quantize(Self.model)
        }
    }
}
