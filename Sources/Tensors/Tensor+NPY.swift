import Foundation

// The numpy `.npy` format (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
//   "\x93NUMPY", major, minor, header length (UInt16 LE for 1.0, UInt32 LE for 2.0/3.0),
//   a Python dict literal {'descr': …, 'fortran_order': …, 'shape': (…)} padded with spaces and a
//   newline, then the raw elements.

/// A parsed `.npy` header.
struct NPYHeader: Equatable {
    var dtype: DType
    /// True when the stored elements are big-endian and wider than a byte.
    var needsByteSwap: Bool
    var fortranOrder: Bool
    var shape: [Int]
    /// Bytes before the data: magic, version, length field and header text.
    var dataOffset: Int

    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // "\x93NUMPY"
    /// The longest header text accepted: numpy's own loader stops at 10 000 bytes for untrusted files;
    /// legitimate headers are far shorter than this, hostile ones cannot make us buffer gigabytes.
    static let maximumHeaderLength = 1 << 20

    /// How many leading bytes are needed before the header can be parsed, given what has arrived so far.
    /// Throws once the bytes seen already rule out an `.npy` stream.
    static func requiredPrefixLength(_ prefix: [UInt8]) throws -> Int {
        let fixed = magic.count + 2
        for (index, byte) in prefix.prefix(magic.count).enumerated() where byte != magic[index] {
            throw NPYFailure("not an .npy file (bad magic bytes)")
        }
        guard prefix.count >= fixed else { return fixed + 2 }
        let major = prefix[6]
        let lengthFieldSize: Int
        switch major {
        case 1: lengthFieldSize = 2
        case 2, 3: lengthFieldSize = 4
        default: throw NPYFailure("unsupported .npy format version \(major).\(prefix[7])")
        }
        guard prefix.count >= fixed + lengthFieldSize else { return fixed + lengthFieldSize }
        var headerLength = 0
        for index in (0..<lengthFieldSize).reversed() {
            headerLength = headerLength << 8 | Int(prefix[fixed + index])
        }
        guard headerLength <= maximumHeaderLength else {
            throw NPYFailure("header of \(headerLength) bytes is longer than the \(maximumHeaderLength) accepted")
        }
        return fixed + lengthFieldSize + headerLength
    }

    /// Parses a complete prefix (exactly `requiredPrefixLength` bytes).
    static func parse(_ prefix: [UInt8]) throws -> NPYHeader {
        let textStart = prefix[6] == 1 ? 10 : 12
        let text = Array(prefix[textStart...])
        let literal: PythonLiteral
        do {
            literal = try PythonLiteral.parse(text)
        } catch let error as PythonLiteral.ParseError {
            throw NPYFailure("malformed header (\(error)): \(String(validatingUTF8Bytes: text).debugDescription)")
        }
        guard case .dict(let pairs) = literal else {
            throw NPYFailure("header is not a dict: \(literal.summary)")
        }
        var descr: PythonLiteral?
        var fortran: PythonLiteral?
        var shapeLiteral: PythonLiteral?
        for (key, value) in pairs {
            switch key {
            case .string("descr"): descr = value
            case .string("fortran_order"): fortran = value
            case .string("shape"): shapeLiteral = value
            default: throw NPYFailure("unexpected header key \(key.summary)")
            }
        }
        guard let descr, let fortran, let shapeLiteral else {
            throw NPYFailure("header lacks one of 'descr', 'fortran_order', 'shape': \(literal.summary)")
        }
        guard case .bool(let fortranOrder) = fortran else {
            throw NPYFailure("'fortran_order' must be True or False, got \(fortran.summary)")
        }
        guard case .tuple(let dimensions) = shapeLiteral else {
            throw NPYFailure("'shape' must be a tuple, got \(shapeLiteral.summary)")
        }
        var shape: [Int] = []
        for dimension in dimensions {
            guard let value = dimension.intValue, value >= 0 else {
                throw NPYFailure("shape \(shapeLiteral.summary) has a dimension that is negative, too large or not an integer")
            }
            shape.append(value)
        }
        let (dtype, swap) = try decodeDescr(descr)
        return NPYHeader(dtype: dtype, needsByteSwap: swap, fortranOrder: fortranOrder, shape: shape,
                         dataOffset: prefix.count)
    }

