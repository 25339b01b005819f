import Foundation
import GraphIR
import Runtime
import Tensors
import Testing

private extension Double {
    var exponential: Double { Foundation.exp(self) }
    var logarithm: Double { Foundation.log(self) }
}

@Suite struct SoftmaxAndNormalizationTests: ElementwiseTesting {
    let x: Tensor = try! Tensor(shape: [2, 2, 3], scalars: [Float(1), 2, 3, 4, 5, 7, 0, -1, 2, 3, 3, 3])

    @Test func softmaxCoercesTo2DBeforeOpset13() throws {
        // Opset 11, default axis 1: rows of 6 (values from ONNX Runtime).
        expectClose(try output("Softmax", opset: 11, [x]),
                    [0.0020440707448869944, 0.0055563608184456825, 0.015103754587471485, 0.04105626046657562,
                     0.11160249263048172, 0.8246370553970337, 0.014489908702671528, 0.005330539774149656,
                     0.10706675052642822, 0.29103758931159973, 0.29103758931159973, 0.29103758931159973])
        // Opset 13, default axis -1: rows of 3.
        expectClose(try output("Softmax", opset: 13, [x]),
                    [0.09003057330846786, 0.2447284609079361, 0.6652409434318542, 0.04201006516814232,
                     0.11419519782066345, 0.8437947034835815, 0.11419519782066345, 0.04201006516814232,
                     0.8437947034835815, 0.3333333432674408, 0.3333333432674408, 0.3333333432674408])
        // Opset 13 along a middle axis.
        expectClose(try output("Softmax", opset: 13, [x], attributes: [("axis", .int(1))]),
                    [0.04742587357759476, 0.04742587357759476, 0.01798621006309986, 0.9525741338729858,
                     0.9525741338729858, 0.9820137619972229, 0.04742587357759476, 0.01798621006309986,
                     0.26894140243530273, 0.9525741338729858, 0.9820137619972229, 0.7310585975646973])
    }

