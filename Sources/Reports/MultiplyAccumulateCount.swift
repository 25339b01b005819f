import GraphIR
import Tensors

/// How many multiply-accumulates (MACs) a model does per run, and how many of them in integer arithmetic.
///
/// Counted from the shapes shape inference derives for the given input shapes, for the operators that do
/// the bulk of the work in CNNs and Transformers:
/// - `MatMul`, `MatMulInteger`, `QLinearMatMul`: `elements(Y) · K`, K the reduction length (A's last dim);
/// - `Gemm`: `M · N · K`;
/// - `Conv`, `ConvInteger`, `QLinearConv`: `elements(Y) · (C_in / group) · Π kernel`;
/// - `ConvTranspose`: `elements(X) · (C_out / group) · Π kernel` (each input element is scattered once per
///   output channel of its group and kernel tap).
///
/// A node's MACs are integer when it is an integer operator (`MatMulInteger`, `ConvInteger`,
/// `QLinearMatMul`, `QLinearConv`), or when it is a float `MatMul`/`Gemm`/`Conv`/`ConvTranspose` whose two
/// multiplied inputs (activation and weight) are both produced directly by `DequantizeLinear` from integers of
/// 8 bits or fewer — the QDQ pattern an integer runtime executes as one integer kernel. A weight-only
/// model (float activations times dequantized weights) counts as float. Nodes inside subgraphs (`If`, `Loop`)
/// are not counted; nodes whose shapes stay unknown are listed in `unresolved`.
public struct MultiplyAccumulateCount: Sendable, Codable, Equatable {
    /// One counted node.
    public struct NodeCount: Sendable, Codable, Equatable {
        public var name: String
        public var opType: String
        public var macs: Int
        public var integer: Bool

        public init(name: String, opType: String, macs: Int, integer: Bool) {
            self.name = name
            self.opType = opType
            self.macs = macs
            self.integer = integer
        }

        enum CodingKeys: String, CodingKey {
            case name, macs, integer
            case opType = "op_type"
        }
    }

    /// The totals of one operator type.
    public struct OperatorTotal: Sendable, Codable, Equatable {
        public var opType: String
        public var nodes: Int
        public var macs: Int
        public var integerMacs: Int

        enum CodingKeys: String, CodingKey {
            case nodes, macs
            case opType = "op_type"
            case integerMacs = "integer_macs"
        }
    }

    public var total: Int
    public var integer: Int
    /// `integer / total` (0 when nothing was counted).
    public var integerShare: Double
    /// By operator type, largest first.
    public var byOperator: [OperatorTotal]
    /// Every counted node, in graph order.
    public var nodes: [NodeCount]
    /// Labels of counted-kind nodes whose MACs could not be derived (unknown shapes or overflow).
    public var unresolved: [String]

    enum CodingKeys: String, CodingKey {
        case total, integer, nodes, unresolved
        case integerShare = "integer_share"
        case byOperator = "by_operator"
    }

    /// The operator types that are counted.
    public static let countedOperators: Set<String> = [
        "MatMul", "Gemm", "Conv", "ConvTranspose", "MatMulInteger", "ConvInteger", "QLinearMatMul", "QLinearConv",
    ]

    static let integerOperators: Set<String> = ["MatMulInteger", "ConvInteger", "QLinearMatMul", "QLinearConv"]

    /// Counts the MACs of `model` run on inputs of `inputShapes` (by input name; inputs not named keep
    /// their declared shapes).
    ///
    /// - Throws: the `GraphError` of shape inference when the shapes contradict the model.
    public static func count(in model: Model, inputShapes: [String: [Int]]) throws -> MultiplyAccumulateCount {
        var fixed = model
        for index in fixed.graph.inputs.indices {
            let info = fixed.graph.inputs[index]
            guard let shape = inputShapes[info.name] else { continue }
            fixed.graph.inputs[index].type = .tensor(elementType: info.type?.tensorElementType,
                                                     shape: shape.map { .value($0) })
        }
        let inferred = try ShapeInference.infer(fixed).graph
        let types = ValueTypes(graph: inferred)
        let producers = inferred.producers

        var nodes: [NodeCount] = []
        var unresolved: [String] = []
        for node in inferred.nodes where node.normalizedDomain == "" && countedOperators.contains(node.opType) {
            guard let macs = multiplyAccumulates(of: node, types: types) else {
                unresolved.append(node.label)
                continue
            }
            let integer = integerOperators.contains(node.opType)
                || isQuantizedDequantization(node.inputs.first, producers: producers, graph: inferred, types: types)
                    && isQuantizedDequantization(node.inputs.dropFirst().first, producers: producers, graph: inferred,
                                                 types: types)
            nodes.append(NodeCount(name: node.name.isEmpty ? node.label : node.name, opType: node.opType, macs: macs,
                                   integer: integer))
        }
        return MultiplyAccumulateCount(nodes: nodes, unresolved: unresolved)
    }

