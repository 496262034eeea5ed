"""Lowering: turn an IR graph into the kernels a framework would run.

The pipeline follows nn-Meter's separation: the IR converter (``oplat.onnx_loader``)
feeds a kernel detector per backend (here: fusion and kernel-choice rules, each a small
named pass) whose kernels are predicted one by one and summed.
"""

from .kernels import Kernel, LoweredModel
from .ort_cpu import lower_ort_cpu
from .tflite_gpu import lower_tflite_cpu, lower_tflite_gpu, lower_torch_gpu

BACKENDS = {"tflite-gpu": lower_tflite_gpu, "tflite-cpu": lower_tflite_cpu, "torch-gpu": lower_torch_gpu,
            "ort-cpu": lower_ort_cpu}


def lower(graph, backend: str = "tflite-gpu", gpu_family: str = "adreno") -> LoweredModel:
    """Lower ``graph`` for ``backend`` (see :data:`BACKENDS`)."""
    try:
        fn = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown lowering backend {backend!r} (known: {', '.join(BACKENDS)})") from None
    return fn(graph, gpu_family=gpu_family)


__all__ = ["Kernel", "LoweredModel", "lower", "lower_tflite_gpu", "lower_tflite_cpu", "lower_ort_cpu", "BACKENDS"]
