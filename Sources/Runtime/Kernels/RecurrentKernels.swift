import Foundation
import GraphIR
import Tensors

// LSTM and GRU. Both project every time step's input at once (X·Wᵀ as one matrix multiply), then walk
// the sequence with one small multiply per step for the recurrence; W and R are packed once for the
// shared SGEMM. Arithmetic is float32; float16, bfloat16 and float64 tensors are converted on the way
// in and out.

extension KernelRegistry {
    mutating func registerRecurrentKernels() {
        // Version 14 adds `layout`; 22 only adds bfloat16.
        register("LSTM", since: 7) { try LSTMKernel(context: $0, acceptsLayout: false) }
        register("LSTM", since: 14) { try LSTMKernel(context: $0, acceptsLayout: true) }
        register("GRU", since: 7) { try GRUKernel(context: $0, acceptsLayout: false) }
        register("GRU", since: 14) { try GRUKernel(context: $0, acceptsLayout: true) }
    }
}

// MARK: - Activations

/// One of the activation functions ONNX recurrent operators accept, with its alpha/beta.
struct RecurrentActivation: Sendable, Equatable {
    enum Kind: String, Sendable, CaseIterable {
        case relu, tanh, sigmoid, affine, leakyrelu, thresholdedrelu, scaledtanh, hardsigmoid, elu, softsign, softplus

        /// Whether the function reads alpha / beta, and their defaults (those of the ONNX operators of
        /// the same name).
        var parameters: (alpha: Float?, beta: Float?) {
            switch self {
            case .affine: return (1, 0)
            case .leakyrelu: return (0.01, nil)
            case .thresholdedrelu: return (1, nil)
            case .scaledtanh: return (1, 1)
            case .hardsigmoid: return (0.2, 0.5)
            case .elu: return (1, nil)
            case .relu, .tanh, .sigmoid, .softsign, .softplus: return (nil, nil)
            }
        }
    }

    var kind: Kind
    var alpha: Float = 0
    var beta: Float = 0

    /// Parses `activations`, handing out `activation_alpha`/`activation_beta` in order to the functions
    /// that take them (as ONNX Runtime reads them); functions without a value get their default.
    static func parse(_ names: [String], alphas: [Float], betas: [Float]) throws -> [RecurrentActivation] {
        var nextAlpha = alphas.makeIterator(), nextBeta = betas.makeIterator()
        return try names.map { name in
            guard let kind = Kind(rawValue: name.lowercased()) else {
                throw KernelError.invalidAttribute("activations", "'\(name)' is not a recurrent activation function")
            }
            var activation = RecurrentActivation(kind: kind)
            let (alpha, beta) = kind.parameters
            if let alpha { activation.alpha = nextAlpha.next() ?? alpha }
            if let beta { activation.beta = nextBeta.next() ?? beta }
            return activation
        }
    }

    /// Applies the function in place to `count` values, after clamping them to ±`clip` when given.
    func apply(_ x: UnsafeMutablePointer<Float>, count: Int, clip: Float?) {
        if let clip {
            for i in 0..<count { x[i] = min(max(x[i], -clip), clip) }
        }
        let alpha = self.alpha, beta = self.beta
        switch kind {
        case .relu: for i in 0..<count { x[i] = max(x[i], 0) }
        case .tanh: for i in 0..<count { x[i] = Foundation.tanh(x[i]) }
        case .sigmoid: for i in 0..<count { x[i] = 1 / (1 + exp(-x[i])) }
        case .affine: for i in 0..<count { x[i] = alpha * x[i] + beta }
        case .leakyrelu: for i in 0..<count { x[i] = x[i] >= 0 ? x[i] : alpha * x[i] }
        case .thresholdedrelu: for i in 0..<count { x[i] = x[i] >= alpha ? x[i] : 0 }
        case .scaledtanh: for i in 0..<count { x[i] = alpha * Foundation.tanh(beta * x[i]) }
        case .hardsigmoid: for i in 0..<count { x[i] = min(max(alpha * x[i] + beta, 0), 1) }
        case .elu: for i in 0..<count { x[i] = x[i] >= 0 ? x[i] : alpha * (exp(x[i]) - 1) }
        case .softsign: for i in 0..<count { x[i] = x[i] / (1 + abs(x[i])) }
        // log(1 + e^x) without overflowing e^x; above 20 the two agree in float32.
        case .softplus: for i in 0..<count { x[i] = x[i] > 20 ? x[i] : log1p(exp(x[i])) }
        }
    }
}

