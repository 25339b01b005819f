#!/usr/bin/env python3
"""Writes the parity fixtures of QuantCore and Calibration to Tests/Fixtures/calibration/.

Independent references, not our code:
  float_formats.json     FP16 (numpy), BF16 / FP8 E4M3FN / FP8 E5M2 (ml_dtypes; ONNX saturate_cast for the
                         saturating FP8 casts), over every 16-bit pattern (as chunk hashes) and every FP8
                         pattern (explicit).
  quantize_linear.json   ONNX reference QuantizeLinear / DequantizeLinear on small tensors (ties, saturation,
                         per-axis, blocked, int4/uint4/int2/uint2 packing, FP8 with saturate on and off).
  observers.json         PyTorch observers (MinMax, per-channel, moving average, HistogramObserver) and plain
                         NumPy implementations of the percentile and entropy definitions of issue #3, on
                         deterministic data that tests regenerate bit for bit (see `Generator`).

Run from the package root:  python3 scripts/make_calibration_fixtures.py
Needs numpy, ml_dtypes, onnx and torch.
"""
from __future__ import annotations

import json
import math
import os
import struct

import ml_dtypes
import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "calibration")
MASK64 = (1 << 64) - 1


# ---------------------------------------------------------------------------------------------------------
# Deterministic data, reproduced bit for bit by Tests/CalibrationTests/FixtureData.swift.
# Only IEEE-754 +, -, *, / and sqrt are used (correctly rounded everywhere), so Swift and Python agree.
# ---------------------------------------------------------------------------------------------------------
class Generator:
    """SplitMix64 with uniform, Gaussian (Marsaglia polar) and Laplacian draws."""

    LN2 = 0.6931471805599453

    def __init__(self, seed: int):
        self.state = seed & MASK64

    def next_u64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def uniform(self) -> float:
        """A double in [0, 1) with 53 random bits."""
        return (self.next_u64() >> 11) * (2.0 ** -53)

    @staticmethod
    def log(x: float) -> float:
        """Natural log of a positive finite double by an atanh series: the same operations in Swift."""
        m, e = math.frexp(x)  # x = m * 2^e, m in [0.5, 1)
        m *= 2.0
        e -= 1  # m in [1, 2), as Swift's significand / exponent
        if m > 1.4142135623730951:
            m *= 0.5
            e += 1
        t = (m - 1.0) / (m + 1.0)
        t2 = t * t
        total = 0.0
        power = t
        for k in range(20):
            total += power / (2 * k + 1)
            power *= t2
        return 2.0 * total + float(e) * Generator.LN2

    def gaussian(self) -> float:
        while True:
            u = 2.0 * self.uniform() - 1.0
            v = 2.0 * self.uniform() - 1.0
            s = u * u + v * v
            if 0.0 < s < 1.0:
                return u * math.sqrt(-2.0 * Generator.log(s) / s)

    def laplacian(self) -> float:
        u = self.uniform() - 0.5
        magnitude = -Generator.log(1.0 - 2.0 * abs(u))
        return magnitude if u >= 0 else -magnitude


BATCH_SHAPE = [8, 64, 32]
BATCHES = 4
DATASETS = {
    # name: (seed, element function of the generator)
    "gaussian": (1, lambda g: 1.5 * g.gaussian() + 0.25),
    "laplacian": (2, lambda g: 0.75 * g.laplacian() - 0.125),
    "outliers": (3, lambda g: g.gaussian() * (24.0 if g.uniform() < 0.002 else 1.0)),
    "relu_outliers": (4, lambda g: max(g.gaussian(), 0.0) * (16.0 if g.uniform() < 0.002 else 1.0)),
}


def dataset(name: str) -> list[np.ndarray]:
    seed, draw = DATASETS[name]
    g = Generator(seed)
    count = int(np.prod(BATCH_SHAPE))
    return [np.array([draw(g) for _ in range(count)], dtype=np.float64).astype(np.float32).reshape(BATCH_SHAPE)
            for _ in range(BATCHES)]


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & MASK64
    return h


def checksum(batches: list[np.ndarray]) -> str:
    return "%016x" % fnv1a64(b"".join(b.astype("<f4").tobytes() for b in batches))


