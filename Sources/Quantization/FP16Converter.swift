import GraphIR

/// Float16 conversion (placeholder: lands with issue 4).
struct FP16Converter {
    let options: QuantizationOptions

    func quantize(_ model: Model) throws -> QuantizationResult {
        throw QuantizationError.unsupportedOption("--mode \(options.mode.rawValue) is not implemented yet")
    }
}
