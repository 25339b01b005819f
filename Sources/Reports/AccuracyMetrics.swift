import Tensors

/// Top-1 accuracy of both models on one output against integer labels.
///
/// The output's predicted class at each position is the argmax along its last axis (first index on
/// ties); `accuracy = correct / positions`, and `dropPoints = 100 · (reference − candidate)`, so a
/// positive drop means the candidate lost accuracy.
public struct AccuracyResult: Sendable, Codable, Equatable {
    public var output: String
    public var labelsKey: String
    public var positions: Int
    public var reference: Double
    public var candidate: Double
    public var dropPoints: Double

    public init(output: String, labelsKey: String, positions: Int, reference: Double, candidate: Double) {
        self.output = output
        self.labelsKey = labelsKey
        self.positions = positions
        self.reference = reference
        self.candidate = candidate
        self.dropPoints = 100 * (reference - candidate)
    }

    enum CodingKeys: String, CodingKey {
        case output, positions, reference, candidate
        case labelsKey = "labels_key"
        case dropPoints = "drop_points"
    }
}

/// Counts correct predictions of one output for both models, batch by batch.
public struct AccuracyAccumulator: Sendable {
    public let output: String
    public let labelsKey: String
    private var positions = 0
    private var referenceCorrect = 0
    private var candidateCorrect = 0

    public init(output: String, labelsKey: String) {
        self.output = output
        self.labelsKey = labelsKey
    }

    /// True when `labels` (shape `[batch, …]`) holds one class per position of `output` (shape `[batch, …, classes]`).
    public static func labels(_ labels: [Int], fit output: [Int]) -> Bool {
        output.count >= 2 && Array(output.dropLast()) == labels
    }

    /// The number of positions predicted correctly: `argmax(scores[position]) == labels[position]`.
    ///
    /// - Parameters:
    ///   - scores: `[positions × classes]` row-major float scores.
    ///   - labels: one class index per position.
    public static func correctPredictions(scores: UnsafeBufferPointer<Float>, classes: Int, labels: [Int]) -> Int {
        guard classes > 0 else { return 0 }
        var correct = 0
        for (position, label) in labels.enumerated() {
            let row = UnsafeBufferPointer(rebasing: scores[position * classes..<(position + 1) * classes])
            if FidelityMetrics.argmax(row) == label { correct += 1 }
        }
        return correct
    }

    /// Adds one batch. `labels` are already checked to be in `0..<classes` and to fit the output's shape.
    public mutating func add(reference: Tensor, candidate: Tensor, labels: [Int]) throws {
        let classes = reference.shape.last ?? 0
        for (tensor, isReference) in [(reference, true), (candidate, false)] {
            let scores = try tensor.converted(to: .float32)
            let correct = scores.withUnsafeBufferPointer(as: Float.self) {
                Self.correctPredictions(scores: $0, classes: classes, labels: labels)
            }
            if isReference { referenceCorrect += correct } else { candidateCorrect += correct }
        }
        positions += labels.count
    }

    public var result: AccuracyResult {
        let total = Double(max(positions, 1))
        return AccuracyResult(output: output, labelsKey: labelsKey, positions: positions,
                              reference: Double(referenceCorrect) / total, candidate: Double(candidateCorrect) / total)
    }
}
