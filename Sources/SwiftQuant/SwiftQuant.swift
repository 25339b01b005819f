// The umbrella module: `import SwiftQuant` brings in every public module.
@_exported import Calibration
@_exported import GraphIR
@_exported import ONNX
@_exported import QuantCore
@_exported import Quantization
@_exported import Reports
@_exported import Runtime
@_exported import Tensors
