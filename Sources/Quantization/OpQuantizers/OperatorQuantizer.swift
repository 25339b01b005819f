import GraphIR
import Tensors

/// What an operator does in a statically quantized graph.
public enum OperatorRole: String, Sendable, Codable, Equatable {
    /// Multiplies activations by weights in integer arithmetic (Conv, ConvTranspose, Gemm, MatMul): its float
    /// inputs are quantized, constant weights are stored as int8 per output channel, a constant bias as int32
    /// with scale `s_in · s_w`.
    case integerCompute = "integer-compute"
    /// Computes between quantized tensors (Add, Mul, Concat, average pooling, HardSwish, …): quantized when
    /// its inputs come out of the quantized domain and a quantized operator reads its output.
    case quantizedDomain = "quantized-domain"
    /// Moves or selects values without changing them (Reshape, Transpose, MaxPool, Gather, …): its output
    /// shares its input's scale and zero point.
    case passThrough = "pass-through"
    /// A clamp (Relu, Clip) that folds into the output range of the operator before it: quantizing that
    /// output with the clamp's range clamps as well, so the node disappears.
    case clamp
}

/// Where a compute operator keeps its constant weight and bias.
public struct WeightSlots: Sendable, Equatable {
    /// The input holding the weight.
    public var weight: Int
    /// The weight axis indexing output channels (one scale each), or nil for one scale per tensor.
    public var outputChannelAxis: Int?
    /// The weight axis summed over (K), when the activation's last axis is that same K so per-channel
    /// smoothing factors can move from the activation into the weight; nil when that does not hold.
    public var reductionAxis: Int?
    /// The input holding a constant bias added per output channel, stored int32.
    public var bias: Int?
    /// Inputs that are neither activations nor quantized (e.g. Gemm's C when it cannot be an int32 bias).
    public var parameters: [Int]

    public init(weight: Int, outputChannelAxis: Int?, reductionAxis: Int? = nil, bias: Int? = nil,
                parameters: [Int] = []) {
        self.weight = weight
        self.outputChannelAxis = outputChannelAxis
        self.reductionAxis = reductionAxis
        self.bias = bias
        self.parameters = parameters
    }
}

/// Quantizes one kind of operator: says which role it plays, which inputs are activations, and where the
/// weights are. Implementations are small value types listed in `OperatorQuantizerRegistry.standard`.
public protocol OperatorQuantizer: Sendable {
    var role: OperatorRole { get }
    /// The inputs that carry activations (before removing constants and omitted inputs): all of them except
    /// shapes, axes, bounds, weights and biases.
    func dataInputs(of node: Node, constants: [String: Tensor]) -> [Int]
    /// Integer-compute operators: the constant weight and bias, or nil when the weight is not constant.
    func weights(of node: Node, constants: [String: Tensor]) -> WeightSlots?
    /// Why this node must stay float (an attribute or input this quantizer does not handle), or nil.
    func floatReason(for node: Node, constants: [String: Tensor]) -> String?
}

extension OperatorQuantizer {
    public func dataInputs(of node: Node, constants: [String: Tensor]) -> [Int] { [0] }
    public func weights(of node: Node, constants: [String: Tensor]) -> WeightSlots? { nil }
    public func floatReason(for node: Node, constants: [String: Tensor]) -> String? { nil }
}

/// The one place that maps an operator type (default ONNX domain) to what quantizes it.
///
/// Operators not listed stay float; `floatByDesign` says why for the ones that stay float on purpose.
public struct OperatorQuantizerRegistry: Sendable {
    public var quantizers: [String: any OperatorQuantizer]

    public init(quantizers: [String: any OperatorQuantizer]) { self.quantizers = quantizers }

    /// The quantizer of `node`, or nil when its operator stays float.
    public func quantizer(for node: Node) -> (any OperatorQuantizer)? {
        node.normalizedDomain.isEmpty ? quantizers[node.opType] : nil
    }

    /// Operator types with the given role.
    public func operatorTypes(_ role: OperatorRole) -> Set<String> {
        Set(quantizers.filter { $0.value.role == role }.keys)
    }

    public static let standard = OperatorQuantizerRegistry(quantizers: [
        "Conv": ConvQuantizer(),
        "ConvTranspose": ConvTransposeQuantizer(),
        "Gemm": GemmQuantizer(),
        "MatMul": MatMulQuantizer(),

        "Add": ElementwiseQuantizer(),
        "Mul": ElementwiseQuantizer(),
        "Concat": ConcatQuantizer(),
        "AveragePool": UnaryDomainQuantizer(),
        "GlobalAveragePool": UnaryDomainQuantizer(),
        "HardSwish": UnaryDomainQuantizer(),
        "HardSigmoid": UnaryDomainQuantizer(),
        "LeakyRelu": UnaryDomainQuantizer(),
        "Sigmoid": UnaryDomainQuantizer(),

        "Relu": ClampQuantizer(),
        "Clip": ClampQuantizer(),

        "Reshape": PassThroughQuantizer(),
        "Transpose": PassThroughQuantizer(),
        "Flatten": PassThroughQuantizer(),
        "Squeeze": PassThroughQuantizer(),
        "Unsqueeze": PassThroughQuantizer(),
        "Slice": PassThroughQuantizer(),
        "Gather": PassThroughQuantizer(),
        "MaxPool": PassThroughQuantizer(),
        "Resize": PassThroughQuantizer(),
    ])

    /// Operators that stay float by default on purpose, with the reason the report gives.
    public static let floatByDesign: [String: String] = [
        "Softmax": "Softmax stays float: its exponentials need float range and precision",
        "LogSoftmax": "LogSoftmax stays float: its exponentials need float range and precision",
        "LayerNormalization": "LayerNormalization stays float: mean and variance need float precision",
        "Erf": "Erf (GELU) stays float",
        "Gelu": "GELU stays float",
        "Div": "Div stays float (attention scaling and mask arithmetic)",
        "Sub": "Sub stays float (attention mask arithmetic)",
        "Where": "Where stays float (attention mask arithmetic)",
    ]
}
