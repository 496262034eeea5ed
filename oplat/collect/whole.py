"""Whole-model measurements: the end-to-end truth that host profiles are fitted and checked on."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Hashable, Iterable, Mapping

import onnx

from ..graph_only import is_graph_only, with_random_weights
from ..store import DatasetStore
from ..machine import machine_facts
from ..onnx_utils import random_feeds
from .backends import Backend, BackendError
from .timing import time_runs

E2E_COLUMNS = ["config_id", "model", "device", "latency_ms", "mean_ms", "std_ms", "min_ms", "count", "status", "error"]


def measure_model(backend: Backend, model: onnx.ModelProto, max_seconds: float = 1.0) -> dict[str, float]:
    """Time one whole model on ``backend`` (graph-only models get random weights)."""
    if not hasattr(backend, "session"):
        raise BackendError(f"backend {backend.name} cannot run whole models")
    if is_graph_only(model):
        model = with_random_weights(model)
    try:
        sess = backend.session(model.SerializeToString())
    except Exception as e:
        raise BackendError(f"cannot create a session: {str(e).splitlines()[0]}") from None
    feeds = random_feeds(sess.get_inputs())
    run = sess.prepare(feeds) if hasattr(sess, "prepare") else (lambda: sess.run(None, feeds))
    return time_runs(run, warmup=3, min_runs=10, max_seconds=max_seconds)


def measure_rounds(backend: Backend, models: Mapping[Hashable, onnx.ModelProto], rounds: int = 2,
                   max_seconds: float = 1.0) -> dict[Hashable, float]:
    """Each model's time in ms, measured in ``rounds`` passes over all of them, one after the
    other: the least of its round medians (a shared machine that slows down for a minute
    would otherwise leave the models measured then slower than the rest). In memory; for a
    resumable dataset, :func:`measure_models`."""
    medians: dict[Hashable, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for k, m in models.items():
            medians[k].append(measure_model(backend, m, max_seconds=max_seconds)["median_ms"])
    return {k: min(v) for k, v in medians.items()}


def measure_models(backend: Backend, models: Mapping[str, Callable[[], onnx.ModelProto]], path: str | Path,
                   device: str = "host", on_model: Callable[[str], None] | None = None,
                   rounds: int = 1) -> dict[str, float]:
    """Measure every model not yet in the dataset at ``path``; returns ``{model: ms}``.

    With ``rounds`` > 1 the whole list is measured that many times, one pass after the
    other (rows ``name``, ``name@2``, ...), and each model's figure is the least of its
    round medians: a shared machine that slows down for minutes would otherwise leave a
    few models measured a third slower than the rest.
    """
    store = DatasetStore(path, E2E_COLUMNS, {"device": device, **backend.settings, "machine": machine_facts()},
                         repair=True)
    done = {r["config_id"]: r for r in store.rows()}
    for k in range(1, rounds + 1):
        for name, make in models.items():
            cid = name if k == 1 else f"{name}@{k}"
            if cid not in done:
                row = {"config_id": cid, "model": name, "device": device, "status": "ok"}
                try:
                    t = measure_model(backend, make())
                    row.update(latency_ms=t["median_ms"], mean_ms=t["mean_ms"], std_ms=t["std_ms"],
                               min_ms=t["min_ms"], count=t["count"])
                except BackendError as e:
                    row.update(status="failed", error=str(e)[:300])
                store.append([row])
                done[cid] = {a: str(b) for a, b in row.items()}
            if on_model and k == rounds:
                on_model(name)
    return fastest_rounds(done.values())


def fastest_rounds(rows: Iterable[Mapping[str, str]]) -> dict[str, float]:
    """``{model: ms}`` from whole-model rows: each model's least round median."""
    out: dict[str, float] = {}
    for r in rows:
        if r.get("status") == "ok" and r.get("latency_ms"):
            m = r["model"]
            out[m] = min(out.get(m, float("inf")), float(r["latency_ms"]))
    return out


def read_measured(path: str | Path) -> dict[str, float]:
    """What :func:`measure_models` returns for the dataset at ``path``, measuring nothing."""
    return fastest_rounds(DatasetStore(path).rows())