# ---------------------------------------------------------------------------------------------------------
# Float formats
# ---------------------------------------------------------------------------------------------------------
def canonical_f32(bits: np.ndarray) -> np.ndarray:
    bits = bits.astype(np.uint32).copy()
    nan = ((bits & 0x7F800000) == 0x7F800000) & ((bits & 0x007FFFFF) != 0)
    bits[nan] = (bits[nan] & 0x80000000) | 0x7FC00000
    return bits


def canonical_16(bits: np.ndarray, exponent_mask: int, quiet: int) -> np.ndarray:
    bits = bits.astype(np.uint16).copy()
    mantissa_mask = (~(exponent_mask | 0x8000)) & 0xFFFF
    nan = ((bits & exponent_mask) == exponent_mask) & ((bits & mantissa_mask) != 0)
    bits[nan] = (bits[nan] & 0x8000) | quiet
    return bits


def chunk_hashes(values: np.ndarray, chunk: int) -> list[str]:
    raw = values.astype(values.dtype.newbyteorder("<")).tobytes()
    size = values.dtype.itemsize * chunk
    return ["%016x" % fnv1a64(raw[i:i + size]) for i in range(0, len(raw), size)]


LOWS_16 = {"bf16": [0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF],
           "fp16": [0x0000, 0x0001, 0x0FFF, 0x1000, 0x1001, 0x1FFF]}


def encode_inputs_16(kind: str) -> np.ndarray:
    """float32 bit patterns around every 16-bit pattern: exact, just above, below / at / above the tie, below next.

    BF16: (p << 16) | low. FP16: the pattern's sign and magnitude moved into float32 with the exponent
    re-biased by 112 (so FP16 exponent 0 lands on float32 2^-15, the FP16 subnormal range), then | low.
    Followed, for FP16, by k * 2^-25 for k = 0..4095 and their negatives (ties of the smallest subnormals).
    """
    p = np.arange(65536, dtype=np.uint32)
    if kind == "bf16":
        base = p << 16
    else:
        base = ((p & 0x8000) << 16) | (((p & 0x7FFF) << 13) + 0x38000000)
    inputs = (base[:, None] | np.array(LOWS_16[kind], dtype=np.uint32)[None, :]).reshape(-1)
    if kind == "fp16":
        tiny = (np.arange(4096, dtype=np.float64) * 2.0 ** -25).astype(np.float32).view(np.uint32)
        inputs = np.concatenate([inputs, tiny, tiny | 0x80000000])
    return inputs.astype(np.uint32)


def float16_tables() -> dict:
    patterns = np.arange(65536, dtype=np.uint16)
    result = {"chunk": 4096}
    f16 = patterns.view(np.float16).astype(np.float32).view(np.uint32)
    bf16 = patterns.view(ml_dtypes.bfloat16).astype(np.float32).view(np.uint32)
    result["fp16_decode"] = chunk_hashes(canonical_f32(f16), 4096)
    result["bf16_decode"] = chunk_hashes(canonical_f32(bf16), 4096)
    with np.errstate(all="ignore"):
        x = encode_inputs_16("fp16").view(np.float32)
        out = canonical_16(x.astype(np.float16).view(np.uint16), 0x7C00, 0x7E00)
        result["fp16_encode_count"] = int(out.size)
        result["fp16_encode"] = chunk_hashes(out, 4096)
        x = encode_inputs_16("bf16").view(np.float32)
        out = canonical_16(x.astype(ml_dtypes.bfloat16).view(np.uint16), 0x7F80, 0x7FC0)
        result["bf16_encode_count"] = int(out.size)
        result["bf16_encode"] = chunk_hashes(out, 4096)
    return result


FP8 = {"e4m3fn": (ml_dtypes.float8_e4m3fn, 3, 7), "e5m2": (ml_dtypes.float8_e5m2, 2, 15)}


def fp8_inputs(mantissa: int, bias: int) -> np.ndarray:
    p = np.arange(256, dtype=np.uint32)
    base = ((p & 0x80) << 24) | (((p & 0x7F) << (23 - mantissa)) + ((127 - bias) << 23))
    half, full = 1 << (22 - mantissa), 1 << (23 - mantissa)
    lows = np.array([0, 1, half - 1, half, half + 1, full - 1], dtype=np.uint32)
    grid = (base[:, None] | lows[None, :]).reshape(-1)
    unit = 2.0 ** (-bias - mantissa)  # half the smallest subnormal
    tiny = (np.arange(1 << (mantissa + 3), dtype=np.float64) * unit).astype(np.float32).view(np.uint32)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, 448, 449, 464, 465, 479, 480, 500, 1e9, 57344, 60000,
                         61439, 61440, 61441, 65536, 1e30, 3.4028234663852886e38, 1.401298464324817e-45,
                         1.1754943508222875e-38], dtype=np.float32)
    specials = np.concatenate([specials, -specials]).view(np.uint32)
    nans = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FFFFFFF, 0xFFA00000], dtype=np.uint32)
    return np.concatenate([grid, tiny, tiny | 0x80000000, specials, nans]).astype(np.uint32)


