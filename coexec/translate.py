"""ONNX nodes -> :class:`~coexec.layers.LayerSpec`: the one translator used by the graph
runner (every node placed on the GPU) and by single-layer models (``coexec bench``)."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
import onnx

from oplat.errors import OplatError
from oplat.onnx_utils import attrs as onnx_attrs

from .layers import UNARY_MODES, LayerSpec


# activations an OpenCL kernel applies as an output clamp
CLAMPS = {"Relu", "Clip"}


# layer kinds whose kernel takes output bounds (the others cannot take a fused clamp)
CLAMPED_KINDS = ("conv", "linear", "dwconv", "add", "mul", "sub", "div", "unary", "matmul")


# ONNX element-wise activations -> the ``unary`` kernel's mode (coexec.layers.UNARY_MODES)
UNARY_OPS = {"Relu": "clamp", "Clip": "clamp", "HardSwish": "hardswish", "Sigmoid": "sigmoid",
             "HardSigmoid": "hardsigmoid", "Erf": "erf", "Gelu": "gelu"}


def row_layer(node: onnx.NodeProto, a: dict[str, Any], xs: Sequence[int],
               consts: Mapping[str, np.ndarray]) -> LayerSpec | None:
    """Softmax or LayerNormalization over the last axis (constant scale and bias)."""
    if int(a.get("axis", -1)) % len(xs) != len(xs) - 1:
        return None
    rows, none = int(np.prod(xs[:-1], dtype=np.int64)), np.zeros(1, np.float32)
    if node.op_type == "Softmax":
        return LayerSpec("softmax", none, none, channels=rows)
    if len(node.input) < 2 or len(node.output) != 1 or any(x not in consts for x in node.input[1:] if x):
        return None
    d = int(xs[-1])
    vec = lambda i: np.ascontiguousarray(np.broadcast_to(  # noqa: E731
        consts[node.input[i]].astype(np.float32).reshape(-1) if len(node.input) > i and node.input[i] else none,
        (d,)))
    return LayerSpec("layernorm", vec(1), vec(2), alpha=float(a.get("epsilon", 1e-5)), channels=rows)


def conv_layer(node: onnx.NodeProto, a: dict[str, Any], xs: Sequence[int],
                consts: Mapping[str, np.ndarray]) -> LayerSpec | None:
    """A dense or depthwise Conv with a square kernel, equal strides and symmetric pads."""
    w = consts[node.input[1]].astype(np.float32)
    pads, strides = list(a.get("pads", [0, 0, 0, 0])), list(a.get("strides", [1, 1]))
    if (w.ndim != 4 or w.shape[2] != w.shape[3] or len(set(pads)) != 1 or len(set(strides)) != 1
            or any(d != 1 for d in a.get("dilations", [1, 1])) or len(xs) != 4):
        return None
    group = int(a.get("group", 1))
    if group == 1:
        kind = "conv"
    elif group == xs[1] == w.shape[0] and w.shape[1] == 1:
        kind = "dwconv"
    else:
        return None
    b = consts[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0])
    return LayerSpec(kind, w, b.astype(np.float32), int(strides[0]), int(pads[0]))


def batchnorm_layer(node: onnx.NodeProto, a: dict[str, Any], xs: Sequence[int],
                     consts: Mapping[str, np.ndarray]) -> LayerSpec | None:
    """An inference BatchNormalization (constant statistics) as a 1x1 depthwise conv:
    per channel ``x * scale / sqrt(var + eps) + (B - mean * that)``."""
    if len(xs) != 4 or len(node.input) < 5 or any(x not in consts for x in node.input[1:5]):
        return None
    scale, bias, mean, var = (consts[x].astype(np.float64).reshape(-1) for x in node.input[1:5])
    g = scale / np.sqrt(var + float(a.get("epsilon", 1e-5)))
    return LayerSpec("dwconv", g.astype(np.float32).reshape(-1, 1, 1, 1), (bias - mean * g).astype(np.float32), 1, 0)


def linear_layer(node: onnx.NodeProto, a: dict[str, Any], xs: Sequence[int],
                  consts: Mapping[str, np.ndarray]) -> LayerSpec | None:
    """A Gemm (no transA, unit alpha/beta) or MatMul over one row of 16k inputs."""
    op = node.op_type
    if len(xs) != 2 or xs[0] != 1 or xs[1] % 16:
        return None
    if op == "Gemm" and (a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0):
        return None
    w = consts[node.input[1]].astype(np.float32)
    w = w if op == "Gemm" and a.get("transB", 0) else w.T
    b = (consts[node.input[2]].reshape(-1) if op == "Gemm" and len(node.input) > 2 and node.input[2]
         else np.zeros(w.shape[0]))
    return LayerSpec("linear", np.ascontiguousarray(w), b.astype(np.float32))


def pool_layer(node: onnx.NodeProto, a: dict[str, Any], xs: Sequence[int]) -> LayerSpec | None:
    """Max/average pools with a square window (ONNX defaults otherwise), global average
    pools and a ReduceMean over H and W."""
    op, none = node.op_type, np.zeros(1, np.float32)
    if len(xs) != 4:
        return None
    if op == "GlobalAveragePool" or (op == "ReduceMean" and len(node.input) == 1 and a.get("keepdims", 1)
                                     and sorted(int(v) % 4 for v in a.get("axes", [])) == [2, 3]):
        return LayerSpec("gap", none, none, channels=int(xs[1]))
    if op not in ("MaxPool", "AveragePool"):
        return None
    ks, pads = list(a.get("kernel_shape", [])), list(a.get("pads", [0, 0, 0, 0]))
    strides = list(a.get("strides", [1, 1]))
    if (len(ks) != 2 or ks[0] != ks[1] or len(set(pads)) != 1 or len(set(strides)) != 1
            or a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", [1, 1]))
            or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
            or (op == "AveragePool" and a.get("count_include_pad", 0))):
        return None
    return LayerSpec("maxpool" if op == "MaxPool" else "avgpool", none, none, int(strides[0]), int(pads[0]),
                     k=int(ks[0]), channels=int(xs[1]))


def unary_layer(node: onnx.NodeProto, a: dict[str, Any], channels: int,
                 bounds: tuple[float, float] | None) -> LayerSpec | None:
    """An element-wise activation (``bounds``: a Relu's or constant Clip's, else None)."""
    op, none = node.op_type, np.zeros(1, np.float32)
    spec = LayerSpec("unary", none, none, mode=UNARY_MODES[UNARY_OPS[op]], channels=channels)
    if op in ("Relu", "Clip"):
        if bounds is None:
            return None
        spec.lo, spec.hi = bounds
    elif op == "HardSwish":
        spec.alpha, spec.beta = 1.0 / 6.0, 0.5
    elif op == "HardSigmoid":
        spec.alpha, spec.beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
    return spec


def layer_from_onnx(path: str | os.PathLike) -> tuple[LayerSpec, tuple[int, ...]]:
    """The single Conv or Gemm/MatMul layer of a model file, and its input shape (no batch)."""
    from onnx import numpy_helper

    from oplat.graph_only import is_graph_only, load_with_weights

    m = load_with_weights(path)
    if is_graph_only(m):
        raise OplatError(f"{path}: graph-only model (no weights); coexec bench runs real weights")
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    compute = [n for n in m.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    if len(compute) != 1:
        raise OplatError(f"{path}: {len(compute)} conv/linear layers; the runtime executes single-layer models "
                         "(whole models run with 'coexec run')")
    n = compute[0]
    if len(n.input) < 2 or n.input[1] not in inits:
        raise OplatError(f"{path}: {n.op_type} weights are not constant")
    xs = tuple(int(d.dim_value) for d in m.graph.input[0].type.tensor_type.shape.dim)
    a = onnx_attrs(n)
    spec = conv_layer(n, a, xs, inits) if n.op_type == "Conv" else linear_layer(n, a, xs, inits)
    if spec is None or spec.kind not in ("conv", "linear"):
        raise OplatError(f"{path}: only dense convolutions (square kernel, symmetric pads, equal strides) and "
                         "one-row linear layers of 16k inputs run on the runtime's OpenCL kernels")
    return spec, (tuple(xs[1:]) if spec.kind == "conv" else (int(xs[-1]),))


__all__ = ["CLAMPS", "CLAMPED_KINDS", "UNARY_OPS", "row_layer", "conv_layer", "batchnorm_layer", "linear_layer",
           "pool_layer", "unary_layer", "layer_from_onnx"]
