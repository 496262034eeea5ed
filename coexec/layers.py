"""Layers the runtime executes: :class:`LayerSpec` (one layer with its weights), the op-code
tables its OpenCL kernels take, the single-layer ONNX model of a channel range (the CPU
half and the reference), and the one translator from an ONNX node to a layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


from .errors import RuntimeUnavailable


# kinds computed per channel (rows for softmax / layernorm): a part of channels [c0, c1)
# reads only those channels of its input
CHANNELWISE = ("dwconv", "maxpool", "avgpool", "gap", "add", "mul", "sub", "div", "unary", "softmax", "layernorm",
               "matmul", "transpose")


# how an Add/Mul's second operand broadcasts (its ``mode``): "auto" is the first's shape or
# one value per channel, told apart by size; "last": one value per last-axis position
BROADCAST = {"auto": 0, "last": 2, "scalar": 3}


# unary modes (the ``unary`` kernel): clamp (Relu, Clip; bounds in lo/hi), HardSwish, Sigmoid, HardSigmoid,
# Erf, GELU (erf form)
UNARY_MODES = {"clamp": 0, "hardswish": 1, "sigmoid": 2, "hardsigmoid": 3, "erf": 4, "gelu": 5}


# element-wise binary ops (the ``binary`` kernel's op): the second operand on the right
BINARY_OPS = {"add": 0, "mul": 1, "sub": 2, "div": 3}


@dataclass
class LayerSpec:
    """One layer with its weights; ``lo``/``hi`` clamp the output (a fused Relu is
    ``lo=0``, Relu6 / Clip ``lo=0, hi=6``).

    Kinds: ``conv`` (NCHW, square kernel), ``linear`` (one row), ``dwconv`` (weights
    [C, 1, k, k]), ``maxpool`` / ``avgpool`` (window ``k``), ``gap`` (global average),
    ``add`` / ``mul`` / ``sub`` / ``div`` (``w`` is the second operand, broadcast by
    ``mode`` of :data:`BROADCAST`), ``unary`` (``mode`` of :data:`UNARY_MODES`, parameters ``alpha``/``beta``),
    ``softmax`` and ``layernorm`` (last axis; ``w``/``b`` scale and bias, ``alpha`` the
    epsilon), ``matmul`` (rows of the input times ``w`` [K, ``cols``], plus ``b`` when it
    has ``cols`` values; ``w`` of another size is a second operand of one [K, cols]
    matrix per batch), ``transpose`` (``perm``, whole tensors). Kinds without weights give
    ``channels`` (rows for softmax, layernorm and matmul)."""

    kind: str
    w: np.ndarray
    b: np.ndarray
    stride: int = 1
    pad: int = 0
    lo: float = -np.inf
    hi: float = np.inf
    k: int = 0
    mode: int = 0
    alpha: float = 0.0
    beta: float = 0.0
    channels: int = 0
    cols: int = 0
    perm: tuple[int, ...] = ()

    @property
    def out_channels(self) -> int:
        return int(self.channels or self.w.shape[0])

    def out_shape(self, x_shape: Sequence[int]) -> tuple[int, ...]:
        if self.kind == "linear":
            return (self.out_channels,)
        if self.kind == "gap":
            return (int(x_shape[-3]), 1, 1)
        if self.kind == "matmul":
            return (*(int(d) for d in x_shape[:-1]), self.cols)
        if self.kind == "transpose":
            return tuple(int(x_shape[p]) for p in self.perm)
        if self.kind not in ("conv", "dwconv", "maxpool", "avgpool"):
            return tuple(int(d) for d in x_shape)
        c, h, w = x_shape[-3:]
        k = self.k if self.kind.endswith("pool") else self.w.shape[-1]
        return (self.out_channels if self.kind == "conv" else int(c), (h + 2 * self.pad - k) // self.stride + 1,
                (w + 2 * self.pad - k) // self.stride + 1)


def transpose_args(x_shape: Sequence[int], perm: Sequence[int]) -> tuple[list[int], list[int]]:
    """The ``transpose6`` kernel's output dims and, per output axis, the input's stride
    (both padded in front to six axes)."""
    if len(x_shape) > 6:
        raise RuntimeUnavailable(f"transpose of {len(x_shape)} axes (the kernel takes up to 6)")
    strides = [int(np.prod(x_shape[i + 1:], dtype=np.int64)) for i in range(len(x_shape))]
    pad = 6 - len(x_shape)
    return [1] * pad + [int(x_shape[p]) for p in perm], [0] * pad + [strides[p] for p in perm]


def elements(a) -> int:
    """Float32 elements of an SVM array or of a plain device buffer (which counts bytes)."""
    return a.size if isinstance(a, np.ndarray) else a.size // 4


def max_rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    """Largest absolute difference over the reference's largest magnitude (NaN if ``got``
    holds NaN, so a check ``err <= tol`` fails on it)."""
    got, ref = np.asarray(got), np.asarray(ref)
    return float(np.abs(got.reshape(ref.shape) - ref).max() / max(float(np.abs(ref).max()), 1e-12))


def inner_size(layer: LayerSpec, x_shape: Sequence[int]) -> int:
    """Elements of the input per channel (per row for softmax / layernorm)."""
    if layer.kind in ("softmax", "layernorm", "matmul"):
        return int(x_shape[-1])
    return int(np.prod(x_shape[1:], dtype=np.int64)) if len(x_shape) > 1 else 1


def is_pointwise(layer: LayerSpec) -> bool:
    """A 1x1 stride-1 unpadded conv: runs as a GEMM over flattened pixels (``conv1x1_v8``)."""
    return layer.kind == "conv" and layer.w.shape[-1] == 1 and layer.stride == 1 and layer.pad == 0


def wants_padded_input(layer: LayerSpec) -> bool:
    """Whether the layer's kernel reads a zero-padded copy of its input (the vectorised
    stride-1 conv ``conv_v8``; launches make the copy on the device first)."""
    return layer.kind == "conv" and layer.stride == 1 and layer.out_channels % 4 == 0 and not is_pointwise(layer)


def padded_dims(h: int, w: int, pad: int) -> tuple[int, int]:
    """(rows, row length) of a padded CHW channel for ``conv_v8``: ``pad`` on every side
    plus 8 floats of slack for its 8-wide loads past a row's end (the buffer adds 16)."""
    return h + 2 * pad, w + 2 * pad + 8


