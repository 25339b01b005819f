import GraphIR
import Runtime
import Tensors
import Testing

/// Builds and runs one kernel straight from the standard registry, so tests see the kernel's own
/// `KernelError` (a session would wrap it in `RuntimeError.nodeFailed`).
enum ShapeKernelHarness {
    static func run(
        _ op: String, opset: Int = 17, _ inputs: [Tensor?], attributes: [(String, Attribute)] = [],
        outputs: Int = 1, inputsAreConstant: Bool = false
    ) throws -> [Tensor] {
        var node = Node(opType: op, inputs: inputs.indices.map { inputs[$0] == nil ? "" : "in\($0)" },
                        outputs: (0..<outputs).map { "out\($0)" })
        for (name, value) in attributes { node.attributes[name] = value }
        guard let factory = KernelRegistry.standard.factory(opType: op, domain: "", opset: opset) else {
            throw KernelError.unsupported("\(op) at opset \(opset) is not registered")
        }
        let context = KernelBuildContext(
            node: node, opsetVersion: opset,
            constantInputs: inputsAreConstant ? inputs : inputs.map { _ in nil },
            compileSubgraph: { _, _ in throw KernelError.unsupported("subgraphs need a session") })
        return try factory(context).run(inputs, context: ExecutionContext(threadCount: 2))
    }

    static func one(_ op: String, opset: Int = 17, _ inputs: [Tensor?], attributes: [(String, Attribute)] = []) throws -> Tensor {
        try run(op, opset: opset, inputs, attributes: attributes)[0]
    }

    static func int64s(_ values: [Int]) -> Tensor {
        try! Tensor(shape: [values.count], scalars: values.map { Int64($0) })
    }

    static func floats(_ shape: [Int], _ values: [Float]) -> Tensor {
        try! Tensor(shape: shape, scalars: values)
    }

    /// 0, 1, 2, … as float32 in `shape`.
    static func iota(_ shape: [Int]) -> Tensor {
        let count = shape.reduce(1, *)
        return try! Tensor(shape: shape, scalars: (0..<count).map { Float($0) })
    }
}

@Suite struct ShapeKernelsTests {
    typealias H = ShapeKernelHarness

    // MARK: Reshape

    @Test func reshapeCopiesZeroDimensionsInfersMinusOneAndSharesStorage() throws {
        let data = H.iota([2, 3, 4])
        let output = try H.one("Reshape", opset: 13, [data, H.int64s([4, 0, -1])])
        #expect(output.shape == [4, 3, 2])
        #expect(output.sharesStorage(with: data))
        #expect(output.scalars(as: Float.self) == data.scalars(as: Float.self))
    }

    @Test func reshapeToScalarNeedsOneElement() throws {
        let one = H.floats([1, 1], [7])
        #expect(try H.one("Reshape", [one, H.int64s([])]).shape == [])
        let error = #expect(throws: KernelError.self) { try H.one("Reshape", [H.iota([2]), H.int64s([])]) }
        #expect(error?.description.contains("holds 1 elements") == true)
    }

    @Test func allowZeroKeepsZeroDimensionsFromOpset14() throws {
        let empty = try Tensor(zeros: .float32, shape: [0, 4])
        // Opset 13: 0 copies the input's dimension 1 (4), so [4, 4] cannot hold 0 elements.
        #expect(throws: KernelError.self) { try H.one("Reshape", opset: 13, [empty, H.int64s([4, 0])]) }
        let output = try H.one("Reshape", opset: 14, [empty, H.int64s([4, 0])], attributes: [("allowzero", .int(1))])
        #expect(output.shape == [4, 0])
        // Without allowzero, opset 14 behaves like 13.
        #expect(try H.one("Reshape", opset: 14, [H.iota([2, 6]), H.int64s([0, -1, 2])]).shape == [2, 3, 2])
    }

