import Foundation
import GraphIR
import ONNX
import Runtime
import Tensors
import Testing

// Expected values are hand-derived (integer arithmetic in the tests) or were computed with
// onnxruntime 1.31 / the onnx 1.23 reference implementation in Python and copied here; each case says
// which.

/// Runs one node whose inputs are all initializers (`nil` = omitted optional input).
private func runQuantNode(
    _ opType: String, opset: Int, _ inputs: [Tensor?], attributes: KeyValuePairs<String, Attribute> = [:],
    outputs: Int = 1
) throws -> [Tensor] {
    var names: [String] = []
    var graph = Graph()
    for (i, input) in inputs.enumerated() {
        guard let input else { names.append(""); continue }
        names.append("in\(i)")
        graph.initializers["in\(i)"] = input
    }
    let outputNames = (0..<outputs).map { "out\($0)" }
    var node = Node(opType: opType, inputs: names, outputs: outputNames)
    for (key, value) in attributes { node.attributes[key] = value }
    graph.nodes = [node]
    graph.outputs = outputNames.map { ValueInfo(name: $0) }
    let session = try Session(model: Model(graph: graph, opsetImports: ["": opset]),
                              options: SessionOptions(threadCount: 2))
    let results = try session.run([:])
    return try outputNames.map { name in
        guard let value = results[name] else { throw KernelError.invalid("no output \(name)") }
        return value
    }
}

private func runQuant(_ opType: String, opset: Int, _ inputs: [Tensor?],
                  attributes: KeyValuePairs<String, Attribute> = [:]) throws -> Tensor {
    try runQuantNode(opType, opset: opset, inputs, attributes: attributes)[0]
}

private func quantFloats(_ shape: [Int], _ values: [Float]) throws -> Tensor { try Tensor(shape: shape, scalars: values) }
private func quantScalar<T: TensorScalar>(_ value: T) -> Tensor { Tensor(scalar: value) }

/// Packs 4-bit values two per byte, first element in the low nibble (written independently of the kernels).
private func quantPacked4(_ dtype: DType, _ shape: [Int], _ values: [Int]) throws -> Tensor {
    var bytes = [UInt8](repeating: 0, count: (values.count + 1) / 2)
    for (i, v) in values.enumerated() {
        let nibble = UInt8(v & 0xF)
        bytes[i / 2] |= i % 2 == 0 ? nibble : nibble << 4
    }
    return try bytes.withUnsafeBytes { try Tensor(dtype: dtype, shape: shape, bytes: $0) }
}

private func quantUnpacked4(_ tensor: Tensor) -> [Int] {
    tensor.withUnsafeBytes { raw in
        (0..<tensor.count).map { i in
            let nibble = Int(i % 2 == 0 ? raw[i / 2] & 0xF : raw[i / 2] >> 4)
            return tensor.dtype == .int4 && nibble >= 8 ? nibble - 16 : nibble
        }
    }
}

/// Integer outputs of any 8/16-bit type (or packed 4-bit) as Ints.
private func quantInts(_ tensor: Tensor) -> [Int] {
    switch tensor.dtype {
    case .int8: return tensor.scalars(as: Int8.self).map(Int.init)
    case .uint8: return tensor.scalars(as: UInt8.self).map(Int.init)
    case .int16: return tensor.scalars(as: Int16.self).map(Int.init)
    case .uint16: return tensor.scalars(as: UInt16.self).map(Int.init)
    case .int32: return tensor.scalars(as: Int32.self).map(Int.init)
    case .int4, .uint4: return quantUnpacked4(tensor)
    default: return []
    }
}

/// A zero point tensor of `dtype` holding `value` (scalar).
private func quantZeroPoint(_ dtype: DType, _ value: Int) throws -> Tensor {
    switch dtype {
    case .int8: return quantScalar(Int8(value))
    case .uint8: return quantScalar(UInt8(value))
    case .int16: return quantScalar(Int16(value))
    case .uint16: return quantScalar(UInt16(value))
    case .int4, .uint4: return try quantPacked4(dtype, [], [value])
    default: throw KernelError.invalid("no zero point for \(dtype)")
    }
}

/// Round half to even of k + 0.5, by integer reasoning: the even one of k and k + 1.
private func evenNeighbour(_ k: Int) -> Int { k % 2 == 0 ? k : k + 1 }

@Suite struct QuantizeLinearTests {
    static let ranges: [(DType, ClosedRange<Int>)] = [
        (.int8, -128...127), (.uint8, 0...255), (.int16, -32768...32767), (.uint16, 0...65535),
        (.int4, -8...7), (.uint4, 0...15),
    ]

    /// Every tie k + 0.5 (and the non-ties k + 0.25, k + 0.75) for k in -700..<700, for power-of-two
    /// scales (so x / scale is exact), with several zero points, for every integer output type.
    @Test(arguments: [Float(1), 0.5, 0.25, 2, 0.125, 1024])
    func roundsHalfToEvenAndSaturates(scale: Float) throws {
        let ks = Array(-700..<700)
        let x: [Float] = ks.flatMap { k -> [Float] in
            let base = Float(k)
            return [(base + 0.5) * scale, (base + 0.25) * scale, (base + 0.75) * scale]
        }
        for (dtype, range) in Self.ranges {
            for zero in [range.lowerBound, 0, 3, range.upperBound] where range.contains(zero) {
                let y = try runQuant("QuantizeLinear", opset: 21, [quantFloats([x.count], x), quantScalar(scale), quantZeroPoint(dtype, zero)])
                #expect(y.dtype == dtype)
                let unclamped: [Int] = ks.flatMap { k -> [Int] in [evenNeighbour(k), k, k + 1] }
                let expected = unclamped.map { min(max($0 + zero, range.lowerBound), range.upperBound) }
                #expect(quantInts(y) == expected, "\(dtype) zero point \(zero) scale \(scale)")
            }
        }
    }

    @Test func int8AndUInt8RoundingAtOpsets10And13() throws {
        let x: [Float] = [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 254.5, -127.5, -128.5, 1000, -1000]
        for opset in [10, 13, 19] {
            let u = try runQuant("QuantizeLinear", opset: opset, [quantFloats([12], x), quantScalar(Float(1)), quantScalar(UInt8(0))])
            #expect(quantInts(u) == [0, 0, 0, 0, 2, 2, 4, 254, 0, 0, 255, 0])
            let s = try runQuant("QuantizeLinear", opset: opset, [quantFloats([12], x), quantScalar(Float(1)), quantScalar(Int8(0))])
            #expect(quantInts(s) == [-2, -2, 0, 0, 2, 2, 4, 127, -128, -128, 127, -128])
            // No zero point: uint8 with zero point 0.
            let d = try runQuant("QuantizeLinear", opset: opset, [quantFloats([12], x), quantScalar(Float(1)), nil])
            #expect(d.dtype == .uint8)
            #expect(quantInts(d) == quantInts(u))
        }
    }

    /// Quotients near .5 that are not exact in float32: the result depends on using a true float32
    /// division (x * (1/scale) differs). Expected: onnxruntime 1.31.
    @Test func quotientsUseFloat32Division() throws {
        let x: [Float] = [0.3, 0.5, 0.7, 0.9, 1.1, -0.3, -0.5, -0.7, 0.25, 0.75, 1.05, 0.15]
        let y = try runQuant("QuantizeLinear", opset: 13, [quantFloats([12], x), quantScalar(Float(0.2)), quantScalar(Int8(0))])
        #expect(quantInts(y) == [2, 2, 4, 4, 6, -2, -2, -4, 1, 4, 5, 1])
        let x2: [Float] = [0.15, 0.45, 0.75, 1.05, -0.15, -0.45, 0.35, 0.65]
        let y2 = try runQuant("QuantizeLinear", opset: 13, [quantFloats([8], x2), quantScalar(Float(0.1)), quantScalar(UInt8(10))])
        #expect(quantInts(y2) == [12, 14, 18, 20, 8, 6, 14, 16])
    }