    @Test func logSoftmax() throws {
        expectClose(try output("LogSoftmax", opset: 13, [x], attributes: [("axis", .int(0))]),
                    [-0.31326165795326233, -0.048587340861558914, -0.31326165795326233, -0.31326165795326233,
                     -0.12692806124687195, -0.018149955198168755, -1.3132617473602295, -3.0485873222351074,
                     -1.3132617473602295, -1.3132617473602295, -2.1269280910491943, -4.0181498527526855])
        // Opset 11 normalises rows of 6 (values from ONNX Runtime).
        expectClose(try output("LogSoftmax", opset: 11, [x]),
                    [-6.192811965942383, -5.192811965942383, -4.192811965942383, -3.192811965942383,
                     -2.192811965942383, -0.19281193614006042, -4.234302997589111, -5.234302997589111,
                     -2.2343029975891113, -1.2343028783798218, -1.2343028783798218, -1.2343028783798218])
        // Large inputs do not overflow: the maximum is subtracted first.
        expectClose(try output("Softmax", opset: 13, [try floats([2], [1000, 1000])]), [0.5, 0.5])
        #expect(throws: KernelError.self) {
            try output("Softmax", opset: 13, [x], attributes: [("axis", .int(3))])
        }
    }

    @Test func softmaxAndSigmoidStayWithinFloat32RoundingOfADoubleReference() throws {
        // Inputs spread over the whole float32 exp range; the reference is computed in Double here.
        let values: [Float] = (0..<4001).map { (index: Int) -> Float in Float(index) * 0.0475 - 100 }
        let softmax = try output("Softmax", opset: 13, [try floats([values.count], values)]).floats
        let maximum = Double(values.max()!)
        let denominator = values.reduce(0.0) { $0 + ((Double($1) - maximum)).exponential }
        let logSoftmax = try output("LogSoftmax", opset: 13, [try floats([values.count], values)]).floats
        let sigmoid = try output("Sigmoid", [try floats([values.count], values)]).floats
        for (index, value) in values.enumerated() {
            let exact = (Double(value) - maximum).exponential / denominator
            // Below float32's normal range only the absolute error matters.
            #expect(abs(Double(softmax[index]) - exact) <= max(exact * 4e-7, 1e-37), "softmax at \(value)")
            let exactLog = Double(value) - maximum - denominator.logarithm
            #expect(abs(Double(logSoftmax[index]) - exactLog) <= max(abs(exactLog) * 2e-7, 2e-6), "log at \(value)")
            let exactSigmoid = 1 / (1 + (-Double(value)).exponential)
            #expect(abs(Double(sigmoid[index]) - exactSigmoid) <= max(exactSigmoid * 3e-7, 1e-37), "sigmoid at \(value)")
        }
    }

    @Test func layerNormalizationWithBiasAndStatistics() throws {
        let input = try floats([2, 4], [1, -2, 3, 0.5, 4, 5, -6, 2])
        let normalized = try outputs(
            "LayerNormalization", [input, try floats([4], [0.5, 1, 2, -1]), try floats([4], [0.1, 0, -0.1, 1])], outputs: 3)
        // numpy: (x - mean) / sqrt(var + 1e-5) * scale + bias
        expectClose(normalized[0], [0.20527920126914978, -1.47390878200531, 2.567073106765747, 1.0701861381530762,
                                 0.4180731475353241, 0.867472231388092, -3.454225778579712, 0.8265055418014526],
                    shape: [2, 4], tolerance: 1e-5)
        expectClose(normalized[1], [0.625, 1.25], shape: [2, 1])
        expectClose(normalized[2], [0.5614890456199646, 0.2313259243965149], shape: [2, 1], tolerance: 1e-5)
        // axis 0 normalises everything; a [4] scale broadcasts over the [2, 4] normalized shape.
        let whole = try outputs("LayerNormalization", [input, try floats([4], [1, 2, 3, 4])],
                                attributes: [("axis", .int(0))], outputs: 3)
        expectClose(whole[0], [0.018821071833372116, -1.7691807746887207, 1.863286018371582, -0.5269899964332581,
                               0.9222325086593628, 2.446739435195923, -6.267416954040527, 1.2798328399658203],
                    tolerance: 1e-5)
        expectClose(whole[1], [0.9375], shape: [1, 1])
        #expect(throws: KernelError.self) {
            try outputs("LayerNormalization", [input, try floats([3], [1, 1, 1])])
        }
    }

    @Test func layerNormalizationKeepsPrecisionUnderALargeOffset() throws {
        // 1000 plus noise of about 0.006: a float32 mean loses the digits that matter here. The reference is
        // computed in Double from the same float32 inputs.
        let values: [Float] = (0..<384).map { (index: Int) -> Float in 1000 + Float((index * 37) % 101 - 50) * 2e-4 }
        let normalized = try output("LayerNormalization", [try floats([1, 384], values), try floats([1], [1])])
        let mean = values.reduce(0.0) { $0 + Double($1) } / 384
        let variance = values.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / 384
        let expected = values.map { Float((Double($0) - mean) / (variance + 1e-5).squareRoot()) }
        expectClose(normalized, expected, tolerance: 1e-4)
    }
}

@Suite struct ReductionKernelTests: ElementwiseTesting {
    /// numpy: np.arange(24).reshape(2, 3, 4) - 7
    let y: Tensor = try! Tensor(shape: [2, 3, 4], scalars: (0..<24).map { Float($0 - 7) })

    @Test func reduceSumAxesMovedFromAttributeToInputAtOpset13() throws {
        let expected: [Float] = [-9, -6, -3, 0, 27, 30, 33, 36]
        expectClose(try output("ReduceSum", opset: 11, [y], attributes: [("axes", .ints([1]))]),
                    expected, shape: [2, 1, 4])
        expectClose(try output("ReduceSum", opset: 13, [y, try Tensor(shape: [1], scalars: [Int64(1)])]),
                    expected, shape: [2, 1, 4])
        // At 13 the attribute is not read: with no axes input everything is summed.
        expectClose(try output("ReduceSum", opset: 13, [y], attributes: [("axes", .ints([1]))]), [108],
                    shape: [1, 1, 1])
        // noop_with_empty_axes reduces each element on its own: a sum returns the input unchanged, a sum
        // of squares squares it (ONNX Runtime and the ONNX reference agree).
        let noAxes = try Tensor(shape: [0], scalars: [Int64]())
        #expect(try output("ReduceSum", opset: 13, [y, noAxes], attributes: [("noop_with_empty_axes", .int(1))]) == y)
        let squares = try output("ReduceSumSquare", opset: 18, [try floats([3], [-2, 0.5, 3]), noAxes],
                                 attributes: [("noop_with_empty_axes", .int(1))])
        #expect(squares == (try floats([3], [4, 0.25, 9])))
    }

