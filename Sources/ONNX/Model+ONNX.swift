import Foundation
import GraphIR
import SwiftProtobuf
import Tensors

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Model {
    /// Reads an ONNX model file, resolving external tensor data relative to the file's folder.
    ///
    /// - Throws: `ONNXError` naming the file (and the tensor, node or function at fault) when the file
    ///   cannot be read, is not ONNX, is truncated, or holds inconsistent or unsupported data.
    public init(contentsOf url: URL) throws {
        let data = try readFile(url)
        try self.init(serializedData: data, baseDirectory: url.deletingLastPathComponent(), source: url.path)
    }

    /// Decodes a serialized `ModelProto`.
    ///
    /// - Parameters:
    ///   - serializedData: the protobuf bytes.
    ///   - baseDirectory: the folder external data locations are relative to; `nil` rejects external data.
    ///   - source: how messages name the model (usually its path).
    public init(serializedData: Data, baseDirectory: URL?, source: String) throws {
        let proto: Onnx_ModelProto
        do {
            proto = try Onnx_ModelProto(serializedBytes: serializedData)
        } catch {
            throw ONNXError.malformedFile(file: source, reason: protobufReason(error))
        }
        self = try ModelDecoder(file: source, baseDirectory: baseDirectory).model(proto)
    }

    /// The model as `ModelProto` bytes, every tensor inline in `raw_data`.
    ///
    /// - Throws: `ONNXError.modelTooLarge` over protobuf's 2 GiB limit (use `write(to:externalData:)`).
    public func serializedData() throws -> Data {
        try encodeProto(ModelEncoder(externalData: nil).model(self), file: "<in-memory model>")
    }

    /// Writes the model to `url` atomically: everything goes to temporary files in the same folder, which
    /// are renamed into place only once complete, so an error never leaves a half-written model.
    ///
    /// - Parameters:
    ///   - url: the `.onnx` file to write.
    ///   - externalData: when given, initializers of at least `sizeThreshold` bytes are written to one side
    ///     file next to the model (needed for models over 2 GiB); that file is replaced as well.
    public func write(to url: URL, externalData: ExternalDataOptions? = nil) throws {
        let folder = url.deletingLastPathComponent()
        var sink: ExternalDataSink?
        if let externalData {
            let sideName = externalData.fileName ?? url.lastPathComponent + ".data"
            guard !sideName.isEmpty, !sideName.contains("/"), sideName != ".", sideName != "..",
                  sideName != url.lastPathComponent
            else {
                throw ONNXError.fileAccess(
                    file: url.path,
                    reason: "external data file name '\(sideName)' must be a plain file name other than the model's")
            }
            sink = ExternalDataSink(fileName: sideName, options: externalData)
        }
        let data = try encodeProto(ModelEncoder(externalData: sink).model(self), file: url.path)

        var sideFile: AtomicFile?
        if let sink {
            let target = folder.appendingPathComponent(sink.fileName)
            let file = try AtomicFile(target)
            sideFile = file
            do {
                try sink.writeAll(to: file.descriptor)
            } catch {
                file.discard()
                throw ONNXError.fileAccess(file: target.path, reason: "cannot write external data: \(writeReason(error))")
            }
        }
        let modelFile: AtomicFile
        do {
            modelFile = try AtomicFile(url)
            try data.withUnsafeBytes { try writeFully(modelFile.descriptor, $0, at: 0) }
        } catch let failure as WriteFailure {
            sideFile?.discard()
            throw ONNXError.fileAccess(file: url.path, reason: "cannot write: \(failure.reason)")
        } catch {
            sideFile?.discard()
            throw error
        }
        do {
            try sideFile?.commit()
        } catch {
            modelFile.discard()
            throw error
        }
        try modelFile.commit()
    }
}

