import GraphIR
@testable import Runtime
import Tensors
import Testing
import _TestSupport

@Suite struct FusedQMatMulTests {
    private static let inputs = ["a", "a_scale", "a_zero_point", "b", "b_scale", "b_zero_point", "bias", "y_scale", "y_zero_point"]

    private func node(bias: Bool, quantizedOutput: Bool, transposeB: Bool = false, clamp: (Float?, Float?) = (nil, nil)) -> Node {
        var inputs = Self.inputs
        if !bias { inputs[6] = "" }
        if !quantizedOutput { inputs.removeLast(2) }
        while inputs.last == "" { inputs.removeLast() }
        var node = Node(opType: "QMatMul", domain: IntegerFusion.domain, inputs: inputs, outputs: ["y"])
        node.attributes["transB"] = .int(transposeB ? 1 : 0)
        if let low = clamp.0 { node.attributes["clip_min"] = .float(low) }
        if let high = clamp.1 { node.attributes["clip_max"] = .float(high) }
        return node
    }

    @Test func handComputedRequantizationAndFloatOutput() throws {
        // (a − 128) = (−125, 122); acc = (−128, 613); + bias (10, −13) = (−118, 600); × 0.5·0.25/2 = 0.0625
        // gives (−7.375, 37.5) → (−7, 38) with ties away from zero; + 100 → (93, 138).
        var constants: [String: Tensor] = [
            "a_scale": Tensor(scalar: Float(0.5)), "a_zero_point": Tensor(scalar: UInt8(128)),
            "b": try Tensor(shape: [2, 2], scalars: [Int8(2), -1, 1, 4]),
            "b_scale": Tensor(scalar: Float(0.25)), "b_zero_point": Tensor(scalar: Int8(0)),
            "bias": try Tensor(shape: [2], scalars: [Int32(10), -13]),
            "y_scale": Tensor(scalar: Float(2)), "y_zero_point": Tensor(scalar: UInt8(100)),
        ]
        let a = try Tensor(shape: [1, 2], scalars: [UInt8(3), 250])
        let quantized = node(bias: true, quantizedOutput: true)
        let kernel = try FusedQMatMulKernel(buildContext(quantized, constants: constants))
        let inputs = orderedInputs(quantized, constants: constants, feeds: ["a": a])
        #expect(try kernel.run(inputs, context: ExecutionContext(threadCount: 1))[0].scalars(as: UInt8.self) == [93, 138])
        #expect(try kernel.runReference(inputs)[0].scalars(as: UInt8.self) == [93, 138])

        // Float output: (−128, 613) × 0.125 + (1, −2) = (−15, 74.625).
        constants["bias"] = try Tensor(shape: [2], scalars: [Float(1), -2])
        let real = node(bias: true, quantizedOutput: false)
        let floatKernel = try FusedQMatMulKernel(buildContext(real, constants: constants))
        let floatInputs = orderedInputs(real, constants: constants, feeds: ["a": a])
        #expect(try floatKernel.run(floatInputs, context: ExecutionContext(threadCount: 1))[0].scalars(as: Float.self) == [-15, 74.625])
    }

