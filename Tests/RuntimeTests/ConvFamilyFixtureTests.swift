import Foundation
import GraphIR
import ONNX
import Runtime
import Tensors
import Testing
import _TestSupport

/// One-node models for MatMul, Gemm, Conv, ConvTranspose, BatchNormalization, the pools and Resize, with
/// expected outputs from the ONNX reference evaluator or ONNX Runtime (scripts/make_conv_fixtures.py).
@Suite struct ConvFamilyFixtureTests {
    static let directory = TestSupport.fixtures.appendingPathComponent("conv")

    static let cases: [String] = {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasSuffix(".npz") }.map { String($0.dropLast(4)) }.sorted()
    }()

    @Test func fixturesArePresent() {
        #expect(Self.cases.count >= 60)
    }

    @Test(arguments: cases)
    func matchesOracle(_ name: String) throws {
        let arrays = try NPZ.readDictionary(Self.directory.appendingPathComponent(name + ".npz"))
        let modelBytes = try #require(arrays["model"]).scalars(as: UInt8.self)
        let model = try Model(serializedData: Data(modelBytes), baseDirectory: nil, source: name)
        var feeds: [String: Tensor] = [:]
        for (index, input) in model.graph.nodes[0].inputs.enumerated() where !input.isEmpty {
            if let value = arrays["input_\(index)"] { feeds[input] = value }
        }
        // Every thread count must agree: 1 runs the single-threaded paths, 3 the split ones.
        for threads in [1, 3] {
            let session = try Session(model: model, options: SessionOptions(threadCount: threads))
            let outputs = try session.run(feeds)
            for (index, outputName) in session.outputNames.enumerated() {
                let expected = try #require(arrays["output_\(index)"])
                let actual = try #require(outputs[outputName])
                #expect(actual.shape == expected.shape, "\(name) output \(index) shape")
                #expect(actual.dtype == expected.dtype, "\(name) output \(index) dtype")
                guard actual.shape == expected.shape, actual.dtype == expected.dtype else { continue }
                let error = Self.worstError(actual, expected)
                #expect(error <= 1, "\(name) output \(index), \(threads) threads: error \(error) × tolerance")
            }
        }
    }

    /// Largest |actual − expected| / (atol + rtol·|expected|), with tolerances by dtype (0 = exact).
    static func worstError(_ actual: Tensor, _ expected: Tensor) -> Double {
        func relative(_ a: [Double], _ b: [Double], atol: Double, rtol: Double) -> Double {
            var worst = 0.0
            for (x, y) in zip(a, b) {
                if x.isNaN != y.isNaN { return .infinity }
                if x == y { continue }
                worst = max(worst, abs(x - y) / (atol + rtol * abs(y)))
            }
            return worst
        }
        switch expected.dtype {
        case .float32:
            return relative(actual.scalars(as: Float.self).map(Double.init), expected.scalars(as: Float.self).map(Double.init),
                            atol: 1e-5, rtol: 1e-4)
        case .float64:
            return relative(actual.scalars(as: Double.self), expected.scalars(as: Double.self), atol: 1e-12, rtol: 1e-10)
        case .float16:
            return relative(actual.scalars(as: Float16.self).map(Double.init), expected.scalars(as: Float16.self).map(Double.init),
                            atol: 1e-3, rtol: 2e-3)
        default:
            return actual == expected ? 0 : .infinity
        }
    }
}