// MARK: - Shared attribute and input handling

/// Attributes common to LSTM and GRU.
struct RecurrentAttributes: Sendable {
    enum Direction: String, Sendable { case forward, reverse, bidirectional }

    let direction: Direction
    let hiddenSize: Int?
    /// `activationsPerDirection` entries per direction, forward first.
    let activations: [RecurrentActivation]
    let clip: Float?
    let layout: Int

    var directionCount: Int { direction == .bidirectional ? 2 : 1 }

    init(context: KernelBuildContext, defaultActivations: [RecurrentActivation.Kind], acceptsLayout: Bool) throws {
        let name = try context.string("direction", default: "forward")
        guard let direction = Direction(rawValue: name) else {
            throw KernelError.invalidAttribute("direction", "is '\(name)'; expected forward, reverse or bidirectional")
        }
        self.direction = direction
        hiddenSize = context.has("hidden_size") ? try context.int("hidden_size") : nil
        if let hiddenSize, hiddenSize <= 0 {
            throw KernelError.invalidAttribute("hidden_size", "must be positive, got \(hiddenSize)")
        }
        let directions = direction == .bidirectional ? 2 : 1
        let expected = defaultActivations.count * directions
        if context.has("activations") {
            let names = try context.strings("activations")
            guard names.count == expected else {
                throw KernelError.invalidAttribute(
                    "activations", "has \(names.count) functions; \(context.node.opType) \(direction) needs \(expected)")
            }
            activations = try RecurrentActivation.parse(
                names, alphas: try context.floats("activation_alpha", default: []),
                betas: try context.floats("activation_beta", default: []))
        } else {
            activations = (0..<directions).flatMap { _ in defaultActivations.map { RecurrentActivation(kind: $0) } }
        }
        if context.has("clip") {
            let clip = try context.float("clip")
            guard clip > 0 else { throw KernelError.invalidAttribute("clip", "must be positive, got \(clip)") }
            self.clip = clip
        } else {
            clip = nil
        }
        layout = acceptsLayout ? try context.int("layout", default: 0) : 0
        guard layout == 0 || layout == 1 else {
            throw KernelError.invalidAttribute("layout", "must be 0 or 1, got \(layout)")
        }
    }
}

/// A float-like tensor's elements as `Float`s.
func recurrentFloats(_ tensor: Tensor, index: Int) throws -> [Float] {
    switch tensor.dtype {
    case .float32: return tensor.scalars(as: Float.self)
    case .float16: return tensor.scalars(as: Float16.self).map { Float($0) }
    case .float64: return tensor.scalars(as: Double.self).map { Float($0) }
    case .bfloat16: return tensor.scalars(as: BFloat16.self).map(\.floatValue)
    default:
        throw KernelError.invalidInput(index: index, reason: "must be float16, bfloat16, float or double, got \(tensor.dtype)")
    }
}

/// A tensor of `dtype` (one of those `recurrentFloats` reads) holding `values`.
func recurrentTensor(_ values: [Float], dtype: DType, shape: [Int]) throws -> Tensor {
    switch dtype {
    case .float16: return try Tensor(shape: shape, scalars: values.map { Float16($0) })
    case .float64: return try Tensor(shape: shape, scalars: values.map { Double($0) })
    case .bfloat16: return try Tensor(shape: shape, scalars: values.map { BFloat16($0) })
    default: return try Tensor(shape: shape, scalars: values)
    }
}

