import GraphIR
import Tensors

/// A compiled operator: built once per node when a session is created, then run many times.
///
/// Kernels are immutable after construction (weights prepacked in `init`), so one session can run
/// concurrently from several threads.
public protocol Kernel: Sendable {
    /// Runs the node. `inputs[i]` is nil for an omitted optional input. Returns one tensor per declared
    /// output (omitted trailing outputs may be left out).
    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor]
}

/// Everything a kernel factory may look at when a session compiles a node.
public struct KernelBuildContext: Sendable {
    public let node: Node
    /// The opset version in force for the node's domain.
    public let opsetVersion: Int
    /// Inputs whose values are known when compiling (initializers, Constant outputs), by input position.
    public let constantInputs: [Tensor?]
    /// Compiles a subgraph attribute (If/Loop bodies) against the same registry and options.
    public let compileSubgraph: @Sendable (Graph, _ outerScope: Set<String>) throws -> CompiledGraph

    public init(
        node: Node, opsetVersion: Int, constantInputs: [Tensor?],
        compileSubgraph: @escaping @Sendable (Graph, Set<String>) throws -> CompiledGraph
    ) {
        self.node = node
        self.opsetVersion = opsetVersion
        self.constantInputs = constantInputs
        self.compileSubgraph = compileSubgraph
    }

    // MARK: Attribute helpers that report the node and attribute at fault.

    public func int(_ name: String, default value: Int? = nil) throws -> Int {
        switch node.attributes[name] {
        case .int(let v): return v
        case nil: if let value { return value }
        default: break
        }
        throw KernelError.invalidAttribute(name, "must be an int")
    }

    public func float(_ name: String, default value: Float? = nil) throws -> Float {
        switch node.attributes[name] {
        case .float(let v): return v
        case .int(let v): return Float(v)
        case nil: if let value { return value }
        default: break
        }
        throw KernelError.invalidAttribute(name, "must be a float")
    }

    public func ints(_ name: String, default value: [Int]? = nil) throws -> [Int] {
        switch node.attributes[name] {
        case .ints(let v): return v
        case nil: if let value { return value }
        default: break
        }
        throw KernelError.invalidAttribute(name, "must be a list of ints")
    }

    public func floats(_ name: String, default value: [Float]? = nil) throws -> [Float] {
        switch node.attributes[name] {
        case .floats(let v): return v
        case nil: if let value { return value }
        default: break
        }
        throw KernelError.invalidAttribute(name, "must be a list of floats")
    }

    public func string(_ name: String, default value: String? = nil) throws -> String {
        switch node.attributes[name] {
        case .string: return node.attributes[name]!.stringValue!
        case nil: if let value { return value }
        default: break
        }
        throw KernelError.invalidAttribute(name, "must be a string")
    }

    public func strings(_ name: String, default value: [String]? = nil) throws -> [String] {
        switch node.attributes[name] {
        case .strings: return node.attributes[name]!.stringsValue!
        case nil: if let value { return value }
        default: break
        }
        throw KernelError.invalidAttribute(name, "must be a list of strings")
    }

    public func has(_ name: String) -> Bool { node.attributes[name] != nil }

    /// The constant value of input `index`, if it is known when compiling.
    public func constant(_ index: Int) -> Tensor? {
        index < constantInputs.count ? constantInputs[index] : nil
    }
}

/// What a kernel sees while running.
public struct ExecutionContext: Sendable {
    /// Threads a kernel may use for one node.
    public let threadCount: Int
    /// Values of enclosing graphs, for subgraph kernels (If/Loop) whose bodies capture them.
    public let scope: ValueScope?
    /// Where kernels take their output tensors from during a plan's run (see `output(_:shape:)`).
    let pool: BufferPool?

    public init(threadCount: Int, scope: ValueScope? = nil) {
        self.init(threadCount: threadCount, scope: scope, pool: nil)
    }

    init(threadCount: Int, scope: ValueScope?, pool: BufferPool?) {
        self.threadCount = max(1, threadCount)
        self.scope = scope
        self.pool = pool
    }

    /// Runs `body(chunk)` for chunks `0..<chunks`, in parallel up to `threadCount` threads.
    public func parallelFor(_ chunks: Int, _ body: (Int) -> Void) {
        Parallel.forEach(chunks, threads: threadCount, body)
    }
}

/// Problems a kernel reports; the session adds the node's name before passing them on.
public enum KernelError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidAttribute(String, String)
    case invalidInput(index: Int, reason: String)
    case unsupported(String)
    case invalid(String)

    public var description: String {
        switch self {
        case .invalidAttribute(let name, let reason): return "attribute '\(name)' \(reason)"
        case .invalidInput(let index, let reason): return "input \(index): \(reason)"
        case .unsupported(let what): return "unsupported: \(what)"
        case .invalid(let reason): return reason
        }
    }
}