def layer_model(layer: LayerSpec, c0: int, c1: int, x_shape: Sequence[int]) -> tuple[bytes, list[int], list[int]]:
    """The ONNX model (serialised) computing output channels [c0, c1) of ``layer`` with
    onnxruntime, with its input and output shapes. Channel-wise kinds read channels
    (rows) [c0, c1) of the input; conv and linear read all of it."""
    from onnx import TensorProto, helper, numpy_helper

    n, kind = c1 - c0, layer.kind
    inits: list = []
    nodes_pre: list = []  # nodes before the layer's last one (a MatMul's before its bias Add)

    def const(name: str, a: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(a, dtype=np.float32), name))
        return name

    if kind == "linear":
        node = helper.make_node("Gemm", ["x", const("w", layer.w[c0:c1]), const("b", layer.b[c0:c1])], ["y"],
                                transB=1)
        xs, ys = [1, int(x_shape[-1])], [1, n]
    elif kind in ("conv", "dwconv"):
        k = layer.w.shape[-1]
        node = helper.make_node("Conv", ["x", const("w", layer.w[c0:c1]), const("b", layer.b[c0:c1])], ["y"],
                                kernel_shape=[k, k], strides=[layer.stride] * 2, pads=[layer.pad] * 4,
                                group=n if kind == "dwconv" else 1)
        _, ho, wo = layer.out_shape(x_shape)
        xs = [1, *x_shape[-3:]] if kind == "conv" else [1, n, *x_shape[-2:]]
        ys = [1, n, ho, wo]
    else:
        xs = [1, n, *x_shape[1:]] if kind not in ("softmax", "layernorm", "matmul") else [1, n, int(x_shape[-1])]
        ys = [1, *layer.out_shape(xs[1:])]
        if kind in ("maxpool", "avgpool"):
            node = helper.make_node("MaxPool" if kind == "maxpool" else "AveragePool", ["x"], ["y"],
                                    kernel_shape=[layer.k] * 2, strides=[layer.stride] * 2, pads=[layer.pad] * 4)
        elif kind == "gap":
            node = helper.make_node("GlobalAveragePool", ["x"], ["y"])
        elif kind == "transpose":
            xs, ys = [1, *x_shape], [1, *layer.out_shape(x_shape)]
            node = helper.make_node("Transpose", ["x"], ["y"], perm=[0] + [p + 1 for p in layer.perm])
        elif kind in BINARY_OPS:
            if layer.mode == BROADCAST["last"]:
                w = layer.w.reshape(-1)
            elif layer.mode == BROADCAST["scalar"]:
                w = layer.w.reshape(())
            elif np.size(layer.w) != int(np.prod(x_shape)):  # per channel
                w = layer.w.reshape(-1)[c0:c1].reshape([1, n] + [1] * (len(xs) - 2))
            else:
                w = layer.w.reshape(int(x_shape[0]), -1)[c0:c1].reshape(xs)
            node = helper.make_node(kind.capitalize(), ["x", const("w", w)], ["y"])
        elif kind == "unary":
            mode = {v: k for k, v in UNARY_MODES.items()}[layer.mode]
            op = {"clamp": "Identity", "hardswish": "HardSwish", "sigmoid": "Sigmoid", "hardsigmoid": "HardSigmoid",
                  "erf": "Erf", "gelu": "Gelu"}
            node = helper.make_node(op[mode], ["x"], ["y"], domain="com.microsoft" if mode == "gelu" else "",
                                    **({"alpha": layer.alpha, "beta": layer.beta} if mode == "hardsigmoid" else {}))
        elif kind == "softmax":
            node = helper.make_node("Softmax", ["x"], ["y"], axis=-1)
        elif kind == "matmul":
            ys = [1, n, layer.cols]
            node = helper.make_node("MatMul", ["x", const("w", layer.w.reshape(-1, layer.cols))], ["y"])
            if layer.b.size == layer.cols:
                node.output[0] = "mm"
                nodes_pre = [node]
                node = helper.make_node("Add", ["mm", const("b", layer.b)], ["y"])
        elif kind == "layernorm":
            node = helper.make_node("LayerNormalization", ["x", const("g", layer.w), const("b", layer.b)], ["y"],
                                    axis=-1, epsilon=layer.alpha)
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
    nodes = [*nodes_pre, node]
    if np.isfinite(layer.lo) or np.isfinite(layer.hi):  # the fused activation
        node.output[0] = "acc"
        nodes.append(helper.make_node("Clip", ["acc", const("lo", np.array(layer.lo)), const("hi", np.array(layer.hi))],
                                      ["y"]))
    g = helper.make_graph(nodes, "part", [helper.make_tensor_value_info("x", TensorProto.FLOAT, xs)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ys)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    return m.SerializeToString(), xs, ys