/// W and R of every direction packed for SGEMM, and the two biases.
struct RecurrentWeights: Sendable {
    let directions: Int
    let gateRows: Int
    let inputSize: Int
    let hiddenSize: Int
    /// Per direction: Wᵀ, `[inputSize, gateRows]`.
    let inputWeights: [SGEMM.PackedMatrix]
    /// Per direction: Rᵀ cut into column blocks of `recurrentBlocks` gates each (`[hiddenSize, g·hidden]`).
    let recurrentWeights: [[SGEMM.PackedMatrix]]
    /// Per direction: Wb and Rb, `gateRows` each (zeros when B is omitted).
    let inputBias: [[Float]]
    let recurrentBias: [[Float]]

    /// - Parameter recurrentBlocks: gates per block of Rᵀ, e.g. [2, 1] to multiply z, r and h apart.
    init(w: Tensor, r: Tensor, b: Tensor?, gates: Int, recurrentBlocks: [Int], attributes: RecurrentAttributes) throws {
        let directions = attributes.directionCount
        guard r.rank == 3, r.shape[0] == directions, r.shape[2] > 0 else {
            throw KernelError.invalidInput(index: 2, reason: "R must have shape [\(directions), \(gates)·hidden, hidden], got \(r.shape)")
        }
        let hidden = r.shape[2]
        if let expected = attributes.hiddenSize, expected != hidden {
            throw KernelError.invalidAttribute("hidden_size", "is \(expected) but R has shape \(r.shape)")
        }
        let (gateRows, overflow) = hidden.multipliedReportingOverflow(by: gates)
        guard !overflow, r.shape[1] == gateRows else {
            throw KernelError.invalidInput(index: 2, reason: "R must have shape [\(directions), \(gates)·\(hidden), \(hidden)], got \(r.shape)")
        }
        guard w.rank == 3, w.shape[0] == directions, w.shape[1] == gateRows else {
            throw KernelError.invalidInput(index: 1, reason: "W must have shape [\(directions), \(gateRows), input_size], got \(w.shape)")
        }
        let inputSize = w.shape[2]
        if let b {
            guard b.shape == [directions, 2 * gateRows] else {
                throw KernelError.invalidInput(index: 3, reason: "B must have shape [\(directions), \(2 * gateRows)], got \(b.shape)")
            }
        }
        let wValues = try recurrentFloats(w, index: 1), rValues = try recurrentFloats(r, index: 2)
        let bValues = try b.map { try recurrentFloats($0, index: 3) }
        self.directions = directions
        self.gateRows = gateRows
        self.inputSize = inputSize
        self.hiddenSize = hidden
        // W[d] is [gateRows, inputSize] row-major: packing it transposed gives Wᵀ.
        inputWeights = (0..<directions).map { d in
            wValues.withUnsafeBufferPointer {
                SGEMM.PackedMatrix(k: inputSize, n: gateRows, b: $0.baseAddress! + d * gateRows * inputSize,
                                   ldb: inputSize, transposed: true)
            }
        }
        recurrentWeights = (0..<directions).map { d in
            var firstGate = 0
            return recurrentBlocks.map { count in
                defer { firstGate += count }
                return rValues.withUnsafeBufferPointer {
                    SGEMM.PackedMatrix(k: hidden, n: count * hidden,
                                       b: $0.baseAddress! + (d * gateRows + firstGate * hidden) * hidden,
                                       ldb: hidden, transposed: true)
                }
            }
        }
        inputBias = (0..<directions).map { d in
            bValues.map { Array($0[(2 * d * gateRows)..<((2 * d + 1) * gateRows)]) } ?? [Float](repeating: 0, count: gateRows)
        }
        recurrentBias = (0..<directions).map { d in
            bValues.map { Array($0[((2 * d + 1) * gateRows)..<((2 * d + 2) * gateRows)]) } ?? [Float](repeating: 0, count: gateRows)
        }
    }

