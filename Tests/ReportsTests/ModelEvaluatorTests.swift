import Foundation
import GraphIR
import ONNX
import Tensors
import Testing
import _TestSupport
@testable import Reports

// Expected figures are hand-computed (shown beside each expectation) or recomputed in the test by a separate,
// plain Double implementation of the formulas.

/// `y = x · weights` for `x` of shape [batch, rows], `weights` row-major [rows, columns].
private func matMulModel(_ weights: [Float], rows: Int, columns: Int, name: String = "ref",
                         output: String = "y", batch: Dim = .symbol("batch")) throws -> EvaluatedModel {
    var graph = Graph(name: name)
    graph.inputs = [ValueInfo(name: "x", dtype: .float32, shape: [batch, .value(rows)])]
    graph.initializers["w"] = try Tensor(shape: [rows, columns], scalars: weights)
    graph.nodes = [Node(name: "matmul", opType: "MatMul", inputs: ["x", "w"], outputs: [output])]
    graph.outputs = [ValueInfo(name: output, dtype: .float32, shape: [batch, .value(columns)])]
    return try EvaluatedModel(model: Model(graph: graph), name: name)
}

private let identity: [Float] = [1, 0, 0, 0, 1, 0, 0, 0, 1]
/// Swaps the first two columns.
private let swapFirstTwo: [Float] = [0, 1, 0, 1, 0, 0, 0, 0, 1]
private let samples: [Float] = [3, 1, 0, 1, 3, 0, 0, 1, 3, 2, 0, 1]

private func data(_ arrays: [String: Tensor]) -> EvaluationData { EvaluationData(arrays: arrays, source: "eval.npz") }

private func labelled() throws -> EvaluationData {
    data(["x": try Tensor(shape: [4, 3], scalars: samples),
          "label": try Tensor(shape: [4], scalars: [Int64](arrayLiteral: 0, 1, 2, 1))])
}

private func quickOptions(labels: String? = "label") -> EvaluationOptions {
    EvaluationOptions(batchSize: 3, labelsKey: labels, threadCount: 1, latencyIterations: 2, latencyWarmup: 0)
}

@Suite("Model evaluator")
struct ModelEvaluatorTests {
    @Test func swappedColumnsGiveHandComputedFigures() throws {
        let reference = try matMulModel(identity, rows: 3, columns: 3)
        let candidate = try matMulModel(swapFirstTwo, rows: 3, columns: 3, name: "cand")
        // Batches of 3 over 4 samples: the second batch holds one sample.
        let report = try ModelEvaluator(options: quickOptions()).evaluate(
            reference: reference, candidate: candidate, data: labelled())
        #expect(report.samples == 4)
        let output = try #require(report.outputs.first)
        // Per-sample cosines: [3,1,0]·[1,3,0] = 6/10, 6/10, [0,1,3]·[1,0,3] = 9/10, [2,0,1]·[0,2,1] = 1/5.
        #expect(abs(output.meanCosine - (0.6 + 0.6 + 0.9 + 0.2) / 4) < 1e-12)
        #expect(abs(output.worstCosine - 0.2) < 1e-12)
        #expect(output.worstSample == 3)
        // Σ ref² = 35; Σ (ref − cand)² = 8 + 8 + 2 + 8 = 26.
        #expect(abs(output.sqnrDB - 10 * log10(35.0 / 26.0)) < 1e-9)
        // argmax reference [0, 1, 2, 0], candidate [1, 0, 2, 1].
        #expect(output.argmaxAgreement == 0.25)
        // labels [0, 1, 2, 1]: reference right 3 times, candidate twice.
        let accuracy = try #require(report.accuracy.first)
        #expect(accuracy.output == "y")
        #expect(accuracy.reference == 0.75)
        #expect(accuracy.candidate == 0.5)
        #expect(abs(accuracy.dropPoints - 25) < 1e-9)
        #expect(report.reference.multiplyAccumulates?.total == 9)        // 1 · 3 · 3 per sample
        #expect(report.candidate.multiplyAccumulates?.integerShare == 0)
        #expect(report.reference.latency?.iterations == 2)
        #expect(report.speedup != nil)
        #expect(report.compressionRatio == Double(reference.fileBytes) / Double(candidate.fileBytes))
    }

