import Foundation
import GraphIR
import Runtime
import Tensors

/// Chooses the weights that weight-only mode keeps at 8 bits when the run asks for fewer: those whose
/// low-bit error costs the model's outputs the most per extra byte, within a size budget.
///
/// A weight's harm is measured end to end: the float model is run with only that weight replaced by its
/// dequantized low-bit values, and `harm = mean over float outputs of (1 − mean row cosine)` against the
/// float model's outputs, on the first rows of the calibration data or, without any, on synthetic
/// inputs (`SyntheticInputs`). Weight error statistics alone cannot tell which weights matter: on
/// MiniLM every int4 weight has an SQNR of 20–21 dB, yet the value and FFN projections cost the
/// embedding ten times more cosine than the query and key projections, whose errors Softmax damps.
/// Greedily, largest `harm / extra bytes` first, a weight is promoted when its extra bytes still fit
/// `budget · Σ low-bit bytes`.
struct WeightPromotion {
    /// One weight that could be promoted.
    struct Candidate {
        /// The weight's name (an initializer of the float model).
        var name: String
        /// Its dequantized low-bit values, in the weight's shape (made when measured, so only one copy
        /// exists at a time).
        var lowBit: () throws -> Tensor
        /// Bytes stored at the requested type (codes, scales, zero points) and at 8 bits.
        var lowBitBytes: Int
        var eightBitBytes: Int
    }

    /// The chosen weights and what was measured.
    struct Outcome {
        var promoted: Set<String> = []
        /// Harm per weight measured, by name.
        var harm: [String: Double] = [:]
        /// Extra bytes the promotions cost, and the budget they had.
        var extraBytes = 0
        var budgetBytes = 0
        /// Where the inputs came from ("calibration rows", "synthetic inputs"), or why nothing was measured.
        var source: String
    }

    /// Rows of calibration data, or of synthetic inputs, the harm is measured on.
    static let rows = 8

    let model: Model
    let options: QuantizationOptions

    /// Measures every candidate's harm and chooses the promotions within `budget` (a fraction of the
    /// candidates' low-bit bytes).
    ///
    /// - Parameter progress: told (weights measured, weights in all).
    func choose(_ candidates: [Candidate], budget: Double, calibration: CalibrationData?,
                progress: (Int, Int) -> Void) throws -> Outcome {
        let lowBitTotal = candidates.reduce(0) { $0 + $1.lowBitBytes }
        let budgetBytes = Int((Double(lowBitTotal) * budget).rounded(.down))
        guard budgetBytes > 0, !candidates.isEmpty else { return Outcome(source: "no budget") }
        let feeds: [String: Tensor]
        let source: String
        if let calibration {
            let inputs = Set(model.graph.runtimeInputs.map(\.name))
            feeds = try calibration.arrays.filter { inputs.contains($0.key) }.mapValues { try $0.leadingRows(Self.rows) }
            source = "the first \(Self.rows) calibration rows"
        } else if let synthetic = SyntheticInputs.make(for: model.graph, rows: Self.rows) {
            feeds = synthetic
            source = "synthetic inputs (\(SyntheticInputs.description))"
        } else {
            return Outcome(source: "no input could be synthesised for the model (an input of unknown type or rank)")
        }
        let threads = options.threadCount ?? ProcessInfo.processInfo.activeProcessorCount
        let sessionOptions = SessionOptions(threadCount: threads)
        let reference = try Session(model: model, options: sessionOptions).run(feeds)
        var outcome = Outcome(budgetBytes: budgetBytes, source: source)
        for (done, candidate) in candidates.enumerated() {
            progress(done, candidates.count)
            var probe = model
            probe.graph.initializers[candidate.name] = try candidate.lowBit()
            let outputs = try Session(model: probe, options: sessionOptions).run(feeds)
            outcome.harm[candidate.name] = Self.harm(reference, outputs)
        }
        progress(candidates.count, candidates.count)

        let ranked = candidates.filter { (outcome.harm[$0.name] ?? 0) > 0 && $0.eightBitBytes > $0.lowBitBytes }
            .sorted { a, b in
                let (x, y) = (outcome.harm[a.name]! / Double(a.eightBitBytes - a.lowBitBytes),
                              outcome.harm[b.name]! / Double(b.eightBitBytes - b.lowBitBytes))
                return x != y ? x > y : a.name < b.name
            }
        for candidate in ranked {
            let extra = candidate.eightBitBytes - candidate.lowBitBytes
            if outcome.extraBytes + extra <= budgetBytes {
                outcome.promoted.insert(candidate.name)
                outcome.extraBytes += extra
            }
        }
        return outcome
    }