    @Test func reduceMeanAxesMovedToInputAtOpset18() throws {
        // Scattered axes (0 and 2), keepdims 0.
        let expected: [Float] = [0.5, 4.5, 8.5]
        expectClose(try output("ReduceMean", opset: 13, [y],
                                            attributes: [("axes", .ints([0, -1])), ("keepdims", .int(0))]),
                    expected, shape: [3])
        expectClose(try output("ReduceMean", opset: 18, [y, try Tensor(shape: [2], scalars: [Int64(0), -1])],
                                            attributes: [("keepdims", .int(0))]),
                    expected, shape: [3])
        #expect(throws: KernelError.self) {
            try output("ReduceMean", opset: 18, [y, try Tensor(shape: [1], scalars: [Int64(3)])])
        }
    }

    @Test func otherReductions() throws {
        expectClose(try output("ReduceMax", [y], attributes: [("axes", .ints([-1])), ("keepdims", .int(0))]),
                    [-4, 0, 4, 8, 12, 16], shape: [2, 3])
        expectClose(try output("ReduceMin", [y], attributes: [("keepdims", .int(0))]), [-7], shape: [])
        expectClose(try output("ReduceL2", [y], attributes: [("axes", .ints([2]))]),
                    [11.224971771240234, 3.7416574954986572, 5.4772257804870605, 13.190905570983887,
                     21.118711471557617, 29.086078643798828], shape: [2, 3, 1])
        expectClose(try output("ReduceL1", [y], attributes: [("axes", .ints([0]))]),
                    [12, 12, 12, 12, 12, 12, 12, 12, 14, 16, 18, 20], shape: [1, 3, 4])
        expectClose(try output("ReduceSumSquare", [y], attributes: [("axes", .ints([1]))]),
                    [59, 44, 35, 32, 275, 332, 395, 464])
        expectClose(try output("ReduceLogSumExp", [y], attributes: [("axes", .ints([2]))]),
                    [-3.5598104000091553, 0.4401896893978119, 4.440189838409424, 8.440189361572266,
                     12.440189361572266, 16.440189361572266], tolerance: 1e-6)
        let pairs = try floats([2, 3, 2], [-7, -6, -3, -2, 1, 2, 5, 6, 9, 10, 13, 14])
        expectClose(try output("ReduceProd", [pairs], attributes: [("axes", .ints([1]))]), [21, 24, 585, 840])
        expectClose(try output("ReduceLogSum", [try floats([2, 2], [1, 2, 3, 4])], attributes: [("axes", .ints([1]))]),
                    [1.0986122886681098, 1.9459101090932196])
        // Integer log-sum-exp is computed in Double and truncated (ONNX Runtime: [6, 3, 4]).
        let logSumExp = try output("ReduceLogSumExp", opset: 18,
                                   [try Tensor(shape: [3, 4], scalars: [Int32(5), 5, 5, 5, 2, 2, 2, 3, 2, 4, 4, 2]),
                                    try Tensor(shape: [1], scalars: [Int64(1)])], attributes: [("keepdims", .int(0))])
        #expect(logSumExp.scalars(as: Int32.self) == [6, 3, 4])
        let integers = try output("ReduceSum", [try Tensor(shape: [2, 2], scalars: [Int32(1), 2, 3, 4])],
                                               attributes: [("keepdims", .int(0))])
        #expect(integers.scalars(as: Int32.self) == [10])
        // Opset 20: bool max/min are any/all; an empty min is true.
        let flags = try Tensor(shape: [2, 2], scalars: [true, false, false, false])
        let axis1 = try Tensor(shape: [1], scalars: [Int64(1)])
        #expect(try output("ReduceMax", opset: 20, [flags, axis1]).scalars(as: Bool.self) == [true, false])
        #expect(try output("ReduceMin", opset: 20, [flags, axis1]).scalars(as: Bool.self) == [false, false])
        #expect(try output("ReduceMin", opset: 20, [try Tensor(zeros: .bool, shape: [2, 0]), axis1])
            .scalars(as: Bool.self) == [true, true])
        #expect(throws: KernelError.self) { try output("ReduceSum", opset: 20, [flags, axis1]) }
    }

    @Test func rowMaximaOfEveryLengthAndWithNaN() throws {
        // Row lengths 1…20 around the 8-lane width; the largest value sits at a different place in each.
        for length in 1...20 {
            let values = (0..<(3 * length)).map { (index: Int) -> Float in Float((index * 7) % 11) - Float(index % length) }
            let maxima = try output("ReduceMax", [try floats([3, length], values)],
                                    attributes: [("axes", .ints([1])), ("keepdims", .int(0))]).floats
            for row in 0..<3 {
                #expect(maxima[row] == values[(row * length)..<((row + 1) * length)].max()!, "length \(length)")
            }
        }
        var withNaN = [Float](repeating: 1, count: 19)
        for position in [0, 9, 18] {
            withNaN[position] = .nan
            let maximum = try output("ReduceMax", [try floats([19], withNaN)], attributes: [("keepdims", .int(0))])
            #expect(maximum.floats[0].isNaN, "NaN at \(position)")
            withNaN[position] = 1
        }
    }

    @Test func emptyReducedSetsGiveTheIdentity() throws {
        let empty = try Tensor(zeros: .float32, shape: [2, 0])
        let axes: [(String, Attribute)] = [("axes", .ints([1]))]
        expectClose(try output("ReduceSum", opset: 11, [empty], attributes: axes), [0, 0], shape: [2, 1])
        expectClose(try output("ReduceProd", [empty], attributes: axes), [1, 1])
        expectClose(try output("ReduceMax", [empty], attributes: axes), [-.infinity, -.infinity])
        expectClose(try output("ReduceMin", [empty], attributes: axes), [.infinity, .infinity])
        expectClose(try output("ReduceLogSumExp", [empty], attributes: axes), [-.infinity, -.infinity])
        expectClose(try output("ReduceMean", [empty], attributes: axes), [.nan, .nan])
    }

    @Test func largeReductionsAgreeAcrossThreadCounts() throws {
        // [8, 64, 384]: MiniLM's shapes, reduced over the last axis and over axis 1.
        let shape = [8, 64, 384]
        let values: [Float] = (0..<(8 * 64 * 384)).map { (index: Int) -> Float in Float((index * 7919) % 1000) / 100 - 5 }
        let input = try floats(shape, values)
        var lastAxis = [Double](repeating: 0, count: 8 * 64), middleAxis = [Double](repeating: 0, count: 8 * 384)
        for i in 0..<8 { for j in 0..<64 { for k in 0..<384 {
            let v = Double(values[(i * 64 + j) * 384 + k])
            lastAxis[i * 64 + j] += v / 384
            middleAxis[i * 384 + k] += v / 64
        } } }
        for threads in [1, 2] {
            let mean = try output("ReduceMean", [input], attributes: [("axes", .ints([-1]))], threads: threads)
            expectClose(mean, lastAxis.map { Float($0) }, shape: [8, 64, 1], tolerance: 1e-5)
            let middle = try output("ReduceMean", [input], attributes: [("axes", .ints([1]))], threads: threads)
            expectClose(middle, middleAxis.map { Float($0) }, shape: [8, 1, 384], tolerance: 1e-5)
        }
        let one = try output("Softmax", opset: 13, [input], threads: 1)
        let two = try output("Softmax", opset: 13, [input], threads: 2)
        #expect(one == two)
    }
}

