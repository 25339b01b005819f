import Foundation
import Testing
@testable import Tensors
import _TestSupport

/// Fixtures come from scripts/make_npy_fixtures.py (numpy); the values below repeat what it saved.
@Suite struct TensorNPYTests {
    static let directory = TestSupport.fixtures.appendingPathComponent("npy")

    static func fixture(_ name: String) -> URL { directory.appendingPathComponent(name) }

    static func read(_ name: String) throws -> Tensor { try Tensor(npyFile: fixture(name)) }

    /// An `.npy` file made by hand: magic, version 1.0, `header` padded to 64 bytes, then `data`.
    static func handMade(_ header: String, data: [UInt8] = [], major: UInt8 = 1) -> Data {
        var text = Array(header.utf8)
        let prefix = major == 1 ? 10 : 12
        while (prefix + text.count + 1) % 64 != 0 { text.append(0x20) }
        text.append(0x0A)
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [major, 0]
        let length = text.count
        bytes += major == 1 ? [UInt8(length & 0xFF), UInt8(length >> 8)]
            : [UInt8(length & 0xFF), UInt8((length >> 8) & 0xFF), UInt8((length >> 16) & 0xFF), UInt8(length >> 24)]
        return Data(bytes + text + data)
    }

    // MARK: Reading numpy's files

    @Test func readsEveryDTypeNumpyWrote() throws {
        let grid = try Self.read("float32_2x3.npy")
        #expect(grid.shape == [2, 3] && grid.scalars(as: Float.self) == [-1, -0.5, 0, 0.5, 1, 1.5])
        let doubles = try Self.read("float64.npy").scalars(as: Double.self)
        #expect(doubles == [1.5, -2.25, 1e300, 0] && doubles[3].sign == .minus)
        #expect(try Self.read("float16.npy").scalars(as: Float16.self) == [1, -2.5, 65504, Float16(6e-8)])
        #expect(try Self.read("int8.npy").scalars(as: Int8.self) == [-128, -1, 0, 127])
        #expect(try Self.read("uint8.npy").scalars(as: UInt8.self) == [0, 1, 254, 255])
        #expect(try Self.read("int16.npy").scalars(as: Int16.self) == [-32768, -2, 3, 32767])
        #expect(try Self.read("uint16.npy").scalars(as: UInt16.self) == [0, 2, 65535])
        let int32 = try Self.read("int32.npy")
        #expect(int32.shape == [2, 2] && int32.scalars(as: Int32.self) == [.min, 7, 65536, .max])
        #expect(try Self.read("uint32.npy").scalars(as: UInt32.self) == [0, .max])
        #expect(try Self.read("int64.npy").scalars(as: Int64.self) == [.min, -1, 1 << 40, .max])
        #expect(try Self.read("uint64.npy").scalars(as: UInt64.self) == [0, .max])
        let flags = try Self.read("bool.npy")
        #expect(flags.shape == [2, 3] && flags.scalars(as: Bool.self) == [true, false, true, false, false, true])
    }

    @Test func readsScalarsAndEmptyArrays() throws {
        let scalar = try Self.read("scalar_float32.npy")
        #expect(scalar.shape == [] && scalar.scalars(as: Float.self) == [3.5])
        let empty = try Self.read("empty_float32_0x3.npy")
        #expect(empty.shape == [0, 3] && empty.count == 0 && empty.dtype == .float32)
    }

    @Test func swapsBigEndianData() throws {
        let doubles = try Self.read("big_endian_float64.npy")
        #expect(doubles.dtype == .float64 && doubles.scalars(as: Double.self) == [1.5, -2.25, 1e300, 0])
        #expect(try Self.read("big_endian_int32.npy").scalars(as: Int32.self) == [1, -2, 65536])
        #expect(try Self.read("big_endian_uint16.npy").scalars(as: UInt16.self) == [1, 258, 65535])
    }

    @Test func rearrangesFortranOrder() throws {
        let cube = try Self.read("fortran_float32_2x3x4.npy")
        #expect(cube.shape == [2, 3, 4] && cube.scalars(as: Float.self) == (0..<24).map(Float.init))
        let both = try Self.read("fortran_big_endian_int16_3x2.npy")
        #expect(both.shape == [3, 2] && both.scalars(as: Int16.self) == [1, 2, 3, 4, 5, -6])
    }

