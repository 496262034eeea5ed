"""The onnxruntime CPU collection backend (``ort-cpu``)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..extras import need
from .backends import Backend, single_op_bytes, time_single_op
from .timing import LEVELS


class _OrtSession:
    """An onnxruntime session whose ``prepare`` binds the inputs once (IO binding), so
    timing sees the run alone, as inside a whole model.

    ``sess.run(None, feeds)`` wraps every input and converts every output to numpy on
    each call: 9 us on an empty model here against 3.7 us bound, and 5-35 us more for a
    single op with a large output. Summed over the 30 kernels of a small CNN that cost
    was half its measured time (mobilenet_v1_0.25 predicted 1.49 ms, measured 1.00).
    """

    def __init__(self, sess) -> None:
        self.sess = sess

    def get_inputs(self) -> list:
        return self.sess.get_inputs()

    def run(self, outputs, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.sess.run(outputs, feeds)

    def prepare(self, feeds: dict[str, np.ndarray]):
        """Bind ``feeds`` once; the returned call runs the model (outputs allocated by
        onnxruntime each run, as intermediate tensors are)."""
        from onnxruntime import OrtValue

        bind = self.sess.io_binding()
        for name, value in feeds.items():
            bind.bind_ortvalue_input(name, OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value)))
        for o in self.sess.get_outputs():
            bind.bind_output(o.name)
        self._bound = bind  # the OrtValues must outlive the calls
        return lambda: self.sess.run_with_iobinding(bind)


# kernels around which onnxruntime's NCHWc transformer may insert layout reorders
_NCHWC_KERNELS = frozenset(("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_GROUP", "MAX_POOL_2D", "AVERAGE_POOL_2D",
                            "MEAN", "CONCATENATION"))


class OrtCpuBackend(Backend):
    """onnxruntime CPU execution provider, full graph optimisation (ORT fuses as it would).

    Kernels are those of the ``ort-cpu`` lowering (:mod:`oplat.lowering.ort_cpu`):
    onnxruntime fuses a ReLU or Clip into the convolution before it (``FusedConv``);
    residual adds, HardSwish, GELU and gates run as nodes of their own, and MLAS, like
    XNNPACK, has its own paths for 1x1 convolutions (a plain GEMM), the 3-channel stem,
    and stride-2 depthwise convolutions.

    A single conv runs on channel-blocked tensors between a ``ReorderInput`` and a
    ``ReorderOutput`` that a whole CNN pays once, not per layer (52 of 140 us for a
    56x56x32 1x1 conv here). Their time, read from onnxruntime's profiler, is taken out
    of the conv's and recorded as ``REORDER`` rows of their own, which the lowering
    places where the transformer puts them in a whole model.
    """

    name = "ort-cpu"
    lowering = ("ort-cpu", "cpu")
    fusable_links = frozenset(("relu", "relu6", "hard_swish", "sigmoid", "hard_sigmoid"))
    # about 4 us per bound call here (bench/ort_link_costs.py), which a whole model pays
    # once: over the 139 kernels of shufflenet_v2_0.5 that is a third of its 1.4 ms
    subtract_call_floor = True

    @property
    def settings(self) -> dict[str, Any]:
        return {**super().settings, "call_floor": "subtracted", "lowering": list(self.lowering)}

    def __init__(self, threads: int = 1, cores: Sequence[int] | None = None) -> None:
        super().__init__(threads, cores)
        ort = need("onnxruntime", "the ort-cpu backend")

        from ..lowering.ort_cpu import host_nchwc_block

        self._ort = ort
        # the layout reorders depend on this machine's block size: record it with the rows
        self.lowering = ("ort-cpu", f"nchwc{host_nchwc_block()}")

    def _options(self):
        so = self._ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = self._ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        return so

    def session(self, model_bytes: bytes):
        return _OrtSession(self._ort.InferenceSession(model_bytes, self._options(), providers=["CPUExecutionProvider"]))

    def measure(self, cfg: dict[str, Any]) -> dict[str, Any]:
        model_bytes = single_op_bytes(cfg)
        t = time_single_op(self, model_bytes, "onnxruntime")
        if cfg["kernel"] not in _NCHWC_KERNELS:
            return t
        reorders, nodes_ms = self.reorders(model_bytes)
        spent = sum(r["mean_ms"] for r in reorders)
        if not spent or nodes_ms <= 0:
            return t
        # profiling slows every node (its nodes summed to 0.73 ms for a 0.53 ms depthwise
        # conv): the reorders' share of the profiled nodes is taken out of the unprofiled
        # time, and they are recorded at that same scale
        share, scale = min(spent / nodes_ms, 0.8), t["median_ms"] / nodes_ms
        t = {**t, **{k: t[k] * (1 - share) for k in LEVELS}, "reorder_share": share}
        # the profiler counts whole microseconds: the mean over runs resolves a small
        # reorder where the median cannot, so it is the figure recorded
        t["derived"] = [({"kernel": "REORDER", "Input_dims": r["dims"], "Direction": r["direction"]},
                         {"median_ms": r["mean_ms"] * scale, "mean_ms": r["mean_ms"] * scale,
                          "std_ms": r["std_ms"] * scale, "min_ms": r["min_ms"] * scale, "count": r["count"]})
                        for r in reorders]
        return t

    def profile_nodes(self, model) -> tuple[dict[str, float], dict[str, dict[str, Any]], float]:
        """Each node's median ms inside ``model`` under onnxruntime's profiler
        (:func:`oplat.collect.in_model.profile_nodes`)."""
        from .in_model import profile_nodes

        return profile_nodes(self, model)

    def reorders(self, model_bytes: bytes, runs: int = 20, warmup: int = 2) -> tuple[list[dict[str, Any]], float]:
        """The NCHWc reorders onnxruntime runs in a model, from its profiler: direction,
        the plain tensor's dims and per-run times (ms; the profiler counts whole us, so
        the mean over runs is the figure that resolves small reorders); and the mean time
        of all its nodes per run under the profiler."""
        from .in_model import node_dims, profiled_runs

        by_node, node_args, _ = profiled_runs(self, model_bytes, runs, warmup)
        meta: dict[str, tuple[str, list[int]]] = {}
        for name, args in node_args.items():
            op = args.get("op_name")
            if op in ("ReorderInput", "ReorderOutput"):
                meta[name] = ("in" if op == "ReorderInput" else "out",
                              node_dims(args, "input_type_shape" if op == "ReorderInput" else "output_type_shape"))
        out = []
        all_nodes = sum(float(np.mean(ds[warmup:] or ds)) for ds in by_node.values())
        for name, ds in by_node.items():
            if name not in meta:
                continue
            ds = ds[warmup:] or ds
            direction, dims = meta[name]
            out.append({"direction": direction, "dims": dims, "median_ms": float(np.median(ds)),
                        "mean_ms": float(np.mean(ds)), "std_ms": float(np.std(ds)), "min_ms": float(min(ds)),
                        "count": len(ds)})
        return out, all_nodes
