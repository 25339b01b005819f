import GraphIR
import Runtime
import Tensors
import Testing
import _CKernels

/// The float32 Conv/ConvTranspose paths (im2col + SGEMM, 1×1 GEMM, depthwise) against the float64
/// direct loops (their reference twins) on random shapes, and the typed errors for bad shapes and
/// attributes across the conv family.
@Suite struct ConvKernelsTests {
    // MARK: Fast paths against the direct reference

    struct ConvCase: CustomStringConvertible {
        var batch = 1, channels = 2, outputChannels = 2, group = 1
        var spatial: [Int] = [5, 5]
        var kernel: [Int] = [3, 3]
        var attributes: [String: Attribute] = [:]
        var constantWeights = false
        var bias = true
        var description: String {
            "N\(batch) C\(channels) M\(outputChannels) g\(group) in\(spatial) k\(kernel) \(attributes.keys.sorted())"
        }
    }

    static let convCases: [ConvCase] = [
        ConvCase(channels: 3, outputChannels: 5, spatial: [9, 8], kernel: [3, 3],
                 attributes: ["pads": .ints([1, 0, 2, 1]), "strides": .ints([2, 1]), "dilations": .ints([1, 2])]),
        ConvCase(batch: 2, channels: 4, outputChannels: 6, group: 2, spatial: [7, 6], kernel: [2, 3],
                 attributes: ["auto_pad": .string(Array("SAME_UPPER".utf8)), "strides": .ints([2, 2])],
                 constantWeights: true),
        ConvCase(channels: 6, outputChannels: 12, group: 6, spatial: [8, 7], kernel: [3, 3],
                 attributes: ["pads": .ints([1, 1, 1, 1]), "dilations": .ints([2, 1])], constantWeights: true),
        ConvCase(batch: 3, channels: 5, outputChannels: 5, group: 5, spatial: [6, 9], kernel: [3, 2],
                 attributes: ["auto_pad": .string(Array("SAME_LOWER".utf8)), "strides": .ints([2, 3])], bias: false),
        ConvCase(batch: 2, channels: 7, outputChannels: 33, spatial: [4, 5], kernel: [1, 1], constantWeights: true),
        ConvCase(channels: 3, outputChannels: 4, spatial: [11], kernel: [4],
                 attributes: ["strides": .ints([3]), "pads": .ints([2, 1]), "dilations": .ints([2])]),
        ConvCase(channels: 2, outputChannels: 3, spatial: [4, 5, 6], kernel: [2, 3, 2],
                 attributes: ["pads": .ints([1, 0, 1, 0, 1, 1]), "strides": .ints([1, 2, 2])]),
        ConvCase(channels: 4, outputChannels: 4, group: 2, spatial: [10, 3], kernel: [3, 3],
                 attributes: ["auto_pad": .string(Array("VALID".utf8)), "strides": .ints([3, 1])]),
        // im2col in several row blocks (depth · width large), in 2-D and across depth slices in 3-D.
        ConvCase(channels: 64, outputChannels: 8, spatial: [20, 30], kernel: [3, 3],
                 attributes: ["pads": .ints([1, 1, 1, 1])], constantWeights: true),
        ConvCase(channels: 32, outputChannels: 3, spatial: [3, 6, 40], kernel: [2, 3, 3],
                 attributes: ["pads": .ints([1, 1, 1, 0, 1, 1])]),
        // Large enough that the GEMM splits over threads (M·N·K above the threshold).
        ConvCase(channels: 16, outputChannels: 40, spatial: [18, 17], kernel: [3, 3],
                 attributes: ["pads": .ints([1, 1, 1, 1])], constantWeights: true),
        // One patch block split over the output channels (a late ResNet layer), and a dilated "same" 3×3.
        ConvCase(channels: 160, outputChannels: 70, spatial: [7, 7], kernel: [3, 3],
                 attributes: ["pads": .ints([1, 1, 1, 1])], constantWeights: true),
        ConvCase(channels: 24, outputChannels: 20, spatial: [9, 21], kernel: [3, 3],
                 attributes: ["pads": .ints([2, 2, 2, 2]), "dilations": .ints([2, 2])]),
        // Stride 2 (even lanes picked from two loads) in several blocks, and stride 3 (gathers).
        ConvCase(channels: 48, outputChannels: 24, spatial: [64, 61], kernel: [3, 3],
                 attributes: ["pads": .ints([1, 1, 1, 1]), "strides": .ints([2, 2])], constantWeights: true),
        ConvCase(channels: 5, outputChannels: 7, spatial: [20, 50], kernel: [5, 4],
                 attributes: ["pads": .ints([2, 1, 2, 3]), "strides": .ints([3, 3])]),
    ]

