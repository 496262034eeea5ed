"""Benchmark runners on a phone: TFLite ``benchmark_model`` and ``onnxruntime_perf_test``.

Binaries are pushed once (checksum-cached) to :data:`REMOTE_DIR`; models likewise.
Runs are pinned with ``taskset MASK`` and use exact run counts
(``--num_runs/--warmup_runs`` with ``--min_secs=0 --warmup_min_secs=0``). Before each
run the harness waits (bounded) until the phone's temperatures return to the session's
baseline and sleeps the cool-down; the wait, the thermal state and the device facts are
recorded with the result. A non-zero exit or output without a summary raises
:class:`BenchmarkCrash`, which keeps the partial output.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path, PurePosixPath
from typing import Any

from .adb import Device, HarnessError
from .facts import core_mask, device_facts, thermal
from .parsers import ParseError, parse_benchmark_model, parse_ort_perf_test

REMOTE_DIR = "/data/local/tmp/oplat"


class BenchmarkCrash(HarnessError):
    """The benchmark binary failed; ``output`` holds what it printed before."""

    def __init__(self, msg: str, output: str = "", returncode: int | None = None) -> None:
        super().__init__(msg)
        self.output = output
        self.returncode = returncode


def remote_name(local: str | Path) -> str:
    """A device file name for a local file: content hash + a sanitised stem (no shell or
    path tricks survive: only [A-Za-z0-9._-])."""
    p = Path(local)
    digest = hashlib.sha256(p.read_bytes()).hexdigest()[:12]
    stem = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in p.stem)[:40] or "model"
    return f"{stem}-{digest}{p.suffix if p.suffix in ('.tflite', '.onnx', '.ort') else ''}"


class ThermalGuard:
    """Wait until the phone is back at the session's baseline temperature before a run."""

    def __init__(self, dev: Device, tolerance_c: float = 2.0, max_wait_s: float = 120.0, poll_s: float = 2.0) -> None:
        self.dev = dev
        self.tolerance_c = tolerance_c
        self.max_wait_s = max_wait_s
        self.poll_s = poll_s
        self.baseline = self._hottest(thermal(dev))

    @staticmethod
    def _hottest(t: dict[str, Any]) -> float | None:
        zones = [v for k, v in t.get("zones_c", {}).items() if "cpu" in k.lower() or "gpu" in k.lower()]
        zones = zones or list(t.get("zones_c", {}).values())
        return max(zones) if zones else None

    def wait(self) -> dict[str, Any]:
        """Block until within tolerance of the baseline (or the bound); returns what happened."""
        t0 = time.monotonic()
        now = thermal(self.dev)
        hot = self._hottest(now)
        while (self.baseline is not None and hot is not None and hot > self.baseline + self.tolerance_c
               and time.monotonic() - t0 < self.max_wait_s):
            time.sleep(self.poll_s)
            now = thermal(self.dev)
            hot = self._hottest(now)
        return {"baseline_c": self.baseline, "before_run_c": hot, "waited_s": round(time.monotonic() - t0, 3),
                "reached_baseline": hot is None or self.baseline is None or hot <= self.baseline + self.tolerance_c,
                "status": now.get("status")}


def ensure_file(dev: Device, local: str | Path, mode: int = 0o644) -> str:
    """Push ``local`` under :data:`REMOTE_DIR` unless the same bytes are already there."""
    remote = str(PurePosixPath(REMOTE_DIR) / remote_name(local))
    dev.shell(["mkdir", "-p", REMOTE_DIR], check=True)
    dev.push_cached(local, remote, mode=mode)
    return remote


def benchmark_model_argv(binary: str, model: str, threads: int = 1, mask: str | None = None, gpu: bool = False,
                         xnnpack: bool = True, op_profiling: bool = False, runs: int = 50,
                         warmup: int = 5) -> list[str]:
    """The argv of one ``benchmark_model`` run (exact run counts, optional taskset)."""
    argv = [binary, f"--graph={model}", f"--num_threads={threads}", f"--num_runs={runs}",
            f"--warmup_runs={warmup}", "--min_secs=0", "--warmup_min_secs=0",
            f"--use_gpu={'true' if gpu else 'false'}", f"--use_xnnpack={'true' if xnnpack and not gpu else 'false'}",
            f"--enable_op_profiling={'true' if op_profiling else 'false'}"]
    return (["taskset", mask] if mask else []) + argv


