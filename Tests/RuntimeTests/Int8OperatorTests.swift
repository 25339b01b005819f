import GraphIR
@testable import Runtime
import Tensors
import Testing

// MatMulInteger, QLinearMatMul, ConvInteger and QLinearConv on the int8 GEMM path (every level the CPU
// has, weights prepacked as at session creation and packed per run) against the same kernels at
// `.reference`, which run the direct int32 loops (anchored to hand-derived and ONNX values in
// QuantizationKernelTests), and against naive sums written here. Zero points {0, 18, 75, 128, 157, 231,
// 255} (minus 128 for int8), full-range operands, all four uint8/int8 pairings.

private let unsignedZeroPoints = [0, 18, 75, 128, 157, 231, 255]

/// Deterministic full-range bytes.
private struct Bytes {
    var state: UInt64
    mutating func next() -> UInt8 {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return UInt8(truncatingIfNeeded: state >> 33)
    }
    mutating func tensor(_ dtype: DType, _ shape: [Int]) throws -> Tensor {
        let count = shape.reduce(1, *)
        let bytes = (0..<count).map { _ in next() }
        return try bytes.withUnsafeBytes { try Tensor(dtype: dtype, shape: shape, bytes: $0) }
    }
}

/// Zero points of `dtype` from the list, starting at `offset`: [count] values, or a scalar when count is nil.
private func zeroPoints(_ dtype: DType, count: Int?, offset: Int) throws -> Tensor {
    let values = (0..<(count ?? 1)).map { unsignedZeroPoints[($0 + offset) % unsignedZeroPoints.count] }
    if dtype == .uint8 {
        let bytes = values.map { UInt8($0) }
        return count == nil ? Tensor(scalar: bytes[0]) : try Tensor(shape: [bytes.count], scalars: bytes)
    }
    let signed = values.map { Int8($0 - 128) }
    return count == nil ? Tensor(scalar: signed[0]) : try Tensor(shape: [signed.count], scalars: signed)
}

private func integers(_ tensor: Tensor) throws -> [Int] { try tensor.quantizedIntegerValues(input: 0).map(Int.init) }

private let context = ExecutionContext(threadCount: 2)
private let pairings: [(DType, DType)] = [(.uint8, .int8), (.uint8, .uint8), (.int8, .int8), (.int8, .uint8)]

private func convAttributes(_ attributes: [String: Attribute]) throws -> IntegerConvAttributes {
    var node = Node(opType: "ConvInteger", inputs: [], outputs: [])
    for (key, value) in attributes.sorted(by: { $0.key < $1.key }) { node.attributes[key] = value }
    let build = KernelBuildContext(node: node, opsetVersion: 10, constantInputs: [],
                                   compileSubgraph: { _, _ in throw KernelError.unsupported("no subgraphs here") })
    return try IntegerConvAttributes(build)
}

@Suite struct Int8OperatorTests {
    /// (A shape, B shape): batches that broadcast, 1-D operands, K in 1…10 and 118…122, N = 16x + 15, M = tile + 1.
    static let matMulShapes: [([Int], [Int])] = [
        ([9, 7], [7, 17]), ([2, 9, 121], [121, 15]), ([3, 17, 118], [1, 118, 79]), ([5], [5, 47]),
        ([2, 33, 3], [2, 3, 31]), ([4, 10], [10]), ([1, 122], [122, 64]),
    ]

    @Test(arguments: Int8GEMMLevel.allCases)
    func matMulIntegerEqualsReference(level: Int8GEMMLevel) throws {
        guard level.isAvailable else { return }
        var bytes = Bytes(state: 7)
        for (aDType, bDType) in pairings {
            for (index, (aShape, bShape)) in Self.matMulShapes.enumerated() {
                let a = try bytes.tensor(aDType, aShape), b = try bytes.tensor(bDType, bShape)
                let rows = aShape.count == 1 ? 1 : aShape[aShape.count - 2], columns = bShape.count == 1 ? 1 : bShape[bShape.count - 1]
                // Alternate per-tensor and per-row / per-column zero points.
                let perAxis = index % 2 == 0
                let aZero = try zeroPoints(aDType, count: perAxis && aShape.count == 2 ? rows : nil, offset: index)
                let bZero = try zeroPoints(bDType, count: perAxis ? columns : nil, offset: index + 3)
                let inputs: [Tensor?] = [a, b, aZero, bZero]
                let expected = try MatMulIntegerKernel(constantB: nil, level: .reference).run(inputs, context: context)[0]
                let prepacked = try MatMulIntegerKernel(constantB: b, level: level).run(inputs, context: context)[0]
                let packedPerRun = try MatMulIntegerKernel(constantB: nil, level: level).run(inputs, context: context)[0]
                #expect(prepacked == expected, "\(level) \(aDType) x \(bDType) \(aShape) x \(bShape)")
                #expect(packedPerRun == expected, "\(level) \(aDType) x \(bDType) \(aShape) x \(bShape) (B packed per run)")
            }
        }
    }

