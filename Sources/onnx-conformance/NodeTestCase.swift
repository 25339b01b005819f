import Foundation
import SwiftQuant

/// One folder of the ONNX node tests: a model and one or more data sets of inputs and expected outputs.
struct NodeTestCase {
    let name: String
    let model: Model
    let dataSets: [URL]
    /// Every op type in the graph and its subgraphs, Constant included.
    let operators: Set<String>
    /// The operator the case is about, for the per-operator table; nil when neither the graph (one op)
    /// nor the folder name says.
    let operatorUnderTest: String?

    init(folder: URL, claimed: Set<String>) throws {
        name = folder.lastPathComponent
        model = try Model(contentsOf: folder.appendingPathComponent("model.onnx"))
        dataSets = try FileManager.default.contentsOfDirectory(atPath: folder.path)
            .filter { $0.hasPrefix("test_data_set_") }.sorted()
            .map { folder.appendingPathComponent($0) }
        var found = Set<String>()
        Self.collectOperators(model.graph, into: &found)
        operators = found
        let main = found.subtracting(["Constant"])
        if main.count == 1 {
            operatorUnderTest = main.first!
        } else {
            // Expanded (function-body) cases hold many ops; their folder name says what they test.
            operatorUnderTest = Self.operatorNamed(in: name, among: claimed.union(found))
        }
    }

    /// The longest op type whose name, lowercased without underscores, starts the case name.
    static func operatorNamed(in caseName: String, among candidates: Set<String>) -> String? {
        let key = caseName.dropFirst("test_".count).replacingOccurrences(of: "_", with: "").lowercased()
        return candidates.filter { key.hasPrefix($0.lowercased()) }.max { $0.count < $1.count }
    }

    private static func collectOperators(_ graph: Graph, into set: inout Set<String>) {
        for node in graph.nodes {
            set.insert(node.opType)
            for attribute in node.attributes.values {
                if case .graph(let body) = attribute { collectOperators(body, into: &set) }
                if case .graphs(let bodies) = attribute { for body in bodies { collectOperators(body, into: &set) } }
            }
        }
    }

    /// Runs every data set; throws a description of the first mismatch.
    func run(threads: Int) throws {
        let session = try Session(model: model, options: SessionOptions(threadCount: threads))
        for dataSet in dataSets {
            var feeds: [String: Tensor] = [:]
            for (index, input) in session.inputs.enumerated() {
                let file = dataSet.appendingPathComponent("input_\(index).pb")
                guard FileManager.default.fileExists(atPath: file.path) else { continue }
                feeds[input.name] = try Self.bfloat16Fixed(
                    TensorProtoFile.read(file).tensor, declared: input.type?.tensorElementType)
            }
            let outputs = try session.run(feeds)
            for (index, outputName) in session.outputNames.enumerated() {
                let file = dataSet.appendingPathComponent("output_\(index).pb")
                guard FileManager.default.fileExists(atPath: file.path) else { continue }
                guard let actual = outputs[outputName] else {
                    throw ConformanceFailure("output '\(outputName)' missing")
                }
                let expected = try Self.bfloat16Fixed(TensorProtoFile.read(file).tensor, declared: actual.dtype)
                try TensorComparison.check(actual, expected, label: "\(dataSet.lastPathComponent)/\(outputName)")
            }
        }
    }
}

extension NodeTestCase {
    /// ONNX 1.12's test data stores bfloat16 tensors as UINT16 with the same bits; read them back as
    /// bfloat16 where the model says bfloat16.
    static func bfloat16Fixed(_ tensor: Tensor, declared: DType?) throws -> Tensor {
        guard declared == .bfloat16, tensor.dtype == .uint16 else { return tensor }
        return try tensor.withUnsafeBytes { try Tensor(dtype: .bfloat16, shape: tensor.shape, bytes: $0) }
    }
}

struct ConformanceFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Compares an output with the stored expectation: floats within rtol 1e-3 + atol 1e-5 (NaN equals NaN),
/// everything else exactly.
enum TensorComparison {
    static let relativeTolerance = 1e-3
    static let absoluteTolerance = 1e-5

    static func check(_ actual: Tensor, _ expected: Tensor, label: String) throws {
        guard actual.dtype == expected.dtype else {
            throw ConformanceFailure("\(label): dtype \(actual.dtype), expected \(expected.dtype)")
        }
        guard actual.shape == expected.shape else {
            throw ConformanceFailure("\(label): shape \(actual.shape), expected \(expected.shape)")
        }
        if actual.dtype.isFloatingPoint && actual.dtype != .float8e4m3fn && actual.dtype != .float8e5m2 {
            let a = try actual.converted(to: .float64).scalars(as: Double.self)
            let e = try expected.converted(to: .float64).scalars(as: Double.self)
            for i in 0..<a.count {
                if a[i].isNaN && e[i].isNaN { continue }
                if a[i] == e[i] { continue }  // equal infinities
                let error = abs(a[i] - e[i])
                if !(error <= absoluteTolerance + relativeTolerance * abs(e[i])) {
                    throw ConformanceFailure("\(label): element \(i) is \(a[i]), expected \(e[i])")
                }
            }
        } else if actual != expected {
            throw ConformanceFailure("\(label): values differ from the expected \(expected.dtype) tensor")
        }
    }
}

/// The exclusion file: `test_name  # reason` per line; blank lines and `#` lines are ignored.
struct ExclusionList {
    let reasons: [String: String]

    init(path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else { reasons = [:]; return }
        var reasons: [String: String] = [:]
        for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty, !trimmed.hasPrefix("#") else { continue }
            let parts = trimmed.split(separator: "#", maxSplits: 1)
            let name = parts[0].trimmingCharacters(in: .whitespaces)
            let reason = parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : ""
            guard !reason.isEmpty else {
                throw ConformanceFailure("\(path): excluded case \(name) gives no reason")
            }
            reasons[name] = reason
        }
        self.reasons = reasons
    }
}

/// Pass/fail/excluded counts per operator, printed as a table.
struct OperatorTable {
    enum Outcome { case passed, failed, excluded }
    private var rows: [String: (passed: Int, failed: Int, excluded: Int)] = [:]

    mutating func record(_ op: String, _ outcome: Outcome) {
        var row = rows[op, default: (0, 0, 0)]
        switch outcome {
        case .passed: row.passed += 1
        case .failed: row.failed += 1
        case .excluded: row.excluded += 1
        }
        rows[op] = row
    }

    var totals: (passed: Int, failed: Int, excluded: Int, claimed: Int) {
        let p = rows.values.reduce(0) { $0 + $1.passed }
        let f = rows.values.reduce(0) { $0 + $1.failed }
        let e = rows.values.reduce(0) { $0 + $1.excluded }
        return (p, f, e, p + f + e)
    }

    func print() {
        let width = max(8, rows.keys.map(\.count).max() ?? 0)
        Swift.print("operator".padding(toLength: width, withPad: " ", startingAt: 0) + "  cases  passed  failed  excluded")
        for op in rows.keys.sorted() {
            let row = rows[op]!
            let cells = [row.passed + row.failed + row.excluded, row.passed, row.failed, row.excluded]
                .map { String($0).leftPadded(to: 6) }
            Swift.print(op.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + cells.joined(separator: "  "))
        }
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
