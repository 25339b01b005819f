import GraphIR
import Runtime
import Tensors
import Testing

/// Expected outputs come from ONNX Runtime 1.31 and numpy on x86-64 (hard-coded here).
@Suite struct CastKernelTests {
    static func castModel(to code: Int, opset: Int, extra: [String: Attribute] = [:]) -> Model {
        var node = Node(name: "cast", opType: "Cast", inputs: ["x"], outputs: ["y"], attributes: ["to": .int(code)])
        for (name, value) in extra.sorted(by: { $0.key < $1.key }) { node.attributes[name] = value }
        return Model(graph: Graph(nodes: [node], inputs: [ValueInfo(name: "x")], outputs: [ValueInfo(name: "y")]),
                     opsetImports: ["": opset])
    }

    static func run(_ model: Model, _ x: Tensor) throws -> Tensor {
        let outputs = try Session(model: model).run(["x": x])
        return try #require(outputs["y"])
    }

    /// The text of the error `body` throws, or nil when it does not throw.
    static func errorText(_ body: () throws -> Void) -> String? {
        do { try body() } catch { return "\(error)" }
        return nil
    }

    @Test func castsFloatToIntegersLikeONNXRuntime() throws {
        let x = try Tensor(shape: [2, 4], scalars: [Float.nan, .infinity, -.infinity, 300.7, -300.7, 3e9, -1.5, 2.5])
        let int32 = try Self.run(Self.castModel(to: 6, opset: 13), x)
        #expect(int32.shape == [2, 4])
        #expect(int32.scalars(as: Int32.self) == [.min, .min, .min, 300, -300, .min, -1, 2])
        let uint8 = try Self.run(Self.castModel(to: 2, opset: 13), x)
        #expect(uint8.scalars(as: UInt8.self) == [0, 0, 0, 44, 212, 0, 255, 2])
        let int64 = try Self.run(Self.castModel(to: 7, opset: 9), x)
        #expect(int64.scalars(as: Int64.self) == [.min, .min, .min, 300, -300, 3_000_000_000, -1, 2])
    }

    @Test func castsBetweenFloatsAndBools() throws {
        let x = try Tensor(shape: [4], scalars: [Float(1) + 0x1p-11, 65520, 0.1, 0])
        let half = try Self.run(Self.castModel(to: 10, opset: 13), x)
        #expect(half.scalars(as: Float16.self).map(\.bitPattern) == [0x3C00, 0x7C00, 0x2E66, 0x0000])
        let bf16 = try Self.run(Self.castModel(to: 16, opset: 13), x)
        #expect(bf16.scalars(as: BFloat16.self).map(\.bitPattern) == [0x3F80, 0x4780, 0x3DCD, 0x0000])
        let flags = try Self.run(Self.castModel(to: 9, opset: 13), x)
        #expect(flags.scalars(as: Bool.self) == [true, true, true, false])
        let back = try Self.run(Self.castModel(to: 11, opset: 13), flags)
        #expect(back.scalars(as: Double.self) == [1, 1, 1, 0])
        // Identity casts and scalars keep the shape.
        let scalar = try Self.run(Self.castModel(to: 1, opset: 7), Tensor(scalar: Float(2.5)))
        #expect(scalar.shape == [] && scalar.scalars(as: Float.self) == [2.5])
    }

    @Test func castsToInt4FromOpset21() throws {
        let x = try Tensor(shape: [4], scalars: [Int32(7), 8, -9, 300])
        let packed = try Self.run(Self.castModel(to: 22, opset: 21, extra: ["saturate": .int(1)]), x)
        #expect(packed.dtype == .int4)
        #expect(try packed.unpackedInt4() == [7, -8, 7, -4])
        // Cast-13 knows no int4, either as target or as input.
        let tooOld = Self.errorText { _ = try Session(model: Self.castModel(to: 22, opset: 13)) }
        #expect(tooOld?.contains("added in opset 21") == true, "\(tooOld ?? "")")
        let inputTooNew = Self.errorText { _ = try Self.run(Self.castModel(to: 1, opset: 13), packed) }
        #expect(inputTooNew?.contains("does not accept int4") == true, "\(inputTooNew ?? "")")
    }

    @Test func castLikeTakesTheSecondInputsType() throws {
        let node = Node(opType: "CastLike", inputs: ["x", "like"], outputs: ["y"])
        let graph = Graph(nodes: [node], inputs: [ValueInfo(name: "x"), ValueInfo(name: "like")],
                          outputs: [ValueInfo(name: "y")])
        let session = try Session(model: Model(graph: graph, opsetImports: ["": 15]))
        let x = try Tensor(shape: [3], scalars: [Float(-2.7), 0.5, 1e10])
        let y = try #require(try session.run(["x": x, "like": Tensor(zeros: .int16, shape: [0])])["y"])
        #expect(y.dtype == .int16 && y.scalars(as: Int16.self) == [-2, 0, 0])
        let missing = Self.errorText { _ = try session.run(["x": x]) }
        #expect(missing != nil)
        // CastLike does not exist before opset 15.
        #expect(throws: RuntimeError.self) { try Session(model: Model(graph: graph, opsetImports: ["": 14])) }
    }

    @Test func badTargetsAreReportedWhenCompiling() throws {
        let cases: [(Int, Int, [String: Attribute], String)] = [
            (8, 13, [:], "STRING"),
            (14, 13, [:], "COMPLEX64"),
            (99, 13, [:], "code 99"),
            (16, 11, [:], "added in opset 13"),
            (17, 19, [:], "FLOAT8E4M3FN"),
            (1, 19, ["saturate": .float(1)], "saturate"),
        ]
        for (code, opset, extra, fragment) in cases {
            let text = Self.errorText { _ = try Session(model: Self.castModel(to: code, opset: opset, extra: extra)) }
            #expect(text?.contains(fragment) == true, "to=\(code) opset \(opset): \(text ?? "no error")")
            #expect(text?.contains("node 'cast'") == true)
        }
        let noTo = Node(name: "cast", opType: "Cast", inputs: ["x"], outputs: ["y"])
        let model = Model(graph: Graph(nodes: [noTo], inputs: [ValueInfo(name: "x")], outputs: [ValueInfo(name: "y")]),
                          opsetImports: ["": 13])
        let text = Self.errorText { _ = try Session(model: model) }
        #expect(text?.contains("attribute 'to' is required") == true, "\(text ?? "")")
    }
}
