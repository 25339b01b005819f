import Foundation
import GraphIR
import ONNX
import Tensors
import Testing

/// Small models and protos built in code for the ONNX tests.
enum ONNXFixtures {
    static func floats(_ values: [Float], shape: [Int]) throws -> Tensor { try Tensor(shape: shape, scalars: values) }

    static func packed(_ dtype: DType, shape: [Int], _ bytes: [UInt8]) throws -> Tensor {
        try bytes.withUnsafeBytes { try Tensor(dtype: dtype, shape: shape, bytes: $0) }
    }

    /// A model using every attribute kind, an `If` with both branches reading an outer value, initializers
    /// of many element types (odd-length int4 included), a sparse initializer, value_info, every kind of
    /// dimension, doc strings and metadata.
    static func everyKindModel() throws -> Model {
        let weight = try floats([1, -2, 3.5, 0, 5, -6], shape: [2, 3])
        let int4 = try packed(.int4, shape: [3], [0xE1, 0x07])
        let half = try Tensor(shape: [2], scalars: [Float16(1.5), Float16(-2)])
        let brain = try Tensor(shape: [2], scalars: [BFloat16(1.5), BFloat16(-2)])
        let fp8 = try Tensor(shape: [2], scalars: [Float8E4M3FN(bitPattern: 0x38), Float8E4M3FN(bitPattern: 0xC0)])
        let fp8e5 = try Tensor(shape: [1], scalars: [Float8E5M2(bitPattern: 0x7C)])
        let flags = try Tensor(shape: [3], scalars: [true, false, true])
        let big = try Tensor(shape: [2], scalars: [UInt64.max, 7])
        let sparse = SparseTensor(
            values: try floats([9, 8], shape: [2]), indices: try Tensor(shape: [2], scalars: [Int64(1), 4]),
            dims: [2, 3], valuesName: "sparse_weight")

        let thenBranch = Graph(
            name: "then_branch",
            nodes: [Node(name: "then_add", opType: "Add", inputs: ["x", "bias"], outputs: ["then_out"])],
            outputs: [ValueInfo(name: "then_out", dtype: .float32, shape: nil)])
        let elseBranch = Graph(
            name: "else_branch",
            nodes: [Node(name: "else_neg", opType: "Neg", inputs: ["x"], outputs: ["else_out"])],
            outputs: [ValueInfo(name: "else_out", dtype: .float32, shape: nil)],
            initializers: ["unused_branch_constant": try floats([1], shape: [1])])
        let tinyGraph = Graph(
            name: "attribute_graph",
            nodes: [Node(opType: "Identity", inputs: ["a"], outputs: ["b"])],
            inputs: [ValueInfo(name: "a", dtype: .int64, shape: [])],
            outputs: [ValueInfo(name: "b", dtype: .int64, shape: [])])

        let kinds: [(String, Attribute)] = [
            ("f", .float(0.25)),
            ("i", .int(-7)),
            ("s", .string([0x68, 0x69, 0xFF])),  // not UTF-8 on purpose
            ("t", .tensor(weight)),
            ("g", .graph(tinyGraph)),
            ("sparse", .sparseTensor(sparse)),
            ("tp", .type(.sequence(.tensor(elementType: .float16, shape: [.symbol("n")])))),
            ("floats", .floats([1, 2.5, -3])),
            ("ints", .ints([Int(Int64.min), 0, Int(Int64.max)])),
            ("strings", .strings([Array("a".utf8), [], Array("ü".utf8)])),
            ("tensors", .tensors([int4, half, brain, fp8, fp8e5, flags, big])),
            ("graphs", .graphs([tinyGraph, tinyGraph])),
            ("sparse_list", .sparseTensors([sparse])),
            ("types", .types([
                .map(keyType: .int64, valueType: .tensor(elementType: .float32, shape: nil)),
                .optional(.tensor(elementType: .bool, shape: [.value(2)])),
                .sparseTensor(elementType: .float32, shape: [.value(2), .unknown]),
                .unsupported(onnxElementType: 8),
            ])),
        ]
        var custom = Node(name: "everything", opType: "Custom", domain: "test.domain", inputs: ["x"], outputs: ["custom_out"],
                          docString: "a node carrying every attribute kind")
        for (name, value) in kinds { custom.attributes[name] = value }

        let graph = Graph(
            name: "every_kind",
            nodes: [
                Node(name: "constant", opType: "Constant", inputs: [], outputs: ["bias"],
                     attributes: ["value": .tensor(try floats([0.5, 0.5, 0.5], shape: [3]))]),
                custom,
                Node(name: "branch", opType: "If", inputs: ["cond"], outputs: ["y"],
                     attributes: ["then_branch": .graph(thenBranch), "else_branch": .graph(elseBranch)]),
                Node(opType: "MatMul", inputs: ["y", "weight_t"], outputs: ["z"]),
                Node(opType: "Dropout", inputs: ["z", "", ""], outputs: ["out", ""]),
            ],
            inputs: [
                ValueInfo(name: "x", dtype: .float32, shape: [.symbol("batch"), .value(3)]),
                ValueInfo(name: "cond", dtype: .bool, shape: []),
                ValueInfo(name: "unknown_dims", type: .tensor(elementType: .float32, shape: [.unknown, .value(0)]),
                          docString: "an input with an unknown dimension"),
                ValueInfo(name: "unknown_rank", type: .tensor(elementType: .float32, shape: nil)),
                ValueInfo(name: "untyped", type: nil),
            ],
            outputs: [ValueInfo(name: "out", dtype: .float32, shape: [.symbol("batch"), .value(2)]),
                      ValueInfo(name: "custom_out", type: nil)],
            initializers: [
                "weight_t": try floats([1, 2, 3, 4, 5, 6], shape: [3, 2]),
                "int4_weight": int4,
                "uint4_weight": try packed(.uint4, shape: [2, 2], [0x21, 0xF0]),
                "half": half, "flags": flags, "big": big,
                "empty": try Tensor(zeros: .float32, shape: [0, 4]),
                "scalar": Tensor(scalar: Int32(-5)),
                "doubles": try Tensor(shape: [2], scalars: [Double.pi, -0.0]),
            ],
            sparseInitializers: [sparse],
            valueInfo: ["y": ValueInfo(name: "y", dtype: .float32, shape: [.symbol("batch"), .value(3)])],
            docString: "the graph's doc string")

        return Model(
            graph: graph, opsetImports: ["": 17, "test.domain": 1], irVersion: 8, producerName: "swiftquant-tests",
            producerVersion: "1.0", domain: "org.example", modelVersion: 3, docString: "every kind",
            metadata: ["author": "tests", "licence": "MIT", "empty": ""])
    }

