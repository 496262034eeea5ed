"""Measurement backends: run one kernel config for real and time it.

A backend turns a config into a timing dict (median/mean/std/min ms, count). The
interface (``Backend.measure``) is what the Android harness implements for phones.
Measurement discipline: warm-up runs, then rounds of runs until the median is stable
(standard error of the median under ``rel_tol``) or a cap on runs/time is hit.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import OplatError
from .ops import onnx_single_op


class BackendError(OplatError):
    """A backend is unknown, unavailable, or rejected a config."""


def cpu_identity() -> dict[str, Any]:
    """This machine's CPU model (``cpu``), family/model/stepping (``cpu_id``) and bogomips,
    from the first processor of /proc/cpuinfo (``cpu: "unreadable"`` where there is none)."""
    facts: dict[str, Any] = {}
    try:
        info: dict[str, str] = {}
        for line in open("/proc/cpuinfo"):
            if ":" in line:
                k, v = (s.strip() for s in line.split(":", 1))
                info.setdefault(k, v)
            elif info:  # the first processor's block is enough
                break
        facts["cpu"] = info.get("model name", "unreadable")
        # "AMD EPYC" alone does not tell machine generations apart
        facts["cpu_id"] = "/".join(info.get(k, "?") for k in ("cpu family", "model", "stepping"))
        if "bogomips" in info:
            facts["bogomips"] = float(info["bogomips"])
    except OSError:
        facts["cpu"] = "unreadable"
    return facts


def other_cpu(recorded: dict[str, Any], here: dict[str, Any] | None = None) -> str | None:
    """``"<cpu> <id>, not this machine's <cpu> <id>"`` when ``recorded`` machine facts name
    another CPU than ``here`` (this machine's :func:`cpu_identity`); None when they agree or
    either is unknown."""
    here = cpu_identity() if here is None else here
    a, b = recorded.get("cpu"), here.get("cpu")
    if not a or not b or "unreadable" in (a, b):
        return None
    ids = recorded.get("cpu_id"), here.get("cpu_id")
    if a == b and (None in ids or ids[0] == ids[1]):
        return None
    return f"{a} {ids[0] or ''}".strip() + f", not this machine's {b} {ids[1] or ''}".rstrip()


def machine_facts() -> dict[str, Any]:
    """CPU model, core count, frequencies where readable, library versions."""
    facts: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                             "cores": os.cpu_count(), **cpu_identity()}
    facts["probe_ms"] = speed_probe_ms()
    freq = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"
    facts["max_freq_khz"] = int(open(freq).read()) if os.path.exists(freq) else "unreadable"
    try:
        facts["affinity"] = sorted(os.sched_getaffinity(0))
    except AttributeError:
        pass
    for mod in ("onnxruntime", "numpy", "xgboost"):
        try:
            facts[mod] = __import__(mod).__version__
        except Exception:
            facts[mod] = "missing"
    return facts


def speed_probe_ms() -> float:
    """Median milliseconds of a fixed single-threaded numpy workload (element-wise work
    on 4 MB arrays): recorded with every dataset so that rows measured on a slower or
    busier machine can be recognised."""
    a = np.linspace(0.0, 1.0, 1 << 20, dtype=np.float32)
    b = np.empty_like(a)
    times = []
    for _ in range(15):
        t0 = time.perf_counter()
        np.multiply(a, 1.0001, out=b)
        np.add(b, a, out=b)
        np.sqrt(b, out=b)
        times.append((time.perf_counter() - t0) * 1e3)
    return round(float(np.median(times)), 4)


def machine_mismatch(old: dict[str, Any], new: dict[str, Any], tolerance: float = 0.3) -> str | None:
    """Why two machines' facts disagree (another CPU, or a speed probe more than
    ``tolerance`` apart), or None when they agree or cannot be compared."""
    if old.get("cpu_id") and new.get("cpu_id") and old["cpu_id"] != new["cpu_id"]:
        return f"CPU {old.get('cpu')} {old['cpu_id']} then, {new.get('cpu')} {new['cpu_id']} now"
    p0, p1 = old.get("probe_ms"), new.get("probe_ms")
    if isinstance(p0, (int, float)) and isinstance(p1, (int, float)) and p0 > 0:
        if abs(p1 / p0 - 1.0) > tolerance:
            return f"speed probe {p0:.3f} ms then, {p1:.3f} ms now (x{p1 / p0:.2f})"
    return None


def time_runs(run: Callable[[], Any], warmup: int = 2, min_runs: int = 10, max_runs: int = 200,
              max_seconds: float = 0.15, rel_tol: float = 0.02) -> dict[str, float]:
    """Time ``run`` until its median is stable; returns median/mean/std/min (ms) and count.

    After ``warmup`` runs, rounds of runs continue until the standard error of the
    median is below ``rel_tol`` of it, or ``max_runs`` / ``max_seconds`` is reached;
    slow kernels get fewer runs per round (never fewer than 5 in all). ``run`` may return
    the seconds of the part that counts (a float), when it prepares outside them.
    """
    t0 = time.perf_counter()
    for _ in range(warmup):
        run()
    single = (time.perf_counter() - t0) / max(warmup, 1)
    per_round = max(5, min(min_runs, int(0.05 / max(single, 1e-6))))
    times: list[float] = []
    start = time.perf_counter()
    while True:
        for _ in range(per_round if not times else max(per_round, len(times) // 2)):
            t = time.perf_counter()
            r = run()
            times.append((r if isinstance(r, float) else time.perf_counter() - t) * 1e3)
        med = statistics.median(times)
        # standard error of the median ~ 1.2533 * std / sqrt(n)
        sem = 1.2533 * statistics.pstdev(times) / np.sqrt(len(times))
        if sem <= rel_tol * med or len(times) >= max_runs or time.perf_counter() - start > max_seconds:
            break
    return {"median_ms": med, "mean_ms": statistics.fmean(times), "std_ms": statistics.pstdev(times),
            "min_ms": min(times), "count": len(times)}


class Backend:
    """Interface: ``name``, ``settings`` and ``measure(config) -> timing dict``.

    ``lowering`` is how the framework runs a model (which kernels it fuses): it names
    the rows and selects the configs worth measuring; ``adapt`` drops from a config the
    links the framework would not fuse (they are kernels of their own there).
    """

    name = "abstract"
    lowering: tuple[str, str] = ("tflite-gpu", "adreno")
    fusable_links: frozenset[str] | None = None  # None: every link fuses

    def __init__(self, threads: int = 1, cores: Sequence[int] | None = None) -> None:
        self.threads = threads
        self.cores = list(cores) if cores else None
        if self.cores:
            os.sched_setaffinity(0, self.cores)

    @property
    def settings(self) -> dict[str, Any]:
        return {"backend": self.name, "threads": self.threads, "cores": self.cores}

    def measure(self, cfg: dict[str, Any]) -> dict[str, float]:  # pragma: no cover - interface
        raise NotImplementedError

    # single-op timings net of the framework's fixed cost per call (see call_floor_ms)
    subtract_call_floor = False
    _floor: tuple[float, list[float]] | None = None  # (last measured at, recent samples in ms)
    floor_refresh_s = 10.0

    def call_floor_ms(self) -> float:
        """The time of one call of a do-nothing model on this backend (ms): sampled every
        ``floor_refresh_s`` seconds, as the machine's speed drifts, and the median of the
        last three samples, so one sample taken in a passing slow spell (twice the usual
        floor here) is not taken off every kernel timed in the next seconds."""
        now = time.monotonic()
        if self._floor is None or now - self._floor[0] > self.floor_refresh_s:
            recent = (self._floor[1] if self._floor else [])[-2:] + [self.measure_call_floor_ms()]
            self._floor = (now, recent)
        return statistics.median(self._floor[1])

    def net_of_call_floor(self, t: dict[str, float]) -> dict[str, float]:
        """The timing ``t`` less the call floor when this backend subtracts it: a whole model
        pays the call once, not once per kernel; what is left is kept >= 5% of the figure
        (a kernel faster than the floor's noise is still a positive time)."""
        floor = self.call_floor_ms() if self.subtract_call_floor else 0.0
        if not floor:
            return t
        return {**t, **{k: max(t[k] - floor, 0.05 * t[k]) for k in _LEVELS}, "call_floor_ms": floor}

    def measure_call_floor_ms(self) -> float:
        """One fresh sample of the call floor (ms): the median run of a do-nothing model."""
        sess = self.session(_floor_model())
        run = sess.prepare(random_feeds(sess.get_inputs()))
        return time_runs(run, warmup=20, min_runs=200, max_runs=1000, max_seconds=0.1)["median_ms"]

    def adapt(self, cfg: dict[str, Any]) -> dict[str, Any]:
        """``cfg`` as this framework would run it as one kernel (unfusable links dropped)."""
        if self.fusable_links is None or not cfg.get("linked"):
            return cfg
        out = []  # TFLite fuses only a leading run of clamps; the rest are kernels of their own
        for t in cfg["linked"]:
            if t not in self.fusable_links:
                break
            out.append(t)
        return cfg if out == list(cfg["linked"]) else {**cfg, "linked": out}


def random_feeds(inputs, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal float32 values for a session's ``get_inputs()`` (dynamic dims as 1)."""
    rng = np.random.default_rng(seed)
    return {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
            for i in inputs}


def _single_op_bytes(cfg: dict[str, Any]) -> bytes:
    """The serialised single-op model of ``cfg`` (a config without builder: BackendError)."""
    try:
        return onnx_single_op(cfg).SerializeToString()
    except ValueError as e:
        raise BackendError(str(e)) from None


# the figures of a timing that scale with the kernel's time (std and count do not shift)
_LEVELS = ("median_ms", "mean_ms", "min_ms")


def _time_single_op(backend: Backend, model_bytes: bytes, framework: str) -> dict[str, float]:
    """Time a single-op model in a session of ``backend`` (random inputs; a session that
    can set its inputs once times the run alone)."""
    try:
        sess = backend.session(model_bytes)
    except ValueError as e:
        raise BackendError(str(e)) from None
    except Exception as e:
        raise BackendError(f"{framework} rejected the config: {str(e).splitlines()[0]}") from None
    feeds = random_feeds(sess.get_inputs())
    t = time_runs(sess.prepare(feeds) if hasattr(sess, "prepare") else (lambda: sess.run(None, feeds)))
    return backend.net_of_call_floor(t)


def _floor_model() -> bytes:
    """A one-node model doing next to nothing (ReLU over 8 floats): its run time is the
    framework's fixed cost per call."""
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "floor",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


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
    fusable_links = frozenset(("relu", "relu6", "hard_swish", "sigmoid"))
    # about 4 us per bound call here (bench/ort_link_costs.py), which a whole model pays
    # once: over the 139 kernels of shufflenet_v2_0.5 that is a third of its 1.4 ms
    subtract_call_floor = True

    @property
    def settings(self) -> dict[str, Any]:
        return {**super().settings, "call_floor": "subtracted", "lowering": list(self.lowering)}

    def __init__(self, threads: int = 1, cores: Sequence[int] | None = None) -> None:
        super().__init__(threads, cores)
        import onnxruntime as ort

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
        model_bytes = _single_op_bytes(cfg)
        t = _time_single_op(self, model_bytes, "onnxruntime")
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
        t = {**t, **{k: t[k] * (1 - share) for k in _LEVELS}, "reorder_share": share}
        # the profiler counts whole microseconds: the mean over runs resolves a small
        # reorder where the median cannot, so it is the figure recorded
        t["derived"] = [({"kernel": "REORDER", "Input_dims": r["dims"], "Direction": r["direction"]},
                         {"median_ms": r["mean_ms"] * scale, "mean_ms": r["mean_ms"] * scale,
                          "std_ms": r["std_ms"] * scale, "min_ms": r["min_ms"] * scale, "count": r["count"]})
                        for r in reorders]
        return t

    def reorders(self, model_bytes: bytes, runs: int = 20, warmup: int = 2) -> tuple[list[dict[str, Any]], float]:
        """The NCHWc reorders onnxruntime runs in a model, from its profiler: direction,
        the plain tensor's dims and per-run times (ms; the profiler counts whole us, so
        the mean over runs is the figure that resolves small reorders); and the mean time
        of all its nodes per run under the profiler."""
        import tempfile

        so = self._options()
        so.enable_profiling = True
        with tempfile.TemporaryDirectory() as tmp:
            so.profile_file_prefix = os.path.join(tmp, "p")
            sess = self._ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
            feeds = random_feeds(sess.get_inputs())
            for _ in range(warmup + runs):
                sess.run(None, feeds)
            with open(sess.end_profiling()) as f:
                events = json.load(f)
        by_node: dict[str, list[float]] = {}
        meta: dict[str, tuple[str, list[int]]] = {}
        for e in events:
            args = e.get("args") or {}
            op = args.get("op_name")
            if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
                continue
            by_node.setdefault(e["name"], []).append(e["dur"] / 1e3)
            if op not in ("ReorderInput", "ReorderOutput"):
                continue
            shapes = args.get("input_type_shape" if op == "ReorderInput" else "output_type_shape") or [{}]
            meta[e["name"]] = ("in" if op == "ReorderInput" else "out",
                               [int(d) for d in next(iter(shapes[0].values()), [])])
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
            raise BackendError("LiteRT is not installed: pip install ai-edge-litert") from None
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
        return _time_single_op(self, _single_op_bytes(cfg), "LiteRT")


class OpenCLBackend(Backend):
    """The OpenCL device through pyopencl, running the co-execution runtime's own kernels
    (:mod:`coexec.runtime`: direct conv, vectorised stride-1 conv, blocked one-row linear;
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
        try:
            from coexec.runtime import OclExecutor, RuntimeUnavailable
        except ImportError as e:  # pragma: no cover - coexec ships with oplat
            raise BackendError(f"coexec runtime not importable ({e})") from None
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

        from coexec.graph_runtime import GraphRunner
        from coexec.runtime import pinned

        runner = GraphRunner(onnx.load_from_string(_floor_model()), self.ocl, sync="svm", force="gpu")
        feeds = runner.random_feeds()
        with pinned(self.host_cores):
            return time_runs(lambda: runner.run(feeds)["seconds"], warmup=20, min_runs=200, max_runs=1000,
                             max_seconds=0.1)["median_ms"]

    def measure(self, cfg: dict[str, Any]) -> dict[str, float]:
        from coexec.runtime import (LayerSpec, RuntimeUnavailable, SyncTimeout, pinned, poll, reference,
                                    wants_padded_input)

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
        from coexec.graph_runtime import GraphRunner
        from coexec.runtime import RuntimeUnavailable, SyncTimeout, pinned

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
    from coexec.runtime import max_rel_err

    err = max_rel_err(got, ref)
    if not err <= 1e-3:
        raise BackendError(f"the OpenCL result{what} differs from onnxruntime's (max relative difference {err:.2g})")


BACKENDS = {"ort-cpu": OrtCpuBackend, "litert-cpu": LiteRTCpuBackend, "opencl": OpenCLBackend}


def make_backend(name: str, threads: int = 1, cores: Sequence[int] | None = None) -> Backend:
    """A backend by name; a clear error for unknown ones."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r} (known: {', '.join(sorted(BACKENDS))})")
    return BACKENDS[name](threads, cores)