    @Test func aModelExportedForBatchOneTakesTheDataOneRowAtATime() throws {
        let reference = try matMulModel(identity, rows: 3, columns: 3)
        let candidate = try matMulModel(swapFirstTwo, rows: 3, columns: 3, name: "cand", batch: .value(1))
        var options = quickOptions()
        options.measureLatency = false
        let report = try ModelEvaluator(options: options).evaluate(
            reference: reference, candidate: candidate, data: labelled())
        #expect(report.samples == 4)
        // The same per-sample cosines as with batches of 3: 0.6, 0.6, 0.9, 0.2.
        #expect(abs((report.outputs.first?.meanCosine ?? 0) - 2.3 / 4) < 1e-12)
        #expect(report.outputs.first?.worstSample == 3)
    }

    @Test func aModelAgainstItselfIsIdentical() throws {
        let reference = try matMulModel(identity, rows: 3, columns: 3)
        var options = quickOptions()
        options.measureLatency = false
        options.rowLimit = 2
        let report = try ModelEvaluator(options: options).evaluate(reference: reference, candidate: reference,
                                                                   data: labelled())
        #expect(report.samples == 2)
        #expect(report.outputs.first?.meanCosine == 1)
        #expect(report.outputs.first?.sqnrDB == .infinity)
        #expect(report.accuracy.first?.dropPoints == 0)
        #expect(report.reference.latency == nil)
        #expect(report.speedup == nil)
    }

