extension IntegerFusionRewriter {
    mutating func rewriteShapeReads() {}
    mutating func moveDequantizeAfterLayoutOperators() {}
    mutating func fuseConvolution(_ index: Int, transposed: Bool) {}
    mutating func mapQLinearConv(_ index: Int) {}
    mutating func fuseDynamicMatMuls() {}
    mutating func fuseWeightOnlyMatMuls() {}
    mutating func fuseElementwise() {}
    mutating func fuseRequantizations() {}
    mutating func vectoriseQuantizeDequantize() {}
}