    /// One case against a naive sum written here, so the comparison above is anchored independently.
    @Test func matMulIntegerEqualsNaiveSum() throws {
        var bytes = Bytes(state: 11)
        let a = try bytes.tensor(.int8, [9, 121]), b = try bytes.tensor(.uint8, [121, 17])
        let aZero = try zeroPoints(.int8, count: 9, offset: 0), bZero = try zeroPoints(.uint8, count: 17, offset: 2)
        let y = try MatMulIntegerKernel(constantB: b, level: .best).run([a, b, aZero, bZero], context: context)[0]
        let av = try integers(a), bv = try integers(b), za = try integers(aZero), zb = try integers(bZero)
        var expected: [Int] = []
        for i in 0..<9 {
            for j in 0..<17 {
                expected.append((0..<121).reduce(0) { $0 + (av[i * 121 + $1] - za[i]) * (bv[$1 * 17 + j] - zb[j]) })
            }
        }
        #expect(try integers(y) == expected)
    }

    @Test(arguments: Int8GEMMLevel.allCases)
    func qLinearMatMulEqualsReference(level: Int8GEMMLevel) throws {
        guard level.isAvailable else { return }
        var bytes = Bytes(state: 13)
        for (pairing, (aDType, bDType)) in pairings.enumerated() {
            for (index, (aShape, bShape)) in Self.matMulShapes.enumerated() where aShape.count >= 2 && bShape.count >= 2 {
                let a = try bytes.tensor(aDType, aShape), b = try bytes.tensor(bDType, bShape)
                let columns = bShape[bShape.count - 1]
                let yDType: DType = (pairing + index) % 2 == 0 ? .uint8 : .int8
                let bScale = try Tensor(shape: [columns], scalars: (0..<columns).map { Float(0.002 + 0.0001 * Float($0)) })
                let inputs: [Tensor?] = [
                    a, Tensor(scalar: Float(0.05)), try zeroPoints(aDType, count: nil, offset: index),
                    b, bScale, try zeroPoints(bDType, count: columns, offset: index + 1),
                    Tensor(scalar: Float(0.4)), try zeroPoints(yDType, count: nil, offset: index + 2),
                ]
                let expected = try QLinearMatMulKernel(version: 10, constantB: nil, level: .reference).run(inputs, context: context)[0]
                let fast = try QLinearMatMulKernel(version: 10, constantB: b, level: level).run(inputs, context: context)[0]
                #expect(fast == expected, "\(level) \(aDType) x \(bDType) \(aShape) x \(bShape) -> \(yDType)")
            }
        }
    }

    /// Conv geometries: (x shape, w shape, attributes).
    static let convCases: [([Int], [Int], [String: Attribute])] = [
        ([1, 3, 7, 9], [5, 3, 3, 3], ["pads": .ints([1, 1, 1, 1])]),
        ([2, 4, 9, 8], [6, 4, 3, 2], ["strides": .ints([2, 1]), "pads": .ints([0, 1, 2, 0])]),
        ([1, 6, 10, 10], [4, 3, 3, 3], ["group": .int(2), "dilations": .ints([2, 2]), "pads": .ints([2, 1, 0, 2])]),
        ([1, 8, 7, 7], [8, 1, 3, 3], ["group": .int(8), "pads": .ints([1, 1, 1, 1]), "strides": .ints([2, 2])]),
        ([1, 17, 6, 5], [33, 17, 1, 1], ["strides": .ints([2, 1])]),
        ([2, 5, 13], [7, 5, 4], ["auto_pad": .string(Array("SAME_UPPER".utf8)), "strides": .ints([3])]),
        ([1, 3, 4, 5, 6], [4, 3, 2, 3, 2], ["pads": .ints([1, 0, 1, 0, 1, 1])]),
        ([1, 40, 5, 5], [79, 40, 3, 3], ["pads": .ints([1, 1, 1, 1])]),
        // Depthwise (one input channel per output channel): multiplier 2, dilation, 1-D, one channel.
        ([2, 6, 9, 11], [12, 1, 3, 3], ["group": .int(6), "pads": .ints([1, 2, 0, 1])]),
        ([1, 4, 12, 10], [4, 1, 3, 2], ["group": .int(4), "dilations": .ints([2, 3]), "strides": .ints([1, 2]), "pads": .ints([2, 2, 2, 2])]),
        ([1, 3, 20], [3, 1, 5], ["group": .int(3), "strides": .ints([3]), "auto_pad": .string(Array("SAME_LOWER".utf8))]),
        ([1, 1, 7, 6], [5, 1, 2, 3], ["pads": .ints([0, 1, 1, 0])]),
        // 1 x 1 with unit strides: the channels-last input is multiplied without im2col.
        ([2, 19, 4, 9], [23, 19, 1, 1], [:]),
    ]