    /// A QDQ MatMul (uint8 activations with scale 0.05 and zero point 128, int8 weights with scale 0.01)
    /// against the float MatMul with the same dequantized weights: every MAC is integer, and the fidelity
    /// figures equal those of the quantization simulated here in Double.
    @Test func qdqMatMulIsAllIntegerAndLeftForTheOracle() throws {
        let weightsInt8: [Int8] = [12, -40, 7, 100, -3, 0, -127, 55, 31, 9, 18, -66]
        let floatWeights = weightsInt8.map { Float($0) * 0.01 }
        let reference = try matMulModel(floatWeights, rows: 4, columns: 3)

        var graph = Graph(name: "qdq")
        graph.inputs = [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("batch"), .value(4)])]
        graph.initializers["x_scale"] = Tensor(scalar: Float(0.05))
        graph.initializers["x_zero"] = Tensor(scalar: UInt8(128))
        graph.initializers["w_q"] = try Tensor(shape: [4, 3], scalars: weightsInt8)
        graph.initializers["w_scale"] = Tensor(scalar: Float(0.01))
        graph.nodes = [
            Node(name: "x_q", opType: "QuantizeLinear", inputs: ["x", "x_scale", "x_zero"], outputs: ["xq"]),
            Node(name: "x_dq", opType: "DequantizeLinear", inputs: ["xq", "x_scale", "x_zero"], outputs: ["xd"]),
            Node(name: "w_dq", opType: "DequantizeLinear", inputs: ["w_q", "w_scale"], outputs: ["wd"]),
            Node(name: "matmul", opType: "MatMul", inputs: ["xd", "wd"], outputs: ["y"]),
        ]
        graph.outputs = [ValueInfo(name: "y", dtype: .float32, shape: [.symbol("batch"), .value(3)])]
        let quantized = Model(graph: graph)
        try TestSupport.keepForOracle(quantized, name: "reports-qdq-matmul")
        let candidate = try EvaluatedModel(model: quantized, name: "qdq")

        // 16 samples from a fixed linear congruential sequence in [-3, 3).
        var state: UInt32 = 12345
        let inputs: [Float] = (0..<64).map { _ in
            state = state &* 1_103_515_245 &+ 12345
            return Float(state >> 8) / Float(1 << 24) * 6 - 3
        }
        var options = quickOptions(labels: nil)
        options.measureLatency = false
        let report = try ModelEvaluator(options: options).evaluate(
            reference: reference, candidate: candidate,
            data: data(["x": try Tensor(shape: [16, 4], scalars: inputs)]))

        // Simulation: q = clamp(round_half_even(x / 0.05) + 128, 0, 255), x' = (q − 128) · 0.05.
        let scale = Float(0.05)
        let dequantized = inputs.map { x -> Float in
            let q = min(max((x / scale).rounded(.toNearestOrEven) + 128, 0), 255)
            return (q - 128) * scale
        }
        var cosines: [Double] = []
        var signal = 0.0, noise = 0.0
        for sample in 0..<16 {
            var a = [Double](repeating: 0, count: 3), b = a
            for column in 0..<3 {
                for k in 0..<4 {
                    a[column] += Double(inputs[sample * 4 + k]) * Double(floatWeights[k * 3 + column])
                    b[column] += Double(dequantized[sample * 4 + k]) * Double(floatWeights[k * 3 + column])
                }
            }
            let dot = zip(a, b).map(*).reduce(0, +)
            cosines.append(dot / (a.map { $0 * $0 }.reduce(0, +).squareRoot() * b.map { $0 * $0 }.reduce(0, +).squareRoot()))
            signal += a.map { $0 * $0 }.reduce(0, +)
            noise += zip(a, b).map { ($0 - $1) * ($0 - $1) }.reduce(0, +)
        }
        let output = try #require(report.outputs.first)
        #expect(abs(output.meanCosine - cosines.reduce(0, +) / 16) < 1e-6)
        #expect(abs(output.worstCosine - cosines.min()!) < 1e-6)
        #expect(abs(output.sqnrDB - 10 * log10(signal / noise)) < 1e-3)

        let macs = try #require(report.candidate.multiplyAccumulates)
        #expect(macs.total == 12)          // 1 · 3 outputs · 4 reduction
        #expect(macs.integer == 12)
        #expect(macs.integerShare == 1)
        #expect(report.reference.multiplyAccumulates?.integerShare == 0)
    }

    // MARK: - Errors

    @Test func missingInputNamesTheInputAndTheArrays() throws {
        let model = try matMulModel(identity, rows: 3, columns: 3)
        let bad = data(["z": try Tensor(zeros: .float32, shape: [2, 3]), "label": try Tensor(zeros: .int64, shape: [2])])
        let expected = EvaluationError.missingInput(model: "ref", input: "x", data: "eval.npz", available: ["label", "z"])
        #expect(throws: expected) {
            try ModelEvaluator(options: quickOptions()).evaluate(reference: model, candidate: model, data: bad)
        }
        #expect(expected.description.contains("no array named 'x'"))
    }

    @Test func differentOutputsAreRejected() throws {
        let reference = try matMulModel(identity, rows: 3, columns: 3)
        let candidate = try matMulModel(identity, rows: 3, columns: 3, name: "cand", output: "scores")
        let expected = EvaluationError.outputsDiffer(reference: "ref", candidate: "cand", onlyInReference: ["y"],
                                                     onlyInCandidate: ["scores"])
        #expect(throws: expected) {
            try ModelEvaluator(options: quickOptions()).evaluate(reference: reference, candidate: candidate,
                                                                 data: labelled())
        }
        #expect(expected.description == "the models' outputs differ: only ref has 'y'; only cand has 'scores'")
    }

    @Test func differentlyShapedOutputsAreRejected() throws {
        let reference = try matMulModel(identity, rows: 3, columns: 3)
        let candidate = try matMulModel([Float](repeating: 0, count: 6), rows: 3, columns: 2, name: "cand")
        #expect(throws: EvaluationError.outputShapeMismatch(output: "y", reference: [3, 3], candidate: [3, 2])) {
            try ModelEvaluator(options: quickOptions(labels: nil)).evaluate(
                reference: reference, candidate: candidate, data: labelled())
        }
    }

    @Test func badLabelsKeyNamesTheKeyAndTheArrays() throws {
        let model = try matMulModel(identity, rows: 3, columns: 3)
        #expect(throws: EvaluationError.missingLabels(key: "labels", data: "eval.npz", available: ["label", "x"])) {
            try ModelEvaluator(options: quickOptions(labels: "labels")).evaluate(
                reference: model, candidate: model, data: labelled())
        }
    }

    @Test func unusableLabelsAreRejected() throws {
        let model = try matMulModel(identity, rows: 3, columns: 3)
        let x = try Tensor(shape: [4, 3], scalars: samples)
        func reason(_ labels: Tensor) -> String? {
            do {
                _ = try ModelEvaluator(options: quickOptions()).evaluate(
                    reference: model, candidate: model, data: data(["x": x, "label": labels]))
                return nil
            } catch EvaluationError.invalidLabels(let key, _, let reason) {
                #expect(key == "label")
                return reason
            } catch {
                Issue.record("unexpected error \(error)")
                return nil
            }
        }
        let floats = reason(try Tensor(shape: [4], scalars: [Float](arrayLiteral: 0, 1, 2, 1)))
        #expect(floats?.contains("integer class indices, not float32") == true)
        let outOfRange = reason(try Tensor(shape: [4], scalars: [Int64](arrayLiteral: 0, 1, 2, 3)))
        #expect(outOfRange == "holds 3 at row 3, outside the 3 classes (0..<3) of output 'y'")
        let tooFew = reason(try Tensor(shape: [3], scalars: [Int64](arrayLiteral: 0, 1, 2)))
        #expect(tooFew?.contains("has shape [3], but the inputs have 4 rows") == true)
        let wrongShape = reason(try Tensor(zeros: .int64, shape: [4, 2]))
        #expect(wrongShape?.contains("fit no output") == true)
    }

    @Test func inputsWithDifferentRowCountsAndEmptyDataAreRejected() throws {
        var graph = Graph()
        graph.inputs = [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("n"), .value(2)]),
                        ValueInfo(name: "z", dtype: .float32, shape: [.symbol("n"), .value(2)])]
        graph.nodes = [Node(name: "add", opType: "Add", inputs: ["x", "z"], outputs: ["y"])]
        graph.outputs = [ValueInfo(name: "y")]
        let model = try EvaluatedModel(model: Model(graph: graph), name: "add")
        let uneven = data(["x": try Tensor(zeros: .float32, shape: [4, 2]), "z": try Tensor(zeros: .float32, shape: [3, 2])])
        #expect(throws: EvaluationError.rowCountMismatch(data: "eval.npz", array: "z", rows: 3, expected: 4)) {
            try ModelEvaluator(options: quickOptions(labels: nil)).evaluate(reference: model, candidate: model,
                                                                            data: uneven)
        }
        var options = quickOptions(labels: nil)
        options.rowLimit = 0
        let even = data(["x": try Tensor(zeros: .float32, shape: [4, 2]), "z": try Tensor(zeros: .float32, shape: [4, 2])])
        #expect(throws: EvaluationError.emptyData(data: "eval.npz")) {
            try ModelEvaluator(options: options).evaluate(reference: model, candidate: model, data: even)
        }
    }

    @Test func aModelTheRuntimeCannotRunIsNamed() throws {
        let reference = try matMulModel(identity, rows: 3, columns: 3)
        var graph = reference.model.graph
        graph.nodes[0].opType = "NoSuchOperator"
        let broken = try EvaluatedModel(model: Model(graph: graph), name: "broken.onnx")
        do {
            _ = try ModelEvaluator(options: quickOptions()).evaluate(reference: reference, candidate: broken,
                                                                     data: labelled())
            Issue.record("expected an error")
        } catch EvaluationError.modelFailed(let model, let reason) {
            #expect(model == "broken.onnx")
            #expect(reason.contains("NoSuchOperator"))
        }
    }

    @Test func modelsAndDataReadFromFiles() throws {
        let folder = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let reference = try matMulModel(identity, rows: 3, columns: 3)
        let url = folder.appendingPathComponent("ref.onnx")
        try reference.model.write(to: url)
        let dataURL = folder.appendingPathComponent("eval.npz")
        try NPZ.write([("x", try Tensor(shape: [4, 3], scalars: samples))], to: dataURL)
        let loaded = try EvaluatedModel(contentsOf: url)
        #expect(loaded.fileBytes == (try Data(contentsOf: url)).count)
        #expect(loaded.name == url.path)
        let report = try ModelEvaluator(options: quickOptions(labels: nil)).evaluate(
            reference: loaded, candidate: loaded, data: EvaluationData(contentsOf: dataURL))
        #expect(report.data == dataURL.path)
        #expect(report.accuracy.isEmpty)
    }
}