def canonical_fp8(bits: np.ndarray, name: str) -> np.ndarray:
    bits = bits.astype(np.uint8).copy()
    if name == "e4m3fn":
        nan = (bits & 0x7F) == 0x7F
        bits[nan] = (bits[nan] & 0x80) | 0x7F
    else:
        nan = (bits & 0x7F) > 0x7C
        bits[nan] = (bits[nan] & 0x80) | 0x7E
    return bits


def fp8_tables() -> dict:
    result = {}
    for name, (dtype, mantissa, bias) in FP8.items():
        decoded = np.arange(256, dtype=np.uint8).view(dtype).astype(np.float32).view(np.uint32)
        inputs = fp8_inputs(mantissa, bias)
        x = inputs.view(np.float32)
        with np.errstate(all="ignore"):
            plain = canonical_fp8(x.astype(dtype).view(np.uint8), name)
            saturated = canonical_fp8(numpy_helper.saturate_cast(x, dtype).view(np.uint8), name)
        result[name] = {
            "decode": [int(v) for v in canonical_f32(decoded)],
            "inputs": [int(v) for v in inputs],
            "nonsaturating": plain.tobytes().hex(),
            "saturating": saturated.tobytes().hex(),
        }
    return result


# ---------------------------------------------------------------------------------------------------------
# ONNX QuantizeLinear / DequantizeLinear
# ---------------------------------------------------------------------------------------------------------
ONNX_TYPES = {"int8": TensorProto.INT8, "uint8": TensorProto.UINT8, "int16": TensorProto.INT16,
              "uint16": TensorProto.UINT16, "int4": TensorProto.INT4, "uint4": TensorProto.UINT4,
              "int2": TensorProto.INT2, "uint2": TensorProto.UINT2, "fp8e4m3fn": TensorProto.FLOAT8E4M3FN,
              "fp8e5m2": TensorProto.FLOAT8E5M2}


def run_qdq(x, scale, zero_point, type_name, axis=1, block_size=0, saturate=1):
    elem = ONNX_TYPES[type_name]
    np_type = helper.tensor_dtype_to_np_dtype(elem)
    inits = [numpy_helper.from_array(np.asarray(scale, dtype=np.float32), "s")]
    inputs = ["x", "s"]
    if zero_point is not None:
        inits.append(numpy_helper.from_array(np.asarray(zero_point).astype(np_type), "z"))
        inputs.append("z")
    attrs = {"axis": axis}
    if block_size:
        attrs["block_size"] = block_size
    q_attrs = dict(attrs)
    if type_name.startswith("fp8"):
        q_attrs["saturate"] = saturate
    if zero_point is None:
        q_attrs["output_dtype"] = elem
    nodes = [helper.make_node("QuantizeLinear", inputs, ["q"], **q_attrs),
             helper.make_node("DequantizeLinear", ["q"] + inputs[1:], ["y"], **attrs)]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("q", elem, list(x.shape)),
                               helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 25)])
    q, y = ReferenceEvaluator(model).run(None, {"x": x})
    if type_name.startswith("fp8"):
        codes = [int(v) for v in q.view(np.uint8).reshape(-1)]
    else:
        codes = [int(v) for v in q.astype(np.int64).reshape(-1)]
    packed = numpy_helper.from_array(q, "q").raw_data.hex() if type_name in ("int4", "uint4", "int2", "uint2") else None
    # Dequantized values as float32 bit patterns: exact, and Inf / NaN survive JSON.
    return codes, [int(v) for v in y.astype(np.float32).view(np.uint32).reshape(-1)], packed


