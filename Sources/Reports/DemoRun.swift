import Foundation
import GraphIR
import ONNX
import Quantization
import Tensors

/// `swiftquant demo`: quantizes one float model in every mode and compares each result with the float
/// model on labelled test data — size, compression, accuracy and its drop, latency and speedup, in one table.
///
/// A mode that fails (not implemented, or an error in quantization or evaluation) gets a row with its error
/// instead of figures; the other modes still run.
public struct DemoRun: Sendable {
    /// One quantization to try.
    public struct Variant: Sendable {
        /// How the table names it, e.g. "static int8".
        public var label: String
        public var options: QuantizationOptions
        /// File name suffix for `--output-dir`, e.g. "static-int8".
        public var slug: String

        public init(label: String, options: QuantizationOptions) {
            self.label = label
            self.options = options
            self.slug = label.replacingOccurrences(of: " ", with: "-")
        }
    }

    /// Static int8 (calibrated), dynamic int8, weight-only int4 in groups of 32, and FP16 — each with the
    /// library's defaults otherwise.
    public static let standardVariants: [Variant] = [
        Variant(label: "static int8", options: QuantizationOptions(mode: .static)),
        Variant(label: "dynamic int8", options: QuantizationOptions(mode: .dynamic)),
        Variant(label: "weight-only int4", options: QuantizationOptions(mode: .weightOnly, weightType: .int4,
                                                                        groupSize: 32)),
        Variant(label: "fp16", options: QuantizationOptions(mode: .fp16)),
    ]

    /// One line of the table; figures are nil when the mode failed (`error` says why).
    public struct Row: Sendable, Codable, Equatable {
        public var mode: String
        public var fileBytes: Int?
        public var compressionRatio: Double?
        public var accuracy: Double?
        public var accuracyDropPoints: Double?
        public var meanCosine: Double?
        /// Share of the multiply-accumulates done in integer arithmetic.
        public var integerShare: Double?
        public var latencyMs: Double?
        public var speedup: Double?
        public var error: String?

        enum CodingKeys: String, CodingKey {
            case mode, accuracy, speedup, error
            case fileBytes = "file_bytes"
            case compressionRatio = "compression_ratio"
            case accuracyDropPoints = "accuracy_drop_points"
            case meanCosine = "mean_cosine"
            case integerShare = "integer_share"
            case latencyMs = "latency_ms"
        }
    }

    public var model: URL
    public var calibration: URL
    public var test: URL
    /// The array of `test` holding the labels.
    public var labelsKey: String
    public var variants: [Variant]
    public var threadCount: Int
    public var latencyIterations: Int
    /// Where to keep the quantized models (`<model name>-<variant>.onnx`); nil keeps none.
    public var outputDirectory: URL?
    /// Evaluate on the first test rows only (quick runs); nil uses all.
    public var rowLimit: Int?

    public init(model: URL, calibration: URL, test: URL, labelsKey: String = "label",
                variants: [Variant] = DemoRun.standardVariants,
                threadCount: Int = ProcessInfo.processInfo.activeProcessorCount, latencyIterations: Int = 50,
                outputDirectory: URL? = nil, rowLimit: Int? = nil) {
        self.model = model
        self.calibration = calibration
        self.test = test
        self.labelsKey = labelsKey
        self.variants = variants
        self.threadCount = threadCount
        self.latencyIterations = latencyIterations
        self.outputDirectory = outputDirectory
        self.rowLimit = rowLimit
    }

    /// Runs every variant.
    ///
    /// - Parameter progress: told which step starts, for a terminal status line.
    /// - Throws: only when the float model or the data cannot be used (every variant would fail).
    public func run(progress: (String) -> Void = { _ in }) throws -> DemoResult {
        let reference = try EvaluatedModel(contentsOf: model)
        let data = try EvaluationData(contentsOf: test)
        let calibrationData = CalibrationData(arrays: try NPZ.readDictionary(calibration), source: calibration.path)
        if let outputDirectory {
            try FileManager.default.createDirectory(at: outputDirectory, withIntermediateDirectories: true)
        }
        var options = EvaluationOptions(rowLimit: rowLimit, labelsKey: labelsKey, threadCount: threadCount,
                                        measureLatency: false, latencyIterations: latencyIterations,
                                        latencyWarmup: 5)

        // The float row: its accuracy and MACs from evaluating it against itself, its latency measured once
        // and reused as every mode's reference figure.
        progress("fp32")
        var baseline = try ModelEvaluator(options: options).evaluate(reference: reference, candidate: reference,
                                                                    data: data)
        options.measureLatency = true
        options.referenceLatency = try ModelEvaluator(options: options).measureLatency(reference, data: data)
        baseline.reference.latency = options.referenceLatency
        baseline.speedup = 1
        var rows = [Self.row(label: "fp32", baseline, referenceAccuracy: true)]
        for variant in variants {
            progress(variant.label)
            do {
                let result = try Quantizer(options: variant.options).quantize(reference.model,
                                                                              calibration: calibrationData)
                let name = model.deletingPathExtension().lastPathComponent + "-" + variant.slug
                if let outputDirectory {
                    try result.model.write(to: outputDirectory.appendingPathComponent(name + ".onnx"))
                }
                let candidate = try EvaluatedModel(model: result.model, name: name)
                let report = try ModelEvaluator(options: options).evaluate(reference: reference, candidate: candidate,
                                                                          data: data)
                rows.append(Self.row(label: variant.label, report, referenceAccuracy: false))
            } catch {
                rows.append(Row(mode: variant.label, error: "\(error)"))
            }
        }
        return DemoResult(rows: rows, samples: baseline.samples, threads: threadCount,
                          latencyBatchSize: options.referenceLatency?.batchSize ?? 1)
    }

