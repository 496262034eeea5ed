"""Measurement backends: run one kernel config for real and time it.

A backend turns a config into a timing dict (median/mean/std/min ms, count). The
interface (``Backend.measure``) is what the Android harness implements for phones.
Measurement discipline: warm-up runs, then rounds of runs until the median is stable
(standard error of the median under ``rel_tol``) or a cap on runs/time is hit.
"""

from __future__ import annotations

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


def machine_facts() -> dict[str, Any]:
    """CPU model, core count, frequencies where readable, library versions."""
    facts: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                             "cores": os.cpu_count()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                facts["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        facts["cpu"] = "unreadable"
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


def time_runs(run: Callable[[], Any], warmup: int = 2, min_runs: int = 10, max_runs: int = 200,
              max_seconds: float = 0.15, rel_tol: float = 0.02) -> dict[str, float]:
    """Time ``run`` until its median is stable; returns median/mean/std/min (ms) and count.

    After ``warmup`` runs, rounds of runs continue until the standard error of the
    median is below ``rel_tol`` of it, or ``max_runs`` / ``max_seconds`` is reached;
    slow kernels get fewer runs per round (never fewer than 5 in all).
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
            run()
            times.append((time.perf_counter() - t) * 1e3)
        med = statistics.median(times)
        # standard error of the median ~ 1.2533 * std / sqrt(n)
        sem = 1.2533 * statistics.pstdev(times) / np.sqrt(len(times))
        if sem <= rel_tol * med or len(times) >= max_runs or time.perf_counter() - start > max_seconds:
            break
    return {"median_ms": med, "mean_ms": statistics.fmean(times), "std_ms": statistics.pstdev(times),
            "min_ms": min(times), "count": len(times)}


class Backend:
    """Interface: ``name``, ``settings`` and ``measure(config) -> timing dict``."""

    name = "abstract"

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


class OrtCpuBackend(Backend):
    """onnxruntime CPU execution provider, full graph optimisation (ORT fuses as it would)."""

    name = "ort-cpu"

    def __init__(self, threads: int = 1, cores: Sequence[int] | None = None) -> None:
        super().__init__(threads, cores)
        import onnxruntime as ort

        self._ort = ort

    def session(self, model_bytes: bytes):
        so = self._ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = self._ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        return self._ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])

    def measure(self, cfg: dict[str, Any]) -> dict[str, float]:
        try:
            sess = self.session(onnx_single_op(cfg).SerializeToString())
        except ValueError as e:
            raise BackendError(str(e)) from None
        except Exception as e:
            raise BackendError(f"onnxruntime rejected the config: {str(e).splitlines()[0]}") from None
        rng = np.random.default_rng(0)
        feeds = {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
                 for i in sess.get_inputs()}
        return time_runs(lambda: sess.run(None, feeds))


BACKENDS = {"ort-cpu": OrtCpuBackend}


def make_backend(name: str, threads: int = 1, cores: Sequence[int] | None = None) -> Backend:
    """A backend by name; a clear error for unknown ones."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r} (known: {', '.join(sorted(BACKENDS))})")
    return BACKENDS[name](threads, cores)