    @Test(arguments: convCases)
    func convFastPathsMatchDirectLoop(_ spec: ConvCase) throws {
        var generator = ConvTestRandom(seed: UInt64(spec.description.utf8.count))
        let x = randomTensor([spec.batch, spec.channels] + spec.spatial, &generator)
        let w = randomTensor([spec.outputChannels, spec.channels / spec.group] + spec.kernel, &generator)
        let b = randomTensor([spec.outputChannels], &generator)
        var attributes = spec.attributes
        if spec.group != 1 { attributes["group"] = .int(spec.group) }
        let inputs: [Tensor?] = [x, w, spec.bias ? b : nil]
        let constants: Set<Int> = spec.constantWeights ? [1] : []
        let fast = try runNode("Conv", inputs, constants: constants, attributes: attributes, threads: 3)[0]
        let direct = try runNode("Conv", inputs.map { $0.map(widened) }, constants: constants,
                                 attributes: attributes, threads: 1)[0]
        #expect(fast.shape == direct.shape)
        #expect(maxError(fast, direct) < 1e-5 * Float(spec.kernel.reduce(1, *) * spec.channels))
    }

    static let transposeCases: [ConvCase] = [
        ConvCase(channels: 3, outputChannels: 2, spatial: [4, 5], kernel: [3, 2],
                 attributes: ["strides": .ints([2, 3]), "pads": .ints([1, 0, 0, 1]), "output_padding": .ints([1, 2])]),
        ConvCase(batch: 2, channels: 4, outputChannels: 6, group: 2, spatial: [3, 3], kernel: [3, 3],
                 attributes: ["strides": .ints([2, 2]), "dilations": .ints([2, 1])], constantWeights: true),
        ConvCase(channels: 2, outputChannels: 2, spatial: [5], kernel: [4],
                 attributes: ["auto_pad": .string(Array("SAME_UPPER".utf8)), "strides": .ints([3])]),
        ConvCase(channels: 1, outputChannels: 3, spatial: [2, 3, 2], kernel: [2, 2, 3],
                 attributes: ["output_shape": .ints([4, 7, 3]), "strides": .ints([2, 2, 1])]),
    ]

    @Test(arguments: transposeCases)
    func convTransposeMatchesDirectLoop(_ spec: ConvCase) throws {
        var generator = ConvTestRandom(seed: UInt64(spec.description.utf8.count))
        let x = randomTensor([spec.batch, spec.channels] + spec.spatial, &generator)
        // ConvTranspose weights are [C, M/group, kernel…].
        let w = randomTensor([spec.channels, spec.outputChannels / spec.group] + spec.kernel, &generator)
        let b = randomTensor([spec.outputChannels], &generator)
        var attributes = spec.attributes
        if spec.group != 1 { attributes["group"] = .int(spec.group) }
        let inputs: [Tensor?] = [x, w, spec.bias ? b : nil]
        let constants: Set<Int> = spec.constantWeights ? [1] : []
        let fast = try runNode("ConvTranspose", inputs, constants: constants, attributes: attributes, threads: 2)[0]
        let direct = try runNode("ConvTranspose", inputs.map { $0.map(widened) }, constants: constants,
                                 attributes: attributes, threads: 1)[0]
        #expect(fast.shape == direct.shape)
        #expect(maxError(fast, direct) < 1e-5 * Float(spec.kernel.reduce(1, *) * spec.channels))
    }

