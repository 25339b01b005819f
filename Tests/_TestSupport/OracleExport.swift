import Foundation
import SwiftQuant

extension TestSupport {
    /// Environment variable naming a directory where tests leave every model they produce, so CI can check
    /// each with `onnx.checker` and ONNX Runtime (`scripts/check_onnx_models.py`).
    public static let oracleDirectoryVariable = "SWIFTQUANT_ORACLE_DIR"

    /// Writes `model` to `$SWIFTQUANT_ORACLE_DIR/<name>.onnx` when the variable is set; does nothing otherwise.
    /// Call it for every model a test produces that ONNX Runtime must load.
    public static func keepForOracle(_ model: Model, name: String) throws {
        guard let directory = ProcessInfo.processInfo.environment[oracleDirectoryVariable], !directory.isEmpty
        else { return }
        let folder = URL(fileURLWithPath: directory, isDirectory: true)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let safeName = String(name.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" })
        try model.write(to: folder.appendingPathComponent(safeName + ".onnx"))
    }
}
