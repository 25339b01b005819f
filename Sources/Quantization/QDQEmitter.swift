import GraphIR
import QuantCore
import Tensors

/// How one activation tensor is quantized.
struct ActivationQuantization: Equatable {
    /// Parameters of the DequantizeLinear node (per tensor): the values the integer operators see.
    var params: QuantParams
    /// Per-channel smoothing: the QuantizeLinear divides channel `j` of the last axis by `s_j` on top of
    /// `params` (its scale is `params.scale · s_j`), so the codes hold `x / s`.
    var smoothing: Smoothing.Choice?
    /// The clip range the parameters came from.
    var range: [Float]

    /// The QuantizeLinear parameters.
    func quantizeParams() throws -> QuantParams {
        guard let smoothing else { return params }
        let count = smoothing.factors.count
        return try QuantParams(type: params.type, granularity: .perChannel(axis: -1), parameterShape: [count],
                               scales: smoothing.factors.map { params.scales[0] * $0 },
                               zeroPoints: [Int32](repeating: params.zeroPoints[0], count: count),
                               codeRange: params.codeRange)
    }
}

/// A compute node's quantized weight and bias.
struct QuantizedOperands {
    var weight: QuantizedTensor
    /// The DequantizeLinear axis of the weight (nil per tensor).
    var weightAxis: Int?
    /// Int32 bias codes with scale `s_in · s_w`, or nil when the bias stays float (absent, or its codes
    /// would overflow the int32 accumulator).
    var bias: BiasCodes?
    /// Identifies the weight's quantization (initializer, axis, type, smoothing), so nodes that read the
    /// same weight the same way share one set of codes.
    var key: String
}

/// A bias as int32 codes `round(b / (s_in · s_w))` with those scales (zero point 0).
struct BiasCodes {
    var storage: Tensor
    /// One per channel, or a single one when the weight has one scale.
    var scales: [Float]
    /// The DequantizeLinear axis (the bias's last axis) when per channel.
    var axis: Int?
}

/// Writes the QDQ form of a statically quantized graph: a QuantizeLinear → DequantizeLinear pair after
/// every quantized activation, weights stored as codes behind DequantizeLinear (per output channel along
/// `axis`), biases as int32 codes behind DequantizeLinear, and clamps folded into the range before them.
///
/// Readers: quantized operators read the dequantized value. Float operators read the original float
/// value when its producer is float (it exists in float anyway, and is more accurate), and the
/// dequantized one when the producer computes in the quantized domain (in an integer runtime the value
/// exists only quantized). Smoothed activations are always read in float by float operators, since their
/// codes hold `x / s`. Graph outputs keep their float producers.
struct QDQEmitter {
    let policy: StaticPolicy
    let activations: [String: ActivationQuantization]
    /// Clamp nodes removed, by index, with the tensor before them whose QuantizeLinear clamps instead.
    let folded: [Int: String]
    let operands: [Int: QuantizedOperands]
    /// Lookups in constant tables (Gather) whose table is stored as codes, and how.
    var tables = TableStorage(nodes: [], format: nil, perRow: false)

    /// Gather nodes whose constant table is stored as 8-bit codes with one scale per row behind a
    /// DequantizeLinear: the operator has no integer form, but the file shrinks (an embedding table is
    /// often most of a Transformer's weights).
    struct TableStorage {
        var nodes: [Int]
        var format: WeightFormat?
        /// One scale per row (opset 13's per-axis DequantizeLinear), else one for the table.
        var perRow: Bool
    }

    /// The rewritten graph and, by original tensor name (activation, weight or bias), what was written.
    struct Emitted {
        var graph: Graph
        var names: [String: WrittenNames]
        /// The SQNR of each table stored as codes, by table name.
        var tableSQNR: [String: Double?] = [:]
    }