    /// NaN goes to the type's minimum, ±infinity and huge values saturate; nothing traps. Expected:
    /// onnxruntime 1.31 (every output type, zero points 0 and 3).
    @Test func nanAndInfinitySaturateDeterministically() throws {
        let x: [Float] = [.nan, .infinity, -.infinity, 1e30, -1e30, 3e9, -3e9, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5]
        for (dtype, range) in Self.ranges {
            for zero in [0, 3] where range.contains(zero) {
                let y = try runQuant("QuantizeLinear", opset: 21, [quantFloats([13], x), quantScalar(Float(1)), quantZeroPoint(dtype, zero)])
                let lo = range.lowerBound, hi = range.upperBound
                let tail = [0, 2, 2, 0, -2, -2].map { min(max($0 + zero, lo), hi) }
                #expect(quantInts(y) == [lo, hi, lo, hi, lo, hi, lo] + tail, "\(dtype) zero point \(zero)")
            }
        }
        // Division by a zero scale: ±inf saturate, 0/0 is NaN.
        let y = try runQuant("QuantizeLinear", opset: 13, [quantFloats([3], [1, -1, 0]), quantScalar(Float(0)), quantScalar(UInt8(7))])
        #expect(quantInts(y) == [255, 0, 0])
    }

    /// Per-axis: the ONNX node test `test_quantizelinear_axis` data, hand-checked.
    @Test func perAxis() throws {
        let x = try quantFloats([1, 3, 3, 2], [-162, 10, -100, 232, -20, -50, -76, 0, 0, 252, 32, -44, 245, -485, -960, -270, -375, -470])
        let y = try runQuant("QuantizeLinear", opset: 13, [x, quantFloats([3], [2, 4, 5]), Tensor(shape: [3], scalars: [UInt8(84), 24, 196])])
        #expect(quantInts(y) == [3, 89, 34, 200, 74, 59, 5, 24, 24, 87, 32, 13, 245, 99, 4, 142, 121, 102])
        // Negative axis, inner-most: one scale per element of each row. Expected: onnxruntime 1.31.
        let x2 = try quantFloats([2, 3], [-1, 1000.5, 70000, 3.3, -2, 65535.4])
        let y2 = try runQuant("QuantizeLinear", opset: 21,
                          [x2, quantFloats([3], [1, 0.5, 2]), Tensor(shape: [3], scalars: [UInt16(5), 100, 0])],
                          attributes: ["axis": .int(-1)])
        #expect(quantInts(y2) == [4, 2101, 35000, 8, 96, 32768])
    }

    /// Blocked quantization (opset 21). Expected: onnxruntime 1.31.
    @Test func blocked() throws {
        let x = try quantFloats([2, 5], [0, 1.19, -1.1, -3.56, -1.82, -3.97, 0.24, 5.36, -1.97, -2.48])
        let scale = try quantFloats([2, 3], [0.5, 0.25, 1.0, 0.75, 2.0, 0.1])
        let zero = try Tensor(shape: [2, 3], scalars: [Int8(1), -2, 0, 3, 0, -5])
        let y = try runQuant("QuantizeLinear", opset: 21, [x, scale, zero], attributes: ["axis": .int(1), "block_size": .int(2)])
        #expect(quantInts(y) == [1, 3, -6, -16, -2, -2, 3, 3, -1, -30])

        // Along axis 0 (inner size 2) with a partial last block, int16 output.
        let x2 = try quantFloats([5, 2], [49, 35.7, 10.5, -93, -2.9, 69.5, -134.4, -45.8, -190.1, -129])
        let scale2 = try quantFloats([3, 2], [0.5, 0.25, 0.01, 2.0, 0.3, 0.7])
        let zero2 = try Tensor(shape: [3, 2], scalars: [Int16(100), -100, 0, 7, -3, 30000])
        let y2 = try runQuant("QuantizeLinear", opset: 21, [x2, scale2, zero2], attributes: ["axis": .int(0), "block_size": .int(2)])
        #expect(quantInts(y2) == [198, 43, 121, -472, -290, 42, -13440, -16, -637, 29816])

        // Packed 4-bit outputs, blocks of 3 along the last axis.
        let x3 = try quantFloats([2, 4], [1, -2.5, 7.7, 3.1, -9, 0.4, 12, -0.6])
        let scale3 = try quantFloats([2, 2], [0.5, 1, 2, 0.3])
        let y3 = try runQuant("QuantizeLinear", opset: 21, [x3, scale3, quantPacked4(.int4, [2, 2], [1, -1, 0, 2])],
                          attributes: ["axis": .int(-1), "block_size": .int(3)])
        #expect(y3.dtype == .int4 && y3.shape == [2, 4])
        #expect(quantInts(y3) == [3, -4, 7, 2, -4, 0, 6, 0])
        let y4 = try runQuant("QuantizeLinear", opset: 21, [x3, scale3, quantPacked4(.uint4, [2, 2], [1, 3, 0, 9])],
                          attributes: ["axis": .int(-1), "block_size": .int(3)])
        #expect(quantInts(y4) == [3, 0, 15, 6, 0, 0, 6, 7])
        // The packing itself: [3, 0, 15, 6, 0, 0, 6, 7] is bytes 0x03, 0x6F, 0x00, 0x76.
        #expect(y4.withUnsafeBytes { Array($0) } == [0x03, 0x6F, 0x00, 0x76])
    }

    @Test func outputDTypeAttribute() throws {
        let x = try quantFloats([3], [-1, 7.5, 100])
        let y = try runQuant("QuantizeLinear", opset: 21, [x, quantScalar(Float(1)), nil], attributes: ["output_dtype": .int(22)])
        #expect(y.dtype == .int4)
        #expect(quantInts(y) == [-1, 7, 7])
        #expect(throws: RuntimeError.self) {
            try runQuant("QuantizeLinear", opset: 21, [x, quantScalar(Float(1)), quantScalar(UInt8(0))], attributes: ["output_dtype": .int(3)])
        }
    }

    /// Float16 input: divided in float32 like onnxruntime 1.31 (its values).
    @Test func float16Input() throws {
        let x = try Tensor(shape: [6], scalars: [0.1, 0.25, 1.7, -3.3, 100.2, -0.6].map { Float16(Float($0)) })
        let y = try runQuant("QuantizeLinear", opset: 19, [x, quantScalar(Float16(0.07)), quantScalar(Int8(-3))])
        #expect(quantInts(y) == [-2, 1, 21, -50, 127, -12])
    }

    /// Int32 input (opsets 10/13): divided in float64 as numpy does.
    @Test func int32Input() throws {
        let x = try Tensor(shape: [4], scalars: [Int32(5), -5, 254, 2_000_000_001])
        let y = try runQuant("QuantizeLinear", opset: 13, [x, quantScalar(Float(2)), quantScalar(UInt8(10))])
        #expect(quantInts(y) == [12, 8, 137, 255])
    }

    /// Float8 outputs (opset 19+), `saturate` on and off. Expected bit patterns: the onnx 1.23 reference
    /// (ml_dtypes), which onnxruntime 1.31 matches except for one non-saturating overflow case.
    @Test func float8Outputs() throws {
        let x: [Float] = [0, -0.0, .nan, .infinity, -.infinity, 448, 449, 463.9, 464, 465, 500, -500,
                          0.0009765625, 0.00146484375, 0.1, 3.3]
        let zero = try [UInt8(0)].withUnsafeBytes { try Tensor(dtype: .float8e4m3fn, shape: [], bytes: $0) }
        let saturated = try runQuant("QuantizeLinear", opset: 19, [quantFloats([x.count], x), quantScalar(Float(1)), zero])
        #expect(saturated.withUnsafeBytes { Array($0) }
                == [0x00, 0x80, 0x7F, 0x7E, 0xFE, 0x7E, 0x7E, 0x7E, 0x7E, 0x7E, 0x7E, 0xFE, 0x00, 0x01, 0x1D, 0x45])
        let wrapped = try runQuant("QuantizeLinear", opset: 19, [quantFloats([x.count], x), quantScalar(Float(1)), zero],
                               attributes: ["saturate": .int(0)])
        #expect(wrapped.withUnsafeBytes { Array($0) }
                == [0x00, 0x80, 0x7F, 0x7F, 0xFF, 0x7E, 0x7E, 0x7E, 0x7E, 0x7F, 0x7F, 0xFF, 0x00, 0x01, 0x1D, 0x45])

        let x5: [Float] = [0, .nan, .infinity, -.infinity, 57344, 61439, 61440, 70000, -70000,
                           1.52587890625e-05, 7.62939453125e-06, 1.1444091796875e-05, 0.1, 3.3, 1e-30]
        let zero5 = try [UInt8(0)].withUnsafeBytes { try Tensor(dtype: .float8e5m2, shape: [], bytes: $0) }
        let s5 = try runQuant("QuantizeLinear", opset: 21, [quantFloats([x5.count], x5), quantScalar(Float(1)), zero5])
        #expect(s5.withUnsafeBytes { Array($0) }
                == [0x00, 0x7E, 0x7B, 0xFB, 0x7B, 0x7B, 0x7B, 0x7B, 0xFB, 0x01, 0x00, 0x01, 0x2E, 0x43, 0x00])
        let w5 = try runQuant("QuantizeLinear", opset: 21, [quantFloats([x5.count], x5), quantScalar(Float(1)), zero5],
                          attributes: ["saturate": .int(0)])
        #expect(w5.withUnsafeBytes { Array($0) }
                == [0x00, 0x7E, 0x7C, 0xFC, 0x7B, 0x7B, 0x7C, 0x7C, 0xFC, 0x01, 0x00, 0x01, 0x2E, 0x43, 0x00])
    }

    @Test func rejectsBadInputs() throws {
        let x = try quantFloats([2, 3], [1, 2, 3, 4, 5, 6])
        // Per-axis scales do not exist at opset 10.
        #expect(throws: RuntimeError.self) { try runQuant("QuantizeLinear", opset: 10, [x, quantFloats([3], [1, 1, 1]), nil]) }
        // Scale length must match the axis.
        #expect(throws: RuntimeError.self) { try runQuant("QuantizeLinear", opset: 13, [x, quantFloats([2], [1, 1]), nil]) }
        #expect(throws: RuntimeError.self) {
            try runQuant("QuantizeLinear", opset: 13, [x, quantFloats([3], [1, 1, 1]), nil], attributes: ["axis": .int(2)])
        }
        // Zero point shape must match the scale.
        #expect(throws: RuntimeError.self) {
            try runQuant("QuantizeLinear", opset: 13, [x, quantFloats([3], [1, 1, 1]), quantScalar(UInt8(0))])
        }
        // Blocked scale of the wrong shape, and int16 before opset 21.
        #expect(throws: RuntimeError.self) {
            try runQuant("QuantizeLinear", opset: 21, [x, quantFloats([2, 1], [1, 1]), nil], attributes: ["axis": .int(1), "block_size": .int(2)])
        }
        #expect(throws: RuntimeError.self) { try runQuant("QuantizeLinear", opset: 19, [x, quantScalar(Float(1)), quantScalar(Int16(0))]) }
        // Wrong input type; missing scale.
        #expect(throws: RuntimeError.self) {
            try runQuant("QuantizeLinear", opset: 13, [Tensor(shape: [1], scalars: [Int8(1)]), quantScalar(Float(1)), nil])
        }
        #expect(throws: RuntimeError.self) { try runQuant("QuantizeLinear", opset: 13, [x, nil, nil]) }
    }
}

