import Foundation

/// Locations and tolerances shared by the test targets.
public enum TestSupport {
    /// The package root (this file is Tests/_TestSupport/TestSupport.swift).
    public static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Committed small fixtures (models and arrays made by scripts/).
    public static let fixtures: URL = packageRoot.appendingPathComponent("Tests/Fixtures")

    /// `../shared/models` beside the checkout, or `$SWIFTQUANT_SHARED_MODELS`; nil when absent.
    public static var sharedModels: URL? {
        let candidates = [
            ProcessInfo.processInfo.environment["SWIFTQUANT_SHARED_MODELS"].map { URL(fileURLWithPath: $0) },
            packageRoot.deletingLastPathComponent().appendingPathComponent("shared/models"),
        ].compactMap { $0 }
        return candidates.first { FileManager.default.fileExists(atPath: $0.path) }
    }

    /// A fresh temporary directory, removed by the caller when done.
    public static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("swiftquant-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Largest absolute difference of two equally long float arrays (infinity when lengths differ).
    public static func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
        guard a.count == b.count else { return .infinity }
        var worst: Float = 0
        for (x, y) in zip(a, b) {
            if x.isNaN != y.isNaN { return .infinity }
            if x.isNaN { continue }
            if x == y { continue }
            worst = max(worst, abs(x - y))
        }
        return worst
    }
}