    /// Weights prepared when the node is compiled, if W, R (and B, when given) are constants.
    static func prepareIfConstant(
        _ context: KernelBuildContext, gates: Int, recurrentBlocks: [Int], attributes: RecurrentAttributes
    ) throws -> RecurrentWeights? {
        let inputs = context.node.inputs
        let hasBias = inputs.count > 3 && !inputs[3].isEmpty
        guard let w = context.constant(1), let r = context.constant(2) else { return nil }
        let b = context.constant(3)
        if hasBias && b == nil { return nil }
        return try RecurrentWeights(w: w, r: r, b: b, gates: gates, recurrentBlocks: recurrentBlocks, attributes: attributes)
    }
}

/// The sequence inputs of a run, in layout 0 (`[seq, batch, …]`) whatever the node's layout.
struct RecurrentSequence {
    let dtype: DType
    let steps: Int
    let batch: Int
    /// `[steps, batch, inputSize]`.
    let x: [Float]
    /// Valid steps of each batch entry, in `0...steps`.
    let lengths: [Int]

    init(inputs: [Tensor?], weights: RecurrentWeights, layout: Int) throws {
        let x = try required(inputs, 0)
        guard x.rank == 3, x.shape[2] == weights.inputSize else {
            throw KernelError.invalidInput(index: 0, reason: "X must be 3-D with input_size \(weights.inputSize), got \(x.shape)")
        }
        dtype = x.dtype
        steps = layout == 0 ? x.shape[0] : x.shape[1]
        batch = layout == 0 ? x.shape[1] : x.shape[0]
        let values = try recurrentFloats(x, index: 0)
        self.x = layout == 0 ? values : swapLeadingAxes(values, batch, steps, weights.inputSize)
        if let lengths = optional(inputs, 4) {
            guard lengths.shape == [batch], lengths.dtype == .int32 || lengths.dtype == .int64 else {
                throw KernelError.invalidInput(index: 4, reason: "sequence_lens must be int32 [\(batch)], got \(lengths.dtype) \(lengths.shape)")
            }
            let values = try lengths.integerValues()
            let steps = self.steps
            guard values.allSatisfy({ (0...steps).contains($0) }) else {
                throw KernelError.invalidInput(index: 4, reason: "sequence_lens \(values) must lie in [0, \(steps)]")
            }
            self.lengths = values
        } else {
            self.lengths = [Int](repeating: steps, count: batch)
        }
    }

    /// An initial state input (`initial_h`/`initial_c`) as `[directions, batch, hidden]`, or zeros.
    func initialState(_ inputs: [Tensor?], index: Int, weights: RecurrentWeights, layout: Int) throws -> [Float] {
        let d = weights.directions, h = weights.hiddenSize
        guard let state = optional(inputs, index) else { return [Float](repeating: 0, count: d * batch * h) }
        let expected = layout == 0 ? [d, batch, h] : [batch, d, h]
        guard state.shape == expected else {
            throw KernelError.invalidInput(index: index, reason: "initial state must have shape \(expected), got \(state.shape)")
        }
        let values = try recurrentFloats(state, index: index)
        return layout == 0 ? values : swapLeadingAxes(values, batch, d, h)
    }

    /// `[steps, directions, batch, hidden]` or `[directions, batch, hidden]` outputs in the node's layout.
    func outputs(y: [Float], states: [[Float]], weights: RecurrentWeights, layout: Int, count: Int) throws -> [Tensor] {
        let d = weights.directions, h = weights.hiddenSize
        var results: [Tensor] = []
        if layout == 0 {
            results.append(try recurrentTensor(y, dtype: dtype, shape: [steps, d, batch, h]))
            for state in states { results.append(try recurrentTensor(state, dtype: dtype, shape: [d, batch, h])) }
        } else {
            // [steps, d, batch, h] → [batch, steps, d, h]: swap the (steps·d) block with batch.
            results.append(try recurrentTensor(swapLeadingAxes(y, steps * d, batch, h), dtype: dtype, shape: [batch, steps, d, h]))
            for state in states {
                results.append(try recurrentTensor(swapLeadingAxes(state, d, batch, h), dtype: dtype, shape: [batch, d, h]))
            }
        }
        return Array(results.prefix(max(count, 0)))
    }
}

