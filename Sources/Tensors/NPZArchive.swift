import Foundation
import ZIPFoundation

/// numpy `.npz` archives: a zip file with one `.npy` entry per array, named `<key>.npy`.
///
/// Reads what `np.savez` (stored entries) and `np.savez_compressed` (deflate) write; entries are
/// decoded one at a time, straight from the archive into each tensor's storage. Zip entries whose
/// names do not end in `.npy` are not arrays (numpy returns them as raw bytes) and are skipped.
public enum NPZ {
    /// Reads every array, in archive order.
    ///
    /// - Throws: `TensorError.invalidFile` naming the archive (and the array at fault) when the file is
    ///   not a readable zip, an entry is corrupt, two entries share a key, or an array is not valid `.npy`.
    public static func read(_ url: URL) throws -> [(name: String, tensor: Tensor)] {
        let archive = try open(url)
        var arrays: [(name: String, tensor: Tensor)] = []
        var seen: Set<String> = []
        for entry in archive {
            guard let name = arrayName(of: entry) else { continue }
            guard seen.insert(name).inserted else {
                throw TensorError.invalidFile(path: url.path, reason: "array '\(name)' appears twice")
            }
            arrays.append((name, try decode(entry, named: name, from: archive, at: url)))
        }
        return arrays
    }

    /// Reads every array into a dictionary keyed by name (see `read(_:)`).
    public static func readDictionary(_ url: URL) throws -> [String: Tensor] {
        Dictionary(uniqueKeysWithValues: try read(url).map { ($0.name, $0.tensor) })
    }

    /// The array keys, in archive order, without decoding any data.
    public static func names(_ url: URL) throws -> [String] {
        try open(url).compactMap(arrayName(of:))
    }

    /// Reads the single array `name`, leaving the others undecoded.
    ///
    /// - Throws: `TensorError.missingArray` when the archive has no such array; otherwise as `read(_:)`.
    public static func readArray(_ url: URL, name: String) throws -> Tensor {
        let archive = try open(url)
        guard let entry = archive.first(where: { arrayName(of: $0) == name }) else {
            throw TensorError.missingArray(path: url.path, name: name)
        }
        return try decode(entry, named: name, from: archive, at: url)
    }

    /// Writes `arrays` as an `.npz` archive with entries `<name>.npy`, as `np.savez` does, or deflated as
    /// `np.savez_compressed` does when `compressed` is true. The archive replaces `url` atomically.
    /// Entry timestamps are fixed (1980-01-01, as numpy writes them), so equal arrays give equal files.
    ///
    /// - Throws: `TensorError.unsupported` for an empty or repeated name or a dtype `.npy` cannot hold;
    ///   `TensorError.invalidFile` naming the file when it cannot be written.
    public static func write(_ arrays: [(String, Tensor)], to url: URL, compressed: Bool = false) throws {
        var names: Set<String> = []
        var headers: [[UInt8]] = []
        for (name, tensor) in arrays {
            guard !name.isEmpty else { throw TensorError.unsupported("an .npz array name must not be empty") }
            guard names.insert(name).inserted else {
                throw TensorError.unsupported("array name '\(name)' is used twice in one .npz archive")
            }
            headers.append(try NPYHeader.encode(dtype: tensor.dtype, shape: tensor.shape))
        }
        try AtomicFile.replace(url) { temporary in
            do {
                let archive = try Archive(url: temporary, accessMode: .create)
                for ((name, tensor), header) in zip(arrays, headers) {
                    let total = header.count + tensor.byteCount
                    try archive.addEntry(
                        with: name + ".npy", type: .file, uncompressedSize: Int64(total),
                        modificationDate: fixedTimestamp, compressionMethod: compressed ? .deflate : .none,
                        bufferSize: chunkSize
                    ) { position, size in
                        // Serve the header, then the tensor's bytes, without building the whole .npy.
                        chunk(header: header, tensor: tensor, position: Int(position), size: size)
                    }
                }
            } catch let error as TensorError {
                throw error
            } catch {
                throw TensorError.invalidFile(path: url.path, reason: "cannot write the archive: \(error)")
            }
        }
    }

    // MARK: Implementation

    /// Bytes read or written per step: big enough to amortise per-chunk work, small next to arrays.
    static let chunkSize = 1 << 18

    /// numpy's zip timestamp, 1980-01-01 00:00 UTC (the earliest a zip can store).
    static let fixedTimestamp = Date(timeIntervalSince1970: 315_532_800)

    static func open(_ url: URL) throws -> Archive {
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw TensorError.invalidFile(path: url.path, reason: "no such file")
        }
        do {
            return try Archive(url: url, accessMode: .read)
        } catch {
            throw TensorError.invalidFile(path: url.path, reason: "not a readable zip archive (\(error))")
        }
    }

    /// The array key of a zip entry: its path without `.npy`, or nil for entries that are no arrays.
    static func arrayName(of entry: Entry) -> String? {
        guard entry.type == .file, entry.path.hasSuffix(".npy") else { return nil }
        return String(entry.path.dropLast(4))
    }

    static func decode(_ entry: Entry, named name: String, from archive: Archive, at url: URL) throws -> Tensor {
        func failure(_ reason: String) -> TensorError {
            TensorError.invalidFile(path: url.path, reason: "array '\(name)': \(reason)")
        }
        guard let length = Int(exactly: entry.uncompressedSize) else {
            throw failure("entry size \(entry.uncompressedSize) does not fit in memory")
        }
        var decoder = NPYDecoder(streamLength: length)
        do {
            let checksum = try archive.extract(entry, bufferSize: chunkSize) { data in
                try data.withUnsafeBytes { try decoder.consume($0) }
            }
            guard checksum == entry.checksum else { throw NPYFailure("CRC-32 mismatch: the entry is corrupt") }
            return try decoder.finish()
        } catch let error as NPYFailure {
            throw failure(error.reason)
        } catch let error as TensorError {
            throw error
        } catch {
            throw failure("cannot extract the entry (\(error))")
        }
    }

    /// `size` bytes from `position` of the `.npy` stream made of `header` then the tensor's bytes.
    static func chunk(header: [UInt8], tensor: Tensor, position: Int, size: Int) -> Data {
        var data = Data(capacity: size)
        var position = position
        var wanted = size
        if position < header.count {
            let take = min(wanted, header.count - position)
            data.append(contentsOf: header[position..<(position + take)])
            position += take
            wanted -= take
        }
        if wanted > 0 {
            let offset = position - header.count
            tensor.withUnsafeBytes { bytes in
                let take = min(wanted, bytes.count - offset)
                if take > 0 { data.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + take)])) }
            }
        }
        return data
    }
}
