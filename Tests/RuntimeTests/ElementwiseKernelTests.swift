import GraphIR
import Runtime
import Tensors
import Testing

/// Helpers for the elementwise-family suites: run one operator through the standard registry, as a
/// session would, without building a graph. Members of a protocol, so that other test files' helpers
/// of the same names do not clash.
protocol ElementwiseTesting {}

extension ElementwiseTesting {
    func outputs(
        _ opType: String, opset: Int = 17, _ inputs: [Tensor?], attributes: [(String, Attribute)] = [],
        outputs: Int = 1, threads: Int = 1
    ) throws -> [Tensor] {
        let node = Node(
            opType: opType, inputs: inputs.indices.map { inputs[$0] == nil ? "" : "x\($0)" },
            outputs: (0..<outputs).map { "y\($0)" }, attributes: .init(uniqueKeysWithValues: attributes))
        guard let factory = KernelRegistry.standard.factory(opType: opType, domain: "", opset: opset) else {
            throw KernelError.unsupported("no kernel for \(opType) at opset \(opset)")
        }
        let context = KernelBuildContext(
            node: node, opsetVersion: opset, constantInputs: inputs.map { _ in nil },
            compileSubgraph: { _, _ in throw KernelError.unsupported("subgraphs") })
        return try factory(context).run(inputs, context: ExecutionContext(threadCount: threads))
    }

    func output(
        _ opType: String, opset: Int = 17, _ inputs: [Tensor?], attributes: [(String, Attribute)] = [],
        threads: Int = 1
    ) throws -> Tensor {
        try outputs(opType, opset: opset, inputs, attributes: attributes, threads: threads)[0]
    }

    /// Float tensors from literals.
    func floats(_ shape: [Int], _ values: [Float]) throws -> Tensor { try Tensor(shape: shape, scalars: values) }

    /// Relative-or-absolute closeness for float results that went through libm.
    func expectClose(_ tensor: Tensor, _ expected: [Float], shape: [Int]? = nil, tolerance: Float = 2e-6,
                     sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(tensor.dtype == .float32, sourceLocation: sourceLocation)
        if let shape { #expect(tensor.shape == shape, sourceLocation: sourceLocation) }
        guard tensor.dtype == .float32 else { return }
        let actual = tensor.floats
        #expect(actual.count == expected.count, sourceLocation: sourceLocation)
        for (a, e) in zip(actual, expected) {
            let ok = a == e || (a.isNaN && e.isNaN) || abs(a - e) <= tolerance * max(1, abs(e))
            #expect(ok, "got \(a), expected \(e)", sourceLocation: sourceLocation)
        }
    }
}

@Suite struct ElementwiseArithmeticTests: ElementwiseTesting {
    @Test func addBroadcastsARowAndSubAColumn() throws {
        let a = try floats([2, 3], [1, 2, 3, 4, 5, 6])
        let sum = try output("Add", [a, try floats([3], [10, 20, 30])])
        #expect(sum == (try floats([2, 3], [11, 22, 33, 14, 25, 36])))
        let difference = try output("Sub", [a, try floats([2, 1], [1, 2])])
        #expect(difference == (try floats([2, 3], [0, 1, 2, 2, 3, 4])))
        // Both operands broadcast: [2,1] * [1,3] -> [2,3].
        let outer = try output("Mul", [try floats([2, 1], [2, 3]), try floats([1, 3], [1, 10, 100])])
        #expect(outer == (try floats([2, 3], [2, 20, 200, 3, 30, 300])))
        // A scalar on the left.
        let scaled = try output("Div", [Tensor(scalar: Float(12)), try floats([3], [1, 4, 8])])
        #expect(scaled == (try floats([3], [12, 3, 1.5])))
    }

    @Test func integerDivisionTruncatesAndRejectsZero() throws {
        let quotient = try output(
            "Div", [try Tensor(shape: [4], scalars: [Int32(7), -7, 7, -7]), try Tensor(shape: [4], scalars: [Int32(2), 2, -2, -2])])
        #expect(quotient.scalars(as: Int32.self) == [3, -3, -3, 3])
        // The most negative value divided by -1 wraps instead of trapping.
        let wrapped = try output("Div", [Tensor(scalar: Int8.min), Tensor(scalar: Int8(-1))])
        #expect(wrapped.scalars(as: Int8.self) == [Int8.min])
        #expect(throws: KernelError.invalid("Div: integer division by zero")) {
            try output("Div", [try Tensor(shape: [2], scalars: [Int64(1), 2]), try Tensor(shape: [2], scalars: [Int64(1), 0])])
        }
    }