def quantize_linear_cases() -> list:
    rng = np.random.default_rng(7)
    cases = []

    def add(name, x, scale, zero_point, type_name, granularity, axis=1, block_size=0, saturate=1):
        x = np.asarray(x, dtype=np.float32)
        codes, dequantized, packed = run_qdq(x, scale, zero_point, type_name, axis, block_size, saturate)
        scale_arr = np.asarray(scale, dtype=np.float32)
        cases.append({
            "name": name, "type": type_name, "granularity": granularity, "axis": axis, "block_size": block_size,
            "saturate": bool(saturate), "shape": list(x.shape), "x": [float(v) for v in x.reshape(-1)],
            "scale_shape": list(scale_arr.shape), "scale": [float(v) for v in scale_arr.reshape(-1)],
            "zero_point": None if zero_point is None else [int(v) for v in np.asarray(zero_point).reshape(-1)],
            "codes": codes, "dequantized": dequantized, "packed": packed,
        })

    s = np.float32(0.05)
    ties = (np.arange(-12, 12, dtype=np.float32) + np.float32(0.5)) * s  # exact halves of the step
    wide = rng.normal(0, 4, 40).astype(np.float32)
    base = np.concatenate([ties, wide, np.array([0, -0.0, 1e6, -1e6, 3.2, -6.45], dtype=np.float32)])
    add("int8 per-tensor ties and saturation", base, s, np.int8(-3), "int8", "tensor")
    add("uint8 per-tensor", base, np.float32(0.03), np.uint8(128), "uint8", "tensor")
    # |x / s| stays below 2^31: the reference casts rint(x / s) to int32 before clamping, which is
    # undefined beyond that.
    add("int16 per-tensor", base, np.float32(0.001), np.int16(7), "int16", "tensor")
    add("uint16 per-tensor", np.abs(base), np.float32(0.02), np.uint16(1000), "uint16", "tensor")
    x3 = rng.normal(0, 2, (3, 4, 5)).astype(np.float32)
    add("int8 per-axis axis 1", x3, np.array([0.01, 0.02, 0.05, 0.1], dtype=np.float32),
        np.array([0, -5, 3, 10], dtype=np.int8), "int8", "channel", axis=1)
    add("uint8 per-axis axis 2", x3, np.array([0.01, 0.02, 0.03, 0.04, 0.05], dtype=np.float32),
        np.array([128, 100, 0, 255, 60], dtype=np.uint8), "uint8", "channel", axis=2)
    xb = rng.normal(0, 1, (2, 7)).astype(np.float32)
    add("int4 blocked axis 1 block 3", xb, np.array([[0.1, 0.2, 0.3], [0.15, 0.25, 0.05]], dtype=np.float32),
        np.array([[0, 1, -2], [3, -1, 0]], dtype=np.int8), "int4", "group", axis=1, block_size=3)
    xb0 = rng.normal(0, 1, (5, 3)).astype(np.float32)
    add("uint8 blocked axis 0 block 2", xb0, np.array([[0.01, 0.02, 0.03], [0.04, 0.05, 0.06], [0.07, 0.08, 0.09]],
                                                      dtype=np.float32),
        np.array([[1, 2, 3], [128, 129, 130], [250, 251, 252]], dtype=np.uint8), "uint8", "group", axis=0, block_size=2)
    odd = rng.normal(0, 1, 11).astype(np.float32)
    add("int4 per-tensor odd count", odd, np.float32(0.2), np.int8(1), "int4", "tensor")
    add("uint4 per-tensor odd count", odd, np.float32(0.2), np.uint8(8), "uint4", "tensor")
    add("int2 per-tensor", np.concatenate([odd, [0.7, -0.7, 0.1]]).astype(np.float32), np.float32(0.5), np.int8(0),
        "int2", "tensor")
    add("uint2 per-tensor", np.concatenate([odd, [0.7, -0.7, 0.1]]).astype(np.float32), np.float32(0.5), np.uint8(1),
        "uint2", "tensor")
    f8 = np.concatenate([base * 40, np.array([500, -500, 70000, -70000, 1e-5], dtype=np.float32)])
    for t in ("fp8e4m3fn", "fp8e5m2"):
        for sat in (1, 0):
            add(f"{t} saturate={sat}", f8, np.float32(0.5), None, t, "tensor", saturate=sat)
    return cases


