"""The LiteRT (XNNPACK) CPU collection backend (``litert-cpu``)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .backends import Backend, BackendError, single_op_bytes, time_single_op


class _LiteRTSession:
    """onnxruntime-like ``get_inputs()`` / ``run(None, feeds)`` over a LiteRT interpreter."""

    class _Input:
        def __init__(self, name: str, shape) -> None:
            self.name, self.shape = name, [int(d) for d in shape]

    def __init__(self, interpreter) -> None:
        self.it = interpreter
        self.it.allocate_tensors()
        self._in = self.it.get_input_details()
        self._out = self.it.get_output_details()

    def get_inputs(self) -> list:
        return [self._Input(d["name"], d["shape"]) for d in self._in]

    def run(self, _outputs, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        for d in self._in:
            self.it.set_tensor(d["index"], feeds[d["name"]].reshape(d["shape"]))
        self.it.invoke()
        return [self.it.get_tensor(d["index"]) for d in self._out]

    def prepare(self, feeds: dict[str, np.ndarray]):
        """Set the inputs once; the returned call times ``invoke()`` alone, as
        ``benchmark_model`` does (copying a 1.6 MB input every run would be measured too)."""
        for d in self._in:
            self.it.set_tensor(d["index"], feeds[d["name"]].reshape(d["shape"]))
        return self.it.invoke


def litert_interpreter_class():
    """LiteRT's ``Interpreter`` (ai-edge-litert; tflite-runtime when only that is installed)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise BackendError("the litert-cpu backend needs ai-edge-litert, which is not installed: "
                               "pip install 'oplat[collect]'") from None
    return Interpreter


class LiteRTCpuBackend(Backend):
    """LiteRT interpreter on the CPU with its default XNNPACK delegate, ``threads`` threads.

    Models are ONNX single-op (or whole) models converted to .tflite with NHWC inputs by
    :mod:`oplat.onnx2tflite`, so LiteRT runs the same kernels a converted model runs.
    """

    name = "litert-cpu"
    lowering = ("tflite-cpu", "cpu")
    fusable_links = frozenset(("relu", "relu6"))

    def __init__(self, threads: int = 1, cores: Sequence[int] | None = None) -> None:
        super().__init__(threads, cores)
        self._Interpreter = litert_interpreter_class()

    def tflite_bytes(self, model_bytes: bytes) -> bytes:
        import onnx

        from ..onnx2tflite import onnx_to_tflite

        return onnx_to_tflite(onnx.load_from_string(model_bytes), nhwc_inputs=True)

    def session(self, model_bytes: bytes) -> _LiteRTSession:
        """A runnable session of an ONNX model (converted) or of .tflite bytes."""
        data = model_bytes if model_bytes[4:8] == b"TFL3" else self.tflite_bytes(model_bytes)
        return _LiteRTSession(self._Interpreter(model_content=data, num_threads=self.threads))

    def measure(self, cfg: dict[str, Any]) -> dict[str, float]:
        return time_single_op(self, single_op_bytes(cfg), "LiteRT")
