import GraphIR
import Tensors

/// A kernel that returns the same tensors on every run.
struct FixedOutputKernel: Kernel {
    let outputs: [Tensor]
    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] { outputs }
}

/// A kernel that passes its inputs through (Identity).
struct PassThroughKernel: Kernel {
    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        guard let first = inputs.first, let value = first else { throw KernelError.invalidInput(index: 0, reason: "missing") }
        return [value]
    }
}

extension KernelRegistry {
    mutating func registerConstantKernels() {
        register("Constant", since: 1) { context in
            let attributes = context.node.attributes
            guard attributes.count == 1, let (name, attribute) = attributes.elements.first else {
                throw KernelError.invalidAttribute("value", "Constant needs exactly one value attribute")
            }
            let tensor: Tensor
            switch (name, attribute) {
            case ("value", .tensor(let t)): tensor = t
            case ("value_float", .float(let v)): tensor = Tensor(scalar: v)
            case ("value_floats", .floats(let v)): tensor = try Tensor(shape: [v.count], scalars: v)
            case ("value_int", .int(let v)): tensor = Tensor(scalar: Int64(v))
            case ("value_ints", .ints(let v)): tensor = try Tensor(shape: [v.count], scalars: v.map { Int64($0) })
            default:
                throw KernelError.unsupported("Constant attribute '\(name)'")
            }
            return FixedOutputKernel(outputs: [tensor])
        }
        register("Identity", since: 1) { _ in PassThroughKernel() }
    }
}
