import GraphIR
import Tensors

extension IntegerFusionRewriter {
    /// Attention's float tail around the softmax: `Add(a, b) → Softmax(axis −1) [→ Where(IsNaN(s), c, s)]`
    /// (the additive mask, and the guard for fully masked rows that PyTorch exports) becomes
    /// `MaskedSoftmax(a, b[, c])`: one pass per row instead of four over the scores.
    mutating func fuseMaskedSoftmaxes() {
        guard hasKernel("MaskedSoftmax") else { return }
        for index in graph.nodes.indices where isFree([index]) {
            let softmax = node(index)
            guard softmax.opType == "Softmax", softmax.normalizedDomain.isEmpty, softmax.inputs.count == 1,
                  softmax.outputs.count == 1, isLastAxis(softmax),
                  let add = producer(of: softmax.inputs[0], "Add"), soleReader(of: softmax.inputs[0]) == index,
                  node(add).inputs.count == 2, node(add).outputs.count == 1
            else { continue }
            var removed: Set<Int> = [add, index]
            var inputs = node(add).inputs
            var output = softmax.outputs[0]
            if let nanGuard = nanGuard(reading: output) {
                removed.formUnion([nanGuard.isNaN, nanGuard.select])
                inputs.append(nanGuard.replacement)
                output = node(nanGuard.select).outputs[0]
            }
            let fused = fusedNode("MaskedSoftmax", name: softmax.name, inputs: inputs, outputs: [output])
            plan(removing: removed, anchor: removed.max()!, with: [fused])
        }
    }

    /// Multi-head attention's core as PyTorch exports BERT — `Transpose(q) · s_q`, `Transpose(k) · s_k`,
    /// their MatMul, `MaskedSoftmax` and the MatMul with `Transpose(v)` — becomes one `Attention` operator
    /// (see `FusedAttentionKernel`): no transposed copies, one head at a time in cache. `Shape` nodes reading
    /// a transposed q, k or v (the export sizes its reshapes with them) read the untransposed tensor through
    /// a `Gather` of the permutation instead.
    mutating func fuseAttentions() {
        guard hasKernel("Attention") else { return }
        for index in graph.nodes.indices where isFree([index]) {
            let softmax = node(index)
            guard softmax.opType == "MaskedSoftmax", softmax.domain == IntegerFusion.domain, softmax.inputs.count >= 2,
                  softmax.outputs.count == 1 else { continue }
            for scoresPosition in 0..<2 {
                guard let scores = producer(of: softmax.inputs[scoresPosition], "MatMul"),
                      soleReader(of: softmax.inputs[scoresPosition]) == index, node(scores).inputs.count == 2,
                      let qPath = scaledTranspose(node(scores).inputs[0], [0, 2, 1, 3], reader: scores),
                      let kPath = scaledTranspose(node(scores).inputs[1], [0, 2, 3, 1], reader: scores),
                      let context = soleReader(of: softmax.outputs[0], ["MatMul"]),
                      node(context).inputs.count == 2, node(context).inputs[0] == softmax.outputs[0],
                      node(context).outputs.count == 1,
                      let vPath = transpose(producing: node(context).inputs[1], [0, 2, 1, 3], reader: context)
                else { continue }
                let removed: Set<Int> = [qPath.transpose, qPath.mul, kPath.transpose, kPath.mul, scores, index,
                                         vPath.transpose, context]
                let shapes = qPath.shapes + kPath.shapes + vPath.shapes
                guard isFree(Array(removed) + shapes.map(\.shape)) else { continue }
                let inputs = [node(qPath.transpose).inputs[0], node(kPath.transpose).inputs[0], node(vPath.transpose).inputs[0],
                              qPath.scale, kPath.scale, softmax.inputs[1 - scoresPosition]] + softmax.inputs.dropFirst(2)
                let orders = shapes.compactMap { try? Tensor(shape: [$0.permutation.count], scalars: $0.permutation.map { Int64($0) }) }
                guard orders.count == shapes.count else { continue }
                let fused = fusedNode("Attention", name: softmax.name, inputs: inputs, outputs: node(context).outputs)
                plan(removing: removed, anchor: context, with: [fused])
                for (shape, order) in zip(shapes, orders) { readUntransposed(shape: shape.shape, order: order) }
                break
            }
        }
    }