    @Test func convTransposeOutputShapeFollowsTheSpecFormula() throws {
        // in 3, stride 2, kernel 3: full size 2·2 + 3 = 7; output_padding 1 adds a column of bias only.
        let x = try Tensor(shape: [1, 1, 1, 3], scalars: [Float(1), 2, 3])
        let w = try Tensor(shape: [1, 1, 1, 3], scalars: [Float(1), 10, 100])
        let y = try runNode("ConvTranspose", [x, w, try Tensor(shape: [1], scalars: [Float(0.5)])],
                            attributes: ["strides": .ints([1, 2]), "output_padding": .ints([0, 1])])[0]
        #expect(y.shape == [1, 1, 1, 8])
        // o = 2i + k: [1, 10, 100+2, 20, 200+3, 30, 300, 0] + 0.5
        #expect(y.scalars(as: Float.self) == [1.5, 10.5, 102.5, 20.5, 203.5, 30.5, 300.5, 0.5])
    }

    @Test(arguments: SGEMM.Level.available)
    func depthwisePlaneMatchesNaiveLoopAtEveryLevel(_ level: SGEMM.Level) {
        // 2-D plane 5 × 37 (row tails of 5 and 13 after 16- and 8-wide vectors), kernel 3 × 4, pads, and
        // strided cases (the padded kernels split rows into stride phases).
        for (stride, dilation) in [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2)] {
            let (inH, inW, kH, kW, padH, padW) = (5, 37, 3, 4, 1, 2)
            let outH = (inH + 2 * padH - (dilation * (kH - 1) + 1)) / stride + 1
            let outW = (inW + 2 * padW - (dilation * (kW - 1) + 1)) / stride + 1
            var generator = ConvTestRandom(seed: UInt64(stride * 10 + dilation))
            let x = (0..<(inH * inW)).map { _ in Float.random(in: -1...1, using: &generator) }
            let w = (0..<(kH * kW)).map { _ in Float.random(in: -1...1, using: &generator) }
            var expected = [Float](repeating: 0.5, count: outH * outW)
            for oh in 0..<outH {
                for ow in 0..<outW {
                    for kh in 0..<kH {
                        for kw in 0..<kW {
                            let ih = oh * stride - padH + kh * dilation, iw = ow * stride - padW + kw * dilation
                            if (0..<inH).contains(ih), (0..<inW).contains(iw) {
                                expected[oh * outW + ow] += w[kh * kW + kw] * x[ih * inW + iw]
                            }
                        }
                    }
                }
            }
            var actual = [Float](repeating: .nan, count: outH * outW)
            var geometry = sq_window3d(input: (1, inH, inW), output: (1, outH, outW), kernel: (1, kH, kW),
                                       stride: (1, stride, stride), dilation: (1, dilation, dilation),
                                       pad_begin: (0, padH, padW))
            sq_conv_depthwise_plane(level.rawValue, x, w, 0.5, &actual, &geometry)
            let worst = zip(actual, expected).map { abs($0 - $1) }.max()!
            #expect(worst < 1e-5, "level \(level), stride \(stride), dilation \(dilation): \(worst)")
        }
    }

    /// The channels-as-lanes kernel (narrow planes) sums like the plane kernel of its level: equal bit for
    /// bit, for channel counts around the 16-lane blocks, strides, dilations and uneven pads.
    @Test func depthwiseChannelBlocksEqualThePlaneKernel() {
        let geometries: [(input: (Int, Int), kernel: (Int, Int), stride: Int, dilation: Int, pad: (Int, Int))] = [
            ((7, 7), (5, 5), 1, 1, (2, 2)), ((14, 13), (3, 3), 2, 1, (1, 0)), ((9, 11), (3, 2), 1, 2, (2, 1)),
            ((5, 6), (1, 1), 1, 1, (0, 0)),
        ]
        for (index, shape) in geometries.enumerated() {
            let (inH, inW) = shape.input, (kH, kW) = shape.kernel
            let outH = (inH + 2 * shape.pad.0 - (shape.dilation * (kH - 1) + 1)) / shape.stride + 1
            let outW = (inW + 2 * shape.pad.1 - (shape.dilation * (kW - 1) + 1)) / shape.stride + 1
            var geometry = sq_window3d(input: (1, inH, inW), output: (1, outH, outW), kernel: (1, kH, kW),
                                       stride: (1, shape.stride, shape.stride),
                                       dilation: (1, shape.dilation, shape.dilation), pad_begin: (0, shape.pad.0, shape.pad.1))
            for channels in [1, 15, 16, 17, 40] {
                var generator = ConvTestRandom(seed: UInt64(100 * index + channels))
                let x = (0..<(channels * inH * inW)).map { _ in Float.random(in: -1...1, using: &generator) }
                let w = (0..<(channels * kH * kW)).map { _ in Float.random(in: -1...1, using: &generator) }
                let bias = (0..<channels).map { _ in Float.random(in: -1...1, using: &generator) }
                var planes = [Float](repeating: .nan, count: channels * outH * outW)
                var blocks = planes
                for c in 0..<channels {
                    x.withUnsafeBufferPointer { xs in
                        w.withUnsafeBufferPointer { ws in
                            planes.withUnsafeMutableBufferPointer { ys in
                                sq_conv_depthwise_plane(-1, xs.baseAddress! + c * inH * inW, ws.baseAddress! + c * kH * kW,
                                                        bias[c], ys.baseAddress! + c * outH * outW, &geometry)
                            }
                        }
                    }
                }
                let done = sq_conv_depthwise_channels(-1, x, w, bias, &blocks, channels, &geometry)
                guard done != 0 else {
                    // Only CPUs without AVX-512 decline.
                    #expect(SGEMM.Level.best != .avx512)
                    continue
                }
                #expect(zip(planes, blocks).allSatisfy { $0.bitPattern == $1.bitPattern },
                        "geometry \(index), \(channels) channels")
            }
        }
    }

    // MARK: Typed errors

    @Test func convRejectsBadShapesAndAttributes() throws {
        let x = try Tensor(zeros: .float32, shape: [1, 4, 5, 5])
        func conv(_ w: [Int], _ attributes: [String: Attribute] = [:], x: Tensor? = nil) throws {
            _ = try runNode("Conv", [x ?? (try Tensor(zeros: .float32, shape: [1, 4, 5, 5])),
                                     try Tensor(zeros: .float32, shape: w)], attributes: attributes)
        }
        try expectFailure("channels") { try conv([2, 3, 3, 3]) }
        try expectFailure("does not divide") { try conv([3, 2, 3, 3], ["group": .int(2)]) }
        try expectFailure("exceeds the padded input") { try conv([2, 4, 6, 3]) }
        try expectFailure("pads") { try conv([2, 4, 3, 3], ["pads": .ints([-1, 0, 0, 0])]) }
        try expectFailure("auto_pad") { try conv([2, 4, 3, 3], ["auto_pad": .string(Array("SAME".utf8))]) }
        try expectFailure("kernel_shape") { try conv([2, 4, 3, 3], ["kernel_shape": .ints([3, 2])]) }
        try expectFailure("group") { try conv([2, 4, 3, 3], ["group": .int(0)]) }
        try expectFailure("overflows") { try conv([2, 4, 3, 3], ["dilations": .ints([Int.max / 2 + 1, 1])]) }
        try expectFailure("rank") { try conv([2, 4, 3], x: x) }
        try expectFailure("dtype") {
            _ = try runNode("Conv", [x, try Tensor(zeros: .float64, shape: [2, 4, 3, 3])])
        }
    }

    @Test func convTransposeRejectsBadShapesAndAttributes() throws {
        let x = try Tensor(zeros: .float32, shape: [1, 2, 3, 3])
        try expectFailure("negative output size") {
            _ = try runNode("ConvTranspose", [x, try Tensor(zeros: .float32, shape: [2, 1, 2, 2])],
                            attributes: ["pads": .ints([3, 0, 2, 0])])
        }
        try expectFailure("negative output size") {
            _ = try runNode("ConvTranspose", [x, try Tensor(zeros: .float32, shape: [2, 1, 2, 2])],
                            attributes: ["pads": .ints([Int.max, 0, Int.max, 0])])
        }
        try expectFailure("output_padding") {
            _ = try runNode("ConvTranspose", [x, try Tensor(zeros: .float32, shape: [2, 1, 2, 2])],
                            attributes: ["strides": .ints([2, 2]), "output_padding": .ints([2, 0])])
        }
        try expectFailure("channels") {
            _ = try runNode("ConvTranspose", [x, try Tensor(zeros: .float32, shape: [3, 1, 2, 2])])
        }
    }

    @Test func matMulAndGemmRejectBadShapes() throws {
        let a = try Tensor(zeros: .float32, shape: [2, 3, 4])
        try expectFailure("inner dimension") { _ = try runNode("MatMul", [a, try Tensor(zeros: .float32, shape: [5, 2])]) }
        try expectFailure("do not broadcast") {
            _ = try runNode("MatMul", [a, try Tensor(zeros: .float32, shape: [3, 4, 2])])
        }
        try expectFailure("scalar") { _ = try runNode("MatMul", [a, Tensor(scalar: Float(1))]) }
        let m = try Tensor(zeros: .float32, shape: [2, 3]), n = try Tensor(zeros: .float32, shape: [3, 4])
        try expectFailure("does not broadcast") {
            _ = try runNode("Gemm", [m, n, try Tensor(zeros: .float32, shape: [3, 4])])
        }
        try expectFailure("required before opset 11") { _ = try runNode("Gemm", [m, n], opset: 9) }
        try expectFailure("op(B)") { _ = try runNode("Gemm", [m, m]) }
        try expectFailure("without broadcast = 1") {
            _ = try runNode("Gemm", [m, n, try Tensor(zeros: .float32, shape: [4])], opset: 6)
        }
    }

    @Test func poolsBatchNormAndResizeRejectBadInput() throws {
        let x = try Tensor(zeros: .float32, shape: [1, 2, 4, 4])
        try expectFailure("exceeds") { _ = try runNode("MaxPool", [x], attributes: ["kernel_shape": .ints([5, 2])]) }
        try expectFailure("ceil_mode") {
            _ = try runNode("MaxPool", [x], attributes: ["kernel_shape": .ints([2, 2]), "ceil_mode": .int(1)], opset: 8)
        }
        try expectFailure("kernel_shape") { _ = try runNode("AveragePool", [x]) }
        try expectFailure("dilations") {
            _ = try runNode("AveragePool", [x], attributes: ["kernel_shape": .ints([2, 2]), "dilations": .ints([2, 2])],
                            opset: 18)
        }
        let stats = try Tensor(zeros: .float32, shape: [2])
        try expectFailure("training") {
            _ = try runNode("BatchNormalization", [x, stats, stats, stats, stats],
                            attributes: ["training_mode": .int(1)], opset: 15)
        }
        try expectFailure("is_test = 0") {
            _ = try runNode("BatchNormalization", [x, stats, stats, stats, stats], opset: 6)
        }
        try expectFailure("shape") {
            _ = try runNode("BatchNormalization", [x, stats, stats, stats, try Tensor(zeros: .float32, shape: [3])])
        }
        let scales = try Tensor(shape: [4], scalars: [Float(1), 1, 2, 2])
        let sizes = try Tensor(shape: [4], scalars: [Int64(1), 2, 8, 8])
        try expectFailure("not both") { _ = try runNode("Resize", [x, nil, scales, sizes]) }
        try expectFailure("positive") {
            _ = try runNode("Resize", [x, nil, try Tensor(shape: [4], scalars: [Float(1), 1, -2, 2])])
        }
        try expectFailure("expected 4") { _ = try runNode("Resize", [x, nil, try Tensor(shape: [2], scalars: [Float(2), 2])]) }
        try expectFailure("≥ 1") {
            _ = try runNode("Upsample", [x, try Tensor(shape: [4], scalars: [Float(1), 1, 0.5, 2])], opset: 9)
        }
        try expectFailure("antialias") {
            _ = try runNode("Resize", [x, nil, try Tensor(shape: [4], scalars: [Float(1), 1, 0.5, 0.5])],
                            attributes: ["mode": .string(Array("linear".utf8)), "antialias": .int(1)], opset: 18)
        }
        try expectFailure("out of range") {
            _ = try runNode("Resize", [x, nil, try Tensor(shape: [4], scalars: [Float(1), 1, 1e30, 1])])
        }
    }

    @Test func resizeNegativeAxesMatchPositiveAxes() throws {
        var generator = ConvTestRandom(seed: 5)
        let x = randomTensor([1, 2, 4, 5], &generator)
        let sizes = try Tensor(shape: [2], scalars: [Int64(7), Int64(3)])
        let linear = Attribute.string(Array("linear".utf8))
        let negative = try runNode("Resize", [x, nil, nil, sizes], attributes: ["mode": linear, "axes": .ints([-2, -1])],
                                   opset: 18)[0]
        let positive = try runNode("Resize", [x, nil, nil, sizes], attributes: ["mode": linear, "axes": .ints([2, 3])],
                                   opset: 18)[0]
        #expect(negative.shape == [1, 2, 7, 3])
        #expect(negative == positive)
    }
}