    @Test(arguments: Int8GEMMLevel.allCases)
    func convIntegerEqualsReference(level: Int8GEMMLevel) throws {
        guard level.isAvailable else { return }
        var bytes = Bytes(state: 17)
        for (xDType, wDType) in pairings {
            for (index, (xShape, wShape, attributes)) in Self.convCases.enumerated() {
                let x = try bytes.tensor(xDType, xShape), w = try bytes.tensor(wDType, wShape)
                let inputs: [Tensor?] = [x, w, try zeroPoints(xDType, count: nil, offset: index),
                                         try zeroPoints(wDType, count: index % 2 == 0 ? wShape[0] : nil, offset: index + 4)]
                let parsed = try convAttributes(attributes)
                let expected = try ConvIntegerKernel(attributes: parsed, constantW: nil, level: .reference).run(inputs, context: context)[0]
                let prepacked = try ConvIntegerKernel(attributes: parsed, constantW: w, level: level).run(inputs, context: context)[0]
                let packedPerRun = try ConvIntegerKernel(attributes: parsed, constantW: nil, level: level).run(inputs, context: context)[0]
                #expect(prepacked == expected, "\(level) \(xDType) x \(wDType) case \(index)")
                #expect(packedPerRun == expected, "\(level) \(xDType) x \(wDType) case \(index) (packed per run)")
            }
        }
    }

    /// A padded, strided conv against a naive sum written here (padding taps add nothing).
    @Test func convIntegerEqualsNaiveSum() throws {
        var bytes = Bytes(state: 19)
        let x = try bytes.tensor(.uint8, [1, 2, 5, 6]), w = try bytes.tensor(.int8, [3, 2, 3, 3])
        let xZero = Tensor(scalar: UInt8(157)), wZero = try zeroPoints(.int8, count: 3, offset: 1)
        let attributes = try convAttributes(["pads": .ints([1, 0, 0, 1]), "strides": .ints([2, 2])])
        let y = try ConvIntegerKernel(attributes: attributes, constantW: w, level: .best).run([x, w, xZero, wZero], context: context)[0]
        let xv = try integers(x), wv = try integers(w), zw = try integers(wZero)
        let outH = (5 + 1 + 0 - 3) / 2 + 1, outW = (6 + 0 + 1 - 3) / 2 + 1
        #expect(y.shape == [1, 3, outH, outW])
        var expected: [Int] = []
        for m in 0..<3 {
            for oh in 0..<outH {
                for ow in 0..<outW {
                    var sum = 0
                    for c in 0..<2 {
                        for kh in 0..<3 {
                            for kw in 0..<3 {
                                let ih = oh * 2 - 1 + kh, iw = ow * 2 + kw
                                guard ih >= 0, ih < 5, iw >= 0, iw < 6 else { continue }
                                sum += (xv[(c * 5 + ih) * 6 + iw] - 157) * (wv[((m * 2 + c) * 3 + kh) * 3 + kw] - zw[m])
                            }
                        }
                    }
                    expected.append(sum)
                }
            }
        }
        #expect(try integers(y) == expected)
    }

    @Test(arguments: Int8GEMMLevel.allCases)
    func qLinearConvEqualsReference(level: Int8GEMMLevel) throws {
        guard level.isAvailable else { return }
        var bytes = Bytes(state: 23)
        for (pairing, (xDType, wDType)) in pairings.enumerated() {
            for (index, (xShape, wShape, attributes)) in Self.convCases.enumerated() {
                let x = try bytes.tensor(xDType, xShape), w = try bytes.tensor(wDType, wShape)
                let channels = wShape[0]
                let bias = try Tensor(shape: [channels], scalars: (0..<channels).map { Int32($0 * 997 - 3000) })
                let yDType: DType = (pairing + index) % 2 == 0 ? .int8 : .uint8
                let inputs: [Tensor?] = [
                    x, Tensor(scalar: Float(0.03)), try zeroPoints(xDType, count: nil, offset: index),
                    w, try Tensor(shape: [channels], scalars: (0..<channels).map { Float(0.004 + 0.0003 * Float($0)) }),
                    try zeroPoints(wDType, count: index % 2 == 0 ? channels : nil, offset: index + 5),
                    Tensor(scalar: Float(0.6)), try zeroPoints(yDType, count: nil, offset: index + 1), bias,
                ]
                let parsed = try convAttributes(attributes)
                let expected = try QLinearConvKernel(attributes: parsed, constantW: nil, level: .reference).run(inputs, context: context)[0]
                let fast = try QLinearConvKernel(attributes: parsed, constantW: w, level: level).run(inputs, context: context)[0]
                #expect(fast == expected, "\(level) \(xDType) x \(wDType) case \(index) -> \(yDType)")
            }
        }
    }