def run_benchmark_model(dev: Device, model: str | Path, binary: str | Path | None = None, threads: int = 1,
                        cores: str | None = None, gpu: bool = False, xnnpack: bool = True,
                        op_profiling: bool = False, runs: int = 50, warmup: int = 5, cooldown_s: float = 0.0,
                        guard: ThermalGuard | None = None, facts: dict[str, Any] | None = None,
                        timeout: float = 600.0) -> dict[str, Any]:
    """Push (cached) and run one model; parsed timings plus the conditions of the run."""
    if binary is not None:
        remote_bin = ensure_file(dev, binary, mode=0o755)
    else:
        found = dev.shell(["sh", "-c", "command -v benchmark_model || ls /data/local/tmp/benchmark_model"])
        remote_bin = found.stdout.strip().splitlines()[0] if found.returncode == 0 and found.stdout.strip() else ""
        if not remote_bin:
            raise HarnessError(f"no benchmark_model on {dev.serial}: pass --benchmark-binary PATH")
    remote_model = ensure_file(dev, model)
    facts = facts or device_facts(dev)
    mask = core_mask(facts, cores) if cores else None
    argv = benchmark_model_argv(remote_bin, remote_model, threads, mask, gpu, xnnpack, op_profiling, runs, warmup)
    if cooldown_s > 0:
        time.sleep(cooldown_s)
    conditions = guard.wait() if guard is not None else {}
    t0 = time.time()
    r = dev.shell(argv, timeout=timeout)
    out = r.stdout + r.stderr
    if r.returncode != 0:
        tail = out.strip().splitlines()[-1] if out.strip() else "no output"
        raise BenchmarkCrash(f"benchmark_model exited {r.returncode} on {dev.serial} ({tail[:160]})", out,
                             r.returncode)
    try:
        parsed = parse_benchmark_model(out)
    except ParseError as e:
        raise BenchmarkCrash(f"benchmark_model on {dev.serial}: {e}", out, r.returncode) from None
    return {"model": Path(model).name, "serial": dev.serial, "avg_ms": parsed["avg_ms"],
            "init_ms": parsed.get("init_us", 0) / 1000.0, "first_ms": parsed["first_us"] / 1000.0,
            "runs": parsed.get("runs"), "ops": parsed["ops"], "threads": threads, "cores": cores, "mask": mask,
            "gpu": gpu, "xnnpack": xnnpack and not gpu, "command": argv, "started_at": t0,
            "thermal": conditions, "memory_mb": parsed.get("memory_overall_mb"), "facts": facts}


def run_ort_perf_test(dev: Device, model: str | Path, binary: str | Path, threads: int = 1, cores: str | None = None,
                      runs: int = 50, facts: dict[str, Any] | None = None, timeout: float = 600.0) -> dict[str, Any]:
    """``onnxruntime_perf_test -m times -r N -x T -I`` on the phone, parsed."""
    remote_bin = ensure_file(dev, binary, mode=0o755)
    remote_model = ensure_file(dev, model)
    facts = facts or device_facts(dev)
    mask = core_mask(facts, cores) if cores else None
    argv = (["taskset", mask] if mask else []) + [remote_bin, "-m", "times", "-r", str(runs), "-x", str(threads),
                                                  "-I", remote_model]
    r = dev.shell(argv, timeout=timeout)
    out = r.stdout + r.stderr
    if r.returncode != 0:
        raise BenchmarkCrash(f"onnxruntime_perf_test exited {r.returncode} on {dev.serial}", out, r.returncode)
    try:
        parsed = parse_ort_perf_test(out)
    except ParseError as e:
        raise BenchmarkCrash(f"onnxruntime_perf_test on {dev.serial}: {e}", out, r.returncode) from None
    return dict(parsed, model=Path(model).name, serial=dev.serial, threads=threads, cores=cores, mask=mask,
                command=argv, facts=facts)