@Suite struct DequantizeLinearTests {
    /// The ONNX node tests `test_dequantizelinear` and `_axis`, hand-checked.
    @Test func perTensorAndPerAxis() throws {
        let y = try runQuant("DequantizeLinear", opset: 10,
                         [Tensor(shape: [4], scalars: [UInt8(0), 3, 128, 255]), quantScalar(Float(2)), quantScalar(UInt8(128))])
        #expect(y.floats == [-256, -250, 0, 254])
        let x = try Tensor(shape: [1, 3, 3, 2], scalars: [UInt8(3), 89, 34, 200, 74, 59, 5, 24, 24, 87, 32, 13, 245, 99, 4, 142, 121, 102])
        let y2 = try runQuant("DequantizeLinear", opset: 13,
                          [x, quantFloats([3], [2, 4, 5]), Tensor(shape: [3], scalars: [UInt8(84), 24, 196])])
        #expect(y2.floats == [-162, 10, -100, 232, -20, -50, -76, 0, 0, 252, 32, -44, 245, -485, -960, -270, -375, -470])
        // Without zero point, int8.
        let y3 = try runQuant("DequantizeLinear", opset: 13, [Tensor(shape: [3], scalars: [Int8(-128), 0, 127]), quantScalar(Float(0.5)), nil])
        #expect(y3.floats == [-64, 0, 63.5])
    }

    /// Expected: onnxruntime 1.31.
    @Test func packedAndSixteenBitAndBlocked() throws {
        let x4 = try quantPacked4(.int4, [2, 4], [-8, 7, 3, -1, 0, 5, -4, 2])
        let y4 = try runQuant("DequantizeLinear", opset: 21, [x4, quantFloats([2, 2], [0.5, 2, 0.25, 1.5]), quantPacked4(.int4, [2, 2], [1, -2, 0, 3])],
                          attributes: ["axis": .int(1), "block_size": .int(3)])
        #expect(y4.floats == [-4.5, 3, 1, 2, 0, 1.25, -1, -1.5])

        let u4 = try quantPacked4(.uint4, [3, 2], [15, 0, 3, 9, 8, 1])
        let yu = try runQuant("DequantizeLinear", opset: 21, [u4, quantFloats([3], [0.5, 1, 0.125]), quantPacked4(.uint4, [3], [8, 1, 15])],
                          attributes: ["axis": .int(0)])
        #expect(yu.floats == [3.5, -4, 2, 8, -0.875, -1.75])

        let x16 = try Tensor(shape: [3, 2], scalars: [Int16(-32768), 32767, 100, -100, 7, 0])
        let y16 = try runQuant("DequantizeLinear", opset: 21,
                           [x16, quantFloats([2, 2], [0.5, 1e-3, 2, 4]), Tensor(shape: [2, 2], scalars: [Int16(0), -1, 5, 0])],
                           attributes: ["axis": .int(0), "block_size": .int(2)])
        #expect(y16.floats == [-16384, 32.768001556396484, 50, -0.0990000069141388, 4, 0])
    }

    @Test func int32AndHalfPrecisionScales() throws {
        // Expected: onnxruntime 1.31 (int32 is converted to float32 once, so 2^31 - 1 becomes 2^31).
        let x = try Tensor(shape: [4], scalars: [Int32.max, Int32.min, 12345, -7])
        let y = try runQuant("DequantizeLinear", opset: 13, [x, quantScalar(Float(0.5)), nil])
        #expect(y.floats == [1073741824, -1073741824, 6172.5, -3.5])
        // A float16 scale makes a float16 output (opset 19). Expected: onnxruntime 1.31.
        let h = try runQuant("DequantizeLinear", opset: 19,
                         [Tensor(shape: [4], scalars: [UInt8(0), 3, 128, 255]), quantScalar(Float16(0.0999)), quantScalar(UInt8(128))])
        #expect(h.dtype == .float16)
        #expect(h.scalars(as: Float16.self).map { Float($0) } == [-12.7890625, -12.4921875, 0, 12.6875])
        let b = try runQuant("DequantizeLinear", opset: 19,
                         [Tensor(shape: [2], scalars: [Int8(3), -3]), quantScalar(BFloat16(0.5)), nil])
        #expect(b.dtype == .bfloat16)
        #expect(b.scalars(as: BFloat16.self).map(\.floatValue) == [1.5, -1.5])
    }

    /// Float8 inputs decode exactly. Expected: onnxruntime 1.31.
    @Test func float8Inputs() throws {
        let codes: [UInt8] = [0x00, 0x80, 0x01, 0x08, 0x38, 0x7E, 0xFE, 0x45, 0x1D]
        let x = try codes.withUnsafeBytes { try Tensor(dtype: .float8e4m3fn, shape: [codes.count], bytes: $0) }
        let y = try runQuant("DequantizeLinear", opset: 19, [x, quantScalar(Float(2)), nil])
        #expect(y.floats.map(\.bitPattern) == [0, -0.0, 0.00390625, 0.03125, 2, 896, -896, 6.5, 0.203125].map { Float($0).bitPattern })
        let codes5: [UInt8] = [0x00, 0x01, 0x04, 0x3C, 0x7B, 0xFB, 0x7C, 0xFC, 0x43]
        let x5 = try codes5.withUnsafeBytes { try Tensor(dtype: .float8e5m2, shape: [codes5.count], bytes: $0) }
        let y5 = try runQuant("DequantizeLinear", opset: 21, [x5, quantScalar(Float(1)), nil])
        #expect(y5.floats == [0, 1.52587890625e-05, 6.103515625e-05, 1, 57344, -57344, .infinity, -.infinity, 3.5])
        let nan = try [UInt8(0x7F)].withUnsafeBytes { try Tensor(dtype: .float8e4m3fn, shape: [1], bytes: $0) }
        #expect(try runQuant("DequantizeLinear", opset: 19, [nan, quantScalar(Float(1)), nil]).floats[0].isNaN)
    }

