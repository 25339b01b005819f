import Foundation
import GraphIR
import ONNX
import Runtime
import Tensors

/// A model to evaluate, with the name reports give it and its serialized size.
public struct EvaluatedModel: Sendable {
    public var model: Model
    public var name: String
    public var fileBytes: Int

    /// Reads an ONNX file; its size is the file's (external data files are not added).
    public init(contentsOf url: URL) throws {
        self.model = try Model(contentsOf: url)
        self.name = url.path
        let attributes = try FileManager.default.attributesOfItem(atPath: url.path)
        self.fileBytes = (attributes[.size] as? NSNumber)?.intValue ?? 0
    }

    /// A model held in memory; its size is that of its serialized bytes.
    public init(model: Model, name: String) throws {
        self.model = model
        self.name = name
        self.fileBytes = try model.serializedData().count
    }
}

/// Evaluation samples: one array per model input (named as the input), samples along the first axis, plus
/// any other arrays (labels).
public struct EvaluationData: Sendable {
    public var arrays: [String: Tensor]
    /// Names the data in messages, usually its path.
    public var source: String

    public init(arrays: [String: Tensor], source: String) {
        self.arrays = arrays
        self.source = source
    }

    /// Reads an `.npz` file.
    public init(contentsOf url: URL) throws {
        self.init(arrays: try NPZ.readDictionary(url), source: url.path)
    }
}

/// Options of `ModelEvaluator`.
public struct EvaluationOptions: Sendable {
    /// Samples per run when computing outputs.
    public var batchSize: Int
    /// Use only the first rows of the data.
    public var rowLimit: Int?
    /// The array of integer labels; accuracy is reported for every output they fit.
    public var labelsKey: String?
    /// Threads per operator (default: all cores).
    public var threadCount: Int
    /// Whether to time both models; `latencyIterations` timed runs after `latencyWarmup` untimed ones, on
    /// the first `latencyBatchSize` rows.
    public var measureLatency: Bool
    public var latencyIterations: Int
    public var latencyWarmup: Int
    public var latencyBatchSize: Int
    /// A reference latency measured earlier in the same process, reused instead of measuring again (so
    /// several candidates are compared with one reference figure).
    public var referenceLatency: LatencySummary?

    public init(batchSize: Int = 32, rowLimit: Int? = nil, labelsKey: String? = nil,
                threadCount: Int = ProcessInfo.processInfo.activeProcessorCount, measureLatency: Bool = true,
                latencyIterations: Int = 20, latencyWarmup: Int = 3, latencyBatchSize: Int = 1,
                referenceLatency: LatencySummary? = nil) {
        self.batchSize = batchSize
        self.rowLimit = rowLimit
        self.labelsKey = labelsKey
        self.threadCount = threadCount
        self.measureLatency = measureLatency
        self.latencyIterations = latencyIterations
        self.latencyWarmup = latencyWarmup
        self.latencyBatchSize = latencyBatchSize
        self.referenceLatency = referenceLatency
    }
}

/// Runs a reference and a candidate model over the same evaluation data in batches and measures how far
/// the candidate strays (`OutputFidelity`, `AccuracyResult`), how much smaller and faster it is, and how
/// much of its arithmetic is integer (`MultiplyAccumulateCount`) — the library face of `swiftquant eval`.
public struct ModelEvaluator: Sendable {
    public var options: EvaluationOptions

    public init(options: EvaluationOptions = EvaluationOptions()) { self.options = options }

