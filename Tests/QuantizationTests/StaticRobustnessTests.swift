import Foundation
import GraphIR
import QuantCore
import Quantization
import Tensors
import Testing
import _TestSupport

/// Tensors that cannot be quantized as they are: non-finite ranges, masking constants, and activations
/// whose quantization error is far out of line (clipped, widened or kept float), plus smoothing.
@Suite struct StaticRobustnessTests {
    typealias F = StaticFixtures

    /// `s = x + m` (m an additive attention mask) → MatMul, `d = x / 0` → MatMul, and `x` → MatMul.
    @Test func maskingConstantsAndNonFiniteRangesStayFloatAndTheReportSaysWhy() throws {
        let model = F.model([
            Node(name: "mask", opType: "Add", inputs: ["x", "m"], outputs: ["s"]),
            Node(name: "masked", opType: "MatMul", inputs: ["s", "w"], outputs: ["y1"]),
            Node(name: "divide", opType: "Div", inputs: ["x", "zero"], outputs: ["d"]),
            Node(name: "infinite", opType: "MatMul", inputs: ["d", "w"], outputs: ["y2"]),
            Node(name: "plain", opType: "MatMul", inputs: ["x", "w"], outputs: ["y3"]),
        ], inputs: [("x", [8, 4]), ("m", [8, 4])], outputs: ["y1", "y2", "y3"], initializers: [
            ("w", F.floats([4, 3], F.noise(12, seed: 1))), ("zero", F.floats([], [0])),
        ])
        let mask = (0..<32).map { $0 % 4 == 3 ? -Float.greatestFiniteMagnitude : 0 }
        let data = ["x": F.floats([8, 4], F.noise(32, seed: 2)), "m": F.floats([8, 4], mask)]
        let result = try F.quantize(model, data, name: "masking")
        let report = result.report

        let m = try #require(report.tensor("m"))
        #expect(m.action == .keptFloat && m.reason?.contains("masking constant") == true)
        #expect(report.tensor("s")?.action == .keptFloat)
        let d = try #require(report.tensor("d"))
        #expect(d.action == .keptFloat && d.reason?.contains("not finite") == true)
        #expect(report.node("masked")?.quantized == false)
        #expect(report.node("infinite")?.quantized == false)
        #expect(report.node("plain")?.quantized == true)
        #expect(report.tensor("x")?.action == .quantized)
        let graph = result.model.graph
        #expect(graph.readers(of: "s").map(\.opType) == ["MatMul"])
        #expect(graph.readers(of: "d").map(\.opType) == ["MatMul"])
    }

    /// One value at 200 among 16k·4 values in [−1, 1): min/max steps of 0.79 give ≈ 12.6 dB; clipping
    /// loses the outlier, which carries two thirds of the energy (≈ 2 dB); 16-bit codes give ≈ 60 dB.
    static func outlierModel() -> (Model, [String: Tensor]) {
        let rows = 16_384
        var values = F.noise(rows * 4, seed: 3)
        values[1234] = 200
        let model = F.model([Node(name: "mm", opType: "MatMul", inputs: ["x", "w"], outputs: ["y"]),
                             Node(name: "other", opType: "MatMul", inputs: ["z", "w"], outputs: ["y2"])],
                            inputs: [("x", [rows, 4]), ("z", [rows, 4])], outputs: ["y", "y2"],
                            initializers: [("w", F.floats([4, 3], F.noise(12, seed: 4)))])
        return (model, ["x": F.floats([rows, 4], values), "z": F.floats([rows, 4], F.noise(rows * 4, seed: 5))])
    }