/// `[a, b, inner]` → `[b, a, inner]`.
func swapLeadingAxes(_ values: [Float], _ a: Int, _ b: Int, _ inner: Int) -> [Float] {
    var result = [Float](repeating: 0, count: values.count)
    for i in 0..<a {
        for j in 0..<b {
            let from = (i * b + j) * inner, to = (j * a + i) * inner
            for k in 0..<inner { result[to + k] = values[from + k] }
        }
    }
    return result
}

extension RecurrentAttributes {
    /// Whether direction index `d` runs backwards in time.
    func isReverse(_ d: Int) -> Bool { direction == .reverse || (direction == .bidirectional && d == 1) }
}

// MARK: - LSTM

/// LSTM (gates in order i, o, f, c; f, g, h default to Sigmoid, Tanh, Tanh):
///
///     i = f(Xt·Wiᵀ + Ht-1·Riᵀ + Pi⊙Ct-1 + Wbi + Rbi)
///     f = f(Xt·Wfᵀ + Ht-1·Rfᵀ + Pf⊙Ct-1 + Wbf + Rbf)      (1 - i when input_forget = 1)
///     c = g(Xt·Wcᵀ + Ht-1·Rcᵀ + Wbc + Rbc)
///     Ct = f⊙Ct-1 + i⊙c
///     o = f(Xt·Woᵀ + Ht-1·Roᵀ + Po⊙Ct + Wbo + Rbo)
///     Ht = o⊙h(Ct)
///
/// `clip` clamps the inputs of the gate activations (f and g; h(Ct) is not clipped, matching ONNX
/// Runtime). Steps past a batch entry's `sequence_lens` leave Y zero;
/// an entry of length 0 reports zero final states (as ONNX Runtime does).
struct LSTMKernel: Kernel {
    let attributes: RecurrentAttributes
    let inputForget: Bool
    let prepared: RecurrentWeights?
    let outputCount: Int

    init(context: KernelBuildContext, acceptsLayout: Bool) throws {
        attributes = try RecurrentAttributes(context: context, defaultActivations: [.sigmoid, .tanh, .tanh],
                                             acceptsLayout: acceptsLayout)
        inputForget = try context.int("input_forget", default: 0) != 0
        prepared = try RecurrentWeights.prepareIfConstant(context, gates: 4, recurrentBlocks: [4], attributes: attributes)
        outputCount = context.node.outputs.count
    }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let weights = try prepared ?? RecurrentWeights(
            w: required(inputs, 1), r: required(inputs, 2), b: optional(inputs, 3), gates: 4, recurrentBlocks: [4],
            attributes: attributes)
        let sequence = try RecurrentSequence(inputs: inputs, weights: weights, layout: attributes.layout)
        let hidden = weights.hiddenSize, directions = weights.directions, batch = sequence.batch
        let steps = sequence.steps, gateRows = weights.gateRows
        var initialH = try sequence.initialState(inputs, index: 5, weights: weights, layout: attributes.layout)
        var initialC = try sequence.initialState(inputs, index: 6, weights: weights, layout: attributes.layout)
        var peepholes: [Float]?
        if let p = optional(inputs, 7) {
            guard p.shape == [directions, 3 * hidden] else {
                throw KernelError.invalidInput(index: 7, reason: "P must have shape [\(directions), \(3 * hidden)], got \(p.shape)")
            }
            peepholes = try recurrentFloats(p, index: 7)
        }

