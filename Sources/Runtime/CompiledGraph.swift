import Dispatch
import GraphIR
import Tensors

/// Values of an enclosing graph that a subgraph reads by name.
public final class ValueScope: @unchecked Sendable {
    private let values: [String: Tensor]
    private let parent: ValueScope?

    public init(values: [String: Tensor], parent: ValueScope?) {
        self.values = values
        self.parent = parent
    }

    public func lookup(_ name: String) -> Tensor? { values[name] ?? parent?.lookup(name) }
}

/// Sees chosen intermediate values as a run produces them (calibration observers, debugging).
public struct ValueObserver {
    /// The values to report; graph inputs and node outputs of the main graph.
    public var names: Set<String>
    public var body: (_ name: String, _ value: Tensor) throws -> Void

    public init(names: Set<String>, body: @escaping (_ name: String, _ value: Tensor) throws -> Void) {
        self.names = names
        self.body = body
    }
}

/// A graph compiled into a flat plan: one kernel per node in topological order (or per fused group of
/// nodes, see `FloatFusion`), values in numbered slots, and for each step the slots whose last reader it
/// is (freed right after it runs).
public struct CompiledGraph: Sendable {
    struct Step: Sendable {
        var kernel: any Kernel
        var label: String
        var opType: String
        var inputs: [Int?]
        var outputs: [Int?]
        var outputNames: [String]
        /// Outer-scope names the node's subgraphs capture, with their slots here.
        var captures: [(name: String, slot: Int)]
        var release: [Int]
        /// For a fused group (see `FloatFusion`): the group's own nodes, run instead of `kernel` when an
        /// observer asks for one of the values the fusion hides.
        var expansion: [Step] = []
        var hiddenNames: Set<String> = []
        var hiddenSlots: [Int] = []
    }

    let slotCount: Int
    let steps: [Step]
    /// Initializers and compile-time constants, placed in their slots at the start of each run.
    let constants: [(slot: Int, value: Tensor)]
    /// Graph inputs in declaration order (initializer-backed ones excluded).
    public let inputs: [ValueInfo]
    let inputSlots: [Int]
    /// Values read from the enclosing scope.
    let outerSlots: [(name: String, slot: Int)]
    public let outputNames: [String]
    let outputSlots: [Int]
    /// Output memory reused across steps and runs.
    let pools = BufferPools()