@Suite struct ComparisonAndIndexKernelTests: ElementwiseTesting {
    @Test func comparisonsBroadcastToBool() throws {
        let a = try floats([2, 2], [1, 2, 3, .nan]), b = try floats([2], [2, 2])
        #expect(try output("Equal", [a, b]).scalars(as: Bool.self) == [false, true, false, false])
        #expect(try output("Greater", [a, b]).scalars(as: Bool.self) == [false, false, true, false])
        #expect(try output("Less", [a, b]).scalars(as: Bool.self) == [true, false, false, false])
        #expect(try output("GreaterOrEqual", [a, b]).scalars(as: Bool.self) == [false, true, true, false])
        #expect(try output("LessOrEqual", [a, b]).scalars(as: Bool.self) == [true, true, false, false])
        let integers = try output("Less", [try Tensor(shape: [3], scalars: [UInt64(1), 5, 9]), Tensor(scalar: UInt64(5))])
        #expect(integers.scalars(as: Bool.self) == [true, false, false])
        let bools = try Tensor(shape: [2], scalars: [true, false])
        #expect(try output("Equal", [bools, Tensor(scalar: false)]).scalars(as: Bool.self) == [false, true])
        #expect(throws: KernelError.self) { try output("Greater", [bools, bools]) }
    }

