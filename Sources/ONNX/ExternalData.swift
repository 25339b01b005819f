import Foundation
import Tensors

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How `Model.write(to:externalData:)` moves large tensors out of the protobuf into one side file.
///
/// Protobuf messages cannot exceed 2 GiB, so models larger than that must keep their weights outside
/// the `.onnx` file. ONNX records each such tensor as `{location, offset, length}` relative to the
/// model's folder.
public struct ExternalDataOptions: Sendable, Equatable {
    /// Name of the side file, in the model's folder; `nil` means the model's file name plus `.data`.
    public var fileName: String?
    /// Initializers of at least this many bytes go to the side file; smaller ones stay inline.
    public var sizeThreshold: Int
    /// Each tensor starts at a multiple of this many bytes (ONNX recommends the 4096-byte page size,
    /// so a reader can map tensors straight from the file).
    public var alignment: Int

    public init(fileName: String? = nil, sizeThreshold: Int = 1024, alignment: Int = 4096) {
        self.fileName = fileName
        self.sizeThreshold = sizeThreshold
        self.alignment = alignment
    }
}

/// Reads external tensor data, refusing any location that could reach outside the model's folder.
///
/// The location is resolved component by component with `openat(O_NOFOLLOW)` from the model's folder,
/// so a symbolic link anywhere on the path is refused (not just checked once and raced), and `..` may
/// only climb back within the location itself.
struct ExternalDataReader {
    let file: String
    let baseDirectory: URL?

    func read(
        _ entries: [Onnx_StringStringEntryProto], tensor name: String, dtype: DType, shape: [Int], byteCount: Int
    ) throws -> Tensor {
        func failure(_ reason: String) -> ONNXError { .externalData(file: file, tensor: name, reason: reason) }

        var location: String?
        var offsetText: String?
        var lengthText: String?
        for entry in entries {
            switch entry.key {
            case "location": location = entry.value
            case "offset": offsetText = entry.value
            case "length": lengthText = entry.value
            default: break  // "checksum" and unknown keys carry nothing we need.
            }
        }
        guard let location, !location.isEmpty else { throw failure("no location is given") }
        guard let baseDirectory else {
            throw failure("the model was read from memory without a folder, so '\(location)' cannot be resolved")
        }
        let offset = try offsetText.map { try Self.parseByteCount($0, key: "offset", failure: failure) } ?? 0
        let declaredLength = try lengthText.map { try Self.parseByteCount($0, key: "length", failure: failure) }

        let descriptor = try Self.openContained(location, in: baseDirectory, failure: failure)
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw failure("cannot inspect '\(location)': \(errnoText())") }
        guard (status.st_mode & S_IFMT) == S_IFREG else { throw failure("'\(location)' is not a regular file") }
        let fileSize = Int(status.st_size)

        guard offset <= fileSize else {
            throw failure("offset \(offset) is past the end of '\(location)' (\(fileSize) bytes)")
        }
        let length = declaredLength ?? (fileSize - offset)
        let (end, overflow) = offset.addingReportingOverflow(length)
        guard !overflow else { throw failure("offset \(offset) plus length \(length) overflows") }
        guard end <= fileSize else {
            throw failure("bytes \(offset)..<\(end) run past the end of '\(location)' (\(fileSize) bytes)")
        }
        guard length == byteCount else {
            throw ONNXError.invalidTensor(
                file: file, tensor: name,
                reason: "external data holds \(length) bytes but dims \(shape) of \(dtype) need \(byteCount)")
        }

