#!/usr/bin/env python3
"""Writes the small single-node fixtures of Tests/Fixtures/conv/ for the MatMul/Gemm/Conv/ConvTranspose/
BatchNormalization/pooling/Resize kernel tests.

Each case is one .npz holding `model` (the serialized one-node ONNX model as uint8 bytes), `input_<i>`
and `output_<i>`. Expected outputs come from the ONNX reference evaluator (onnx.reference), the
executable form of the spec. ONNX Runtime stands in where the reference does not implement a case
(Resize-10, linear Upsample, BatchNormalization-7 spatial=0, tf_half_pixel_for_nn) or gets it wrong
(grouped ConvTranspose with C != M, a cropping output_shape, GlobalMaxPool on 1-D, unit-stride MaxPool
Indices, SAME_LOWER MaxPool sizes, BatchNormalization-9 inference); AveragePool-1 is checked against the
reference at opset 7, which has the same meaning. Each such case says why. The cases aim at what the
ONNX node tests leave out: groups, depthwise with channel multipliers, dilations, every auto_pad,
ConvTranspose output_padding/output_shape, pools in ceil_mode with indices, the Resize modes, and the
MatMul/Gemm broadcasting rules. Re-run only to regenerate (SWIFTQUANT_ORACLE_DIFF=1 also reports where
the two oracles disagree):

    python3 scripts/make_conv_fixtures.py      # needs numpy, onnx, onnxruntime
"""
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "conv")
RNG = np.random.default_rng(20240611)
# Set SWIFTQUANT_ORACLE_DIFF=1 to report cases where ONNX Runtime and the reference evaluator disagree.
VERBOSE = os.environ.get("SWIFTQUANT_ORACLE_DIFF") == "1"
ELEMENT = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE, np.float16: TensorProto.FLOAT16,
           np.int32: TensorProto.INT32, np.int64: TensorProto.INT64, np.uint8: TensorProto.UINT8}


def rand(*shape, dtype=np.float32):
    return RNG.uniform(-1, 1, size=shape).astype(dtype)


