import Foundation
import GraphIR
import ONNX
import Tensors
import Testing
import _TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Damaged and malicious files must end in an `ONNXError` naming the file and tensor — never a trap,
/// never a read outside the model's folder, never a huge allocation.
@Suite struct HostileInputTests {
    /// Loads `proto` from a file in a fresh folder prepared by `setUp`, and returns the error.
    private func loadError(
        _ proto: Onnx_ModelProto, setUp: (URL) throws -> Void = { _ in }
    ) throws -> (error: ONNXError?, modelPath: String) {
        let folder = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let inner = folder.appendingPathComponent("model_dir")
        try FileManager.default.createDirectory(at: inner, withIntermediateDirectories: true)
        try setUp(inner)
        let url = try ONNXFixtures.write(proto, in: inner)
        let error = #expect(throws: ONNXError.self) { try Model(contentsOf: url) }
        return (error, url.path)
    }

    private func expectExternalDataError(
        location: String, offset: String? = nil, length: String? = nil, mentioning words: [String],
        setUp: (URL) throws -> Void = { _ in }
    ) throws {
        let tensor = ONNXFixtures.externalTensorProto(
            name: "hostile_weight", dims: [2], location: location, offset: offset, length: length)
        let (error, path) = try loadError(ONNXFixtures.modelProto(initializer: tensor), setUp: setUp)
        guard case .externalData(let file, let name, let reason)? = error else {
            Issue.record("expected an external data error, got \(String(describing: error))")
            return
        }
        #expect(file == path)
        #expect(name == "hostile_weight")
        for word in words { #expect(reason.contains(word), "\(reason)") }
    }

    /// Eight bytes of floats beside the model, which the hostile locations try to reach.
    private static func writeWeights(_ url: URL) throws {
        try Data([Float(1), 2].withUnsafeBytes { Data($0) }).write(to: url)
    }

    @Test func externalDataThatResolvesSafelyLoads() throws {
        let folder = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("sub"), withIntermediateDirectories: true)
        try Self.writeWeights(folder.appendingPathComponent("sub/w.bin"))
        // `..` that stays inside the folder is fine.
        let tensor = ONNXFixtures.externalTensorProto(
            name: "w", dims: [2], location: "sub/../sub/./w.bin", offset: "0", length: "8")
        let url = try ONNXFixtures.write(ONNXFixtures.modelProto(initializer: tensor), in: folder)
        let model = try Model(contentsOf: url)
        #expect(model.graph.initializers["w"]?.scalars(as: Float.self) == [1, 2])
    }

    @Test func absoluteLocationIsRejected() throws {
        try expectExternalDataError(location: "/etc/passwd", mentioning: ["absolute", "/etc/passwd"])
    }

    @Test func locationEscapingTheFolderIsRejected() throws {
        try expectExternalDataError(location: "../outside.bin", mentioning: ["leaves the model's folder"]) { inner in
            try Self.writeWeights(inner.deletingLastPathComponent().appendingPathComponent("outside.bin"))
        }
        try expectExternalDataError(location: "a/../../outside.bin", mentioning: ["leaves"]) { inner in
            try Self.writeWeights(inner.deletingLastPathComponent().appendingPathComponent("outside.bin"))
        }
    }

