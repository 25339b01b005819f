import Foundation

/// What a quantization run did, tensor by tensor and node by node, and why — written as JSON by
/// `swiftquant quantize --report`.
public struct QuantizationReport: Sendable, Codable, Equatable {
    /// The fate of one tensor.
    public struct TensorDecision: Sendable, Codable, Equatable {
        public enum Role: String, Sendable, Codable { case weight, activation, bias }
        public enum Action: String, Sendable, Codable {
            /// Quantized with the run's type.
            case quantized
            /// Left in float; `reason` says why (non-finite range, masking constant, policy, plan, …).
            case keptFloat = "kept-float"
            /// Quantized to a wider type than the run's default because its error was out of line.
            case widened
            /// Quantized with a clip tighter than its observed range because its error was out of line.
            case clipped
        }
        public var name: String
        public var role: Role
        public var action: Action
        /// The storage type used ("uint8", "int4", …); `nil` when kept float.
        public var type: String?
        public var reason: String?
        /// Signal-to-quantization-noise ratio measured on the calibration set (activations) or on the
        /// weights themselves, in dB.
        public var sqnrDB: Double?

        public init(name: String, role: Role, action: Action, type: String? = nil, reason: String? = nil,
                    sqnrDB: Double? = nil) {
            self.name = name
            self.role = role
            self.action = action
            self.type = type
            self.reason = reason
            self.sqnrDB = sqnrDB
        }

        enum CodingKeys: String, CodingKey {
            case name, role, action, type, reason
            case sqnrDB = "sqnr_db"
        }
    }

    /// The fate of one node.
    public struct NodeDecision: Sendable, Codable, Equatable {
        public var name: String
        public var opType: String
        /// Whether the node computes (or passes data) in the quantized domain.
        public var quantized: Bool
        public var reason: String?

        public init(name: String, opType: String, quantized: Bool, reason: String? = nil) {
            self.name = name
            self.opType = opType
            self.quantized = quantized
            self.reason = reason
        }

        enum CodingKeys: String, CodingKey {
            case name, reason, quantized
            case opType = "op_type"
        }
    }

    public var mode: QuantizationMode
    public var format: QuantizedFormat
    public var options: QuantizationOptions
    public var tensors: [TensorDecision]
    public var nodes: [NodeDecision]
    /// Anything else a user should know (passes applied, fallbacks taken, …).
    public var notes: [String]

    public init(options: QuantizationOptions, tensors: [TensorDecision] = [], nodes: [NodeDecision] = [],
                notes: [String] = []) {
        self.mode = options.mode
        self.format = options.format
        self.options = options
        self.tensors = tensors
        self.nodes = nodes
        self.notes = notes
    }

    /// Pretty-printed JSON with sorted keys.
    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }
}
