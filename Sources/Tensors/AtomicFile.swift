import Foundation
#if canImport(Glibc)
import Glibc
private let systemWrite = Glibc.write
#elseif canImport(Darwin)
import Darwin
private let systemWrite = Darwin.write
#endif

/// Replaces files atomically: everything is written to a temporary file beside the target, flushed to
/// disk, and renamed over the target, so readers see either the old file or the complete new one.
enum AtomicFile {
    /// An open file descriptor for the temporary file.
    struct Handle {
        let descriptor: Int32
        let path: String

        /// Writes all of `bytes`, retrying short writes and interrupted calls.
        func write(_ bytes: UnsafeRawBufferPointer) throws {
            guard var pointer = bytes.baseAddress else { return }
            var remaining = bytes.count
            while remaining > 0 {
                let written = systemWrite(descriptor, pointer, remaining)
                if written < 0 {
                    if errno == EINTR { continue }
                    throw TensorError.invalidFile(path: path, reason: "cannot write: \(String(cString: strerror(errno)))")
                }
                pointer += written
                remaining -= written
            }
        }
    }

    /// Creates a temporary file beside `url`, lets `body` fill it, then renames it over `url`.
    static func write(to url: URL, _ body: (Handle) throws -> Void) throws {
        try replace(url) { temporary in
            let descriptor = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            guard descriptor >= 0 else {
                throw TensorError.invalidFile(path: url.path, reason: "cannot create: \(String(cString: strerror(errno)))")
            }
            defer { close(descriptor) }
            try body(Handle(descriptor: descriptor, path: url.path))
        }
    }

    /// Gives `body` a path beside `url` that does not exist yet; once `body` has written a file there,
    /// flushes it and renames it over `url`. The temporary file is removed on failure.
    static func replace(_ url: URL, _ body: (URL) throws -> Void) throws {
        let directory = url.deletingLastPathComponent()
        let temporary = directory.appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).tmp")
        do {
            try body(temporary)
            // Flush before renaming, so a crash cannot leave an empty file under the final name.
            let descriptor = open(temporary.path, O_RDONLY | O_CLOEXEC)
            if descriptor >= 0 {
                fsync(descriptor)
                close(descriptor)
            }
            guard rename(temporary.path, url.path) == 0 else {
                throw TensorError.invalidFile(path: url.path, reason: "cannot replace: \(String(cString: strerror(errno)))")
            }
        } catch {
            unlink(temporary.path)
            throw error
        }
    }
}
