import Foundation
import GraphIR
import ONNX
import Quantization
import Runtime
import Tensors
import Testing
import _TestSupport

/// Small graphs, runs and fidelity measures shared by the dynamic, weight-only and FP16 suites.
enum WeightModeSupport {
    static let models = TestSupport.fixtures.appendingPathComponent("models")

    /// A float32 tensor.
    static func floats(_ shape: [Int], _ values: [Float]) throws -> Tensor { try Tensor(shape: shape, scalars: values) }

    /// Deterministic pseudo-random floats in [−scale, scale] (a linear congruential sequence).
    static func pseudoRandom(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var state = seed &* 6364136223846793005 &+ 1442695040888963407
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
        }
    }

    /// A one-node model `y = op(x, weight…)` with typed float32 input and output.
    static func singleNodeModel(_ opType: String, input: [Int], output: [Int]?, weights: [(String, Tensor)],
                                attributes: [String: Attribute] = [:], opset: Int = 17) -> Model {
        var node = Node(name: opType.lowercased(), opType: opType, inputs: ["x"] + weights.map(\.0), outputs: ["y"])
        for (key, value) in attributes { node.attributes[key] = value }
        var graph = Graph(name: "g", nodes: [node],
                          inputs: [ValueInfo(name: "x", dtype: .float32, shape: input.map { .value($0) })],
                          outputs: [ValueInfo(name: "y", dtype: .float32, shape: output?.map { .value($0) })])
        for (name, tensor) in weights { graph.initializers[name] = tensor }
        return Model(graph: graph, opsetImports: ["": opset])
    }

    /// A committed fixture model and the quantized model `options` make of it, read back from ONNX and left
    /// for the ONNX Runtime check as `<prefix>-<file>`.
    static func quantizedFixture(_ file: String, _ options: QuantizationOptions, prefix: String) throws
        -> (original: Model, result: QuantizationResult, quantized: Model) {
        let original = try Model(contentsOf: models.appendingPathComponent(file + ".onnx"))
        let result = try Quantizer(options: options).quantize(original)
        return (original, result, try roundTrip(result.model, name: prefix + "-" + file))
    }

    /// The inputs committed for a fixture model (`mixed-cnn-input.npz` serves both CNNs).
    static func fixtureInput(_ file: String) throws -> [String: Tensor] {
        try NPZ.readDictionary(models.appendingPathComponent((file.hasPrefix("mixed-cnn") ? "mixed-cnn" : file) + "-input.npz"))
    }

    /// Checks that `mode` refuses a model without weights (a lone Relu) with `nothingToQuantize`.
    static func expectNothingToQuantize(_ mode: QuantizationMode) throws {
        let relu = singleNodeModel("Relu", input: [2, 4], output: [2, 4], weights: [])
        do {
            _ = try Quantizer(options: QuantizationOptions(mode: mode)).quantize(relu)
            Issue.record("\(mode.rawValue): a model without weights was quantized")
        } catch let error as QuantizationError {
            guard case .nothingToQuantize = error else { Issue.record("\(mode.rawValue): unexpected \(error)"); return }
        }
    }

    /// Runs `model` single-threaded.
    static func run(_ model: Model, _ feeds: [String: Tensor]) throws -> [String: Tensor] {
        try Session(model: model, options: SessionOptions(threadCount: 1)).run(feeds)
    }

    /// Writes `model` as ONNX and reads it back (so the encoding of what a mode wrote is exercised), and
    /// leaves it for the ONNX Runtime check under `name`.
    static func roundTrip(_ model: Model, name: String) throws -> Model {
        try TestSupport.keepForOracle(model, name: name)
        let directory = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("model.onnx")
        try model.write(to: url)
        return try Model(contentsOf: url)
    }

    /// Size in bytes of `model` written as ONNX.
    static func fileSize(_ model: Model) throws -> Int {
        let directory = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("model.onnx")
        try model.write(to: url)
        return try FileManager.default.attributesOfItem(atPath: url.path)[.size] as! Int
    }

    /// Cosine similarity of two equally long vectors, in double.
    static func cosine(_ a: [Float], _ b: [Float]) -> Double {
        var dot = 0.0, na = 0.0, nb = 0.0
        for (x, y) in zip(a, b) {
            dot += Double(x) * Double(y)
            na += Double(x) * Double(x)
            nb += Double(y) * Double(y)
        }
        return dot / max((na * nb).squareRoot(), .leastNormalMagnitude)
    }

    /// Cosine similarity row by row of two `[rows, …]` float32 tensors.
    static func rowCosines(_ a: Tensor, _ b: Tensor) -> [Double] {
        let rows = a.shape.first ?? 1
        let width = a.count / max(rows, 1)
        let x = a.scalars(as: Float.self), y = b.scalars(as: Float.self)
        return (0..<rows).map { r in
            cosine(Array(x[(r * width)..<((r + 1) * width)]), Array(y[(r * width)..<((r + 1) * width)]))
        }
    }

    /// The op types of a graph's nodes, in order.
    static func opTypes(_ model: Model) -> [String] { model.graph.nodes.map(\.opType) }

    /// The first `rows` samples of every array.
    static func firstRows(_ arrays: [String: Tensor], _ rows: Int) throws -> [String: Tensor] {
        try arrays.mapValues { try $0.rows(0..<min(rows, $0.shape[0])) }
    }

    /// MiniLM's model and evaluation data, when the shared models are present.
    static func miniLM() throws -> (model: Model, url: URL, eval: [String: Tensor])? {
        guard let shared = TestSupport.sharedModels else { return nil }
        let folder = shared.appendingPathComponent("minilm-l6")
        let url = folder.appendingPathComponent("minilm-l6.onnx")
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        let eval = try NPZ.readDictionary(folder.appendingPathComponent("minilm-eval.npz"))
        return (try Model(contentsOf: url), url, eval)
    }

    /// Mean and worst row cosine of the MiniLM embedding of `candidate` against `reference` on `rows`
    /// evaluation rows.
    static func miniLMFidelity(reference: Model, candidate: Model, eval: [String: Tensor], rows: Int) throws
        -> (mean: Double, worst: Double) {
        let feeds = try firstRows(eval, rows)
        let expected = try Session(model: reference).run(feeds)["sentence_embedding"]!
        let actual = try Session(model: candidate).run(feeds)["sentence_embedding"]!
        let cosines = rowCosines(expected, actual)
        return (cosines.reduce(0, +) / Double(cosines.count), cosines.min() ?? 0)
    }
}