    /// Compiles `graph`. `outerScope` lists names enclosing graphs provide (empty for a main graph).
    init(graph: Graph, model: Model, registry: KernelRegistry, outerScope: Set<String>) throws {
        let order = try graph.topologicalOrder(outerScope: outerScope)
        var slots: [String: Int] = [:]
        func slot(_ name: String) -> Int {
            if let existing = slots[name] { return existing }
            slots[name] = slots.count
            return slots.count - 1
        }

        var constantValues: [String: Tensor] = [:]
        for (name, tensor) in graph.initializers { constantValues[name] = tensor }
        let runtimeInputs = graph.runtimeInputs
        // A declared input overrides an initializer of the same name only when fed; we treat
        // initializer-backed inputs as constants, the common reading of IR < 4 models.
        let inputSlots = runtimeInputs.map { slot($0.name) }

        var defined = Set(graph.initializers.keys).union(runtimeInputs.map(\.name))
        var outerSlots: [(String, Int)] = []
        for name in graph.capturedValueNames where outerScope.contains(name) && !defined.contains(name) {
            outerSlots.append((name, slot(name)))
            defined.insert(name)
        }

        let compileSubgraph: @Sendable (Graph, Set<String>) throws -> CompiledGraph = { sub, scope in
            try CompiledGraph(graph: sub, model: model, registry: registry, outerScope: scope)
        }

        var steps: [Step] = []
        let visibleToSubgraphs = outerScope.union(graph.sourceValueNames).union(graph.nodes.flatMap(\.outputs))
        let groups = FloatFusion.groups(in: graph, opset: model.opsetVersion(domain: "") ?? 0)
        var groupOfMember: [Int: Int] = [:]
        for (groupIndex, group) in groups.enumerated() {
            for member in group.members { groupOfMember[member] = groupIndex }
        }
        // Members of a group are compiled as usual but held back until the group's root.
        var heldBack: [Int: [Step]] = [:]
        var memberContexts: [Int: KernelBuildContext] = [:]
        for index in order {
            let node = graph.nodes[index]
            guard let opset = model.opsetVersion(domain: node.normalizedDomain) else {
                throw RuntimeError.missingOpsetImport(domain: node.domain, node: node.label)
            }
            guard let factory = registry.factory(opType: node.opType, domain: node.normalizedDomain, opset: opset)
            else {
                throw RuntimeError.unsupportedOperator(
                    node: node.label, opType: node.opType, domain: node.normalizedDomain, opset: opset)
            }
            let context = KernelBuildContext(
                node: node, opsetVersion: opset,
                constantInputs: node.inputs.map { $0.isEmpty ? nil : constantValues[$0] },
                compileSubgraph: { sub, _ in try compileSubgraph(sub, visibleToSubgraphs) })
            let kernel: any Kernel
            do {
                kernel = try factory(context)
            } catch let error as RuntimeError {
                throw error
            } catch {
                throw RuntimeError.nodeFailed(node: node.label, reason: "\(error)")
            }
            // Constant nodes (and kernels of all-constant inputs that declare themselves foldable)
            // are evaluated here once.
            if node.opType == "Constant", node.normalizedDomain.isEmpty {
                let produced = try Self.runStep(kernel, label: node.label, inputs: [],
                                                context: ExecutionContext(threadCount: 1))
                for (name, value) in zip(node.outputs, produced) where !name.isEmpty {
                    constantValues[name] = value
                }
                continue
            }
            let captured = Graph.valuesRead(by: node).filter { !node.inputs.contains($0) }
            let step = Step(
                kernel: kernel, label: node.label, opType: node.opType,
                inputs: node.inputs.map { $0.isEmpty ? nil : slot($0) },
                outputs: node.outputs.map { $0.isEmpty ? nil : slot($0) },
                outputNames: node.outputs,
                captures: Array(Set(captured)).sorted().map { ($0, slot($0)) },
                release: [])
            guard let groupIndex = groupOfMember[index] else {
                steps.append(step)
                continue
            }
            heldBack[groupIndex, default: []].append(step)
            memberContexts[index] = context
            let group = groups[groupIndex]
            // Every member feeds the root, so all of them are compiled by the time the root is.
            guard index == group.root, let members = heldBack.removeValue(forKey: groupIndex) else { continue }
            let hidden = members.dropLast().flatMap { zip($0.outputNames, $0.outputs) }
            let fusedKernel: any Kernel
            do {
                fusedKernel = try group.makeKernel(group.primary.flatMap { memberContexts[$0] })
            } catch let error as RuntimeError {
                throw error
            } catch {
                throw RuntimeError.nodeFailed(node: node.label, reason: "\(error)")
            }
            steps.append(Step(
                kernel: fusedKernel, label: "\(node.label) (fused \(group.opType))", opType: group.opType,
                inputs: group.inputs.map { slot($0) }, outputs: step.outputs, outputNames: step.outputNames,
                captures: [], release: [], expansion: members,
                hiddenNames: Set(hidden.map(\.0)), hiddenSlots: hidden.compactMap(\.1)))
        }

        let constants = constantValues.map { (slot($0.key), $0.value) }
        let outputSlots = graph.outputs.map { slot($0.name) }

        // Liveness: a slot is freed after its last reader, unless it is a constant, an input kept
        // by the caller, or a graph output.
        let pinned = Set(outputSlots).union(constants.map(\.0))
        var lastUse: [Int: Int] = [:]
        for (stepIndex, step) in steps.enumerated() {
            for case let s? in step.inputs { lastUse[s] = stepIndex }
            for capture in step.captures { lastUse[capture.slot] = stepIndex }
        }
        for (slotIndex, stepIndex) in lastUse where !pinned.contains(slotIndex) {
            steps[stepIndex].release.append(slotIndex)
        }

        self.slotCount = slots.count
        self.steps = steps
        self.constants = constants
        self.inputs = runtimeInputs
        self.inputSlots = inputSlots
        self.outerSlots = outerSlots
        self.outputNames = graph.outputs.map(\.name)
        self.outputSlots = outputSlots
    }

