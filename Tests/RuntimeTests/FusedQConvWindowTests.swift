import GraphIR
@testable import Runtime
import Tensors
import Testing
import _TestSupport

/// The `QConv` paths of real CNNs with symmetric weights: windows packed straight from the planes
/// (`sq_qconv_pack_window`), 1×1 convolutions of small depth, and the 64-code requantization, forced to
/// every instruction-set level the CPU has, against the reference twin bit for bit.
@Suite struct FusedQConvWindowTests {
    typealias Case = FusedQConvPlaneTests.Case

    /// Windows with unit width stride (blocks of 64 positions crossing output rows, rows wider than a
    /// block, a single output column, height strides and dilations, uneven padding, 1×1 with padding,
    /// groups, a batch of two), one whose runs per block exceed the packer's table (the im2col path),
    /// width stride 2 (rows wider than 32 outputs, a 7×7 stem, dilation with uneven padding), a product
    /// spanning several tiles of blocks,
    /// then 1×1 convolutions over depths 1…10 and 16, and the stem's depth 27 (3×3 stride 2).
    static let cases: [Case] = [
        Case(input: [1, 5, 9, 9], weight: [7, 5, 3, 3], attributes: ["pads": .ints([1, 1, 1, 1])]),
        Case(input: [1, 3, 11, 70], weight: [17, 3, 3, 3], attributes: ["pads": .ints([1, 1, 1, 1])]),
        Case(input: [1, 2, 40, 1], weight: [5, 2, 3, 3], attributes: ["pads": .ints([1, 1, 1, 1])]),
        Case(input: [1, 4, 13, 12], weight: [9, 4, 3, 3], attributes: ["strides": .ints([2, 1]), "dilations": .ints([2, 2]), "pads": .ints([2, 0, 1, 3])]),
        Case(input: [1, 6, 7, 7], weight: [33, 6, 1, 1], attributes: ["pads": .ints([1, 0, 0, 1])]),
        Case(input: [2, 8, 10, 6], weight: [6, 4, 3, 3], attributes: ["group": .int(2), "pads": .ints([1, 1, 1, 1])]),
        Case(input: [1, 2, 30, 2], weight: [3, 2, 5, 5], attributes: ["pads": .ints([2, 2, 2, 2])]),
        Case(input: [1, 1, 7, 19], weight: [3, 1, 5, 5], attributes: ["pads": .ints([2, 2, 2, 2])]),
        Case(input: [1, 2, 9, 150], weight: [5, 2, 3, 3], attributes: ["strides": .ints([1, 2]), "pads": .ints([1, 1, 1, 1])]),
        Case(input: [1, 3, 20, 41], weight: [8, 3, 7, 7], attributes: ["strides": .ints([2, 2]), "pads": .ints([3, 3, 3, 3])]),
        Case(input: [1, 4, 11, 30], weight: [6, 4, 3, 3], attributes: ["strides": .ints([2, 2]), "dilations": .ints([1, 3]), "pads": .ints([0, 2, 1, 0])]),
        // Many blocks of a moderate depth: several L1 tiles of blocks, bands of rows across each.
        Case(input: [1, 128, 40, 50], weight: [30, 128, 1, 1]),
    ] + (Array(1...10) + [16]).map { depth in
        Case(input: [1, depth, 9, 15], weight: [depth % 3 == 0 ? 16 : 19 + depth, depth, 1, 1])
    } + [
        Case(input: [1, 3, 23, 21], weight: [32, 3, 3, 3], attributes: ["strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])]),
    ]

    @Test func symmetricWeightsEqualReferenceAtEveryLevel() throws {
        var generator = SeededGenerator(seed: 191)
        var variant = 0
        for (index, testCase) in Self.cases.enumerated() {
            let channels = testCase.weight[0]
            for xZero: Int32 in [0, 18, 128, 255] {
                variant += 1
                let xType: DType = variant % 2 == 0 ? .int8 : .uint8
                // uint8 weights with zero point 128 are symmetric too once shifted to int8.
                let wType: DType = variant % 3 == 0 ? .uint8 : .int8
                let yType: DType = variant % 3 == 1 ? .int8 : .uint8
                let perChannel = variant % 4 != 1
                let count = perChannel ? channels : 1, shape = perChannel ? [channels] : []
                var constants: [String: Tensor] = [
                    "x_scale": Tensor(scalar: Float(0.02)), "x_zero_point": FusedTestData.zeroPoint(xType, xZero),
                    "w": try FusedTestData.codes(wType, shape: testCase.weight, using: &generator),
                    "w_scale": try Tensor(shape: shape, scalars: (0..<count).map { Float(0.003) * Float(1 + $0 % 3) }),
                    "w_zero_point": wType == .int8 ? try Tensor(zeros: .int8, shape: shape)
                                                   : try Tensor(shape: shape, scalars: [UInt8](repeating: 128, count: count)),
                    "bias": try Tensor(shape: [channels], scalars: (0..<channels).map { _ in Int32.random(in: -9000...9000, using: &generator) }),
                    "y_scale": Tensor(scalar: Float(0.02 * 0.003 * Float(20 + 40 * (variant % 4)))),
                    "y_zero_point": FusedTestData.zeroPoint(yType, [0, 18, 128, 255][variant % 4]),
                ]
                let x = try FusedTestData.codes(xType, shape: testCase.input, using: &generator)
                // Plain codes, a ReLU6-like clamp, a ReLU clamp with a code table, then float output.
                for form in 0..<4 {
                    var inputs = ["x", "x_scale", "x_zero_point", "w", "w_scale", "w_zero_point", "bias"]
                    var node = Node(opType: "QConv", domain: IntegerFusion.domain, inputs: [], outputs: ["y"])
                    for (key, value) in testCase.attributes { node.attributes[key] = value }
                    if form < 3 { inputs += ["y_scale", "y_zero_point"] }
                    if form == 1 {
                        node.attributes["clip_min"] = .float(0)
                        node.attributes["clip_max"] = .float(0.3)
                    }
                    if form == 2 {
                        node.attributes["output_table"] = .tensor(try FusedQConvPlaneTests.table(yType))
                        node.attributes["clip_min"] = .float(0)
                    }
                    if form == 3 {
                        constants["bias"] = try Tensor(shape: [channels], scalars: (0..<channels).map { _ in Float.random(in: -1...1, using: &generator) })
                    }
                    node.inputs = inputs
                    let expected = try FusedQConvPlaneTests.expectLevelsEqualReference(
                        node, constants: constants, x: x, threads: [1, 2, 3], "case \(index) x_zp \(xZero) form \(form)")
                    if form == 0 { #expect(Set(expected.doubleValues).count > 2, "case \(index): the data must spread") }
                }
            }
        }
    }

    /// Ties round away from zero on both signs, at shifts 31 and 32 (multipliers 1/2 and 1/4), over a
    /// full block of 64 positions: a 1×1 convolution with weight 1 makes every accumulator `x − x_zp`,
    /// so each code is `round_half_away(acc · multiplier) + 128`, clamped to 0…255, computed here directly.
    @Test func tiesRoundAwayFromZeroInFullBlocks() throws {
        // Accumulators x − 128 alternate between odd (ties at 1/2) and 2 mod 4 (ties at 1/4), −127…126.
        let codes: [UInt8] = (0..<64).map { (i: Int) -> UInt8 in UInt8(i * 4 + 1 + i % 2) }
        for multiplier in [Float(0.5), 0.25] {
            let constants: [String: Tensor] = [
                "x_scale": Tensor(scalar: Float(1)), "x_zero_point": Tensor(scalar: UInt8(128)),
                "w": try Tensor(shape: [1, 1, 1, 1], scalars: [Int8(1)]),
                "w_scale": Tensor(scalar: multiplier), "w_zero_point": Tensor(scalar: Int8(0)),
                "y_scale": Tensor(scalar: Float(1)), "y_zero_point": Tensor(scalar: UInt8(128)),
            ]
            let node = Node(opType: "QConv", domain: IntegerFusion.domain,
                            inputs: ["x", "x_scale", "x_zero_point", "w", "w_scale", "w_zero_point", "", "y_scale", "y_zero_point"],
                            outputs: ["y"])
            var kernel = try FusedQConvKernel(buildContext(node, constants: constants))
            let feeds = orderedInputs(node, constants: constants, feeds: ["x": try Tensor(shape: [1, 1, 8, 8], scalars: codes)])
            let expectedCodes: [UInt8] = codes.map { (code: UInt8) -> UInt8 in
                let scaled: Double = Double(Int(code) - 128) * Double(multiplier)
                let shifted: Double = scaled.rounded(.toNearestOrAwayFromZero) + 128
                return UInt8(Swift.min(255, Swift.max(0, shifted)))
            }
            let expected = try Tensor(shape: [1, 1, 8, 8], scalars: expectedCodes)
            #expect(try kernel.runReference(feeds)[0] == expected, "reference, multiplier \(multiplier)")
            for level in FusedQConvPlaneTests.levels {
                kernel.level = level
                #expect(try kernel.run(feeds, context: ExecutionContext(threadCount: 1))[0] == expected,
                        "multiplier \(multiplier) level \(level)")
            }
        }
    }
}
