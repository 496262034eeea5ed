"""The collection loop: measure configs, append to a store in batches, resume for free."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from ..datasets import OpRow
from ..errors import DatasetError
from ..features import GLUE_KEYS, predictor_key
from ..lowering import lower
from ..onnx_loader import load_onnx
from ..store import DatasetStore
from ..machine import machine_facts, machine_mismatch
from .backends import Backend, BackendError
from .ops import config_id, onnx_single_op

COLUMNS = ["config_id", "model", "device", "framework", "processor", "kernel", "impl", "linked", "params",
           "config", "latency_ms", "mean_ms", "std_ms", "min_ms", "count", "status", "error"]
FRAMEWORKS = {"ort-cpu": ("onnxruntime", "cpu"), "litert-cpu": ("litert", "cpu"), "opencl": ("opencl", "gpu"),
              "android-tflite-cpu": ("tflite", "cpu"), "android-tflite-gpu": ("tflite", "gpu")}


def parse_budget(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``1h`` -> seconds."""
    t = text.strip().lower()
    mult = {"s": 1, "m": 60, "h": 3600}.get(t[-1:], None)
    try:
        return float(t[:-1]) * mult if mult else float(t)
    except ValueError:
        raise DatasetError(f"bad --budget {text!r}: use e.g. 90s, 10m, 1h") from None


def kernel_of(cfg: dict[str, Any], lowering: tuple[str, str] = ("tflite-gpu", "adreno")):
    """The lowered kernel a config runs (its parameters in the dataset vocabulary)."""
    lm = lower(load_onnx(onnx_single_op(cfg)), *lowering)
    if lm.rows:
        return lm.rows[0]
    return next((k for k in lm.kernels if predictor_key(k.type, k.impl) in GLUE_KEYS), None)


def open_store(path: str | Path, backend: Backend, device: str,
               machine: dict[str, Any] | None = None) -> DatasetStore:
    """Open (or create) a dataset for this backend; refuse one collected with other settings.

    ``machine`` holds the facts of what is measured (this machine's by default; a phone's
    device facts for the Android harness).
    """
    facts = machine if machine is not None else machine_facts()
    meta = {"device": device, **backend.settings, "machine": facts}
    store = DatasetStore(path, COLUMNS, meta, repair=True)
    if store.repair_report:
        print(f"warning: {store.repair_report}", file=sys.stderr)
    for key in ("backend", "threads", "cores", "device", "call_floor"):
        if store.meta.get(key) != meta.get(key):
            raise DatasetError(f"{path}: collected with {key}={store.meta.get(key)!r}, "
                               f"not {meta.get(key)!r}; use another --out")
    why = machine_mismatch(store.meta.get("machine") or {}, facts)
    if why:  # resuming is allowed (a CI runner is rarely the same VM twice), but said
        print(f"warning: {path} was started on another or differently loaded machine ({why}); "
              "new rows will not be comparable with the old ones", file=sys.stderr)
    return store


def collect(backend: Backend, configs: Iterable[dict[str, Any]], store: DatasetStore, device: str = "host",
            budget_s: float | None = None, batch: int = 25, flush_s: float = 2.0,
            on_row: Callable[[dict[str, Any]], None] | None = None,
            lowering: tuple[str, str] | None = None) -> dict[str, int]:
    """Measure every config not yet in ``store``; append rows in batches. Returns counts.

    Rows measured before an error that stops the run (a phone unplugged) are appended
    before the error propagates: a re-run resumes after them.
    """
    framework, processor = FRAMEWORKS.get(backend.name, (backend.name, "cpu"))
    lowering = lowering or backend.lowering
    done = store.done_ids()
    stored = set(done)
    pending: list[dict[str, Any]] = []
    counts = {"measured": 0, "failed": 0, "skipped": 0, "repeated": 0}
    start = last_flush = time.monotonic()
    try:
        for cfg in configs:
            if budget_s is not None and time.monotonic() - start >= budget_s:
                break
            cfg = backend.adapt(cfg)
            cid = config_id(cfg)
            if cid in done:  # in the dataset before this run, or a config met twice in it
                counts["skipped" if cid in stored else "repeated"] += 1
                continue
            row = {"config_id": cid, "model": f"single:{cfg['kernel']}", "device": device, "framework": framework,
                   "processor": processor, "kernel": cfg["kernel"], "impl": "", "linked": "|".join(cfg.get("linked", [])),
                   "params": {}, "config": cfg, "status": "ok"}
            try:
                k = kernel_of(cfg, lowering)
                if k is not None:
                    row.update(kernel=k.type, impl=k.impl, linked="|".join(k.linked),
                               params={a: b for a, b in k.params.items() if not a.startswith("_")})
                t = backend.measure(cfg)
                row.update(latency_ms=t["median_ms"], mean_ms=t["mean_ms"], std_ms=t["std_ms"], min_ms=t["min_ms"],
                           count=t["count"])
                counts["measured"] += 1
                pending += _derived_rows(t.get("derived", ()), row, done)
            except (BackendError, ValueError) as e:  # a config without builder or rejected: recorded, go on
                row.update(status="failed", error=str(e)[:300])
                counts["failed"] += 1
            pending.append(row)
            done.add(cid)
            if on_row:
                on_row(row)
            if len(pending) >= batch or time.monotonic() - last_flush >= flush_s:
                store.append(pending)
                pending.clear()
                last_flush = time.monotonic()
    finally:
        store.append(pending)
    return counts


