import GraphIR
import Tensors

/// Builds the kernel for one node.
public typealias KernelFactory = @Sendable (KernelBuildContext) throws -> any Kernel

/// Kernel factories keyed by (domain, op type, since-version). A node gets the factory with the highest
/// since-version not above the model's opset for its domain, as ONNX Runtime resolves kernels.
public struct KernelRegistry: Sendable {
    struct Key: Hashable {
        var domain: String
        var opType: String
    }

    private var entries: [Key: [(since: Int, factory: KernelFactory)]] = [:]

    public init() {}

    /// Adds a factory for `opType` from opset `since` on. Registering the same (domain, op, since) again
    /// replaces the earlier factory.
    public mutating func register(
        _ opType: String, domain: String = "", since: Int, _ factory: @escaping KernelFactory
    ) {
        let key = Key(domain: Self.normalize(domain), opType: opType)
        var list = entries[key, default: []].filter { $0.since != since }
        list.append((since, factory))
        list.sort { $0.since < $1.since }
        entries[key] = list
    }

    /// The factory for a node under `opset`, or nil when the op is unknown or only newer versions exist.
    public func factory(opType: String, domain: String, opset: Int) -> KernelFactory? {
        guard let list = entries[Key(domain: Self.normalize(domain), opType: opType)] else { return nil }
        return list.last(where: { $0.since <= opset })?.factory
    }

    /// The earliest opset for which `opType` has a kernel, for error messages.
    public func earliestVersion(opType: String, domain: String) -> Int? {
        entries[Key(domain: Self.normalize(domain), opType: opType)]?.first?.since
    }

    /// Every registered (domain, op type), sorted.
    public var operators: [(domain: String, opType: String)] {
        entries.keys.map { ($0.domain, $0.opType) }.sorted { ($0.domain, $0.opType) < ($1.domain, $1.opType) }
    }

    private static func normalize(_ domain: String) -> String { domain == "ai.onnx" ? "" : domain }
}

extension Kernel {
    /// This kernel behind a closure built where its concrete type is known. Kernels that are generic
    /// types (`BinaryArithmeticKernel<AddOperation>`) must be registered this way: called only through
    /// the `Kernel` existential, a generic type's `run` executes its unspecialised code, with a
    /// value-witness call per element (many times slower).
    public var specialized: any Kernel {
        ClosureKernel { inputs, context in try self.run(inputs, context: context) }
    }
}

/// A kernel that forwards to a closure (see `Kernel.specialized`).
struct ClosureKernel: Kernel {
    let body: @Sendable ([Tensor?], ExecutionContext) throws -> [Tensor]
    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] { try body(inputs, context) }
}
