import Foundation
import GraphIR
import ONNX
import QuantCore
@testable import Quantization
import Runtime
import Tensors
import Testing
import _TestSupport

@Suite("Weight-only quantization")
struct WeightOnlyQuantizerTests {
    typealias Support = WeightModeSupport

    static func quantize(_ model: Model, _ options: QuantizationOptions) throws -> QuantizationResult {
        try Quantizer(options: options).quantize(model)
    }

    /// The DequantizeLinear feeding input `index` of the first `opType` node (through a Reshape if any).
    static func dequantizer(of opType: String, input index: Int, in model: Model) throws -> Node {
        let producers = model.graph.producers
        let node = try #require(model.graph.nodes.first { $0.opType == opType })
        var producer = try #require(producers[node.inputs[index]].map { model.graph.nodes[$0] })
        if producer.opType == "Reshape" { producer = try #require(producers[producer.inputs[0]].map { model.graph.nodes[$0] }) }
        #expect(producer.opType == "DequantizeLinear")
        return producer
    }

    /// `(q − z) · s` with one parameter per block of `block` rows of a `[k, n]` weight.
    static func dequantizeRows(codes: [Int8], zeros: [Int8]?, scales: [Float], k: Int, n: Int, block: Int) -> [Float] {
        (0..<(k * n)).map { index in
            let parameter = (index / n / block) * n + index % n
            return (Float(codes[index]) - Float(zeros?[parameter] ?? 0)) * scales[parameter]
        }
    }

    @Test("MatMul, int4 groups of 32 along K: blocked DequantizeLinear at opset 21, exact where a block is representable")
    func matMulInt4() throws {
        // Column 0 of the first block holds k · 0.25 for k = −8 … 7 (then zeros): representable exactly with
        // s = 0.25, which the clip search finds (the extreme −2 maps onto −8).
        var weight = Support.pseudoRandom(64 * 8, seed: 11)
        for k in 0..<32 { weight[k * 8] = k < 16 ? Float(k - 8) * 0.25 : 0 }
        let model = Support.singleNodeModel("MatMul", input: [3, 64], output: [3, 8],
                                            weights: [("w", try Support.floats([64, 8], weight))])
        let result = try Self.quantize(model, QuantizationOptions(mode: .weightOnly))
        let quantized = try Support.roundTrip(result.model, name: "weight-only-matmul-int4")
        #expect(quantized.opsetVersion(domain: "") == 21 && quantized.irVersion >= 10)
        #expect(Support.opTypes(quantized) == ["DequantizeLinear", "MatMul"])
        let dq = try Self.dequantizer(of: "MatMul", input: 1, in: quantized)
        #expect(dq.attributes["axis"] == .int(0) && dq.attributes["block_size"] == .int(32))
        #expect(dq.inputs.count == 2)  // symmetric: ONNX's zero default stands in
        // The report maps the short generated names back to the weight.
        let decision = try #require(result.report.tensors.first { $0.name == "w" })
        #expect(decision.codes == dq.inputs[0] && decision.dequantized == dq.outputs[0])
        #expect(dq.inputs[0] == "w0_q" && dq.outputs[0] == "w0_dq")
        let codesTensor = try #require(quantized.graph.initializers[dq.inputs[0]])
        #expect(codesTensor.dtype == .int4 && codesTensor.shape == [64, 8])
        let scales = try #require(quantized.graph.initializers[dq.inputs[1]])
        #expect(scales.shape == [2, 8])
        let codes = try codesTensor.unpackedInt4()
        let firstColumn: [Int8] = (0..<16).map { codes[$0 * 8] }
        let expectedColumn: [Int8] = (-8...7).map { Int8($0) }
        #expect(firstColumn == expectedColumn)
        #expect(scales.scalars(as: Float.self)[0] == 0.25)

        // The runtime's output is x · ((q) · s) by hand.
        let dequantized = Self.dequantizeRows(codes: codes, zeros: nil, scales: scales.scalars(as: Float.self),
                                              k: 64, n: 8, block: 32)
        for k in 0..<16 { #expect(dequantized[k * 8] == weight[k * 8]) }
        let x = Support.pseudoRandom(3 * 64, seed: 12)
        let y = try Support.run(quantized, ["x": try Support.floats([3, 64], x)])["y"]!.scalars(as: Float.self)
        for m in 0..<3 {
            for n in 0..<8 {
                let want = (0..<64).reduce(Float(0)) { $0 + x[m * 64 + $1] * dequantized[$1 * 8 + n] }
                #expect(abs(y[m * 8 + n] - want) < 1e-4)
            }
        }
        // Uniform weights at 4 bits: about 6 dB per bit.
        let sqnr = try #require(result.report.tensors.first { $0.name == "w" }?.sqnrDB)
        #expect(sqnr > 20)
    }

    @Test("the search's rounding equals round-half-to-even on every quarter step below 2¹⁶ and beyond 2²² clamps alike")
    func searchRounding() {
        var mismatches = 0
        for k in -(1 << 18)..<(1 << 18) {
            let v = Float(k) / 4
            if WeightQuantization.roundedToEven(v) != v.rounded(.toNearestOrEven) { mismatches += 1 }
        }
        #expect(mismatches == 0)
        for v: Float in [5e6, -5e6, 3e9, -3e9, .greatestFiniteMagnitude / 4] {
            let clamped = min(max(WeightQuantization.roundedToEven(v), -32768), 32767)
            #expect(clamped == min(max(v.rounded(.toNearestOrEven), -32768), 32767))
        }
    }

    @Test("the clip search never does worse than the plain range")
    func searchBeatsPlainRange() throws {
        let weight = try Support.floats([1, 256], Support.pseudoRandom(256, seed: 21).map { $0 * $0 * $0 })
        for (type, mapping) in [(QuantType.int4, Mapping.symmetric), (.int4, .asymmetric), (.int2, .symmetric)] {
            let searched = try WeightFormat(type, mapping: mapping)
            let quantized = try WeightQuantization.quantize(weight, axis: 1, blockSize: 32, format: searched, name: "w", node: "n")
            // The plain range: the same block rule without the search.
            let scheme = searched.scheme
            var plainError = 0.0
            let values = weight.scalars(as: Float.self)
            for block in 0..<8 {
                let slice = values[(block * 32)..<((block + 1) * 32)]
                let (s, z) = try slice.withUnsafeBufferPointer {
                    try WeightQuantization.blockParameters($0, scheme: scheme, codes: searched.codes, searches: false)
                }
                for x in slice {
                    let q = min(max((x / s).rounded(.toNearestOrEven) + Float(z), Float(searched.codes.lowerBound)),
                                Float(searched.codes.upperBound))
                    plainError += Double((x - (q - Float(z)) * s) * (x - (q - Float(z)) * s))
                }
            }
            let reconstructed = try quantized.quantized.dequantized().scalars(as: Float.self)
            let searchedError = zip(values, reconstructed).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
            #expect(searchedError <= plainError, "\(type) \(mapping)")
        }
    }

    @Test("GPTQ's inverse factor satisfies UᵀU = H⁻¹, and GPTQ beats rounding on the calibration inputs")
    func gptq() throws {
        // Correlated inputs: x = z·M with random z, so H = E[x xᵀ] is far from diagonal.
        let depth = 48, columns = 6, rows = 256
        let mixing = Support.pseudoRandom(depth * depth, seed: 91)
        let z = Support.pseudoRandom(rows * depth, seed: 92)
        var x = [Float](repeating: 0, count: rows * depth)
        for r in 0..<rows {
            for j in 0..<depth {
                for k in 0..<depth { x[r * depth + j] += z[r * depth + k] * mixing[k * depth + j] }
            }
        }
        var h = [Double](repeating: 0, count: depth * depth)
        for r in 0..<rows {
            for i in 0..<depth {
                for j in 0..<depth { h[i * depth + j] += Double(x[r * depth + i] * x[r * depth + j]) / Double(rows) }
            }
        }
        let u = try #require(GPTQ.inverseFactor(h, n: depth))
        for i in 0..<depth {
            for j in 0..<depth where j < i { #expect(u[i * depth + j] == 0) }
        }
        // (UᵀU)·H = I.
        var worst = 0.0
        for i in 0..<depth {
            for j in 0..<depth {
                var value = 0.0
                for k in 0..<depth {
                    var inverse = 0.0
                    for m in 0..<depth { inverse += u[m * depth + i] * u[m * depth + k] }
                    value += inverse * h[k * depth + j]
                }
                worst = max(worst, abs(value - (i == j ? 1 : 0)))
            }
        }
        #expect(worst < 1e-6)

        let weight = try Support.floats([depth, columns], Support.pseudoRandom(depth * columns, seed: 93))
        let format = try WeightFormat(.int4, mapping: .symmetric)
        let factor = try #require(GPTQ.dampedInverseFactor(h, n: depth))
        let optimized = try GPTQ.quantize(weight, factor: factor, groupSize: 16, format: format, name: "w", node: "n")
        let rounded = try WeightQuantization.quantize(weight, axis: 0, blockSize: 16, format: format, name: "w", node: "n")
        func outputError(_ q: BlockQuantizedWeight) throws -> Double {
            let w = weight.scalars(as: Float.self), v = try q.quantized.dequantized().scalars(as: Float.self)
            var total = 0.0
            for r in 0..<rows {
                for n in 0..<columns {
                    var d = 0.0
                    for k in 0..<depth { d += Double(x[r * depth + k]) * Double(w[k * columns + n] - v[k * columns + n]) }
                    total += d * d
                }
            }
            return total
        }
        #expect(try outputError(optimized) < 0.8 * outputError(rounded))
        // Codes respect the format and the blocked layout.
        #expect(optimized.params.parameterShape == [3, columns])
        #expect(optimized.quantized.codes().allSatisfy { (-8...7).contains($0) })
        // Transposing to the [N, K] layout keeps every value.
        let flipped = try optimized.transposed()
        #expect(try flipped.quantized.dequantized() == optimized.quantized.dequantized().transposed2D())
    }

    @Test("asymmetric uint4 groups carry zero points; int2 codes stay in [−2, 1] inside int4")
    func asymmetricAndInt2() throws {
        let weight = Support.pseudoRandom(64 * 4, seed: 31).map { $0 + 0.3 }
        let model = Support.singleNodeModel("MatMul", input: [2, 64], output: [2, 4],
                                            weights: [("w", try Support.floats([64, 4], weight))])
        let asymmetric = try Self.quantize(model, QuantizationOptions(mode: .weightOnly, weightType: .uint4,
                                                                      symmetricWeights: false))
        let quantizedAsymmetric = try Support.roundTrip(asymmetric.model, name: "weight-only-uint4-asymmetric")
        let dq = try Self.dequantizer(of: "MatMul", input: 1, in: quantizedAsymmetric)
        #expect(dq.inputs.count == 3)
        let zeros = try #require(quantizedAsymmetric.graph.initializers[dq.inputs[2]])
        #expect(zeros.dtype == .uint4 && zeros.shape == [2, 4])
        let codes = try #require(quantizedAsymmetric.graph.initializers[dq.inputs[0]]).unpackedInt4()
        let scales = try #require(quantizedAsymmetric.graph.initializers[dq.inputs[1]]).scalars(as: Float.self)
        let reconstructed = Self.dequantizeRows(codes: codes, zeros: try zeros.unpackedInt4(), scales: scales, k: 64, n: 4,
                                                block: 32)
        #expect(Support.cosine(reconstructed, weight) > 0.99)

        let int2 = try Self.quantize(model, QuantizationOptions(mode: .weightOnly, weightType: .int2, groupSize: 64))
        let quantizedInt2 = try Support.roundTrip(int2.model, name: "weight-only-int2")
        let dq2 = try Self.dequantizer(of: "MatMul", input: 1, in: quantizedInt2)
        let codes2 = try #require(quantizedInt2.graph.initializers[dq2.inputs[0]])
        #expect(codes2.dtype == .int4)
        #expect(try codes2.unpackedInt4().allSatisfy { (-2...1).contains($0) })
        #expect(int2.report.notes.contains { $0.contains("int2 codes are stored in int4") })
        #expect(int2.report.tensors.first { $0.name == "w" }?.type == "int2 (in int4)")
    }

    @Test("a reduction axis that is not a multiple of the group gets a shorter last group")
    func shortLastGroup() throws {
        let weight = Support.pseudoRandom(40 * 6, seed: 41)
        let model = Support.singleNodeModel("MatMul", input: [2, 40], output: [2, 6],
                                            weights: [("w", try Support.floats([40, 6], weight))])
        let result = try Self.quantize(model, QuantizationOptions(mode: .weightOnly, groupSize: 32))
        let quantized = try Support.roundTrip(result.model, name: "weight-only-short-group")
        let dq = try Self.dequantizer(of: "MatMul", input: 1, in: quantized)
        #expect(quantized.graph.initializers[dq.inputs[1]]?.shape == [2, 6])
        let x = try Support.floats([2, 40], Support.pseudoRandom(80, seed: 42))
        let want = try Support.run(model, ["x": x])["y"]!.scalars(as: Float.self)
        let got = try Support.run(quantized, ["x": x])["y"]!.scalars(as: Float.self)
        #expect(Support.cosine(got, want) > 0.99)
        // A group larger than the axis is one group per column.
        let wide = try Self.quantize(model, QuantizationOptions(mode: .weightOnly, groupSize: 128))
        let wideDQ = try Self.dequantizer(of: "MatMul", input: 1, in: wide.model)
        #expect(wideDQ.attributes["block_size"] == .int(40))
        #expect(wide.model.graph.initializers[wideDQ.inputs[1]]?.shape == [1, 6])
    }

    @Test("Gemm with transB blocks along axis 1; an embedding table blocks along its rows")
    func gemmAndGather() throws {
        let table = try Support.floats([10, 64], Support.pseudoRandom(640, seed: 51))
        let b = try Support.floats([5, 64], Support.pseudoRandom(320, seed: 52))
        let graph = Graph(
            name: "g",
            nodes: [Node(name: "lookup", opType: "Gather", inputs: ["table", "ids"], outputs: ["rows"]),
                    Node(name: "dense", opType: "Gemm", inputs: ["rows", "b"], outputs: ["y"], attributes: ["transB": .int(1)])],
            inputs: [ValueInfo(name: "ids", dtype: .int64, shape: [.value(3)])],
            outputs: [ValueInfo(name: "y", dtype: .float32, shape: [.value(3), .value(5)])],
            initializers: ["table": table, "b": b])
        let model = Model(graph: graph, opsetImports: ["": 17])
        let result = try Self.quantize(model, QuantizationOptions(mode: .weightOnly))
        let quantized = try Support.roundTrip(result.model, name: "weight-only-gather-gemm")
        let tableDQ = try Self.dequantizer(of: "Gather", input: 0, in: quantized)
        #expect(tableDQ.attributes["axis"] == .int(1))
        #expect(quantized.graph.initializers[tableDQ.inputs[1]]?.shape == [10, 2])
        let gemmDQ = try Self.dequantizer(of: "Gemm", input: 1, in: quantized)
        #expect(gemmDQ.attributes["axis"] == .int(1))
        #expect(quantized.graph.initializers[gemmDQ.inputs[1]]?.shape == [5, 2])
        let ids = try Tensor(shape: [3], scalars: [Int64(0), 7, 9])
        let want = try Support.run(model, ["ids": ids])["y"]!.scalars(as: Float.self)
        let got = try Support.run(quantized, ["ids": ids])["y"]!.scalars(as: Float.self)
        #expect(Support.cosine(got, want) > 0.99)
    }

    @Test("raising the opset to 21 moves ReduceL2's axes to an input and keeps the result")
    func opsetUpgrade() throws {
        let weight = try Support.floats([4, 6], Support.pseudoRandom(24, seed: 61))
        let graph = Graph(
            name: "g",
            nodes: [Node(name: "mm", opType: "MatMul", inputs: ["x", "w"], outputs: ["h"]),
                    Node(name: "norm", opType: "ReduceL2", inputs: ["h"], outputs: ["y"],
                         attributes: ["axes": .ints([1]), "keepdims": .int(1)])],
            inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.value(2), .value(4)])],
            outputs: [ValueInfo(name: "y", dtype: .float32, shape: [.value(2), .value(1)])],
            initializers: ["w": weight])
        let model = Model(graph: graph, opsetImports: ["": 17])
        let result = try Self.quantize(model, QuantizationOptions(mode: .weightOnly, weightType: .int8))
        let quantized = try Support.roundTrip(result.model, name: "weight-only-opset-upgrade")
        let reduce = try #require(quantized.graph.nodes.first { $0.opType == "ReduceL2" })
        #expect(reduce.attributes["axes"] == nil && reduce.inputs.count == 2)
        #expect(quantized.graph.initializers[reduce.inputs[1]]?.scalars(as: Int64.self) == [1])
        #expect(result.report.notes.contains { $0.contains("opset raised from 17 to 21") })
        let x = try Support.floats([2, 4], Support.pseudoRandom(8, seed: 62))
        let want = try Support.run(model, ["x": x])["y"]!.scalars(as: Float.self)
        let got = try Support.run(quantized, ["x": x])["y"]!.scalars(as: Float.self)
        #expect(TestSupport.maxAbsDifference(got, want) < 0.01 * want.map(abs).max()!)

        // What cannot be carried over is refused by name.
        var grouped = Model(graph: Graph(nodes: [Node(name: "gn", opType: "GroupNormalization", inputs: ["x", "s", "b"],
                                                      outputs: ["y"])]), opsetImports: ["": 18])
        #expect(throws: QuantizationError.self) { try OpsetUpgrade.raise(&grouped, to: 21) }
    }

