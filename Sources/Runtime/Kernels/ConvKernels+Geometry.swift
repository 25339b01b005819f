import GraphIR
import Tensors

/// Shared by the Conv, ConvTranspose and pooling kernels: padding modes, per-axis window geometry with
/// overflow-checked sizes, and float16/bfloat16 bridging to the float32 paths.

/// ONNX `auto_pad`.
enum AutoPad: String, Sendable {
    case notSet = "NOTSET"
    case sameUpper = "SAME_UPPER"
    case sameLower = "SAME_LOWER"
    case valid = "VALID"

    init(_ context: KernelBuildContext) throws {
        let text = try context.string("auto_pad", default: "NOTSET")
        guard let value = AutoPad(rawValue: text) else {
            throw KernelError.invalidAttribute("auto_pad", "must be NOTSET, SAME_UPPER, SAME_LOWER or VALID, got '\(text)'")
        }
        self = value
    }
}

/// Overflow-checked size arithmetic for values that come from model files.
enum SpatialMath {
    static func multiply(_ a: Int, _ b: Int, _ what: @autoclosure () -> String) throws -> Int {
        let (value, overflow) = a.multipliedReportingOverflow(by: b)
        guard !overflow else { throw KernelError.invalid("\(what()) overflows") }
        return value
    }

    static func add(_ a: Int, _ b: Int, _ what: @autoclosure () -> String) throws -> Int {
        let (value, overflow) = a.addingReportingOverflow(b)
        guard !overflow else { throw KernelError.invalid("\(what()) overflows") }
        return value
    }

    /// The product of `values`, checked.
    static func product(_ values: [Int], _ what: @autoclosure () -> String) throws -> Int {
        var result = 1
        for value in values { result = try multiply(result, value, what()) }
        return result
    }

    /// Extent of a dilated window: dilation · (kernel − 1) + 1.
    static func windowExtent(kernel: Int, dilation: Int) throws -> Int {
        try add(multiply(dilation, kernel - 1, "dilated kernel extent"), 1, "dilated kernel extent")
    }

    /// Floor and ceiling division for a positive divisor.
    static func floorDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }
    static func ceilDiv(_ a: Int, _ b: Int) -> Int { -floorDiv(-a, b) }
}

/// One spatial axis of a sliding-window operator: input i maps to output o through
/// `i = o · stride − padBegin + k · dilation` for kernel tap k.
struct WindowAxis: Equatable, Sendable {
    var input: Int
    var kernel: Int
    var stride: Int
    var dilation: Int
    var padBegin: Int
    var padEnd: Int
    var output: Int
}

/// Spatial attributes shared by Conv, ConvTranspose and the pools, read once when a session is built.
struct WindowAttributes: Sendable {
    var kernelShape: [Int]?
    var strides: [Int]?
    var dilations: [Int]?
    var pads: [Int]?
    var autoPad: AutoPad

    init(_ context: KernelBuildContext, dilations allowed: Bool = true) throws {
        kernelShape = context.has("kernel_shape") ? try context.ints("kernel_shape") : nil
        strides = context.has("strides") ? try context.ints("strides") : nil
        if context.has("dilations") {
            guard allowed else {
                throw KernelError.invalidAttribute("dilations", "is not defined for this operator version")
            }
            dilations = try context.ints("dilations")
        }
        pads = context.has("pads") ? try context.ints("pads") : nil
        autoPad = try AutoPad(context)
        if let kernelShape, kernelShape.contains(where: { $0 <= 0 }) {
            throw KernelError.invalidAttribute("kernel_shape", "must be positive, got \(kernelShape)")
        }
        if let strides, strides.contains(where: { $0 <= 0 }) {
            throw KernelError.invalidAttribute("strides", "must be positive, got \(strides)")
        }
        if let dilations, dilations.contains(where: { $0 <= 0 }) {
            throw KernelError.invalidAttribute("dilations", "must be positive, got \(dilations)")
        }
        if let pads, pads.contains(where: { $0 < 0 }) {
            throw KernelError.invalidAttribute("pads", "must not be negative, got \(pads)")
        }
    }