    /// Evaluates `candidate` against `reference` on `data`.
    ///
    /// - Parameter progress: called after each batch with (samples done, samples in all).
    /// - Throws: `EvaluationError` naming the data array, model or output at fault.
    public func evaluate(
        reference: EvaluatedModel, candidate: EvaluatedModel, data: EvaluationData,
        progress: (Int, Int) -> Void = { _, _ in }
    ) throws -> EvaluationReport {
        guard options.batchSize >= 1 else { throw EvaluationError.invalidOption("batch size must be positive") }
        let referenceSession = try session(for: reference)
        let candidateSession = try session(for: candidate)
        try checkOutputs(reference: reference, referenceSession, candidate: candidate, candidateSession)

        let inputNames = try usedInputs([(reference, referenceSession), (candidate, candidateSession)], data: data)
        let availableRows = try rowCount(of: inputNames, in: data)
        let rows = min(availableRows, max(0, options.rowLimit ?? availableRows))
        guard rows > 0 else { throw EvaluationError.emptyData(data: data.source) }
        let labels = try options.labelsKey.map { try labelArray($0, data: data, rows: availableRows) }

        var fidelity = referenceSession.outputNames.map { OutputFidelityAccumulator(name: $0) }
        var accuracy: [AccuracyAccumulator]?
        // A model declaring a fixed first dimension takes batches of exactly that size.
        let batchSize = [referenceSession.fixedBatchSize, candidateSession.fixedBatchSize, options.batchSize]
            .compactMap { $0 }.min()!
        var start = 0
        while start < rows {
            let range = start..<min(rows, start + max(batchSize, 1))
            let feeds = try Dictionary(uniqueKeysWithValues: inputNames.map { ($0, try data.arrays[$0]!.rows(range)) })
            let expected = try run(referenceSession, reference, feeds)
            let actual = try run(candidateSession, candidate, feeds)
            for index in fidelity.indices {
                let name = fidelity[index].name
                try fidelity[index].add(reference: expected[name]!, candidate: actual[name]!)
            }
            if let (key, values) = labels {
                let batchLabels = try values.rows(range)
                if accuracy == nil {
                    accuracy = try matchLabels(key: key, shape: batchLabels.shape, outputs: expected,
                                               order: referenceSession.outputNames, data: data.source)
                }
                let flat = batchLabels.scalars(as: Int64.self).map { Int($0) }
                for index in accuracy!.indices {
                    let name = accuracy![index].output
                    try checkLabelRange(flat, classes: expected[name]!.shape.last ?? 0, key: key, output: name,
                                        rows: range, data: data.source)
                    try accuracy![index].add(reference: expected[name]!, candidate: actual[name]!, labels: flat)
                }
            }
            start = range.upperBound
            progress(start, rows)
        }

        var notes: [String] = []
        let shapes = Dictionary(uniqueKeysWithValues: inputNames.map { name in
            (name, [1] + data.arrays[name]!.shape.dropFirst())
        })
        var referenceFacts = EvaluationReport.ModelFacts(name: reference.name, fileBytes: reference.fileBytes)
        var candidateFacts = EvaluationReport.ModelFacts(name: candidate.name, fileBytes: candidate.fileBytes)
        referenceFacts.multiplyAccumulates = countMACs(reference, shapes: shapes, notes: &notes)
        candidateFacts.multiplyAccumulates = countMACs(candidate, shapes: shapes, notes: &notes)
        if options.measureLatency {
            let latencyFeeds = try self.latencyFeeds(inputNames, data: data)
            referenceFacts.latency = try options.referenceLatency
                ?? measureLatency(referenceSession, reference, feeds: latencyFeeds)
            candidateFacts.latency = try measureLatency(candidateSession, candidate, feeds: latencyFeeds)
        }
        return EvaluationReport(reference: referenceFacts, candidate: candidateFacts, data: data.source, samples: rows,
                                outputs: fidelity.map(\.result), accuracy: accuracy?.map(\.result) ?? [],
                                notes: notes)
    }

    /// Latency of `model` over the configured runs, on the first `latencyBatchSize` rows of `data`.
    public func measureLatency(_ model: EvaluatedModel, data: EvaluationData) throws -> LatencySummary {
        let session = try session(for: model)
        let feeds = try latencyFeeds(try usedInputs([(model, session)], data: data), data: data)
        return try measureLatency(session, model, feeds: feeds)
    }

    // MARK: - Steps

    /// - Parameter integerExecution: false runs a quantized model node by node, so that the float values
    ///   between its QuantizeLinear/DequantizeLinear pairs exist and can be observed.
    func session(for model: EvaluatedModel, integerExecution: Bool = true) throws -> Session {
        var sessionOptions = SessionOptions(threadCount: options.threadCount)
        sessionOptions.integerExecution = integerExecution
        do {
            return try Session(model: model.model, options: sessionOptions)
        } catch {
            throw EvaluationError.modelFailed(model: model.name, reason: "\(error)")
        }
    }

    /// Runs `session` on the feeds it takes; `observer` sees the values it names as they are computed.
    func run(_ session: Session, _ model: EvaluatedModel, _ feeds: [String: Tensor],
             observer: ValueObserver? = nil) throws -> [String: Tensor] {
        let own = feeds.filter { name, _ in session.inputs.contains { $0.name == name } }
        do {
            return try session.run(own, observer: observer)
        } catch let error as EvaluationError {
            throw error
        } catch {
            throw EvaluationError.modelFailed(model: model.name, reason: "\(error)")
        }
    }

    private func latencyFeeds(_ names: [String], data: EvaluationData) throws -> [String: Tensor] {
        try Dictionary(uniqueKeysWithValues: names.map {
            ($0, try data.arrays[$0]!.leadingRows(max(1, options.latencyBatchSize)))
        })
    }

    private func measureLatency(_ session: Session, _ model: EvaluatedModel, feeds: [String: Tensor]) throws
        -> LatencySummary
    {
        let own = feeds.filter { name, _ in session.inputs.contains { $0.name == name } }
        let iterations = max(1, options.latencyIterations)
        let result = try LatencyBenchmark.measure(warmup: options.latencyWarmup, iterations: iterations) {
            _ = try run(session, model, own)
        }
        return LatencySummary(medianMs: result.median * 1e3, p90Ms: result.p90 * 1e3, minimumMs: result.minimum * 1e3,
                              iterations: iterations, batchSize: own.values.first?.shape.first ?? 1,
                              threads: session.options.threadCount)
    }

