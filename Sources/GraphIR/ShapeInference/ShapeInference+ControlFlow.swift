import Tensors

/// Quantization operators and control flow (`If`, `Loop`, `Scan`).
extension NodeInference {
    // MARK: Quantization

    /// `y` has `x`'s shape and the zero point's type (uint8 without one), or `output_dtype` (opset 21+).
    func quantizeLinear() throws -> InferredType {
        var dtype: DType? = has(2) ? input(2).dtype : .uint8
        if let code = try intAttribute("output_dtype"), code != 0 { dtype = DType(onnxCode: code) }
        return InferredType(dtype: dtype, shape: input(0).shape)
    }

    /// `y` has `x`'s shape; float32 before opset 19, the scale's type from 19, `output_dtype` if set.
    func dequantizeLinear(opset: Int) throws -> InferredType {
        var dtype: DType? = opset >= 19 ? input(1).dtype : .float32
        if let code = try intAttribute("output_dtype"), code != 0 { dtype = DType(onnxCode: code) }
        return InferredType(dtype: dtype, shape: input(0).shape)
    }

    // MARK: Control flow

    /// Outputs of the branch a constant condition selects, or what both branches agree on.
    mutating func ifOutputs() throws -> [InferredType] {
        guard let thenOutputs = try inferSubgraph("then_branch") else { throw invalidAttribute("then_branch", "is required") }
        guard let elseOutputs = try inferSubgraph("else_branch") else { throw invalidAttribute("else_branch", "is required") }
        guard thenOutputs.count == node.outputs.count, elseOutputs.count == node.outputs.count else {
            throw mismatch("branches return \(thenOutputs.count) and \(elseOutputs.count) values for \(node.outputs.count) outputs")
        }
        if let condition = integers(0), condition.count == 1 {
            return condition[0] != 0 ? thenOutputs : elseOutputs
        }
        return try zip(thenOutputs, elseOutputs).enumerated().map { position, pair in
            let (a, b) = pair
            if let x = a.dtype, let y = b.dtype, x != y {
                throw mismatch("branches return \(x) and \(y) for output \(position)")
            }
            var joined = InferredType(dtype: a.dtype ?? b.dtype)
            if let s = a.shape, let t = b.shape, s.count == t.count { joined.shape = zip(s, t).map(Dim.join) }
            if a.value == b.value { joined.value = a.value }
            return joined
        }
    }

    /// `Loop(M, cond, v_initial…)`: the body sees `(iteration, cond, v…)` and returns `(cond, v…, scan…)`.
    /// Final loop-carried values keep what the initial value and the body agree on; scan outputs stack
    /// the body's per-iteration values along a new leading axis of unknown length.
    mutating func loopOutputs() throws -> [InferredType] {
        let carried = max(inputCount - 2, 0)
        var seeds = [InferredType(dtype: .int64, shape: []), InferredType(dtype: .bool, shape: [])]
        seeds += (0..<carried).map { InferredType(dtype: input(2 + $0).dtype) }
        guard let bodyOutputs = try inferSubgraph("body", inputSeeds: seeds) else { throw invalidAttribute("body", "is required") }
        guard bodyOutputs.count == 1 + node.outputs.count, node.outputs.count >= carried else {
            throw mismatch("body returns \(bodyOutputs.count) values for 1 condition and \(node.outputs.count) outputs")
        }
        var outputs: [InferredType] = []
        for index in 0..<carried {
            let initial = input(2 + index)
            let body = bodyOutputs[1 + index]
            if let x = initial.dtype, let y = body.dtype, x != y {
                throw mismatch("loop-carried value \(index) starts as \(x) but the body returns \(y)")
            }
            var type = InferredType(dtype: initial.dtype ?? body.dtype)
            if let s = initial.shape, let t = body.shape, s.count == t.count { type.shape = zip(s, t).map(Dim.join) }
            outputs.append(type)
        }
        for index in (1 + carried)..<bodyOutputs.count {
            let body = bodyOutputs[index]
            outputs.append(InferredType(dtype: body.dtype, shape: body.shape.map { [.unknown] + $0 }))
        }
        return outputs
    }

    /// `Scan`: element types from the body; shapes are left unknown.
    mutating func scanOutputs(opset: Int) throws -> [InferredType] {
        guard let bodyOutputs = try inferSubgraph("body") else { throw invalidAttribute("body", "is required") }
        return bodyOutputs.map { InferredType(dtype: $0.dtype) }
    }
}
