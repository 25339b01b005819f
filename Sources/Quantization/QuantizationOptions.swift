import Calibration
import QuantCore

/// What a quantization run produces.
public enum QuantizationMode: String, Codable, Sendable, CaseIterable {
    /// Weights and activations in integers with scales fixed by a calibration set.
    case `static` = "static"
    /// Weights quantized offline; activation scales computed at run time from each input.
    case dynamic = "dynamic"
    /// Weights stored low-bit per group along the reduction axis; activations stay float.
    case weightOnly = "weight-only"
    /// Weights and activations in float16; operators that need float32 keep it behind Cast nodes.
    case fp16 = "fp16"
}

/// How quantized operators are written in ONNX.
public enum QuantizedFormat: String, Codable, Sendable, CaseIterable {
    /// QuantizeLinear/DequantizeLinear pairs around float operators (what ONNX Runtime and TensorRT fuse).
    case qdq = "qdq"
    /// Integer operators: QLinearConv, QLinearMatMul, MatMulInteger, ConvInteger, …
    case qoperator = "qoperator"
}

/// How dynamic mode quantizes an activation at run time.
public enum DynamicActivationScheme: String, Codable, Sendable, CaseIterable {
    /// One uint8 scale and zero point per tensor, from the tensor's range (`DynamicQuantizeLinear`:
    /// `s = (max(x_max, 0) − min(x_min, 0)) / 255`, `z = saturate(round(−min(x_min, 0) / s))`) — the pattern
    /// ONNX Runtime's `quantize_dynamic` writes.
    case perTensor = "per-tensor"
    /// One int8 scale per row (token) of a MatMul/Gemm input, symmetric: `s_r = max_k |x_rk| / 127`,
    /// `q_rk = round_half_even(x_rk / s_r)`. An outlier then costs precision only in its own row.
    /// Convolutions keep `perTensor` (their rows are not tokens).
    case perToken = "per-token"
}

/// Every option of `swiftquant quantize`, typed. The defaults are the ones that must keep accuracy on
/// real models without tuning (DESIGN.md §5).
public struct QuantizationOptions: Sendable, Codable, Equatable {
    public var mode: QuantizationMode
    /// Calibration method for static mode.
    public var method: CalibrationMethod
    /// Weight type; `nil` picks the mode's default (int8; int4 for weight-only).
    public var weightType: QuantType?
    /// Activation type for static mode.
    public var activationType: QuantType
    /// One scale per output channel for weights (per group when `groupSize` is set).
    public var perChannel: Bool
    /// Weight group size along the reduction axis; `nil` picks the mode's default (32 for weight-only,
    /// none otherwise).
    public var groupSize: Int?
    /// Symmetric weights (zero point 0). Weight-only mode may store asymmetric groups when false.
    public var symmetricWeights: Bool
    /// Symmetric activation ranges (zero point 0 or mid-range).
    public var symmetricActivations: Bool
    public var format: QuantizedFormat
    /// Operator types to quantize; `nil` means the policy's default set.
    public var operatorTypes: Set<String>?
    /// Node names left in float.
    public var excludedNodes: Set<String>
    /// Per-node overrides (`QuantizationPlan`), written by hand or by a sensitivity analysis.
    public var plan: QuantizationPlan?
    /// Samples per calibration run.
    public var calibrationBatchSize: Int
    /// Calibration uses at most this many samples (the first ones); `nil` uses all.
    public var calibrationLimit: Int?
    /// Percentile for `method == .percentile`.
    public var percentile: Double
    /// Threads the runtime may use during calibration.
    public var threadCount: Int?
    /// How dynamic mode quantizes MatMul/Gemm activations at run time. Per token by default: on MiniLM
    /// per-tensor scales (ONNX Runtime's `quantize_dynamic` pattern) reach a mean cosine of 0.9928 to FP32,
    /// per-token scales 0.9973 — a few channels with large values no longer set the step for every row.
    public var dynamicActivations: DynamicActivationScheme
    /// Static mode: move per-channel activation ranges into the weights that read them (SmoothQuant) where
    /// the error estimate says it helps.
    public var smoothing: Bool
    /// Static mode: also run matrix products of two activations (attention's `Q·Kᵀ` and `P·V`) in integers.
    /// Off by default: they are a few percent of a Transformer's multiply-accumulates, their errors pass
    /// through Softmax's exponential, and rounding flips there make integer runtimes disagree the most.
    public var quantizeActivationProducts: Bool
    /// Weight-only mode below 8 bits: extra bytes, as a fraction of the bytes every weight takes at the
    /// requested type, that may keep the weights whose low-bit error hurts the outputs most at 8 bits (one
    /// scale per channel). The harm of each weight is measured end to end on calibration rows or, without
    /// data, on synthetic inputs (`WeightPromotion`). 0 keeps every weight at the requested type. On
    /// MiniLM with int4 groups of 32 and no calibration, 0.25 takes the embedding cosine from 0.965 to
    /// 0.997 and the file from 15.9% to 19.8% of FP32.
    public var promotionBudget: Double

    public init(
        mode: QuantizationMode = .static, method: CalibrationMethod = .minMax, weightType: QuantType? = nil,
        activationType: QuantType = .uint8, perChannel: Bool = true, groupSize: Int? = nil,
        symmetricWeights: Bool = true, symmetricActivations: Bool = false, format: QuantizedFormat = .qdq,
        operatorTypes: Set<String>? = nil, excludedNodes: Set<String> = [], plan: QuantizationPlan? = nil,
        calibrationBatchSize: Int = 16, calibrationLimit: Int? = nil, percentile: Double = 99.99,
        threadCount: Int? = nil, dynamicActivations: DynamicActivationScheme = .perToken, smoothing: Bool = true,
        quantizeActivationProducts: Bool = false, promotionBudget: Double = 0.2
    ) {
        self.mode = mode
        self.method = method
        self.weightType = weightType
        self.activationType = activationType
        self.perChannel = perChannel
        self.groupSize = groupSize
        self.symmetricWeights = symmetricWeights
        self.symmetricActivations = symmetricActivations
        self.format = format
        self.operatorTypes = operatorTypes
        self.excludedNodes = excludedNodes
        self.plan = plan
        self.calibrationBatchSize = calibrationBatchSize
        self.calibrationLimit = calibrationLimit
        self.percentile = percentile
        self.threadCount = threadCount
        self.dynamicActivations = dynamicActivations
        self.smoothing = smoothing
        self.quantizeActivationProducts = quantizeActivationProducts
        self.promotionBudget = promotionBudget
    }

    /// The weight type this run uses.
    public var resolvedWeightType: QuantType {
        if let weightType { return weightType }
        switch mode {
        case .weightOnly: return .int4
        case .fp16: return .float16
        case .static, .dynamic: return .int8
        }
    }

    /// The group size this run uses, if any.
    public var resolvedGroupSize: Int? { groupSize ?? (mode == .weightOnly ? 32 : nil) }
}