    func emit(into graph: Graph) throws -> Emitted {
        var editor = GraphEditor(graph: graph)
        var dequantized: [String: String] = [:]
        var written: [String: WrittenNames] = [:]
        func record(_ tensor: String, _ names: (codes: String, dequantized: String)) {
            if written[tensor] == nil { written[tensor] = WrittenNames(codes: names.codes, dequantized: names.dequantized) }
        }
        let foldedOutputs = Dictionary(uniqueKeysWithValues: folded.map { (graph.nodes[$0.key].outputs[0], $0.value) })

        // Pairs after each quantized activation (for a folded clamp, after the tensor before it).
        for tensor in policy.quantizedTensors {
            if let before = foldedOutputs[tensor] {
                guard let quantization = activations[tensor] else { continue }
                let names = try editor.insertQuantizeDequantize(of: before, quantize: quantization.params,
                                                                dequantize: quantization.params, axis: nil)
                dequantized[tensor] = names.dequantized
                record(before, names)
                record(tensor, names)
                continue
            }
            if folded.values.contains(tensor) { continue }
            guard let quantization = activations[tensor] else { continue }
            let names = try editor.insertQuantizeDequantize(
                of: tensor, quantize: try quantization.quantizeParams(), dequantize: quantization.params,
                axis: quantization.smoothing == nil ? nil : -1)
            dequantized[tensor] = names.dequantized
            record(tensor, names)
        }

        // Weights and biases behind DequantizeLinear, shared between nodes reading the same weight.
        var weightNames: [String: String] = [:]
        for index in operands.keys.sorted() {
            let operand = operands[index]!
            let node = graph.nodes[index]
            guard case .integerCompute(let slots?) = policy.status[index] else { continue }
            if weightNames[operand.key] == nil {
                let names = try editor.addDequantizedConstant(operand.weight, axis: operand.weightAxis,
                                                              omitZeroPoint: false, stem: editor.names.stem(.weight))
                weightNames[operand.key] = names.dequantized
                record(node.inputs[slots.weight], names)
            }
            editor.graph.nodes[index].inputs[slots.weight] = weightNames[operand.key]!
            if let bias = operand.bias, let slot = slots.bias {
                let names = try editor.addDequantizedConstant(
                    bias.storage, scales: bias.scales, zeroPoints: [Int32](repeating: 0, count: bias.scales.count),
                    parameterShape: bias.axis == nil ? [] : [bias.scales.count], zeroPointType: .int32,
                    axis: bias.axis, stem: editor.names.stem(.bias))
                editor.graph.nodes[index].inputs[slot] = names.dequantized
                record(node.inputs[slot], names)
            }
        }

        // Tables behind DequantizeLinear, shared between lookups of one table.
        var tableSQNR: [String: Double?] = [:]
        if let format = tables.format {
            var tableNames: [String: String] = [:]
            for index in tables.nodes {
                let node = graph.nodes[index]
                let name = node.inputs[0]
                if tableNames[name] == nil, let table = policy.constants[name] {
                    let (names, sqnrDB) = try editor.dequantizedRows(table, rows: table.shape[0], perRow: tables.perRow,
                                                                     format: format, name: name, node: node.errorName)
                    tableNames[name] = names.dequantized
                    tableSQNR[name] = sqnrDB
                    written[name] = names
                }
                if let replacement = tableNames[name] { editor.graph.nodes[index].inputs[0] = replacement }
            }
        }

        // Readers.
        for index in graph.nodes.indices where folded[index] == nil {
            let node = graph.nodes[index]
            let quantizedReader = policy.status[index].isQuantized
            let activationInputs = Set(policy.activationInputs[index] ?? [])
            for (slot, name) in node.inputs.enumerated() {
                guard let replacement = dequantized[name] else { continue }
                let smoothed = activations[name]?.smoothing != nil
                // A folded clamp's output no longer exists: every reader moves to the dequantized value.
                let replace = foldedOutputs[name] != nil
                    || (quantizedReader ? activationInputs.contains(name) : !smoothed && policy.producerIsQuantized(name))
                if replace {
                    editor.graph.nodes[index].inputs[slot] = replacement
                }
            }
        }
        editor.graph.removeNodes(at: Set(folded.keys))
        return Emitted(graph: try editor.graph.sortedTopologically(), names: written, tableSQNR: tableSQNR)
    }
}
