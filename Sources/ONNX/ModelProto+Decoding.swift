import Foundation
import GraphIR
import OrderedCollections
import Tensors

/// Converts the generated protobuf messages into the Graph IR.
///
/// Kept: everything the IR models (nodes, attributes of every kind, subgraphs, typed inputs, outputs and
/// value_info, initializers, sparse initializers, doc strings, opset imports, metadata). Dropped:
/// annotations the IR has no place for (type/dim denotations, node and graph metadata_props, training
/// info, quantization annotations, device configurations).
struct ModelDecoder {
    let tensors: TensorDecoder
    var file: String { tensors.file }

    init(file: String, baseDirectory: URL?) {
        tensors = TensorDecoder(file: file, baseDirectory: baseDirectory)
    }

    func model(_ proto: Onnx_ModelProto) throws -> Model {
        guard proto.irVersion > 0 else {
            throw ONNXError.invalidModel(file: file, reason: "ir_version is missing, so this is not an ONNX model")
        }
        guard proto.hasGraph else { throw ONNXError.invalidModel(file: file, reason: "the model has no graph") }
        if let function = proto.functions.first {
            let name = function.domain.isEmpty ? function.name : "\(function.domain).\(function.name)"
            throw ONNXError.unsupportedFunction(file: file, function: name)
        }
        var opsets: OrderedDictionary<String, Int> = [:]
        for opset in proto.opsetImport {
            if opsets.updateValue(Int(opset.version), forKey: opset.domain) != nil {
                throw ONNXError.invalidModel(
                    file: file, reason: "domain '\(opset.domain)' is imported more than once in opset_import")
            }
        }
        var metadata: OrderedDictionary<String, String> = [:]
        for entry in proto.metadataProps { metadata[entry.key] = entry.value }
        return Model(
            graph: try graph(proto.graph), opsetImports: opsets, irVersion: Int(proto.irVersion),
            producerName: proto.producerName, producerVersion: proto.producerVersion, domain: proto.domain,
            modelVersion: Int(proto.modelVersion), docString: proto.docString, metadata: metadata)
    }

    func graph(_ proto: Onnx_GraphProto) throws -> Graph {
        var initializers: OrderedDictionary<String, Tensor> = [:]
        for (index, tensorProto) in proto.initializer.enumerated() {
            let name = tensorProto.name
            guard !name.isEmpty else {
                throw ONNXError.invalidTensor(
                    file: file, tensor: "initializer #\(index) of graph '\(proto.name)'", reason: "it has no name")
            }
            guard initializers[name] == nil else {
                throw ONNXError.invalidTensor(file: file, tensor: name, reason: "two initializers have this name")
            }
            initializers[name] = try tensors.tensor(tensorProto, fallbackName: name)
        }
        var valueInfo: OrderedDictionary<String, ValueInfo> = [:]
        for info in proto.valueInfo where valueInfo[info.name] == nil {
            valueInfo[info.name] = self.valueInfo(info)
        }
        return Graph(
            name: proto.name,
            nodes: try proto.node.enumerated().map { try node($1, index: $0, graph: proto.name) },
            inputs: proto.input.map(self.valueInfo), outputs: proto.output.map(self.valueInfo),
            initializers: initializers,
            sparseInitializers: try proto.sparseInitializer.enumerated().map {
                try sparseTensor($1, fallbackName: "sparse initializer #\($0) of graph '\(proto.name)'")
            },
            valueInfo: valueInfo, docString: proto.docString)
    }

    func node(_ proto: Onnx_NodeProto, index: Int, graph: String) throws -> Node {
        var node = Node(
            name: proto.name, opType: proto.opType, domain: proto.domain, inputs: proto.input,
            outputs: proto.output, docString: proto.docString)
        let label = proto.name.isEmpty ? "node #\(index) (\(proto.opType)) of graph '\(graph)'" : node.label
        for attributeProto in proto.attribute {
            guard node.attributes[attributeProto.name] == nil else {
                throw ONNXError.invalidAttribute(
                    file: file, node: label, attribute: attributeProto.name, reason: "it appears more than once")
            }
            node.attributes[attributeProto.name] = try attribute(attributeProto, node: label)
        }
        return node
    }

    func attribute(_ proto: Onnx_AttributeProto, node: String) throws -> Attribute {
        func failure(_ reason: String) -> ONNXError {
            .invalidAttribute(file: file, node: node, attribute: proto.name, reason: reason)
        }
        guard proto.refAttrName.isEmpty else {
            throw failure("it refers to function attribute '\(proto.refAttrName)' outside a function")
        }
        let tensorLabel = "attribute '\(proto.name)' of \(node)"
        switch try Self.kind(of: proto) {
        case .float: return .float(proto.f)
        case .int: return .int(Int(proto.i))
        case .string: return .string([UInt8](proto.s))
        case .tensor: return .tensor(try tensors.tensor(proto.t, fallbackName: tensorLabel))
        case .graph: return .graph(try graph(proto.g))
        case .sparseTensor: return .sparseTensor(try sparseTensor(proto.sparseTensor, fallbackName: tensorLabel))
        case .typeProto: return .type(valueType(proto.tp) ?? .unsupported(onnxElementType: 0))
        case .floats: return .floats(proto.floats)
        case .ints: return .ints(proto.ints.map { Int($0) })
        case .strings: return .strings(proto.strings.map { [UInt8]($0) })
        case .tensors:
            return .tensors(try proto.tensors.enumerated().map {
                try tensors.tensor($1, fallbackName: "\(tensorLabel)[\($0)]")
            })
        case .graphs: return .graphs(try proto.graphs.map(graph))
        case .sparseTensors:
            return .sparseTensors(try proto.sparseTensors.enumerated().map {
                try sparseTensor($1, fallbackName: "\(tensorLabel)[\($0)]")
            })
        case .typeProtos: return .types(proto.typeProtos.map { valueType($0) ?? .unsupported(onnxElementType: 0) })
        case .undefined: throw failure("it has no value")
        case .UNRECOGNIZED(let code): throw failure("unknown attribute type \(code)")
        }
    }

