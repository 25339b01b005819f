/// Why an evaluation could not run, naming the file, model, input, output or array at fault.
public enum EvaluationError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The data has no array for an input a model needs.
    case missingInput(model: String, input: String, data: String, available: [String])
    /// An array used by the evaluation has a different number of rows than the others.
    case rowCountMismatch(data: String, array: String, rows: Int, expected: Int)
    /// The data has no rows (or `--rows 0`).
    case emptyData(data: String)
    /// The two models do not produce the same named outputs.
    case outputsDiffer(reference: String, candidate: String, onlyInReference: [String], onlyInCandidate: [String])
    /// The two models gave differently shaped values for one output.
    case outputShapeMismatch(output: String, reference: [Int], candidate: [Int])
    /// The labels key names no array of the data.
    case missingLabels(key: String, data: String, available: [String])
    /// The labels array cannot be used (type, shape, values).
    case invalidLabels(key: String, data: String, reason: String)
    /// The position mask of a per-layer comparison is missing or of the wrong shape.
    case invalidPositionMask(key: String, data: String, reason: String)
    /// A model failed to load, compile or run.
    case modelFailed(model: String, reason: String)
    /// An option value out of range.
    case invalidOption(String)

    public var description: String {
        switch self {
        case .missingInput(let model, let input, let data, let available):
            return "\(data): no array named '\(input)' for input '\(input)' of \(model) "
                + "(arrays: \(available.joined(separator: ", ")))"
        case .rowCountMismatch(let data, let array, let rows, let expected):
            return "\(data): array '\(array)' has \(rows) rows, the other arrays \(expected)"
        case .emptyData(let data):
            return "\(data): no samples to evaluate"
        case .outputsDiffer(let reference, let candidate, let onlyInReference, let onlyInCandidate):
            var parts: [String] = []
            if !onlyInReference.isEmpty {
                parts.append("only \(reference) has \(onlyInReference.map { "'\($0)'" }.joined(separator: ", "))")
            }
            if !onlyInCandidate.isEmpty {
                parts.append("only \(candidate) has \(onlyInCandidate.map { "'\($0)'" }.joined(separator: ", "))")
            }
            return "the models' outputs differ: " + parts.joined(separator: "; ")
        case .outputShapeMismatch(let output, let reference, let candidate):
            return "output '\(output)': the reference gives shape \(reference), the candidate \(candidate)"
        case .missingLabels(let key, let data, let available):
            return "\(data): no labels array '\(key)' (arrays: \(available.joined(separator: ", ")))"
        case .invalidLabels(let key, let data, let reason):
            return "\(data): labels '\(key)' \(reason)"
        case .invalidPositionMask(let key, let data, let reason):
            return "\(data): position mask '\(key)' \(reason)"
        case .modelFailed(let model, let reason):
            return "\(model): \(reason)"
        case .invalidOption(let reason):
            return reason
        }
    }
}
