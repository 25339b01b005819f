import Foundation
import GraphIR
@testable import Runtime
import Tensors
import Testing
import _TestSupport

/// The C kernels of `QConv` on NCHW planes (`IntegerConvolution+NCHW.swift`) and `QLookup`, forced to every
/// instruction-set level the CPU has, against their reference twins bit for bit.
@Suite struct FusedQConvPlaneTests {
    struct Case {
        var input: [Int]
        var weight: [Int]
        var attributes: [String: Attribute] = [:]
    }

    /// Awkward shapes for each path: depthwise (stride 1, 2, 3, dilation, 1-D), 1×1 (channels not a multiple of
    /// 4, output channels not a multiple of the row tile, position blocks with tails, a single position),
    /// im2col (a stem-like 3×3 stride 2, groups, a channel multiplier), a batch of two, and depthwise rows
    /// longer than 64 outputs.
    static let cases: [Case] = [
        Case(input: [1, 7, 13, 11], weight: [7, 1, 3, 3], attributes: ["group": .int(7), "strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])]),
        Case(input: [1, 5, 9, 37], weight: [5, 1, 3, 3], attributes: ["group": .int(5), "pads": .ints([1, 1, 1, 1])]),
        Case(input: [2, 3, 17, 19], weight: [3, 1, 5, 5], attributes: ["group": .int(3), "strides": .ints([3, 3]), "dilations": .ints([2, 1]), "pads": .ints([2, 0, 1, 3])]),
        Case(input: [1, 4, 29], weight: [4, 1, 3], attributes: ["group": .int(4), "strides": .ints([2]), "pads": .ints([1, 1])]),
        Case(input: [1, 13, 9, 10], weight: [11, 13, 1, 1]),
        Case(input: [1, 37, 15, 15], weight: [29, 37, 1, 1]),
        Case(input: [1, 45, 1, 1], weight: [19, 45, 1, 1]),
        Case(input: [1, 3, 23, 21], weight: [16, 3, 3, 3], attributes: ["strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])]),
        Case(input: [2, 8, 11, 9], weight: [6, 4, 3, 3], attributes: ["group": .int(2), "strides": .ints([2, 1]), "pads": .ints([0, 1, 2, 1])]),
        Case(input: [1, 3, 8, 70], weight: [6, 1, 3, 3], attributes: ["group": .int(3), "pads": .ints([1, 1, 1, 1])]),
        Case(input: [1, 6, 31], weight: [5, 6, 4], attributes: ["strides": .ints([2]), "pads": .ints([2, 1]), "dilations": .ints([2])]),
        Case(input: [1, 4, 5, 83], weight: [4, 1, 3, 3], attributes: ["group": .int(4), "pads": .ints([1, 1, 1, 1])]),
        Case(input: [1, 2, 6, 150], weight: [2, 1, 3, 3], attributes: ["group": .int(2), "strides": .ints([2, 2]), "pads": .ints([0, 1, 1, 0])]),
    ]

    /// Levels to force: every one the CPU has, `.reference` included (it runs the twin itself).
    static var levels: [Int8GEMMLevel] { Int8GEMMLevel.allCases.filter(\.isAvailable) }

    /// A code table that is not monotone, so a table applied twice, or not at all, shows.
    static func table(_ dtype: DType) throws -> Tensor {
        let bytes = (0..<256).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        return dtype == .uint8 ? try Tensor(shape: [256], scalars: bytes)
                               : try Tensor(shape: [256], scalars: bytes.map { Int8(bitPattern: $0) })
    }

    /// Runs the `QConv` of `node` on `x` at every level and thread count against its reference twin, bit
    /// for bit, and returns the reference output.
    @discardableResult
    static func expectLevelsEqualReference(_ node: Node, constants: [String: Tensor], x: Tensor, threads: [Int],
                                           _ label: String) throws -> Tensor {
        var kernel = try FusedQConvKernel(buildContext(node, constants: constants))
        let feeds = orderedInputs(node, constants: constants, feeds: ["x": x])
        let expected = try kernel.runReference(feeds)[0]
        for level in levels {
            kernel.level = level
            for count in threads {
                let result = try kernel.run(feeds, context: ExecutionContext(threadCount: count))[0]
                #expect(result == expected, "\(label) level \(level) threads \(count)")
            }
        }
        return expected
    }

    @Test func planeKernelsEqualReferenceAtEveryLevel() throws {
        var generator = SeededGenerator(seed: 91)
        var variant = 0
        for (index, testCase) in Self.cases.enumerated() {
            let channels = testCase.weight[0]
            for xZero in sweepZeroPoints {
                variant += 1
                let xType: DType = variant % 2 == 0 ? .int8 : .uint8
                let wType: DType = variant % 3 == 0 ? .uint8 : .int8
                let perChannel = variant % 4 != 1
                let count = perChannel ? channels : 1, shape = perChannel ? [channels] : []
                // Weight zero points from the sweep as well (0 included): the activation sums path runs.
                let wZeros: [Int32] = (0..<count).map {
                    (variant % 5 == 0 ? 0 : sweepZeroPoints[($0 + variant) % 7]) - (wType == .int8 ? 128 : 0)
                }
                let yType: DType = variant % 3 == 1 ? .int8 : .uint8
                var constants: [String: Tensor] = [
                    "x_scale": Tensor(scalar: Float(0.02)), "x_zero_point": FusedTestData.zeroPoint(xType, xZero),
                    "w": try FusedTestData.codes(wType, shape: testCase.weight, using: &generator),
                    "w_scale": try Tensor(shape: shape, scalars: (0..<count).map { Float(0.003) * Float(1 + $0 % 3) }),
                    "w_zero_point": wType == .int8 ? try Tensor(shape: shape, scalars: wZeros.map { Int8($0) })
                                                   : try Tensor(shape: shape, scalars: wZeros.map { UInt8($0) }),
                    "bias": try Tensor(shape: [channels], scalars: (0..<channels).map { _ in Int32.random(in: -9000...9000, using: &generator) }),
                    "y_scale": Tensor(scalar: Float(0.02 * 0.003 * 300)),
                    "y_zero_point": FusedTestData.zeroPoint(yType, sweepZeroPoints[(variant + 3) % 7]),
                ]
                let x = try FusedTestData.codes(xType, shape: testCase.input, using: &generator)
                // Quantized output (with a fused clamp and a code table on some), then float output.
                for form in 0..<3 {
                    var inputs = ["x", "x_scale", "x_zero_point", "w", "w_scale", "w_zero_point", "bias"]
                    var node = Node(opType: "QConv", domain: IntegerFusion.domain, inputs: [], outputs: ["y"])
                    for (key, value) in testCase.attributes { node.attributes[key] = value }
                    if form < 2 { inputs += ["y_scale", "y_zero_point"] }
                    if form == 1 {
                        node.attributes["output_table"] = .tensor(try Self.table(yType))
                        node.attributes["clip_min"] = .float(0)
                    }
                    if form == 2 {
                        constants["bias"] = try Tensor(shape: [channels], scalars: (0..<channels).map { _ in Float.random(in: -1...1, using: &generator) })
                    }
                    node.inputs = inputs
                    try Self.expectLevelsEqualReference(node, constants: constants, x: x, threads: [1, 3],
                                                        "case \(index) x_zp \(xZero) form \(form)")
                }
            }
        }
    }

    /// A 3×3 convolution over a 1×1 input whose padding is all but one tap: every padded tap must add nothing.
    @Test func paddingTapsAddNothing() throws {
        let constants: [String: Tensor] = [
            "x_scale": Tensor(scalar: Float(1)), "x_zero_point": Tensor(scalar: UInt8(200)),
            "w": try Tensor(shape: [2, 1, 3, 3], scalars: (0..<18).map { Int8($0 - 9) }),
            "w_scale": Tensor(scalar: Float(1)), "w_zero_point": Tensor(scalar: Int8(3)),
            "y_scale": Tensor(scalar: Float(1)), "y_zero_point": Tensor(scalar: UInt8(100)),
        ]
        var node = Node(opType: "QConv", domain: IntegerFusion.domain,
                        inputs: ["x", "x_scale", "x_zero_point", "w", "w_scale", "w_zero_point", "", "y_scale", "y_zero_point"],
                        outputs: ["y"])
        node.attributes["pads"] = .ints([1, 1, 1, 1])
        var kernel = try FusedQConvKernel(buildContext(node, constants: constants))
        let feeds = orderedInputs(node, constants: constants, feeds: ["x": try Tensor(shape: [1, 1, 1, 1], scalars: [UInt8(205)])])
        // Only the centre tap sees the input: (205 − 200) · (w[4] − 3) + 100, per output channel.
        let expected = try Tensor(shape: [1, 2, 1, 1], scalars: [UInt8(100 + 5 * (-5 - 3)), UInt8(100 + 5 * (4 - 3))])
        for level in Self.levels {
            kernel.level = level
            #expect(try kernel.run(feeds, context: ExecutionContext(threadCount: 1))[0] == expected, "level \(level)")
        }
    }

    @Test func lookupEqualsTableAtEveryLevel() throws {
        var generator = SeededGenerator(seed: 92)
        for (dtype, outputType) in [(DType.uint8, DType.int8), (.int8, .uint8), (.uint8, .uint8)] {
            let table = try Self.table(outputType)
            let bytes = table.withUnsafeBytes { Array($0.bindMemory(to: UInt8.self)) }
            var node = Node(opType: "QLookup", domain: IntegerFusion.domain, inputs: ["x"], outputs: ["y"])
            node.attributes["table"] = .tensor(table)
            var kernel = try FusedQLookupKernel(buildContext(node, constants: [:]))
            for count in [1, 63, 64, 65, 200_003] {
                let x = try FusedTestData.codes(dtype, shape: [count], using: &generator)
                let codes = x.withUnsafeBytes { Array($0.bindMemory(to: UInt8.self)) }
                let expectedBytes = codes.map { bytes[Int($0)] }
                let expected = outputType == .uint8 ? try Tensor(shape: [count], scalars: expectedBytes)
                                                    : try Tensor(shape: [count], scalars: expectedBytes.map { Int8(bitPattern: $0) })
                for level in Self.levels {
                    kernel.level = level
                    for threads in [1, 2] {
                        #expect(try kernel.run([x], context: ExecutionContext(threadCount: threads))[0] == expected,
                                "\(dtype) → \(outputType), \(count) codes, level \(level)")
                    }
                }
            }
        }
    }

    /// `DQ → f → Q` on codes fed as a graph input becomes one `QLookup` and equals the unfused graph for
    /// every one of the 256 codes.
    @Test func activationsBetweenDequantizeAndQuantizeBecomeExactTables() throws {
        let cases: [(String, [String: Attribute], [Float])] = [
            ("HardSwish", [:], []), ("HardSigmoid", ["alpha": .float(1.0 / 6)], []), ("Relu", [:], []),
            ("LeakyRelu", ["alpha": .float(0.1)], []), ("Clip", [:], [-0.4, 1.7]),
        ]
        for (index, (op, attributes, bounds)) in cases.enumerated() {
            var b = IntegerFusionTests.Builder()
            let s = b.constant(Tensor(scalar: Float(0.037)), "scale"), z = b.constant(Tensor(scalar: UInt8(131)), "zero")
            let x = b.add("DequantizeLinear", ["codes", s, z])
            let f = b.add(op, [x] + bounds.map { b.constant(Tensor(scalar: $0), "bound") }, attributes: attributes)
            let outputScale = b.constant(Tensor(scalar: Float(0.011 + 0.004 * Float(index))), "scale")
            let outputZero = index % 2 == 0 ? b.constant(Tensor(scalar: Int8(-17)), "zero") : b.constant(Tensor(scalar: UInt8(9)), "zero")
            let y = b.add("QuantizeLinear", [f, outputScale, outputZero])
            let model = b.model(inputs: [ValueInfo(name: "codes", dtype: .uint8, shape: [.value(256)])], outputs: [y])
            let types = try IntegerFusion.apply(to: model, registry: .standard).graph.nodes.map(\.opType)
            #expect(types.contains("QLookup") && !types.contains(op), "\(op): \(types)")
            let feeds = ["codes": try Tensor(shape: [256], scalars: (0...255).map { UInt8($0) })]
            let fused = try Session(model: model).run(feeds)[y]!
            let unfused = try Session(model: model, options: SessionOptions(integerExecution: false)).run(feeds)[y]!
            #expect(fused == unfused, "\(op)")
        }
    }

    /// `Conv → Q → DQ → HardSwish → Q` becomes one `QConv` carrying the HardSwish table, within the conv's
    /// one-step rounding difference (through HardSwish's slope of at most 1.5) of the unfused graph.
    @Test func hardSwishAfterConvolutionMovesIntoIt() throws {
        var generator = SeededGenerator(seed: 93)
        var b = IntegerFusionTests.Builder()
        let (_, x) = b.quantizeDequantize("x", scale: 0.03, zeroPoint: 128)
        let w = b.dequantizeWeights(try Tensor(shape: [6, 1, 3, 3], scalars: (0..<54).map { _ in Int8.random(in: -127...127, using: &generator) }),
                                    scales: (0..<6).map { Float(0.01) * Float(1 + $0 % 3) }, axis: 0)
        let conv = b.add("Conv", [x, w], attributes: ["pads": .ints([1, 1, 1, 1]), "group": .int(6)])
        let (_, h) = b.quantizeDequantize(conv, scale: 0.02, zeroPoint: 100)
        let swish = b.add("HardSwish", [h])
        let (_, y) = b.quantizeDequantize(swish, scale: 0.02, zeroPoint: 20)
        let model = b.model(inputs: [ValueInfo(name: "x", dtype: .float32, shape: nil)], outputs: [y])
        let feeds = ["x": try Tensor(shape: [1, 6, 9, 23], scalars: IntegerFusionTests.randomFloats(1242, -3...3, &generator))]
        try IntegerFusionTests.compare(model, feeds: feeds, tolerance: [y: 0.02 * 2.0001], expectFused: ["QConv"],
                                       expectGone: ["Conv", "HardSwish", "QLookup"])
    }

    /// QAdd and QMul at every level against the Swift loop (their twin), over broadcasts that take each
    /// path: same shapes, one value per channel (long planes via a table, short ones directly), the
    /// broadcast operand first, a scalar, and strides the C kernel does not take.
    @Test func binaryKernelsEqualReferenceAtEveryLevel() throws {
        var generator = SeededGenerator(seed: 94)
        let shapes: [([Int], [Int])] = [
            ([1, 5, 31, 29], [1, 5, 31, 29]), ([1, 6, 40, 40], [1, 6, 1, 1]), ([2, 7, 5, 3], [1, 7, 1, 1]),
            ([1, 3, 1, 1], [1, 3, 33, 17]), ([4, 1000], [1]), ([2, 3, 4], [2, 1, 4]), ([3, 1, 5], [1, 4, 1]),
        ]
        for (index, (aShape, bShape)) in shapes.enumerated() {
            for (variant, zero) in sweepZeroPoints.enumerated() {
                let aType: DType = variant % 2 == 0 ? .uint8 : .int8, bType: DType = (index + variant) % 3 == 0 ? .int8 : .uint8
                let yType: DType = variant % 3 == 1 ? .int8 : .uint8
                let constants: [String: Tensor] = [
                    "a_scale": Tensor(scalar: Float(0.031)), "a_zero_point": FusedTestData.zeroPoint(aType, zero),
                    "b_scale": Tensor(scalar: Float(0.0042 * Double(1 + index))),
                    "b_zero_point": FusedTestData.zeroPoint(bType, sweepZeroPoints[(variant + index) % 7]),
                    "y_scale": Tensor(scalar: Float(0.027)), "y_zero_point": FusedTestData.zeroPoint(yType, sweepZeroPoints[(variant + 2) % 7]),
                ]
                let feeds = ["a": try FusedTestData.codes(aType, shape: aShape, using: &generator),
                             "b": try FusedTestData.codes(bType, shape: bShape, using: &generator)]
                for (opType, operation) in [("QAdd", FusedQBinaryKernel.Operation.add), ("QMul", .multiply)] {
                    var node = Node(opType: opType, domain: IntegerFusion.domain,
                                    inputs: ["a", "a_scale", "a_zero_point", "b", "b_scale", "b_zero_point", "y_scale", "y_zero_point"],
                                    outputs: ["y"])
                    if variant % 4 == 3 { node.attributes["clip_min"] = .float(0) }
                    var kernel = try FusedQBinaryKernel(buildContext(node, constants: constants), operation: operation)
                    let ordered = orderedInputs(node, constants: constants, feeds: feeds)
                    kernel.level = .reference
                    let expected = try kernel.run(ordered, context: ExecutionContext(threadCount: 1))[0]
                    for level in Self.levels where level != .reference {
                        kernel.level = level
                        for threads in [1, 3] {
                            #expect(try kernel.run(ordered, context: ExecutionContext(threadCount: threads))[0] == expected,
                                    "\(opType) \(aShape) × \(bShape) zp \(zero) level \(level) threads \(threads)")
                        }
                    }
                }
            }
        }
    }

    /// Multipliers from 2^-40 to 2^6 (shifts on both sides of 31) and biases near the int32 limits, in
    /// the 1×1 and depthwise kernels: the requantization's narrow and wide forms agree with the reference.
    @Test func extremeMultipliersAndAccumulatorsEqualReference() throws {
        var generator = SeededGenerator(seed: 95)
        for (weight, group) in [([12, 5, 1, 1], 1), ([12, 1, 3, 3], 12)] {
            let channels = weight[0]
            let scales = (0..<channels).map { Float(pow(2.0, Double($0 * 4 - 40))) }
            let constants: [String: Tensor] = [
                "x_scale": Tensor(scalar: Float(1)), "x_zero_point": Tensor(scalar: UInt8(77)),
                "w": try FusedTestData.codes(.int8, shape: weight, using: &generator),
                "w_scale": try Tensor(shape: [channels], scalars: scales), "w_zero_point": try Tensor(zeros: .int8, shape: [channels]),
                "bias": try Tensor(shape: [channels], scalars: (0..<channels).map { $0 % 2 == 0 ? Int32(2_000_000_000) : Int32(-2_100_000_000) }),
                "y_scale": Tensor(scalar: Float(1)), "y_zero_point": Tensor(scalar: UInt8(128)),
            ]
            var node = Node(opType: "QConv", domain: IntegerFusion.domain,
                            inputs: ["x", "x_scale", "x_zero_point", "w", "w_scale", "w_zero_point", "bias", "y_scale", "y_zero_point"],
                            outputs: ["y"])
            node.attributes["group"] = .int(group)
            node.attributes["pads"] = .ints(weight[2] == 3 ? [1, 1, 1, 1] : [0, 0, 0, 0])
            var kernel = try FusedQConvKernel(buildContext(node, constants: constants))
            let feeds = orderedInputs(node, constants: constants,
                                      feeds: ["x": try FusedTestData.codes(.uint8, shape: [1, weight[1] * group, 7, 19], using: &generator)])
            let expected = try kernel.runReference(feeds)[0]
            #expect(Set(expected.doubleValues).count > 3)
            for level in Self.levels {
                kernel.level = level
                #expect(try kernel.run(feeds, context: ExecutionContext(threadCount: 1))[0] == expected, "\(weight) level \(level)")
            }
        }
    }
}