    @Test func rejectsBadInputs() throws {
        let x = try Tensor(shape: [2], scalars: [UInt8(1), 2])
        #expect(throws: RuntimeError.self) { try runQuant("DequantizeLinear", opset: 13, [x, quantScalar(Float(1)), quantScalar(Int8(0))]) }
        #expect(throws: RuntimeError.self) { try runQuant("DequantizeLinear", opset: 13, [x, quantScalar(Float16(1)), nil]) }
        #expect(throws: RuntimeError.self) {
            try runQuant("DequantizeLinear", opset: 13, [Tensor(shape: [2], scalars: [Int16(1), 2]), quantScalar(Float(1)), nil])
        }
        #expect(throws: RuntimeError.self) { try runQuant("DequantizeLinear", opset: 10, [x, quantFloats([2], [1, 1]), nil]) }
        #expect(throws: RuntimeError.self) { try runQuant("DequantizeLinear", opset: 13, [quantFloats([2], [1, 2]), quantScalar(Float(1)), nil]) }
    }
}

@Suite struct DynamicQuantizeLinearTests {
    private func run(_ values: [Float]) throws -> (y: [Int], scale: Float, zero: Int) {
        let out = try runQuantNode("DynamicQuantizeLinear", opset: 11, [quantFloats([values.count], values)], outputs: 3)
        #expect(out[1].shape == [] && out[2].shape == [] && out[2].dtype == .uint8)
        return (quantInts(out[0]), out[1].floats[0], quantInts(out[2])[0])
    }

    /// The ONNX node tests' data (expected values from the test files, i.e. the ONNX reference).
    @Test func nodeTestData() throws {
        let a = try run([0, 2, -3, -2.5, 1.34, 0.5])
        #expect(a.y == [153, 255, 0, 26, 221, 179] && a.scale == Float(5) / 255 && a.zero == 153)
        let b = try run([-1, -2.1, -1.3, -2.5, -3.34, -4])
        #expect(b.y == [191, 121, 172, 96, 42, 0] && b.scale == Float(4) / 255 && b.zero == 255)
        let c = try run([1, 2.1, 1.3, 2.5, 3.34, 4, 1.5, 2.6, 3.9, 4, 3, 2.345])
        #expect(c.y == [64, 134, 83, 159, 213, 255, 96, 166, 249, 255, 191, 149] && c.scale == Float(4) / 255 && c.zero == 0)
    }

    /// Degenerate ranges. Expected: onnxruntime 1.31 (all-zero data gets scale 1, as in ORT; the ONNX
    /// reference gives 1/255 — y and the zero point are 0 either way).
    @Test func degenerateData() throws {
        let zeros = try run([0, 0, 0, 0, 0])
        #expect(zeros.y == [0, 0, 0, 0, 0] && zeros.scale == 1 && zeros.zero == 0)
        let empty = try run([])
        #expect(empty.y.isEmpty && empty.scale == 1 && empty.zero == 0)
        let positive = try run([1, 2, 3.5, 0.25])
        #expect(positive.y == [73, 146, 255, 18] && positive.scale == Float(3.5) / 255 && positive.zero == 0)
        let negative = try run([-1, -2, -3.5, -0.25])
        #expect(negative.y == [182, 109, 0, 237] && negative.scale == Float(3.5) / 255 && negative.zero == 255)
        let constant = try run([3, 3, 3])
        #expect(constant.y == [255, 255, 255] && constant.scale == Float(3) / 255 && constant.zero == 0)
        let withNaN = try run([1, .nan, -2])
        #expect(withNaN.y == [255, 0, 0] && withNaN.scale == Float(3) / 255 && withNaN.zero == 170)
        let withInfinity = try run([1, -.infinity, -2])
        #expect(withInfinity.y == [255, 0, 255] && withInfinity.scale == .infinity && withInfinity.zero == 255)
        let tiny = try run([.leastNonzeroMagnitude, 0])
        #expect(tiny.y == [255, 0] && tiny.scale == 0 && tiny.zero == 255)
    }
}

@Suite struct IntegerMatMulTests {
    /// Expected: onnxruntime 1.31. uint8 A [2, 3, 4] (batched), int8 B [4, 3], per-column B zero points.
    @Test(arguments: [(0, 0, [-4861, 17801, -13556, -17936, 33323, -9477, 2207, 13290, 3764, -7107, 17089, 5450, -19844, 46436, -18181, -4635, 18927, 14800]),
                      (18, -18, [2231, 14309, -12674, -9116, 29831, -8595, 11153, 9798, 4646, -1239, 13597, 6332, -4706, 42944, -17299, 4005, 15435, 15682]),
                      (128, 127, [18576, -7031, -7284, -6691, 8491, -3205, 12563, -11542, 10036, 24966, -7743, 11722, -53176, 21604, -11909, 7880, -5905, 21072]),
                      (255, -128, [-67010, -31669, -1061, -67797, -16147, 3018, -46758, -36180, 16259, -77960, -32381, 17945, -24777, -3034, -5686, -55776, -30543, 27295])])
    func matMulIntegerZeroPoints(aZero: Int, bZero: Int, expected: [Int]) throws {
        let a = try Tensor(shape: [2, 3, 4], scalars: [34, 32, 204, 127, 151, 153, 182, 7, 124, 37, 102, 237, 140, 18, 138, 33, 193, 242, 250, 159, 222, 94, 37, 130].map { UInt8($0) })
        let b = try Tensor(shape: [4, 3], scalars: [-15, 41, 126, -58, 91, -93, -39, 73, -65, 43, -11, 3].map { Int8($0) })
        let y = try runQuant("MatMulInteger", opset: 10,
                         [a, b, quantScalar(UInt8(aZero)), Tensor(shape: [3], scalars: [Int8(bZero), 0, 5])])
        #expect(y.dtype == .int32 && y.shape == [2, 3, 3])
        #expect(quantInts(y) == expected)
    }

    /// The ONNX node test `test_matmulinteger`.
    @Test func nodeTest() throws {
        let a = try Tensor(shape: [4, 3], scalars: [11, 7, 3, 10, 6, 2, 9, 5, 1, 8, 4, 0].map { UInt8($0) })
        let b = try Tensor(shape: [3, 2], scalars: [1, 4, 2, 5, 3, 6].map { UInt8($0) })
        let y = try runQuant("MatMulInteger", opset: 10,
                         [a, b, Tensor(shape: [1], scalars: [UInt8(12)]), Tensor(shape: [1], scalars: [UInt8(0)])])
        #expect(quantInts(y) == [-38, -83, -44, -98, -50, -113, -56, -128])
    }