    @Test func symbolicLinksAnywhereOnThePathAreRejected() throws {
        // The link points at a file inside the folder: links are refused whatever their target.
        try expectExternalDataError(location: "link.bin", mentioning: ["symbolic link", "link.bin"]) { inner in
            try Self.writeWeights(inner.appendingPathComponent("real.bin"))
            try FileManager.default.createSymbolicLink(
                atPath: inner.appendingPathComponent("link.bin").path, withDestinationPath: "real.bin")
        }
        try expectExternalDataError(location: "linked_dir/w.bin", mentioning: ["symbolic link", "linked_dir"]) { inner in
            let outside = inner.deletingLastPathComponent().appendingPathComponent("elsewhere")
            try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: true)
            try Self.writeWeights(outside.appendingPathComponent("w.bin"))
            try FileManager.default.createSymbolicLink(
                atPath: inner.appendingPathComponent("linked_dir").path, withDestinationPath: outside.path)
        }
    }

    @Test func missingFileAndFoldersAreRejected() throws {
        try expectExternalDataError(location: "nowhere.bin", mentioning: ["does not exist", "nowhere.bin"])
        try expectExternalDataError(location: "sub", mentioning: ["not a regular file"]) { inner in
            try FileManager.default.createDirectory(at: inner.appendingPathComponent("sub"), withIntermediateDirectories: true)
        }
        try expectExternalDataError(location: ".", mentioning: ["names a folder"])
        try expectExternalDataError(location: "", mentioning: ["no location"])
    }

    @Test func rangesOutsideTheFileAreRejected() throws {
        let setUp: (URL) throws -> Void = { try Self.writeWeights($0.appendingPathComponent("w.bin")) }
        try expectExternalDataError(location: "w.bin", offset: "9", mentioning: ["offset 9", "past the end"], setUp: setUp)
        try expectExternalDataError(location: "w.bin", offset: "4", length: "8", mentioning: ["past the end"], setUp: setUp)
        try expectExternalDataError(
            location: "w.bin", offset: "4", length: String(Int.max), mentioning: ["overflows"], setUp: setUp)
        try expectExternalDataError(
            location: "w.bin", offset: "99999999999999999999999", mentioning: ["too large"], setUp: setUp)
        try expectExternalDataError(location: "w.bin", offset: "-1", mentioning: ["not a non-negative integer"], setUp: setUp)
    }

    @Test func externalDataOfTheWrongSizeIsRejected() throws {
        let tensor = ONNXFixtures.externalTensorProto(name: "short_weight", dims: [3], location: "w.bin")
        let (error, path) = try loadError(ONNXFixtures.modelProto(initializer: tensor)) {
            try Self.writeWeights($0.appendingPathComponent("w.bin"))
        }
        #expect(error == .invalidTensor(
            file: path, tensor: "short_weight", reason: "external data holds 8 bytes but dims [3] of float32 need 12"))
    }

    @Test func externalDataNeedsAFolder() throws {
        let tensor = ONNXFixtures.externalTensorProto(name: "w", dims: [2], location: "w.bin")
        let error = #expect(throws: ONNXError.self) {
            try Model(serializedData: try ONNXFixtures.modelProto(initializer: tensor).serializedBytes(),
                      baseDirectory: nil, source: "bytes from the network")
        }
        guard case .externalData(let file, let name, _)? = error else {
            Issue.record("got \(String(describing: error))")
            return
        }
        #expect(file == "bytes from the network" && name == "w")
    }

    @Test func tensorDataDisagreeingWithItsDimsIsRejected() throws {
        func error(for tensor: Onnx_TensorProto) throws -> ONNXError? {
            try loadError(ONNXFixtures.modelProto(initializer: tensor)).error
        }
        func expectInvalid(_ tensor: Onnx_TensorProto, mentioning words: [String]) throws {
            guard case .invalidTensor(let file, let name, let reason)? = try error(for: tensor) else {
                Issue.record("expected invalidTensor for \(tensor.name)")
                return
            }
            #expect(file.hasSuffix("model.onnx") && name == tensor.name)
            for word in words { #expect(reason.contains(word), "\(reason)") }
        }
        try expectInvalid(ONNXFixtures.floatTensorProto(name: "shorter", dims: [3], raw: [1, 2]),
                          mentioning: ["raw_data holds 8 bytes", "need 12"])
        try expectInvalid(ONNXFixtures.floatTensorProto(name: "longer", dims: [3], raw: [1, 2, 3, 4]),
                          mentioning: ["raw_data holds 16 bytes", "need 12"])
        var typed = ONNXFixtures.floatTensorProto(name: "typed_short", dims: [2, 2])
        typed.floatData = [1, 2, 3]
        try expectInvalid(typed, mentioning: ["float_data holds 3 entries", "need 4"])
        var wrongField = ONNXFixtures.floatTensorProto(name: "wrong_field", dims: [2])
        wrongField.int64Data = [1, 2]
        try expectInvalid(wrongField, mentioning: ["float_data holds 0 entries", "int64_data"])
        try expectInvalid(ONNXFixtures.floatTensorProto(name: "negative", dims: [2, -1], raw: [1, 2]),
                          mentioning: ["negative"])
        // Overflowing products are caught before any allocation.
        try expectInvalid(ONNXFixtures.floatTensorProto(name: "overflow", dims: [Int64.max, 4], raw: [1]),
                          mentioning: ["more elements"])
        try expectInvalid(ONNXFixtures.floatTensorProto(name: "overflow_bytes", dims: [1 << 62], raw: [1]),
                          mentioning: ["more elements"])
        // A huge but countable claim is refused by comparing with the bytes present, not by allocating.
        try expectInvalid(ONNXFixtures.floatTensorProto(name: "huge_claim", dims: [1 << 40], raw: [1]),
                          mentioning: ["raw_data holds 4 bytes"])
        try expectInvalid(ONNXFixtures.floatTensorProto(name: "huge_typed", dims: [1 << 40]), mentioning: ["holds 0 entries"])
    }

    @Test func unsupportedElementTypesAreNamed() throws {
        var strings = ONNXFixtures.floatTensorProto(name: "words", dims: [1])
        strings.dataType = 8
        strings.stringData = [Data("hello".utf8)]
        let (error, path) = try loadError(ONNXFixtures.modelProto(initializer: strings))
        #expect(error == .unsupportedDataType(file: path, tensor: "words", dataType: "STRING"))

        var complex = ONNXFixtures.floatTensorProto(name: "waves", dims: [1], raw: [1, 2])
        complex.dataType = 14
        #expect(try loadError(ONNXFixtures.modelProto(initializer: complex)).error?.description
            .contains("'waves' has element type COMPLEX64") == true)
    }

    @Test func modelLocalFunctionsAreRejectedByName() throws {
        var proto = ONNXFixtures.modelProto(initializer: ONNXFixtures.floatTensorProto(name: "w", dims: [1], raw: [1]))
        var function = Onnx_FunctionProto()
        function.name = "MyGelu"
        function.domain = "custom.functions"
        proto.functions = [function]
        let (error, path) = try loadError(proto)
        #expect(error == .unsupportedFunction(file: path, function: "custom.functions.MyGelu"))
    }

    @Test func attributeReferencesOutsideFunctionsAreRejected() throws {
        var proto = ONNXFixtures.modelProto(initializer: ONNXFixtures.floatTensorProto(name: "w", dims: [1], raw: [1]))
        var attribute = Onnx_AttributeProto()
        attribute.name = "alpha"
        attribute.refAttrName = "outer_alpha"
        attribute.type = .float
        proto.graph.node[0].attribute = [attribute]
        proto.graph.node[0].name = "scaled"
        guard case .invalidAttribute(_, let node, let name, _)? = try loadError(proto).error else {
            Issue.record("expected invalidAttribute")
            return
        }
        #expect(node.contains("scaled") && name == "alpha")
    }

    @Test func nonONNXBytesNameTheFile() throws {
        let folder = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        var generator = ONNXFixtures.SeededGenerator(state: 42)
        for trial in 0..<50 {
            let count = Int.random(in: 0..<2000, using: &generator)
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let url = folder.appendingPathComponent("random_\(trial).onnx")
            try Data(bytes).write(to: url)
            let error = #expect(throws: ONNXError.self) { try Model(contentsOf: url) }
            #expect(error?.description.hasPrefix(url.path) == true)
        }
        // Text, an empty file, a folder and a missing file.
        let text = folder.appendingPathComponent("text.onnx")
        try Data("not a model at all\n".utf8).write(to: text)
        #expect(throws: ONNXError.self) { try Model(contentsOf: text) }
        let empty = folder.appendingPathComponent("empty.onnx")
        try Data().write(to: empty)
        let emptyError = #expect(throws: ONNXError.self) { try Model(contentsOf: empty) }
        #expect(emptyError == .invalidModel(file: empty.path, reason: "ir_version is missing, so this is not an ONNX model"))
        #expect(throws: ONNXError.fileAccess(file: folder.path, reason: "is a folder, not a file")) {
            try Model(contentsOf: folder)
        }
        let missing = folder.appendingPathComponent("missing.onnx")
        #expect(throws: ONNXError.fileAccess(file: missing.path, reason: "no such file")) {
            try Model(contentsOf: missing)
        }
    }

    /// Every prefix-truncation of a real model fails cleanly (or, at a field boundary that leaves a
    /// complete model, loads).
    @Test func truncatedFilesNameTheFile() throws {
        let folder = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let bytes = try ONNXFixtures.everyKindModel().serializedData()
        let url = folder.appendingPathComponent("truncated.onnx")
        var failures = 0
        for cut in stride(from: 0, to: bytes.count, by: 3) {
            try bytes.prefix(cut).write(to: url)
            do {
                _ = try Model(contentsOf: url)
            } catch let error as ONNXError {
                failures += 1
                #expect(error.description.hasPrefix(url.path))
            }
        }
        #expect(failures > bytes.count / 3 - 10)
        // The half-way cut lands inside the graph: a protobuf truncation.
        try bytes.prefix(bytes.count / 2).write(to: url)
        let error = #expect(throws: ONNXError.self) { try Model(contentsOf: url) }
        guard case .malformedFile(let file, let reason)? = error else {
            Issue.record("expected malformedFile, got \(String(describing: error))")
            return
        }
        #expect(file == url.path && reason.contains("truncated"))
    }

    /// Random single-byte damage anywhere in a valid model never traps.
    @Test func corruptedBytesNeverTrap() throws {
        let bytes = [UInt8](try ONNXFixtures.everyKindModel().serializedData())
        var generator = ONNXFixtures.SeededGenerator(state: 7)
        var thrown = 0
        for _ in 0..<400 {
            var damaged = bytes
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                damaged[Int.random(in: 0..<damaged.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            }
            do {
                let model = try Model(serializedData: Data(damaged), baseDirectory: nil, source: "damaged")
                // Whatever loads must also encode and check without trapping.
                _ = try? model.serializedData()
                _ = try? ModelChecker.check(model)
                _ = ModelSummary(model)
            } catch let error as ONNXError {
                thrown += 1
                #expect(error.description.hasPrefix("damaged"))
            }
        }
        #expect(thrown > 0)
    }
}
