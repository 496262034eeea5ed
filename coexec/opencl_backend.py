"""The OpenCL collection backend (``oplat collect --backend opencl``): single kernels
timed on the co-execution runtime's own OpenCL kernels. It lives here, beside the
runtime it measures, and registers itself with :mod:`oplat.collect.backends` (entry
point group ``oplat.collect_backends``), so oplat imports nothing from coexec."""

from __future__ import annotations

import os
import time
from typing import Any, Sequence

import numpy as np

from oplat.collect.backends import Backend, BackendError, floor_model
from oplat.collect.ops import onnx_single_op
from oplat.collect.timing import time_runs
from oplat.errors import OplatError
from oplat.machine import pinned


class OpenCLBackend(Backend):
    """The OpenCL device through pyopencl, running the co-execution runtime's own kernels
    (:mod:`coexec.opencl`: direct conv, vectorised stride-1 conv, blocked one-row linear;
    depthwise conv, pools, global average, element-wise, activations, softmax, layer norm,
    token-row and batched matmuls and transposes through the graph runtime) on
    fine-grained SVM buffers, completion signalled by the SVM flag the runtime polls.

    Kernels the runtime has no OpenCL kernel for are rejected (recorded as failed).
    ``cores`` pins the device's worker threads (PoCL's CPU device) at creation.
    """

    name = "opencl"
    lowering = ("tflite-cpu", "cpu")
    fusable_links: frozenset[str] = frozenset()
    # a launch's fixed cost (enqueue, flush, the device's wake-up, noticing the flag) is
    # paid per handover in a co-executed model, and the planner charges it there (sync and
    # driver time per launch); kernels queued back to back do not pay it each
    subtract_call_floor = True
    # measured through the graph runtime (:meth:`_measure_graph`)
    GRAPH_KERNELS = ("DEPTHWISE_CONV_2D", "MEAN", "MAX_POOL_2D", "AVERAGE_POOL_2D", "ADD", "MUL", "RELU",
                     "HARD_SWISH", "SIGMOID", "HARD_SIGMOID", "SOFTMAX", "LAYER_NORM", "BATCH_MATMUL", "TRANSPOSE",
                     "GELU", "SWISH")

    def __init__(self, threads: int = 1, cores: Sequence[int] | None = None) -> None:
        self.threads = threads
        self.cores = list(cores) if cores else None
        from .errors import RuntimeUnavailable
        from .opencl import OclExecutor

        if cores is None:
            os.environ.setdefault("POCL_MAX_PTHREAD_COUNT", str(threads))
        try:
            self.ocl = OclExecutor(cores)
        except RuntimeUnavailable as e:
            raise BackendError(str(e).splitlines()[0]) from None
        # the host thread (enqueue, polling) stays off the device's cores, as in the
        # graph runtime: sharing a core with PoCL's worker made timings up to 2x slower
        # and run-to-run differences of ~30%
        self.host_cores = sorted(set(os.sched_getaffinity(0)) - set(cores)) if cores else []

    @property
    def settings(self) -> dict[str, Any]:
        return {**super().settings, "opencl_device": self.ocl.device.name, "call_floor": "subtracted"}

    def measure_call_floor_ms(self) -> float:
        """One sample of the launch floor (ms): a ReLU over 8 floats launched and waited for
        as every measured kernel is (graph runtime, completion flag polled)."""
        import onnx

        from .graph_runner import GraphRunner

        runner = GraphRunner(onnx.load_from_string(floor_model()), self.ocl, sync="svm", force="gpu")
        feeds = runner.random_feeds()
        with pinned(self.host_cores):
            return time_runs(lambda: runner.run(feeds)["seconds"], warmup=20, min_runs=200, max_runs=1000,
                             max_seconds=0.1)["median_ms"]

    def measure(self, cfg: dict[str, Any]) -> dict[str, float]:
        from .cpu import reference
        from .errors import RuntimeUnavailable, SyncTimeout
        from .layers import LayerSpec, wants_padded_input
        from .sync import poll

        rng = np.random.default_rng(0)
        k = cfg["kernel"]
        c, f = int(cfg.get("Input_channel", 1)), int(cfg.get("Filter", 1) or 1)
        if k == "CONV_2D" and int(cfg.get("Group", 1) or 1) == 1:
            ks, h = int(cfg.get("Kernel", 1)), int(cfg["Input_shape"])
            layer = LayerSpec("conv", rng.standard_normal((f, c, ks, ks)).astype(np.float32) / np.sqrt(c * ks * ks),
                              np.zeros(f, np.float32), int(cfg.get("Stride", 1)), ks // 2)
            x_shape: tuple[int, ...] = (c, h, h)
        elif k == "FULLY_CONNECTED" and int(cfg.get("Rows", 1)) == 1 and c % 16 == 0:
            layer = LayerSpec("linear", rng.standard_normal((f, c)).astype(np.float32) / np.sqrt(c),
                              np.zeros(f, np.float32))
            x_shape = (c,)
        elif k in self.GRAPH_KERNELS or k == "FULLY_CONNECTED":  # token rows: the row matmul
            return self._measure_graph(cfg)
        else:
            raise BackendError(f"no OpenCL kernel in the co-execution runtime for {k}")
        o = self.ocl
        x, w, b = o.svm(x_shape), o.svm(layer.w.shape), o.svm(layer.b.shape)
        x[...] = rng.standard_normal(x_shape)
        w[...], b[...] = layer.w, layer.b
        y = o.svm(layer.out_shape(x_shape))
        # what the graph runtime launches: the device-side padded copy before a stride-1 conv,
        # the layer's kernel, the completion flag; arguments set once
        xpad = o.padded_buffer(x_shape, layer.pad) if wants_padded_input(layer) else None
        flag = o.svm((1,), np.int32)
        flag[0] = 0
        try:
            launch = o.prepare(layer, x, w, b, y, 0, layer.out_channels, x_shape, xpad, flag=flag, value=1)
        except RuntimeUnavailable as e:
            raise BackendError(str(e).splitlines()[0]) from None

        xs, ws = np.array(x), np.array(w)

        def run() -> float:
            # inputs and weights rewritten from the host core first: in a co-executed model
            # the device reads what the CPU side wrote, not lines still in its own cache
            np.copyto(x, xs)
            np.copyto(w, ws)
            flag[0] = 0  # the run before this one has finished (polled)
            t = time.perf_counter()
            launch.enqueue()
            o.flush()
            poll(flag, 1)
            return time.perf_counter() - t

        try:
            with pinned(self.host_cores):
                run()
                _require_match(y, reference(layer, xs))  # the result, checked before it is timed
                t = time_runs(run)
            return self.net_of_call_floor(t)
        except (RuntimeUnavailable, SyncTimeout) as e:  # recorded as a failed config; collection goes on
            raise BackendError(str(e).splitlines()[0]) from None
        finally:
            # the device is done with every command before its kernels and SVM buffers go
            o.queue.finish()
            del launch


    def _measure_graph(self, cfg: dict[str, Any]) -> dict[str, float]:
        """Kernels other than dense conv and one-row linear: the single-op model run by the
        graph runtime with every node on the device, as a co-executed model launches it
        (inputs written from the host core each run, completion flag polled)."""
        from .graph_runner import GraphRunner
        from .errors import RuntimeUnavailable, SyncTimeout

        m = onnx_single_op(cfg)
        # the builders end in an Identity to name the output ``y``: name the op's own output
        # so instead (an Identity would run on the CPU after the kernel)
        last = m.graph.node[-1]
        if last.op_type == "Identity":
            for node in m.graph.node:
                node.output[:] = ["y" if o == last.input[0] else o for o in node.output]
                node.input[:] = ["y" if i == last.input[0] else i for i in node.input]
            m.graph.node.remove(m.graph.node[-1])
        # outputs declared with symbolic dims: left for shape inference to fill
        for o in m.graph.output:
            o.type.tensor_type.ClearField("shape")
        try:
            runner = GraphRunner(m, self.ocl, sync="svm", force="gpu")
        except (RuntimeUnavailable, OplatError) as e:
            raise BackendError(str(e).splitlines()[0]) from None
        if runner.gpu_fallback:
            ops = sorted({st["op"] for st in runner.steps if st["name"] in runner.gpu_fallback})
            raise BackendError(f"no OpenCL kernel in the co-execution runtime for {cfg['kernel']} ({', '.join(ops)})")
        feeds = runner.random_feeds()
        try:
            self._check_outputs(m, runner, feeds)
            with pinned(self.host_cores):
                t = time_runs(lambda: runner.run(feeds)["seconds"])
            return self.net_of_call_floor(t)
        except (RuntimeUnavailable, SyncTimeout) as e:
            raise BackendError(str(e).splitlines()[0]) from None
        finally:
            self.ocl.queue.finish()

    @staticmethod
    def _check_outputs(model, runner, feeds: dict[str, np.ndarray]) -> None:
        """The device's outputs of a config against onnxruntime's before it is timed: a
        kernel computing the wrong thing would otherwise be timed as the config."""
        import onnxruntime as ort

        got = runner.run(feeds)["outputs"]
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        for name, ref in zip(runner.outputs, sess.run(None, feeds)):
            _require_match(got[name], ref, f" of {name!r}")


def _require_match(got: np.ndarray, ref: np.ndarray, what: str = "") -> None:
    """A BackendError unless the OpenCL result ``got`` matches onnxruntime's ``ref``
    (relative 1e-3; NaN fails)."""
    from .layers import max_rel_err

    err = max_rel_err(got, ref)
    if not err <= 1e-3:
        raise BackendError(f"the OpenCL result{what} differs from onnxruntime's (max relative difference {err:.2g})")
