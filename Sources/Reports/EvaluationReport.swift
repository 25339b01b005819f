import Foundation

/// Wall-clock latency of one model in our runtime.
public struct LatencySummary: Sendable, Codable, Equatable {
    public var medianMs: Double
    public var p90Ms: Double
    public var minimumMs: Double
    public var iterations: Int
    /// Samples per timed run.
    public var batchSize: Int
    public var threads: Int

    public init(medianMs: Double, p90Ms: Double, minimumMs: Double, iterations: Int, batchSize: Int, threads: Int) {
        self.medianMs = medianMs
        self.p90Ms = p90Ms
        self.minimumMs = minimumMs
        self.iterations = iterations
        self.batchSize = batchSize
        self.threads = threads
    }

    enum CodingKeys: String, CodingKey {
        case iterations, threads
        case medianMs = "median_ms"
        case p90Ms = "p90_ms"
        case minimumMs = "min_ms"
        case batchSize = "batch_size"
    }
}

/// What `swiftquant eval` measures: a candidate model (usually quantized) against its reference.
///
/// Encodes to JSON with snake_case keys; infinite SQNRs (identical outputs) are written as the strings
/// "inf"/"-inf" and NaN as "nan", since JSON has no such numbers.
public struct EvaluationReport: Sendable, Codable, Equatable {
    /// Facts about one of the two models.
    public struct ModelFacts: Sendable, Codable, Equatable {
        /// Its path, or a name for a model that only exists in memory.
        public var name: String
        /// Size of the serialized model in bytes.
        public var fileBytes: Int
        public var latency: LatencySummary?
        /// Per sample (the sample axis set to 1); nil when the shapes could not be inferred (see `notes`).
        public var multiplyAccumulates: MultiplyAccumulateCount?

        public init(name: String, fileBytes: Int, latency: LatencySummary? = nil,
                    multiplyAccumulates: MultiplyAccumulateCount? = nil) {
            self.name = name
            self.fileBytes = fileBytes
            self.latency = latency
            self.multiplyAccumulates = multiplyAccumulates
        }

        enum CodingKeys: String, CodingKey {
            case name, latency
            case fileBytes = "file_bytes"
            case multiplyAccumulates = "multiply_accumulates"
        }
    }

    public var reference: ModelFacts
    public var candidate: ModelFacts
    /// The evaluation data file.
    public var data: String
    public var samples: Int
    public var outputs: [OutputFidelity]
    /// One entry per output the labels fit; empty without labels.
    public var accuracy: [AccuracyResult]
    /// `reference.fileBytes / candidate.fileBytes`.
    public var compressionRatio: Double
    /// `reference median / candidate median`; nil when latency was not measured.
    public var speedup: Double?
    public var notes: [String]
    /// Per-layer error (`ModelEvaluator.layerErrors`), when it was measured.
    public var layers: [LayerFidelity]?

    public init(reference: ModelFacts, candidate: ModelFacts, data: String, samples: Int, outputs: [OutputFidelity],
                accuracy: [AccuracyResult], notes: [String] = []) {
        self.reference = reference
        self.candidate = candidate
        self.data = data
        self.samples = samples
        self.outputs = outputs
        self.accuracy = accuracy
        self.compressionRatio = candidate.fileBytes > 0 ? Double(reference.fileBytes) / Double(candidate.fileBytes) : 0
        if let slow = reference.latency?.medianMs, let fast = candidate.latency?.medianMs, fast > 0 {
            self.speedup = slow / fast
        } else {
            self.speedup = nil
        }
        self.notes = notes
    }

    enum CodingKeys: String, CodingKey {
        case reference, candidate, data, samples, outputs, accuracy, speedup, notes, layers
        case compressionRatio = "compression_ratio"
    }

    /// Pretty-printed JSON with sorted keys.
    public func json() throws -> Data {
        try Self.encoder.encode(self)
    }

    /// Reads a report written by `json()`.
    public static func decode(_ data: Data) throws -> EvaluationReport {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try decoder.decode(EvaluationReport.self, from: data)
    }