    /// Awkward shapes against a naive Int reference written here: K in 1…10 and 118…122, batch
    /// broadcasting, 1-D operands, per-row A and per-column B zero points {0, 18, 128, 255}.
    @Test func awkwardShapesAgainstNaiveReference() throws {
        var seed: UInt64 = 0x9E3779B97F4A7C15
        func next() -> UInt8 { seed = seed &* 6364136223846793005 &+ 1442695040888963407; return UInt8(truncatingIfNeeded: seed >> 33) }
        for k in Array(1...10) + Array(118...122) {
            for (m, n) in [(1, 1), (3, 17), (5, 16)] {
                let aValues = (0..<(2 * m * k)).map { _ in next() }
                let bValues = (0..<(k * n)).map { _ in next() }
                let aZeros = (0..<m).map { [0, 18, 128, 255][$0 % 4] }
                let bZeros = (0..<n).map { [255, 128, 18, 0][$0 % 4] }
                let y = try runQuant("MatMulInteger", opset: 10, [
                    Tensor(shape: [2, m, k], scalars: aValues), Tensor(shape: [k, n], scalars: bValues),
                    Tensor(shape: [m], scalars: aZeros.map { UInt8($0) }), Tensor(shape: [n], scalars: bZeros.map { UInt8($0) }),
                ])
                var expected: [Int] = []
                for batch in 0..<2 {
                    for row in 0..<m {
                        for column in 0..<n {
                            var sum = 0
                            for i in 0..<k {
                                sum += (Int(aValues[(batch * m + row) * k + i]) - aZeros[row]) * (Int(bValues[i * n + column]) - bZeros[column])
                            }
                            expected.append(sum)
                        }
                    }
                }
                #expect(y.shape == [2, m, n])
                #expect(quantInts(y) == expected, "m \(m) k \(k) n \(n)")
            }
        }
        // 1-D A and B: a dot product, shape [].
        let dot = try runQuant("MatMulInteger", opset: 10, [Tensor(shape: [3], scalars: [Int8(1), -2, 3]), Tensor(shape: [3], scalars: [Int8(4), 5, -6])])
        #expect(dot.shape == [] && quantInts(dot) == [-24])
    }

    @Test func accumulationWrapsInt32() throws {
        // Each product is (255 - 0) * (-128 - 127) = -65025; 33,026 of them sum to -2,147,515,650,
        // below Int32.min, which wraps (+2^32) to 2,147,451,646.
        let k = 33_026
        let a = try Tensor(shape: [1, k], scalars: [UInt8](repeating: 255, count: k))
        let b = try Tensor(shape: [k, 1], scalars: [Int8](repeating: -128, count: k))
        let y = try runQuant("MatMulInteger", opset: 10, [a, b, nil, quantScalar(Int8(127))])
        #expect(quantInts(y) == [Int(Int32(truncatingIfNeeded: -65025 * k))])
        #expect(quantInts(y) == [2_147_451_646])
    }

    @Test func rejectsBadInputs() throws {
        let a = try Tensor(shape: [2, 3], scalars: [UInt8](repeating: 1, count: 6))
        let b = try Tensor(shape: [3, 2], scalars: [UInt8](repeating: 1, count: 6))
        #expect(throws: RuntimeError.self) { try runQuant("MatMulInteger", opset: 10, [a, try Tensor(shape: [2, 2], scalars: [UInt8](repeating: 1, count: 4))]) }
        #expect(throws: RuntimeError.self) { try runQuant("MatMulInteger", opset: 10, [a, b, quantScalar(Int8(0))]) }
        #expect(throws: RuntimeError.self) { try runQuant("MatMulInteger", opset: 10, [a, b, Tensor(shape: [3], scalars: [UInt8(0), 0, 0])]) }
        #expect(throws: RuntimeError.self) { try runQuant("MatMulInteger", opset: 10, [quantFloats([2, 3], [1, 2, 3, 4, 5, 6]), b]) }
    }
}

@Suite struct QLinearMatMulTests {
    private func qlinear(_ a: Tensor, _ aScale: Tensor, _ aZero: Tensor, _ b: Tensor, _ bScale: Tensor, _ bZero: Tensor,
                         _ yScale: Tensor, _ yZero: Tensor, opset: Int = 10) throws -> Tensor {
        try runQuant("QLinearMatMul", opset: opset, [a, aScale, aZero, b, bScale, bZero, yScale, yZero])
    }

    /// The ONNX node tests `test_qlinearmatmul_2D` and `_3D`.
    @Test func nodeTests() throws {
        let a = try Tensor(shape: [2, 4], scalars: [208, 236, 0, 238, 3, 214, 255, 29].map { UInt8($0) })
        let b = try Tensor(shape: [4, 3], scalars: [152, 51, 244, 60, 26, 255, 0, 127, 246, 127, 254, 247].map { UInt8($0) })
        func vector(_ v: Float) throws -> Tensor { try quantFloats([1], [v]) }
        func zero(_ v: UInt8) throws -> Tensor { try Tensor(shape: [1], scalars: [v]) }
        let y = try qlinear(a, vector(0.0066), zero(113), b, vector(0.00705), zero(114), vector(0.0107), zero(118))
        #expect(quantInts(y) == [168, 115, 255, 1, 66, 151])
        let a3 = try a.reshaped([1, 2, 4]), b3 = try b.reshaped([1, 4, 3])
        let batched = try runQuant("QLinearMatMul", opset: 10, [
            Tensor(shape: [2, 2, 4], scalars: a.scalars(as: UInt8.self) + a3.scalars(as: UInt8.self)), vector(0.0066), zero(113),
            Tensor(shape: [2, 4, 3], scalars: b.scalars(as: UInt8.self) + b3.scalars(as: UInt8.self)), vector(0.00705), zero(114),
            vector(0.0107), zero(118)])
        #expect(batched.shape == [2, 2, 3])
        #expect(quantInts(batched) == [168, 115, 255, 1, 66, 151, 168, 115, 255, 1, 66, 151])
    }

    /// Zero points {0, 18, 128, 255} (b's is 255 - z). Expected: onnxruntime 1.31, equal to the ONNX reference.
    @Test(arguments: [(0, [0, 0, 0, 0, 0, 0]), (18, [13, 15, 15, 13, 16, 15]),
                      (128, [128, 129, 129, 127, 129, 128]), (255, [253, 253, 252, 251, 251, 249])])
    func zeroPoints(zero: Int, expected: [Int]) throws {
        let a = try Tensor(shape: [2, 4], scalars: [240, 209, 214, 140, 251, 251, 34, 52].map { UInt8($0) })
        let b = try Tensor(shape: [4, 3], scalars: [78, 141, 210, 123, 251, 90, 237, 151, 184, 60, 151, 205].map { UInt8($0) })
        let y = try qlinear(a, quantScalar(Float(0.02)), quantScalar(UInt8(zero)), b, quantScalar(Float(0.01)), quantScalar(UInt8(255 - zero)),
                            quantScalar(Float(3)), quantScalar(UInt8(zero)))
        #expect(quantInts(y) == expected)
    }

    /// Mixed signedness and per-column b parameters. Expected: the ONNX reference (onnxruntime has no
    /// kernel for these type combinations).
    @Test func mixedTypesPerColumn() throws {
        let y = try qlinear(Tensor(shape: [3, 2], scalars: [28, -64, 121, 114, -112, -80].map { Int8($0) }), quantScalar(Float(0.05)), quantScalar(Int8(-3)),
                            Tensor(shape: [2, 2], scalars: [51, 45, 148, 89].map { UInt8($0) }), quantFloats([2], [0.01, 0.04]),
                            Tensor(shape: [2], scalars: [UInt8(128), 18]), quantScalar(Float(0.7)), quantScalar(Int8(-10)))
        #expect(y.dtype == .int8)
        #expect(quantInts(y) == [-13, -20, -15, 23, -5, -34])
        let y2 = try qlinear(Tensor(shape: [3, 2], scalars: [123, 59, 243, 171, 170, 29].map { UInt8($0) }), quantScalar(Float(0.05)), quantScalar(UInt8(7)),
                             Tensor(shape: [2, 2], scalars: [-88, 101, -48, 91].map { Int8($0) }), quantFloats([2], [0.01, 0.04]),
                             Tensor(shape: [2], scalars: [Int8(0), 0]), quantScalar(Float(0.7)), quantScalar(Int8(-10)))
        #expect(quantInts(y2) == [-19, 37, -30, 101, -21, 43])
    }

    /// The documented precision choice: the accumulator times the float32 multiplier is rounded in
    /// float64 like the ONNX reference (115); onnxruntime multiplies in float32 and gets 114.
    @Test func requantizesInFloat64LikeTheONNXReference() throws {
        let k = 33259 / 255 + 1
        var aValues = [UInt8](repeating: 255, count: k)
        aValues[k - 1] = UInt8(33259 - 255 * (k - 1))
        let y = try qlinear(Tensor(shape: [1, k], scalars: aValues), quantScalar(Float(0.0034426772)), quantScalar(UInt8(0)),
                            Tensor(shape: [k, 1], scalars: [UInt8](repeating: 1, count: k)), quantScalar(Float(1)), quantScalar(UInt8(0)),
                            quantScalar(Float(1)), quantScalar(UInt8(0)))
        #expect(quantInts(y) == [115])
    }

