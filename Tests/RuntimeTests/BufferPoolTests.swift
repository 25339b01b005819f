import GraphIR
@testable import Runtime
import Tensors
import Testing

/// Output memory is reused between the steps of a run and across runs, without ever handing out a
/// storage that a live tensor still holds.
@Suite struct BufferPoolTests {
    /// y = ((((x + 1) · 2) − 3) · 2) + 1, each step a new [4, 8] float32 tensor, and z = x · 2 kept as a
    /// second output.
    static func chain() -> Model {
        func scalar(_ name: String, _ value: Float) -> Node {
            Node(opType: "Constant", inputs: [], outputs: [name], attributes: ["value": .tensor(Tensor(scalar: value))])
        }
        let nodes = [
            scalar("one", 1), scalar("two", 2), scalar("three", 3),
            Node(opType: "Add", inputs: ["x", "one"], outputs: ["a"]),
            Node(opType: "Mul", inputs: ["a", "two"], outputs: ["b"]),
            Node(opType: "Sub", inputs: ["b", "three"], outputs: ["c"]),
            Node(opType: "Mul", inputs: ["c", "two"], outputs: ["d"]),
            Node(opType: "Add", inputs: ["d", "one"], outputs: ["y"]),
            Node(opType: "Mul", inputs: ["x", "two"], outputs: ["z"]),
        ]
        let graph = Graph(nodes: nodes, inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.value(4), .value(8)])],
                          outputs: [ValueInfo(name: "y"), ValueInfo(name: "z")])
        return Model(graph: graph)
    }

    static func input(_ offset: Float) throws -> Tensor {
        try Tensor(shape: [4, 8], scalars: (0..<32).map { Float($0) + offset })
    }

    /// Hand-computed: ((x + 1)·2 − 3)·2 + 1 = 4x − 1.
    static func expectOutputs(_ outputs: [String: Tensor], offset: Float, sourceLocation: SourceLocation = #_sourceLocation) {
        let x = (0..<32).map { Float($0) + offset }
        #expect(outputs["y"]?.floats == x.map { 4 * $0 - 1 }, sourceLocation: sourceLocation)
        #expect(outputs["z"]?.floats == x.map { 2 * $0 }, sourceLocation: sourceLocation)
    }

    @Test func steadyStateRunsAllocateNothingAndStepsShareMemory() throws {
        let session = try Session(model: Self.chain(), options: SessionOptions(threadCount: 1))
        for run in 0..<4 {
            Self.expectOutputs(try session.run(["x": try Self.input(Float(run))]), offset: Float(run))
        }
        let pool = try #require(session.plan.pools.idlePools.first)
        // Six outputs per run; a released intermediate's storage serves a later step, so a run needs
        // far fewer than six, and runs after the first allocate none.
        #expect(pool.storageCount <= 4, "holds \(pool.storageCount)")
        let before = pool.allocations
        Self.expectOutputs(try session.run(["x": try Self.input(9)]), offset: 9)
        #expect(pool.allocations == before)
    }

    @Test func resultsTheCallerKeepsAreNeverOverwritten() throws {
        let session = try Session(model: Self.chain(), options: SessionOptions(threadCount: 1))
        let kept = try (0..<3).map { try session.run(["x": try Self.input(Float(10 * $0))]) }
        for (index, outputs) in kept.enumerated() { Self.expectOutputs(outputs, offset: Float(10 * index)) }
        // A kept result can still be written through its own copy-on-write accessor without touching
        // what the next run produces.
        var first = try #require(kept[0]["y"])
        first.withUnsafeMutableBufferPointer(as: Float.self) { $0[0] = -100 }
        let next = try session.run(["x": try Self.input(5)])
        Self.expectOutputs(next, offset: 5)
        Self.expectOutputs(kept[1], offset: 10)
    }
}