    /// Fast kernel against its reference twin: every awkward depth, the zero-point sweep, both activation
    /// and weight types, per-tensor and per-column weights, quantized and float outputs, 1 and 3 threads.
    @Test func fastKernelEqualsReferenceBitForBit() throws {
        var generator = SeededGenerator(seed: 5)
        for (index, k) in sweepDepths.enumerated() {
            let aType: DType = index % 2 == 0 ? .uint8 : .int8
            let bType: DType = index % 3 == 2 ? .uint8 : .int8
            let yType: DType = index % 4 == 1 ? .int8 : .uint8
            let n = [1, 7, 16 + 15, 64 + 15, 129][index % 5]
            let m = [1, 2, 5, 33][index % 4]
            let perColumn = index % 2 == 1
            let transposeB = index % 3 == 1
            let channels = perColumn ? n : 1
            let bZeros: [Int32] = (0..<channels).map { c in
                bType == .uint8 ? sweepZeroPoints[(index + c) % 7] : (c % 3 == 0 ? 0 : sweepZeroPoints[(index + c) % 7] - 128)
            }
            let bZeroTensor = bType == .uint8
                ? try Tensor(shape: perColumn ? [n] : [], scalars: bZeros.map { UInt8($0) })
                : try Tensor(shape: perColumn ? [n] : [], scalars: bZeros.map { Int8($0) })
            let bScales = (0..<channels).map { c in Float(0.004) * Float(1 + c % 5) }
            let accumulatorSpread = Float(k).squareRoot() * 128 * 64
            var constants: [String: Tensor] = [
                "a_scale": Tensor(scalar: Float(0.03)),
                "a_zero_point": FusedTestData.zeroPoint(aType, sweepZeroPoints[index % 7]),
                "b": try FusedTestData.codes(bType, shape: transposeB ? [n, k] : [k, n], using: &generator),
                "b_scale": try Tensor(shape: perColumn ? [n] : [], scalars: bScales),
                "b_zero_point": bZeroTensor,
                "bias": try Tensor(shape: [n], scalars: (0..<n).map { _ in Int32.random(in: -5000...5000, using: &generator) }),
                "y_scale": Tensor(scalar: Float(0.03) * 0.004 * accumulatorSpread / 100),
                "y_zero_point": FusedTestData.zeroPoint(yType, sweepZeroPoints[(index + 3) % 7]),
            ]
            let a = try FusedTestData.codes(aType, shape: [m, k], using: &generator)
            let clamp: (Float?, Float?) = index % 5 == 3 ? (0, nil) : (index % 5 == 4 ? (-0.2, 0.3) : (nil, nil))
            constants["output_bias"] = try Tensor(shape: [n], scalars: (0..<n).map { _ in Float.random(in: -1...1, using: &generator) })
            for (quantizedOutput, dequantized) in [(true, false), (true, true), (false, false)] {
                if !quantizedOutput {
                    constants["bias"] = try Tensor(shape: [n], scalars: (0..<n).map { _ in Float.random(in: -2...2, using: &generator) })
                }
                var node = node(bias: true, quantizedOutput: quantizedOutput, transposeB: transposeB, clamp: clamp)
                if dequantized {
                    node.attributes["dequantize_output"] = .int(1)
                    if index % 2 == 0 { node.inputs.append("output_bias") }
                }
                let kernel = try FusedQMatMulKernel(buildContext(node, constants: constants))
                let inputs = orderedInputs(node, constants: constants, feeds: ["a": a])
                let expected = try kernel.runReference(inputs)[0]
                for threads in [1, 3] {
                    let actual = try kernel.run(inputs, context: ExecutionContext(threadCount: threads))[0]
                    #expect(actual == expected, "k \(k) n \(n) m \(m) \(aType)×\(bType) quantized \(quantizedOutput) threads \(threads)")
                }
            }
        }
    }

    /// Activation × activation (attention): B is a runtime uint8/int8 tensor, batches broadcast.
    @Test func runtimeBEqualsReferenceBitForBit() throws {
        var generator = SeededGenerator(seed: 11)
        for (index, k) in [1, 7, 32, 121].enumerated() {
            let bType: DType = index % 2 == 0 ? .uint8 : .int8
            let constants: [String: Tensor] = [
                "a_scale": Tensor(scalar: Float(0.05)), "a_zero_point": Tensor(scalar: UInt8(sweepZeroPoints[index + 1])),
                "b_scale": Tensor(scalar: Float(0.02)), "b_zero_point": FusedTestData.zeroPoint(bType, sweepZeroPoints[index + 2]),
                "y_scale": Tensor(scalar: Float(0.05 * 0.02) * Float(k).squareRoot() * 40),
                "y_zero_point": Tensor(scalar: UInt8(sweepZeroPoints[index + 3])),
            ]
            let node = node(bias: false, quantizedOutput: true)
            let kernel = try FusedQMatMulKernel(buildContext(node, constants: constants))
            let feeds = ["a": try FusedTestData.codes(.uint8, shape: [2, 3, 5, k], using: &generator),
                         "b": try FusedTestData.codes(bType, shape: [1, 3, k, 9], using: &generator)]
            let inputs = orderedInputs(node, constants: constants, feeds: feeds)
            let expected = try kernel.runReference(inputs)[0]
            #expect(expected.shape == [2, 3, 5, 9])
            for threads in [1, 2, 8] {
                #expect(try kernel.run(inputs, context: ExecutionContext(threadCount: threads))[0] == expected)
            }
        }
    }

    @Test func badInputsThrow() throws {
        let constants: [String: Tensor] = [
            "a_scale": Tensor(scalar: Float(0.5)), "a_zero_point": Tensor(scalar: UInt8(128)),
            "b": try Tensor(shape: [2, 2], scalars: [Int8(2), -1, 1, 4]),
            "b_scale": Tensor(scalar: Float(0.25)), "b_zero_point": Tensor(scalar: Int8(0)),
        ]
        let node = node(bias: false, quantizedOutput: false)
        let kernel = try FusedQMatMulKernel(buildContext(node, constants: constants))
        let context = ExecutionContext(threadCount: 1)
        let wrongDepth = try Tensor(shape: [1, 3], scalars: [UInt8(1), 2, 3])
        #expect(throws: KernelError.self) { try kernel.run(orderedInputs(node, constants: constants, feeds: ["a": wrongDepth]), context: context) }
        let wrongType = try Tensor(shape: [1, 2], scalars: [Int8(1), 2])
        #expect(throws: KernelError.self) { try kernel.run(orderedInputs(node, constants: constants, feeds: ["a": wrongType]), context: context) }
        var zeroScale = constants
        zeroScale["a_scale"] = Tensor(scalar: Float(0))
        #expect(throws: KernelError.self) { try FusedQMatMulKernel(buildContext(node, constants: zeroScale)) }
    }
}
