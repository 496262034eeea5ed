"""Lowering for TFLite's CPU path (the XNNPACK delegate): which kernels fuse their
activation, and XNNPACK's microkernel family for each kernel."""

from __future__ import annotations

from ..ir import Graph
from .kernels import LAYOUT, Kernel, LoweredModel
from .pipeline import lower_graph

# TFLite's converter fuses clamping activations into the op's fused_activation_function
# (conv, fully connected, add, mul); XNNPACK runs everything else as a node of its own.
CPU_LINK_HOSTS = frozenset(("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_GROUP", "FULLY_CONNECTED",
                            "ADD", "MUL"))


CPU_LINK_TOKENS = frozenset(("relu",))


def lower_tflite_cpu(g: Graph, variant: str = "cpu", **options) -> LoweredModel:
    """Lower an IR graph to the kernels TFLite's CPU path (XNNPACK delegate) runs.

    Same converter rules as the GPU path (BatchNorm and constants folded, HardSwish
    recognised, pads absorbed), but convolutions are never Winograd (XNNPACK runs
    IGEMM/GEMM and dedicated depthwise microkernels) and only ReLU/ReLU6 fuse into their
    producer: residual adds, HardSwish and sigmoid gates are kernels of their own.
    """
    lm = lower_graph(g, "cpu", "tflite-cpu", CPU_LINK_HOSTS, CPU_LINK_TOKENS, **options)
    for k in lm.kernels:
        k.impl = cpu_impl(k)
    return lm


def cpu_impl(k: Kernel) -> str:
    """XNNPACK's microkernel family for one kernel (selects the CPU regressor)."""
    p = k.params
    if k.type == "CONV_2D" and k.impl != "fully_connected":
        if (p.get("Input_channel") or 8) <= 4:
            return "conv_stem"
        if p.get("Kernel") == 1 and p.get("Kernel_w", 1) == 1:
            return "gemm_1x1"
        return "igemm"
    if k.type == "DEPTHWISE_CONV_2D" and (p.get("Stride") or 1) > 1:
        return "depthwise_s2"
    if k.type == "FULLY_CONNECTED" and p.get("Kernel") is None and (p.get("Input_shape") or 1) > 1:
        return "fc_tokens"
    if k.type == "RESHAPE" or k.is_row or k.type in ("ADD", "MUL", "TRANSPOSE"):
        return k.impl
    return "layout" if k.type in LAYOUT else "eltwise"