# ---------------------------------------------------------------------------------------------------------
# Observers and searches
# ---------------------------------------------------------------------------------------------------------
def observe(observer, batches):
    for b in batches:
        observer(torch.from_numpy(b.copy()))
    scale, zero_point = observer.calculate_qparams()
    return {"min": [float(v) for v in observer.min_val.reshape(-1)], "max": [float(v) for v in observer.max_val.reshape(-1)],
            "scale": [float(v) for v in scale.reshape(-1)], "zero_point": [int(v) for v in zero_point.reshape(-1)]}


def torch_observers(batches) -> dict:
    from torch.ao.quantization import observer as obs
    q = torch
    return {
        "minmax_uint8_affine": observe(obs.MinMaxObserver(dtype=q.quint8, qscheme=q.per_tensor_affine), batches),
        "minmax_int8_symmetric": observe(obs.MinMaxObserver(dtype=q.qint8, qscheme=q.per_tensor_symmetric), batches),
        "minmax_int8_symmetric_narrow": observe(obs.MinMaxObserver(dtype=q.qint8, qscheme=q.per_tensor_symmetric,
                                                                   quant_min=-127, quant_max=127), batches),
        "minmax_uint8_affine_reduced": observe(obs.MinMaxObserver(dtype=q.quint8, qscheme=q.per_tensor_affine,
                                                                  reduce_range=True), batches),
        "minmax_uint8_symmetric": observe(obs.MinMaxObserver(dtype=q.quint8, qscheme=q.per_tensor_symmetric), batches),
        "perchannel_axis0_int8_symmetric": observe(obs.PerChannelMinMaxObserver(
            ch_axis=0, dtype=q.qint8, qscheme=q.per_channel_symmetric), batches),
        "perchannel_axis1_uint8_affine": observe(obs.PerChannelMinMaxObserver(
            ch_axis=1, dtype=q.quint8, qscheme=q.per_channel_affine), batches),
        "moving_average_0.01_uint8_affine": observe(obs.MovingAverageMinMaxObserver(
            averaging_constant=0.01, dtype=q.quint8, qscheme=q.per_tensor_affine), batches),
        "moving_average_0.3_int8_symmetric": observe(obs.MovingAverageMinMaxObserver(
            averaging_constant=0.3, dtype=q.qint8, qscheme=q.per_tensor_symmetric), batches),
        "moving_average_perchannel_axis1_0.1_int8_symmetric": observe(obs.MovingAveragePerChannelMinMaxObserver(
            averaging_constant=0.1, ch_axis=1, dtype=q.qint8, qscheme=q.per_channel_symmetric), batches),
        "histogram_uint8_affine": observe(obs.HistogramObserver(bins=2048, dtype=q.quint8,
                                                                qscheme=q.per_tensor_affine), batches),
        "histogram_int8_symmetric": observe(obs.HistogramObserver(bins=2048, dtype=q.qint8,
                                                                  qscheme=q.per_tensor_symmetric), batches),
    }


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    if q.sum() <= 0:
        return math.inf
    p = p / p.sum()
    q = q / q.sum()
    mask = p > 0
    if np.any(q[mask] == 0):
        return math.inf
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def folded_window(hist: np.ndarray, start: int, end: int, levels: int):
    """TensorRT's P and Q for the window [start, end) of the histogram.

    P: the window's bins with the mass below added to its first bin and the mass above added to its last.
    Q: the window's own bins (without that outer mass) merged into `levels` levels — level j covers
    bins [j*W//levels, (j+1)*W//levels) — and each level's mass spread evenly over the bins where P is
    non-zero. (Building Q from P itself, as the issue's wording could be read, makes KL = 0 at i = levels.)
    """
    raw = hist[start:end].astype(np.float64)
    p = raw.copy()
    p[0] += hist[:start].sum()
    p[-1] += hist[end:].sum()
    width = end - start
    q = np.zeros_like(p)
    for j in range(levels):
        u, v = j * width // levels, (j + 1) * width // levels
        if v <= u:
            continue
        nonzero = p[u:v] != 0
        if nonzero.any():
            q[u:v][nonzero] = raw[u:v].sum() / nonzero.sum()
    return p, q


def entropy_symmetric(x: np.ndarray, bins: int = 2048, levels: int = 128) -> tuple[float, int]:
    absmax = float(np.abs(x).max())
    hist, _ = np.histogram(np.abs(x), bins=bins, range=(0, absmax))
    best, best_i = math.inf, bins
    for i in range(levels, bins + 1):
        p, q = folded_window(hist, 0, i, levels)
        d = kl_divergence(p, q)
        if d < best:
            best, best_i = d, i
    return absmax * best_i / bins, best_i