    /// Replaces `Shape(Transpose(x, p))` at `shape` by `Gather(Shape(x), order)`, `order` holding p.
    private mutating func readUntransposed(shape index: Int, order: Tensor) {
        let shape = node(index)
        let source = producers[shape.inputs[0]].map { node($0).inputs[0] } ?? shape.inputs[0]
        let own = namer.make(base: shape.outputs[0] + "_untransposed")
        let orderName = addConstant(order, base: shape.outputs[0] + "_permutation")
        let readSource = Node(name: nodeName(shape.name), opType: "Shape", inputs: [source], outputs: [own])
        let gather = Node(name: nodeName(shape.name + "_permuted"), opType: "Gather", inputs: [own, orderName],
                          outputs: shape.outputs)
        plan(removing: [index], anchor: index, with: [readSource, gather])
    }

    private func permutation(_ node: Node) -> [Int]? {
        if case .ints(let values)? = node.attributes["perm"] { return values }
        return nil
    }

    /// `Mul(Transpose(x, permutation), s)` (either operand order) producing `value`, read only by `reader`,
    /// with `s` a one-element float32 constant: the Transpose, the Mul, `s`'s name and the plain `Shape`
    /// nodes that also read the Transpose.
    private func scaledTranspose(_ value: String, _ permutation: [Int], reader: Int)
        -> (transpose: Int, mul: Int, scale: String, shapes: [(shape: Int, permutation: [Int])])? {
        guard let mul = producer(of: value, "Mul"), soleReader(of: value) == reader, node(mul).inputs.count == 2,
              node(mul).outputs.count == 1 else { return nil }
        for position in 0..<2 {
            let scale = node(mul).inputs[1 - position]
            guard let constant = constant(scale), constant.dtype == .float32, constant.count == 1, constant.rank <= 4,
                  let path = transpose(producing: node(mul).inputs[position], permutation, reader: mul)
            else { continue }
            return (path.transpose, mul, scale, path.shapes)
        }
        return nil
    }

    /// The Transpose with `permutation` producing `value`, read by `reader` and otherwise only by plain
    /// `Shape` nodes (no start or end), which it returns.
    private func transpose(producing value: String, _ permutation: [Int], reader: Int)
        -> (transpose: Int, shapes: [(shape: Int, permutation: [Int])])? {
        guard let index = producer(of: value, "Transpose"), !graphOutputs.contains(value),
              node(index).inputs.count == 1, node(index).outputs.count == 1,
              self.permutation(node(index)) == permutation, let list = readers[value], list.contains(reader)
        else { return nil }
        var shapes: [(shape: Int, permutation: [Int])] = []
        for other in list where other != reader {
            let shape = node(other)
            guard shape.opType == "Shape", shape.normalizedDomain.isEmpty, shape.attributes["start"] == nil,
                  shape.attributes["end"] == nil, shape.outputs.count == 1, list.filter({ $0 == other }).count == 1
            else { return nil }
            shapes.append((other, permutation))
        }
        guard list.filter({ $0 == reader }).count == 1 else { return nil }
        return (index, shapes)
    }

    /// Whether a Softmax normalises the last axis: `axis = −1`, or no axis from opset 13 (earlier opsets
    /// default to axis 1 and flatten from it).
    private func isLastAxis(_ softmax: Node) -> Bool {
        guard let axis = softmax.attributes["axis"] else { return opset >= 13 }
        if case .int(let value) = axis { return value == -1 }
        return false
    }

    /// `Where(IsNaN(s), c, s)` reading the softmax output `s`, with `c` a one-element float32 constant, when
    /// `s` has no other readers: the nodes and `c`'s name.
    private func nanGuard(reading value: String) -> (isNaN: Int, select: Int, replacement: String)? {
        guard !graphOutputs.contains(value), let list = readers[value], list.count == 2 else { return nil }
        guard let isNaN = list.first(where: { node($0).opType == "IsNaN" }),
              let select = list.first(where: { node($0).opType == "Where" }),
              node(isNaN).normalizedDomain.isEmpty, node(select).normalizedDomain.isEmpty,
              node(isNaN).outputs.count == 1, soleReader(of: node(isNaN).outputs[0]) == select
        else { return nil }
        let whereNode = node(select)
        guard whereNode.inputs.count == 3, whereNode.outputs.count == 1, whereNode.inputs[0] == node(isNaN).outputs[0],
              whereNode.inputs[2] == value, whereNode.inputs[1] != value,
              let replacement = constant(whereNode.inputs[1]), replacement.dtype == .float32, replacement.count == 1,
              replacement.rank <= 1
        else { return nil }
        return (isNaN, select, whereNode.inputs[1])
    }
}
