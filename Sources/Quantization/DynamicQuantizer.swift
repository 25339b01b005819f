import GraphIR

/// Dynamic quantization (placeholder: lands with issue 4).
struct DynamicQuantizer {
    let options: QuantizationOptions

    func quantize(_ model: Model) throws -> QuantizationResult {
        throw QuantizationError.unsupportedOption("--mode \(options.mode.rawValue) is not implemented yet")
    }
}
