import GraphIR
import Tensors

/// ONNX `Cast` and `CastLike`: element-type conversion by `Tensor.converted(to:)`, which implements
/// ONNX's rules (round to nearest even between floats, truncation toward zero from float to integer,
/// low-bit wrap between integers, nonzero → true).
///
/// Versions: Cast-6 (numeric types), Cast-9 (+ string), Cast-13 (+ bfloat16), Cast-19 (+ float8 and
/// the `saturate` attribute, which only affects float8 destinations), Cast-21 (+ int4/uint4);
/// CastLike-15, -19, -21 follow the same type sets. String tensors are not supported by this runtime.

/// Converts input 0 to a dtype fixed when the session is compiled.
struct CastKernel: Kernel {
    let target: DType
    let allowed: CastTypeSet

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let input = try required(inputs, 0)
        try allowed.check(input.dtype, what: "input 0")
        return [try input.converted(to: target)]
    }
}

/// Converts input 0 to the dtype of input 1 (whose values are not read).
struct CastLikeKernel: Kernel {
    let allowed: CastTypeSet

    func run(_ inputs: [Tensor?], context: ExecutionContext) throws -> [Tensor] {
        let input = try required(inputs, 0)
        let like = try required(inputs, 1)
        try allowed.check(input.dtype, what: "input 0")
        try allowed.check(like.dtype, what: "input 1 (target_type)")
        return [try input.converted(to: like.dtype)]
    }
}

/// The element types one version of Cast/CastLike accepts (string aside, which no tensor here holds).
struct CastTypeSet: Sendable {
    /// The operator version the set belongs to (the `since` version of the registration).
    let version: Int
    let opType: String

    /// The first Cast version that accepts `dtype`.
    static func introduction(of dtype: DType) -> Int {
        switch dtype {
        case .bfloat16: return 13
        case .float8e4m3fn, .float8e5m2: return 19
        case .int4, .uint4: return 21
        default: return 6
        }
    }

    func check(_ dtype: DType, what: String) throws {
        let needed = Self.introduction(of: dtype)
        guard needed <= version else {
            throw KernelError.invalid("\(what): \(opType)-\(version) does not accept \(dtype) (added in opset \(needed))")
        }
    }
}

extension KernelRegistry {
    mutating func registerCastKernels() {
        for version in [6, 9, 13, 19, 21] {
            register("Cast", since: version) { context in
                let allowed = CastTypeSet(version: version, opType: "Cast")
                let target = try Self.castTarget(context, allowed: allowed)
                return CastKernel(target: target, allowed: allowed)
            }
        }
        for version in [15, 19, 21] {
            register("CastLike", since: version) { context in
                if version >= 19 { _ = try context.int("saturate", default: 1) }
                return CastLikeKernel(allowed: CastTypeSet(version: version, opType: "CastLike"))
            }
        }
    }

    /// The dtype Cast's `to` attribute names, checked against the operator version.
    private static func castTarget(_ context: KernelBuildContext, allowed: CastTypeSet) throws -> DType {
        guard context.has("to") else { throw KernelError.invalidAttribute("to", "is required") }
        let code = try context.int("to")
        guard let onnxCode = Int32(exactly: code), let target = DType(onnxCode: onnxCode) else {
            let name = Int32(exactly: code).map { DType.onnxTypeName(code: $0) } ?? "code \(code)"
            if code == 8 { throw KernelError.unsupported("Cast to STRING (this runtime has no string tensors)") }
            throw KernelError.unsupported("Cast to \(name) (no tensor type for it in this runtime)")
        }
        try allowed.check(target, what: "attribute 'to'")
        // `saturate` (Cast-19+) only changes float8 results; still read it so a mistyped one is reported.
        if allowed.version >= 19 { _ = try context.int("saturate", default: 1) }
        // Report destinations `converted(to:)` cannot produce now rather than on the first run.
        do {
            _ = try Tensor(zeros: .float32, shape: [0]).converted(to: target)
        } catch {
            throw KernelError.unsupported("Cast to \(DType.onnxTypeName(code: onnxCode)): \(error)")
        }
        return target
    }
}
