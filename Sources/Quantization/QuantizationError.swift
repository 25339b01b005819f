/// Why a model could not be quantized, naming the option, node or tensor at fault.
public enum QuantizationError: Error, Equatable, Sendable, CustomStringConvertible {
    /// An option, or a combination of options, this mode does not support.
    case unsupportedOption(String)
    /// Static quantization without calibration data.
    case calibrationDataRequired
    /// The policy found nothing to quantize.
    case nothingToQuantize(reason: String)
    /// A node the policy wanted to quantize has an input or attribute it cannot handle.
    case unsupportedNode(node: String, reason: String)
    /// A plan or exclusion names a node the model does not have.
    case unknownNode(String)

    public var description: String {
        switch self {
        case .unsupportedOption(let reason): return "unsupported option: \(reason)"
        case .calibrationDataRequired: return "static quantization needs calibration data (--calib)"
        case .nothingToQuantize(let reason): return "nothing to quantize: \(reason)"
        case .unsupportedNode(let node, let reason): return "node '\(node)': \(reason)"
        case .unknownNode(let name): return "no node named '\(name)' in the model"
        }
    }
}