    /// The dtype and byte order of a numpy type string such as `'<f4'`, `'>i8'` or `'|b1'`.
    static func decodeDescr(_ descr: PythonLiteral) throws -> (DType, needsByteSwap: Bool) {
        guard case .string(let text) = descr else {
            throw NPYFailure("unsupported dtype descr \(descr.summary) (structured arrays are not tensors)")
        }
        var code = Substring(text)
        var bigEndian = false
        if let first = code.first, "<>|=".contains(first) {
            bigEndian = first == ">"
            code = code.dropFirst()
        }
        let dtype: DType
        switch code {
        case "b1", "?": dtype = .bool
        case "i1": dtype = .int8
        case "u1": dtype = .uint8
        case "i2": dtype = .int16
        case "u2": dtype = .uint16
        case "i4": dtype = .int32
        case "u4": dtype = .uint32
        case "i8": dtype = .int64
        case "u8": dtype = .uint64
        case "f2": dtype = .float16
        case "f4": dtype = .float32
        case "f8": dtype = .float64
        default:
            var reason = "unsupported dtype descr '\(text)'; supported are bool, int8…int64, uint8…uint64, float16/32/64"
            if code.hasPrefix("V") {
                reason += " (a raw void type: bfloat16, float8 and int4 arrays saved through ml_dtypes look like this "
                    + "and cannot be told apart; save them as float32 instead)"
            }
            throw NPYFailure(reason)
        }
        return (dtype, bigEndian && dtype.bitWidth > 8)
    }

    /// The numpy type string this writer uses for `dtype` (little-endian), or nil when `.npy` has none.
    static func descr(for dtype: DType) -> String? {
        switch dtype {
        case .bool: return "|b1"
        case .int8: return "|i1"
        case .uint8: return "|u1"
        case .int16: return "<i2"
        case .uint16: return "<u2"
        case .int32: return "<i4"
        case .uint32: return "<u4"
        case .int64: return "<i8"
        case .uint64: return "<u8"
        case .float16: return "<f2"
        case .float32: return "<f4"
        case .float64: return "<f8"
        case .bfloat16, .float8e4m3fn, .float8e5m2, .int4, .uint4: return nil
        }
    }

    /// The bytes numpy's `np.save` writes before the data: version 1.0 unless the header needs more than
    /// 65535 bytes (then 2.0), keys sorted, room left to grow the first axis, total padded to 64 bytes.
    static func encode(dtype: DType, shape: [Int]) throws -> [UInt8] {
        guard let descr = descr(for: dtype) else {
            throw TensorError.unsupported(
                ".npy has no standard type for \(dtype) (numpy needs the ml_dtypes package for it); "
                    + "convert the tensor first, e.g. with converted(to: .float32)")
        }
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var text = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
        // numpy leaves spaces for the first axis to grow to 21 digits, so headers can be rewritten in place.
        if let first = shape.first { text += String(repeating: " ", count: max(0, 21 - String(first).utf8.count)) }
        let alignment = 64
        var bytes: [UInt8] = []
        for (major, lengthFieldSize) in [(UInt8(1), 2), (UInt8(2), 4)] {
            let textLength = text.utf8.count + 1  // + the closing newline
            let padding = alignment - (magic.count + 2 + lengthFieldSize + textLength) % alignment
            let headerLength = textLength + padding
            if lengthFieldSize == 2 && headerLength > Int(UInt16.max) { continue }
            bytes = magic + [major, 0]
            for index in 0..<lengthFieldSize { bytes.append(UInt8(truncatingIfNeeded: headerLength >> (8 * index))) }
            bytes += Array(text.utf8)
            bytes += [UInt8](repeating: 0x20, count: padding)
            bytes.append(0x0A)
            break
        }
        return bytes
    }
}

/// A decoding problem, before the file (and array) it concerns is attached.
struct NPYFailure: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}

/// Decodes one `.npy` stream fed in chunks, copying the data straight into the tensor's storage, so
/// an array inside a zip archive is never held twice.
struct NPYDecoder {
    /// Total bytes the stream will hold, known up front (file or zip entry size).
    let streamLength: Int
    private var prefix: [UInt8] = []
    private(set) var header: NPYHeader?
    private var tensor: Tensor?
    private var dataByteCount = 0
    /// Bytes fed so far, and data bytes copied into the tensor so far.
    private var received = 0
    private var written = 0

    init(streamLength: Int) {
        self.streamLength = streamLength
    }