    /// Totals from counted nodes (sums saturate at `Int.max` rather than trap).
    public init(nodes: [NodeCount], unresolved: [String] = []) {
        func add(_ a: Int, _ b: Int) -> Int {
            let (sum, overflow) = a.addingReportingOverflow(b)
            return overflow ? Int.max : sum
        }
        var byType: [String: OperatorTotal] = [:]
        var total = 0, integer = 0
        for node in nodes {
            total = add(total, node.macs)
            var entry = byType[node.opType] ?? OperatorTotal(opType: node.opType, nodes: 0, macs: 0, integerMacs: 0)
            entry.nodes += 1
            entry.macs = add(entry.macs, node.macs)
            if node.integer {
                integer = add(integer, node.macs)
                entry.integerMacs = add(entry.integerMacs, node.macs)
            }
            byType[node.opType] = entry
        }
        self.total = total
        self.integer = integer
        self.integerShare = total > 0 ? Double(integer) / Double(total) : 0
        self.byOperator = byType.values.sorted { ($0.macs, $1.opType) > ($1.macs, $0.opType) }
        self.nodes = nodes
        self.unresolved = unresolved
    }

    // MARK: - Per node

    /// Static element types and shapes of the values of an inferred graph.
    struct ValueTypes {
        var shapes: [String: [Int]] = [:]
        var dtypes: [String: DType] = [:]

        init(graph: Graph) {
            func record(_ name: String, _ type: ValueType?) {
                guard case .tensor(let dtype, let dims)? = type else { return }
                if let dtype { dtypes[name] = dtype }
                if let dims {
                    let values = dims.compactMap(\.intValue)
                    if values.count == dims.count { shapes[name] = values }
                }
            }
            for info in graph.inputs { record(info.name, info.type) }
            for (name, info) in graph.valueInfo { record(name, info.type) }
            for info in graph.outputs { record(info.name, info.type) }
            for (name, tensor) in graph.initializers {
                shapes[name] = tensor.shape
                dtypes[name] = tensor.dtype
            }
        }
    }

    /// The node's MACs, or nil when a shape it needs is unknown or the count overflows.
    static func multiplyAccumulates(of node: Node, types: ValueTypes) -> Int? {
        func shape(_ index: Int) -> [Int]? {
            index < node.inputs.count ? types.shapes[node.inputs[index]] : nil
        }
        guard let output = node.outputs.first, let outputShape = types.shapes[output] else { return nil }
        switch node.opType {
        case "MatMul", "MatMulInteger", "QLinearMatMul":
            guard let left = shape(0), let reduction = left.last else { return nil }
            return product(outputShape + [reduction])
        case "Gemm":
            let transposeA = node[attribute: "transA"]?.intValue ?? 0
            guard let left = shape(0), left.count == 2 else { return nil }
            return product(outputShape + [transposeA != 0 ? left[0] : left[1]])
        case "Conv", "ConvInteger", "QLinearConv":
            guard let weight = shape(node.opType == "QLinearConv" ? 3 : 1), weight.count >= 2 else { return nil }
            return product(outputShape + weight.dropFirst())
        case "ConvTranspose":
            guard let input = shape(0), let weight = shape(1), weight.count >= 2 else { return nil }
            return product(input + weight.dropFirst())
        default:
            return nil
        }
    }

    /// Whether `value` comes straight from a `DequantizeLinear` of integers of at most 8 bits.
    static func isQuantizedDequantization(_ value: String?, producers: [String: Int], graph: Graph,
                                          types: ValueTypes) -> Bool {
        guard let value, let index = producers[value] else { return false }
        let producer = graph.nodes[index]
        guard producer.opType == "DequantizeLinear", producer.normalizedDomain == "",
              let source = producer.inputs.first, let dtype = types.dtypes[source]
        else { return false }
        return dtype.isInteger && dtype.bitWidth <= 8
    }

    /// Π dims, or nil on overflow or a negative dim.
    static func product<C: Collection>(_ dims: C) -> Int? where C.Element == Int {
        var result = 1
        for dim in dims {
            guard dim >= 0 else { return nil }
            let (next, overflow) = result.multipliedReportingOverflow(by: dim)
            if overflow { return nil }
            result = next
        }
        return result
    }
}