    /// `mean over float32 outputs of (1 − mean row cosine)` of `outputs` against `reference`; rows are
    /// the first axis. Outputs that differ in shape, or hold non-finite values, count as 1 (all lost).
    static func harm(_ reference: [String: Tensor], _ outputs: [String: Tensor]) -> Double {
        var total = 0.0, count = 0
        for (name, expected) in reference.sorted(by: { $0.key < $1.key }) where expected.dtype == .float32 {
            count += 1
            guard let actual = outputs[name], actual.dtype == .float32, actual.shape == expected.shape else {
                total += 1
                continue
            }
            let rows = max(expected.shape.first ?? 1, 1), width = expected.count / rows
            guard width > 0 else { continue }
            var cosines = 0.0
            expected.withUnsafeBufferPointer(as: Float.self) { a in
                actual.withUnsafeBufferPointer(as: Float.self) { b in
                    for r in 0..<rows {
                        var dot = 0.0, aa = 0.0, bb = 0.0
                        for i in (r * width)..<((r + 1) * width) {
                            let (x, y) = (Double(a[i]), Double(b[i]))
                            dot += x * y
                            aa += x * x
                            bb += y * y
                        }
                        let cosine = aa > 0 && bb > 0 ? dot / (aa * bb).squareRoot() : (aa == bb ? 1 : 0)
                        cosines += cosine.isFinite ? cosine : 0
                    }
                }
            }
            total += 1 - cosines / Double(rows)
        }
        return count == 0 ? 0 : total / Double(count)
    }
}

/// Inputs made up for a model when no data is given, deterministic (a fixed-seed generator):
///
/// - float32 inputs: standard normal values;
/// - integer inputs read as indices by a Gather of a constant table: uniform over the table's rows
///   (token ids, segment ids);
/// - other integer inputs: ones when the name contains "mask" (attention masks), else zeros.
///
/// Symbolic dimensions become `rows` for the first axis and 64 for the others (a sequence length every
/// position table we know of holds).
enum SyntheticInputs {
    /// Length given to symbolic dimensions after the first.
    static let symbolicLength = 64

    static let description = "normal floats, token ids uniform over their table, masks of ones"

    /// One tensor per runtime input, or nil when some input's type or rank is not declared or is not
    /// float32 or a 32/64-bit integer.
    static func make(for graph: Graph, rows: Int) -> [String: Tensor]? {
        let constants = graph.constantValues
        var tableRows: [String: Int] = [:]
        for node in graph.nodes where node.opType == "Gather" && node.normalizedDomain.isEmpty && node.inputs.count == 2 {
            guard let table = constants[node.inputs[0]], let axis0 = table.shape.first,
                  (node.attributes["axis"]?.intValue ?? 0) == 0 else { continue }
            tableRows[node.inputs[1]] = min(tableRows[node.inputs[1]] ?? .max, axis0)
        }
        var generator = SplitMix64(seed: 0x5157_4154)
        var feeds: [String: Tensor] = [:]
        for input in graph.runtimeInputs {
            guard let dtype = input.type?.tensorElementType, let dims = input.type?.tensorShape else { return nil }
            let shape = dims.enumerated().map { index, dim in dim.intValue ?? (index == 0 ? rows : symbolicLength) }
            // Declared shapes come from the file: a huge or negative one makes no input.
            var count = 1
            for extent in shape {
                let (product, overflow) = count.multipliedReportingOverflow(by: extent)
                guard extent >= 0, !overflow, product <= 1 << 26 else { return nil }
                count = product
            }
            switch dtype {
            case .float32:
                feeds[input.name] = try? Tensor(shape: shape, scalars: (0..<count).map { _ in generator.normal() })
            case .int64, .int32:
                let values: [Int64]
                if let limit = tableRows[input.name], limit > 0 {
                    values = (0..<count).map { _ in Int64(generator.next() % UInt64(limit)) }
                } else {
                    let fill: Int64 = input.name.lowercased().contains("mask") ? 1 : 0
                    values = [Int64](repeating: fill, count: count)
                }
                feeds[input.name] = dtype == .int64
                    ? try? Tensor(shape: shape, scalars: values)
                    : try? Tensor(shape: shape, scalars: values.map { Int32($0) })
            default:
                return nil
            }
            if feeds[input.name] == nil { return nil }
        }
        return feeds
    }
}

/// SplitMix64 (Steele, Lea and Flood, 2014): a small deterministic generator.
struct SplitMix64 {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform value in [0, 1) from the top 24 bits.
    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) }

    /// A standard normal value (Box–Muller).
    mutating func normal() -> Float {
        let u = max(uniform(), Float.leastNormalMagnitude), v = uniform()
        return (-2 * log(u)).squareRoot() * cos(2 * Float.pi * v)
    }
}