    /// Feeds the next chunk of the stream.
    mutating func consume(_ chunk: UnsafeRawBufferPointer) throws {
        var remaining = chunk[...]
        received += chunk.count
        guard received <= streamLength else {
            throw NPYFailure("stream holds more bytes than its declared \(streamLength)")
        }
        while header == nil {
            let required = try NPYHeader.requiredPrefixLength(prefix)
            if prefix.count < required {
                let take = min(required - prefix.count, remaining.count)
                prefix += remaining.prefix(take)
                remaining = remaining.dropFirst(take)
                if prefix.count < required {
                    // Re-check the magic early; otherwise wait for more bytes.
                    _ = try NPYHeader.requiredPrefixLength(prefix)
                    return
                }
                continue
            }
            try start(with: NPYHeader.parse(prefix))
        }
        guard tensor != nil, !remaining.isEmpty else { return }
        let take = min(remaining.count, dataByteCount - written)
        if take > 0 {
            let source = UnsafeRawBufferPointer(rebasing: remaining.prefix(take))
            let offset = written
            // Mutating through the optional keeps the storage uniquely referenced (no copy).
            tensor!.withUnsafeMutableBytes { storage in
                storage.baseAddress!.advanced(by: offset).copyMemory(from: source.baseAddress!, byteCount: take)
            }
            written += take
        }
        // Bytes past the array are ignored, as numpy ignores them.
    }

    /// Validates the sizes and allocates the tensor once the header is known.
    private mutating func start(with header: NPYHeader) throws {
        let count: Int
        do {
            count = try Shape.elementCount(header.shape)
        } catch {
            throw NPYFailure("shape \(header.shape) has more elements than an Int can count")
        }
        guard let bytes = header.dtype.storageByteCount(elements: count) else {
            throw NPYFailure("shape \(header.shape) of \(header.dtype) needs more bytes than an Int can count")
        }
        let available = streamLength - header.dataOffset
        guard bytes <= available else {
            throw NPYFailure("data is \(available) bytes, but shape \(header.shape) of \(header.dtype) needs \(bytes)")
        }
        self.header = header
        dataByteCount = bytes
        tensor = try Tensor(zeros: header.dtype, shape: header.shape)
    }

    /// The decoded tensor, in row-major order with native byte order.
    mutating func finish() throws -> Tensor {
        guard let header else {
            if prefix.count < NPYHeader.magic.count { throw NPYFailure("not an .npy file (too short for the magic bytes)") }
            throw NPYFailure("header is truncated")
        }
        guard var tensor, written == dataByteCount else {
            throw NPYFailure("data ends after \(written) of \(dataByteCount) bytes")
        }
        self.tensor = nil  // keep the result uniquely referenced, so the fix-ups below do not copy it
        if header.needsByteSwap { tensor.swapElementBytes() }
        if header.dtype == .bool {
            // numpy treats any nonzero byte as True; Swift's Bool must be exactly 0 or 1.
            tensor.withUnsafeMutableBytes { bytes in
                for index in bytes.indices where bytes[index] > 1 { bytes[index] = 1 }
            }
        }
        if header.fortranOrder && tensor.rank > 1 { tensor = try tensor.columnMajorToRowMajor() }
        return tensor
    }
}

extension Tensor {
    /// Reverses the bytes of every element in place (big-endian ↔ little-endian).
    mutating func swapElementBytes() {
        let width = dtype.bitWidth / 8
        let elementCount = count
        withUnsafeMutableBytes { raw in
            switch width {
            case 2: Self.swapAll(raw.bindMemory(to: UInt16.self), count: elementCount)
            case 4: Self.swapAll(raw.bindMemory(to: UInt32.self), count: elementCount)
            case 8: Self.swapAll(raw.bindMemory(to: UInt64.self), count: elementCount)
            default: break
            }
        }
    }

    private static func swapAll<Word: FixedWidthInteger>(_ words: UnsafeMutableBufferPointer<Word>, count: Int) {
        for index in 0..<count { words[index] = words[index].byteSwapped }
    }

    /// This tensor's storage read as column-major (Fortran) order, rearranged into row-major order.
    func columnMajorToRowMajor() throws -> Tensor {
        var output = try Tensor(zeros: dtype, shape: shape)
        // In column-major order axis k steps by the product of the axes before it.
        var sourceStrides = [Int](repeating: 1, count: rank)
        for axis in 1..<max(rank, 1) { sourceStrides[axis] = sourceStrides[axis - 1] * shape[axis - 1] }
        let shape = self.shape
        withUnsafeBytes { source in
            output.withUnsafeMutableBytes { destination in
                switch dtype.bitWidth {
                case 8: Self.gather(UInt8.self, source, destination, shape: shape, sourceStrides: sourceStrides)
                case 16: Self.gather(UInt16.self, source, destination, shape: shape, sourceStrides: sourceStrides)
                case 32: Self.gather(UInt32.self, source, destination, shape: shape, sourceStrides: sourceStrides)
                default: Self.gather(UInt64.self, source, destination, shape: shape, sourceStrides: sourceStrides)
                }
            }
        }
        return output
    }