    @Test func logicOperators() throws {
        let p = try Tensor(shape: [2, 2], scalars: [true, true, false, false]), q = try Tensor(shape: [2], scalars: [true, false])
        #expect(try output("And", [p, q]).scalars(as: Bool.self) == [true, false, false, false])
        #expect(try output("Or", [p, q]).scalars(as: Bool.self) == [true, true, true, false])
        #expect(try output("Xor", [p, q]).scalars(as: Bool.self) == [false, true, true, false])
        #expect(try output("Not", [q]).scalars(as: Bool.self) == [false, true])
        #expect(throws: KernelError.self) { try output("And", [p, try floats([1], [1])]) }
    }

    @Test func floatClassTests() throws {
        let x = try floats([4], [1, .nan, .infinity, -.infinity])
        #expect(try output("IsNaN", [x]).scalars(as: Bool.self) == [false, true, false, false])
        #expect(try output("IsInf", [x]).scalars(as: Bool.self) == [false, false, true, true])
        #expect(try output("IsInf", [x], attributes: [("detect_positive", .int(0))]).scalars(as: Bool.self)
                == [false, false, false, true])
    }

    @Test func whereBroadcastsThreeWays() throws {
        let condition = try Tensor(shape: [2, 1], scalars: [true, false])
        let x = try Tensor(shape: [3], scalars: [Int64(1), 2, 3])
        let result = try output("Where", [condition, x, Tensor(scalar: Int64(-1))])
        #expect(result.shape == [2, 3])
        #expect(result.scalars(as: Int64.self) == [1, 2, 3, -1, -1, -1])
        let halves = try output("Where", [try Tensor(shape: [2], scalars: [false, true]),
                                                       try Tensor(shape: [2], scalars: [Float16(1), 2]), Tensor(scalar: Float16(9))])
        #expect(halves.scalars(as: Float16.self) == [9, 2])
        #expect(throws: KernelError.self) { try output("Where", [condition, x, Tensor(scalar: Int32(0))]) }
    }

    @Test func argMaxAndArgMin() throws {
        let z = try floats([2, 4], [3, 1, 3, -2, 0, 7, 7, 7])
        #expect(try output("ArgMax", [z], attributes: [("axis", .int(1)), ("keepdims", .int(0))])
            .scalars(as: Int64.self) == [0, 1])
        #expect(try output("ArgMax", [z], attributes: [("axis", .int(1)), ("select_last_index", .int(1))])
            .scalars(as: Int64.self) == [2, 3])
        let minimum = try output("ArgMin", [z])
        #expect(minimum.shape == [1, 4])
        #expect(minimum.scalars(as: Int64.self) == [1, 0, 0, 0])
        #expect(try output("ArgMin", [try Tensor(shape: [3], scalars: [Int32(4), -1, -1])],
                                        attributes: [("select_last_index", .int(1))]).scalars(as: Int64.self) == [2])
    }

    @Test func topKAcrossVersions() throws {
        let x = try floats([2, 4], [1, 5, 3, 5, -1, 0, 0, 2])
        // Opsets 1-9: k is an attribute.
        let v1 = try outputs("TopK", opset: 7, [x], attributes: [("k", .int(2))], outputs: 2)
        #expect(v1[0] == (try floats([2, 2], [5, 5, 2, 0])))
        // Ties keep the lower index first.
        #expect(v1[1].scalars(as: Int64.self) == [1, 3, 3, 1])
        // Opset 10: k is an input.
        let v10 = try outputs("TopK", opset: 10, [x, try Tensor(shape: [1], scalars: [Int64(3)])], outputs: 2)
        #expect(v10[0] == (try floats([2, 3], [5, 5, 3, 2, 0, 0])))
        #expect(v10[1].scalars(as: Int64.self) == [1, 3, 2, 3, 1, 2])
        // Opset 11: smallest along axis 0.
        let v11 = try outputs("TopK", opset: 11, [x, try Tensor(shape: [1], scalars: [Int64(1)])],
                                        attributes: [("axis", .int(0)), ("largest", .int(0))], outputs: 2)
        #expect(v11[0] == (try floats([1, 4], [-1, 0, 0, 2])))
        #expect(v11[1].scalars(as: Int64.self) == [1, 1, 1, 1])
        #expect(throws: KernelError.self) {
            try outputs("TopK", opset: 11, [x, try Tensor(shape: [1], scalars: [Int64(5)])], outputs: 2)
        }
    }
}
