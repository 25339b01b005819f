import GraphIR
import OrderedCollections
import Tensors

// Literal dims keep the shape tables in the tests readable: `[1, "batch", 384]`.
extension Dim: ExpressibleByIntegerLiteral, ExpressibleByStringLiteral {
    public init(integerLiteral value: Int) { self = .value(value) }
    public init(stringLiteral value: String) { self = value == "?" ? .unknown : .symbol(value) }
}

/// A float32 tensor, for fixtures whose shapes are right by construction.
func floats(_ shape: [Int], _ values: [Float]) -> Tensor { try! Tensor(shape: shape, scalars: values) }

/// An int64 tensor.
func int64s(_ shape: [Int], _ values: [Int]) -> Tensor { try! Tensor(shape: shape, scalars: values.map { Int64($0) }) }

/// A `Constant` node holding `tensor`.
func constantNode(_ output: String, _ tensor: Tensor) -> Node {
    Node(opType: "Constant", inputs: [], outputs: [output], attributes: ["value": .tensor(tensor)])
}

/// A model around `nodes`, with tensor inputs `(name, dtype, shape)` and outputs without declared types.
func makeModel(
    _ nodes: [Node], inputs: [(String, DType, [Dim])], outputs: [String],
    initializers: OrderedDictionary<String, Tensor> = [:], opset: Int = 17
) -> Model {
    Model(
        graph: Graph(
            nodes: nodes,
            inputs: inputs.map { ValueInfo(name: $0.0, dtype: $0.1, shape: $0.2) },
            outputs: outputs.map { ValueInfo(name: $0) },
            initializers: initializers),
        opsetImports: ["": opset])
}

/// The type shape inference gives `name` (from value annotations or graph outputs).
func inferredType(_ model: Model, _ name: String) -> ValueType? {
    if let info = model.graph.valueInfo[name] { return info.type }
    return model.graph.outputs.first { $0.name == name }?.type
}

/// Runs shape inference on a one-node model and returns the type of each node output.
func inferNode(
    _ node: Node, inputs: [(String, DType, [Dim])], initializers: OrderedDictionary<String, Tensor> = [:],
    extraNodes: [Node] = [], opset: Int = 17
) throws -> [ValueType?] {
    let model = makeModel(extraNodes + [node], inputs: inputs, outputs: node.outputs.filter { !$0.isEmpty },
                          initializers: initializers, opset: opset)
    let inferred = try ShapeInference.infer(model)
    return node.outputs.map { inferredType(inferred, $0) }
}

/// `.tensor(dtype, shape)` shorthand for expectations.
func tensorType(_ dtype: DType?, _ shape: [Dim]?) -> ValueType { .tensor(elementType: dtype, shape: shape) }
