"""Lowering: turn an IR graph into the kernels a framework would run.

The pipeline follows nn-Meter's separation: the IR converter (``oplat.onnx_loader``)
feeds a kernel detector per backend whose kernels are predicted one by one and summed.
A pipeline package:

- :mod:`.work`: the working graph the passes rewrite;
- :mod:`.passes`: converter passes (fusions, folds, absorbed pads), each small and named;
- :mod:`.classify`: the kernel each node becomes (conv flavour, Winograd, pools, ...);
- :mod:`.link`: element-wise kernels fused into their producer;
- :mod:`.pipeline`: the driver running them in order;
- one module per backend: :mod:`.tflite_gpu`, :mod:`.tflite_cpu`, :mod:`.torch_gpu`,
  :mod:`.ort_cpu` (hosts, links and implementation names of that framework).

``variant`` names what a backend's kernels depend on: the GPU family for TFLite GPU,
``vulkan``/``metal`` for PyTorch, ``nchwc<block>`` for onnxruntime, ``cpu`` otherwise.
"""

from .kernels import Kernel, LoweredModel
from .ort_cpu import lower_ort_cpu
from .tflite_cpu import lower_tflite_cpu
from .tflite_gpu import lower_tflite_gpu
from .torch_gpu import lower_torch_gpu

BACKENDS = {"tflite-gpu": lower_tflite_gpu, "tflite-cpu": lower_tflite_cpu, "torch-gpu": lower_torch_gpu,
            "ort-cpu": lower_ort_cpu}


# backends whose every decision is local to a producer and its consumers (plus the one
# network-wide pre-activation flag): a network's kernels are its pieces' kernels when no
# fusion crosses between pieces, which oplat.spaces.compose checks. onnxruntime's lowering
# places layout reorders by walking the whole network, so it is not among them.
PIECEWISE = frozenset(("tflite-gpu", "tflite-cpu", "torch-gpu"))


def lower(graph, backend: str = "tflite-gpu", variant: str = "adreno", **options) -> LoweredModel:
    """Lower ``graph`` for ``backend`` (see :data:`BACKENDS`); ``options`` go to the
    pipeline (:func:`.pipeline.lower_graph`) for the :data:`PIECEWISE` backends."""
    try:
        fn = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown lowering backend {backend!r} (known: {', '.join(BACKENDS)})") from None
    return fn(graph, variant=variant, **options)


__all__ = ["Kernel", "LoweredModel", "lower", "lower_tflite_gpu", "lower_tflite_cpu", "lower_torch_gpu", "lower_ort_cpu",
           "BACKENDS", "PIECEWISE"]
