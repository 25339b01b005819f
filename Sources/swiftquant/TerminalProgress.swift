import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A one-line progress counter on standard error, shown only when it is a terminal (so logs and
/// pipes stay clean).
struct TerminalProgress {
    let label: String
    let enabled = isatty(STDERR_FILENO) != 0

    func update(_ done: Int, of total: Int) {
        guard enabled else { return }
        let percent = total > 0 ? 100 * done / total : 100
        FileHandle.standardError.write(Data("\r\(label): \(done)/\(total) (\(percent)%)".utf8))
    }

    /// Shows which step runs (e.g. a quantization mode), replacing the line.
    func status(_ step: String) {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K\(label): \(step)".utf8))
    }

    func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\n".utf8))
    }
}
