"""Lowering for PyTorch Mobile's GPU backends (Vulkan, Metal): the conv and linear
layers that fuse a following ReLU, and each backend's kernel names."""

from __future__ import annotations

from ..ir import Graph
from .kernels import LAYOUT, Kernel, LoweredModel
from .pipeline import lower_graph

TORCH_HOSTS = frozenset(("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_GROUP", "FULLY_CONNECTED"))


def lower_torch_gpu(g: Graph, variant: str = "vulkan", **options) -> LoweredModel:
    """Lower an IR graph to the kernels PyTorch Mobile's GPU backends run.

    ``optimize_for_mobile`` folds BatchNorm into the preceding conv (the passes above) and
    fuses a ReLU/ReLU6 that directly follows a conv or linear layer into its prepacked
    context; every other op is a kernel of its own (relu after an add, hardswish,
    sigmoid, add, mul, an unfolded batch norm). Vulkan's conv kernel is chosen by shape
    (``conv2d_pw_2x2`` for 1x1, ``conv2d_dw_3x3``/``_5x5`` for depthwise, ``conv2d``
    otherwise); Metal runs ``prepack_conv2d`` for all.
    """
    metal = variant == "metal"
    lm = lower_graph(g, "cpu", "torch-gpu", TORCH_HOSTS, frozenset(("relu",)), **options)
    for k in lm.kernels:
        k.impl = _torch_impl(k, metal)
    return lm


def _torch_impl(k: Kernel, metal: bool) -> str:
    p = k.params
    if k.type in ("CONV_2D", "CONV_2D_GROUP", "DEPTHWISE_CONV_2D"):
        if metal:
            return "prepack_conv2d"
        ks = p.get("Kernel")
        if k.type == "DEPTHWISE_CONV_2D":
            return {3: "conv2d_dw_3x3", 5: "conv2d_dw_5x5"}.get(ks, "conv2d_dw")
        if k.type == "CONV_2D" and ks == 1 and p.get("Kernel_w", 1) == 1:
            return "conv2d_pw_2x2"
        return "conv2d"
    if k.type == "FULLY_CONNECTED":
        return "linear" if metal else "addmm"
    if k.type == "RESHAPE" or k.is_row or k.type in ("ADD", "MUL", "TRANSPOSE"):
        return k.impl
    return "layout" if k.type in LAYOUT else "eltwise"
