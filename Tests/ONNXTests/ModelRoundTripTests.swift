import Foundation
import GraphIR
import ONNX
import Tensors
import Testing
import _TestSupport

@Suite struct ModelRoundTripTests {
    @Test func everyKindModelRoundTripsThroughBytes() throws {
        let model = try ONNXFixtures.everyKindModel()
        try ModelChecker.check(model)
        let bytes = try model.serializedData()
        let decoded = try Model(serializedData: bytes, baseDirectory: nil, source: "memory")
        #expect(decoded == model)
        // Encoding is deterministic, so a second pass gives the same bytes.
        #expect(try decoded.serializedData() == bytes)
    }

    @Test func everyKindModelRoundTripsThroughAFile() throws {
        let folder = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let model = try ONNXFixtures.everyKindModel()
        let url = folder.appendingPathComponent("every.onnx")
        try model.write(to: url)
        #expect(try Model(contentsOf: url) == model)
        // Writing again replaces the file and leaves no temporary files behind.
        try model.write(to: url)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["every.onnx"])
    }

    /// Checks the protobuf we write field by field, as python `onnx` would read it.
    @Test func encodedProtoUsesONNXFieldConventions() throws {
        let model = try ONNXFixtures.everyKindModel()
        let proto = try Onnx_ModelProto(serializedBytes: try model.serializedData())
        #expect(proto.irVersion == 8)
        #expect(proto.opsetImport.map(\.domain) == ["", "test.domain"])
        #expect(proto.metadataProps.map(\.key) == ["author", "licence", "empty"])
        let custom = try #require(proto.graph.node.first { $0.opType == "Custom" })
        let types = custom.attribute.map(\.type)
        // AttributeProto.AttributeType codes 1...14 each appear once.
        #expect(Set(types.map(\.rawValue)) == Set(1...14))
        let weight = try #require(proto.graph.initializer.first { $0.name == "weight_t" })
        #expect(weight.dataType == 1 && weight.dims == [3, 2] && weight.rawData.count == 24)
        #expect(weight.floatData.isEmpty)
        let int4 = try #require(proto.graph.initializer.first { $0.name == "int4_weight" })
        #expect(int4.dataType == 22 && Array(int4.rawData) == [0xE1, 0x07])
        let input = proto.graph.input[0].type.tensorType
        #expect(input.elemType == 1)
        #expect(input.shape.dim.map(\.dimParam) == ["batch", ""])
        #expect(input.shape.dim[1].dimValue == 3)
        let unknownDims = proto.graph.input[2].type.tensorType.shape.dim
        #expect(unknownDims[0].value == nil && unknownDims[1].value == .dimValue(0))
        #expect(!proto.graph.input[3].type.tensorType.hasShape)
        #expect(!proto.graph.input[4].hasType)
        #expect(proto.graph.sparseInitializer.first?.values.name == "sparse_weight")
        #expect(proto.graph.sparseInitializer.first?.dims == [2, 3])
    }

    /// Typed-field encodings produced by python `onnx.helper.make_tensor` (onnx 1.23), decoded.
    @Test func typedFieldsDecodeAsTheONNXSpecSays() throws {
        func decode(_ dataType: Int32, dims: [Int64], _ fill: (inout Onnx_TensorProto) -> Void) throws -> Tensor {
            var tensor = Onnx_TensorProto()
            tensor.name = "w"
            tensor.dataType = dataType
            tensor.dims = dims
            fill(&tensor)
            let model = try Model(
                serializedData: try ONNXFixtures.modelProto(initializer: tensor).serializedBytes(),
                baseDirectory: nil, source: "typed")
            return try #require(model.graph.initializers["w"])
        }
        // make_tensor('x', INT4, [3], [1, -2, 7]).int32_data == [225, 7]
        let int4 = try decode(22, dims: [3]) { $0.int32Data = [225, 7] }
        #expect(int4.dtype == .int4 && int4.withUnsafeBytes { Array($0) } == [0xE1, 0x07])
        // make_tensor('x', UINT4, [4], [1, 2, 15, 0]).int32_data == [33, 15]
        let uint4 = try decode(21, dims: [4]) { $0.int32Data = [33, 15] }
        #expect(uint4.withUnsafeBytes { Array($0) } == [0x21, 0x0F])
        // FLOAT16 [1.5, -2.0] -> [15872, 49152]
        let half = try decode(10, dims: [2]) { $0.int32Data = [15872, 49152] }
        #expect(half.scalars(as: Float16.self) == [1.5, -2])
        // BFLOAT16 [1.5, -2.0] -> [16320, 49152]
        let brain = try decode(16, dims: [2]) { $0.int32Data = [16320, 49152] }
        #expect(brain.scalars(as: BFloat16.self).map(\.floatValue) == [1.5, -2])
        // INT8 [-1, 127, -128] -> int32_data unchanged
        let int8 = try decode(3, dims: [3]) { $0.int32Data = [-1, 127, -128] }
        #expect(int8.scalars(as: Int8.self) == [-1, 127, -128])
        // BOOL [True, False, True] -> [1, 0, 1]
        let flags = try decode(9, dims: [3]) { $0.int32Data = [1, 0, 1] }
        #expect(flags.scalars(as: Bool.self) == [true, false, true])
        // UINT32 [4000000000, 7] -> uint64_data [4000000000, 7]
        let uint32 = try decode(12, dims: [2]) { $0.uint64Data = [4_000_000_000, 7] }
        #expect(uint32.scalars(as: UInt32.self) == [4_000_000_000, 7])
        // FLOAT8E4M3FN [1.0, -2.0] -> [56, 192]
        let fp8 = try decode(17, dims: [2]) { $0.int32Data = [56, 192] }
        #expect(fp8.scalars(as: Float8E4M3FN.self).map(\.bitPattern) == [0x38, 0xC0])
        let floats = try decode(1, dims: [2, 1]) { $0.floatData = [0.5, -1] }
        #expect(floats.shape == [2, 1] && floats.scalars(as: Float.self) == [0.5, -1])
        let doubles = try decode(11, dims: [1]) { $0.doubleData = [-2.25] }
        #expect(doubles.scalars(as: Double.self) == [-2.25])
        let int64 = try decode(7, dims: []) { $0.int64Data = [Int64.min] }
        #expect(int64.shape == [] && int64.scalars(as: Int64.self) == [Int64.min])
        let uint64 = try decode(13, dims: [1]) { $0.uint64Data = [UInt64.max] }
        #expect(uint64.scalars(as: UInt64.self) == [UInt64.max])
        let int16 = try decode(5, dims: [2]) { $0.int32Data = [-300, 300] }
        #expect(int16.scalars(as: Int16.self) == [-300, 300])
        let empty = try decode(1, dims: [0, 3]) { _ in }
        #expect(empty.count == 0 && empty.shape == [0, 3])
    }

    @Test func externalDataWriteAndReadRoundTrip() throws {
        let folder = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        var model = try ONNXFixtures.everyKindModel()
        let large = try Tensor(shape: [100, 30], scalars: (0..<3000).map { Float($0) * 0.5 })
        model.graph.initializers["large"] = large
        model.graph.initializers["large_int"] = try Tensor(shape: [500], scalars: (0..<500).map { Int64($0) - 250 })

        let url = folder.appendingPathComponent("model.onnx")
        try model.write(to: url, externalData: ExternalDataOptions(sizeThreshold: 1024))
        #expect(try Model(contentsOf: url) == model)

        let proto = try Onnx_ModelProto(serializedBytes: try Data(contentsOf: url))
        let externals = proto.graph.initializer.filter { $0.dataLocation == .external }
        #expect(externals.map(\.name) == ["large", "large_int"])
        for tensor in externals {
            let entries = Dictionary(uniqueKeysWithValues: tensor.externalData.map { ($0.key, $0.value) })
            #expect(entries["location"] == "model.onnx.data")
            #expect(Int(entries["offset"] ?? "x").map { $0 % 4096 == 0 } == true)
            #expect(tensor.rawData.isEmpty)
        }
        // The side file holds the large tensor's bytes at its offset (first element 0, then 0.5).
        let side = try Data(contentsOf: folder.appendingPathComponent("model.onnx.data"))
        // 12,000 bytes of floats padded to 12,288, then 4,000 bytes of int64.
        #expect(side.count == 12_288 + 4_000)
        let firstFloats = side.prefix(8).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        #expect(firstFloats == [0, 0.5])

        // A named side file, and rewriting in place.
        let named = folder.appendingPathComponent("named.onnx")
        try model.write(to: named, externalData: ExternalDataOptions(fileName: "weights.bin", sizeThreshold: 1, alignment: 1))
        #expect(try Model(contentsOf: named) == model)
        #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent("weights.bin").path))
        try model.write(to: named, externalData: ExternalDataOptions(fileName: "weights.bin", sizeThreshold: 1, alignment: 1))
        #expect(try Model(contentsOf: named) == model)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
            == ["model.onnx", "model.onnx.data", "named.onnx", "weights.bin"])
    }

    @Test func failedWriteLeavesTheOldFileAndNoTemporaries() throws {
        let folder = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let model = try ONNXFixtures.everyKindModel()
        let url = folder.appendingPathComponent("keep.onnx")
        try model.write(to: url)
        let before = try Data(contentsOf: url)

        let error = #expect(throws: ONNXError.self) {
            try model.write(to: url, externalData: ExternalDataOptions(fileName: "../escape.data"))
        }
        #expect(error.map { "\($0)" }?.contains("keep.onnx") == true)
        #expect(try Data(contentsOf: url) == before)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["keep.onnx"])

        let missingFolder = folder.appendingPathComponent("no/such/folder/model.onnx")
        let folderError = #expect(throws: ONNXError.self) { try model.write(to: missingFolder) }
        if case .fileAccess(let file, _)? = folderError { #expect(file == missingFolder.path) } else {
            Issue.record("expected fileAccess, got \(String(describing: folderError))")
        }
    }

    @Test func tensorProtoFilesRoundTripEveryElementType() throws {
        let folder = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let model = try ONNXFixtures.everyKindModel()
        guard case .tensors(let tensors)? = model.graph.nodes[1].attributes["tensors"] else {
            Issue.record("fixture changed")
            return
        }
        for (index, tensor) in (tensors + Array(model.graph.initializers.values)).enumerated() {
            let url = folder.appendingPathComponent("tensor_\(index).pb")
            try TensorProtoFile.write(tensor, name: "t\(index)", to: url)
            let (name, read) = try TensorProtoFile.read(url)
            #expect(name == "t\(index)")
            #expect(read == tensor)
        }
    }
}