    @Test func incompatibleShapesAndDTypesAreTypedErrors() throws {
        #expect(throws: KernelError.invalid("shapes [2, 3], [2] cannot be broadcast together")) {
            try output("Add", [try floats([2, 3], [1, 2, 3, 4, 5, 6]), try floats([2], [1, 2])])
        }
        #expect(throws: KernelError.self) {
            try output("Mul", [try floats([1], [1]), try Tensor(shape: [1], scalars: [Int32(1)])])
        }
        #expect(throws: KernelError.self) { try output("Add", [try floats([1], [1])]) }
    }

    @Test func opsetsBefore7BroadcastOnlyWhenAsked() throws {
        let a = try floats([2, 3, 2], (0..<12).map { Float($0) })
        // broadcast=1, axis=1: B's [3] lines up with A's middle axis.
        let placed = try output("Add", opset: 6, [a, try floats([3], [100, 200, 300])],
                                attributes: [("broadcast", .int(1)), ("axis", .int(1))])
        #expect(placed == (try floats([2, 3, 2], [100, 101, 202, 203, 304, 305, 106, 107, 208, 209, 310, 311])))
        // broadcast=1 without axis: B's shape is a suffix of A's.
        let suffix = try output("Mul", opset: 6, [a, try floats([2], [1, -1])], attributes: [("broadcast", .int(1))])
        #expect(suffix == (try floats([2, 3, 2], [0, -1, 2, -3, 4, -5, 6, -7, 8, -9, 10, -11])))
        // Without broadcast=1 the shapes must match.
        #expect(throws: KernelError.self) { try output("Sub", opset: 6, [a, try floats([2], [1, 1])]) }
        #expect(throws: KernelError.self) {
            try output("Div", opset: 6, [a, try floats([3], [1, 1, 1])], attributes: [("broadcast", .int(1))])
        }
        #expect(try output("Less", opset: 1, [a, a]).scalars(as: Bool.self) == Array(repeating: false, count: 12))
        // The variadic operators broadcast from opset 8 on.
        #expect(throws: KernelError.self) { try output("Sum", opset: 6, [a, try floats([2], [1, 1])]) }
        #expect(try output("Sum", opset: 8, [a, try floats([2], [1, 1])]) == (try floats([2, 3, 2], (1..<13).map { Float($0) })))
    }

    @Test func integerArithmeticWrapsLikeC() throws {
        let sum = try output("Add", [Tensor(scalar: Int32.max), Tensor(scalar: Int32(1))])
        #expect(sum.scalars(as: Int32.self) == [Int32.min])
        let product = try output("Mul", [try Tensor(shape: [2], scalars: [UInt8(16), 3]), Tensor(scalar: UInt8(17))])
        #expect(product.scalars(as: UInt8.self) == [16, 51])
    }

    @Test func powTakesFloatAndIntegerExponents() throws {
        // numpy: np.power([2,3,-2], 3) and np.power([4,9,2], 0.5)
        expectClose(try output("Pow", [try floats([3], [2, 3, -2]), try Tensor(shape: [1], scalars: [Int64(3)])]),
                    [8, 27, -8])
        expectClose(try output("Pow", [try floats([3], [4, 9, 2]), Tensor(scalar: Float(0.5))]),
                    [2, 3, 1.4142135381698608])
        expectClose(try output("Pow", [try floats([3], [1.5, -3, 0]), Tensor(scalar: Float(2))]), [2.25, 9, 0])
        let integers = try output(
            "Pow", [try Tensor(shape: [4], scalars: [Int32(2), -3, 5, 1]), try Tensor(shape: [4], scalars: [Int32(10), 3, 0, -4])])
        #expect(integers.scalars(as: Int32.self) == [1024, -27, 1, 1])
        #expect(throws: KernelError.self) {
            try output("Pow", [Tensor(scalar: Int32(0)), Tensor(scalar: Int32(-1))])
        }
        // The result has the base's type whatever the exponent's.
        let mixed = try output("Pow", [try floats([2], [3, 0.5]), Tensor(scalar: Float16(2))])
        #expect(mixed == (try floats([2], [9, 0.25])))
        let half = try output("Pow", [Tensor(scalar: Float16(3)), Tensor(scalar: Float(2))])
        #expect(half.scalars(as: Float16.self) == [9])
    }

    @Test func variadicMaxMinSumMean() throws {
        let a = try floats([3], [1, 5, 3]), b = try floats([1], [2]), c = try floats([2, 1], [0, 10])
        #expect(try output("Max", [a, b, c]) == (try floats([2, 3], [2, 5, 3, 10, 10, 10])))
        #expect(try output("Min", [a, b]) == (try floats([3], [1, 2, 2])))
        #expect(try output("Sum", [a, b, c]) == (try floats([2, 3], [3, 7, 5, 13, 17, 15])))
        #expect(try output("Mean", [a, b]) == (try floats([3], [1.5, 3.5, 2.5])))
        #expect(try output("Sum", [a]) == a)
        let nan = try output("Max", [try floats([2], [.nan, 1]), try floats([2], [1, .nan])]).floats
        #expect(nan[0].isNaN && nan[1].isNaN)
        let integers = try output("Max", [try Tensor(shape: [2], scalars: [Int64(-4), 9]), Tensor(scalar: Int64(0))])
        #expect(integers.scalars(as: Int64.self) == [0, 9])
        #expect(throws: KernelError.self) { try output("Sum", [Tensor(scalar: Int32(1))]) }
    }

    @Test func halfPrecisionRunsThroughFloat32() throws {
        let a = try Tensor(shape: [3], scalars: [Float16(1.5), 2, -3])
        let sum = try output("Add", [a, Tensor(scalar: Float16(0.25))])
        #expect(sum.dtype == .float16)
        #expect(sum.scalars(as: Float16.self) == [1.75, 2.25, -2.75])
        let b = try Tensor(shape: [2], scalars: [BFloat16(2), BFloat16(-8)])
        let product = try output("Mul", [b, b])
        #expect(product.scalars(as: BFloat16.self).map(\.floatValue) == [4, 64])
    }

    @Test func largeBroadcastsMatchANaiveLoopOnAnyThreadCount() throws {
        // 300 × 7 × 41 outputs, with B broadcast along the middle axis: big enough to split.
        let shapeA = [300, 7, 41], shapeB = [300, 1, 41]
        let countA = shapeA.reduce(1, *), countB = shapeB.reduce(1, *)
        let a = try floats(shapeA, (0..<countA).map { Float($0 % 97) * 0.5 - 20 })
        let b = try floats(shapeB, (0..<countB).map { Float($0 % 13) + 1 })
        var expected = [Float](repeating: 0, count: countA)
        let av = a.floats, bv = b.floats
        for i in 0..<300 { for j in 0..<7 { for k in 0..<41 {
            expected[(i * 7 + j) * 41 + k] = av[(i * 7 + j) * 41 + k] / bv[i * 41 + k]
        } } }
        for threads in [1, 2, 3] {
            let result = try output("Div", [a, b], threads: threads)
            #expect(result.floats == expected)
        }
    }
}