    /// Writes `destination` in row-major order of `shape`, reading `source` with `sourceStrides`.
    private static func gather<Word>(
        _: Word.Type, _ source: UnsafeRawBufferPointer, _ destination: UnsafeMutableRawBufferPointer,
        shape: [Int], sourceStrides: [Int]
    ) {
        let rank = shape.count
        let inner = shape[rank - 1]
        let outerCount = shape.dropLast().reduce(1, *)
        guard inner > 0, outerCount > 0 else { return }
        let input = source.baseAddress!.assumingMemoryBound(to: Word.self)
        let output = destination.baseAddress!.assumingMemoryBound(to: Word.self)
        let innerStride = sourceStrides[rank - 1]
        var index = [Int](repeating: 0, count: rank - 1)
        var sourceOffset = 0
        for row in 0..<outerCount {
            let rowStart = row * inner
            for column in 0..<inner { output[rowStart + column] = input[sourceOffset + column * innerStride] }
            var axis = rank - 2
            while axis >= 0 {
                index[axis] += 1
                sourceOffset += sourceStrides[axis]
                if index[axis] < shape[axis] { break }
                sourceOffset -= sourceStrides[axis] * shape[axis]
                index[axis] = 0
                axis -= 1
            }
        }
    }
}

// MARK: - Public API

extension Tensor {
    /// Decodes an `.npy` file held in memory.
    ///
    /// Reads format versions 1.0, 2.0 and 3.0; bool, int8…int64, uint8…uint64 and float16/32/64 in either
    /// byte order; Fortran-ordered arrays (rearranged into row-major order); 0-d and empty arrays.
    /// Bytes after the array data are ignored, as numpy ignores them.
    ///
    /// - Parameters:
    ///   - npyData: the whole file.
    ///   - source: names the data in error messages (usually its path).
    /// - Throws: `TensorError.invalidFile(path: source, …)` for malformed or truncated data, unsupported
    ///   dtypes (strings, objects, complex, structured, raw void) and shapes whose size overflows or exceeds
    ///   the data.
    public init(npyData: Data, source: String) throws {
        do {
            var decoder = NPYDecoder(streamLength: npyData.count)
            try npyData.withUnsafeBytes { try decoder.consume($0) }
            self = try decoder.finish()
        } catch let failure as NPYFailure {
            throw TensorError.invalidFile(path: source, reason: failure.reason)
        }
    }

    /// Reads an `.npy` file (see `init(npyData:source:)`); the file is memory-mapped, not copied.
    ///
    /// - Throws: `TensorError.invalidFile` naming the file when it cannot be read or is not valid `.npy`.
    public init(npyFile url: URL) throws {
        let data: Data
        do {
            data = try Data(contentsOf: url, options: .alwaysMapped)
        } catch {
            throw TensorError.invalidFile(path: url.path, reason: "cannot read: \(error.localizedDescription)")
        }
        try self.init(npyData: data, source: url.path)
    }

    /// The tensor as an `.npy` file: the bytes numpy's `np.save` writes for the same array (version 1.0,
    /// or 2.0 when the header exceeds 65535 bytes; little-endian; C order; header padded to 64 bytes).
    ///
    /// - Throws: `TensorError.unsupported` for bfloat16, float8 and 4-bit tensors, which `.npy` has no
    ///   standard type for.
    public func npyData() throws -> Data {
        var data = Data(try NPYHeader.encode(dtype: dtype, shape: shape))
        withUnsafeBytes { data.append(contentsOf: $0) }
        return data
    }

    /// Writes the tensor as an `.npy` file (see `npyData()`). The file is replaced atomically: data goes
    /// to a temporary file in the same directory, which is then renamed over `url`.
    ///
    /// - Throws: `TensorError.unsupported` for dtypes `.npy` cannot hold; `TensorError.invalidFile` naming
    ///   the file when it cannot be written.
    public func writeNPY(to url: URL) throws {
        let header = try NPYHeader.encode(dtype: dtype, shape: shape)
        try AtomicFile.write(to: url) { handle in
            try header.withUnsafeBytes { try handle.write($0) }
            try withUnsafeBytes { try handle.write($0) }
        }
    }
}