/// `h = x · w1`, `y = h · w2` for x of shape [batch, 2].
private func twoLayerModel(first: [Float], second: [Float], name: String) throws -> EvaluatedModel {
    var graph = Graph(name: name)
    graph.inputs = [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("batch"), .value(2)])]
    graph.initializers["w1"] = try Tensor(shape: [2, 2], scalars: first)
    graph.initializers["w2"] = try Tensor(shape: [2, 2], scalars: second)
    graph.nodes = [Node(name: "first", opType: "MatMul", inputs: ["x", "w1"], outputs: ["h"]),
                   Node(name: "second", opType: "MatMul", inputs: ["h", "w2"], outputs: ["y"])]
    graph.outputs = [ValueInfo(name: "y", dtype: .float32, shape: [.symbol("batch"), .value(2)])]
    return try EvaluatedModel(model: Model(graph: graph), name: name)
}

@Suite("Per-layer error")
struct LayerErrorTests {
    @Test func theNodeThatAddsNoiseIsSingledOut() throws {
        let reference = try twoLayerModel(first: [1, 0, 0, 1], second: [1, 0, 0, 1], name: "ref")
        let candidate = try twoLayerModel(first: [1, 0, 0, 1.1], second: [1, 0, 0, 1], name: "cand")
        let rows = data(["x": try Tensor(shape: [3, 2], scalars: [Float](arrayLiteral: 3, 1, 0, 1, 2, 2))])
        let layers = try ModelEvaluator(options: quickOptions(labels: nil)).layerErrors(
            reference: reference, candidate: candidate, data: rows, rows: 2)
        #expect(layers.map(\.name) == ["h", "y"])
        let first = layers[0], second = layers[1]
        #expect(first.node == "first" && first.opType == "MatMul")
        #expect(first.fidelity.samples == 2)                      // rows: 2 of the 3
        // h: reference [3, 1], [0, 1]; candidate [3, 1.1], [0, 1.1]: signal 11, noise 2 · 0.1².
        let expected = 10 * log10(11.0 / 0.02)
        #expect(abs(first.fidelity.sqnrDB - expected) < 1e-4)
        #expect(first.inputSQNRDB == .infinity)                   // x and w1 are exact in both models
        #expect(abs(first.addedNoiseDB! - 10 * log10(0.02 / 11)) < 1e-4)
        // y = h in both: no noise of its own.
        #expect(abs(second.inputSQNRDB! - expected) < 1e-4)
        #expect(second.addedNoiseDB == -.infinity)
        let lines = EvaluationReport.formattedLayers(layers)
        #expect(lines.count == 2 && lines[1].contains("first (MatMul)"))
    }