    @Test("CNN and recurrent fixtures: convolution, transposed convolution, LSTM and GRU weights blocked")
    func fixtures() throws {
        for file in ["mixed-cnn", "mixed-cnn-constants"] {
            let (model, _, quantized) = try Support.quantizedFixture(file, QuantizationOptions(mode: .weightOnly),
                                                                     prefix: "weight-only")
            #expect(Support.opTypes(quantized).filter { $0 == "DequantizeLinear" }.count == 9)
            let transposed = try Self.dequantizer(of: "ConvTranspose", input: 1, in: quantized)
            #expect(transposed.attributes["axis"] == .int(0))
            let input = try Support.fixtureInput(file)
            let want = try Support.run(model, input), got = try Support.run(quantized, input)
            #expect(Support.rowCosines(want["features"]!, got["features"]!).min()! > 0.99)
        }
        let (recurrent, _, quantized) = try Support.quantizedFixture("recurrent", QuantizationOptions(mode: .weightOnly),
                                                                     prefix: "weight-only")
        for op in ["LSTM", "GRU"] {
            for index in [1, 2] {
                #expect(try Self.dequantizer(of: op, input: index, in: quantized).attributes["axis"] == .int(2))
            }
        }
        let input = try Support.fixtureInput("recurrent")
        let want = try Support.run(recurrent, input), got = try Support.run(quantized, input)
        for (name, tensor) in want { #expect(Support.rowCosines(tensor, got[name]!).min()! > 0.99, "\(name)") }
    }

    /// `y = x·W1 + x·W2` with `W1` eight times larger than `W2`: the same int4 rounding costs the output
    /// 64 times more error energy through `W1`, so with room for one promotion `W1` becomes int8.
    static func twoBranches() throws -> Model {
        var graph = Graph(
            name: "branches",
            nodes: [
                Node(name: "large", opType: "MatMul", inputs: ["x", "w1"], outputs: ["a"]),
                Node(name: "small", opType: "MatMul", inputs: ["x", "w2"], outputs: ["b"]),
                Node(name: "sum", opType: "Add", inputs: ["a", "b"], outputs: ["y"]),
            ],
            inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("batch"), .value(64)])],
            outputs: [ValueInfo(name: "y", dtype: .float32, shape: [.symbol("batch"), .value(8)])])
        graph.initializers["w1"] = try Support.floats([64, 8], Support.pseudoRandom(512, seed: 31, scale: 8))
        graph.initializers["w2"] = try Support.floats([64, 8], Support.pseudoRandom(512, seed: 32))
        return Model(graph: graph, opsetImports: ["": 17])
    }

    @Test("the weight whose int4 error costs the output most per byte is kept at int8 within the budget")
    func promotion() throws {
        // Each weight: int4 codes 256 B + 2 × 8 float scales 64 B = 320 B; int8 512 B + 8 scales 32 B = 544 B,
        // 224 B more. A budget of 50% of 640 B (320 B) fits one promotion, 20% (128 B) none.
        let model = try Self.twoBranches()
        let result = try Self.quantize(model, QuantizationOptions(mode: .weightOnly, promotionBudget: 0.5))
        let quantized = try Support.roundTrip(result.model, name: "weight-only-promotion")
        let producers = quantized.graph.producers
        func dequantizer(_ node: String) throws -> Node {
            let matMul = try #require(quantized.graph.nodes.first { $0.name == node })
            return try #require(producers[matMul.inputs[1]].map { quantized.graph.nodes[$0] })
        }
        let large = try dequantizer("large"), small = try dequantizer("small")
        #expect(quantized.graph.initializers[large.inputs[0]]?.dtype == .int8)
        #expect(large.attributes["block_size"] == .int(64) && large.attributes["axis"] == .int(0))
        #expect(quantized.graph.initializers[large.inputs[1]]?.shape == [1, 8])
        #expect(quantized.graph.initializers[small.inputs[0]]?.dtype == .int4)
        #expect(small.attributes["block_size"] == .int(32))
        #expect(result.report.tensors.first { $0.name == "w1" }?.type == "int8")
        #expect(result.report.tensors.first { $0.name == "w1" }?.reason?.contains("promoted from int4") == true)
        #expect(result.report.tensors.first { $0.name == "w2" }?.type == "int4")
        #expect(result.report.notes.contains { $0.hasPrefix("1 of 2 weights kept at 8 bits") && $0.contains("synthetic") })

        // int8 per column: codes round(w / s) with s = max|column| / 127.
        let w1 = model.graph.initializers["w1"]!.scalars(as: Float.self)
        let codes = quantized.graph.initializers[large.inputs[0]]!.scalars(as: Int8.self)
        for n in 0..<8 {
            let s = (0..<64).map { abs(w1[$0 * 8 + n]) }.max()! / 127
            for k in 0..<64 { #expect(codes[k * 8 + n] == Int8((w1[k * 8 + n] / s).rounded(.toNearestOrEven))) }
        }

        for budget in [0.2, 0] {
            let kept = try Self.quantize(model, QuantizationOptions(mode: .weightOnly, promotionBudget: budget))
            #expect(kept.report.tensors.allSatisfy { $0.type == "int4" }, "budget \(budget)")
        }
    }

    @Test("the harm of a weight is 1 − the mean row cosine of the outputs")
    func harm() throws {
        // Rows (1, 0)·(1, 1) → cos 1/√2, (0, 1)·(0, 1) → 1: harm 1 − (1/√2 + 1)/2.
        let reference = ["y": try Support.floats([2, 2], [1, 0, 0, 1])]
        let outputs = ["y": try Support.floats([2, 2], [1, 1, 0, 1])]
        #expect(abs(WeightPromotion.harm(reference, outputs) - (1 - (1 / 2.0.squareRoot() + 1) / 2)) < 1e-12)
        #expect(WeightPromotion.harm(reference, reference) == 0)
        #expect(WeightPromotion.harm(reference, ["y": try Support.floats([1, 2], [1, 0])]) == 1)
    }

    @Test("synthetic inputs: token ids within their table, masks of ones, normal floats, the same every time")
    func syntheticInputs() throws {
        var graph = Graph(
            name: "embedding",
            nodes: [Node(name: "lookup", opType: "Gather", inputs: ["table", "ids"], outputs: ["e"])],
            inputs: [ValueInfo(name: "ids", dtype: .int64, shape: [.symbol("batch"), .symbol("sequence")]),
                     ValueInfo(name: "attention_mask", dtype: .int64, shape: [.symbol("batch"), .symbol("sequence")]),
                     ValueInfo(name: "noise", dtype: .float32, shape: [.symbol("batch"), .value(1000)])],
            outputs: [ValueInfo(name: "e")])
        graph.initializers["table"] = try Support.floats([10, 4], [Float](repeating: 0, count: 40))
        let feeds = try #require(SyntheticInputs.make(for: graph, rows: 8))
        let ids = try #require(feeds["ids"]).scalars(as: Int64.self)
        #expect(feeds["ids"]?.shape == [8, 64] && ids.allSatisfy { (0..<10).contains($0) } && Set(ids).count == 10)
        #expect(feeds["attention_mask"]?.scalars(as: Int64.self).allSatisfy { $0 == 1 } == true)
        let noise = try #require(feeds["noise"]).scalars(as: Float.self).map(Double.init)
        let mean = noise.reduce(0, +) / Double(noise.count)
        let variance = noise.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(noise.count)
        // 8000 standard normal draws: the mean within 4.5 standard errors (0.05), the variance within 10%.
        #expect(abs(mean) < 0.05 && abs(variance - 1) < 0.1, "mean \(mean), variance \(variance)")
        #expect(SyntheticInputs.make(for: graph, rows: 8) == feeds)

        // A declared shape too large to make refuses rather than allocating.
        graph.inputs[2] = ValueInfo(name: "noise", dtype: .float32, shape: [.value(1 << 40), .value(1 << 40)])
        #expect(SyntheticInputs.make(for: graph, rows: 8) == nil)
    }

    @Test("bad options and models are typed errors naming the cause")
    func badInput() throws {
        let model = Support.singleNodeModel("MatMul", input: [2, 4], output: [2, 3],
                                            weights: [("w", try Support.floats([4, 3], Support.pseudoRandom(12, seed: 1)))])
        do {
            _ = try Self.quantize(model, QuantizationOptions(mode: .weightOnly, weightType: .float16))
            Issue.record("fp16 weights were accepted")
        } catch let error as QuantizationError {
            #expect(error.description.contains("--mode fp16"))
        }
        #expect(throws: QuantizationError.self) {
            try Self.quantize(model, QuantizationOptions(mode: .weightOnly, operatorTypes: ["Softmax"]))
        }
        #expect(throws: QuantizationError.self) { try Self.quantize(model, QuantizationOptions(mode: .weightOnly, groupSize: 1)) }
        try Support.expectNothingToQuantize(.weightOnly)
        // The opset upgrade carries models from opset 11 on; older ones are refused.
        var old = model
        old.opsetImports[""] = 10
        #expect(throws: QuantizationError.self) { try Self.quantize(old, QuantizationOptions(mode: .weightOnly)) }
    }

    @Test("MiniLM, int4 groups of 32 rounded to nearest: a file ≤ 20% of FP32, mean cosine ≥ 0.95")
    func miniLMRoundToNearest() throws {
        guard let miniLM = try Support.miniLM() else { return }
        let result = try Self.quantize(miniLM.model, QuantizationOptions(mode: .weightOnly, weightType: .int4, groupSize: 32,
                                                                         promotionBudget: 0))
        try TestSupport.keepForOracle(result.model, name: "weight-only-minilm-int4-g32")
        let original = try FileManager.default.attributesOfItem(atPath: miniLM.url.path)[.size] as! Int
        let size = try Support.fileSize(result.model)
        #expect(Double(size) <= 0.2 * Double(original), "\(size) of \(original) bytes")
        // Without calibration data and with every weight at int4 the MatMuls lose most (0.965 on 1024 rows
        // in a release build).
        let fidelity = try Support.miniLMFidelity(reference: miniLM.model, candidate: result.model, eval: miniLM.eval,
                                                  rows: 4)
        #expect(fidelity.mean >= 0.95, "mean \(fidelity.mean), worst \(fidelity.worst)")
    }

    /// The issue's acceptance with the defaults and no data: release-build figures on all 1024 rows are
    /// 17.12 MB (18.9% of FP32), mean cosine 0.99445, worst 0.98581 (23 of 39 weights kept at int8). The
    /// 40 float runs that measure each weight's harm take about 8 minutes in a debug build (10 s in
    /// release), hence the switch.
    @Test("MiniLM, int4 groups of 32 without calibration, default promotion budget: ≤ 20% of FP32, mean cosine ≥ 0.98",
          .enabled(if: ProcessInfo.processInfo.environment["SWIFTQUANT_LONG_TESTS"] == "1"))
    func miniLMDefault() throws {
        guard let miniLM = try Support.miniLM() else { return }
        let result = try Self.quantize(miniLM.model, QuantizationOptions(mode: .weightOnly, weightType: .int4, groupSize: 32))
        try TestSupport.keepForOracle(result.model, name: "weight-only-minilm-int4-g32-promoted")
        let original = try FileManager.default.attributesOfItem(atPath: miniLM.url.path)[.size] as! Int
        let size = try Support.fileSize(result.model)
        #expect(Double(size) <= 0.2 * Double(original), "\(size) of \(original) bytes")
        let types = result.report.tensors.filter { $0.role == .weight }.compactMap(\.type)
        #expect(types.contains("int8") && types.contains("int4"))
        let fidelity = try Support.miniLMFidelity(reference: miniLM.model, candidate: result.model, eval: miniLM.eval,
                                                  rows: 4)
        #expect(fidelity.mean >= 0.98, "mean \(fidelity.mean), worst \(fidelity.worst)")
    }

    /// GPTQ in a debug build takes many minutes on MiniLM (dense 1536 × 1536 factorisations), hence the
    /// switch; `swiftquant quantize --calib` in a release build takes about 20 s.
    @Test("MiniLM, int4 groups of 32 with GPTQ on 64 calibration rows: mean cosine ≥ 0.98",
          .enabled(if: ProcessInfo.processInfo.environment["SWIFTQUANT_LONG_TESTS"] == "1"))
    func miniLMGPTQ() throws {
        guard let miniLM = try Support.miniLM() else { return }
        let calibrationURL = miniLM.url.deletingLastPathComponent().appendingPathComponent("minilm-calib.npz")
        let calibration = CalibrationData(arrays: try Support.firstRows(NPZ.readDictionary(calibrationURL), 64),
                                          source: calibrationURL.path)
        let options = QuantizationOptions(mode: .weightOnly, weightType: .int4, groupSize: 32)
        let result = try Quantizer(options: options).quantize(miniLM.model, calibration: calibration)
        try TestSupport.keepForOracle(result.model, name: "weight-only-minilm-int4-g32-gptq")
        let fidelity = try Support.miniLMFidelity(reference: miniLM.model, candidate: result.model, eval: miniLM.eval,
                                                  rows: 8)
        #expect(fidelity.mean >= 0.98, "mean \(fidelity.mean), worst \(fidelity.worst)")
    }
}
