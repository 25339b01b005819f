import QuantCore

/// Per-node overrides of the quantization policy: the output of sensitivity analysis, or written by hand.
///
/// JSON: `{"nodes": {"NODE": {"skip": true}, "OTHER": {"weight_type": "int4", "activation_type": "int16"}}}`.
public struct QuantizationPlan: Sendable, Codable, Equatable {
    /// What to do differently for one node.
    public struct NodeOverride: Sendable, Codable, Equatable {
        /// Leave the node in float.
        public var skip: Bool
        public var weightType: QuantType?
        public var activationType: QuantType?

        public init(skip: Bool = false, weightType: QuantType? = nil, activationType: QuantType? = nil) {
            self.skip = skip
            self.weightType = weightType
            self.activationType = activationType
        }

        enum CodingKeys: String, CodingKey {
            case skip
            case weightType = "weight_type"
            case activationType = "activation_type"
        }

        public init(from decoder: Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            skip = try container.decodeIfPresent(Bool.self, forKey: .skip) ?? false
            weightType = try container.decodeIfPresent(QuantType.self, forKey: .weightType)
            activationType = try container.decodeIfPresent(QuantType.self, forKey: .activationType)
        }
    }

    /// Overrides by node name.
    public var nodes: [String: NodeOverride]

    public init(nodes: [String: NodeOverride] = [:]) { self.nodes = nodes }
}
