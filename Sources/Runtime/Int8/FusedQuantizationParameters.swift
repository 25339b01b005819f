import QuantCore
import Tensors

// Reading the compile-time quantization parameters of fused operators. Every fused kernel takes its
// scales and zero points as constant inputs and checks them here once, when the session is built.

/// Per-tensor quantization of an activation: `x = (q − zeroPoint) · scale`, `q` uint8 or int8.
struct ActivationQuantization: Sendable, Equatable {
    let scale: Float
    let zeroPoint: Int32
    let dtype: DType

    init(scale: Float, zeroPoint: Int32, dtype: DType) {
        self.scale = scale
        self.zeroPoint = zeroPoint
        self.dtype = dtype
    }

    /// Reads a single-element float32 scale (finite, > 0) and an optional single-element uint8/int8 zero
    /// point (absent: 0 of uint8), as DequantizeLinear and QuantizeLinear interpret them.
    init(scale: Tensor?, zeroPoint: Tensor?, what: String) throws {
        guard let scale else { throw KernelError.invalid("\(what) scale must be a constant") }
        guard scale.dtype == .float32, scale.count == 1 else {
            throw KernelError.invalid("\(what) scale must be one float32 value, got \(scale.dtype) \(scale.shape)")
        }
        let value = scale.scalars(as: Float.self)[0]
        guard value.isFinite, value > 0 else { throw KernelError.invalid("\(what) scale \(value) must be finite and > 0") }
        self.scale = value
        if let zeroPoint {
            guard zeroPoint.count == 1, zeroPoint.dtype == .uint8 || zeroPoint.dtype == .int8 else {
                throw KernelError.invalid(
                    "\(what) zero point must be one uint8 or int8 value, got \(zeroPoint.dtype) \(zeroPoint.shape)")
            }
            self.zeroPoint = try zeroPoint.quantizedIntegerValues(input: 0)[0]
            dtype = zeroPoint.dtype
        } else {
            self.zeroPoint = 0
            dtype = .uint8
        }
    }

    /// The saturation range of the 8-bit type.
    var range: ClosedRange<Int32> { dtype == .int8 ? -128...127 : 0...255 }

    /// QuantizeLinear of one value: `clamp(round_half_even(x / scale) + zeroPoint)` in float32 (NaN to the
    /// low end), as the reference QuantizeLinear kernel computes it.
    func quantize(_ x: Float) -> Int32 {
        let shifted = (x / scale).rounded(.toNearestOrEven) + Float(zeroPoint)
        let lower = Float(range.lowerBound), upper = Float(range.upperBound)
        return Int32(shifted > upper ? upper : (shifted >= lower ? shifted : lower))
    }

    /// The output codes a real-valued clamp `[low, high]` (Relu, Clip) leaves: quantization is monotone,
    /// so `Q(clip(x, low, high)) = clamp(Q(x), Q(low), Q(high))` exactly.
    func clampRange(low: Float?, high: Float?) -> ClosedRange<Int32> {
        let lower = low.map(quantize) ?? range.lowerBound
        let upper = high.map(quantize) ?? range.upperBound
        return lower...max(lower, upper)
    }
}

/// Weight quantization of a fused GEMM or convolution: one scale and zero point, or one per output channel.
struct WeightQuantization: Sendable {
    let scales: [Float]
    let zeroPoints: [Int32]

    /// Reads float32 scales and optional zero points (in the weights' type) of `1` or `channels` values.
    init(scale: Tensor?, zeroPoint: Tensor?, weightType: DType, channels: Int) throws {
        guard let scale, scale.dtype == .float32, scale.count == 1 || (scale.rank == 1 && scale.count == channels) else {
            throw KernelError.invalid("weight scale must be float32 of 1 or \(channels) values (output channels)")
        }
        scales = scale.scalars(as: Float.self)
        guard scales.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw KernelError.invalid("weight scales must be finite and > 0")
        }
        if let zeroPoint {
            guard zeroPoint.dtype == weightType, zeroPoint.count == scale.count else {
                throw KernelError.invalid(
                    "weight zero point must be \(weightType) shaped like its scale, got \(zeroPoint.dtype) \(zeroPoint.shape)")
            }
            zeroPoints = try zeroPoint.quantizedIntegerValues(input: 0)
        } else {
            zeroPoints = [0]
        }
    }

    func scale(_ channel: Int) -> Float { scales.count == 1 ? scales[0] : scales[channel] }
}

enum FusedBias {
    /// A float bias in accumulator units: `round_half_even(bias[j] / (s_in · s_w[j]))`, computed in double.
    /// Throws when a value is not finite or does not fit int32.
    static func int32(_ bias: [Float], accumulatorScales: [Double]) throws -> [Int32] {
        try bias.indices.map { j in
            let scale = accumulatorScales.count == 1 ? accumulatorScales[0] : accumulatorScales[j]
            let units = (Double(bias[j]) / scale).rounded(.toNearestOrEven)
            guard units.isFinite, let value = Int32(exactly: units) else {
                throw KernelError.invalid("bias \(bias[j]) is \(units) accumulator units at scale \(scale): beyond int32")
            }
            return value
        }
    }

    /// Reads an optional bias constant of `channels` values: int32 (accumulator units, as QLinearConv's
    /// bias) or float32 (real values).
    static func read(_ tensor: Tensor?, channels: Int) throws -> (int32: [Int32]?, float: [Float]?) {
        guard let tensor else { return (nil, nil) }
        guard tensor.count == channels else {
            throw KernelError.invalid("bias must hold \(channels) values, got shape \(tensor.shape)")
        }
        switch tensor.dtype {
        case .int32: return (tensor.scalars(as: Int32.self), nil)
        case .float32: return (nil, tensor.scalars(as: Float.self))
        default: throw KernelError.invalid("bias must be int32 or float32, got \(tensor.dtype)")
        }
    }
}

extension KernelBuildContext {
    /// The constant input `index`, or nil when the input is omitted; throws when it is given but not constant.
    func constantInput(_ index: Int, _ what: String) throws -> Tensor? {
        guard index < node.inputs.count, !node.inputs[index].isEmpty else { return nil }
        guard let value = constant(index) else { throw KernelError.invalid("\(what) (input \(index)) must be a constant") }
        return value
    }

    /// An absorbed `DequantizeLinear [→ Add]` after the output QuantizeLinear: the `dequantize_output`
    /// attribute and the optional float32 `output_bias` (input 9).
    func dequantizedOutput() throws -> (Bool, bias: [Float]?) {
        let enabled = try int("dequantize_output", default: 0) != 0
        guard let bias = try constantInput(9, "output_bias") else { return (enabled, nil) }
        guard enabled, bias.dtype == .float32, bias.rank == 1 else {
            throw KernelError.invalid("output_bias must be 1-D float32 and needs dequantize_output = 1")
        }
        return (enabled, bias.scalars(as: Float.self))
    }

    /// A fused activation clamp from the optional `clip_min` / `clip_max` attributes.
    func fusedClamp() throws -> (low: Float?, high: Float?) {
        (has("clip_min") ? try float("clip_min") : nil, has("clip_max") ? try float("clip_max") : nil)
    }
}