    @Test func halfPrecisionScalesAtOpset21() throws {
        // Multiplier (0.5 * 0.25) / 0.125 = 1 exactly in float16; acc = (10-2)*(3-1) + (4-2)*(5-1) = 24.
        let y = try qlinear(Tensor(shape: [1, 2], scalars: [UInt8(10), 4]), quantScalar(Float16(0.5)), quantScalar(UInt8(2)),
                            Tensor(shape: [2, 1], scalars: [UInt8(3), 5]), quantScalar(Float16(0.25)), quantScalar(UInt8(1)),
                            quantScalar(Float16(0.125)), quantScalar(UInt8(100)), opset: 21)
        #expect(quantInts(y) == [124])
        #expect(throws: RuntimeError.self) {
            try qlinear(Tensor(shape: [1, 2], scalars: [UInt8(10), 4]), quantScalar(Float16(0.5)), quantScalar(UInt8(2)),
                        Tensor(shape: [2, 1], scalars: [UInt8(3), 5]), quantScalar(Float16(0.25)), quantScalar(UInt8(1)),
                        quantScalar(Float16(0.125)), quantScalar(UInt8(100)), opset: 10)
        }
    }

    @Test func rejectsBadInputs() throws {
        let a = try Tensor(shape: [2, 2], scalars: [UInt8](repeating: 1, count: 4))
        #expect(throws: RuntimeError.self) {
            try qlinear(a, quantScalar(Float(1)), quantScalar(UInt8(0)), a, quantScalar(Float(1)), quantScalar(UInt8(0)), quantFloats([2], [1, 1]), quantScalar(UInt8(0)))
        }
        #expect(throws: RuntimeError.self) {
            try qlinear(a, quantScalar(Float(1)), quantScalar(Int8(0)), a, quantScalar(Float(1)), quantScalar(UInt8(0)), quantScalar(Float(1)), quantScalar(UInt8(0)))
        }
        #expect(throws: RuntimeError.self) {
            try qlinear(a, quantScalar(Float(1)), quantScalar(UInt8(0)), a, quantScalar(Float(1)), quantScalar(UInt8(0)), quantScalar(Float(1)), quantScalar(Int32(0)))
        }
    }
}

@Suite struct IntegerConvTests {
    static let x: [UInt8] = [171, 206, 5, 206, 120, 131, 161, 73, 250, 13, 71, 98, 146, 104, 33, 11, 0, 12, 38, 255, 48, 167, 192, 60, 72, 111, 67, 249, 45, 229, 204, 216, 29, 100, 160, 126, 170, 173, 169, 15, 245, 142, 231, 69, 92, 225, 47, 16, 95, 173, 31, 222, 87, 58, 139, 229, 226, 223, 78, 4, 199, 181, 197, 0, 9, 128, 85, 111, 238, 52, 135, 83, 75, 206, 39, 81, 30, 38, 71, 178, 148, 114, 43, 204, 204, 60, 15, 81, 37, 204, 133, 129, 74, 129, 247, 60, 196, 3, 80, 238]
    static let w: [UInt8] = [223, 21, 215, 216, 116, 94, 250, 243, 173, 102, 53, 239, 68, 142, 172, 61, 80, 189, 50, 172, 241, 175, 165, 118, 247, 56, 91, 164, 167, 27, 41, 177, 215, 162, 238, 96, 84, 204, 10, 49, 49, 99, 40, 204, 216, 97, 7, 182, 27, 156, 43, 240, 173, 253, 157, 185, 96, 207, 28, 39, 92, 182, 124, 216, 241, 102, 108, 141, 165, 122, 154, 245]
    static let wSigned: [Int8] = [59, -47, -20, -26, -90, -128, 74, -21, -38, 33, 16, 111, 29, 108, 20, -45, -46, 125, 22, -80, 84, 82, -126, -88, 49, -25, -41, -110, -80, 91, 85, 84, 18, -93, -46, 6, 126, -62, 12, -3, 0, 13, 52, -101, 123, 93, 68, -57, -16, -14, -49, -114, 62, -128, 67, -79, 36, -41, -68, 109, -7, 99, -80, -5, -40, -12, -125, 42, -40, 91, -74, -42]

    /// The three ONNX node tests for ConvInteger.
    @Test func nodeTests() throws {
        let x = try Tensor(shape: [1, 1, 3, 3], scalars: [2, 3, 4, 5, 6, 7, 8, 9, 10].map { UInt8($0) })
        let w = try Tensor(shape: [1, 1, 2, 2], scalars: [UInt8](repeating: 1, count: 4))
        #expect(quantInts(try runQuant("ConvInteger", opset: 10, [x, w, quantScalar(UInt8(1))])) == [12, 16, 24, 28])
        let padded = try runQuant("ConvInteger", opset: 10, [x, w, quantScalar(UInt8(1))], attributes: ["pads": .ints([1, 1, 1, 1])])
        #expect(padded.shape == [1, 1, 4, 4])
        #expect(quantInts(padded) == [1, 3, 5, 3, 5, 12, 16, 9, 11, 24, 28, 15, 7, 15, 17, 9])
    }

    /// Per-tensor zero points. Expected: onnxruntime 1.31 (equal to the ONNX reference).
    @Test func perTensorZeroPointsMatchOnnxRuntime() throws {
        let x = try Tensor(shape: [1, 4, 5, 5], scalars: Self.x)
        let same = try runQuant("ConvInteger", opset: 10,
                            [x, Tensor(shape: [4, 2, 3, 3], scalars: Self.w), quantScalar(UInt8(131)), quantScalar(UInt8(200))],
                            attributes: ["auto_pad": .text("SAME_UPPER"), "strides": .ints([2, 2]), "group": .int(2)])
        #expect(same.shape == [1, 4, 3, 3])
        #expect(quantInts(same) == [-18863, 4405, 9497, -14654, -11265, 46126, 3242, 20441, -6390, -17386, -4534, 34795, 24369, 34535, -35009, -11145, 44447, 22595, 24518, 21146, 27048, -15523, 59925, 14637, 5541, 6692, -28228, -1497, 37608, -182, -17116, 15898, 17439, 14061, -10445, 16036])
        let dilated = try runQuant("ConvInteger", opset: 10,
                               [x, Tensor(shape: [2, 4, 3, 3], scalars: Self.w), quantScalar(UInt8(131)), quantScalar(UInt8(200))],
                               attributes: ["pads": .ints([1, 0, 2, 1]), "strides": .ints([1, 2]), "dilations": .ints([2, 1])])
        #expect(dilated.shape == [1, 2, 4, 2])
        #expect(quantInts(dilated) == [-37280, 2372, 60948, 36950, -22872, -39780, 6199, 29256, -596, 88860, 60840, 100943, 9098, 56585, 15582, 42121])
    }