    /// Runs the plan. `inputs` are in `self.inputs` order; `scope` supplies captured outer values.
    public func run(
        inputs feeds: [Tensor], threadCount: Int, scope: ValueScope?, profile: ExecutionProfile? = nil,
        observer: ValueObserver? = nil
    ) throws -> [Tensor] {
        let pool = pools.checkOut()
        defer { pools.checkIn(pool) }
        var values = [Tensor?](repeating: nil, count: slotCount)
        for (slot, value) in constants { values[slot] = value }
        for (slot, value) in zip(inputSlots, feeds) { values[slot] = value }
        if let observer {
            for (info, value) in zip(inputs, feeds) where observer.names.contains(info.name) {
                try observer.body(info.name, value)
            }
        }
        for (name, slot) in outerSlots {
            guard let value = scope?.lookup(name) else { throw RuntimeError.missingInput(name: name) }
            values[slot] = value
        }
        for step in steps {
            var expand = !step.expansion.isEmpty && !(observer?.names.isDisjoint(with: step.hiddenNames) ?? true)
            if !expand {
                do {
                    try execute(step, values: &values, threadCount: threadCount, scope: scope, pool: pool,
                                profile: profile, observer: observer)
                } catch is FusedKernelDeclined {
                    expand = true
                }
            }
            if expand {
                for member in step.expansion {
                    try execute(member, values: &values, threadCount: threadCount, scope: scope, pool: pool,
                                profile: profile, observer: observer)
                }
                for slot in step.hiddenSlots { values[slot] = nil }
            }
            for slot in step.release { values[slot] = nil }
        }
        return try zip(outputNames, outputSlots).map { name, slot in
            guard let value = values[slot] else { throw RuntimeError.missingOutput(name: name) }
            return value
        }
    }

    /// Runs one step on the values in `values` and stores what it produces.
    private func execute(
        _ step: Step, values: inout [Tensor?], threadCount: Int, scope: ValueScope?, pool: BufferPool,
        profile: ExecutionProfile?, observer: ValueObserver?
    ) throws {
        var stepScope = scope
        if !step.captures.isEmpty {
            var captured: [String: Tensor] = [:]
            for (name, slot) in step.captures { captured[name] = values[slot] }
            stepScope = ValueScope(values: captured, parent: scope)
        }
        let started = profile == nil ? 0 : DispatchTime.now().uptimeNanoseconds
        let produced = try Self.runStep(
            step.kernel, label: step.label, inputs: step.inputs.map { $0.flatMap { values[$0] } },
            context: ExecutionContext(threadCount: threadCount, scope: stepScope, pool: pool))
        if let profile {
            profile.record(opType: step.opType, label: step.label, outputShape: produced.first?.shape ?? [],
                           nanoseconds: DispatchTime.now().uptimeNanoseconds - started)
        }
        for (slot, value) in zip(step.outputs, produced) {
            if let slot { values[slot] = value }
        }
        if let observer {
            for (name, value) in zip(step.outputNames, produced) where observer.names.contains(name) {
                try observer.body(name, value)
            }
        }
    }

    private static func runStep(
        _ kernel: any Kernel, label: String, inputs: [Tensor?], context: ExecutionContext
    ) throws -> [Tensor] {
        do {
            return try kernel.run(inputs, context: context)
        } catch let error as RuntimeError {
            throw error
        } catch let declined as FusedKernelDeclined {
            throw declined
        } catch {
            throw RuntimeError.nodeFailed(node: label, reason: "\(error)")
        }
    }
}
