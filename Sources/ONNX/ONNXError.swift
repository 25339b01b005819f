/// Everything that can go wrong reading, writing or checking an ONNX model.
///
/// Every case names the file (`file` is the path, or the `source` label given for in-memory data) and,
/// where one is at fault, the tensor, node, value or function, so a message alone tells the user where
/// to look.
public enum ONNXError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file could not be read or written (missing, a directory, permissions, disk full…).
    case fileAccess(file: String, reason: String)
    /// The bytes are not a well-formed ONNX protobuf (random bytes, a truncated file, another format).
    case malformedFile(file: String, reason: String)
    /// The protobuf is well formed but does not describe a usable model (no graph, no IR version…).
    case invalidModel(file: String, reason: String)
    /// A tensor's dims or data are inconsistent: negative or overflowing dims, too few or too many
    /// elements, data in a field its type does not use.
    case invalidTensor(file: String, tensor: String, reason: String)
    /// A tensor of an element type this library does not represent (string, complex, FNUZ floats…).
    case unsupportedDataType(file: String, tensor: String, dataType: String)
    /// A tensor's external data cannot be used: unsafe location (absolute, escaping the model's
    /// folder, through a symbolic link), missing file, or a range outside the file.
    case externalData(file: String, tensor: String, reason: String)
    /// A node attribute is malformed (unknown kind, duplicate name, a reference outside a function).
    case invalidAttribute(file: String, node: String, attribute: String, reason: String)
    /// The model defines local functions, which this library neither runs nor inlines.
    case unsupportedFunction(file: String, function: String)
    /// The encoded model is over protobuf's 2 GiB limit; write it with external data instead.
    case modelTooLarge(file: String)

    // Problems found by `ModelChecker`.

    /// A node reads a value that nothing before it defines (in its graph or an enclosing one).
    case undefinedInput(graph: String, node: String, value: String)
    /// A value has more than one definition (two producers, or a producer overwriting an input).
    case duplicateDefinition(graph: String, value: String, node: String)
    /// A graph output is not defined by the graph (or, for subgraphs, an enclosing scope).
    case undefinedGraphOutput(graph: String, value: String)
    /// A node uses an operator domain that the model does not import.
    case missingOpsetImport(node: String, domain: String)
    /// The IR version or an opset version is outside what ONNX defines.
    case invalidVersion(what: String, version: Int, reason: String)
    /// A node has no operator type.
    case invalidNode(graph: String, node: String, reason: String)

    public var description: String {
        switch self {
        case .fileAccess(let file, let reason):
            return "\(file): \(reason)"
        case .malformedFile(let file, let reason):
            return "\(file): not a readable ONNX model (\(reason))"
        case .invalidModel(let file, let reason):
            return "\(file): invalid ONNX model: \(reason)"
        case .invalidTensor(let file, let tensor, let reason):
            return "\(file): tensor '\(tensor)': \(reason)"
        case .unsupportedDataType(let file, let tensor, let dataType):
            return "\(file): tensor '\(tensor)' has element type \(dataType), which SwiftQuant does not support"
        case .externalData(let file, let tensor, let reason):
            return "\(file): external data of tensor '\(tensor)': \(reason)"
        case .invalidAttribute(let file, let node, let attribute, let reason):
            return "\(file): \(node): attribute '\(attribute)': \(reason)"
        case .unsupportedFunction(let file, let function):
            return "\(file): the model defines local function '\(function)'; model-local functions are not supported"
        case .modelTooLarge(let file):
            return "\(file): the model encodes to more than protobuf's 2 GiB limit; write it with external data"
        case .undefinedInput(let graph, let node, let value):
            return "graph '\(graph)': \(node) reads '\(value)', which is not defined before it"
        case .duplicateDefinition(let graph, let value, let node):
            return "graph '\(graph)': \(node) defines '\(value)', which is already defined"
        case .undefinedGraphOutput(let graph, let value):
            return "graph '\(graph)': output '\(value)' is not defined by any node, input or initializer"
        case .missingOpsetImport(let node, let domain):
            return "\(node) uses domain '\(domain.isEmpty ? "ai.onnx" : domain)', which the model does not import"
        case .invalidVersion(let what, let version, let reason):
            return "\(what) \(version) \(reason)"
        case .invalidNode(let graph, let node, let reason):
            return "graph '\(graph)': \(node): \(reason)"
        }
    }
}
