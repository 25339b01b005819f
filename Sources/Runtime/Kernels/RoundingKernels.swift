// Round (opset 11): to the nearest integer, ties to even, as ONNX specifies (numpy's `round`).
// Quantization graphs written as plain ops (e.g. DynamicQuantizeLinear's function body) use it.

struct RoundHalfToEvenFunction: FloatFunction {
    @inline(__always) func apply<T: ElementwiseFloat>(_ x: T) -> T { x.rounded(.toNearestOrEven) }
}

extension KernelRegistry {
    mutating func registerRoundingKernels() {
        register("Round", since: 11) { _ in FloatFunctionKernel(opType: "Round", function: RoundHalfToEvenFunction()).specialized }
    }
}