    static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return encoder
    }

    /// A readable summary, one fact per line.
    public func formatted() -> String {
        var lines: [String] = []
        lines.append("reference: \(reference.name) (\(Self.bytes(reference.fileBytes)))")
        lines.append("candidate: \(candidate.name) (\(Self.bytes(candidate.fileBytes))), "
                     + String(format: "compression %.2fx", compressionRatio))
        lines.append("data: \(data), \(samples) samples")
        for output in outputs {
            var line = String(format: "output '%@': cosine mean %.5f, worst %.5f (sample %d), SQNR %@, max |error| %.4g",
                              output.name, output.meanCosine, output.worstCosine, output.worstSample,
                              Self.decibels(output.sqnrDB), output.maxAbsError)
            if let agreement = output.argmaxAgreement {
                line += String(format: ", argmax agreement %.2f%%", 100 * agreement)
            }
            if output.nonFiniteSamples > 0 { line += ", \(output.nonFiniteSamples) samples with NaN/Inf" }
            lines.append(line)
        }
        for result in accuracy {
            lines.append(String(format: "accuracy ('%@' on '%@', %d positions): reference %.2f%%, candidate %.2f%%, drop %.2f points",
                                result.labelsKey, result.output, result.positions, 100 * result.reference,
                                100 * result.candidate, result.dropPoints))
        }
        if let slow = reference.latency, let fast = candidate.latency {
            lines.append(String(format: "latency (batch %d, median of %d runs, %d threads): reference %.3f ms, candidate %.3f ms, speedup %.2fx",
                                slow.batchSize, slow.iterations, slow.threads, slow.medianMs, fast.medianMs,
                                speedup ?? 0))
        }
        for (role, facts) in [("reference", reference), ("candidate", candidate)] {
            guard let macs = facts.multiplyAccumulates else { continue }
            var line = String(format: "integer MACs (%@): %.1f%% of %@ per sample", role, 100 * macs.integerShare,
                              Self.count(macs.total))
            let parts = macs.byOperator.map {
                String(format: "%@ %@ (%.0f%% integer)", $0.opType, Self.count($0.macs),
                       $0.macs > 0 ? 100 * Double($0.integerMacs) / Double($0.macs) : 0)
            }
            if !parts.isEmpty { line += ": " + parts.joined(separator: ", ") }
            lines.append(line)
        }
        if let macs = candidate.multiplyAccumulates, macs.integer > 0, macs.integer < macs.total {
            // Where a partly quantized model still computes in float, largest first.
            let float = macs.nodes.filter { !$0.integer }.sorted { $0.macs > $1.macs }
            let shown = float.prefix(6).map { "\($0.name) (\(Self.count($0.macs)))" }
            lines.append("float in the candidate: " + shown.joined(separator: ", ")
                         + (float.count > shown.count ? " and \(float.count - shown.count) more" : ""))
        }
        if let layers { lines.append(contentsOf: Self.formattedLayers(layers)) }
        lines.append(contentsOf: notes.map { "note: \($0)" })
        return lines.joined(separator: "\n")
    }

    /// The nodes that add the most noise, most first.
    static func formattedLayers(_ layers: [LayerFidelity], shown: Int = 10) -> [String] {
        let samples = layers.first?.fidelity.samples ?? 0
        var lines = ["per-layer error (\(layers.count) values compared on \(samples) samples); nodes adding the most noise:"]
        let ranked = layers.compactMap { layer in layer.addedNoiseDB.map { (layer, $0) } }
            .filter { $0.1.isFinite }.sorted { $0.1 > $1.1 }
        for (layer, added) in ranked.prefix(shown) {
            lines.append(String(format: "  noise %.1f dB", added) + " \(layer.node) (\(layer.opType)) → '\(layer.name)': SQNR "
                         + decibels(layer.inputSQNRDB!) + " in, " + decibels(layer.fidelity.sqnrDB) + " out"
                         + String(format: ", cosine %.5f", layer.fidelity.meanCosine))
        }
        if ranked.isEmpty { lines.append("  none: every compared value is as close as its inputs") }
        return lines
    }

    /// "1.23 MB", "456.7 KB" or "789 B" (powers of 1000: file sizes as `ls -h --si` shows them).
    public static func bytes(_ count: Int) -> String {
        let value = Double(count)
        if value >= 1e6 { return String(format: "%.2f MB", value / 1e6) }
        if value >= 1e3 { return String(format: "%.1f KB", value / 1e3) }
        return "\(count) B"
    }

    /// "12.3 G", "4.56 M", "789 K" or a plain number.
    static func count(_ value: Int) -> String {
        let number = Double(value)
        if number >= 1e9 { return String(format: "%.2f G", number / 1e9) }
        if number >= 1e6 { return String(format: "%.2f M", number / 1e6) }
        if number >= 1e3 { return String(format: "%.1f K", number / 1e3) }
        return "\(value)"
    }

    static func decibels(_ value: Double) -> String {
        value.isFinite ? String(format: "%.2f dB", value) : (value > 0 ? "inf dB (identical)" : "-inf dB")
    }
}