    /// The table row of one evaluation (of the reference itself for the float row).
    static func row(label: String, _ report: EvaluationReport, referenceAccuracy: Bool) -> Row {
        let accuracy = report.accuracy.first
        let facts = referenceAccuracy ? report.reference : report.candidate
        return Row(mode: label, fileBytes: facts.fileBytes, compressionRatio: report.compressionRatio,
                   accuracy: referenceAccuracy ? accuracy?.reference : accuracy?.candidate,
                   accuracyDropPoints: referenceAccuracy ? nil : accuracy?.dropPoints,
                   meanCosine: report.outputs.first?.meanCosine,
                   integerShare: facts.multiplyAccumulates?.integerShare, latencyMs: facts.latency?.medianMs,
                   speedup: report.speedup)
    }
}

extension DemoRun.Row {
    init(mode: String, error: String) {
        self.init(mode: mode, fileBytes: nil, compressionRatio: nil, accuracy: nil, accuracyDropPoints: nil,
                  meanCosine: nil, integerShare: nil, latencyMs: nil, speedup: nil, error: error)
    }
}

/// The rows of a demo run and how they were measured.
public struct DemoResult: Sendable, Codable, Equatable {
    public var rows: [DemoRun.Row]
    /// Test samples each accuracy is computed on.
    public var samples: Int
    public var threads: Int
    public var latencyBatchSize: Int

    /// Pretty-printed JSON with sorted keys (as `EvaluationReport.json()`).
    public func json() throws -> Data { try EvaluationReport.encoder.encode(self) }

    /// True when some mode failed.
    public var hasFailures: Bool { rows.contains { $0.error != nil } }

    /// The table: one row per mode, columns aligned; a failed mode shows its error after its name.
    public func formattedTable() -> String {
        let header = ["mode", "size", "compression", "accuracy", "drop (pts)", "cosine", "int MACs", "latency",
                      "speedup"]
        var table: [[String]] = [header]
        var errors: [(Int, String)] = []
        for row in rows {
            if let error = row.error {
                errors.append((table.count, error))
                table.append([row.mode])
                continue
            }
            func format(_ value: Double?, _ pattern: String, scale: Double = 1) -> String {
                value.map { String(format: pattern, $0 * scale) } ?? "—"
            }
            table.append([
                row.mode, row.fileBytes.map(EvaluationReport.bytes) ?? "—", format(row.compressionRatio, "%.2fx"),
                format(row.accuracy, "%.2f%%", scale: 100), format(row.accuracyDropPoints, "%+.2f"),
                format(row.meanCosine, "%.5f"), format(row.integerShare, "%.0f%%", scale: 100),
                format(row.latencyMs, "%.3f ms"), format(row.speedup, "%.2fx"),
            ])
        }
        let widths = header.indices.map { column in
            table.filter { $0.count > column }.map { $0[column].count }.max() ?? 0
        }
        var lines = table.enumerated().map { index, cells -> String in
            if let error = errors.first(where: { $0.0 == index })?.1 {
                return cells[0].padding(toLength: widths[0], withPad: " ", startingAt: 0) + "  error: " + error
            }
            return cells.enumerated().map { column, cell in
                column == 0 ? cell.padding(toLength: widths[0], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[column] - cell.count) + cell
            }.joined(separator: "  ")
        }
        lines.insert(String(repeating: "-", count: lines[0].count), at: 1)
        lines.append("accuracy on \(samples) labelled test samples; drop = fp32 accuracy − mode accuracy, in points; "
                     + "cosine = mean over samples vs fp32; latency = median per run of \(latencyBatchSize) "
                     + "sample(s), \(threads) thread(s), our runtime")
        return lines.joined(separator: "\n")
    }
}