def case(name, op, inputs, attrs=None, opset=17, constants=(), outputs=1, oracle="reference", oracle_opset=None):
    """inputs: list of arrays (None = omitted optional input). constants: indices stored as initializers.
    oracle_opset: run the oracle on the same node at this opset instead (for versions with equal semantics
    that the oracles mishandle)."""
    names = [("" if a is None else f"in{i}") for i, a in enumerate(inputs)]
    node = helper.make_node(op, names, [f"out{i}" for i in range(outputs)], **(attrs or {}))
    graph_inputs, initializers, feeds = [], [], {}
    for i, (n, a) in enumerate(zip(names, inputs)):
        if a is None:
            continue
        if i in constants:
            initializers.append(numpy_helper.from_array(a, n))
        else:
            graph_inputs.append(helper.make_tensor_value_info(n, ELEMENT[a.dtype.type], a.shape))
            feeds[n] = a
    graph = helper.make_graph([node], name, graph_inputs,
                              [helper.make_tensor_value_info(
                                  f"out{i}", ELEMENT[inputs[0].dtype.type] if i == 0 else TensorProto.INT64, None)
                               for i in range(outputs)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    oracle_model = model
    if oracle_opset is not None:
        oracle_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", oracle_opset)])
        oracle_model.ir_version = 8
    if oracle == "reference":
        results = ReferenceEvaluator(oracle_model).run(None, feeds)
    else:
        results = ort.InferenceSession(oracle_model.SerializeToString()).run(None, feeds)
    if VERBOSE:
        try:
            other = (ort.InferenceSession(model.SerializeToString()).run(None, feeds) if oracle == "reference"
                     else ReferenceEvaluator(model).run(None, feeds))
            agree = all(np.asarray(a).shape == np.asarray(b).shape and np.allclose(a, b, atol=1e-4)
                        for a, b in zip(results, other))
        except Exception as error:  # noqa: BLE001 - informational only
            agree = f"other oracle failed: {str(error)[:80]}"
        if agree is not True:
            print(f"{name}: oracles disagree ({agree})")
    arrays = {"model": np.frombuffer(model.SerializeToString(), dtype=np.uint8)}
    for i, a in enumerate(inputs):
        if a is not None and i not in constants:
            arrays[f"input_{i}"] = a
    for i, r in enumerate(results):
        arrays[f"output_{i}"] = np.asarray(r)
    np.savez_compressed(os.path.join(OUT, name + ".npz"), **arrays)


def conv_cases():
    x = rand(1, 4, 7, 6)
    case("conv_groups_dilation_strides_pads", "Conv", [x, rand(6, 2, 3, 2), rand(6)],
         dict(group=2, dilations=[2, 1], strides=[2, 2], pads=[1, 0, 2, 1]), constants=(1, 2))
    case("conv_depthwise_multiplier", "Conv", [rand(2, 3, 5, 5), rand(6, 1, 3, 3), rand(6)],
         dict(group=3, pads=[1, 1, 1, 1]), constants=(1,))
    case("conv_depthwise_same_upper_stride2", "Conv", [rand(1, 4, 6, 7), rand(4, 1, 3, 3)],
         dict(group=4, strides=[2, 2], auto_pad="SAME_UPPER"))
    case("conv_1d_dilated_same_lower", "Conv", [rand(2, 3, 9), rand(4, 3, 3), rand(4)],
         dict(dilations=[2], auto_pad="SAME_LOWER", strides=[2]))
    case("conv_3d_pads", "Conv", [rand(1, 2, 4, 5, 3), rand(3, 2, 2, 3, 2), rand(3)],
         dict(pads=[1, 0, 1, 0, 1, 1]), constants=(1,))
    case("conv_pointwise_batch2", "Conv", [rand(2, 5, 3, 4), rand(7, 5, 1, 1), rand(7)], {}, constants=(1, 2))
    case("conv_valid_strides3", "Conv", [rand(1, 2, 8, 10), rand(3, 2, 3, 4)],
         dict(auto_pad="VALID", strides=[3, 3]))
    case("conv_batch2_groups3", "Conv", [rand(2, 6, 5, 5), rand(9, 2, 2, 2)], dict(group=3, pads=[0, 1, 1, 0]))
    case("conv_kernel_shape_attribute", "Conv", [rand(1, 1, 5, 5), rand(2, 1, 3, 3)],
         dict(kernel_shape=[3, 3], strides=[1, 2]), opset=11)
    case("conv_float64", "Conv", [rand(1, 2, 5, 5, dtype=np.float64), rand(2, 1, 3, 3, dtype=np.float64)],
         dict(group=2, pads=[1, 1, 1, 1], dilations=[1, 2]))


def conv_transpose_cases():
    case("convtranspose_groups_output_padding", "ConvTranspose", [rand(1, 4, 3, 3), rand(4, 3, 3, 2), rand(6)],
         dict(group=2, strides=[2, 3], output_padding=[1, 2], pads=[1, 0, 0, 1], dilations=[1, 2]), constants=(1,),
         oracle="ort")  # the reference evaluator slices grouped weights by output channels
    case("convtranspose_same_lower", "ConvTranspose", [rand(1, 2, 3, 4), rand(2, 3, 3, 3)],
         dict(auto_pad="SAME_LOWER", strides=[2, 2]))
    case("convtranspose_same_upper_odd", "ConvTranspose", [rand(1, 1, 3), rand(1, 2, 3)],
         dict(auto_pad="SAME_UPPER", strides=[2]))
    case("convtranspose_1d_bias", "ConvTranspose", [rand(2, 3, 5), rand(3, 2, 3), rand(2)],
         dict(strides=[2], pads=[1, 2]))
    case("convtranspose_output_shape_smaller", "ConvTranspose", [rand(1, 1, 3, 3), rand(1, 1, 3, 3)],
         dict(strides=[2, 2], output_shape=[6, 5]), oracle="ort")  # the reference cannot crop
    case("convtranspose_3d", "ConvTranspose", [rand(1, 2, 2, 3, 2), rand(2, 1, 2, 2, 3)], dict(strides=[1, 2, 1]))


def pool_cases():
    x = rand(1, 2, 7, 8)
    case("maxpool_ceil_pads_dilations_indices", "MaxPool", [x],
         dict(kernel_shape=[3, 2], strides=[2, 3], pads=[1, 0, 1, 1], dilations=[2, 1], ceil_mode=1), outputs=2)
    case("maxpool_indices_column_major", "MaxPool", [rand(2, 1, 5, 4)],
         dict(kernel_shape=[2, 3], strides=[2, 1], storage_order=1), outputs=2)
    case("maxpool_same_lower_3d", "MaxPool", [rand(1, 1, 4, 5, 3)],
         dict(kernel_shape=[2, 3, 2], strides=[2, 2, 1], auto_pad="SAME_LOWER"),
         oracle="ort")  # the reference floors SAME_LOWER output sizes
    case("maxpool_opset8_indices", "MaxPool", [rand(1, 2, 4, 4)], dict(kernel_shape=[2, 2]), opset=8, outputs=2,
         oracle="ort")  # the reference's unit-stride path drops the channel offset from Indices
    case("averagepool_ceil_exclude_pad", "AveragePool", [x],
         dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1))
    case("averagepool_ceil_include_pad", "AveragePool", [x],
         dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1))
    case("averagepool_dilations_opset19", "AveragePool", [rand(1, 1, 7, 7)],
         dict(kernel_shape=[2, 2], dilations=[2, 3], pads=[1, 1, 0, 0]), opset=19)
    case("averagepool_1d_same_upper", "AveragePool", [rand(1, 3, 9)],
         dict(kernel_shape=[4], strides=[2], auto_pad="SAME_UPPER"))
    case("globalaveragepool_3d", "GlobalAveragePool", [rand(2, 3, 2, 3, 4)])
    case("globalmaxpool_1d", "GlobalMaxPool", [rand(2, 3, 5)], oracle="ort")  # reference reduces 2 axes