@Suite struct UnaryAndActivationKernelTests: ElementwiseTesting {
    @Test func unaryMath() throws {
        // numpy/scipy reference values (float32).
        expectClose(try output("Erf", [try floats([6], [-1.5, -0.3, 0, 0.2, 1, 2.5])]),
                    [-0.9661051630973816, -0.3286267817020416, 0, 0.22270259261131287, 0.8427007794380188, 0.9995930194854736],
                    tolerance: 1e-7)
        expectClose(try output("Sqrt", [try floats([3], [4, 2, 0])]), [2, 1.4142135623730951, 0])
        expectClose(try output("Exp", [try floats([3], [0, 1, -2])]), [1, 2.7182817459106445, 0.1353352814912796])
        expectClose(try output("Log", [try floats([3], [1, 10, 0])]), [0, 2.3025851249694824, -.infinity])
        expectClose(try output("Reciprocal", [try floats([2], [4, -0.5])]), [0.25, -2])
        expectClose(try output("Floor", [try floats([3], [1.5, -1.5, 2])]), [1, -2, 2])
        expectClose(try output("Ceil", [try floats([3], [1.5, -1.5, 2])]), [2, -1, 2])
        expectClose(try output("Sign", [try floats([3], [-2.5, 0, 7])]), [-1, 0, 1])
        let negated = try output("Neg", [try Tensor(shape: [2], scalars: [Int32(5), -7])])
        #expect(negated.scalars(as: Int32.self) == [-5, 7])
        let magnitude = try output("Abs", [try Tensor(shape: [2], scalars: [Int16(-3), 4])])
        #expect(magnitude.scalars(as: Int16.self) == [3, 4])
        #expect(throws: KernelError.self) { try output("Neg", [Tensor(scalar: UInt8(1))]) }
        #expect(throws: KernelError.self) { try output("Sqrt", [Tensor(scalar: Int32(4))]) }
    }

    @Test func reluFamily() throws {
        let x = try floats([4], [-2, -0.5, 0, 3])
        expectClose(try output("Relu", [x]), [0, 0, 0, 3])
        expectClose(try output("LeakyRelu", [x]), [-0.02, -0.005, 0, 3])
        expectClose(try output("LeakyRelu", [x], attributes: [("alpha", .float(0.5))]), [-1, -0.25, 0, 3])
        let integers = try output("Relu", opset: 14, [try Tensor(shape: [2], scalars: [Int8(-4), 9])])
        #expect(integers.scalars(as: Int8.self) == [0, 9])
    }

