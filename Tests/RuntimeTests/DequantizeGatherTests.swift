import GraphIR
@testable import Runtime
import Tensors
import Testing
import _TestSupport

/// `Gather(DequantizeLinear(table))` fused into `DequantizeGather`: only the gathered rows are
/// dequantized, with DequantizeLinear's float operations, so the output equals the unfused pair bit for bit.
@Suite struct DequantizeGatherTests {
    /// One table layout: DequantizeLinear's `axis` and `block_size`, and the scale's shape.
    struct Layout: CustomStringConvertible {
        let shape: [Int]
        let axis: Int
        let blockSize: Int

        /// The scale (and zero point) shape DequantizeLinear expects for this layout; nil: per tensor.
        var parameterShape: [Int]? {
            if axis == -99 { return nil }
            let normalized = axis < 0 ? axis + shape.count : axis
            if blockSize == 0 { return [shape[normalized]] }
            var result = shape
            result[normalized] = (shape[normalized] + blockSize - 1) / blockSize
            return result
        }

        var description: String { "\(shape) axis \(axis) block \(blockSize)" }
    }

    static let layouts: [Layout] = [
        Layout(shape: [7, 10], axis: -99, blockSize: 0),  // per tensor
        Layout(shape: [7, 10], axis: 0, blockSize: 0),    // one scale per row (what dynamic mode writes)
        Layout(shape: [7, 10], axis: 1, blockSize: 0),    // one scale per column
        Layout(shape: [5, 3, 4], axis: -1, blockSize: 0), // per axis, innermost of three
        Layout(shape: [5, 3, 4], axis: 1, blockSize: 0),  // per axis, middle
        Layout(shape: [7, 10], axis: 1, blockSize: 4),    // blocked along the row (weight-only mode), ragged
        Layout(shape: [7, 10], axis: -1, blockSize: 32),  // one block longer than the row
        Layout(shape: [4, 64], axis: 1, blockSize: 16),   // long blocks: one loop per block
        Layout(shape: [9, 6], axis: 0, blockSize: 4),     // blocked across rows
        Layout(shape: [5, 3, 4], axis: 1, blockSize: 2),  // blocked along a middle axis
        Layout(shape: [5, 3, 5], axis: 2, blockSize: 3),  // odd row length: 4-bit rows start mid-byte
    ]

