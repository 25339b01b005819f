import Foundation
import Tensors
import Testing
@testable import Reports

// Expected values were computed with numpy 2 in float64 (the script is in each test's comment) or by hand.

/// Reference and candidate rows used by several tests (3 samples of 4 values, exact in float32).
private let referenceRows: [Float] = [1, 2, 3, -1, 0, -1, 4, 2, 3, 3, -2, 0.5]
private let candidateRows: [Float] = [1.1, 1.9, 3.2, -0.7, 0.5, -1, 3.5, 2.5, 2, 3.5, -2, 1]

@Suite("Fidelity metrics")
struct FidelityMetricsTests {
    // r, c as above (float32 cast to float64):
    // cos = (r*c).sum(1) / norm(r, axis=1) / norm(c, axis=1) -> [0.99525132, 0.98205723, 0.96577247]
    // 10*log10((r**2).sum() / ((r-c)**2).sum()) -> 13.850846815149577; abs(r-c).max() -> 1.0
    @Test func matchesNumpyOnThreeSamples() throws {
        var accumulator = OutputFidelityAccumulator(name: "y")
        try accumulator.add(reference: Tensor(shape: [3, 4], scalars: referenceRows),
                            candidate: Tensor(shape: [3, 4], scalars: candidateRows))
        let result = accumulator.result
        #expect(result.samples == 3)
        #expect(abs(result.meanCosine - 0.9810270055855623) < 1e-12)
        #expect(abs(result.worstCosine - 0.9657724666656556) < 1e-12)
        #expect(result.worstSample == 2)
        #expect(abs(result.sqnrDB - 13.850846815149577) < 1e-9)
        #expect(abs(result.maxAbsError - 1.0) < 1e-6)
        // argmax: reference [2, 2, 0], candidate [2, 2, 1]
        #expect(result.argmaxAgreement == 2.0 / 3.0)
        #expect(result.nonFiniteSamples == 0)
    }

    @Test func batchesGiveTheSameFiguresAsOneRun() throws {
        var whole = OutputFidelityAccumulator(name: "y")
        try whole.add(reference: Tensor(shape: [3, 4], scalars: referenceRows),
                      candidate: Tensor(shape: [3, 4], scalars: candidateRows))
        var split = OutputFidelityAccumulator(name: "y")
        try split.add(reference: Tensor(shape: [1, 4], scalars: Array(referenceRows[0..<4])),
                      candidate: Tensor(shape: [1, 4], scalars: Array(candidateRows[0..<4])))
        try split.add(reference: Tensor(shape: [2, 4], scalars: Array(referenceRows[4...])),
                      candidate: Tensor(shape: [2, 4], scalars: Array(candidateRows[4...])))
        #expect(abs(split.result.meanCosine - whole.result.meanCosine) < 1e-12)
        #expect(split.result.worstSample == 2)
        #expect(abs(split.result.sqnrDB - whole.result.sqnrDB) < 1e-12)
        #expect(split.result.argmaxAgreement == whole.result.argmaxAgreement)
    }

    @Test func cosineOfZeroVectorsAndOpposites() {
        func cosine(_ a: [Float], _ b: [Float]) -> Double {
            a.withUnsafeBufferPointer { x in b.withUnsafeBufferPointer { y in FidelityMetrics.cosineSimilarity(x, y) } }
        }
        #expect(cosine([0, 0], [0, 0]) == 1)
        #expect(cosine([0, 0], [1, 0]) == 0)
        #expect(cosine([1, 2], [-1, -2]) == -1)
        #expect(cosine([3, 4], [4, 3]) == 24.0 / 25.0)
    }

    @Test func sqnrEdgeCases() {
        #expect(FidelityMetrics.sqnrDB(signalPower: 4, noisePower: 0) == .infinity)
        #expect(FidelityMetrics.sqnrDB(signalPower: 0, noisePower: 1) == -.infinity)
        #expect(abs(FidelityMetrics.sqnrDB(signalPower: 1000, noisePower: 1) - 30) < 1e-12)
    }

    @Test func argmaxTakesTheFirstOfTiesAndAnyNaN() {
        func argmax(_ values: [Float]) -> Int { values.withUnsafeBufferPointer(FidelityMetrics.argmax) }
        #expect(argmax([1, 5, 5, 2]) == 1)           // numpy.argmax([1, 5, 5, 2]) -> 1
        #expect(argmax([1, .nan, 7]) == 1)           // numpy.argmax([1, nan, 7]) -> 1
        #expect(argmax([-3, -1, -2]) == 1)
    }

    @Test func nonFiniteSamplesCountAsCosineZeroAndStayOutOfSQNR() throws {
        var accumulator = OutputFidelityAccumulator(name: "y")
        try accumulator.add(reference: Tensor(shape: [2, 2], scalars: [Float](arrayLiteral: 1, 0, 3, 4)),
                            candidate: Tensor(shape: [2, 2], scalars: [Float](arrayLiteral: .nan, 0, 3, 4)))
        let result = accumulator.result
        #expect(result.nonFiniteSamples == 1)
        #expect(result.worstCosine == 0)
        #expect(result.worstSample == 0)
        #expect(result.meanCosine == 0.5)
        #expect(result.sqnrDB == .infinity)   // the finite sample is identical
    }

