import Tensors

/// What `swiftquant inspect` reports about a model: its interface, operators, parameters and metadata.
///
/// Built from a `Model` alone (no execution). Encodes to JSON with stable field names; `formatted()`
/// renders the same facts as a human-readable table.
public struct ModelSummary: Codable, Sendable, Equatable {
    /// One dimension of a declared shape; encodes as a JSON number, string or `null`.
    public enum SummaryDim: Codable, Sendable, Equatable, CustomStringConvertible {
        case value(Int)
        case symbol(String)
        case unknown

        public init(_ dim: Dim) {
            switch dim {
            case .value(let value): self = .value(value)
            case .symbol(let symbol): self = .symbol(symbol)
            case .unknown: self = .unknown
            }
        }

        public init(from decoder: Decoder) throws {
            let container = try decoder.singleValueContainer()
            if container.decodeNil() {
                self = .unknown
            } else if let value = try? container.decode(Int.self) {
                self = .value(value)
            } else {
                self = .symbol(try container.decode(String.self))
            }
        }

        public func encode(to encoder: Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .value(let value): try container.encode(value)
            case .symbol(let symbol): try container.encode(symbol)
            case .unknown: try container.encodeNil()
            }
        }

        public var description: String {
            switch self {
            case .value(let value): return String(value)
            case .symbol(let symbol): return symbol
            case .unknown: return "?"
            }
        }
    }

    /// A graph input or output.
    public struct Value: Codable, Sendable, Equatable {
        public var name: String
        /// The type as text, e.g. `tensor(float32)`, `sequence(tensor(int64))`, or `unknown`.
        public var type: String
        /// Element type of a tensor value (`DType` raw value); `nil` for other kinds or unknown types.
        public var dtype: String?
        /// Declared shape of a tensor value; `nil` when the rank is unknown.
        public var shape: [SummaryDim]?

        public init(name: String, type: String, dtype: String?, shape: [SummaryDim]?) {
            self.name = name
            self.type = type
            self.dtype = dtype
            self.shape = shape
        }
    }

    public struct OpsetImport: Codable, Sendable, Equatable {
        /// The domain; `ai.onnx` for the default domain.
        public var domain: String
        public var version: Int

        public init(domain: String, version: Int) {
            self.domain = domain
            self.version = version
        }
    }

    public struct OperatorCount: Codable, Sendable, Equatable {
        /// The operator type, prefixed with its domain when that is not the default one.
        public var opType: String
        public var count: Int

        public init(opType: String, count: Int) {
            self.opType = opType
            self.count = count
        }
    }

    /// Constant data of one element type: initializers (dense and sparse, in every graph) and the
    /// tensors of `Constant` nodes.
    public struct ParameterGroup: Codable, Sendable, Equatable {
        public var dtype: String
        public var tensors: Int
        public var elements: Int
        /// Storage bytes (packed for 4-bit types; sparse tensors count values and indices).
        public var bytes: Int

        public init(dtype: String, tensors: Int, elements: Int, bytes: Int) {
            self.dtype = dtype
            self.tensors = tensors
            self.elements = elements
            self.bytes = bytes
        }
    }

    public var irVersion: Int
    public var producerName: String
    public var producerVersion: String
    public var domain: String
    public var modelVersion: Int
    public var graphName: String
    public var opsetImports: [OpsetImport]
    public var metadata: [String: String]
    /// Inputs the caller feeds (declared inputs that are not initializers).
    public var inputs: [Value]
    public var outputs: [Value]
    /// Nodes in the main graph and every subgraph.
    public var nodeCount: Int
    /// Node count per operator, most frequent first.
    public var operators: [OperatorCount]
    /// Constant data per element type, in `DType` declaration order.
    public var parameters: [ParameterGroup]
    /// Total elements over `parameters`.
    public var parameterCount: Int
    /// Total bytes over `parameters`.
    public var parameterBytes: Int

    public init(_ model: Model) {
        irVersion = model.irVersion
        producerName = model.producerName
        producerVersion = model.producerVersion
        domain = model.domain
        modelVersion = model.modelVersion
        graphName = model.graph.name
        opsetImports = model.opsetImports.map { OpsetImport(domain: $0.key.isEmpty ? "ai.onnx" : $0.key, version: $0.value) }
        metadata = Dictionary(model.metadata.map { ($0.key, $0.value) }, uniquingKeysWith: { _, last in last })
        inputs = model.graph.runtimeInputs.map(Self.value)
        outputs = model.graph.outputs.map(Self.value)

        var counts: [String: Int] = [:]
        var groups: [DType: ParameterGroup] = [:]
        var nodes = 0
        func add(_ dtype: DType, elements: Int, bytes: Int) {
            var group = groups[dtype] ?? ParameterGroup(dtype: dtype.rawValue, tensors: 0, elements: 0, bytes: 0)
            group.tensors += 1
            group.elements += elements
            group.bytes += bytes
            groups[dtype] = group
        }
        func add(_ tensor: Tensor) { add(tensor.dtype, elements: tensor.count, bytes: tensor.byteCount) }
        func add(_ sparse: SparseTensor) {
            add(sparse.values.dtype, elements: sparse.values.count, bytes: sparse.values.byteCount + sparse.indices.byteCount)
        }
        func visit(_ graph: Graph) {
            for tensor in graph.initializers.values { add(tensor) }
            graph.sparseInitializers.forEach(add)
            for node in graph.nodes {
                nodes += 1
                let name = node.normalizedDomain.isEmpty ? node.opType : "\(node.domain).\(node.opType)"
                counts[name, default: 0] += 1
                if node.opType == "Constant" && node.normalizedDomain.isEmpty {
                    for (attributeName, attribute) in node.attributes {
                        switch (attributeName, attribute) {
                        case (_, .tensor(let tensor)): add(tensor)
                        case (_, .sparseTensor(let sparse)): add(sparse)
                        case ("value_float", .float): add(.float32, elements: 1, bytes: 4)
                        case ("value_int", .int): add(.int64, elements: 1, bytes: 8)
                        case ("value_floats", .floats(let values)): add(.float32, elements: values.count, bytes: 4 * values.count)
                        case ("value_ints", .ints(let values)): add(.int64, elements: values.count, bytes: 8 * values.count)
                        default: break
                        }
                    }
                }
                for attribute in node.attributes.values {
                    switch attribute {
                    case .graph(let body): visit(body)
                    case .graphs(let bodies): bodies.forEach(visit)
                    default: break
                    }
                }
            }
        }
        visit(model.graph)
        nodeCount = nodes
        operators = counts.map { OperatorCount(opType: $0.key, count: $0.value) }
            .sorted { $0.count != $1.count ? $0.count > $1.count : $0.opType < $1.opType }
        parameters = DType.allCases.compactMap { groups[$0] }
        parameterCount = parameters.reduce(0) { $0 + $1.elements }
        parameterBytes = parameters.reduce(0) { $0 + $1.bytes }
    }

    private static func value(_ info: ValueInfo) -> Value {
        guard let type = info.type else { return Value(name: info.name, type: "unknown", dtype: nil, shape: nil) }
        if case .tensor(let dtype, let shape) = type {
            return Value(name: info.name, type: typeText(type), dtype: dtype?.rawValue, shape: shape?.map(SummaryDim.init))
        }
        return Value(name: info.name, type: typeText(type), dtype: nil, shape: nil)
    }

    /// A compact text form of a value type, e.g. `tensor(float32)` or `map(int64, tensor(float32))`.
    static func typeText(_ type: ValueType?) -> String {
        guard let type else { return "?" }
        switch type {
        case .tensor(let dtype, _): return "tensor(\(dtype?.rawValue ?? "?"))"
        case .sparseTensor(let dtype, _): return "sparse_tensor(\(dtype?.rawValue ?? "?"))"
        case .sequence(let element): return "sequence(\(typeText(element)))"
        case .optional(let element): return "optional(\(typeText(element)))"
        case .map(let key, let value): return "map(\(key?.rawValue ?? "?"), \(typeText(value)))"
        case .unsupported(let code): return code == 0 ? "opaque" : "tensor(onnx type \(code))"
        }
    }

    /// The summary as aligned plain-text tables.
    public func formatted() -> String {
        var lines: [String] = []
        let opsetText = opsetImports.map { "\($0.domain) \($0.version)" }.joined(separator: ", ")
        var producer = producerName
        if !producerVersion.isEmpty { producer += " \(producerVersion)" }
        lines.append("IR version \(irVersion), opsets: \(opsetText.isEmpty ? "none" : opsetText)")
        if !producer.isEmpty { lines.append("Producer: \(producer)") }
        if !graphName.isEmpty { lines.append("Graph: \(graphName)") }

        func valueRows(_ values: [Value]) -> [[String]] {
            values.map { value in
                let shape = value.shape.map { "[" + $0.map(\.description).joined(separator: ", ") + "]" } ?? "unknown rank"
                return ["  " + value.name, value.dtype ?? value.type, value.dtype == nil && value.shape == nil ? "" : shape]
            }
        }
        lines.append("")
        lines.append("Inputs:")
        lines += Self.table(valueRows(inputs))
        lines.append("Outputs:")
        lines += Self.table(valueRows(outputs))

        lines.append("")
        lines.append("Parameters: \(Self.grouped(parameterCount)) elements, \(Self.byteText(parameterBytes))")
        lines += Self.table(parameters.map {
            ["  " + $0.dtype, "\(Self.grouped($0.tensors)) tensors", "\(Self.grouped($0.elements)) elements",
             Self.byteText($0.bytes)]
        }, rightAligned: [1, 2, 3])

        lines.append("")
        lines.append("Operators: \(Self.grouped(nodeCount)) nodes, \(operators.count) types")
        lines += Self.table(operators.map { ["  " + $0.opType, Self.grouped($0.count)] }, rightAligned: [1])

        if !metadata.isEmpty {
            lines.append("")
            lines.append("Metadata:")
            lines += Self.table(metadata.keys.sorted().map { ["  " + $0, metadata[$0] ?? ""] })
        }
        return lines.joined(separator: "\n")
    }

    private static func table(_ rows: [[String]], rightAligned: Set<Int> = []) -> [String] {
        guard let columns = rows.map(\.count).max() else { return [] }
        var widths = [Int](repeating: 0, count: columns)
        for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        return rows.map { row in
            row.enumerated().map { index, cell in
                let padding = String(repeating: " ", count: widths[index] - cell.count)
                return rightAligned.contains(index) ? padding + cell : cell + padding
            }.joined(separator: "  ").trimmingTrailingSpaces()
        }
    }

    /// `1234567` as `1,234,567`.
    static func grouped(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var result = ""
        for (index, digit) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { result.append(",") }
            result.append(digit)
        }
        return value < 0 ? "-" + result : result
    }

    /// Bytes with a binary unit, e.g. `86.1 MiB`.
    static func byteText(_ bytes: Int) -> String {
        let units = ["bytes", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        if unit == 0 { return "\(bytes) bytes" }
        let tenths = (value * 10).rounded()
        return "\(Int(tenths) / 10).\(Int(tenths) % 10) \(units[unit])"
    }
}

private extension String {
    func trimmingTrailingSpaces() -> String {
        var result = self
        while result.last == " " { result.removeLast() }
        return result
    }
}