    @Test func readsVersion2And3Headers() throws {
        for name in ["version2_int64.npy", "version3_int64.npy"] {
            let t = try Self.read(name)
            #expect(t.shape == [2, 3] && t.scalars(as: Int64.self) == [1, 2, 3, 4, 5, 6], "\(name)")
        }
    }

    @Test func parsesHeadersInAnyKeyOrderAndSpacing() throws {
        let data: [UInt8] = [1, 0, 2, 0, 3, 0]
        let variants = [
            "{'shape':(3,),'descr':'<i2','fortran_order':False}",
            "{ \"fortran_order\" : False , \"shape\" : ( 3 , ) , \"descr\" : \"<i2\" , }",
            "{'descr': '<i2',\n 'fortran_order': False,\t'shape': (3L,)}",
            "{'fortran_order': False, 'descr': 'i2', 'shape': [3]}".replacingOccurrences(of: "[3]", with: "(3,)"),
        ]
        for header in variants {
            let t = try Tensor(npyData: Self.handMade(header, data: data), source: "hand.npy")
            #expect(t.shape == [3] && t.scalars(as: Int16.self) == [1, 2, 3], "\(header)")
        }
        // A bool stored as 2 is still true, and reads back as a proper Bool.
        let flags = try Tensor(npyData: Self.handMade("{'descr': '|b1', 'fortran_order': False, 'shape': (2,)}",
                                                      data: [2, 0]), source: "b.npy")
        #expect(flags.scalars(as: Bool.self) == [true, false])
    }

    @Test func readsMinimalHandWrittenFiles() throws {
        // Trailing bytes after the data are ignored, as numpy ignores them.
        let t = try Tensor(npyData: Self.handMade("{'descr':'|u1','fortran_order':False,'shape':(2,)}", data: [7, 8, 9]),
                           source: "extra.npy")
        #expect(t.scalars(as: UInt8.self) == [7, 8])
        let v2 = try Tensor(npyData: Self.handMade("{'descr':'<u2','fortran_order':True,'shape':()}", data: [1, 1], major: 2),
                            source: "v2.npy")
        #expect(v2.shape == [] && v2.scalars(as: UInt16.self) == [257])
    }

    @Test func decodesStreamsFedInArbitraryChunks() throws {
        // Zip extraction hands the decoder chunks of any size; splitting inside the magic, the length
        // field, the header text or an element must not matter.
        let data = try Data(contentsOf: Self.fixture("fortran_float32_2x3x4.npy"))
        for chunkSize in [1, 3, 7, 64, 100, data.count] {
            var decoder = NPYDecoder(streamLength: data.count)
            var offset = 0
            while offset < data.count {
                let end = min(offset + chunkSize, data.count)
                try data[offset..<end].withUnsafeBytes { try decoder.consume($0) }
                offset = end
            }
            let tensor = try decoder.finish()
            #expect(tensor.shape == [2, 3, 4] && tensor.scalars(as: Float.self) == (0..<24).map(Float.init), "\(chunkSize)")
        }
        var early = NPYDecoder(streamLength: 100)
        #expect(throws: NPYFailure.self) { try [UInt8](repeating: 0x50, count: 3).withUnsafeBytes { try early.consume($0) } }
    }

    // MARK: Writing

