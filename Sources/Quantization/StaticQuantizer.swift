import GraphIR

/// Static int8/QDQ/QOperator quantization (placeholder: lands with issue 4).
struct StaticQuantizer {
    let options: QuantizationOptions

    func quantize(_ model: Model, calibration: CalibrationData, progress: @escaping (Int, Int) -> Void) throws -> QuantizationResult {
        throw QuantizationError.unsupportedOption("--mode \(options.mode.rawValue) is not implemented yet")
    }
}