    @Test func anActivationFarOutOfLineIsWidenedTo16Bits() throws {
        let (model, data) = Self.outlierModel()
        var options = QuantizationOptions()
        options.smoothing = false
        let result = try F.quantize(model, data, options, name: "outlier-widened")
        let x = try #require(result.report.tensor("x"))
        #expect(x.action == .widened && x.type == "uint16")
        #expect((x.sqnrDB ?? 0) > 40)
        #expect(x.reason?.contains("SQNR") == true)
        #expect(result.model.opsetVersion(domain: "") == 21)
        let q = try #require(result.model.graph.readers(of: "x").first { $0.opType == "QuantizeLinear" })
        #expect(result.model.graph.constantValue(named: q.inputs[2])?.dtype == .uint16)
        #expect(result.report.multiplyAccumulates?.notInteger8.map(\.name) == ["mm"])
    }

    @Test func withoutWiderCodesTheOutlierStaysFloat() throws {
        let (model, data) = Self.outlierModel()
        var options = QuantizationOptions()
        options.smoothing = false
        options.format = .qoperator
        let result = try F.quantize(model, data, options, name: "outlier-float")
        let x = try #require(result.report.tensor("x"))
        #expect(x.action == .keptFloat && x.reason?.contains("SQNR") == true)
        #expect(result.report.node("mm")?.quantized == false)
        #expect(result.report.node("other")?.quantized == true)
    }

    /// One value at 150 among 4M values in [−1, 1): min/max gives ≈ 10.6 dB; the minimum-squared-error clip
    /// (near 23, where the bulk's rounding error balances the outlier's clipping error) gives ≈ 19 dB.
    @Test func anActivationWithARareFarValueIsClipped() throws {
        let rows = 1 << 20
        var values = F.noise(rows * 4, seed: 6)
        values[77] = 150
        let model = F.model([Node(name: "mm", opType: "MatMul", inputs: ["x", "w"], outputs: ["y"])],
                            inputs: [("x", [rows, 4])], outputs: ["y"],
                            initializers: [("w", F.floats([4, 3], F.noise(12, seed: 7)))])
        var options = QuantizationOptions()
        options.smoothing = false
        options.calibrationBatchSize = rows
        let result = try F.quantize(model, ["x": F.floats([rows, 4], values)], options, name: "outlier-clipped")
        let x = try #require(result.report.tensor("x"))
        #expect(x.action == .clipped)
        #expect((x.sqnrDB ?? 0) > 15)
        let range = try #require(x.range)
        #expect(range[1] > 10 && range[1] < 40)
    }

    /// One input channel 100× larger than the others: smoothing moves it into the weight rows, the
    /// QuantizeLinear gets a per-channel scale on the last axis, and the output gets closer to float.
    @Test func smoothingMovesAnOutlierChannelIntoTheWeights() throws {
        let rows = 64, channels = 8
        var values = F.noise(rows * channels, seed: 8)
        for r in 0..<rows { values[r * channels + 2] *= 100 }
        let x = F.floats([rows, channels], values)
        let model = F.model([Node(name: "mm", opType: "MatMul", inputs: ["x", "w"], outputs: ["y"])],
                            inputs: [("x", [rows, channels])], outputs: ["y"],
                            initializers: [("w", F.floats([channels, 4], F.noise(channels * 4, seed: 9)))])
        let smoothed = try F.quantize(model, ["x": x], name: "smoothing")
        let decision = try #require(smoothed.report.tensor("x"))
        #expect(decision.smoothingAlpha != nil)
        let q = try #require(smoothed.model.graph.readers(of: "x").first { $0.opType == "QuantizeLinear" })
        #expect(q.attributes["axis"]?.intValue == -1)
        #expect(smoothed.model.graph.floats(q.inputs[1]).count == channels)

        var options = QuantizationOptions()
        options.smoothing = false
        let plain = try F.quantize(model, ["x": x], options, name: "no-smoothing")
        let expected = try F.run(model, ["x": x])["y"]!.floatArray()
        func error(_ result: QuantizationResult) throws -> Double {
            let actual = try F.run(result.model, ["x": x])["y"]!.floatArray()
            return zip(expected, actual).reduce(0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
        }
        #expect(try error(smoothed) < 0.5 * error(plain))
    }
}
