import Foundation
import GraphIR
import Tensors

/// Options for compiling a `Session`.
public struct SessionOptions: Sendable {
    /// Threads each kernel may use; defaults to every active core.
    public var threadCount: Int
    /// Where kernels come from; `.standard` holds every built-in operator.
    public var registry: KernelRegistry
    /// Run quantized patterns as fused integer kernels (`IntegerFusion`); off runs every node as written.
    public var integerExecution: Bool

    public init(threadCount: Int = ProcessInfo.processInfo.activeProcessorCount,
                registry: KernelRegistry = .standard, integerExecution: Bool = true) {
        self.threadCount = max(1, threadCount)
        self.registry = registry
        self.integerExecution = integerExecution
    }
}

/// A model compiled for execution: a kernel per node, chosen from the registry by the model's opset,
/// with weights prepared once. `run` may be called repeatedly and from several threads.
public final class Session: Sendable {
    /// Default-domain opsets this runtime implements.
    public static let supportedOpsets: ClosedRange<Int> = 1...22

    public let model: Model
    public let options: SessionOptions
    let plan: CompiledGraph

    public init(model: Model, options: SessionOptions = SessionOptions()) throws {
        if let version = model.opsetVersion(domain: ""), !Session.supportedOpsets.contains(version) {
            throw RuntimeError.unsupportedOpset(domain: "", version: version, supported: Session.supportedOpsets)
        }
        self.model = model
        self.options = options
        var executed = model
        if options.integerExecution { executed = try IntegerFusion.apply(to: executed, registry: options.registry) }
        self.plan = try CompiledGraph(graph: executed.graph, model: executed, registry: options.registry, outerScope: [])
    }

    /// The inputs a caller must feed.
    public var inputs: [ValueInfo] { plan.inputs }

    /// The smallest first dimension the inputs declare as a fixed number, if any: a model exported for
    /// batch 1 takes data sets one row at a time.
    public var fixedBatchSize: Int? {
        inputs.compactMap { input -> Int? in
            if case .tensor(_, let shape?)? = input.type { return shape.first?.intValue }
            return nil
        }.min()
    }
    public var outputNames: [String] { plan.outputNames }

    /// Runs the model on named inputs and returns every graph output by name.
    ///
    /// - Throws: `RuntimeError` naming the input or node at fault.
    /// - Parameters:
    ///   - profile: collects time per operator type when given.
    ///   - observer: sees the named intermediate values as they are produced.
    public func run(
        _ feeds: [String: Tensor], profile: ExecutionProfile? = nil, observer: ValueObserver? = nil
    ) throws -> [String: Tensor] {
        for name in feeds.keys where !plan.inputs.contains(where: { $0.name == name }) {
            throw RuntimeError.unknownInput(name: name)
        }
        var ordered: [Tensor] = []
        for info in plan.inputs {
            guard let value = feeds[info.name] else { throw RuntimeError.missingInput(name: info.name) }
            try Self.validate(value, against: info)
            ordered.append(value)
        }
        let outputs = try plan.run(inputs: ordered, threadCount: options.threadCount, scope: nil, profile: profile,
                                   observer: observer)
        return Dictionary(zip(plan.outputNames, outputs), uniquingKeysWith: { first, _ in first })
    }

    /// Checks a feed's dtype and shape against the declared input type (symbolic dims match anything).
    static func validate(_ value: Tensor, against info: ValueInfo) throws {
        guard case .tensor(let elementType, let shape)? = info.type else { return }
        if let elementType, elementType != value.dtype {
            throw RuntimeError.inputMismatch(name: info.name, reason: "expected \(elementType), got \(value.dtype)")
        }
        guard let shape else { return }
        guard shape.count == value.rank else {
            throw RuntimeError.inputMismatch(
                name: info.name, reason: "expected rank \(shape.count) \(shape), got shape \(value.shape)")
        }
        for (axis, dim) in shape.enumerated() {
            if case .value(let expected) = dim, expected != value.shape[axis] {
                throw RuntimeError.inputMismatch(
                    name: info.name,
                    reason: "dimension \(axis) must be \(expected), got shape \(value.shape)")
            }
        }
    }
}
