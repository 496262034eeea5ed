"""The CPU executor: onnxruntime single-layer sessions (the layer's channel range),
writing into the shared buffers; and the reference output of a whole layer."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from oplat.extras import need

from .layers import CHANNELWISE, LayerSpec, inner_size, layer_model


class CpuExecutor:
    """CPU side: onnxruntime single-layer sessions (1 thread, pinned), writing into SVM."""

    def __init__(self, cores: Sequence[int] | None = None, threads: int = 1) -> None:
        ort = need("onnxruntime", "the CPU executor", "coexec")

        self.ort = ort
        self.cores = list(cores) if cores else None
        self.threads = threads
        self._sessions: dict[Any, Any] = {}

    def pin(self) -> None:
        if self.cores:
            os.sched_setaffinity(0, set(self.cores))

    def _session(self, layer: LayerSpec, c0: int, c1: int, x_shape: Sequence[int]):
        key = (id(layer), c0, c1, tuple(x_shape))
        s = self._sessions.get(key)
        if s is None:
            model, xs, ys = layer_model(layer, c0, c1, x_shape)
            so = self.ort.SessionOptions()
            so.intra_op_num_threads = self.threads
            so.inter_op_num_threads = 1
            so.log_severity_level = 3
            s = (self.ort.InferenceSession(model, so, providers=["CPUExecutionProvider"]), xs, ys)
            self._sessions[key] = s
        return s

    def run(self, layer: LayerSpec, x: np.ndarray, y: np.ndarray, c0: int, c1: int, x_shape: Sequence[int]) -> None:
        """Compute output channels [c0, c1) into ``y`` (a view of the shared buffer, no copy)."""
        if c1 <= c0:
            return
        sess, xs, ys = self._session(layer, c0, c1, x_shape)
        io = sess.io_binding()
        if layer.kind in CHANNELWISE and layer.kind != "transpose":  # the part reads its own channels (rows) only
            inner = inner_size(layer, x_shape)
            x = x.reshape(-1)[c0 * inner: c1 * inner]
        io.bind_cpu_input("x", x.reshape(xs))
        per = int(np.prod(ys[2:] or [1]))
        out = y.reshape(-1) if layer.kind == "transpose" else y.reshape(-1)[c0 * per: c1 * per]
        io.bind_output("y", "cpu", 0, np.float32, ys, out.ctypes.data)
        sess.run_with_iobinding(io)


def reference(layer: LayerSpec, x: np.ndarray) -> np.ndarray:
    """onnxruntime's output of the whole layer (the correctness check)."""
    cpu = CpuExecutor()
    y = np.empty(layer.out_shape(x.shape), np.float32)
    cpu.run(layer, x, y, 0, layer.out_channels, x.shape)
    return y