// MARK: - Helpers

/// Builds a one-node model (inputs in `constants` become initializers), runs it, returns its outputs.
fileprivate func runNode(
    _ op: String, _ inputs: [Tensor?], constants: Set<Int> = [], attributes: [String: Attribute] = [:],
    opset: Int = 19, threads: Int = 1
) throws -> [Tensor] {
    var names: [String] = []
    var graphInputs: [ValueInfo] = []
    var feeds: [String: Tensor] = [:]
    var initializers: [(String, Tensor)] = []
    for (index, input) in inputs.enumerated() {
        guard let input else { names.append(""); continue }
        let name = "in\(index)"
        names.append(name)
        if constants.contains(index) {
            initializers.append((name, input))
        } else {
            graphInputs.append(ValueInfo(name: name))
            feeds[name] = input
        }
    }
    let outputCount = op == "MaxPool" ? 2 : 1
    let node = Node(opType: op, inputs: names, outputs: (0..<outputCount).map { "out\($0)" },
                    attributes: .init(uniqueKeysWithValues: attributes.sorted { $0.key < $1.key }))
    var graph = Graph(nodes: [node], inputs: graphInputs, outputs: (0..<outputCount).map { ValueInfo(name: "out\($0)") })
    for (name, tensor) in initializers { graph.initializers[name] = tensor }
    let session = try Session(model: Model(graph: graph, opsetImports: ["": opset]),
                              options: SessionOptions(threadCount: threads))
    let outputs = try session.run(feeds)
    return try session.outputNames.map { try #require(outputs[$0]) }
}

/// Expects `body` to throw an error whose description mentions `fragment`.
fileprivate func expectFailure(_ fragment: String, sourceLocation: SourceLocation = #_sourceLocation,
                   _ body: () throws -> Void) throws {
    do {
        try body()
        Issue.record("expected an error mentioning '\(fragment)'", sourceLocation: sourceLocation)
    } catch {
        #expect("\(error)".contains(fragment), "error '\(error)' should mention '\(fragment)'",
                sourceLocation: sourceLocation)
    }
}

/// float32 → float64 copy, so the same node runs on the direct (reference) path.
fileprivate func widened(_ tensor: Tensor) -> Tensor {
    try! Tensor(shape: tensor.shape, scalars: tensor.scalars(as: Float.self).map { Double($0) })
}

/// Largest difference between a float32 and a float64 tensor of one shape (infinity if shapes differ).
fileprivate func maxError(_ a: Tensor, _ b: Tensor) -> Float {
    guard a.shape == b.shape else { return .infinity }
    return zip(a.scalars(as: Float.self), b.scalars(as: Double.self)).reduce(0) { max($0, abs($1.0 - Float($1.1))) }
}

fileprivate func randomTensor(_ shape: [Int], _ generator: inout ConvTestRandom) -> Tensor {
    let count = shape.reduce(1, *)
    return try! Tensor(shape: shape, scalars: (0..<count).map { _ in Float.random(in: -1...1, using: &generator) })
}

/// SplitMix64, so failures reproduce.
fileprivate struct ConvTestRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
