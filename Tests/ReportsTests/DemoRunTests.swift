import Foundation
import Testing
import _TestSupport
@testable import Reports

/// The bundled demo files (scripts/make_digits_cnn.py), read from the source tree.
private let demoFolder = TestSupport.packageRoot.appendingPathComponent("Sources/swiftquant/Resources/demo")

private func bundledDemo(variants: [DemoRun.Variant], rows: Int) -> DemoRun {
    DemoRun(model: demoFolder.appendingPathComponent("digits-cnn.onnx"),
            calibration: demoFolder.appendingPathComponent("digits-calib.npz"),
            test: demoFolder.appendingPathComponent("digits-test.npz"), variants: variants, threadCount: 2,
            latencyIterations: 1, rowLimit: rows)
}

@Suite("Demo")
struct DemoRunTests {
    /// The float row on the first 100 test images: ONNX Runtime 1.31 classifies all 100 correctly
    /// (`(session.run(None, {"image": image[:100]})[0].argmax(1) == label[:100]).sum()` → 100).
    /// Static int8 must stay within 0.5 points of it (issue 4); until static quantization lands on
    /// this branch its row carries the "not implemented" error, recorded as a known issue.
    @Test func floatRowAndStaticInt8() throws {
        let result = try bundledDemo(variants: [DemoRun.standardVariants[0]], rows: 100).run()
        #expect(result.samples == 100)
        #expect(result.rows.map(\.mode) == ["fp32", "static int8"])
        let float = result.rows[0]
        #expect(float.accuracy == 1)
        #expect(float.compressionRatio == 1)
        #expect(float.speedup == 1)
        #expect(float.fileBytes == (try Data(contentsOf: demoFolder.appendingPathComponent("digits-cnn.onnx"))).count)
        #expect(float.integerShare == 0)

        let quantized = result.rows[1]
        if let error = quantized.error, error.contains("not implemented yet") {
            withKnownIssue("static quantization has not landed on this branch") { Issue.record(Comment(rawValue: error)) }
            #expect(result.hasFailures)
            return
        }
        #expect(quantized.error == nil)
        #expect((quantized.accuracyDropPoints ?? .infinity) <= 0.5)
        #expect((quantized.integerShare ?? 0) > 0.9)
        // The bundled CNN has 25k weights: 22.9 KB of int8 codes, plus per-channel weight scales, int32 bias
        // codes and their scales (2.9 KB each) and 137 nodes. Short generated names bring the QDQ file to
        // 48.8 KB (2.36x; it was 86.9 KB, 1.32x, with names derived from the exporter's long ones).
        #expect((quantized.compressionRatio ?? 0) > 2.3)
    }

    @Test func tableShowsEveryRowAndErrors() {
        let result = DemoResult(
            rows: [
                DemoRun.Row(mode: "fp32", fileBytes: 114_917, compressionRatio: 1, accuracy: 0.9907,
                            accuracyDropPoints: nil, meanCosine: 1, integerShare: 0, latencyMs: 0.5, speedup: 1,
                            error: nil),
                DemoRun.Row(mode: "static int8", fileBytes: 40_000, compressionRatio: 2.87, accuracy: 0.9889,
                            accuracyDropPoints: 0.18, meanCosine: 0.999, integerShare: 0.98, latencyMs: 0.25,
                            speedup: 2, error: nil),
                DemoRun.Row(mode: "weight-only int4", error: "nothing to quantize"),
            ],
            samples: 540, threads: 2, latencyBatchSize: 1)
        let lines = result.formattedTable().split(separator: "\n").map(String.init)
        #expect(lines[0].hasPrefix("mode"))
        #expect(lines[2].hasPrefix("fp32"))
        #expect(lines[2].contains("114.9 KB") && lines[2].contains("99.07%") && lines[2].contains("1.00x"))
        #expect(lines[3].contains("2.87x") && lines[3].contains("+0.18") && lines[3].contains("98%"))
        #expect(lines[4] == "weight-only int4  error: nothing to quantize")
        #expect(result.hasFailures)
        // Columns line up: every figure row is as wide as the header.
        #expect(lines[2].count == lines[0].count && lines[3].count == lines[0].count)
    }
}