def entropy_asymmetric(x: np.ndarray, bins: int = 2048, levels: int = 256) -> tuple[float, float, int, int]:
    lo, hi = float(x.min()), float(x.max())
    hist, _ = np.histogram(x, bins=bins, range=(lo, hi))
    start, end = 0, bins
    for _ in range(32):
        best, best_end = math.inf, end
        for e in range(start + levels, bins + 1):
            d = kl_divergence(*folded_window(hist, start, e, levels))
            if d < best:
                best, best_end = d, e
        best, best_start = math.inf, start
        for s in range(0, best_end - levels + 1):
            d = kl_divergence(*folded_window(hist, s, best_end, levels))
            if d < best:
                best, best_start = d, s
        if (best_start, best_end) == (start, end):
            break
        start, end = best_start, best_end
    width = (hi - lo) / bins
    return lo + start * width, lo + end * width, start, end


def fake_quant_mse(x: np.ndarray, scale: float, zero_point: int, qmin: int, qmax: int) -> float:
    xs = x.astype(np.float32)
    q = np.clip(np.rint(xs / np.float32(scale)) + zero_point, qmin, qmax)
    y = (q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
    return float(np.mean((y.astype(np.float64) - xs.astype(np.float64)) ** 2))


def observer_fixtures() -> dict:
    result = {"batch_shape": BATCH_SHAPE, "batches": BATCHES, "datasets": {}}
    for name in DATASETS:
        batches = dataset(name)
        everything = np.concatenate([b.reshape(-1) for b in batches])
        entry = {"checksum": checksum(batches), "first": [float(v) for v in batches[0].reshape(-1)[:8]]}
        entry["torch"] = torch_observers(batches)
        absx = np.abs(everything)
        entry["reference"] = {
            "min": float(everything.min()), "max": float(everything.max()), "absmax": float(absx.max()),
            "percentile_99.99_abs": float(np.percentile(absx, 99.99)),
            "percentile_0.01": float(np.percentile(everything, 0.01)),
            "percentile_99.99": float(np.percentile(everything, 99.99)),
            "percentile_99_abs": float(np.percentile(absx, 99.0)),
        }
        t, bins_used = entropy_symmetric(everything)
        entry["reference"]["entropy_symmetric_int8"] = t
        entry["reference"]["entropy_symmetric_int8_bins"] = bins_used
        lo, hi, start, end = entropy_asymmetric(everything)
        entry["reference"]["entropy_asymmetric_uint8"] = [lo, hi]
        entry["reference"]["entropy_asymmetric_uint8_window"] = [start, end]
        # The exact 2048-bin histograms the references searched, so the searches can also be compared on
        # identical input (a streaming histogram can only approximate them).
        entry["histogram_abs"] = [int(v) for v in np.histogram(absx, bins=2048, range=(0, float(absx.max())))[0]]
        entry["histogram_signed"] = [int(v) for v in np.histogram(
            everything, bins=2048, range=(float(everything.min()), float(everything.max())))[0]]
        h = entry["torch"]["histogram_uint8_affine"]
        entry["reference"]["torch_histogram_uint8_mse"] = fake_quant_mse(everything, h["scale"][0], h["zero_point"][0], 0, 255)
        h = entry["torch"]["histogram_int8_symmetric"]
        entry["reference"]["torch_histogram_int8_mse"] = fake_quant_mse(everything, h["scale"][0], h["zero_point"][0], -128, 127)
        result["datasets"][name] = entry
        print(name, entry["checksum"], "entropy T", t, "asym", lo, hi)
    return result


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    formats = {"fp16_bf16": float16_tables(), "fp8": fp8_tables()}
    with open(os.path.join(OUT, "float_formats.json"), "w") as f:
        json.dump(formats, f, separators=(",", ":"))
    with open(os.path.join(OUT, "quantize_linear.json"), "w") as f:
        json.dump({"onnx": onnx.__version__, "cases": quantize_linear_cases()}, f, separators=(",", ":"))
    with open(os.path.join(OUT, "observers.json"), "w") as f:
        json.dump(observer_fixtures(), f, separators=(",", ":"))
    for name in sorted(os.listdir(OUT)):
        print(name, os.path.getsize(os.path.join(OUT, name)), "bytes")


if __name__ == "__main__":
    main()
