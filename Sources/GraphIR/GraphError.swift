/// Structural problems found in a graph.
public enum GraphError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A node reads a value that no node, input or initializer provides (and no enclosing scope does).
    case undefinedValue(name: String, node: String)
    /// Two producers write the same value.
    case duplicateDefinition(name: String)
    /// The nodes form a cycle through the listed values.
    case cycle(values: [String])
    /// A node attribute is missing, has the wrong kind, or an invalid value.
    case invalidAttribute(node: String, attribute: String, reason: String)
    /// Shape inference found inconsistent shapes or types.
    case shapeMismatch(node: String, reason: String)

    public var description: String {
        switch self {
        case .undefinedValue(let name, let node):
            return "\(node) reads '\(name)', which nothing defines"
        case .duplicateDefinition(let name):
            return "value '\(name)' is defined more than once"
        case .cycle(let values):
            return "the graph has a cycle through \(values.prefix(8).map { "'\($0)'" }.joined(separator: ", "))"
        case .invalidAttribute(let node, let attribute, let reason):
            return "\(node): attribute '\(attribute)' \(reason)"
        case .shapeMismatch(let node, let reason):
            return "\(node): \(reason)"
        }
    }
}
