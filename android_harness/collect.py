"""Collect per-op training data on a phone with the pipeline of ``oplat collect``.

:class:`PhoneBackend` implements :class:`oplat.collect.backends.Backend` for a phone:
each kernel config becomes a single-op .tflite model, pushed (checksum-cached) and run
with ``benchmark_model`` pinned to the core set; its ``Inference (avg)`` is the
kernel's latency. :func:`collect_phone` drives :func:`oplat.collect.run.collect`
(atomic batches, resumable) and survives disconnects: rows measured before a drop are
kept, the harness waits for the phone to come back and resumes where it stopped.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from oplat.collect.backends import Backend, BackendError
from oplat.collect.run import collect, open_store
from oplat.collect.tflite_ops import tflite_single_op

from .adb import Device, DeviceError, list_devices
from .bench import BenchmarkCrash, ThermalGuard, run_benchmark_model
from .facts import device_facts


class PhoneBackend(Backend):
    """Measure single-op TFLite models on a phone (CPU core set or GPU delegate)."""

    def __init__(self, dev: Device, binary: str | Path, processor: str = "cpu", threads: int = 1,
                 cores: str | None = None, runs: int = 30, warmup: int = 5,
                 facts: dict[str, Any] | None = None, thermal: bool = True) -> None:
        self.dev = dev
        self.binary = Path(binary)
        self.processor = processor
        self.threads = threads
        self.cores_name = cores
        self.cores = None
        self.runs, self.warmup = runs, warmup
        self.facts = facts or device_facts(dev)
        self.guard = ThermalGuard(dev) if thermal else None
        self.name = f"android-tflite-{processor}"
        self._tmp = Path(tempfile.mkdtemp(prefix="oplat-phone-"))

    @property
    def settings(self) -> dict[str, Any]:
        return {"backend": self.name, "threads": self.threads, "cores": self.cores_name,
                "phone": {k: self.facts.get(k) for k in ("serial", "model", "soc", "fingerprint")}}

    def measure(self, cfg: dict[str, Any]) -> dict[str, float]:
        try:
            blob = tflite_single_op(cfg)
        except ValueError as e:
            raise BackendError(str(e)) from None
        path = self._tmp / f"{cfg['kernel'].lower()}.tflite"
        path.write_bytes(blob)
        try:
            r = run_benchmark_model(self.dev, path, self.binary, threads=self.threads, cores=self.cores_name,
                                    gpu=self.processor == "gpu", runs=self.runs, warmup=self.warmup,
                                    guard=self.guard, facts=self.facts)
        except BenchmarkCrash as e:  # this config crashed the binary: recorded as failed, go on
            raise BackendError(str(e)) from None
        runs = r.get("runs") or {}
        return {"median_ms": r["avg_ms"], "mean_ms": r["avg_ms"], "std_ms": runs.get("std", 0.0) / 1000.0,
                "min_ms": runs.get("min", r["avg_ms"] * 1000) / 1000.0, "count": int(runs.get("count", self.runs))}


def phone_configs(graphs: Iterable[Any], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """The first ``n`` sampled kernel configs the phone's single-op TFLite builders can
    build (CNN kernels of ``graphs`` and their neighbours; no attention blocks or
    data-movement kernels, which those builders lack)."""
    from oplat.collect.sampler import default_configs, select_kernels
    from oplat.collect.tflite_ops import TFLITE_KERNELS

    sampled = default_configs(graphs, n=3 * n, seed=seed, transformer_blocks=0, layout_kernels=0)
    return select_kernels(sampled, TFLITE_KERNELS)[:n]


def wait_for_device(serial: str, timeout_s: float = 60.0, poll_s: float = 1.0) -> bool:
    """True once ``serial`` is listed as ``device`` again (within ``timeout_s``)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            if any(d["serial"] == serial and d["state"] == "device" for d in list_devices()):
                return True
        except DeviceError:
            pass
        time.sleep(poll_s)
    return False


def collect_phone(serial: str, binary: str | Path, configs: Iterable[dict[str, Any]], out: str | Path,
                  processor: str = "cpu", threads: int = 1, cores: str | None = None, budget_s: float | None = None,
                  runs: int = 30, warmup: int = 5, reconnect_timeout_s: float = 120.0, max_reconnects: int = 20,
                  thermal: bool = True, on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Collect ``configs`` on one phone into the dataset ``out`` (resumable)."""
    configs = list(configs)
    dev = Device(serial)
    backend = PhoneBackend(dev, binary, processor, threads, cores, runs, warmup, thermal=thermal)
    device = str(backend.facts.get("model", serial))
    store = open_store(out, backend, device, machine=backend.facts)
    totals = {"measured": 0, "failed": 0, "skipped": 0, "reconnects": 0}
    lowering = ("tflite-cpu", "cpu") if processor == "cpu" else ("tflite-gpu", "adreno")
    t0 = time.monotonic()
    while True:
        left = None if budget_s is None else max(budget_s - (time.monotonic() - t0), 0.0)
        try:
            c = collect(backend, configs, store, device=device, budget_s=left, on_row=on_row,
                        lowering=lowering)
            for k in ("measured", "failed"):
                totals[k] += c[k]
            totals["skipped"] = c["skipped"]
            break
        except DeviceError as e:
            totals["reconnects"] += 1
            if totals["reconnects"] > max_reconnects or not wait_for_device(serial, reconnect_timeout_s):
                raise DeviceError(f"{e}; {len(store.done_ids())} rows are saved in {out}: "
                                  f"run the same command again to resume") from None
            backend.dev = Device(serial)
    totals["rows"] = len(store.done_ids())
    return totals