        // The size is now known to be backed by the file, so allocating it is safe.
        var tensor = try Tensor(zeros: dtype, shape: shape)
        let readError: String? = tensor.withUnsafeMutableBytes { buffer in
            var done = 0
            while done < length {
                let got = pread(descriptor, buffer.baseAddress! + done, length - done, off_t(offset + done))
                if got < 0 {
                    if errno == EINTR { continue }
                    return errnoText()
                }
                if got == 0 { return "the file ended early" }
                done += got
            }
            return nil
        }
        if let readError { throw failure("reading '\(location)': \(readError)") }
        return tensor
    }

    /// A non-negative decimal byte count, as ONNX writes `offset` and `length`.
    private static func parseByteCount(
        _ text: String, key: String, failure: (String) -> ONNXError
    ) throws -> Int {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            throw failure("\(key) '\(text)' is not a non-negative integer")
        }
        guard let value = Int(text) else { throw failure("\(key) \(text) is too large") }
        return value
    }

    /// Opens `location` below `base` without following symbolic links or leaving `base`.
    static func openContained(
        _ location: String, in base: URL, failure: (String) -> ONNXError
    ) throws -> Int32 {
        guard !location.hasPrefix("/") else { throw failure("location '\(location)' is an absolute path") }
        guard !location.utf8.contains(0) else { throw failure("location contains a NUL byte") }
        var components: [String] = []
        for part in location.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".": continue
            case "..":
                guard !components.isEmpty else {
                    throw failure("location '\(location)' leaves the model's folder")
                }
                components.removeLast()
            default: components.append(String(part))
            }
        }
        guard !components.isEmpty else { throw failure("location '\(location)' names a folder, not a file") }

        var directory = open(base.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directory >= 0 else { throw failure("cannot open the model's folder: \(errnoText())") }
        for (index, component) in components.enumerated() {
            let isLast = index == components.count - 1
            // O_NONBLOCK keeps a FIFO planted in the folder from hanging the open; it is refused below.
            let flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | (isLast ? O_NONBLOCK : O_DIRECTORY)
            let next = openat(directory, component, flags)
            let openErrno = errno
            if next < 0 {
                var status = stat()
                let isLink = fstatat(directory, component, &status, AT_SYMLINK_NOFOLLOW) == 0
                    && (status.st_mode & S_IFMT) == S_IFLNK
                close(directory)
                let prefix = components[...index].joined(separator: "/")
                if isLink { throw failure("'\(prefix)' in location '\(location)' is a symbolic link") }
                if openErrno == ENOENT { throw failure("'\(prefix)' does not exist (location '\(location)')") }
                if openErrno == ENOTDIR { throw failure("'\(prefix)' in location '\(location)' is not a folder") }
                throw failure("cannot open '\(prefix)': \(String(cString: strerror(openErrno)))")
            }
            close(directory)
            directory = next
        }
        return directory
    }
}

func errnoText() -> String { String(cString: strerror(errno)) }

/// Collects tensors bound for the side file while a model is encoded, then writes them out.
///
/// Offsets are assigned during encoding; bytes are written afterwards straight from tensor storage,
/// so a large model is never copied into one big buffer.
final class ExternalDataSink {
    let fileName: String
    let options: ExternalDataOptions
    private(set) var pending: [(offset: Int, tensor: Tensor)] = []
    private(set) var size = 0

    init(fileName: String, options: ExternalDataOptions) {
        self.fileName = fileName
        self.options = options
    }

    /// Reserves space for `tensor` and returns its `{location, offset, length}` entries.
    func place(_ tensor: Tensor) -> [Onnx_StringStringEntryProto] {
        let alignment = max(options.alignment, 1)
        let remainder = size % alignment
        let offset = remainder == 0 ? size : size + (alignment - remainder)
        pending.append((offset, tensor))
        size = offset + tensor.byteCount
        func entry(_ key: String, _ value: String) -> Onnx_StringStringEntryProto {
            var item = Onnx_StringStringEntryProto()
            item.key = key
            item.value = value
            return item
        }
        return [entry("location", fileName), entry("offset", String(offset)), entry("length", String(tensor.byteCount))]
    }

    /// Writes every placed tensor at its offset into the open file `descriptor`.
    func writeAll(to descriptor: Int32) throws {
        for (offset, tensor) in pending {
            try tensor.withUnsafeBytes { bytes in
                try writeFully(descriptor, bytes, at: offset)
            }
        }
        // Padding after the last tensor is not needed; size the file to the last byte written.
        if ftruncate(descriptor, off_t(size)) != 0 { throw WriteFailure(reason: errnoText()) }
    }
}

struct WriteFailure: Error { let reason: String }

/// `pwrite` until every byte is written, retrying on interrupts.
func writeFully(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
    var done = 0
    while done < bytes.count {
        let wrote = pwrite(descriptor, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
        if wrote < 0 {
            if errno == EINTR { continue }
            throw WriteFailure(reason: errnoText())
        }
        done += wrote
    }
}
