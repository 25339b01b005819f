import Foundation
import GraphIR

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
        /// The clip range `[min, max]` the parameters were computed from (activations).
        public var range: [Float]?
        /// SmoothQuant migration strength α when per-channel factors moved from this activation into the
        /// weights that read it.
        public var smoothingAlpha: Double?
        /// The value holding the tensor's codes in the written graph (generated names are short, e.g.
        /// `a3_q`, `w5_q`; this maps them back to `name`). Nil when kept float.
        public var codes: String?
        /// The value the float operators read in place of the tensor (e.g. `a3_dq`), when the graph
        /// dequantizes it.
        public var dequantized: String?

        public init(name: String, role: Role, action: Action, type: String? = nil, reason: String? = nil,
                    sqnrDB: Double? = nil, range: [Float]? = nil, smoothingAlpha: Double? = nil,
                    codes: String? = nil, dequantized: String? = nil) {
            self.name = name
            self.role = role
            self.action = action
            self.type = type
            self.reason = reason
            self.sqnrDB = sqnrDB
            self.range = range
            self.smoothingAlpha = smoothingAlpha
            self.codes = codes
            self.dequantized = dequantized
        }

        enum CodingKeys: String, CodingKey {
            case name, role, action, type, reason, range, codes, dequantized
            case sqnrDB = "sqnr_db"
            case smoothingAlpha = "smoothing_alpha"
        }
    }

    /// Multiply-accumulates of the matrix operators (Conv, ConvTranspose, Gemm, MatMul) over the
    /// calibration set, and how many of them run on 8-bit integer operands.
    public struct MultiplyAccumulates: Sendable, Codable, Equatable {
        public var total: Double
        public var integer8: Double
        /// `integer8 / total` (0 when there are none).
        public var integer8Share: Double { total > 0 ? integer8 / total : 0 }
        /// Matrix operators that stay float (or run on wider integers), largest first, with their share.
        public var notInteger8: [NodeShare]

        public struct NodeShare: Sendable, Codable, Equatable {
            public var name: String
            public var share: Double
            public var reason: String
        }

        public init(total: Double, integer8: Double, notInteger8: [NodeShare]) {
            self.total = total
            self.integer8 = integer8
            self.notInteger8 = notInteger8
        }

        enum CodingKeys: String, CodingKey {
            case total, integer8 = "int8", integer8Share = "int8_share", notInteger8 = "not_int8"
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            total = try c.decode(Double.self, forKey: .total)
            integer8 = try c.decode(Double.self, forKey: .integer8)
            notInteger8 = try c.decode([NodeShare].self, forKey: .notInteger8)
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(total, forKey: .total)
            try c.encode(integer8, forKey: .integer8)
            try c.encode(integer8Share, forKey: .integer8Share)
            try c.encode(notInteger8, forKey: .notInteger8)
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
    /// Static mode: multiply-accumulates of the matrix operators and their 8-bit integer share.
    public var multiplyAccumulates: MultiplyAccumulates?

    public init(options: QuantizationOptions, tensors: [TensorDecision] = [], nodes: [NodeDecision] = [],
                notes: [String] = []) {
        self.mode = options.mode
        self.format = options.format
        self.options = options
        self.tensors = tensors
        self.nodes = nodes
        self.notes = notes
        self.multiplyAccumulates = nil
    }

    enum CodingKeys: String, CodingKey {
        case mode, format, options, tensors, nodes, notes
        case multiplyAccumulates = "multiply_accumulates"
    }

    /// Records the written names of each quantized tensor, keeping only names `graph` still defines
    /// (a later conversion may have removed a dequantized value).
    mutating func recordWrittenNames(_ written: [String: WrittenNames], in graph: Graph) {
        let defined = graph.definedValueNames
        for index in tensors.indices where tensors[index].action != .keptFloat {
            guard let names = written[tensors[index].name] else { continue }
            tensors[index].codes = defined.contains(names.codes) ? names.codes : nil
            tensors[index].dequantized = names.dequantized.flatMap { defined.contains($0) ? $0 : nil }
        }
    }

    /// Pretty-printed JSON with sorted keys.
    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }
}