    @Test func reshapeRejectsBadShapes() throws {
        let data = H.iota([2, 3])
        let twoInferred = #expect(throws: KernelError.self) { try H.one("Reshape", [data, H.int64s([-1, -1])]) }
        #expect(twoInferred?.description.contains("more than one -1") == true)
        let mismatch = #expect(throws: KernelError.self) { try H.one("Reshape", [data, H.int64s([4, 2])]) }
        #expect(mismatch?.description.contains("holds 8 elements") == true)
        #expect(throws: KernelError.self) { try H.one("Reshape", [data, H.int64s([-2, -3])]) }
        #expect(throws: KernelError.self) { try H.one("Reshape", [data, H.int64s([4, -1])]) }
        #expect(throws: KernelError.self) {
            try H.one("Reshape", opset: 14, [data, H.int64s([0, -1])], attributes: [("allowzero", .int(1))])
        }
        #expect(throws: KernelError.self) { try H.one("Reshape", [data, H.floats([2], [3, 2])]) }
    }

    @Test func reshapeRelabelsPackedInt4() throws {
        let packed = try [UInt8](arrayLiteral: 0x21, 0x43, 0x05).withUnsafeBytes {
            try Tensor(dtype: .int4, shape: [5], bytes: $0)
        }
        let output = try H.one("Reshape", [packed, H.int64s([5, 1])])
        #expect(output.shape == [5, 1])
        #expect(output.sharesStorage(with: packed))
    }

    // MARK: Flatten

    @Test func flattenSplitsAtTheAxis() throws {
        let data = H.iota([2, 3, 4])
        #expect(try H.one("Flatten", [data]).shape == [2, 12])
        #expect(try H.one("Flatten", [data], attributes: [("axis", .int(0))]).shape == [1, 24])
        #expect(try H.one("Flatten", [data], attributes: [("axis", .int(3))]).shape == [24, 1])
        #expect(try H.one("Flatten", opset: 11, [data], attributes: [("axis", .int(-1))]).shape == [6, 4])
        #expect(try H.one("Flatten", opset: 11, [data], attributes: [("axis", .int(-3))]).shape == [1, 24])
        #expect(try H.one("Flatten", [data]).sharesStorage(with: data))
    }

    @Test func flattenRejectsNegativeAxesBeforeOpset11() throws {
        let data = H.iota([2, 3, 4])
        #expect(throws: KernelError.self) { try H.one("Flatten", opset: 9, [data], attributes: [("axis", .int(-1))]) }
        #expect(throws: KernelError.self) { try H.one("Flatten", opset: 13, [data], attributes: [("axis", .int(4))]) }
        #expect(throws: KernelError.self) { try H.one("Flatten", opset: 13, [data], attributes: [("axis", .int(-4))]) }
    }

    // MARK: Squeeze / Unsqueeze

    @Test func squeezeReadsAxesFromTheAttributeBeforeOpset13AndFromTheInputAfter() throws {
        let data = H.iota([1, 3, 1])
        #expect(try H.one("Squeeze", opset: 11, [data], attributes: [("axes", .ints([-1]))]).shape == [1, 3])
        #expect(try H.one("Squeeze", opset: 13, [data, H.int64s([0])]).shape == [3, 1])
        #expect(try H.one("Squeeze", opset: 13, [data, H.int64s([-3, 2])]).shape == [3])
        #expect(try H.one("Squeeze", opset: 13, [data]).shape == [3])
        #expect(try H.one("Squeeze", opset: 11, [data]).shape == [3])
        // At opset 13 the attribute is no longer read: without the input every unit axis goes.
        #expect(try H.one("Squeeze", opset: 13, [data], attributes: [("axes", .ints([0]))]).shape == [3])
    }

    @Test func squeezeRejectsNonUnitAndNegativeAxesAtOpset1() throws {
        let data = H.iota([1, 3, 1])
        let error = #expect(throws: KernelError.self) { try H.one("Squeeze", opset: 13, [data, H.int64s([1])]) }
        #expect(error?.description.contains("not 1") == true)
        #expect(throws: KernelError.self) { try H.one("Squeeze", opset: 7, [data], attributes: [("axes", .ints([-1]))]) }
        #expect(throws: KernelError.self) { try H.one("Squeeze", opset: 13, [data, H.int64s([3])]) }
        #expect(throws: KernelError.self) { try H.one("Squeeze", opset: 13, [data, H.int64s([0, -3])]) }
    }

    @Test func unsqueezeInsertsAxesOfTheOutput() throws {
        let data = H.iota([3, 4])
        #expect(try H.one("Unsqueeze", opset: 13, [data, H.int64s([0, -1])]).shape == [1, 3, 4, 1])
        #expect(try H.one("Unsqueeze", opset: 11, [data], attributes: [("axes", .ints([2, 0]))]).shape == [1, 3, 1, 4])
        #expect(try H.one("Unsqueeze", opset: 7, [data], attributes: [("axes", .ints([1]))]).shape == [3, 1, 4])
        #expect(try H.one("Unsqueeze", opset: 13, [Tensor(scalar: Float(2)), H.int64s([0])]).shape == [1])
    }

    @Test func unsqueezeRejectsRepeatedOutOfRangeAndEarlyNegativeAxes() throws {
        let data = H.iota([3, 4])
        #expect(throws: KernelError.self) { try H.one("Unsqueeze", opset: 13, [data, H.int64s([1, 1])]) }
        #expect(throws: KernelError.self) { try H.one("Unsqueeze", opset: 13, [data, H.int64s([0, -4])]) }
        #expect(throws: KernelError.self) { try H.one("Unsqueeze", opset: 13, [data, H.int64s([4])]) }
        #expect(throws: KernelError.self) { try H.one("Unsqueeze", opset: 7, [data], attributes: [("axes", .ints([-1]))]) }
        #expect(throws: KernelError.self) { try H.one("Unsqueeze", opset: 11, [data]) }
    }

    // MARK: Shape / Size

    @Test func shapeSlicesItsAxesFromOpset15() throws {
        let data = try Tensor(zeros: .int8, shape: [2, 3, 4, 5])
        #expect(try H.one("Shape", opset: 13, [data]).scalars(as: Int64.self) == [2, 3, 4, 5])
        let sliced = try H.one("Shape", opset: 15, [data], attributes: [("start", .int(1)), ("end", .int(-1))])
        #expect(sliced.scalars(as: Int64.self) == [3, 4])
        #expect(try H.one("Shape", opset: 15, [data], attributes: [("start", .int(-10))]).scalars(as: Int64.self) == [2, 3, 4, 5])
        #expect(try H.one("Shape", opset: 15, [data], attributes: [("end", .int(10))]).scalars(as: Int64.self) == [2, 3, 4, 5])
        #expect(try H.one("Shape", opset: 15, [data], attributes: [("start", .int(3)), ("end", .int(1))]).shape == [0])
        // Before opset 15 the attributes are not part of the operator.
        #expect(try H.one("Shape", opset: 14, [data], attributes: [("start", .int(1))]).scalars(as: Int64.self) == [2, 3, 4, 5])
    }

    @Test func sizeCountsElements() throws {
        #expect(try H.one("Size", [H.iota([2, 3])]).scalars(as: Int64.self) == [6])
        #expect(try H.one("Size", [H.iota([2, 3])]).shape == [])
        #expect(try H.one("Size", [Tensor(zeros: .bool, shape: [4, 0])]).scalars(as: Int64.self) == [0])
    }

    // MARK: ConstantOfShape

    @Test func constantOfShapeFillsWithTheValueAttribute() throws {
        let zeros = try H.one("ConstantOfShape", [H.int64s([2, 3])])
        #expect(zeros == (try Tensor(zeros: .float32, shape: [2, 3])))
        let sevens = try H.one("ConstantOfShape", [H.int64s([3])], attributes: [("value", .tensor(try Tensor(shape: [1], scalars: [Int32(7)])))])
        #expect(sevens.scalars(as: Int32.self) == [7, 7, 7])
        let scalar = try H.one("ConstantOfShape", [H.int64s([])], attributes: [("value", .tensor(try Tensor(shape: [1], scalars: [Float(1.5)])))])
        #expect(scalar.shape == [] && scalar.scalars(as: Float.self) == [1.5])
        let empty = try H.one("ConstantOfShape", [H.int64s([0, 5])], attributes: [("value", .tensor(try Tensor(shape: [1], scalars: [Int64(2)])))])
        #expect(empty.shape == [0, 5] && empty.dtype == .int64)
        let packed = try [UInt8(0x05)].withUnsafeBytes { try Tensor(dtype: .uint4, shape: [1], bytes: $0) }
        let nibbles = try H.one("ConstantOfShape", [H.int64s([3])], attributes: [("value", .tensor(packed))])
        #expect(nibbles.withUnsafeBytes { Array($0) } == [0x55, 0x05])
    }

    @Test func constantOfShapeRejectsNegativeDimensionsAndMultiElementValues() throws {
        #expect(throws: KernelError.self) { try H.one("ConstantOfShape", [H.int64s([2, -1])]) }
        #expect(throws: KernelError.self) {
            try H.one("ConstantOfShape", [H.int64s([2])], attributes: [("value", .tensor(H.floats([2], [1, 2])))])
        }
    }

    // MARK: Range

    @Test func rangeCountsCeilOfSpanOverDelta() throws {
        let float = try H.one("Range", [Tensor(scalar: Float(1)), Tensor(scalar: Float(5)), Tensor(scalar: Float(2))])
        #expect(float.scalars(as: Float.self) == [1, 3])
        let down = try H.one("Range", [Tensor(scalar: Int32(10)), Tensor(scalar: Int32(4)), Tensor(scalar: Int32(-2))])
        #expect(down.scalars(as: Int32.self) == [10, 8, 6])
        let wide = try H.one("Range", [Tensor(scalar: Int16(-30000)), Tensor(scalar: Int16(30000)), Tensor(scalar: Int16(15000))])
        #expect(wide.scalars(as: Int16.self) == [-30000, -15000, 0, 15000])
        let extremes = try H.one("Range", [Tensor(scalar: Int64.min), Tensor(scalar: Int64.max), Tensor(scalar: Int64.max)])
        #expect(extremes.scalars(as: Int64.self) == [Int64.min, -1, 9_223_372_036_854_775_806])
        let empty = try H.one("Range", [Tensor(scalar: Double(5)), Tensor(scalar: Double(1)), Tensor(scalar: Double(1))])
        #expect(empty.shape == [0])
        let farAway = try H.one("Range", [Tensor(scalar: Float(0)), Tensor(scalar: Float(-1e30)), Tensor(scalar: Float(1))])
        #expect(farAway.shape == [0])
        let fractional = try H.one("Range", [Tensor(scalar: Double(0)), Tensor(scalar: Double(1)), Tensor(scalar: Double(0.25))])
        #expect(fractional.scalars(as: Double.self) == [0, 0.25, 0.5, 0.75])
    }

    @Test func rangeRejectsZeroDeltaNaNHugeCountsAndMixedTypes() throws {
        let zero = #expect(throws: KernelError.self) {
            try H.one("Range", [Tensor(scalar: Int64(0)), Tensor(scalar: Int64(4)), Tensor(scalar: Int64(0))])
        }
        #expect(zero?.description.contains("delta is 0") == true)
        #expect(throws: KernelError.self) {
            try H.one("Range", [Tensor(scalar: Float(0)), Tensor(scalar: Float.nan), Tensor(scalar: Float(1))])
        }
        #expect(throws: KernelError.self) {
            try H.one("Range", [Tensor(scalar: Float(0)), Tensor(scalar: Float(1e30)), Tensor(scalar: Float(1))])
        }
        #expect(throws: KernelError.self) {
            try H.one("Range", [Tensor(scalar: Int64.min), Tensor(scalar: Int64.max), Tensor(scalar: Int64(1))])
        }
        #expect(throws: KernelError.self) {
            try H.one("Range", [Tensor(scalar: Float(0)), Tensor(scalar: Int32(3)), Tensor(scalar: Float(1))])
        }
        #expect(throws: KernelError.self) {
            try H.one("Range", [Tensor(scalar: UInt8(0)), Tensor(scalar: UInt8(3)), Tensor(scalar: UInt8(1))])
        }
    }
}
