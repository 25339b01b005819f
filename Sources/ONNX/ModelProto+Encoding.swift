import Foundation
import GraphIR
import Tensors

/// Converts the Graph IR back into protobuf messages. Tensor data is always written as `raw_data`
/// (little-endian), or, with an external-data sink, large initializers go to the side file.
struct ModelEncoder {
    let externalData: ExternalDataSink?

    func model(_ model: Model) -> Onnx_ModelProto {
        var proto = Onnx_ModelProto()
        proto.irVersion = Int64(model.irVersion)
        proto.opsetImport = model.opsetImports.map { domain, version in
            var opset = Onnx_OperatorSetIdProto()
            opset.domain = domain
            opset.version = Int64(version)
            return opset
        }
        proto.producerName = model.producerName
        proto.producerVersion = model.producerVersion
        proto.domain = model.domain
        proto.modelVersion = Int64(model.modelVersion)
        proto.docString = model.docString
        proto.graph = graph(model.graph)
        proto.metadataProps = model.metadata.map { key, value in
            var entry = Onnx_StringStringEntryProto()
            entry.key = key
            entry.value = value
            return entry
        }
        return proto
    }

    func graph(_ graph: Graph) -> Onnx_GraphProto {
        var proto = Onnx_GraphProto()
        proto.name = graph.name
        proto.docString = graph.docString
        proto.node = graph.nodes.map(node)
        proto.input = graph.inputs.map(valueInfo)
        proto.output = graph.outputs.map(valueInfo)
        proto.valueInfo = graph.valueInfo.values.map(valueInfo)
        proto.initializer = graph.initializers.map { name, tensor in
            initializer(tensor, name: name)
        }
        proto.sparseInitializer = graph.sparseInitializers.map(sparseTensor)
        return proto
    }

    private func initializer(_ tensor: Tensor, name: String) -> Onnx_TensorProto {
        guard let externalData, tensor.byteCount >= externalData.options.sizeThreshold, tensor.byteCount > 0 else {
            return Self.tensor(tensor, name: name)
        }
        var proto = Onnx_TensorProto()
        proto.name = name
        proto.dataType = tensor.dtype.onnxCode
        proto.dims = tensor.shape.map { Int64($0) }
        proto.dataLocation = .external
        proto.externalData = externalData.place(tensor)
        return proto
    }

    func node(_ node: Node) -> Onnx_NodeProto {
        var proto = Onnx_NodeProto()
        proto.name = node.name
        proto.opType = node.opType
        proto.domain = node.domain
        proto.input = node.inputs
        proto.output = node.outputs
        proto.docString = node.docString
        proto.attribute = node.attributes.map { name, value in attribute(value, name: name) }
        return proto
    }

    func attribute(_ attribute: Attribute, name: String) -> Onnx_AttributeProto {
        var proto = Onnx_AttributeProto()
        proto.name = name
        switch attribute {
        case .float(let value): proto.type = .float; proto.f = value
        case .int(let value): proto.type = .int; proto.i = Int64(value)
        case .string(let bytes): proto.type = .string; proto.s = Data(bytes)
        case .tensor(let tensor): proto.type = .tensor; proto.t = Self.tensor(tensor, name: "")
        case .graph(let body): proto.type = .graph; proto.g = graph(body)
        case .sparseTensor(let sparse): proto.type = .sparseTensor; proto.sparseTensor = sparseTensor(sparse)
        case .type(let type): proto.type = .typeProto; proto.tp = Self.typeProto(type)
        case .floats(let values): proto.type = .floats; proto.floats = values
        case .ints(let values): proto.type = .ints; proto.ints = values.map { Int64($0) }
        case .strings(let values): proto.type = .strings; proto.strings = values.map { Data($0) }
        case .tensors(let values): proto.type = .tensors; proto.tensors = values.map { Self.tensor($0, name: "") }
        case .graphs(let bodies): proto.type = .graphs; proto.graphs = bodies.map(graph)
        case .sparseTensors(let values): proto.type = .sparseTensors; proto.sparseTensors = values.map(sparseTensor)
        case .types(let types): proto.type = .typeProtos; proto.typeProtos = types.map(Self.typeProto)
        }
        return proto
    }

    func sparseTensor(_ sparse: SparseTensor) -> Onnx_SparseTensorProto {
        var proto = Onnx_SparseTensorProto()
        proto.values = Self.tensor(sparse.values, name: sparse.valuesName)
        proto.indices = Self.tensor(sparse.indices, name: "")
        proto.dims = sparse.dims.map { Int64($0) }
        return proto
    }

    /// A `TensorProto` holding `tensor` in `raw_data`.
    static func tensor(_ tensor: Tensor, name: String) -> Onnx_TensorProto {
        var proto = Onnx_TensorProto()
        proto.name = name
        proto.dataType = tensor.dtype.onnxCode
        proto.dims = tensor.shape.map { Int64($0) }
        proto.rawData = tensor.withUnsafeBytes { Data($0) }
        return proto
    }

    func valueInfo(_ info: ValueInfo) -> Onnx_ValueInfoProto {
        var proto = Onnx_ValueInfoProto()
        proto.name = info.name
        proto.docString = info.docString
        if let type = info.type { proto.type = Self.typeProto(type) }
        return proto
    }

    static func typeProto(_ type: ValueType) -> Onnx_TypeProto {
        var proto = Onnx_TypeProto()
        switch type {
        case .tensor(let elementType, let shape):
            var tensor = Onnx_TypeProto.Tensor()
            tensor.elemType = elementType?.onnxCode ?? 0
            if let shape { tensor.shape = shapeProto(shape) }
            proto.tensorType = tensor
        case .sparseTensor(let elementType, let shape):
            var tensor = Onnx_TypeProto.SparseTensor()
            tensor.elemType = elementType?.onnxCode ?? 0
            if let shape { tensor.shape = shapeProto(shape) }
            proto.sparseTensorType = tensor
        case .sequence(let element):
            var sequence = Onnx_TypeProto.Sequence()
            if let element { sequence.elemType = typeProto(element) }
            proto.sequenceType = sequence
        case .optional(let element):
            var optional = Onnx_TypeProto.Optional()
            if let element { optional.elemType = typeProto(element) }
            proto.optionalType = optional
        case .map(let keyType, let valueType):
            var map = Onnx_TypeProto.Map()
            map.keyType = keyType?.onnxCode ?? 0
            if let valueType { map.valueType = typeProto(valueType) }
            proto.mapType = map
        case .unsupported(let code):
            if code == 0 {
                proto.opaqueType = Onnx_TypeProto.Opaque()
            } else {
                var tensor = Onnx_TypeProto.Tensor()
                tensor.elemType = code
                proto.tensorType = tensor
            }
        }
        return proto
    }

    private static func shapeProto(_ dims: [Dim]) -> Onnx_TensorShapeProto {
        var shape = Onnx_TensorShapeProto()
        shape.dim = dims.map { dim in
            var dimension = Onnx_TensorShapeProto.Dimension()
            switch dim {
            case .value(let value): dimension.dimValue = Int64(value)
            case .symbol(let symbol): dimension.dimParam = symbol
            case .unknown: break
            }
            return dimension
        }
        return shape
    }
}