/// Reads and writes single `TensorProto` files (`.pb`), the format of the ONNX node tests' inputs and
/// expected outputs.
public enum TensorProtoFile {
    /// Reads one tensor and its name (`""` when the file names none).
    ///
    /// - Throws: `ONNXError` naming the file for malformed bytes, unsupported element types (e.g. string)
    ///   or data that does not match the dims.
    public static func read(_ url: URL) throws -> (name: String, tensor: Tensor) {
        let data = try readFile(url)
        let proto: Onnx_TensorProto
        do {
            proto = try Onnx_TensorProto(serializedBytes: data)
        } catch {
            throw ONNXError.malformedFile(file: url.path, reason: protobufReason(error))
        }
        let decoder = TensorDecoder(file: url.path, baseDirectory: url.deletingLastPathComponent())
        let tensor = try decoder.tensor(proto, fallbackName: url.lastPathComponent)
        return (proto.name, tensor)
    }

    /// Writes `tensor` as one `TensorProto` named `name`, atomically.
    public static func write(_ tensor: Tensor, name: String, to url: URL) throws {
        let data = try encodeProto(ModelEncoder.tensor(tensor, name: name), file: url.path)
        let file = try AtomicFile(url)
        do {
            try data.withUnsafeBytes { try writeFully(file.descriptor, $0, at: 0) }
        } catch {
            file.discard()
            throw ONNXError.fileAccess(file: url.path, reason: "cannot write: \(writeReason(error))")
        }
        try file.commit()
    }
}

// MARK: - Helpers

private func readFile(_ url: URL) throws -> Data {
    do {
        return try Data(contentsOf: url)
    } catch {
        let reason: String
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) {
            reason = "no such file"
        } else if isDirectory.boolValue {
            reason = "is a folder, not a file"
        } else {
            reason = "cannot be read (\(error.localizedDescription))"
        }
        throw ONNXError.fileAccess(file: url.path, reason: reason)
    }
}

private func encodeProto<M: SwiftProtobuf.Message>(_ message: M, file: String) throws -> Data {
    do {
        return try message.serializedBytes()
    } catch BinaryEncodingError.missingRequiredFields {
        // ONNX's proto3 schema has no required fields: swift-protobuf reports the 2 GiB limit this way.
        throw ONNXError.modelTooLarge(file: file)
    } catch {
        throw ONNXError.fileAccess(file: file, reason: "cannot encode: \(error)")
    }
}

private func writeReason(_ error: Error) -> String {
    (error as? WriteFailure)?.reason ?? "\(error)"
}

/// A short reason for a swift-protobuf decoding error.
private func protobufReason(_ error: Error) -> String {
    guard let decoding = error as? BinaryDecodingError else { return "\(error)" }
    switch decoding {
    case .truncated: return "the data ends in the middle of a field; the file may be truncated"
    case .malformedProtobuf: return "the bytes are not a valid protobuf message"
    case .invalidUTF8: return "a text field is not valid UTF-8"
    case .messageDepthLimit: return "messages are nested too deeply"
    default: return "protobuf decoding failed: \(decoding)"
    }
}

/// A file written under a temporary name in its destination folder, then renamed over the destination.
private final class AtomicFile {
    let destination: URL
    let temporaryPath: String
    let descriptor: Int32
    private var finished = false

    init(_ destination: URL) throws {
        self.destination = destination
        let folder = destination.deletingLastPathComponent()
        temporaryPath = folder.appendingPathComponent(".\(destination.lastPathComponent).\(UUID().uuidString).tmp").path
        descriptor = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw ONNXError.fileAccess(file: destination.path, reason: "cannot create a file in its folder: \(errnoText())")
        }
    }

    /// Flushes the bytes to disk and renames the temporary file over the destination.
    func commit() throws {
        defer { finished = true }
        let synced = fsync(descriptor) == 0
        let syncError = errnoText()
        close(descriptor)
        guard synced else {
            unlink(temporaryPath)
            throw ONNXError.fileAccess(file: destination.path, reason: "cannot write: \(syncError)")
        }
        guard rename(temporaryPath, destination.path) == 0 else {
            let reason = errnoText()
            unlink(temporaryPath)
            throw ONNXError.fileAccess(file: destination.path, reason: "cannot replace the file: \(reason)")
        }
    }

    /// Removes the temporary file; the destination is left as it was.
    func discard() {
        guard !finished else { return }
        finished = true
        close(descriptor)
        unlink(temporaryPath)
    }

    deinit { discard() }
}