        var y = [Float](repeating: 0, count: try checkedProduct([steps, directions, batch, hidden], what: "LSTM output"))
        var projected = [Float](repeating: 0, count: try checkedProduct([steps, batch, gateRows], what: "LSTM projection"))
        var gates = [Float](repeating: 0, count: batch * gateRows)
        var cellActivation = [Float](repeating: 0, count: hidden)
        let clip = attributes.clip
        for d in 0..<directions {
            let reverse = attributes.isReverse(d)
            let (f, g, h) = (attributes.activations[3 * d], attributes.activations[3 * d + 1], attributes.activations[3 * d + 2])
            projectInputs(sequence.x, rows: steps * batch, weights: weights, direction: d, into: &projected,
                          bias: zip(weights.inputBias[d], weights.recurrentBias[d]).map(+), threads: context.threadCount)
            let stateRange = (d * batch * hidden)..<((d + 1) * batch * hidden)
            let recurrent = weights.recurrentWeights[d][0]
            projected.withUnsafeBufferPointer { projected in
            initialH.withUnsafeMutableBufferPointer { allH in
            initialC.withUnsafeMutableBufferPointer { allC in
            gates.withUnsafeMutableBufferPointer { gates in
            cellActivation.withUnsafeMutableBufferPointer { cellActivation in
            y.withUnsafeMutableBufferPointer { y in
                let hState = allH.baseAddress! + stateRange.lowerBound
                let cState = allC.baseAddress! + stateRange.lowerBound
                let peephole = peepholes.map { Array($0[(3 * d * hidden)..<(3 * (d + 1) * hidden)]) }
                for s in 0..<steps {
                    SGEMM.multiply(m: batch, a: hState, lda: hidden, packedB: recurrent,
                                   c: gates.baseAddress!, ldc: gateRows, threads: context.threadCount)
                    for b in 0..<batch where s < sequence.lengths[b] {
                        let t = reverse ? sequence.lengths[b] - 1 - s : s
                        let gate = gates.baseAddress! + b * gateRows
                        let input = projected.baseAddress! + (t * batch + b) * gateRows
                        for j in 0..<gateRows { gate[j] += input[j] }
                        let gi = gate, go = gate + hidden, gf = gate + 2 * hidden, gc = gate + 3 * hidden
                        let hRow = hState + b * hidden, cRow = cState + b * hidden
                        if let peephole {
                            for j in 0..<hidden {
                                gi[j] += peephole[j] * cRow[j]
                                gf[j] += peephole[2 * hidden + j] * cRow[j]
                            }
                        }
                        f.apply(gi, count: hidden, clip: clip)
                        if inputForget {
                            for j in 0..<hidden { gf[j] = 1 - gi[j] }
                        } else {
                            f.apply(gf, count: hidden, clip: clip)
                        }
                        g.apply(gc, count: hidden, clip: clip)
                        for j in 0..<hidden { cRow[j] = gf[j] * cRow[j] + gi[j] * gc[j] }
                        if let peephole {
                            for j in 0..<hidden { go[j] += peephole[hidden + j] * cRow[j] }
                        }
                        f.apply(go, count: hidden, clip: clip)
                        // h(Ct) sees the cell unclipped, as in ONNX Runtime; `clip` bounds the gates only.
                        let cell = cellActivation.baseAddress!
                        cell.update(from: cRow, count: hidden)
                        h.apply(cell, count: hidden, clip: nil)
                        let out = y.baseAddress! + ((t * directions + d) * batch + b) * hidden
                        for j in 0..<hidden {
                            hRow[j] = go[j] * cell[j]
                            out[j] = hRow[j]
                        }
                    }
                }
                for b in 0..<batch where sequence.lengths[b] == 0 {
                    (hState + b * hidden).update(repeating: 0, count: hidden)
                    (cState + b * hidden).update(repeating: 0, count: hidden)
                }
            }}}}}}
        }
        return try sequence.outputs(y: y, states: [initialH, initialC], weights: weights,
                                    layout: attributes.layout, count: outputCount)
    }
}