    /// Per-output-channel w zero points with every padding mode. Expected: the ONNX reference
    /// (onnxruntime's ConvInteger supports per-tensor zero points only).
    @Test(arguments: [
        (["pads": Attribute.ints([1, 0, 2, 1]), "strides": .ints([2, 1])], [1, 4, 3, 4],
         [4218, 11160, -15449, 23972, -82076, -45426, -96081, -6756, -50667, -76638, -8682, -43832, 26195, -4534, -21205, 34795, 22829, 34535, -8295, -35009, -23904, 44447, 56272, 22595, 8945, 8330, -8017, 18984, -26216, 46029, 20599, 2685, 21069, -5044, 30179, -15196, -39244, 2008, -20128, -22582, -6989, -22702, 26101, -15761, -39088, -43045, -8331, 52236]),
        (["dilations": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])], [1, 4, 3, 3],
         [-36852, -51422, -37472, -16631, -13596, -10289, -9225, -29629, -30420, 22639, 4384, -13256, 24114, -34515, 227, 17625, -31507, -3662, -7069, -17762, 12309, 28604, -5070, 31231, 20118, 24179, -21187, 14339, 25556, 41328, -58130, -66389, -45284, 18109, 17181, 12007]),
        (["auto_pad": .text("SAME_UPPER"), "strides": .ints([2, 2])], [1, 4, 3, 3],
         [23404, 11160, 23972, -14075, -45426, -6756, -28217, -76638, -43832, -17386, -4534, 34795, 24369, 34535, -35009, -11145, 44447, 22595, 26894, 8330, 18984, -10123, 46029, 2685, -1587, -5044, -15196, 5103, 2008, -22582, -2116, -22702, -15761, -5739, -43045, 52236]),
        (["auto_pad": .text("SAME_LOWER"), "strides": .ints([2, 3])], [1, 4, 3, 2],
         [23404, -15449, -14075, -96081, -28217, -8682, -17386, -21205, 24369, -8295, -11145, 56272, 26894, -8017, -10123, 20599, -1587, 30179, 5103, -20128, -2116, 26101, -5739, -8331]),
        (["auto_pad": .text("VALID"), "dilations": .ints([1, 2])], [1, 4, 3, 1],
         [-35892, -79893, -83075, -619, 1111, -19154, -19041, 28198, 8022, -27446, 24791, -25100]),
    ] as [([String: Attribute], [Int], [Int])])
    func perChannelZeroPoints(attributes: [String: Attribute], shape: [Int], expected: [Int]) throws {
        var node = Node(opType: "ConvInteger", inputs: ["x", "w", "xz", "wz"], outputs: ["y"])
        node.attributes["group"] = .int(2)
        for key in attributes.keys.sorted() { node.attributes[key] = attributes[key] }
        var graph = Graph(nodes: [node], outputs: [ValueInfo(name: "y")])
        graph.initializers["x"] = try Tensor(shape: [1, 4, 5, 5], scalars: Self.x)
        graph.initializers["w"] = try Tensor(shape: [4, 2, 3, 3], scalars: Self.w)
        graph.initializers["xz"] = quantScalar(UInt8(131))
        graph.initializers["wz"] = try Tensor(shape: [4], scalars: [UInt8(7), 200, 128, 0])
        let y = try #require(try Session(model: Model(graph: graph, opsetImports: ["": 10])).run([:])["y"])
        #expect(y.shape == shape)
        #expect(quantInts(y) == expected)
    }

    /// The ONNX node test `test_qlinearconv` (w_zero_point given per channel with one channel).
    @Test func qlinearConvNodeTest() throws {
        let x: [UInt8] = [255, 174, 162, 25, 203, 168, 58, 15, 59, 237, 95, 129, 0, 64, 56, 242, 153, 221, 168, 12, 166, 232, 178, 186, 195, 237, 162, 237, 188, 39, 124, 77, 80, 102, 43, 127, 230, 21, 83, 41, 40, 134, 255, 154, 92, 141, 42, 148, 247]
        let expected = [0, 81, 93, 230, 52, 87, 197, 240, 196, 18, 160, 126, 255, 191, 199, 13, 102, 34, 87, 243, 89, 23, 77, 69, 60, 18, 93, 18, 67, 216, 131, 178, 175, 153, 212, 128, 25, 234, 172, 214, 215, 121, 0, 101, 163, 114, 213, 107, 8]
        let y = try runQuant("QLinearConv", opset: 10, [
            Tensor(shape: [1, 1, 7, 7], scalars: x), quantScalar(Float(0.003692046971991658)), quantScalar(UInt8(132)),
            Tensor(shape: [1, 1, 1, 1], scalars: [UInt8(0)]), quantFloats([1], [0.0017279457533732057]), Tensor(shape: [1], scalars: [UInt8(255)]),
            quantScalar(Float(0.001626812620088458)), quantScalar(UInt8(123)),
        ])
        #expect(quantInts(y) == expected)
    }

    /// Per-channel int8 weights, int32 bias, uint8 output. Expected: onnxruntime 1.31 (= ONNX reference).
    @Test(arguments: [
        (["pads": Attribute.ints([1, 1, 1, 1])], [1, 4, 5, 5],
         [98, 97, 101, 101, 104, 101, 106, 95, 98, 104, 105, 101, 99, 98, 101, 108, 104, 111, 101, 97, 105, 100, 96, 100, 99, 99, 99, 100, 100, 101, 100, 100, 100, 99, 101, 101, 98, 100, 100, 101, 102, 101, 101, 99, 99, 100, 99, 98, 100, 100, 113, 124, 79, 100, 108, 124, 93, 100, 67, 107, 99, 131, 110, 70, 139, 76, 126, 98, 67, 112, 97, 113, 97, 71, 128, 110, 109, 109, 108, 108, 110, 108, 109, 108, 106, 108, 109, 108, 108, 109, 108, 109, 109, 108, 107, 107, 109, 109, 107, 110]),
        (["strides": .ints([2, 2]), "dilations": .ints([1, 2]), "pads": .ints([0, 2, 1, 0])], [1, 4, 2, 2],
         [108, 104, 106, 100, 100, 101, 102, 99, 118, 44, 102, 60, 110, 107, 109, 107]),
    ] as [([String: Attribute], [Int], [Int])])
    func qlinearConvPerChannel(attributes: [String: Attribute], shape: [Int], expected: [Int]) throws {
        var node = Node(opType: "QLinearConv", inputs: ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], outputs: ["y"])
        node.attributes["group"] = .int(2)
        for key in attributes.keys.sorted() { node.attributes[key] = attributes[key] }
        var graph = Graph(nodes: [node], outputs: [ValueInfo(name: "y")])
        graph.initializers["x"] = try Tensor(shape: [1, 4, 5, 5], scalars: Self.x)
        graph.initializers["xs"] = quantScalar(Float(0.02))
        graph.initializers["xz"] = quantScalar(UInt8(131))
        graph.initializers["w"] = try Tensor(shape: [4, 2, 3, 3], scalars: Self.wSigned)
        graph.initializers["ws"] = try quantFloats([4], [0.01, 0.002, 0.05, 0.003])
        graph.initializers["wz"] = try Tensor(shape: [4], scalars: [Int8](repeating: 0, count: 4))
        graph.initializers["ys"] = quantScalar(Float(0.9))
        graph.initializers["yz"] = quantScalar(UInt8(100))
        graph.initializers["b"] = try Tensor(shape: [4], scalars: [Int32(1000), -2000, 0, 123456])
        let y = try #require(try Session(model: Model(graph: graph, opsetImports: ["": 10])).run([:])["y"])
        #expect(y.shape == shape)
        #expect(quantInts(y) == expected)
    }

    /// 1-D int8 convolution with int8 output. Expected: onnxruntime 1.31.
    @Test func qlinearConvOneDimensionalInt8() throws {
        let x: [Int8] = [-117, 75, 8, -26, 106, 24, 118, 60, 21, 0, -77, 48, 74, 50, -23, -127, 60, -118, 77, -90, -50, -74, 10, -76, -62, -116, 123, -73, -79, 25, -92, 98, 72, -39, -26, -35, 60, -22, -55, 46, -93, 73]
        let w: [Int8] = [-19, 112, -62, -32, 95, 52, -118, -41, -124, 82, -22, -69, 57, 94, -102, 1, -35, 57]
        let y = try runQuant("QLinearConv", opset: 10, [
            Tensor(shape: [2, 3, 7], scalars: x), quantScalar(Float(0.03)), quantScalar(Int8(-5)),
            Tensor(shape: [2, 3, 3], scalars: w), quantScalar(Float(0.004)), quantScalar(Int8(0)),
            quantScalar(Float(0.25)), quantScalar(Int8(-20)),
        ], attributes: ["pads": .ints([2, 1]), "strides": .ints([2])])
        #expect(y.dtype == .int8 && y.shape == [2, 2, 4])
        #expect(quantInts(y) == [-14, -15, -33, -19, -20, -19, -24, -17, -18, -15, -12, -19, -15, -19, -18, -18])
    }

    /// A 3-D convolution against a naive Int reference written here, with padding, strides and dilation.
    @Test func threeDimensionalAgainstNaiveReference() throws {
        let (c, m, d, kd) = (2, 3, 5, 2)
        let xValues = (0..<(c * d * d * d)).map { Int8(truncatingIfNeeded: $0 * 37 + 11) }
        let wValues = (0..<(m * c * kd * kd * kd)).map { Int8(truncatingIfNeeded: $0 * 53 - 7) }
        let (pad, stride, dilation, xZero) = (1, 2, 2, -3)
        let y = try runQuant("ConvInteger", opset: 10, [
            Tensor(shape: [1, c, d, d, d], scalars: xValues), Tensor(shape: [m, c, kd, kd, kd], scalars: wValues), quantScalar(Int8(xZero)),
        ], attributes: ["pads": .ints([pad, pad, pad, pad, pad, pad]), "strides": .ints([stride, stride, stride]),
                        "dilations": .ints([dilation, dilation, dilation])])
        let o = (d + 2 * pad - dilation * (kd - 1) - 1) / stride + 1
        #expect(y.shape == [1, m, o, o, o])
        var expected: [Int] = []
        for oc in 0..<m {
            for z in 0..<o { for yy in 0..<o { for xx in 0..<o {
                var sum = 0
                for ic in 0..<c { for a in 0..<kd { for b in 0..<kd { for e in 0..<kd {
                    let (iz, iy, ix) = (z * stride - pad + a * dilation, yy * stride - pad + b * dilation, xx * stride - pad + e * dilation)
                    guard (0..<d).contains(iz), (0..<d).contains(iy), (0..<d).contains(ix) else { continue }
                    let xv = Int(xValues[((ic * d + iz) * d + iy) * d + ix]) - xZero
                    sum += xv * Int(wValues[(((oc * c + ic) * kd + a) * kd + b) * kd + e])
                }}}}
                expected.append(sum)
            }}}
        }
        #expect(quantInts(y) == expected)
    }

    @Test func rejectsBadInputs() throws {
        let x = try Tensor(shape: [1, 2, 3, 3], scalars: [UInt8](repeating: 1, count: 18))
        let w = try Tensor(shape: [2, 2, 2, 2], scalars: [UInt8](repeating: 1, count: 16))
        #expect(throws: RuntimeError.self) { try runQuant("ConvInteger", opset: 10, [x, w], attributes: ["group": .int(2)]) }
        #expect(throws: RuntimeError.self) { try runQuant("ConvInteger", opset: 10, [x, w], attributes: ["strides": .ints([0, 1])]) }
        #expect(throws: RuntimeError.self) { try runQuant("ConvInteger", opset: 10, [x, w], attributes: ["pads": .ints([1, 1])]) }
        #expect(throws: RuntimeError.self) { try runQuant("ConvInteger", opset: 10, [x, w], attributes: ["kernel_shape": .ints([3, 3])]) }
        #expect(throws: RuntimeError.self) { try runQuant("ConvInteger", opset: 10, [x, w], attributes: ["auto_pad": .text("SAME")]) }
        #expect(throws: RuntimeError.self) { try runQuant("ConvInteger", opset: 10, [x, w], attributes: ["dilations": .ints([4, 4])]) }
        #expect(throws: RuntimeError.self) { try runQuant("ConvInteger", opset: 10, [x, w, nil, Tensor(shape: [3], scalars: [UInt8(0), 0, 0])]) }
        #expect(throws: RuntimeError.self) { try runQuant("ConvInteger", opset: 10, [x, w], attributes: ["pads": .ints([Int.max, 0, 1, 0])]) }
        #expect(throws: RuntimeError.self) {
            try runQuant("QLinearConv", opset: 10, [x, quantScalar(Float(1)), quantScalar(UInt8(0)), w, quantScalar(Float(1)), quantScalar(UInt8(0)),
                                                 quantScalar(Float(1)), quantScalar(UInt8(0)), Tensor(shape: [2], scalars: [Int8(0), 0])])
        }
    }
}