    @Test func writesTheBytesNumpyWrites() throws {
        let cases: [(String, Tensor)] = [
            ("float32_2x3.npy", try Tensor(shape: [2, 3], scalars: [Float(-1), -0.5, 0, 0.5, 1, 1.5])),
            ("float64.npy", try Tensor(shape: [4], scalars: [1.5, -2.25, 1e300, -0.0])),
            ("float16.npy", try Tensor(shape: [4], scalars: [Float16(1), -2.5, 65504, Float16(6e-8)])),
            ("int8.npy", try Tensor(shape: [4], scalars: [Int8(-128), -1, 0, 127])),
            ("uint8.npy", try Tensor(shape: [4], scalars: [UInt8(0), 1, 254, 255])),
            ("int16.npy", try Tensor(shape: [4], scalars: [Int16(-32768), -2, 3, 32767])),
            ("uint16.npy", try Tensor(shape: [3], scalars: [UInt16(0), 2, 65535])),
            ("int32.npy", try Tensor(shape: [2, 2], scalars: [Int32.min, 7, 65536, .max])),
            ("uint32.npy", try Tensor(shape: [2], scalars: [UInt32(0), .max])),
            ("int64.npy", try Tensor(shape: [4], scalars: [Int64.min, -1, 1 << 40, .max])),
            ("uint64.npy", try Tensor(shape: [2], scalars: [UInt64(0), .max])),
            ("bool.npy", try Tensor(shape: [2, 3], scalars: [true, false, true, false, false, true])),
            ("scalar_float32.npy", Tensor(scalar: Float(3.5))),
            ("empty_float32_0x3.npy", try Tensor(zeros: .float32, shape: [0, 3])),
        ]
        for (name, tensor) in cases {
            let expected = try Data(contentsOf: Self.fixture(name))
            #expect(try tensor.npyData() == expected, "\(name)")
        }
    }

