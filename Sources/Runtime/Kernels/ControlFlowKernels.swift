import GraphIR
import Tensors

// If and Loop: kernels that run compiled subgraphs. Both bodies are compiled once, with the session;
// at run time the executor hands the values they capture from enclosing graphs in `context.scope`.

extension KernelRegistry {
    mutating func registerControlFlowKernels() {
        // If-11/13/16 and Loop-11/13/16 only widen the types (sequences, optionals) that subgraphs may
        // produce; for tensors their semantics equal version 1.
        register("If", since: 1) { try IfKernel(context: $0) }
        register("Loop", since: 1) { try LoopKernel(context: $0) }
    }
}

/// The graph held by a required graph attribute.
private func graphAttribute(_ context: KernelBuildContext, _ name: String) throws -> Graph {
    guard case .graph(let graph)? = context.node.attributes[name] else {
        throw KernelError.invalidAttribute(name, "must be a graph")
    }
    return graph
}

/// The value of a one-element bool tensor (If's `cond`, Loop's condition).
private func booleanValue(_ tensor: Tensor, what: String) throws -> Bool {
    guard tensor.dtype == .bool, tensor.count == 1 else {
        throw KernelError.invalid("\(what) must be a single bool, got \(tensor.dtype) \(tensor.shape)")
    }
    return tensor.scalars(as: Bool.self)[0]
}

// MARK: - If

/// If: runs `then_branch` when the one-element bool `cond` is true, else `else_branch`, and returns
/// that branch's outputs.
struct IfKernel: Kernel {
    let thenBranch: CompiledGraph
    let elseBranch: CompiledGraph

    init(context: KernelBuildContext) throws {
        let outputCount = context.node.outputs.count
        var branches: [CompiledGraph] = []
        for name in ["then_branch", "else_branch"] {
            let branch = try context.compileSubgraph(try graphAttribute(context, name), [])
            guard branch.inputs.isEmpty else {
                throw KernelError.invalidAttribute(name, "must have no inputs, has \(branch.inputs.count)")
            }
            guard branch.outputNames.count == outputCount else {
                throw KernelError.invalidAttribute(
                    name, "has \(branch.outputNames.count) outputs but the node has \(outputCount)")
            }
            branches.append(branch)
        }
        thenBranch = branches[0]
        elseBranch = branches[1]
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let condition = try booleanValue(try required(inputs, 0), what: "If condition")
        return try (condition ? thenBranch : elseBranch)
            .run(inputs: [], threadCount: context.threadCount, scope: context.scope)
    }
}

// MARK: - Loop

/// Loop: runs `body(iteration, condition, carried…) → (condition, carried…, scanned…)` while
/// `iteration < M` (when the trip count M is given) and the condition holds (when `cond` is given).
///
/// Outputs are the final carried values, then each scanned value stacked along a new first axis.
struct LoopKernel: Kernel {
    let body: CompiledGraph
    let carriedCount: Int
    let scanCount: Int
    /// Declared element types of the scanned outputs, for the empty result of a loop that never ran.
    let scanTypes: [DType?]

    init(context: KernelBuildContext) throws {
        let graph = try graphAttribute(context, "body")
        body = try context.compileSubgraph(graph, [])
        carriedCount = max(context.node.inputs.count - 2, 0)
        guard body.inputs.count == carriedCount + 2 else {
            throw KernelError.invalidAttribute(
                "body", "has \(body.inputs.count) inputs; expected \(carriedCount + 2) (iteration, condition, \(carriedCount) carried)")
        }
        guard body.outputNames.count >= carriedCount + 1 else {
            throw KernelError.invalidAttribute(
                "body", "has \(body.outputNames.count) outputs; expected at least \(carriedCount + 1)")
        }
        scanCount = body.outputNames.count - 1 - carriedCount
        scanTypes = graph.outputs.suffix(scanCount).map { $0.type?.tensorElementType }
        guard context.node.outputs.count <= carriedCount + scanCount else {
            throw KernelError.invalid("Loop has \(context.node.outputs.count) outputs; the body yields \(carriedCount + scanCount)")
        }
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        var tripCount: Int64?
        if let trip = optional(inputs, 0) {
            guard trip.dtype == .int64, trip.count == 1 else {
                throw KernelError.invalidInput(index: 0, reason: "trip count must be one int64, got \(trip.dtype) \(trip.shape)")
            }
            tripCount = trip.scalars(as: Int64.self)[0]
        }
        var condition = try optional(inputs, 1).map { try booleanValue($0, what: "Loop condition") }
        guard tripCount != nil || condition != nil else {
            throw KernelError.unsupported("Loop with neither a trip count nor a condition never ends")
        }
        var carried = try (0..<carriedCount).map { try required(inputs, 2 + $0) }
        var scans = [[Tensor]](repeating: [], count: scanCount)
        var iteration: Int64 = 0
        while tripCount.map({ iteration < $0 }) ?? true, condition ?? true {
            let feeds = [Tensor(scalar: iteration), Tensor(scalar: condition ?? true)] + carried
            let outputs = try body.run(inputs: feeds, threadCount: context.threadCount, scope: context.scope)
            if condition != nil { condition = try booleanValue(outputs[0], what: "Loop body condition") }
            carried = Array(outputs[1..<(1 + carriedCount)])
            for k in 0..<scanCount { scans[k].append(outputs[1 + carriedCount + k]) }
            iteration += 1
        }
        return carried + (try scans.enumerated().map { k, values in try stack(values, k) })
    }

    /// Stacks equally shaped tensors along a new first axis.
    func stack(_ values: [Tensor], _ k: Int) throws -> Tensor {
        guard let first = values.first else {
            return try Tensor(zeros: scanTypes[k] ?? .float32, shape: [0])
        }
        for value in values where value.dtype != first.dtype || value.shape != first.shape {
            throw KernelError.invalid(
                "Loop scan output \(k) changes from \(first.dtype) \(first.shape) to \(value.dtype) \(value.shape)")
        }
        _ = try movableElementSize(first.dtype, operator: "Loop scan output")
        var output = try makeOutputTensor(first.dtype, shape: [values.count] + first.shape)
        let bytes = first.byteCount
        output.withUnsafeMutableBytes { destination in
            guard let base = destination.baseAddress else { return }
            for (i, value) in values.enumerated() where bytes > 0 {
                value.withUnsafeBytes { (base + i * bytes).copyMemory(from: $0.baseAddress!, byteCount: bytes) }
            }
        }
        return output
    }
}
