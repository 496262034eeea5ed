"""Measurement backends: the interface and the registry of backends by name.

A backend runs one kernel config for real and turns it into a timing dict
(median/mean/std/min ms, count; :mod:`oplat.collect.timing`). The interface
(``Backend.measure``) is what the Android harness implements for phones; the host's
backends are :mod:`oplat.collect.ort_cpu`, :mod:`oplat.collect.litert_cpu` and
coexec's OpenCL backend, found by name (:func:`make_backend`) as nn-Meter resolves its
backends.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any, Sequence

from ..errors import OplatError
from ..onnx_utils import random_feeds
from .ops import onnx_single_op
from .timing import LEVELS, time_runs


class BackendError(OplatError):
    """A backend is unknown, unavailable, or rejected a config."""


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
        return {**t, **{k: max(t[k] - floor, 0.05 * t[k]) for k in LEVELS}, "call_floor_ms": floor}

    def measure_call_floor_ms(self) -> float:
        """One fresh sample of the call floor (ms): the median run of a do-nothing model."""
        sess = self.session(floor_model())
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


def single_op_bytes(cfg: dict[str, Any]) -> bytes:
    """The serialised single-op model of ``cfg`` (a config without builder: BackendError)."""
    try:
        return onnx_single_op(cfg).SerializeToString()
    except ValueError as e:
        raise BackendError(str(e)) from None


def time_single_op(backend: Backend, model_bytes: bytes, framework: str) -> dict[str, float]:
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


def floor_model() -> bytes:
    """A one-node model doing next to nothing (ReLU over 8 floats): its run time is the
    framework's fixed cost per call."""
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "floor",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


# Backends by name: built-ins as "module:Class" (imported on first use, so naming one
# does not import every framework), plus any registered at run time or through the
# ``oplat.collect_backends`` entry point group (coexec registers ``opencl`` there).
ENTRY_POINT_GROUP = "oplat.collect_backends"
BACKENDS: dict[str, str | type[Backend]] = {"ort-cpu": "oplat.collect.ort_cpu:OrtCpuBackend",
                                            "litert-cpu": "oplat.collect.litert_cpu:LiteRTCpuBackend"}


def register_backend(name: str, cls: str | type[Backend]) -> None:
    """Make ``cls`` (a :class:`Backend` subclass, or ``"module:Class"``) the backend called ``name``."""
    BACKENDS[name] = cls


def _entry_points() -> None:
    """Register the backends other installed packages declare (each once)."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        BACKENDS.setdefault(ep.name, ep.value)


def backend_names() -> list[str]:
    """Every backend name known here, installed plug-ins included."""
    _entry_points()
    return sorted(BACKENDS)


def backend_class(name: str) -> type[Backend]:
    """The backend class called ``name``; a BackendError naming the known ones otherwise."""
    if name not in BACKENDS:
        _entry_points()
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r} (known: {', '.join(backend_names())})")
    cls = BACKENDS[name]
    if isinstance(cls, str):
        import importlib

        mod, _, attr = cls.partition(":")
        try:
            cls = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            raise BackendError(f"backend {name!r} is not importable ({e})") from None
        BACKENDS[name] = cls
    return cls


def make_backend(name: str, threads: int = 1, cores: Sequence[int] | None = None) -> Backend:
    """A backend by name; a clear error for unknown ones."""
    return backend_class(name)(threads, cores)


__all__ = ["Backend", "BackendError", "BACKENDS", "register_backend", "backend_names", "backend_class",
           "make_backend", "single_op_bytes", "time_single_op", "floor_model"]