/// Empty and hostile shapes: zero-sized dimensions hide products that do not fit in Int; sums over
/// nothing are zero. None of this may trap.
@Suite struct QuantizationEdgeShapeTests {
    @Test func emptyAndOverflowingShapes() throws {
        let empty = try Tensor(zeros: .float32, shape: [0, 3])
        let q = try runQuant("QuantizeLinear", opset: 13, [empty, quantFloats([3], [1, 1, 1]), Tensor(shape: [3], scalars: [UInt8(1), 2, 3])])
        #expect(q.shape == [0, 3] && q.dtype == .uint8)
        let hidden = try Tensor(zeros: .float32, shape: [0, 1 << 62, 4])
        #expect(throws: RuntimeError.self) {
            try runQuant("QuantizeLinear", opset: 13, [hidden, Tensor(zeros: .float32, shape: [0]), nil], attributes: ["axis": .int(0)])
        }
        let hiddenX = try Tensor(zeros: .uint8, shape: [0, 1, 1 << 40, 1 << 40])
        let w = try Tensor(shape: [1, 1, 1, 1], scalars: [UInt8(1)])
        #expect(throws: RuntimeError.self) { try runQuant("ConvInteger", opset: 10, [hiddenX, w]) }
    }

    @Test func sumsOverNothingAreZero() throws {
        let y = try runQuant("MatMulInteger", opset: 10, [Tensor(zeros: .uint8, shape: [2, 0]), Tensor(zeros: .int8, shape: [0, 3])])
        #expect(y.shape == [2, 3] && quantInts(y) == [0, 0, 0, 0, 0, 0])
        let batch = try runQuant("MatMulInteger", opset: 10, [Tensor(zeros: .uint8, shape: [0, 2, 3]), Tensor(zeros: .uint8, shape: [3, 4])])
        #expect(batch.shape == [0, 2, 4])
        let conv = try runQuant("ConvInteger", opset: 10, [Tensor(zeros: .uint8, shape: [1, 0, 3, 3]), Tensor(zeros: .uint8, shape: [2, 0, 2, 2])])
        #expect(conv.shape == [1, 2, 2, 2] && quantInts(conv) == [Int](repeating: 0, count: 8))
        // With a bias, an empty sum requantizes the bias alone: round(1000 * 0.5 * 0.01 / 0.1) + 3 = 53.
        let qconv = try runQuant("QLinearConv", opset: 10, [
            Tensor(zeros: .uint8, shape: [1, 0, 2, 2]), quantScalar(Float(0.5)), quantScalar(UInt8(0)),
            Tensor(zeros: .int8, shape: [1, 0, 1, 1]), quantScalar(Float(0.01)), quantScalar(Int8(0)),
            quantScalar(Float(0.1)), quantScalar(UInt8(3)), Tensor(shape: [1], scalars: [Int32(1000)]),
        ])
        #expect(quantInts(qconv) == [53, 53, 53, 53])
    }
}

/// The ONNX backend node tests of these operators (Debian's libonnx-testdata), run end to end through
/// the ONNX loader and a session, compared bit for bit. Skipped where the test data is not installed.
/// (The `_expanded` DynamicQuantizeLinear variants are function bodies of other operators and are left
/// to the conformance runner.)
@Suite struct QuantizationNodeTests {
    static let root = URL(fileURLWithPath: "/usr/share/libonnx-testdata/data/node")
    static let cases = [
        "test_quantizelinear", "test_quantizelinear_axis", "test_dequantizelinear", "test_dequantizelinear_axis",
        "test_dynamicquantizelinear", "test_dynamicquantizelinear_max_adjusted", "test_dynamicquantizelinear_min_adjusted",
        "test_matmulinteger", "test_qlinearmatmul_2D", "test_qlinearmatmul_3D",
        "test_basic_convinteger", "test_convinteger_with_padding", "test_convinteger_without_padding", "test_qlinearconv",
    ]

    @Test(.enabled(if: FileManager.default.fileExists(atPath: root.path)), arguments: cases)
    func nodeTest(name: String) throws {
        let directory = Self.root.appendingPathComponent(name)
        let model = try Model(contentsOf: directory.appendingPathComponent("model.onnx"))
        let session = try Session(model: model)
        let data = directory.appendingPathComponent("test_data_set_0")
        var feeds: [String: Tensor] = [:]
        for (index, input) in session.inputs.enumerated() {
            feeds[input.name] = try TensorProtoFile.read(data.appendingPathComponent("input_\(index).pb")).tensor
        }
        let outputs = try session.run(feeds)
        for (index, name) in session.outputNames.enumerated() {
            let expected = try TensorProtoFile.read(data.appendingPathComponent("output_\(index).pb")).tensor
            let actual = try #require(outputs[name])
            #expect(actual.dtype == expected.dtype && actual.shape == expected.shape, "\(name)")
            #expect(actual == expected, "\(name): \(quantInts(actual)) \(actual.dtype == .float32 ? actual.floats : [])")
        }
    }
}