/// `projected[rows, gateRows] = x[rows, inputSize] · Wᵀ + bias`, for every time step at once.
func projectInputs(_ x: [Float], rows: Int, weights: RecurrentWeights, direction: Int,
                   into projected: inout [Float], bias: [Float], threads: Int) {
    let gateRows = weights.gateRows
    x.withUnsafeBufferPointer { x in
        projected.withUnsafeMutableBufferPointer { out in
            guard let base = out.baseAddress, rows > 0 else { return }
            for row in 0..<rows { (base + row * gateRows).update(from: bias, count: gateRows) }
            guard weights.inputSize > 0, let a = x.baseAddress else { return }
            SGEMM.multiply(m: rows, a: a, lda: weights.inputSize, packedB: weights.inputWeights[direction],
                           beta: 1, c: base, ldc: gateRows, threads: threads)
        }
    }
}

// MARK: - GRU

/// GRU (gates in order z, r, h; f, g default to Sigmoid, Tanh):
///
///     z = f(Xt·Wzᵀ + Ht-1·Rzᵀ + Wbz + Rbz)
///     r = f(Xt·Wrᵀ + Ht-1·Rrᵀ + Wbr + Rbr)
///     h = g(Xt·Whᵀ + (r⊙Ht-1)·Rhᵀ + Rbh + Wbh)          linear_before_reset = 0
///     h = g(Xt·Whᵀ + r⊙(Ht-1·Rhᵀ + Rbh) + Wbh)          linear_before_reset ≠ 0
///     Ht = (1 - z)⊙h + z⊙Ht-1
struct GRUKernel: Kernel {
    let attributes: RecurrentAttributes
    let linearBeforeReset: Bool
    let prepared: RecurrentWeights?
    let outputCount: Int

    init(context: KernelBuildContext, acceptsLayout: Bool) throws {
        attributes = try RecurrentAttributes(context: context, defaultActivations: [.sigmoid, .tanh],
                                             acceptsLayout: acceptsLayout)
        linearBeforeReset = try context.int("linear_before_reset", default: 0) != 0
        prepared = try RecurrentWeights.prepareIfConstant(
            context, gates: 3, recurrentBlocks: Self.recurrentBlocks(linearBeforeReset), attributes: attributes)
        outputCount = context.node.outputs.count
    }

    /// Rᵀ in one block when Ht-1·Rhᵀ is needed with z and r; otherwise z, r apart from h, since h then
    /// multiplies r⊙Ht-1.
    static func recurrentBlocks(_ linearBeforeReset: Bool) -> [Int] { linearBeforeReset ? [3] : [2, 1] }

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let weights = try prepared ?? RecurrentWeights(
            w: required(inputs, 1), r: required(inputs, 2), b: optional(inputs, 3), gates: 3,
            recurrentBlocks: Self.recurrentBlocks(linearBeforeReset), attributes: attributes)
        let sequence = try RecurrentSequence(inputs: inputs, weights: weights, layout: attributes.layout)
        let hidden = weights.hiddenSize, directions = weights.directions, batch = sequence.batch
        let steps = sequence.steps, gateRows = weights.gateRows
        var state = try sequence.initialState(inputs, index: 5, weights: weights, layout: attributes.layout)