    @Test func preluSlopeBroadcastsToX() throws {
        let x = try floats([2, 3], [-1, -2, 3, -4, 5, -6])
        expectClose(try output("PRelu", [x, try floats([3], [0.1, 0.2, 0.3])]), [-0.1, -0.4, 3, -0.4, 5, -1.8])
        expectClose(try output("PRelu", [x, try floats([1], [0.5])]), [-0.5, -1, 3, -2, 5, -3])
        // The slope must not make the output larger than X.
        #expect(throws: KernelError.self) { try output("PRelu", [try floats([3], [1, 2, 3]), try floats([2, 3], Array(repeating: 1, count: 6))]) }
    }

    @Test func clipBoundsMovedFromAttributesToInputs() throws {
        let x = try floats([5], [-3, -1, 0, 2, 9])
        expectClose(try output("Clip", opset: 6, [x], attributes: [("min", .float(-1.5)), ("max", .float(2))]),
                    [-1.5, -1, 0, 2, 2])
        // Opset 6 without attributes leaves values alone.
        expectClose(try output("Clip", opset: 6, [x]), [-3, -1, 0, 2, 9])
        // Opset 11: the attributes are gone; bounds are optional inputs.
        expectClose(try output("Clip", opset: 11, [x, Tensor(scalar: Float(-1.5)), Tensor(scalar: Float(2))]),
                    [-1.5, -1, 0, 2, 2])
        expectClose(try output("Clip", opset: 11, [x, nil, Tensor(scalar: Float(0))]), [-3, -1, 0, 0, 0])
        expectClose(try output("Clip", opset: 11, [x], attributes: [("min", .float(0))]), [-3, -1, 0, 2, 9])
        // min > max: everything becomes max.
        expectClose(try output("Clip", opset: 13, [x, Tensor(scalar: Float(3)), Tensor(scalar: Float(1))]),
                    [1, 1, 1, 1, 1])
        let integers = try output(
            "Clip", opset: 12, [try Tensor(shape: [3], scalars: [Int32(-5), 4, 50]), Tensor(scalar: Int32(0)), Tensor(scalar: Int32(10))])
        #expect(integers.scalars(as: Int32.self) == [0, 4, 10])
        #expect(throws: KernelError.self) {
            try output("Clip", opset: 11, [x, try floats([2], [0, 1])])
        }
    }

    @Test func smoothActivations() throws {
        // Values from the ONNX reference implementation (onnx.reference), float32.
        let x = try floats([5], [-3, -0.5, 0, 0.5, 3])
        expectClose(try output("Sigmoid", [x]),
                    [0.04742587357759476, 0.3775406777858734, 0.5, 0.622459352016449, 0.9525741338729858])
        expectClose(try output("Gelu", opset: 20, [x]),
                    [-0.0040496885776519775, -0.1542687714099884, 0, 0.3457312285900116, 2.995950222015381], tolerance: 1e-5)
        expectClose(try output("Gelu", opset: 20, [x], attributes: [("approximate", .string(Array("tanh".utf8)))]),
                    [-0.003637343645095825, -0.1542859971523285, 0, 0.3457140028476715, 2.9963626861572266], tolerance: 1e-5)
        expectClose(try output("Tanh", [try floats([2], [0.5, -20])]), [0.46211716532707214, -1])
        let y = try floats([5], [-4, -1, 0, 1, 4])
        expectClose(try output("HardSigmoid", [y], attributes: [("alpha", .float(0.25)), ("beta", .float(0.4))]),
                    [0, 0.15000000596046448, 0.4000000059604645, 0.6499999761581421, 1])
        expectClose(try output("HardSwish", [y]), [0, -0.3333333134651184, 0, 0.6666666865348816, 4])
        let z = try floats([4], [-2, -0.5, 0, 1])
        expectClose(try output("Elu", [z], attributes: [("alpha", .float(0.7))]),
                    [-0.6052653193473816, -0.27542853355407715, 0, 1])
        expectClose(try output("Selu", [z]), [-1.5201665163040161, -0.6917582154273987, 0, 1.0507010221481323])
        expectClose(try output("Softplus", [try floats([5], [-100, -1, 0, 1, 100])]),
                    [3.783505853677006e-44, 0.3132616877555847, 0.6931471824645996, 1.3132617473602295, 100])
        #expect(throws: KernelError.self) {
            try output("Gelu", opset: 20, [x], attributes: [("approximate", .string(Array("fast".utf8)))])
        }
    }
}