    @Test func roundTripsEveryStorableDTypeAndShape() throws {
        let storable: [DType] = [.float32, .float64, .float16, .int8, .uint8, .int16, .uint16, .int32, .uint32,
                                 .int64, .uint64, .bool]
        let shapes: [[Int]] = [[], [0], [5], [2, 0, 3], [2, 3], [1, 2, 3, 2]]
        let directory = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        for dtype in storable {
            for shape in shapes {
                let count = shape.reduce(1, *)
                let values = (0..<count).map { Float($0 % 7) - 3 }
                let tensor = try Tensor(shape: shape, scalars: values).converted(to: dtype)
                #expect(try Tensor(npyData: tensor.npyData(), source: "memory") == tensor, "\(dtype) \(shape)")
                // Files are synced to disk on write, which is slow: one shape per dtype is enough there.
                if shape == [2, 3] {
                    let url = directory.appendingPathComponent("\(dtype).npy")
                    try tensor.writeNPY(to: url)
                    #expect(try Tensor(npyFile: url) == tensor, "\(dtype) file")
                }
            }
        }
        // Writing replaces an existing file and leaves no temporary files behind.
        let url = directory.appendingPathComponent("replace.npy")
        try Tensor(scalar: Int32(1)).writeNPY(to: url)
        try Tensor(scalar: Int32(2)).writeNPY(to: url)
        #expect(try Tensor(npyFile: url).scalars(as: Int32.self) == [2])
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix(".") }
        #expect(leftovers.isEmpty)
    }

    @Test func headersArePaddedTo64BytesAndSwitchToVersion2WhenLong() throws {
        let small = try Tensor(zeros: .int8, shape: [3, 1, 4]).npyData()
        #expect(small.prefix(8) == Data([0x93] + Array("NUMPY".utf8) + [1, 0]))
        let headerLength = Int(small[8]) | Int(small[9]) << 8
        #expect((10 + headerLength) % 64 == 0 && small[10 + headerLength - 1] == 0x0A)
        // A rank-22000 shape needs a header longer than 65535 bytes: numpy then writes version 2.0.
        let long = try Tensor(zeros: .uint8, shape: [Int](repeating: 1, count: 22_000))
        let data = try long.npyData()
        #expect(data[6] == 2 && data[7] == 0)
        let length = Int(data[8]) | Int(data[9]) << 8 | Int(data[10]) << 16 | Int(data[11]) << 24
        #expect(length > 65535 && (12 + length) % 64 == 0)
        #expect(try Tensor(npyData: data, source: "long.npy") == long)
    }

    @Test func refusesDTypesWithoutAStandardDescr() throws {
        for dtype: DType in [.bfloat16, .float8e4m3fn, .float8e5m2, .int4, .uint4] {
            let tensor = try Tensor(zeros: dtype, shape: [2])
            #expect(throws: TensorError.self) { try tensor.npyData() }
            let url = FileManager.default.temporaryDirectory.appendingPathComponent("never-\(dtype).npy")
            #expect(throws: TensorError.self) { try tensor.writeNPY(to: url) }
            #expect(!FileManager.default.fileExists(atPath: url.path))
        }
    }

    // MARK: Malformed input

    /// The reason of an `invalidFile` error thrown by `body` for `path`, or nil when it threw something else.
    static func invalidFileReason(path: String, _ body: () throws -> Tensor) -> String? {
        do {
            _ = try body()
        } catch TensorError.invalidFile(let errorPath, let reason) where errorPath == path {
            return reason
        } catch {
            return nil
        }
        return nil
    }

    @Test func malformedFilesAreTypedErrorsNamingTheFile() throws {
        let good = try Data(contentsOf: Self.fixture("float32_2x3.npy"))
        let cases: [(String, Data, String)] = [
            ("empty", Data(), "too short"),
            ("bad magic", Data("\u{93}NUMPX".utf8) + good.dropFirst(6), "magic"),
            ("not npy", Data("PK\u{03}\u{04}hello".utf8), "magic"),
            ("bad version", good.prefix(6) + Data([9, 0]) + good.dropFirst(8), "version 9.0"),
            ("truncated header", good.prefix(40), "header is truncated"),
            ("truncated data", good.dropLast(5), "data is 19 bytes"),
            ("unsupported unicode", try Data(contentsOf: Self.fixture("unicode.npy")), "'<U2'"),
            ("unsupported complex", try Data(contentsOf: Self.fixture("complex64.npy")), "'<c8'"),
            ("object", Self.handMade("{'descr': '|O', 'fortran_order': False, 'shape': (1,)}", data: [0]), "'|O'"),
            ("ml_dtypes void", Self.handMade("{'descr': '<V2', 'fortran_order': False, 'shape': (1,)}", data: [0, 0]), "ml_dtypes"),
            ("structured", Self.handMade("{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (1,)}"), "structured"),
            ("not a dict", Self.handMade("('<f4', False, (1,))"), "not a dict"),
            ("missing key", Self.handMade("{'descr': '<f4', 'shape': (1,)}"), "lacks"),
            ("extra key", Self.handMade("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}"), "'x'"),
            ("bad fortran", Self.handMade("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}"), "True or False"),
            ("shape not tuple", Self.handMade("{'descr': '<f4', 'fortran_order': False, 'shape': (4)}"), "tuple"),
            ("negative dim", Self.handMade("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}"), "negative"),
            ("float dim", Self.handMade("{'descr': '<f4', 'fortran_order': False, 'shape': (1.5,)}"), "decimal"),
            ("huge dim", Self.handMade("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}"), "too large"),
            ("count overflow", Self.handMade("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}"),
             "more elements than an Int"),
            ("byte overflow", Self.handMade("{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693952,)}"),
             "more bytes than an Int"),
            ("huge but fits", Self.handMade("{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000)}"),
             "needs 40000000000"),
            ("unterminated", Self.handMade("{'descr': '<f4"), "unterminated string"),
            ("garbage after", Self.handMade("{'descr': '<f4', 'fortran_order': False, 'shape': ()} x"), "after the literal"),
            ("deep nesting", Self.handMade(String(repeating: "(", count: 500)), "nested"),
        ]
        for (label, data, fragment) in cases {
            let reason = Self.invalidFileReason(path: "case.npy") { try Tensor(npyData: data, source: "case.npy") }
            #expect(reason?.contains(fragment) == true, "\(label): \(reason ?? "no invalidFile error")")
        }
    }

    @Test func unreadableFilesNameThePath() throws {
        let missing = Self.directory.appendingPathComponent("does-not-exist.npy")
        #expect(Self.invalidFileReason(path: missing.path) { try Tensor(npyFile: missing) } != nil)
        let unsupported = Self.fixture("unicode.npy")
        let reason = Self.invalidFileReason(path: unsupported.path) { try Tensor(npyFile: unsupported) }
        #expect(reason?.contains("unsupported dtype descr '<U2'") == true)
    }
}