    /// Attributes given directly (tests, kernels built without a node).
    init(kernelShape: [Int]? = nil, strides: [Int]? = nil, dilations: [Int]? = nil, pads: [Int]? = nil,
         autoPad: AutoPad = .notSet) {
        self.kernelShape = kernelShape
        self.strides = strides
        self.dilations = dilations
        self.pads = pads
        self.autoPad = autoPad
    }

    /// Strides, dilations and explicit pads for `rank` spatial axes, checking list lengths.
    func resolved(rank: Int) throws -> (strides: [Int], dilations: [Int], pads: [Int]) {
        let strides = self.strides ?? Array(repeating: 1, count: rank)
        let dilations = self.dilations ?? Array(repeating: 1, count: rank)
        let pads = self.pads ?? Array(repeating: 0, count: 2 * rank)
        guard strides.count == rank else {
            throw KernelError.invalidAttribute("strides", "needs \(rank) values, got \(strides.count)")
        }
        guard dilations.count == rank else {
            throw KernelError.invalidAttribute("dilations", "needs \(rank) values, got \(dilations.count)")
        }
        guard pads.count == 2 * rank else {
            throw KernelError.invalidAttribute("pads", "needs \(2 * rank) values, got \(pads.count)")
        }
        return (strides, dilations, pads)
    }

    /// Kernel shape for `rank` axes: the attribute if present (it must agree with `fromWeights` when
    /// that is known), else the weights' spatial shape.
    func kernel(rank: Int, fromWeights: [Int]?) throws -> [Int] {
        if let kernelShape {
            guard kernelShape.count == rank else {
                throw KernelError.invalidAttribute("kernel_shape", "needs \(rank) values, got \(kernelShape.count)")
            }
            if let fromWeights, fromWeights != kernelShape {
                throw KernelError.invalidAttribute(
                    "kernel_shape", "\(kernelShape) disagrees with the weights' spatial shape \(fromWeights)")
            }
            return kernelShape
        }
        guard let fromWeights else { throw KernelError.invalidAttribute("kernel_shape", "is required") }
        return fromWeights
    }

    /// Geometry of a convolution (floor rounding): explicit pads, SAME_* (output = ⌈input / stride⌉,
    /// the odd pad at the end for SAME_UPPER, at the start for SAME_LOWER) or VALID (no padding).
    func convolutionAxes(input: [Int], kernel: [Int]) throws -> [WindowAxis] {
        let rank = input.count
        let (strides, dilations, pads) = try resolved(rank: rank)
        return try (0..<rank).map { axis in
            let extent = try SpatialMath.windowExtent(kernel: kernel[axis], dilation: dilations[axis])
            var result = WindowAxis(input: input[axis], kernel: kernel[axis], stride: strides[axis],
                                    dilation: dilations[axis], padBegin: 0, padEnd: 0, output: 0)
            switch autoPad {
            case .notSet, .valid:
                if autoPad == .notSet {
                    result.padBegin = pads[axis]
                    result.padEnd = pads[rank + axis]
                }
                let padded = try SpatialMath.add(
                    SpatialMath.add(input[axis], result.padBegin, "padded input"), result.padEnd, "padded input")
                guard padded >= extent else {
                    throw KernelError.invalid(
                        "kernel extent \(extent) on spatial axis \(axis) exceeds the padded input size \(padded)")
                }
                result.output = (padded - extent) / strides[axis] + 1
            case .sameUpper, .sameLower:
                result.output = SpatialMath.ceilDiv(input[axis], strides[axis])
                let covered = try SpatialMath.add(
                    SpatialMath.multiply(max(result.output - 1, 0), strides[axis], "padded extent"), extent,
                    "padded extent")
                let total = max(0, covered - input[axis])
                result.padBegin = autoPad == .sameUpper ? total / 2 : total - total / 2
                result.padEnd = total - result.padBegin
            }
            return result
        }
    }