    /// A minimal `ModelProto` with one initializer, to which tests apply damage.
    static func modelProto(initializer: Onnx_TensorProto) -> Onnx_ModelProto {
        var model = Onnx_ModelProto()
        model.irVersion = 8
        var opset = Onnx_OperatorSetIdProto()
        opset.version = 17
        model.opsetImport = [opset]
        model.graph.name = "g"
        model.graph.initializer = [initializer]
        var node = Onnx_NodeProto()
        node.opType = "Identity"
        node.input = [initializer.name]
        node.output = ["y"]
        model.graph.node = [node]
        var output = Onnx_ValueInfoProto()
        output.name = "y"
        model.graph.output = [output]
        return model
    }

    static func floatTensorProto(name: String, dims: [Int64], raw: [Float]? = nil) -> Onnx_TensorProto {
        var tensor = Onnx_TensorProto()
        tensor.name = name
        tensor.dataType = 1
        tensor.dims = dims
        if let raw { tensor.rawData = raw.withUnsafeBytes { Data($0) } }
        return tensor
    }

    static func externalTensorProto(name: String, dims: [Int64], location: String, offset: String? = nil,
                                    length: String? = nil) -> Onnx_TensorProto {
        var tensor = floatTensorProto(name: name, dims: dims)
        tensor.dataLocation = .external
        var entries: [(String, String)] = [("location", location)]
        if let offset { entries.append(("offset", offset)) }
        if let length { entries.append(("length", length)) }
        tensor.externalData = entries.map { key, value in
            var entry = Onnx_StringStringEntryProto()
            entry.key = key
            entry.value = value
            return entry
        }
        return tensor
    }

    /// Writes `proto` as `model.onnx` in `folder` and returns its URL.
    static func write(_ proto: Onnx_ModelProto, in folder: URL, name: String = "model.onnx") throws -> URL {
        let url = folder.appendingPathComponent(name)
        try (proto.serializedBytes() as Data).write(to: url)
        return url
    }

    /// A deterministic generator (SplitMix64), so damage tests are reproducible.
    struct SeededGenerator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }
}