        var y = [Float](repeating: 0, count: try checkedProduct([steps, directions, batch, hidden], what: "GRU output"))
        var projected = [Float](repeating: 0, count: try checkedProduct([steps, batch, gateRows], what: "GRU projection"))
        var gates = [Float](repeating: 0, count: batch * gateRows)
        var resetHidden = [Float](repeating: 0, count: batch * hidden)
        var candidate = [Float](repeating: 0, count: batch * hidden)
        let clip = attributes.clip, linearBeforeReset = self.linearBeforeReset
        for d in 0..<directions {
            let reverse = attributes.isReverse(d)
            let (f, g) = (attributes.activations[2 * d], attributes.activations[2 * d + 1])
            // Rbh joins the projection unless it has to be multiplied by r.
            var bias = zip(weights.inputBias[d], weights.recurrentBias[d]).map(+)
            let hiddenRecurrentBias = Array(weights.recurrentBias[d][(2 * hidden)...])
            if linearBeforeReset {
                for j in 0..<hidden { bias[2 * hidden + j] = weights.inputBias[d][2 * hidden + j] }
            }
            projectInputs(sequence.x, rows: steps * batch, weights: weights, direction: d, into: &projected,
                          bias: bias, threads: context.threadCount)
            let stateRange = (d * batch * hidden)..<((d + 1) * batch * hidden)
            let recurrent = weights.recurrentWeights[d]
            projected.withUnsafeBufferPointer { projected in
            state.withUnsafeMutableBufferPointer { allH in
            gates.withUnsafeMutableBufferPointer { gates in
            resetHidden.withUnsafeMutableBufferPointer { resetHidden in
            candidate.withUnsafeMutableBufferPointer { candidate in
            y.withUnsafeMutableBufferPointer { y in
                let hState = allH.baseAddress! + stateRange.lowerBound
                let gateBase = gates.baseAddress!
                for s in 0..<steps {
                    // z and r (and with linear_before_reset also h) from Ht-1·Rᵀ.
                    SGEMM.multiply(m: batch, a: hState, lda: hidden, packedB: recurrent[0],
                                   c: gateBase, ldc: gateRows, threads: context.threadCount)
                    for b in 0..<batch {
                        let resetRow = resetHidden.baseAddress! + b * hidden
                        guard s < sequence.lengths[b] else {
                            resetRow.update(repeating: 0, count: hidden)
                            continue
                        }
                        let t = reverse ? sequence.lengths[b] - 1 - s : s
                        let gate = gateBase + b * gateRows
                        let input = projected.baseAddress! + (t * batch + b) * gateRows
                        for j in 0..<(2 * hidden) { gate[j] += input[j] }
                        f.apply(gate, count: 2 * hidden, clip: clip)
                        let r = gate + hidden, hRow = hState + b * hidden
                        let candidateRow = candidate.baseAddress! + b * hidden
                        if linearBeforeReset {
                            let recurrent = gate + 2 * hidden
                            for j in 0..<hidden {
                                candidateRow[j] = input[2 * hidden + j] + r[j] * (recurrent[j] + hiddenRecurrentBias[j])
                            }
                        } else {
                            for j in 0..<hidden { resetRow[j] = r[j] * hRow[j] }
                        }
                    }
                    if !linearBeforeReset {
                        // (r⊙Ht-1)·Rhᵀ for every row at once.
                        SGEMM.multiply(m: batch, a: resetHidden.baseAddress!, lda: hidden, packedB: recurrent[1],
                                       c: candidate.baseAddress!, ldc: hidden, threads: context.threadCount)
                    }
                    for b in 0..<batch where s < sequence.lengths[b] {
                        let t = reverse ? sequence.lengths[b] - 1 - s : s
                        let z = gateBase + b * gateRows
                        let candidateRow = candidate.baseAddress! + b * hidden
                        if !linearBeforeReset {
                            let input = projected.baseAddress! + (t * batch + b) * gateRows + 2 * hidden
                            for j in 0..<hidden { candidateRow[j] += input[j] }
                        }
                        g.apply(candidateRow, count: hidden, clip: clip)
                        let hRow = hState + b * hidden
                        let out = y.baseAddress! + ((t * directions + d) * batch + b) * hidden
                        for j in 0..<hidden {
                            hRow[j] = (1 - z[j]) * candidateRow[j] + z[j] * hRow[j]
                            out[j] = hRow[j]
                        }
                    }
                }
                for b in 0..<batch where sequence.lengths[b] == 0 {
                    (hState + b * hidden).update(repeating: 0, count: hidden)
                }
            }}}}}}
        }
        return try sequence.outputs(y: y, states: [state], weights: weights, layout: attributes.layout, count: outputCount)
    }
}