    /// Geometry of a pool: as a convolution, plus `ceil_mode` — the output size rounds up, but a window
    /// that would start in the end padding is dropped (ONNX MaxPool/AveragePool, opset 10+).
    func poolingAxes(input: [Int], kernel: [Int], ceilMode: Bool) throws -> [WindowAxis] {
        guard ceilMode else { return try convolutionAxes(input: input, kernel: kernel) }
        let rank = input.count
        let (strides, dilations, pads) = try resolved(rank: rank)
        return try (0..<rank).map { axis in
            let extent = try SpatialMath.windowExtent(kernel: kernel[axis], dilation: dilations[axis])
            var result = WindowAxis(input: input[axis], kernel: kernel[axis], stride: strides[axis],
                                    dilation: dilations[axis], padBegin: 0, padEnd: 0, output: 0)
            switch autoPad {
            case .notSet:
                result.padBegin = pads[axis]
                result.padEnd = pads[rank + axis]
                let padded = try SpatialMath.add(
                    SpatialMath.add(input[axis], result.padBegin, "padded input"), result.padEnd, "padded input")
                guard padded >= extent else {
                    throw KernelError.invalid(
                        "kernel extent \(extent) on spatial axis \(axis) exceeds the padded input size \(padded)")
                }
                result.output = SpatialMath.ceilDiv(padded - extent, strides[axis]) + 1
                if (result.output - 1) * strides[axis] >= input[axis] + result.padBegin { result.output -= 1 }
            case .valid:
                guard input[axis] >= extent else {
                    throw KernelError.invalid(
                        "kernel extent \(extent) on spatial axis \(axis) exceeds the input size \(input[axis])")
                }
                result.output = SpatialMath.ceilDiv(input[axis] - extent + 1, strides[axis])
            case .sameUpper, .sameLower:
                result.output = SpatialMath.ceilDiv(input[axis], strides[axis])
                let covered = try SpatialMath.add(
                    SpatialMath.multiply(max(result.output - 1, 0), strides[axis], "padded extent"), extent,
                    "padded extent")
                let total = max(0, covered - input[axis])
                result.padBegin = autoPad == .sameUpper ? total / 2 : total - total / 2
                result.padEnd = total - result.padBegin
            }
            return result
        }
    }
}

extension WindowAxis {
    /// A neutral axis (size 1, kernel 1) used to lift 1-D and 2-D problems to 3-D loops.
    static let unit = WindowAxis(input: 1, kernel: 1, stride: 1, dilation: 1, padBegin: 0, padEnd: 0, output: 1)

    /// `axes` padded at the front with unit axes to exactly three (ONNX allows up to three spatial axes
    /// in practice; more is reported as unsupported).
    static func lifted(_ axes: [WindowAxis]) throws -> [WindowAxis] {
        guard axes.count <= 3 else { throw KernelError.unsupported("more than 3 spatial dimensions") }
        return Array(repeating: .unit, count: 3 - axes.count) + axes
    }

    /// The outputs `o` in `0..<output` whose tap `k` lands inside the input, as a half-open range.
    @inline(__always)
    func validOutputs(tap k: Int) -> Range<Int> {
        let offset = k * dilation - padBegin  // input = o * stride + offset
        let low = max(0, SpatialMath.ceilDiv(-offset, stride))
        let high = min(output, SpatialMath.floorDiv(input - 1 - offset, stride) + 1)
        return low < high ? low..<high : low..<low
    }
}

extension Tensor {
    /// Throws unless the tensor's dtype is in `allowed`.
    func requireDType(_ allowed: Set<DType>, input index: Int, _ op: String) throws {
        guard allowed.contains(dtype) else {
            throw KernelError.invalidInput(index: index, reason: "\(op) does not accept \(dtype)")
        }
    }
}
