// swift-tools-version:6.1
//
// SwiftQuant — low-bit quantization of ONNX models, and an integer CPU runtime to run them.
//
// Modules import only modules listed above them (DESIGN.md §3). Underscored targets are not API.
// No unsafe compiler flags anywhere (they would stop other packages depending on this one): ISA-specific code
// lives in `_CKernels`, one `__attribute__((target(...)))`
// per function, chosen at run time from CPUID.

import PackageDescription

let package = Package(
    name: "SwiftQuant",
    products: [
        .library(name: "SwiftQuant", targets: ["SwiftQuant"]),
        .executable(name: "swiftquant", targets: ["swiftquant"]),
        .executable(name: "onnx-conformance", targets: ["onnx-conformance"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.20"),
        // Tests only: property-based checks of the quantization math.
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
    ],
    targets: [
        // MARK: - Public API (lowest first)

        /// DType, shapes, copy-on-write aligned tensors, .npy/.npz I/O.
        .target(
            name: "Tensors",
            dependencies: [.product(name: "ZIPFoundation", package: "ZIPFoundation")]
        ),
        /// Quantization math: types, parameters, quantize/dequantize, FP8/BF16, fixed-point requantization.
        .target(name: "QuantCore", dependencies: ["Tensors"]),
        /// Streaming, mergeable observers and histogram searches (entropy, percentile, MSE).
        .target(name: "Calibration", dependencies: ["Tensors", "QuantCore"]),
        /// Graph IR: graphs, nodes, attributes, passes, shape inference.
        .target(
            name: "GraphIR",
            dependencies: [
                "Tensors",
                .product(name: "OrderedCollections", package: "swift-collections"),
            ]
        ),
        /// ONNX protobuf (generated once, committed), decode/encode, external data, checker.
        .target(
            name: "ONNX",
            dependencies: [
                "Tensors", "GraphIR",
                .product(name: "OrderedCollections", package: "swift-collections"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            exclude: ["Generated/README.md"]
        ),
        /// Compiled sessions, the kernel registry, FP32 and integer kernels with reference twins.
        .target(
            name: "Runtime",
            dependencies: ["Tensors", "QuantCore", "GraphIR", "_CKernels"]
        ),
        /// Quantization policy and drivers: which tensors are observed and quantized, calibration runs.
        .target(
            name: "Quantization",
            dependencies: ["Tensors", "QuantCore", "Calibration", "GraphIR", "Runtime"]
        ),
        /// Evaluation metrics (fidelity, accuracy, size, latency, integer share) and JSON/HTML reports.
        .target(
            name: "Reports",
            dependencies: ["Tensors", "GraphIR", "ONNX", "Runtime", "Quantization"]
        ),
        /// Umbrella module: `import SwiftQuant`.
        .target(
            name: "SwiftQuant",
            dependencies: [
                "Tensors", "QuantCore", "Calibration", "GraphIR", "ONNX", "Runtime", "Quantization", "Reports",
            ]
        ),

        // MARK: - Executables

        /// The command-line tool; one file per subcommand, all work in the libraries. `Resources/demo` holds
        /// the model and data `swiftquant demo` quantizes (made by scripts/make_digits_cnn.py).
        .executableTarget(
            name: "swiftquant",
            dependencies: [
                "SwiftQuant",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            resources: [.copy("Resources/demo")]
        ),
        /// Runs the ONNX backend node tests against our runtime and prints a per-operator table.
        .executableTarget(
            name: "onnx-conformance",
            dependencies: [
                "SwiftQuant",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // MARK: - Implementation details

        /// ISA-specific micro-kernels and CPU feature detection, in C. Each SIMD function carries its own
        /// `__attribute__((target(...)))`, so the package needs no global ISA flags.
        .target(name: "_CKernels"),
        /// Fixtures and helpers shared by the test targets.
        .target(
            name: "_TestSupport",
            dependencies: ["SwiftQuant"],
            path: "Tests/_TestSupport"
        ),

        // MARK: - Tests

        .testTarget(name: "TensorsTests", dependencies: ["Tensors", "_TestSupport"]),
        .testTarget(
            name: "QuantCoreTests",
            dependencies: [
                "QuantCore", "_TestSupport",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        .testTarget(
            name: "CalibrationTests",
            dependencies: [
                "Calibration", "QuantCore", "_TestSupport",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        .testTarget(name: "GraphIRTests", dependencies: ["GraphIR", "_TestSupport"]),
        .testTarget(name: "ONNXTests", dependencies: ["ONNX", "_TestSupport"]),
        .testTarget(name: "QuantizationTests", dependencies: ["Quantization", "ONNX", "_TestSupport"]),
        .testTarget(name: "RuntimeTests", dependencies: ["Runtime", "ONNX", "_TestSupport"]),
        .testTarget(name: "ReportsTests", dependencies: ["Reports", "ONNX", "_TestSupport"]),
    ]
)
