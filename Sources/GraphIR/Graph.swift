import OrderedCollections
import Tensors

/// One operator application. Inputs and outputs name values; an empty name is an omitted optional
/// input or output, as in ONNX.
public struct Node: Sendable, Equatable {
    public var name: String
    public var opType: String
    /// Operator domain; "" (or "ai.onnx") is the default ONNX domain.
    public var domain: String
    public var inputs: [String]
    public var outputs: [String]
    public var attributes: OrderedDictionary<String, Attribute>
    public var docString: String

    public init(
        name: String = "", opType: String, domain: String = "", inputs: [String], outputs: [String],
        attributes: OrderedDictionary<String, Attribute> = [:], docString: String = ""
    ) {
        self.name = name
        self.opType = opType
        self.domain = domain
        self.inputs = inputs
        self.outputs = outputs
        self.attributes = attributes
        self.docString = docString
    }

    /// The domain with "ai.onnx" folded into "", so both spellings compare equal.
    public var normalizedDomain: String { domain == "ai.onnx" ? "" : domain }

    /// A label for messages: the node's name, or its op type and first output when unnamed.
    public var label: String {
        name.isEmpty ? "\(opType) node producing '\(outputs.first ?? "")'" : "node '\(name)' (\(opType))"
    }

    public subscript(attribute name: String) -> Attribute? { attributes[name] }
}

/// A computation graph: nodes over named values, with initializers (constant tensors) and declared
/// inputs and outputs. Subgraphs of `If`/`Loop`/`Scan` are graphs held in node attributes and may read
/// values of enclosing graphs by name.
public struct Graph: Sendable, Equatable {
    public var name: String
    public var nodes: [Node]
    /// Declared inputs. In older models initializers may also appear here; `runtimeInputs` skips them.
    public var inputs: [ValueInfo]
    public var outputs: [ValueInfo]
    public var initializers: OrderedDictionary<String, Tensor>
    public var sparseInitializers: [SparseTensor]
    /// Type and shape annotations of intermediate values.
    public var valueInfo: OrderedDictionary<String, ValueInfo>
    public var docString: String

    public init(
        name: String = "", nodes: [Node] = [], inputs: [ValueInfo] = [], outputs: [ValueInfo] = [],
        initializers: OrderedDictionary<String, Tensor> = [:], sparseInitializers: [SparseTensor] = [],
        valueInfo: OrderedDictionary<String, ValueInfo> = [:], docString: String = ""
    ) {
        self.name = name
        self.nodes = nodes
        self.inputs = inputs
        self.outputs = outputs
        self.initializers = initializers
        self.sparseInitializers = sparseInitializers
        self.valueInfo = valueInfo
        self.docString = docString
    }

    /// Inputs the caller must feed: declared inputs that are not initializers.
    public var runtimeInputs: [ValueInfo] { inputs.filter { initializers[$0.name] == nil } }

    /// Index of the node producing each value.
    public var producers: [String: Int] {
        var map: [String: Int] = [:]
        for (index, node) in nodes.enumerated() {
            for output in node.outputs where !output.isEmpty { map[output] = index }
        }
        return map
    }

    /// Indices of the nodes reading each value (in this graph, not counting subgraph reads).
    public var consumers: [String: [Int]] {
        var map: [String: [Int]] = [:]
        for (index, node) in nodes.enumerated() {
            for input in node.inputs where !input.isEmpty { map[input, default: []].append(index) }
        }
        return map
    }
}

/// A model: a graph plus the opsets it was written against and its metadata.
public struct Model: Sendable, Equatable {
    public var graph: Graph
    /// Operator set versions by domain; "" is the default ONNX domain.
    public var opsetImports: OrderedDictionary<String, Int>
    public var irVersion: Int
    public var producerName: String
    public var producerVersion: String
    public var domain: String
    public var modelVersion: Int
    public var docString: String
    public var metadata: OrderedDictionary<String, String>

    public init(
        graph: Graph, opsetImports: OrderedDictionary<String, Int> = ["": 17], irVersion: Int = 8,
        producerName: String = "swiftquant", producerVersion: String = "", domain: String = "",
        modelVersion: Int = 0, docString: String = "", metadata: OrderedDictionary<String, String> = [:]
    ) {
        self.graph = graph
        self.opsetImports = opsetImports
        self.irVersion = irVersion
        self.producerName = producerName
        self.producerVersion = producerVersion
        self.domain = domain
        self.modelVersion = modelVersion
        self.docString = docString
        self.metadata = metadata
    }

    /// The opset version in force for a domain ("" and "ai.onnx" are the same domain).
    public func opsetVersion(domain: String) -> Int? {
        let key = domain == "ai.onnx" ? "" : domain
        return opsetImports[key] ?? (key == "" ? opsetImports["ai.onnx"] : nil)
    }
}