    static func table(_ dtype: DType, shape: [Int], _ generator: inout SeededGenerator) throws -> Tensor {
        let count = shape.reduce(1, *)
        switch dtype {
        case .int8: return try Tensor(shape: shape, scalars: (0..<count).map { _ in Int8.random(in: -128...127, using: &generator) })
        case .uint8: return try Tensor(shape: shape, scalars: (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) })
        case .int4: return try Tensor.packInt4((0..<count).map { _ in Int8.random(in: -8...7, using: &generator) }, signed: true, shape: shape)
        default: return try Tensor.packInt4((0..<count).map { _ in Int8.random(in: 0...15, using: &generator) }, signed: false, shape: shape)
        }
    }

    /// A graph `Gather(DequantizeLinear(table, scale, zero), indices)`, optionally with a second reader of
    /// the dequantized table.
    static func model(table: Tensor, scale: Tensor, zero: Tensor?, layout: Layout, otherReader: Bool) -> Model {
        var dq = Node(name: "dq", opType: "DequantizeLinear", inputs: ["table", "scale", zero == nil ? "" : "zero"],
                      outputs: ["dequantized"])
        if layout.parameterShape != nil { dq.attributes["axis"] = .int(layout.axis) }
        if layout.blockSize > 0 { dq.attributes["block_size"] = .int(layout.blockSize) }
        var nodes = [dq, Node(name: "lookup", opType: "Gather", inputs: ["dequantized", "indices"], outputs: ["y"])]
        var outputs = [ValueInfo(name: "y")]
        if otherReader {
            nodes.append(Node(name: "other", opType: "Neg", inputs: ["dequantized"], outputs: ["negated"]))
            outputs.append(ValueInfo(name: "negated"))
        }
        var graph = Graph(nodes: nodes, inputs: [ValueInfo(name: "indices", dtype: .int64, shape: nil)], outputs: outputs)
        graph.initializers["table"] = table
        graph.initializers["scale"] = scale
        if let zero { graph.initializers["zero"] = zero }
        return Model(graph: graph, opsetImports: ["": 21])
    }

    static func bits(_ tensor: Tensor) -> [UInt32] { tensor.scalars(as: Float.self).map(\.bitPattern) }

    @Test(arguments: [DType.int8, .uint8, .int4, .uint4])
    func everyLayoutEqualsDequantizeThenGatherBitForBit(dtype: DType) throws {
        var generator = SeededGenerator(seed: 21 + UInt64(dtype.onnxCode))
        for (number, layout) in Self.layouts.enumerated() {
            let table = try Self.table(dtype, shape: layout.shape, &generator)
            let parameterShape = layout.parameterShape ?? []
            let parameterCount = parameterShape.reduce(1, *)
            let scale = try Tensor(shape: parameterShape,
                                   scalars: (0..<parameterCount).map { _ in Float.random(in: 0.001...2, using: &generator) })
            let zero = number % 3 == 2 ? nil : try Self.table(dtype, shape: parameterShape, &generator)
            let rows = layout.shape[0]
            // Repeats, negative indices and a 2-D index tensor.
            let picks: [Int64] = [0, Int64(rows - 1), -1, 2, 2, -Int64(rows), 1, 0]
            let indices = try Tensor(shape: [2, 4], scalars: picks)
            let model = Self.model(table: table, scale: scale, zero: zero, layout: layout, otherReader: number == 4)
            let fusedGraph = try IntegerFusion.apply(to: model, registry: .standard).graph
            #expect(fusedGraph.nodes.map(\.opType).contains("DequantizeGather"), "\(layout)")
            #expect(fusedGraph.nodes.contains { $0.opType == "DequantizeLinear" } == (number == 4),
                    "the DequantizeLinear stays exactly when another node reads it (\(layout))")
            for threads in [1, 2] {
                let fused = try Session(model: model, options: SessionOptions(threadCount: threads)).run(["indices": indices])
                let unfused = try Session(model: model, options: SessionOptions(threadCount: threads, integerExecution: false))
                    .run(["indices": indices])
                #expect(fused["y"]!.shape == [2, 4] + Array(layout.shape.dropFirst()))
                #expect(Self.bits(fused["y"]!) == Self.bits(unfused["y"]!), "\(dtype) \(layout)")
                if number == 4 { #expect(Self.bits(fused["negated"]!) == Self.bits(unfused["negated"]!)) }
            }
        }
    }

    /// Values computed by hand (numpy: `(t − z) · s` with block 2 along the rows): int4 codes, zero points.
    @Test func blockedInt4RowsMatchHandComputedValues() throws {
        let codes: [Int8] = [-8, 7, 1, -3, 0, 5, -1, 2, 4, -4, 6, -6]
        let zeros: [Int8] = [1, -2, 0, 3, -1, 0]
        let model = Self.model(table: try Tensor.packInt4(codes, signed: true, shape: [3, 4]),
                               scale: try Tensor(shape: [3, 2], scalars: [0.5, 0.25, 1.5, 2.0, 0.125, 3.0] as [Float]),
                               zero: try Tensor.packInt4(zeros, signed: true, shape: [3, 2]),
                               layout: Layout(shape: [3, 4], axis: 1, blockSize: 2), otherReader: false)
        let y = try Session(model: model).run(["indices": try Tensor(shape: [3], scalars: [2, 0, -1] as [Int64])])["y"]!
        #expect(y.shape == [3, 4])
        #expect(y.scalars(as: Float.self) == [0.625, -0.375, 18.0, -18.0, -4.5, 3.0, 0.75, -0.25, 0.625, -0.375, 18.0, -18.0])
    }

    @Test func kernelEqualsItsReferenceTwin() throws {
        var generator = SeededGenerator(seed: 5)
        let layout = Layout(shape: [6, 33], axis: 1, blockSize: 8)
        let table = try Self.table(.uint4, shape: layout.shape, &generator)
        let scale = try Tensor(shape: layout.parameterShape!, scalars: (0..<(6 * 5)).map { Float($0 + 1) / 64 })
        let zero = try Self.table(.uint4, shape: layout.parameterShape!, &generator)
        let kernel = try FusedDequantizeGatherKernel(table: table, scale: scale, zeroPoint: zero, axis: 1, blockSize: 8)
        let indices = try Tensor(shape: [5], scalars: [5, 0, 3, -2, 1] as [Int32])
        let inputs: [Tensor?] = [table, scale, zero, indices]
        let fast = try kernel.run(inputs, context: ExecutionContext(threadCount: 2))[0]
        let reference = try kernel.runReference(inputs, axis: 1, blockSize: 8)
        #expect(Self.bits(fast) == Self.bits(reference))
    }

    @Test func outOfRangeIndexIsAnErrorNamingTheNode() throws {
        let model = Self.model(table: try Tensor(shape: [4, 2], scalars: [Int8](repeating: 3, count: 8)),
                               scale: try Tensor(shape: [4], scalars: [Float](repeating: 0.5, count: 4)), zero: nil,
                               layout: Layout(shape: [4, 2], axis: 0, blockSize: 0), otherReader: false)
        let session = try Session(model: model)
        #expect(try IntegerFusion.apply(to: model, registry: .standard).graph.nodes.map(\.opType) == ["DequantizeGather"])
        #expect(throws: (any Error).self) { try session.run(["indices": try Tensor(shape: [1], scalars: [4] as [Int64])]) }
        #expect(throws: (any Error).self) { try session.run(["indices": try Tensor(shape: [1], scalars: [-5] as [Int64])]) }
    }

    /// Gathers along another axis, and float16 scales, stay unfused.
    @Test func leavesOtherGathersAlone() throws {
        let table = try Tensor(shape: [4, 2], scalars: [Int8](repeating: 3, count: 8))
        var model = Self.model(table: table, scale: Tensor(scalar: Float(0.5)), zero: nil,
                               layout: Layout(shape: [4, 2], axis: -99, blockSize: 0), otherReader: false)
        model.graph.nodes[1].attributes["axis"] = .int(1)
        #expect(!(try IntegerFusion.apply(to: model, registry: .standard)).graph.nodes.map(\.opType).contains("DequantizeGather"))
        let half = Self.model(table: table, scale: try Tensor(shape: [4], scalars: [Float](repeating: 0.5, count: 4)).converted(to: .float16),
                              zero: nil, layout: Layout(shape: [4, 2], axis: 0, blockSize: 0), otherReader: false)
        #expect(!(try IntegerFusion.apply(to: half, registry: .standard)).graph.nodes.map(\.opType).contains("DequantizeGather"))
    }
}
