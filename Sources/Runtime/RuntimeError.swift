/// Errors from compiling or running a session; each names the node or tensor at fault.
public enum RuntimeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No kernel is registered for the operator at the model's opset.
    case unsupportedOperator(node: String, opType: String, domain: String, opset: Int)
    /// The model imports an opset outside what the runtime implements.
    case unsupportedOpset(domain: String, version: Int, supported: ClosedRange<Int>)
    /// A node's domain has no opset import.
    case missingOpsetImport(domain: String, node: String)
    /// A required graph input was not fed.
    case missingInput(name: String)
    /// A feed names no graph input.
    case unknownInput(name: String)
    /// A feed's dtype or shape contradicts the graph's declaration.
    case inputMismatch(name: String, reason: String)
    /// A graph output was never produced.
    case missingOutput(name: String)
    /// Building or running a node's kernel failed.
    case nodeFailed(node: String, reason: String)

    public var description: String {
        switch self {
        case .unsupportedOperator(let node, let opType, let domain, let opset):
            let domainText = domain.isEmpty ? "ai.onnx" : domain
            return "\(node): operator \(domainText)::\(opType) is not supported at opset \(opset)"
        case .unsupportedOpset(let domain, let version, let supported):
            return "opset \(version) of domain '\(domain.isEmpty ? "ai.onnx" : domain)' is not supported "
                + "(supported: \(supported.lowerBound)...\(supported.upperBound))"
        case .missingOpsetImport(let domain, let node):
            return "\(node): the model imports no opset for domain '\(domain)'"
        case .missingInput(let name):
            return "input '\(name)' was not given"
        case .unknownInput(let name):
            return "'\(name)' is not an input of the model"
        case .inputMismatch(let name, let reason):
            return "input '\(name)': \(reason)"
        case .missingOutput(let name):
            return "output '\(name)' was not produced"
        case .nodeFailed(let node, let reason):
            return "\(node): \(reason)"
        }
    }
}
