import Foundation
import GraphIR
import ONNX
import Tensors
import Testing
import _TestSupport

/// Reads every model and tensor of the ONNX backend node tests (Debian `libonnx-testdata`).
///
/// The only acceptable failures are element types we do not represent (string, complex…) and
/// model-local functions; everything else must load, pass the checker, and survive a round trip.
@Suite struct NodeTestDataLoadingTests {
    static let root = URL(fileURLWithPath: "/usr/share/libonnx-testdata/data/node")
    static var available: Bool { FileManager.default.fileExists(atPath: root.path) }

    static func isAcceptable(_ error: Error) -> Bool {
        switch error as? ONNXError {
        case .unsupportedDataType?, .unsupportedFunction?: return true
        default: return false
        }
    }

    @Test(.enabled(if: available, "needs libonnx-testdata"))
    func everyNodeTestModelLoadsChecksAndRoundTrips() throws {
        let cases = try FileManager.default.contentsOfDirectory(atPath: Self.root.path).sorted()
        var loaded = 0
        var problems: [String] = []
        for name in cases where name.hasPrefix("test_") {
            let url = Self.root.appendingPathComponent(name).appendingPathComponent("model.onnx")
            do {
                let model = try Model(contentsOf: url)
                try ModelChecker.check(model)
                let again = try Model(serializedData: try model.serializedData(), baseDirectory: nil, source: name)
                if again != model { problems.append("\(name): round trip changed the model") }
                loaded += 1
            } catch where Self.isAcceptable(error) {
                continue
            } catch {
                problems.append("\(error)")
            }
        }
        #expect(problems.isEmpty, "\(problems.prefix(20).joined(separator: "\n"))")
        // libonnx-testdata (ONNX 1.12) has 932 cases; nearly all are numeric.
        #expect(loaded > 900)
    }

    @Test(.enabled(if: available, "needs libonnx-testdata"))
    func everyNodeTestTensorLoads() throws {
        let cases = try FileManager.default.contentsOfDirectory(atPath: Self.root.path).sorted()
        var loaded = 0
        var problems: [String] = []
        for name in cases where name.hasPrefix("test_") {
            let folder = Self.root.appendingPathComponent(name)
            guard let model = try? Model(contentsOf: folder.appendingPathComponent("model.onnx")) else { continue }
            let dataSet = folder.appendingPathComponent("test_data_set_0")
            // Sequence and optional values are stored as SequenceProto/OptionalProto: read only tensors.
            let files = model.graph.inputs.enumerated().map { ("input_\($0).pb", $1) }
                + model.graph.outputs.enumerated().map { ("output_\($0).pb", $1) }
            for (file, info) in files {
                guard case .tensor? = info.type else { continue }
                let url = dataSet.appendingPathComponent(file)
                guard FileManager.default.fileExists(atPath: url.path) else { continue }
                do {
                    let (_, tensor) = try TensorProtoFile.read(url)
                    // ONNX 1.12 stored bfloat16 test tensors as UINT16 (numpy has no bfloat16): same bits.
                    let knownQuirk = tensor.dtype == .uint16 && info.type?.tensorElementType == .bfloat16
                    if let dtype = info.type?.tensorElementType, dtype != tensor.dtype, !knownQuirk {
                        problems.append("\(name)/\(file): read \(tensor.dtype), model says \(dtype)")
                    }
                    loaded += 1
                } catch where Self.isAcceptable(error) {
                    continue
                } catch {
                    problems.append("\(error)")
                }
            }
        }
        #expect(problems.isEmpty, "\(problems.prefix(20).joined(separator: "\n"))")
        #expect(loaded > 2_000)
    }
}