def resize_cases():
    x = rand(1, 2, 4, 5)
    empty = np.zeros(0, np.float32)
    for nearest in ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]:
        for ctm in ["half_pixel", "asymmetric", "align_corners"]:
            case(f"resize_nearest_{nearest}_{ctm}", "Resize",
                 [x, empty, np.array([1, 1, 1.7, 0.6], np.float32)],
                 dict(mode="nearest", nearest_mode=nearest, coordinate_transformation_mode=ctm), opset=13)
    case("resize_nearest_tf_half_pixel_for_nn", "Resize", [x, empty, np.array([1, 1, 2, 1.5], np.float32)],
         dict(mode="nearest", coordinate_transformation_mode="tf_half_pixel_for_nn"), opset=11, oracle="ort")
    case("resize_nearest_int64_sizes", "Resize",
         [np.arange(20, dtype=np.int64).reshape(1, 1, 4, 5), None, None, np.array([1, 1, 7, 3], np.int64)],
         dict(mode="nearest"), opset=13)
    case("resize_linear_half_pixel_downsample", "Resize", [x, None, np.array([1, 1, 0.6, 0.5], np.float32)],
         dict(mode="linear"), opset=13)
    case("resize_linear_pytorch_half_pixel_sizes", "Resize", [x, None, None, np.array([1, 2, 7, 3], np.int64)],
         dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel"), opset=13)
    case("resize_trilinear_3d", "Resize", [rand(1, 1, 3, 4, 2), None, np.array([1, 1, 1.5, 0.75, 2], np.float32)],
         dict(mode="linear", coordinate_transformation_mode="align_corners"), opset=13)
    case("resize_cubic_exclude_outside", "Resize", [x, None, np.array([1, 1, 1.6, 0.8], np.float32)],
         dict(mode="cubic", cubic_coeff_a=-0.5, exclude_outside=1), opset=13)
    case("resize_cubic_asymmetric_sizes", "Resize", [x, None, None, np.array([1, 2, 6, 9], np.int64)],
         dict(mode="cubic", coordinate_transformation_mode="asymmetric"), opset=13)
    roi = np.array([0, 0, 0.2, -0.1, 1, 1, 0.9, 1.3], np.float32)
    case("resize_tf_crop_and_resize_linear", "Resize", [x, roi, None, np.array([1, 2, 5, 6], np.int64)],
         dict(mode="linear", coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=-7.0), opset=13)
    case("resize_tf_crop_and_resize_nearest", "Resize", [x, roi, None, np.array([1, 2, 5, 6], np.int64)],
         dict(mode="nearest", coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=3.5), opset=13)
    case("resize_half_pixel_symmetric", "Resize", [x, None, np.array([1, 1, 1.3, 0.7], np.float32)],
         dict(mode="linear", coordinate_transformation_mode="half_pixel_symmetric"), opset=19)
    case("resize_axes_not_larger", "Resize", [x, None, None, np.array([6, 6], np.int64)],
         dict(mode="linear", axes=[2, 3], keep_aspect_ratio_policy="not_larger"), opset=18)
    case("resize_axes_not_smaller_nearest", "Resize", [x, None, None, np.array([3, 9], np.int64)],
         dict(mode="nearest", axes=[2, 3], keep_aspect_ratio_policy="not_smaller"), opset=18)
    case("resize_opset10_nearest_down", "Resize", [x, np.array([1, 1, 0.6, 0.7], np.float32)],
         dict(mode="nearest"), opset=10, oracle="ort")
    case("resize_opset10_linear_up", "Resize", [x, np.array([1, 1, 1.5, 2.2], np.float32)],
         dict(mode="linear"), opset=10, oracle="ort")
    case("upsample9_linear", "Upsample", [x, np.array([1, 1, 2, 1.5], np.float32)], dict(mode="linear"),
         opset=9, oracle="ort")
    case("upsample7_nearest_attribute", "Upsample", [x], dict(mode="nearest", scales=[1.0, 1.0, 2.0, 3.0]),
         opset=7, oracle="ort")


def batchnorm_cases():
    x = rand(2, 3, 4, 2)
    stats = [rand(3), rand(3), rand(3), RNG.uniform(0.1, 2, 3).astype(np.float32)]
    case("batchnorm_opset9", "BatchNormalization", [x] + stats, dict(epsilon=1e-3), opset=9, constants=(1, 2, 3, 4),
         oracle="ort")  # the reference treats the default momentum as training mode
    case("batchnorm_rank2", "BatchNormalization", [rand(4, 3)] + stats, {}, opset=15)
    case("batchnorm_opset15_mixed_types", "BatchNormalization",
         [x, stats[0].astype(np.float64), stats[1].astype(np.float64), stats[2].astype(np.float16),
          stats[3].astype(np.float16)], dict(epsilon=0.05), opset=15)
    per_position = [rand(3, 4, 2), rand(3, 4, 2), rand(3, 4, 2), RNG.uniform(0.1, 2, (3, 4, 2)).astype(np.float32)]
    case("batchnorm_opset7_spatial0", "BatchNormalization", [x] + per_position, dict(spatial=0), opset=7,
         oracle="ort")


def matmul_gemm_cases():
    case("matmul_broadcast_batches", "MatMul", [rand(2, 1, 3, 4), rand(3, 4, 5)])
    case("matmul_constant_b_batched_a", "MatMul", [rand(2, 3, 17, 20), rand(20, 33)], constants=(1,))
    case("matmul_constant_b_batched", "MatMul", [rand(2, 5, 6), rand(2, 6, 3)], constants=(1,))
    case("matmul_1d_1d", "MatMul", [rand(7), rand(7)])
    case("matmul_1d_nd", "MatMul", [rand(4), rand(2, 4, 3)])
    case("matmul_nd_1d", "MatMul", [rand(2, 3, 4), rand(4)])
    case("matmul_int32", "MatMul", [RNG.integers(-50, 50, (3, 4)).astype(np.int32),
                                    RNG.integers(-50, 50, (4, 2)).astype(np.int32)])
    case("matmul_float16", "MatMul", [rand(3, 5, dtype=np.float16), rand(5, 2, dtype=np.float16)])
    case("gemm_trans_both_column_bias", "Gemm", [rand(20, 13), rand(33, 20), rand(13, 1)],
         dict(transA=1, transB=1, alpha=0.5, beta=-1.5), constants=(1,))
    case("gemm_row_bias_opset7", "Gemm", [rand(3, 4), rand(4, 5), rand(5)], opset=7)
    case("gemm_scalar_bias_transb", "Gemm", [rand(3, 4), rand(6, 4), np.array(2.5, np.float32)],
         dict(transB=1), constants=(1,))
    case("gemm_no_bias_opset11", "Gemm", [rand(5, 3), rand(3, 2)], dict(alpha=2.0), opset=11)
    case("gemm_float64", "Gemm", [rand(3, 4, dtype=np.float64), rand(4, 2, dtype=np.float64),
                                  rand(3, 2, dtype=np.float64)], dict(alpha=0.25, beta=3.0))


def legacy_opset_cases():
    """Opsets below 7 (added after the others, so their random draws leave the earlier fixtures unchanged)."""
    case("gemm_opset6_broadcast", "Gemm", [rand(3, 4), rand(4, 5), rand(1, 5)], dict(broadcast=1, beta=2.0), opset=6)
    case("gemm_opset6_full_c", "Gemm", [rand(3, 4), rand(4, 5), rand(3, 5)], {}, opset=6)
    stats = [rand(3), rand(3), rand(3), RNG.uniform(0.1, 2, 3).astype(np.float32)]
    case("batchnorm_opset6_is_test", "BatchNormalization", [rand(2, 3, 4, 2)] + stats, dict(is_test=1, epsilon=1e-4),
         opset=6)
    # AveragePool-1 means AveragePool-7 with count_include_pad = 0; the reference evaluator's opset-1
    # path reads 2-D pads in the wrong order and counts the padding.
    case("averagepool_opset1", "AveragePool", [rand(1, 2, 5, 6)], dict(kernel_shape=[2, 3], pads=[1, 1, 0, 1]),
         opset=1, oracle_opset=7)


def main():
    os.makedirs(OUT, exist_ok=True)
    conv_cases()
    conv_transpose_cases()
    pool_cases()
    resize_cases()
    batchnorm_cases()
    matmul_gemm_cases()
    legacy_opset_cases()


if __name__ == "__main__":
    main()
