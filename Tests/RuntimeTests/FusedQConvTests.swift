import GraphIR
@testable import Runtime
import Tensors
import Testing
import _TestSupport

@Suite struct FusedQConvTests {
    struct Case {
        var input: [Int]       // [N, C, H, W] or [N, C, L]
        var weight: [Int]      // [M, C/group, k…]
        var attributes: [String: Attribute]
    }

    static let cases: [Case] = [
        Case(input: [1, 3, 9, 7], weight: [5, 3, 3, 3], attributes: ["pads": .ints([1, 1, 1, 1]), "strides": .ints([2, 2])]),
        Case(input: [2, 4, 6, 6], weight: [7, 4, 1, 1], attributes: [:]),
        Case(input: [1, 8, 7, 9], weight: [8, 2, 3, 3], attributes: ["group": .int(4), "dilations": .ints([2, 2]), "pads": .ints([2, 2, 2, 2])]),
        Case(input: [2, 6, 8, 5], weight: [6, 1, 3, 3], attributes: ["group": .int(6), "pads": .ints([1, 0, 2, 1])]),
        Case(input: [1, 5, 9, 9], weight: [5, 1, 3, 3], attributes: ["group": .int(5), "strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])]),
        Case(input: [1, 3, 10, 10], weight: [3, 1, 5, 5], attributes: ["group": .int(3), "auto_pad": .text("SAME_UPPER"), "dilations": .ints([1, 2])]),
        Case(input: [1, 10, 13], weight: [3, 10, 4], attributes: ["strides": .ints([3]), "pads": .ints([2, 1])]),
        Case(input: [1, 122, 3, 3], weight: [9, 122, 1, 1], attributes: [:]),
    ]

    /// Constants of a QConv/QConvTranspose test: zero points from the sweep, per-tensor or per-channel weights.
    private static func constants(xType: DType, wType: DType, weight: [Int], channels: Int, perChannel: Bool, index: Int,
                                  using generator: inout SeededGenerator) throws -> [String: Tensor] {
        let count = perChannel ? channels : 1, shape = perChannel ? [channels] : []
        let wZeros: [Int32] = (0..<count).map { sweepZeroPoints[($0 + index) % 7] - (wType == .int8 ? 128 : 0) }
        return [
            "x_scale": Tensor(scalar: Float(0.02)), "x_zero_point": FusedTestData.zeroPoint(xType, sweepZeroPoints[index % 7]),
            "w": try FusedTestData.codes(wType, shape: weight, using: &generator),
            "w_scale": try Tensor(shape: shape, scalars: (0..<count).map { Float(0.003) * Float(1 + $0 % 3) }),
            "w_zero_point": wType == .int8 ? try Tensor(shape: shape, scalars: wZeros.map { Int8($0) })
                                           : try Tensor(shape: shape, scalars: wZeros.map { UInt8($0) }),
            "bias": try Tensor(shape: [channels], scalars: (0..<channels).map { _ in Int32.random(in: -3000...3000, using: &generator) }),
            "y_scale": Tensor(scalar: Float(0.02 * 0.003 * 600)),
            "y_zero_point": FusedTestData.zeroPoint(index % 3 == 0 ? .int8 : .uint8, sweepZeroPoints[(index + 2) % 7]),
        ]
    }

    /// Builds `opType` for quantized and float output (int32 and float bias) and holds the fast kernel
    /// against its reference twin at 1 and 3 threads.
    private static func sweep(_ opType: String, _ testCase: Case, index: Int, xType: DType, wType: DType, channels: Int,
                              perChannel: Bool, clamp: Bool, using generator: inout SeededGenerator,
                              make: (KernelBuildContext) throws -> (any Kernel, ([Tensor?]) throws -> [Tensor])) throws {
        var constants = try Self.constants(xType: xType, wType: wType, weight: testCase.weight, channels: channels,
                                           perChannel: perChannel, index: index, using: &generator)
        let x = try FusedTestData.codes(xType, shape: testCase.input, using: &generator)
        for quantized in [true, false] {
            if !quantized {
                constants["bias"] = try Tensor(shape: [channels], scalars: (0..<channels).map { _ in Float.random(in: -1...1, using: &generator) })
            }
            var inputs = ["x", "x_scale", "x_zero_point", "w", "w_scale", "w_zero_point", "bias"]
            if quantized { inputs += ["y_scale", "y_zero_point"] }
            var node = Node(opType: opType, domain: IntegerFusion.domain, inputs: inputs, outputs: ["y"])
            for (key, value) in testCase.attributes { node.attributes[key] = value }
            if clamp { node.attributes["clip_min"] = .float(0) }
            let (kernel, reference) = try make(buildContext(node, constants: constants))
            let feeds = orderedInputs(node, constants: constants, feeds: ["x": x])
            let expected = try reference(feeds)[0]
            for threads in [1, 3] {
                #expect(try kernel.run(feeds, context: ExecutionContext(threadCount: threads))[0] == expected,
                        "\(opType) case \(index) quantized \(quantized) threads \(threads)")
            }
        }
    }

    @Test func fastKernelEqualsReferenceBitForBit() throws {
        var generator = SeededGenerator(seed: 21)
        for (index, testCase) in Self.cases.enumerated() {
            try Self.sweep("QConv", testCase, index: index, xType: index % 2 == 0 ? .uint8 : .int8,
                           wType: index % 3 == 2 ? .uint8 : .int8, channels: testCase.weight[0], perChannel: index % 2 == 0,
                           clamp: index % 4 == 1, using: &generator) { context in
                let kernel = try FusedQConvKernel(context)
                return (kernel, kernel.runReference)
            }
        }
    }

    static let transposeCases: [Case] = [
        Case(input: [1, 4, 5, 5], weight: [4, 3, 3, 3], attributes: ["strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1]),
                                                                      "output_padding": .ints([1, 1])]),
        Case(input: [2, 4, 3, 4], weight: [4, 2, 2, 3], attributes: ["group": .int(2), "dilations": .ints([2, 1])]),
        Case(input: [1, 121, 2, 2], weight: [121, 5, 3, 3], attributes: ["auto_pad": .text("SAME_UPPER"), "strides": .ints([2, 2])]),
        Case(input: [1, 6, 7], weight: [6, 2, 4], attributes: ["strides": .ints([3]), "pads": .ints([1, 2])]),
    ]

    @Test func transposedFastKernelEqualsReferenceBitForBit() throws {
        var generator = SeededGenerator(seed: 23)
        for (index, testCase) in Self.transposeCases.enumerated() {
            let group = testCase.attributes["group"]?.intValue ?? 1
            try Self.sweep("QConvTranspose", testCase, index: index, xType: index % 2 == 0 ? .uint8 : .int8, wType: .int8,
                           channels: testCase.weight[1] * group, perChannel: group == 1 && index % 2 == 0, clamp: index == 1,
                           using: &generator) { context in
                let kernel = try FusedQConvTransposeKernel(context)
                return (kernel, kernel.runReference)
            }
        }
    }

    @Test func globalAveragePoolEqualsReference() throws {
        var generator = SeededGenerator(seed: 24)
        for (index, shape) in [[1, 3, 5, 5], [2, 4, 1, 7], [1, 2, 11, 13]].enumerated() {
            let dtype: DType = index == 1 ? .int8 : .uint8
            let constants: [String: Tensor] = [
                "x_scale": Tensor(scalar: Float(0.05)), "x_zero_point": FusedTestData.zeroPoint(dtype, sweepZeroPoints[index + 2]),
                "y_scale": Tensor(scalar: Float(0.011)), "y_zero_point": Tensor(scalar: UInt8(sweepZeroPoints[index + 3])),
            ]
            let node = Node(opType: "QGlobalAveragePool", domain: IntegerFusion.domain,
                            inputs: ["x", "x_scale", "x_zero_point", "y_scale", "y_zero_point"], outputs: ["y"])
            let kernel = try FusedQGlobalAveragePoolKernel(buildContext(node, constants: constants))
            let feeds = orderedInputs(node, constants: constants, feeds: ["x": try FusedTestData.codes(dtype, shape: shape, using: &generator)])
            #expect(try kernel.run(feeds, context: ExecutionContext(threadCount: 1))[0] == kernel.runReference(feeds)[0])
        }
    }

    /// The reference twin against QLinearConv's reference kernel (ONNX semantics, rounding half to even in
    /// double): they may differ only where the two roundings part, by one code.
    @Test func referenceAgreesWithQLinearConvWithinOneCode() throws {
        var generator = SeededGenerator(seed: 22)
        let constants: [String: Tensor] = [
            "x_scale": Tensor(scalar: Float(0.05)), "x_zero_point": Tensor(scalar: UInt8(131)),
            "w": try FusedTestData.codes(.int8, shape: [4, 3, 3, 3], using: &generator),
            "w_scale": try Tensor(shape: [4], scalars: [Float(0.01), 0.02, 0.015, 0.005]),
            "w_zero_point": try Tensor(shape: [4], scalars: [Int8(0), 0, 0, 0]),
            "bias": try Tensor(shape: [4], scalars: [Int32(100), -2000, 0, 4000]),
            "y_scale": Tensor(scalar: Float(0.3)), "y_zero_point": Tensor(scalar: UInt8(120)),
        ]
        let x = try FusedTestData.codes(.uint8, shape: [1, 3, 6, 6], using: &generator)
        var fusedNode = Node(opType: "QConv", domain: IntegerFusion.domain,
                             inputs: ["x", "x_scale", "x_zero_point", "w", "w_scale", "w_zero_point", "bias", "y_scale", "y_zero_point"],
                             outputs: ["y"])
        fusedNode.attributes["pads"] = .ints([1, 1, 1, 1])
        let fused = try FusedQConvKernel(buildContext(fusedNode, constants: constants))
        var qlinear = Node(opType: "QLinearConv",
                           inputs: ["x", "x_scale", "x_zero_point", "w", "w_scale", "w_zero_point", "y_scale", "y_zero_point", "bias"],
                           outputs: ["y"])
        qlinear.attributes["pads"] = .ints([1, 1, 1, 1])
        let reference = try QLinearConvKernel(attributes: IntegerConvAttributes(buildContext(qlinear, constants: constants)), constantW: nil, level: .reference)
        let ours = try fused.runReference(orderedInputs(fusedNode, constants: constants, feeds: ["x": x]))[0].doubleValues
        let theirs = try reference.run(orderedInputs(qlinear, constants: constants, feeds: ["x": x]),
                                       context: ExecutionContext(threadCount: 1))[0].doubleValues
        #expect(ours.count == 144)
        #expect(zip(ours, theirs).allSatisfy { abs($0 - $1) <= 1 })
        #expect(Set(ours).count > 20)  // a spread of codes, not a saturated block
    }
}
