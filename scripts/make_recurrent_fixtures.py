#!/usr/bin/env python3
"""Writes Tests/Fixtures/recurrent/*.json: small LSTM, GRU and If cases with outputs from ONNX Runtime.

Each file names the operator, opset, attributes, inputs (null for an omitted optional input) and the
outputs ONNX Runtime computed, so the Swift tests compare against an independent implementation.

    python3 scripts/make_recurrent_fixtures.py     # needs numpy, onnx, onnxruntime
"""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "recurrent")
ELEMENT = {np.float32: TensorProto.FLOAT, np.int32: TensorProto.INT32, np.bool_: TensorProto.BOOL}
NAMES = {np.float32: "float32", np.int32: "int32", np.bool_: "bool"}


def encode(array):
    kind = array.dtype.type
    data = array.flatten().tolist()
    if kind == np.float32:
        data = [float(np.float32(v)) for v in data]
    return {"dtype": NAMES[kind], "shape": list(array.shape), "data": data}


def run_node(op, opset, attributes, inputs, output_names):
    """Runs one node in ONNX Runtime; `inputs` is a list of (name, array or None)."""
    graph_inputs = [helper.make_tensor_value_info(n, ELEMENT[a.dtype.type], a.shape) for n, a in inputs if a is not None]
    node = helper.make_node(op, [n if a is not None else "" for n, a in inputs], output_names, **attributes)
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in output_names]
    model = helper.make_model(helper.make_graph([node], "case", graph_inputs, outputs),
                              opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    results = session.run(None, {n: a for n, a in inputs if a is not None})
    return dict(zip(output_names, results))


def write(name, op, opset, attributes, inputs, output_names):
    if attributes.get("layout", 0) == 1:
        # ONNX Runtime implements only layout 0: run it on the inputs moved to that layout (numpy
        # transposes) and move its outputs back.
        to_layout0 = {"X": (1, 0, 2), "initial_h": (1, 0, 2), "initial_c": (1, 0, 2)}
        moved = [(n, None if a is None or n not in to_layout0 else a.transpose(to_layout0[n])) if n in to_layout0
                 else (n, a) for n, a in inputs]
        results = run_node(op, opset, {k: v for k, v in attributes.items() if k != "layout"}, moved, output_names)
        back = {"Y": (2, 0, 1, 3), "Y_h": (1, 0, 2), "Y_c": (1, 0, 2)}
        results = {n: np.ascontiguousarray(v.transpose(back[n])) for n, v in results.items()}
    else:
        results = run_node(op, opset, attributes, inputs, output_names)
    case = {
        "op": op,
        "opset": opset,
        "attributes": {k: attribute_json(v) for k, v in attributes.items()},
        "inputs": [None if a is None else dict(name=n, **encode(a)) for n, a in inputs],
        "outputs": [dict(name=n, **encode(results[n])) for n in output_names],
    }
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(case, f, indent=1)
        f.write("\n")


def attribute_json(value):
    if isinstance(value, bool) or isinstance(value, int):
        return {"int": int(value)}
    if isinstance(value, float):
        return {"float": value}
    if isinstance(value, str):
        return {"string": value}
    if all(isinstance(v, str) for v in value):
        return {"strings": list(value)}
    return {"floats": [float(v) for v in value]}


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240611)

    def normal(*shape, scale=0.7):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    # LSTM ---------------------------------------------------------------------------------------
    T, B, I, H = 3, 2, 3, 2
    write("lstm_forward_default", "LSTM", 14, {"hidden_size": H},
          [("X", normal(T, B, I)), ("W", normal(1, 4 * H, I)), ("R", normal(1, 4 * H, H)), ("B", normal(1, 8 * H))],
          ["Y", "Y_h", "Y_c"])

    T, B, I, H = 4, 3, 2, 3
    write("lstm_bidirectional_full", "LSTM", 14, {"hidden_size": H, "direction": "bidirectional", "clip": 0.9},
          [("X", normal(T, B, I)), ("W", normal(2, 4 * H, I)), ("R", normal(2, 4 * H, H)), ("B", normal(2, 8 * H)),
           ("sequence_lens", np.array([4, 2, 0], np.int32)), ("initial_h", normal(2, B, H)),
           ("initial_c", normal(2, B, H)), ("P", normal(2, 3 * H))],
          ["Y", "Y_h", "Y_c"])

    T, B, I, H = 3, 2, 2, 2
    write("lstm_reverse_layout1_activations", "LSTM", 14,
          {"hidden_size": H, "direction": "reverse", "layout": 1, "input_forget": 1,
           "activations": ["HardSigmoid", "LeakyRelu", "Softsign"], "activation_alpha": [0.3, 0.05],
           "activation_beta": [0.4]},
          [("X", normal(B, T, I)), ("W", normal(1, 4 * H, I)), ("R", normal(1, 4 * H, H)), ("B", normal(1, 8 * H)),
           ("sequence_lens", np.array([3, 2], np.int32)), ("initial_h", normal(B, 1, H)), ("initial_c", None),
           ("P", normal(1, 3 * H))],
          ["Y", "Y_h", "Y_c"])

    write("lstm_opset7_elu_scaledtanh", "LSTM", 7,
          {"hidden_size": H, "activations": ["Sigmoid", "Elu", "ScaledTanh"], "activation_alpha": [0.8, 1.2],
           "activation_beta": [0.6]},
          [("X", normal(T, B, I)), ("W", normal(1, 4 * H, I)), ("R", normal(1, 4 * H, H))],
          ["Y", "Y_h"])

    # GRU ----------------------------------------------------------------------------------------
    T, B, I, H = 3, 2, 3, 2
    write("gru_forward_default", "GRU", 14, {"hidden_size": H},
          [("X", normal(T, B, I)), ("W", normal(1, 3 * H, I)), ("R", normal(1, 3 * H, H)), ("B", normal(1, 6 * H))],
          ["Y", "Y_h"])

    T, B, I, H = 4, 3, 2, 3
    write("gru_bidirectional_linear_before_reset", "GRU", 14,
          {"hidden_size": H, "direction": "bidirectional", "linear_before_reset": 1, "clip": 1.1},
          [("X", normal(T, B, I)), ("W", normal(2, 3 * H, I)), ("R", normal(2, 3 * H, H)), ("B", normal(2, 6 * H)),
           ("sequence_lens", np.array([4, 0, 3], np.int32)), ("initial_h", normal(2, B, H))],
          ["Y", "Y_h"])

    T, B, I, H = 3, 2, 2, 3
    write("gru_reverse_layout1_activations", "GRU", 14,
          {"hidden_size": H, "direction": "reverse", "layout": 1,
           "activations": ["HardSigmoid", "Softplus"], "activation_alpha": [0.25], "activation_beta": [0.45]},
          [("X", normal(B, T, I)), ("W", normal(1, 3 * H, I)), ("R", normal(1, 3 * H, H)), ("B", normal(1, 6 * H)),
           ("sequence_lens", np.array([2, 3], np.int32)), ("initial_h", normal(B, 1, H))],
          ["Y", "Y_h"])

    write("gru_opset7_affine_relu", "GRU", 7,
          {"hidden_size": H, "activations": ["Affine", "Relu"], "activation_alpha": [0.5], "activation_beta": [0.2]},
          [("X", normal(T, B, I)), ("W", normal(1, 3 * H, I)), ("R", normal(1, 3 * H, H)), ("B", normal(1, 6 * H))],
          ["Y", "Y_h"])

    # If -----------------------------------------------------------------------------------------
    # then: Transpose(x) of the captured outer x; else: Concat(x, c) with a branch-local Constant.
    x = normal(2, 3)
    c = normal(1, 3)
    then_graph = helper.make_graph(
        [helper.make_node("Transpose", ["x"], ["t"])], "then", [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    else_graph = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(c)),
         helper.make_node("Concat", ["x", "c"], ["e"], axis=0)], "else", [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    node = helper.make_node("If", ["cond"], ["y"], then_branch=then_graph, else_branch=else_graph)
    graph = helper.make_graph(
        [node], "if", [helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                       helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    case = {"x": encode(x), "c": encode(c)}
    for flag in (True, False):
        (y,) = session.run(None, {"cond": np.array(flag), "x": x})
        case["then" if flag else "else"] = encode(y)
    with open(os.path.join(OUT, "if_transpose_or_concat.json"), "w") as f:
        json.dump(case, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
