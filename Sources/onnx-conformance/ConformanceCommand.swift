import ArgumentParser
import Foundation
import SwiftQuant

/// Runs the ONNX backend node tests (Debian's libonnx-testdata) against the runtime.
///
/// A case is run when the operator it tests has a kernel in `KernelRegistry.standard`, or when every
/// operator in its graph does. Cases listed in the exclusion file are skipped, each with its reason.
/// Prints a per-operator table and closes with `N passed, N failed`; exits non-zero on any failure or
/// when exclusions exceed the allowed share of the claimed cases.
@main
struct ConformanceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "onnx-conformance",
        abstract: "Run the ONNX backend node tests against the SwiftQuant runtime."
    )

    @Option(help: "Folder holding the test_* case folders.")
    var data = "/usr/share/libonnx-testdata/data/node"

    @Option(help: "Only cases of these operators (comma-separated op types).")
    var ops: String?

    @Option(help: "Cases left out on purpose, one per line: `test_name  # reason`.")
    var exclusions: String = ConformanceCommand.defaultExclusionsPath

    @Option(help: "Largest share of claimed cases that may be excluded.")
    var maxExcludedShare = 0.05

    @Option(help: "Threads per session.")
    var threads = 1

    @Flag(help: "Print every case, not only failures.")
    var verbose = false

    static var defaultExclusionsPath: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Tests/Conformance/excluded-cases.txt").path
    }

    func run() throws {
        let root = URL(fileURLWithPath: data)
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: root.path) else {
            print("error: cannot read the node tests at \(root.path) (apt-get install libonnx-testdata)")
            throw ExitCode.failure
        }
        let excluded = try ExclusionList(path: exclusions)
        let only = ops.map { Set($0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }) }
        let registry = KernelRegistry.standard
        let claimed = Set(registry.operators.filter { $0.domain.isEmpty }.map(\.opType))

        var table = OperatorTable()
        var failures: [(String, String)] = []
        for name in names.sorted() where name.hasPrefix("test_") {
            let caseURL = root.appendingPathComponent(name)
            let testCase: NodeTestCase
            do {
                testCase = try NodeTestCase(folder: caseURL, claimed: claimed)
            } catch {
                // A case whose model we cannot even read counts against the operator its name points at.
                let op = NodeTestCase.operatorNamed(in: name, among: claimed) ?? "?"
                guard claimed.contains(op), only?.contains(op) ?? true else { continue }
                if excluded.reasons[name] != nil { table.record(op, .excluded); continue }
                table.record(op, .failed)
                failures.append((name, "\(error)"))
                continue
            }
            // Ours: the operator under test has a kernel, or (for composite cases that name no op) every
            // operator in the graph does.
            let op = testCase.operatorUnderTest ?? "(composite)"
            let ours = claimed.contains(op) || testCase.operators.isSubset(of: claimed)
            guard ours, only?.contains(op) ?? true else { continue }
            if excluded.reasons[name] != nil {
                table.record(op, .excluded)
                continue
            }
            do {
                try testCase.run(threads: threads)
                table.record(op, .passed)
                if verbose { print("pass  \(name)") }
            } catch {
                table.record(op, .failed)
                failures.append((name, "\(error)"))
            }
        }

        table.print()
        for (name, reason) in failures { print("FAIL  \(name): \(reason)") }
        let unknownExclusions = excluded.reasons.keys.filter { !names.contains($0) }.sorted()
        for name in unknownExclusions { print("note: excluded case \(name) does not exist in \(root.path)") }
        let totals = table.totals
        let share = totals.claimed == 0 ? 0 : Double(totals.excluded) / Double(totals.claimed)
        print(String(format: "excluded: %d of %d claimed cases (%.1f%%, limit %.1f%%)",
                     totals.excluded, totals.claimed, share * 100, maxExcludedShare * 100))
        print("\(totals.passed) passed, \(totals.failed) failed")
        if totals.failed > 0 || totals.passed == 0 || (only == nil && share > maxExcludedShare) {
            throw ExitCode.failure
        }
    }
}
