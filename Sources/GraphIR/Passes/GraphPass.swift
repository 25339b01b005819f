import OrderedCollections
import Tensors

/// What a pass may need to know besides the graph it rewrites.
public struct PassContext: Sendable {
    /// Operator set versions by domain ("" is the default ONNX domain).
    public var opsetImports: OrderedDictionary<String, Int>
    /// Values of enclosing graphs a subgraph may read (empty for a model's main graph). Passes must not
    /// treat these as undefined, and fresh names must avoid them.
    public var outerScope: Set<String>

    /// The default-domain opset assumed when a model imports none: the version `Model` defaults to.
    public static let fallbackOpset = 17

    public init(opsetImports: OrderedDictionary<String, Int> = ["": PassContext.fallbackOpset], outerScope: Set<String> = []) {
        self.opsetImports = opsetImports
        self.outerScope = outerScope
    }

    /// The opset version in force for `node`'s domain; nil for a domain the model does not import.
    public func opset(for node: Node) -> Int? {
        let domain = node.normalizedDomain
        if let version = opsetImports[domain] { return version }
        if domain == "" { return opsetImports["ai.onnx"] ?? PassContext.fallbackOpset }
        return nil
    }

    /// The context for the subgraphs of `graph`'s nodes: everything `graph` defines becomes outer scope.
    public func entering(_ graph: Graph) -> PassContext {
        var inner = self
        inner.outerScope.formUnion(graph.definedValueNames)
        return inner
    }
}

/// A named graph rewrite. Passes are small and composable; `PassPipeline` runs a list of them to a
/// fixpoint over a graph and all its subgraphs.
public protocol GraphPass: Sendable {
    /// A short identifier, e.g. "dead-code-elimination", used in reports.
    var name: String { get }

    /// Rewrites `graph` (one graph level; the pipeline recurses into subgraphs).
    ///
    /// - Returns: whether anything changed.
    func run(on graph: inout Graph, context: PassContext) throws -> Bool
}

extension GraphPass {
    /// Runs the pass on a main graph under the default opset.
    public func run(on graph: inout Graph) throws -> Bool {
        try run(on: &graph, context: PassContext())
    }
}

/// Errors a pass raises when a collaborator breaks its contract.
public enum PassError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A constant-folding evaluator returned a result that does not fit the node.
    case invalidEvaluatorResult(node: String, reason: String)

    public var description: String {
        switch self {
        case .invalidEvaluatorResult(let node, let reason):
            return "constant folding of \(node): the evaluator \(reason)"
        }
    }
}

/// Runs passes in order, repeatedly, until none changes the graph or `maxIterations` rounds have run.
/// Every pass also runs on every subgraph (`If` branches, `Loop`/`Scan` bodies), innermost scopes
/// seeing the names of the enclosing ones.
public struct PassPipeline: Sendable {
    public var passes: [any GraphPass]
    /// Upper bound on rounds over the whole list; a bound is needed because passes written by others
    /// could undo each other forever.
    public var maxIterations: Int

    public init(_ passes: [any GraphPass], maxIterations: Int = 10) {
        self.passes = passes
        self.maxIterations = maxIterations
    }

    /// What a run did.
    public struct Report: Sendable, Equatable {
        /// Rounds over the pass list, including the last one that changed nothing (if reached).
        public var iterations: Int
        /// False when `maxIterations` ran out while passes were still changing the graph.
        public var reachedFixpoint: Bool
        /// For each pass name, the number of rounds in which it changed something.
        public var changesByPass: OrderedDictionary<String, Int>
    }

    /// The usual cleanup and folding sequence.
    ///
    /// - Parameter evaluator: computes nodes with constant inputs; without one, only static `Shape`/`Size`
    ///   nodes fold.
    public static func standard(evaluator: ConstantFolding.Evaluator? = nil) -> PassPipeline {
        PassPipeline([
            IdentityElimination(),
            ConstantFolding(evaluator: evaluator, foldsStaticShapes: true),
            BatchNormFolding(),
            DeadCodeElimination(),
        ])
    }

    /// Runs the pipeline on `model`'s graph under the model's opsets.
    @discardableResult
    public func run(on model: inout Model) throws -> Report {
        try run(on: &model.graph, context: PassContext(opsetImports: model.opsetImports))
    }

    /// Runs the pipeline on `graph` (and its subgraphs) under `context`.
    @discardableResult
    public func run(on graph: inout Graph, context: PassContext) throws -> Report {
        var changes = OrderedDictionary<String, Int>()
        for pass in passes { changes[pass.name] = 0 }
        var iteration = 0
        while iteration < max(maxIterations, 0) {
            iteration += 1
            var changedThisRound = false
            for pass in passes where try PassPipeline.runRecursively(pass, on: &graph, context: context) {
                changes[pass.name, default: 0] += 1
                changedThisRound = true
            }
            if !changedThisRound {
                return Report(iterations: iteration, reachedFixpoint: true, changesByPass: changes)
            }
        }
        return Report(iterations: iteration, reachedFixpoint: false, changesByPass: changes)
    }

    /// Runs `pass` on `graph`, then on each subgraph of its nodes with the enclosing names in scope.
    static func runRecursively(_ pass: any GraphPass, on graph: inout Graph, context: PassContext) throws -> Bool {
        var changed = try pass.run(on: &graph, context: context)
        guard graph.nodes.contains(where: \.hasSubgraphs) else { return changed }
        let inner = context.entering(graph)
        for index in graph.nodes.indices where graph.nodes[index].hasSubgraphs {
            try graph.nodes[index].mapSubgraphs { body in
                if try runRecursively(pass, on: &body, context: inner) { changed = true }
            }
        }
        return changed
    }
}