    /// Both models must name the same outputs.
    private func checkOutputs(reference: EvaluatedModel, _ referenceSession: Session, candidate: EvaluatedModel,
                              _ candidateSession: Session) throws {
        let expected = Set(referenceSession.outputNames), actual = Set(candidateSession.outputNames)
        guard expected == actual else {
            throw EvaluationError.outputsDiffer(
                reference: reference.name, candidate: candidate.name,
                onlyInReference: referenceSession.outputNames.filter { !actual.contains($0) },
                onlyInCandidate: candidateSession.outputNames.filter { !expected.contains($0) })
        }
    }

    /// The input names both models need, each present in the data.
    func usedInputs(_ models: [(EvaluatedModel, Session)], data: EvaluationData) throws -> [String] {
        var names: [String] = []
        for (model, session) in models {
            for info in session.inputs where !names.contains(info.name) {
                guard data.arrays[info.name] != nil else {
                    throw EvaluationError.missingInput(model: model.name, input: info.name, data: data.source,
                                                       available: data.arrays.keys.sorted())
                }
                names.append(info.name)
            }
        }
        return names
    }

    /// The common number of rows of the named arrays.
    func rowCount(of names: [String], in data: EvaluationData) throws -> Int {
        var rows: Int?
        for name in names {
            guard let count = data.arrays[name]!.shape.first else {
                throw EvaluationError.rowCountMismatch(data: data.source, array: name, rows: 0, expected: rows ?? 0)
            }
            if let rows, rows != count {
                throw EvaluationError.rowCountMismatch(data: data.source, array: name, rows: count, expected: rows)
            }
            rows = count
        }
        return rows ?? 0
    }

    /// The labels as int64, checked for type and row count.
    private func labelArray(_ key: String, data: EvaluationData, rows: Int) throws -> (String, Tensor) {
        guard let labels = data.arrays[key] else {
            throw EvaluationError.missingLabels(key: key, data: data.source, available: data.arrays.keys.sorted())
        }
        guard labels.dtype.isInteger, labels.dtype.bitWidth >= 8 else {
            throw EvaluationError.invalidLabels(key: key, data: data.source,
                                                reason: "must hold integer class indices, not \(labels.dtype)")
        }
        guard labels.shape.first == rows else {
            throw EvaluationError.invalidLabels(
                key: key, data: data.source,
                reason: "has shape \(labels.shape), but the inputs have \(rows) rows")
        }
        return (key, try labels.converted(to: .int64))
    }

    /// The accumulators of the outputs the labels fit (one class index per position of the output).
    private func matchLabels(key: String, shape: [Int], outputs: [String: Tensor], order: [String],
                             data: String) throws -> [AccuracyAccumulator] {
        let fitting = order.filter { AccuracyAccumulator.labels(shape, fit: outputs[$0]!.shape) }
        guard !fitting.isEmpty else {
            let described = order.map { "'\($0)' \(outputs[$0]!.shape)" }.joined(separator: ", ")
            throw EvaluationError.invalidLabels(
                key: key, data: data,
                reason: "of shape \(shape) per batch fit no output (one label per position of an output of "
                    + "shape [batch, …, classes]; outputs: \(described))")
        }
        return fitting.map { AccuracyAccumulator(output: $0, labelsKey: key) }
    }

    private func checkLabelRange(_ labels: [Int], classes: Int, key: String, output: String, rows: Range<Int>,
                                 data: String) throws {
        if let bad = labels.firstIndex(where: { $0 < 0 || $0 >= classes }) {
            let perRow = max(1, labels.count / max(1, rows.count))
            throw EvaluationError.invalidLabels(
                key: key, data: data,
                reason: "holds \(labels[bad]) at row \(rows.lowerBound + bad / perRow), outside the \(classes) "
                    + "classes (0..<\(classes)) of output '\(output)'")
        }
    }

    /// MACs per sample, or nil with a note when the shapes cannot be inferred.
    private func countMACs(_ model: EvaluatedModel, shapes: [String: [Int]], notes: inout [String])
        -> MultiplyAccumulateCount?
    {
        let own = shapes.filter { name, _ in model.model.graph.inputs.contains { $0.name == name } }
        do {
            let count = try MultiplyAccumulateCount.count(in: model.model, inputShapes: own)
            if !count.unresolved.isEmpty {
                notes.append("\(model.name): MACs of \(count.unresolved.count) node(s) not counted (unknown shapes): "
                             + count.unresolved.prefix(5).joined(separator: ", "))
            }
            return count
        } catch {
            notes.append("\(model.name): MACs not counted: \(error)")
            return nil
        }
    }
}