    /// The attribute's kind: its `type` field, or, for files from before that field existed, the field
    /// that holds a value.
    private static func kind(of proto: Onnx_AttributeProto) throws -> Onnx_AttributeProto.AttributeType {
        if proto.type != .undefined { return proto.type }
        if proto.hasT { return .tensor }
        if proto.hasG { return .graph }
        if proto.hasSparseTensor { return .sparseTensor }
        if proto.hasTp { return .typeProto }
        if !proto.floats.isEmpty { return .floats }
        if !proto.ints.isEmpty { return .ints }
        if !proto.strings.isEmpty { return .strings }
        if !proto.tensors.isEmpty { return .tensors }
        if !proto.graphs.isEmpty { return .graphs }
        if !proto.sparseTensors.isEmpty { return .sparseTensors }
        if !proto.typeProtos.isEmpty { return .typeProtos }
        if !proto.s.isEmpty { return .string }
        if proto.i != 0 { return .int }
        if proto.f != 0 { return .float }
        return .undefined
    }

    func sparseTensor(_ proto: Onnx_SparseTensorProto, fallbackName: String) throws -> SparseTensor {
        let name = proto.values.name.isEmpty ? fallbackName : proto.values.name
        guard proto.hasValues, proto.hasIndices else {
            throw ONNXError.invalidTensor(file: file, tensor: name, reason: "a sparse tensor needs values and indices")
        }
        var dims: [Int] = []
        for dim in proto.dims {
            guard dim >= 0 else {
                throw ONNXError.invalidTensor(
                    file: file, tensor: name, reason: "sparse dims \(proto.dims) have a negative dimension")
            }
            dims.append(Int(dim))
        }
        guard (try? Shape.elementCount(dims)) != nil else {
            throw ONNXError.invalidTensor(
                file: file, tensor: name, reason: "sparse dims \(proto.dims) hold more elements than can be counted")
        }
        let values = try tensors.tensor(proto.values, fallbackName: name)
        let indices = try tensors.tensor(proto.indices, fallbackName: "indices of \(name)")
        guard indices.dtype == .int64 else {
            throw ONNXError.invalidTensor(file: file, tensor: name, reason: "sparse indices must be int64, not \(indices.dtype)")
        }
        return SparseTensor(values: values, indices: indices, dims: dims, valuesName: proto.values.name)
    }

    func valueInfo(_ proto: Onnx_ValueInfoProto) -> ValueInfo {
        ValueInfo(name: proto.name, type: proto.hasType ? valueType(proto.type) : nil, docString: proto.docString)
    }

    /// The IR type of a `TypeProto`; `nil` when no kind is set.
    func valueType(_ proto: Onnx_TypeProto) -> ValueType? {
        switch proto.value {
        case nil:
            return nil
        case .tensorType(let tensor)?:
            if tensor.elemType != 0 && DType(onnxCode: tensor.elemType) == nil {
                // Keep the element code (e.g. STRING) so writing the model back preserves it.
                return .unsupported(onnxElementType: tensor.elemType)
            }
            return .tensor(elementType: DType(onnxCode: tensor.elemType),
                           shape: tensor.hasShape ? dims(tensor.shape) : nil)
        case .sparseTensorType(let tensor)?:
            return .sparseTensor(elementType: DType(onnxCode: tensor.elemType),
                                 shape: tensor.hasShape ? dims(tensor.shape) : nil)
        case .sequenceType(let sequence)?:
            return .sequence(sequence.hasElemType ? valueType(sequence.elemType) : nil)
        case .optionalType(let optional)?:
            return .optional(optional.hasElemType ? valueType(optional.elemType) : nil)
        case .mapType(let map)?:
            return .map(keyType: DType(onnxCode: map.keyType),
                        valueType: map.hasValueType ? valueType(map.valueType) : nil)
        case .opaqueType?:
            return .unsupported(onnxElementType: 0)
        }
    }

    private func dims(_ shape: Onnx_TensorShapeProto) -> [Dim] {
        shape.dim.map { dimension in
            switch dimension.value {
            case .dimValue(let value)?: return .value(Int(value))
            case .dimParam(let symbol)?: return .symbol(symbol)
            case nil: return .unknown
            }
        }
    }
}
