"""Kernel detector for the TFLite GPU delegate (OpenCL on Android, Metal on iOS).

The shared pipeline (:mod:`.pipeline`) reproduces what the TFLite converter and the GPU
delegate do to a graph:

converter:  constant folding, BatchNorm folded into conv, bias/scale constants folded,
            HardSwish/Swish recognised, explicit Pad kept or absorbed into the conv
delegate:   convolution flavour (direct, grouped, depthwise, 1x1-on-1x1 as fully
            connected, Winograd 4x4->6x6 on Mali/PowerVR/Apple), global pools as MEAN,
            element-wise ops linked into the producing kernel
"""

from __future__ import annotations

from ..ir import Graph
from .classify import GPU_FAMILIES
from .kernels import LoweredModel
from .pipeline import lower_graph


def lower_tflite_gpu(g: Graph, variant: str = "adreno", **options) -> LoweredModel:
    """Lower an IR graph to the kernels TFLite's GPU delegate runs (``options``: see
    :func:`.pipeline.lower_graph`)."""
    if variant not in GPU_FAMILIES:
        raise ValueError(f"unknown GPU family {variant!r} (known: {', '.join(GPU_FAMILIES)})")
    return lower_graph(g, variant, "tflite-gpu", **options)