    @Test func argmaxRunsAlongTheLastAxisAtEveryPosition() throws {
        // [1 sample, 2 positions, 3 classes]: positions agree, then differ.
        var accumulator = OutputFidelityAccumulator(name: "y")
        try accumulator.add(reference: Tensor(shape: [1, 2, 3], scalars: [Float](arrayLiteral: 0, 1, 0, 1, 0, 0)),
                            candidate: Tensor(shape: [1, 2, 3], scalars: [Float](arrayLiteral: 0, 2, 0, 0, 0, 1)))
        #expect(accumulator.result.argmaxAgreement == 0.5)
        var vector = OutputFidelityAccumulator(name: "v")
        try vector.add(reference: Tensor(shape: [2], scalars: [Float](arrayLiteral: 1, 2)),
                       candidate: Tensor(shape: [2], scalars: [Float](arrayLiteral: 1, 2)))
        #expect(vector.result.argmaxAgreement == nil)
    }

    @Test func shapeMismatchIsATypedError() throws {
        var accumulator = OutputFidelityAccumulator(name: "logits")
        #expect(throws: EvaluationError.outputShapeMismatch(output: "logits", reference: [2, 3], candidate: [2, 4])) {
            try accumulator.add(reference: Tensor(zeros: .float32, shape: [2, 3]),
                                candidate: Tensor(zeros: .float32, shape: [2, 4]))
        }
    }

    @Test func accuracyCountsArgmaxHits() throws {
        // scores rows: argmax 2, 0 (tie 0/1 -> 0), 1; labels 2, 1, 1 -> 2 correct.
        let scores: [Float] = [0, 1, 3, 5, 5, 0, -1, 2, 1]
        let correct = scores.withUnsafeBufferPointer {
            AccuracyAccumulator.correctPredictions(scores: $0, classes: 3, labels: [2, 1, 1])
        }
        #expect(correct == 2)
        var accumulator = AccuracyAccumulator(output: "logits", labelsKey: "label")
        let reference = try Tensor(shape: [3, 3], scalars: scores)
        let candidate = try Tensor(shape: [3, 3], scalars: [Float](arrayLiteral: 0, 1, 3, 0, 5, 0, 2, 1, 1))
        try accumulator.add(reference: reference, candidate: candidate, labels: [2, 1, 1])
        #expect(accumulator.result.reference == 2.0 / 3.0)
        #expect(accumulator.result.candidate == 2.0 / 3.0)   // argmax 2, 1, 0 -> hits at 0 and 1
        #expect(abs(accumulator.result.dropPoints) < 1e-12)
        #expect(AccuracyAccumulator.labels([4], fit: [4, 10]))
        #expect(!AccuracyAccumulator.labels([4], fit: [4]))
        #expect(AccuracyAccumulator.labels([4, 7], fit: [4, 7, 30]))
    }

    @Test func reportJSONRoundTripsInfiniteSQNR() throws {
        let fidelity = OutputFidelity(name: "y", samples: 2, meanCosine: 1, worstCosine: 1, worstSample: 0,
                                      sqnrDB: .infinity, maxAbsError: 0, argmaxAgreement: 1, nonFiniteSamples: 0)
        let report = EvaluationReport(
            reference: .init(name: "a.onnx", fileBytes: 400), candidate: .init(name: "b.onnx", fileBytes: 100),
            data: "d.npz", samples: 2, outputs: [fidelity], accuracy: [])
        #expect(report.compressionRatio == 4)
        #expect(report.speedup == nil)
        let json = try report.json()
        #expect(String(decoding: json, as: UTF8.self).contains("\"sqnr_db\" : \"inf\""))
        #expect(try EvaluationReport.decode(json) == report)
        #expect(report.formatted().contains("inf dB (identical)"))
    }

    @Test func summaryListsWhatStayedFloat() {
        let macs = MultiplyAccumulateCount(nodes: [
            .init(name: "qkv", opType: "MatMul", macs: 3_000_000, integer: true),
            .init(name: "scores", opType: "MatMul", macs: 20_000, integer: false),
            .init(name: "head", opType: "Gemm", macs: 500, integer: false),
        ])
        #expect(macs.total == 3_020_500)
        #expect(abs(macs.integerShare - 3_000_000.0 / 3_020_500.0) < 1e-15)
        let report = EvaluationReport(
            reference: .init(name: "a.onnx", fileBytes: 400),
            candidate: .init(name: "b.onnx", fileBytes: 100, multiplyAccumulates: macs),
            data: "d.npz", samples: 1, outputs: [], accuracy: [])
        let text = report.formatted()
        #expect(text.contains("integer MACs (candidate): 99.3% of 3.02 M per sample: MatMul 3.02 M (99% integer), Gemm 500 (0% integer)"))
        #expect(text.contains("float in the candidate: scores (20.0 K), head (500)"))
    }
}
