import Foundation
import Testing
import Tensors
import _TestSupport

@Suite struct NPZArchiveTests {
    static let directory = TestSupport.fixtures.appendingPathComponent("npy")

    /// What scripts/make_npy_fixtures.py put in savez.npz and savez_compressed.npz, in that order.
    static func expectedFixtureArrays() throws -> [(String, Tensor)] {
        [
            ("weights", try Tensor(shape: [2, 3], scalars: [Float(-1), -0.5, 0, 0.5, 1, 1.5])),
            ("ids", try Tensor(shape: [3], scalars: [Int64(101), 2023, 102])),
            ("mask", try Tensor(shape: [3], scalars: [true, true, false])),
            ("scalar", Tensor(scalar: Int32(7))),
        ]
    }

    @Test(arguments: ["savez.npz", "savez_compressed.npz"])
    func readsNumpyArchives(name: String) throws {
        let url = Self.directory.appendingPathComponent(name)
        let arrays = try NPZ.read(url)
        let expected = try Self.expectedFixtureArrays()
        #expect(arrays.map(\.name) == expected.map(\.0))
        for ((_, tensor), (key, want)) in zip(arrays, expected) { #expect(tensor == want, "\(key)") }
        #expect(try NPZ.names(url) == ["weights", "ids", "mask", "scalar"])
        #expect(try NPZ.readArray(url, name: "ids") == expected[1].1)
        #expect(try NPZ.readDictionary(url)["mask"] == expected[2].1)
        #expect(throws: TensorError.missingArray(path: url.path, name: "nope")) { try NPZ.readArray(url, name: "nope") }
    }

    @Test(arguments: [false, true])
    func roundTripsEveryStorableDType(compressed: Bool) throws {
        let storable: [DType] = [.float32, .float64, .float16, .int8, .uint8, .int16, .uint16, .int32, .uint32,
                                 .int64, .uint64, .bool]
        // [64, 1024] spans several extraction chunks for dtypes of 4 bytes and more.
        let shapes: [[Int]] = [[], [0], [3, 4], [2, 0, 5], [64, 1024]]
        var arrays: [(String, Tensor)] = []
        for dtype in storable {
            for (index, shape) in shapes.enumerated() {
                let values = (0..<shape.reduce(1, *)).map { Float(($0 * 37) % 11) - 5 }
                arrays.append(("\(dtype)_\(index)", try Tensor(shape: shape, scalars: values).converted(to: dtype)))
            }
        }
        let directory = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("all.npz")
        try NPZ.write(arrays, to: url, compressed: compressed)
        let back = try NPZ.read(url)
        #expect(back.map(\.name) == arrays.map(\.0))
        for ((name, tensor), (_, original)) in zip(back, arrays) { #expect(tensor == original, "\(name)") }
        // Rewriting replaces the archive atomically and leaves nothing else in the directory.
        try NPZ.write([("only", Tensor(scalar: Double(1)))], to: url, compressed: compressed)
        #expect(try NPZ.names(url) == ["only"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["all.npz"])
        // An archive with no arrays is valid too.
        try NPZ.write([], to: url, compressed: compressed)
        #expect(try NPZ.read(url).isEmpty)
    }

    @Test func writesDeterministicArchives() throws {
        // Equal input gives byte-identical archives: entry timestamps are fixed.
        let directory = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let first = directory.appendingPathComponent("a.npz")
        let second = directory.appendingPathComponent("b.npz")
        let arrays = try Self.expectedFixtureArrays()
        try NPZ.write(arrays, to: first, compressed: true)
        try NPZ.write(arrays, to: second, compressed: true)
        #expect(try Data(contentsOf: first) == Data(contentsOf: second))
        #expect(try NPZ.read(first).map(\.tensor) == arrays.map(\.1))
    }

    @Test func writeRejectsBadNamesAndDTypes() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("never-\(UUID().uuidString).npz")
        let one = Tensor(scalar: Float(1))
        #expect(throws: TensorError.self) { try NPZ.write([("", one)], to: url) }
        #expect(throws: TensorError.self) { try NPZ.write([("a", one), ("a", one)], to: url) }
        #expect(throws: TensorError.self) { try NPZ.write([("a", try Tensor(zeros: .bfloat16, shape: [1]))], to: url) }
        #expect(!FileManager.default.fileExists(atPath: url.path))
    }

    @Test func readsTheMiniLMCalibrationSet() throws {
        guard let models = TestSupport.sharedModels else { return }
        let url = models.appendingPathComponent("minilm-l6/minilm-calib.npz")
        guard FileManager.default.fileExists(atPath: url.path) else { return }
        let arrays = try NPZ.read(url)
        #expect(arrays.map(\.name) == ["input_ids", "attention_mask", "token_type_ids"])
        for (_, tensor) in arrays { #expect(tensor.dtype == .int64 && tensor.shape == [256, 64]) }
        // Values checked with numpy: the first row starts with [CLS] = 101, and 4950 tokens are unmasked.
        let ids = arrays[0].tensor.scalars(as: Int64.self)
        #expect(Array(ids.prefix(10)) == [101, 2490, 2005, 8518, 1010, 2522, 22494, 10196, 2015, 1998])
        #expect(arrays[1].tensor.scalars(as: Int64.self).reduce(0, +) == 4950)
    }

    // MARK: Malformed archives

    static func reason(_ body: () throws -> Void) -> String? {
        do { try body() } catch TensorError.invalidFile(_, let reason) { return reason } catch { return "other: \(error)" }
        return nil
    }

    @Test func malformedArchivesAreTypedErrorsNamingFileAndArray() throws {
        let directory = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        func file(_ name: String, _ data: Data) throws -> URL {
            let url = directory.appendingPathComponent(name)
            try data.write(to: url)
            return url
        }
        let stored = try Data(contentsOf: Self.directory.appendingPathComponent("savez.npz"))

        // Not a zip at all, and a zip cut short (its directory at the end is lost).
        let notZip = try file("not.npz", Data("hello, world".utf8))
        #expect(Self.reason { _ = try NPZ.read(notZip) }?.contains("not a readable zip") == true)
        let truncated = try file("cut.npz", stored.prefix(stored.count / 2))
        #expect(Self.reason { _ = try NPZ.read(truncated) }?.contains("not a readable zip") == true)
        let missing = directory.appendingPathComponent("missing.npz")
        #expect(Self.reason { _ = try NPZ.read(missing) } == "no such file")

        // Flip a data byte of the first entry ('weights'): the CRC no longer matches.
        var corrupt = stored
        let weightsData = try #require(corrupt.range(of: Data("'shape': (2, 3), }".utf8)))
        corrupt[weightsData.upperBound + 60] ^= 0xFF
        let corruptURL = try file("crc.npz", corrupt)
        let crcReason = Self.reason { _ = try NPZ.read(corruptURL) }
        #expect(crcReason?.contains("array 'weights'") == true && crcReason?.contains("CRC") == true, "\(crcReason ?? "")")

        // An entry whose .npy header is broken names the array.
        var badHeader = stored
        let descr = try #require(badHeader.range(of: Data("'<i8'".utf8)))
        badHeader.replaceSubrange(descr, with: Data("'<U8'".utf8))
        let badURL = try file("header.npz", badHeader)
        let headerReason = Self.reason { _ = try NPZ.readArray(badURL, name: "ids") }
        #expect(headerReason?.contains("array 'ids'") == true, "\(headerReason ?? "")")
        // The other arrays stay readable one by one.
        #expect(try NPZ.readArray(badURL, name: "mask").scalars(as: Bool.self) == [true, true, false])
    }
}
