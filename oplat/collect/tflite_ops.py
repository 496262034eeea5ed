"""Single-kernel .tflite models (NHWC) for the same configs as :func:`onnx_single_op`.

Written through LiteRT's schema object API (:class:`oplat.tflite_writer.TFLiteBuilder`):
CONV_2D (SAME padding, ReLU/ReLU6 fused as TFLite's fused activation, residual ADD as a
second op), DEPTHWISE_CONV_2D, FULLY_CONNECTED, MEAN, MAX/AVERAGE_POOL_2D,
CONCATENATION, and element-wise RELU / HARD_SWISH / LOGISTIC.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..tflite_writer import TFLiteBuilder

TFLITE_KERNELS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MEAN", "MAX_POOL_2D", "AVERAGE_POOL_2D",
                  "CONCATENATION", "RELU", "HARD_SWISH", "SIGMOID")
_ACT = {"relu": 1, "relu6": 3}


def _fused(linked: list[str]) -> tuple[int, list[str]]:
    """TFLite fused activation code for the trailing clamp, and the links left over."""
    if linked and linked[-1] in _ACT and "add" not in linked[:-1]:
        return _ACT[linked[-1]], linked[:-1]
    return 0, list(linked)


def tflite_single_op(cfg: dict[str, Any], seed: int = 0) -> bytes:
    """The .tflite flatbuffer running one kernel config."""
    rng = np.random.default_rng(seed)
    k = cfg["kernel"]
    h = int(cfg.get("Input_shape", 1))
    c = int(cfg.get("Input_channel", 1))
    linked = list(cfg.get("linked", []))
    b = TFLiteBuilder()
    if k in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        ks, s = int(cfg.get("Kernel", 1)), int(cfg.get("Stride", 1))
        if int(cfg.get("Group", 1) or 1) != 1 and k == "CONV_2D":
            raise ValueError("grouped CONV_2D has no single TFLite op")
        act, rest = _fused(linked)
        ho = math.ceil(h / s)
        x = b.add_input("x", [1, h, h, c])
        if k == "CONV_2D":
            f = int(cfg["Filter"])
            w = b.add_const("w", (rng.standard_normal((f, ks, ks, c)) / math.sqrt(ks * ks * c)).astype(np.float32))
            bias = b.add_const("b", np.zeros(f, np.float32))
            y = b.add_tensor("y", [1, ho, ho, f])
            b.add_op("CONV_2D", [x, w, bias], [y], "Conv2DOptions", padding=0, strideH=s, strideW=s,
                     dilationHFactor=1, dilationWFactor=1, fusedActivationFunction=act)
        else:
            m = int(cfg.get("Filter", 1) or 1)
            f = c * m
            w = b.add_const("w", (rng.standard_normal((1, ks, ks, f)) / ks).astype(np.float32))
            bias = b.add_const("b", np.zeros(f, np.float32))
            y = b.add_tensor("y", [1, ho, ho, f])
            b.add_op("DEPTHWISE_CONV_2D", [x, w, bias], [y], "DepthwiseConv2DOptions", padding=0, strideH=s,
                     strideW=s, depthMultiplier=m, dilationHFactor=1, dilationWFactor=1, fusedActivationFunction=act)
        y = _links(b, rest, y, [1, ho, ho, f])
    elif k == "FULLY_CONNECTED":
        rows, f = int(cfg.get("Rows", 1)), int(cfg["Filter"])
        act, rest = _fused(linked)
        x = b.add_input("x", [rows, c])
        w = b.add_const("w", (rng.standard_normal((f, c)) / math.sqrt(c)).astype(np.float32))
        bias = b.add_const("b", np.zeros(f, np.float32))
        y = b.add_tensor("y", [rows, f])
        b.add_op("FULLY_CONNECTED", [x, w, bias], [y], "FullyConnectedOptions", fusedActivationFunction=act)
        y = _links(b, rest, y, [rows, f])
    elif k == "MEAN":
        x = b.add_input("x", [1, h, h, c])
        axes = b.add_const("axes", np.array([1, 2], np.int32))
        y = b.add_tensor("y", [1, c])
        b.add_op("MEAN", [x, axes], [y], "ReducerOptions", keepDims=False)
    elif k in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        ks, s = int(cfg.get("Kernel", 3)), int(cfg.get("Stride", 2))
        x = b.add_input("x", [1, h, h, c])
        ho = math.ceil(h / s)
        y = b.add_tensor("y", [1, ho, ho, c])
        b.add_op(k, [x], [y], "Pool2DOptions", padding=0, strideH=s, strideW=s, filterHeight=ks, filterWidth=ks,
                 fusedActivationFunction=0)
    elif k == "CONCATENATION":
        n = int(cfg.get("Kernel", 2))
        total = int(cfg.get("Filter", 2 * c))
        rest_c = max(1, (total - c) // max(n - 1, 1))
        xs = [b.add_input("x", [1, h, h, c])] + [b.add_input(f"x{i}", [1, h, h, rest_c]) for i in range(1, n)]
        y = b.add_tensor("y", [1, h, h, c + rest_c * (n - 1)])
        b.add_op("CONCATENATION", xs, [y], "ConcatenationOptions", axis=3, fusedActivationFunction=0)
    elif k in ("RELU", "HARD_SWISH", "SIGMOID"):
        x = b.add_input("x", [1, h, h, c])
        y = b.add_tensor("y", [1, h, h, c])
        b.add_op({"RELU": "RELU", "HARD_SWISH": "HARD_SWISH", "SIGMOID": "LOGISTIC"}[k], [x], [y])
    else:
        raise ValueError(f"no TFLite single-op builder for kernel {k!r} (known: {', '.join(TFLITE_KERNELS)})")
    b.mark_output(y)
    return b.build()


def _links(b: TFLiteBuilder, linked: list[str], y: int, shape: list[int]) -> int:
    """Residual add (a second input) and any activation left after the fused one."""
    for i, tok in enumerate(linked):
        out = b.add_tensor(f"link{i}", shape)
        if tok == "add":
            r = b.add_input("r", shape)
            b.add_op("ADD", [y, r], [out], "AddOptions", fusedActivationFunction=0)
        elif tok in ("relu", "hard_swish", "sigmoid"):
            b.add_op({"relu": "RELU", "hard_swish": "HARD_SWISH", "sigmoid": "LOGISTIC"}[tok], [y], [out])
        else:
            raise ValueError(f"no TFLite builder for linked op {tok!r}")
        y = out
    return y