    @Test func tooFewRowsIsAnError() throws {
        let model = try twoLayerModel(first: [1, 0, 0, 1], second: [1, 0, 0, 1], name: "ref")
        #expect(throws: EvaluationError.self) {
            try ModelEvaluator(options: quickOptions(labels: nil)).layerErrors(
                reference: model, candidate: model, data: labelled(), rows: 0)
        }
    }
}

@Suite("Per-layer error with a position mask")
struct LayerMaskTests {
    @Test func onlyValidPositionsAlongTheMatchingAxisAreKept() throws {
        // [1, 2 heads, 3 positions, 2]: the mask [1, 0, 1] keeps positions 0 and 2 of each head.
        let values = try Tensor(shape: [1, 2, 3, 2], scalars: (0..<12).map(Float.init))
        let (kept, _) = try ModelEvaluator.validElements(values, values, valid: [true, false, true])
        #expect(kept.shape == [1, 8])
        #expect(kept.scalars(as: Float.self) == [0, 1, 4, 5, 6, 7, 10, 11])
        // Attention scores [1, 1, 3, 3]: queries and keys both masked, positions (0,0) (0,2) (2,0) (2,2).
        let scores = try Tensor(shape: [1, 1, 3, 3], scalars: (0..<9).map(Float.init))
        let (pairs, _) = try ModelEvaluator.validElements(scores, scores, valid: [true, false, true])
        #expect(pairs.scalars(as: Float.self) == [0, 2, 6, 8])
        // No axis of the mask's length: every element counts.
        let (all, _) = try ModelEvaluator.validElements(values, values, valid: [true, false, true, true, false])
        #expect(all.shape == [1, 12])
    }

    @Test func paddedNoiseIsLeftOut() throws {
        let reference = try twoLayerModel(first: [1, 0, 0, 1], second: [1, 0, 0, 1], name: "ref")
        let candidate = try twoLayerModel(first: [1, 0, 0, 1.1], second: [1, 0, 0, 1], name: "cand")
        // Only column 1 is perturbed; masking it out leaves identical values.
        let rows = data(["x": try Tensor(shape: [2, 2], scalars: [Float](arrayLiteral: 3, 1, 2, 2)),
                         "mask": try Tensor(shape: [2, 2], scalars: [Int64](arrayLiteral: 1, 0, 1, 0))])
        let evaluator = ModelEvaluator(options: quickOptions(labels: nil))
        let masked = try evaluator.layerErrors(reference: reference, candidate: candidate, data: rows, rows: 2,
                                               validPositions: "mask")
        #expect(masked.allSatisfy { $0.fidelity.sqnrDB == .infinity })
        #expect(throws: EvaluationError.self) {
            try evaluator.layerErrors(reference: reference, candidate: candidate, data: rows, rows: 2, validPositions: "nope")
        }
    }
}