    /// `requantize` rounds with the 1.5 · 2^52 trick; it must equal `rounded(.toNearestOrEven)` everywhere,
    /// including ties, huge products, ±inf and NaN (which saturates to the lower bound).
    @Test func requantizeEqualsHalfEvenRounding() {
        func expected(_ accumulator: Int32, _ multiplier: Double, _ zeroPoint: Int32, _ lower: Int32, _ upper: Int32) -> Int32 {
            let value = (Double(accumulator) * multiplier).rounded(.toNearestOrEven) + Double(zeroPoint)
            if value.isNaN { return lower }
            return Int32(min(max(value, Double(lower)), Double(upper)))
        }
        let multipliers: [Double] = [0.5, 0.25, 1.5, 0.0034426772, 1e-9, 3.7, 1e12, -0.5, 0, .infinity, -.infinity, .nan]
        let accumulators: [Int32] = [0, 1, -1, 3, -3, 5, -5, 7, 255, -255, 33259, 1 << 20, Int32.max, Int32.min, -1_000_001]
        for multiplier in multipliers {
            for accumulator in accumulators {
                for (zeroPoint, lower, upper) in [(Int32(0), Int32(-128), Int32(127)), (128, 0, 255), (-3, -32768, 32767)] {
                    #expect(requantize(accumulator, multiplier: multiplier, zeroPoint: zeroPoint, lower: lower, upper: upper)
                            == expected(accumulator, multiplier, zeroPoint, lower, upper), "\(accumulator) x \(multiplier)")
                }
            }
        }
        // Every tie k + 0.5 for k in -300...300 rounds to the even neighbour.
        for twice in -601...601 where twice % 2 != 0 {
            let result = requantize(Int32(twice), multiplier: 0.5, zeroPoint: 0, lower: -1000, upper: 1000)
            #expect(result % 2 == 0 && abs(Double(result) - Double(twice) / 2) == 0.5, "\(twice) / 2")
        }
    }

    /// The vectorized requantization (C, per level) equals the Swift `requantize` loop, including tails of
    /// 1…15 values, wrapping bias sums, ties, huge products, ±inf and NaN multipliers.
    @Test(arguments: Int8GEMMLevel.allCases)
    func requantizeRunEqualsSwiftLoop(level: Int8GEMMLevel) {
        guard level.isAvailable else { return }
        var bytes = Bytes(state: 29)
        let multipliers: [Double] = [0.5, 0.0034426772, 1e-9, 3.7, 1e12, -0.25, 0, .infinity, -.infinity, .nan, 0.0117]
        for count in Array(1...17) + [64, 99] {
            var sums = (0..<count).map { i -> Int32 in
                Int32(bitPattern: UInt32(bytes.next()) << 24 | UInt32(bytes.next()) << 12 | UInt32(bytes.next())) >> (i % 20)
            }
            if count >= 3 { (sums[0], sums[1], sums[2]) = (.max, .min, 3) }
            let bias = (0..<count).map { Int32($0 * 7919 % 4001) - 2000 }
            let perElement = (0..<count).map { multipliers[($0 + count) % multipliers.count] }
            for (zeroPoint, lower, upper) in [(Int32(128), Int32(0), Int32(255)), (-3, -128, 127)] {
                let requant = Requantization(zeroPoint: zeroPoint, range: lower...upper, outputScale: 1)
                for (biasStep, multiplierStep) in [(0, 0), (1, 1), (1, 0)] {
                    func run(_ level: Int8GEMMLevel) -> [UInt8] {
                        var out = [UInt8](repeating: 0xAA, count: count + 1)
                        sums.withUnsafeBufferPointer { sums in
                            bias.withUnsafeBufferPointer { bias in
                                perElement.withUnsafeBufferPointer { multipliers in
                                    requantizeRun(sums.baseAddress!, count: count, bias: bias.baseAddress!, biasStep: biasStep,
                                                  multipliers: multipliers.baseAddress!, multiplierStep: multiplierStep,
                                                  requant: requant, into: &out, level: level)
                                }
                            }
                        }
                        return out
                    }
                    #expect(run(level) == run(.reference), "\(level) count \(count) steps \(biasStep), \(multiplierStep)")
                }
            }
        }
    }
}