def read_collected(path: str | Path) -> list[OpRow]:
    """The measured (status ok) rows of a collected dataset, as training rows."""
    store = DatasetStore(path)
    out = []
    for r in store.rows():
        if r.get("status") != "ok" or not r.get("latency_ms"):
            continue
        out.append(OpRow(r["model"], r["device"], r["framework"], r["processor"], r["kernel"], r["impl"],
                         [t for t in r["linked"].split("|") if t], json.loads(r["params"] or "{}"),
                         float(r["latency_ms"]), {"config_id": r["config_id"]}))
    return out


def collect_adaptive(backend: Backend, configs: Iterable[dict[str, Any]], store: DatasetStore, device: str = "host",
                     budget_s: float | None = None, batch: int = 100, pool: int = 3000, seed: int = 0,
                     on_row: Callable[[dict[str, Any]], None] | None = None,
                     strategy: str = "committee") -> dict[str, int]:
    """Like :func:`collect`, but each batch is chosen among (up to ``pool``) unmeasured
    candidates from the rows so far: ``strategy`` "error" measures near the configs the
    current predictor erred on (:func:`oplat.collect.adaptive.error_driven_batch`; each
    batch is scored before it is trained on), "committee" where bootstrap-trained
    profiles disagree (:func:`oplat.collect.adaptive.next_batch`).

    Resumable like :func:`collect`: what is in the store is never measured again.
    """
    import random

    from .adaptive import STRATEGIES, choose_batch

    if strategy not in STRATEGIES:
        raise DatasetError(f"unknown adaptive strategy {strategy!r} (known: {', '.join(STRATEGIES)})")

    cands = [backend.adapt(c) for c in configs]
    done = store.done_ids()
    seen: set[str] = set()
    todo = []
    for c in cands:
        cid = config_id(c)
        if cid not in done and cid not in seen:
            seen.add(cid)
            todo.append(c)
    random.Random(seed).shuffle(todo)
    todo = todo[:pool]
    items, keep = [], []
    for c in todo:
        try:
            k = kernel_of(c, backend.lowering)
        except ValueError:
            k = None
        if k is not None:
            items.append((k.type, k.impl, {a: b for a, b in k.params.items() if not a.startswith("_")}, k.linked))
            keep.append(c)
    counts = {"measured": 0, "failed": 0, "skipped": len(done)}
    start = time.monotonic()
    rnd = 0
    errors: dict[str, float] = {}  # config id -> out-of-sample error when it was measured
    while keep:
        left = None if budget_s is None else budget_s - (time.monotonic() - start)
        if left is not None and left <= 0:
            break
        measured = read_collected(store.path) if store.path.exists() and store.path.stat().st_size else []
        pick = choose_batch(strategy, measured, items, min(batch, len(keep)), seed + rnd, errors)
        rnd += 1
        chosen = set(pick)
        c = collect(backend, [keep[i] for i in pick], store, device, left, on_row=on_row)
        for key in ("measured", "failed"):
            counts[key] += c[key]
        keep = [x for i, x in enumerate(keep) if i not in chosen]
        items = [x for i, x in enumerate(items) if i not in chosen]
    return counts


def _derived_rows(derived, parent: dict[str, Any], done: set[str]) -> list[dict[str, Any]]:
    """Rows for kernels a measurement timed on the side (the NCHWc reorders around an
    onnxruntime conv), not yet in the dataset; written in the same batch as the row
    that timed them, so a resumed run never loses or repeats one."""
    from ..lowering.ort_cpu import reorder_params

    out = []
    for cfg, t in derived:
        cid = config_id(cfg)
        if cid in done or cfg["kernel"] != "REORDER":
            continue
        done.add(cid)
        out.append({**parent, "config_id": cid, "model": "single:REORDER", "kernel": "REORDER", "impl": "reorder",
                    "linked": "", "params": reorder_params(cfg["Input_dims"], cfg["Direction"]), "config": cfg,
                    "latency_ms": t["median_ms"], "mean_ms": t["mean_ms"], "std_ms": t["std_ms"],
                    "min_ms": t["min_ms"], "count": t["count"]})
    return out
