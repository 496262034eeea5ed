"""Co-running one layer: its output channels split between the CPU and the OpenCL device
at a ratio, both halves at once, synchronised by the SVM flag; and the benchmark that
compares the planner's split with the best ratio found by search."""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Sequence

import numpy as np

from .cpu import CpuExecutor, reference
from .layers import LayerSpec, max_rel_err, wants_padded_input
from .opencl import GATE_SPINS, Launch, OclExecutor
from .probes import notify_latency, sync_costs
from .sync import poll


class CoRunner:
    """Run one layer split at a GPU share on both executors at once; time it."""

    def __init__(self, layer: LayerSpec, x: np.ndarray, ocl: OclExecutor | None, cpu: CpuExecutor,
                 sync: str = "svm", warm: bool = False) -> None:
        """``warm`` (SVM sync only): between runs the device waits in an :data:`idle_gate`
        that each run opens right after queueing its GPU part behind it, so that part
        starts without a wake-up of the device (as a serving runtime keeps its device);
        :meth:`close` lets the queue drain, and must be called before the queue is used
        for anything else."""
        if sync not in ("svm", "event", "finish"):
            raise ValueError(f"sync must be svm, event or finish (got {sync!r})")
        self.layer, self.ocl, self.cpu, self.sync = layer, ocl, cpu, sync
        self.x_shape = x.shape
        self.warm = bool(warm and ocl is not None and sync == "svm")
        self.host_s: list[float] = []  # per run with a GPU part: seconds the host spent launching it
        if ocl is not None:
            self.x = ocl.svm(x.shape)
            self.x[...] = x
            self.w = ocl.svm(layer.w.shape)
            self.w[...] = layer.w
            self.b = ocl.svm(layer.b.shape)
            self.b[...] = layer.b
            self.y = ocl.svm(layer.out_shape(x.shape))
            self.flag = ocl.svm((1,), np.int32)
            self.flag[0] = 0
            # the padded copy is made on the device by each launch (as in the graph runtime)
            self.xpad = ocl.padded_buffer(x.shape, layer.pad) if wants_padded_input(layer) else None
            self._launches: dict[int, Launch] = {}
            if self.warm:
                self.go = ocl.svm((1,), np.int32)
                self.go[0] = 0
                self._idle = ocl.kernel("idle_gate")
                self._idle.set_args(ocl.cl.SVM(self.go), np.int32(GATE_SPINS))
                ocl.cl.enqueue_nd_range_kernel(ocl.queue, self._idle, (1,), None)
                ocl.flush()
        else:
            self.x, self.w, self.b = x, layer.w, layer.b
            self.y = np.empty(layer.out_shape(x.shape), np.float32)

    def close(self) -> None:
        """Open the idle gate for the last time and let the queue drain (warm runners)."""
        if self.warm:
            self.warm = False
            self.go[0] = 1
            self.ocl.queue.finish()

    def split_channels(self, ratio: float, align: int = 8) -> int:
        c = self.layer.out_channels
        k = int(round(ratio * c / align) * align)
        return min(max(k, 0), c)

    def run(self, ratio: float) -> float:
        """One co-executed run at GPU share ``ratio``; wall seconds."""
        k = self.split_channels(ratio) if self.ocl is not None else 0
        c = self.layer.out_channels
        t0 = time.perf_counter()
        ev = None
        if k > 0:
            launch = self._launches.get(k)
            if launch is None:  # kernel arguments set once per GPU share, as the graph runtime does
                launch = self._launches[k] = self.ocl.prepare(
                    self.layer, self.x, self.w, self.b, self.y, 0, k, self.x_shape, self.xpad,
                    flag=self.flag if self.sync == "svm" else None, value=1)
                t0 = time.perf_counter()
            self.flag[0] = 0  # the previous run was waited for
            ev = launch.enqueue()
            if self.warm:  # the next idle gate behind this run's work
                self.ocl.cl.enqueue_nd_range_kernel(self.ocl.queue, self._idle, (1,), None)
            self.ocl.flush()
            if self.warm:  # then open the current one
                self.go[0] = 1
            # the host's part of the launch: time the CPU's own part starts later by
            self.host_s.append(time.perf_counter() - t0)
        self.cpu.run(self.layer, self.x, self.y, k, c, self.x_shape)
        if k > 0:
            if self.sync == "svm":
                poll(self.flag, 1)
            elif self.sync == "event":
                ev.wait()
            else:
                self.ocl.queue.finish()
        return time.perf_counter() - t0


def contention(ocl: "OclExecutor", cpu: "CpuExecutor", runs: int = 9) -> dict[str, Any]:
    """How much each executor slows down while the other runs, measured on conv layers
    split in half: the GPU half's kernel time (device events) and the CPU half's wall
    time, each alone and both at once (interleaved, medians). Shared caches and memory
    bandwidth can make concurrent halves slower than the same halves alone (informational:
    the planner does not use these factors)."""
    rng = np.random.default_rng(0)
    rows = []
    for c, h, f, k in ((64, 56, 64, 3), (128, 28, 128, 3), (256, 14, 256, 1), (96, 28, 192, 1)):
        layer = LayerSpec("conv", (rng.standard_normal((f, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32),
                          np.zeros(f, np.float32), 1, k // 2)
        x = rng.standard_normal((c, h, h)).astype(np.float32)
        r = CoRunner(layer, x, ocl, cpu)
        half = r.split_channels(0.5)
        r.run(0.5)  # builds the launch
        launch = r._launches[half]
        xs = np.asarray(r.x)
        t: dict[str, list[float]] = {"gpu": [], "cpu": [], "gpu_both": [], "cpu_both": []}
        for _ in range(runs + 1):
            r.flag[0] = 0
            ev = launch.enqueue()
            ocl.flush()
            poll(r.flag, 1)
            t["gpu"].append((ev.profile.end - ev.profile.start) * 1e-9)
            t0 = time.perf_counter()
            cpu.run(layer, xs, r.y, half, layer.out_channels, x.shape)
            t["cpu"].append(time.perf_counter() - t0)
            r.flag[0] = 0
            ev = launch.enqueue()
            ocl.flush()
            t0 = time.perf_counter()
            cpu.run(layer, xs, r.y, half, layer.out_channels, x.shape)
            t["cpu_both"].append(time.perf_counter() - t0)
            poll(r.flag, 1)
            t["gpu_both"].append((ev.profile.end - ev.profile.start) * 1e-9)
        med = {key: float(np.median(v[1:])) * 1e3 for key, v in t.items()}
        rows.append({"layer": f"{c}x{h}x{h}->{f} k{k}", **{f"{key}_ms": round(v, 4) for key, v in med.items()}})
    g = float(np.median([r["gpu_both_ms"] / r["gpu_ms"] for r in rows])) - 1.0
    c = float(np.median([r["cpu_both_ms"] / r["cpu_ms"] for r in rows])) - 1.0
    return {"gpu": round(max(g, 0.0), 4), "cpu": round(max(c, 0.0), 4), "layers": rows}


def measure(fn: Callable[[], float], warmup: int = 2, runs: int = 9) -> float:
    """Median seconds of ``fn`` after warm-up."""
    for _ in range(warmup):
        fn()
    return float(np.median([fn() for _ in range(runs)]))


def bench_layer(layer: LayerSpec, x_shape: Sequence[int], steps: int = 16, sync: str = "svm",
                cpu_cores: Sequence[int] | None = None, gpu_cores: Sequence[int] | None = None,
                runs: int = 9, cpu_only: bool = False, sync_reps: int = 15, warm: bool = True,
                confirm: int = 5) -> dict[str, Any]:
    """CPU-only, GPU-only, planned and grid-searched (oracle) co-execution, measured in one run
    (``warm``: the device waits for each run in an idle gate, :class:`CoRunner`). The
    oracle's split is the fastest of the grid; it and the planned split are then timed
    ``confirm`` more times each in alternating blocks, and those medians are compared (the
    grid's minimum is kept as ``oracle_grid_ms``)."""
    ncpu = os.cpu_count() or 1
    gpu_cores = list(gpu_cores) if gpu_cores else [ncpu - 1]
    cpu_cores = list(cpu_cores) if cpu_cores else [c for c in range(ncpu) if c not in gpu_cores] or [0]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(tuple(x_shape)).astype(np.float32)
    ref = reference(layer, x)
    cpu = CpuExecutor(cpu_cores)
    ocl = None if cpu_only else OclExecutor(gpu_cores)
    prev = os.sched_getaffinity(0)
    cpu.pin()
    r = None
    try:
        r = CoRunner(layer, x, ocl, cpu, sync, warm=warm)
        out: dict[str, Any] = {"layer": layer.kind, "weights": list(layer.w.shape), "input": list(x_shape),
                               "cpu_cores": cpu_cores, "gpu_cores": gpu_cores, "sync": sync,
                               "warm": r.warm, "device": ocl.device.name if ocl else None}
        if ocl is None:
            out["cpu_ms"] = measure(lambda: r.run(0.0), runs=runs) * 1e3
            return out
        # each split in a block of runs (every run after the first sees the caches its own
        # split leaves; interleaving the splits was measured noisier here)
        ratios = sorted({r.split_channels(q) / layer.out_channels for q in np.linspace(0, 1, steps + 1)})
        grid = {q: measure(lambda q=q: r.run(q), runs=runs) for q in ratios}
        cpu_s, gpu_s = grid[0.0], grid[1.0]
        out["cpu_ms"] = cpu_s * 1e3
        # planner: the linear partition model on the executors' whole-layer times of this
        # run, with the host's time to launch the GPU part (which delays the CPU's part and
        # is inside the GPU-only time) taken as the whole-model planner takes it (host_us)
        host_s = float(np.median(r.host_s)) if r.host_s else 0.0
        planned_ratio = r.split_channels(cpu_s / (cpu_s + max(gpu_s - host_s, 1e-9))) / layer.out_channels
        best = min(grid, key=grid.get)
        # the oracle's split is the grid's fastest, a minimum over noisy medians (biased low):
        # both splits are timed again side by side, in alternating blocks, for the comparison
        again: dict[float, list[float]] = {planned_ratio: [], best: []}
        for _ in range(confirm):
            for q in again:
                again[q].append(measure(lambda q=q: r.run(q), runs=runs))
        planned_s, best_s = (float(np.median(again[q])) for q in (planned_ratio, best))
        r.run(planned_ratio)
        err = max_rel_err(r.y, ref)
        fast = min(cpu_s, gpu_s)
        out.update(gpu_ms=gpu_s * 1e3, planned_ms=planned_s * 1e3, oracle_ms=best_s * 1e3,
                   oracle_grid_ms=grid[best] * 1e3, host_launch_us=host_s * 1e6,
                   planned_ratio=planned_ratio, oracle_ratio=best, grid_ms={f"{q:.4f}": v * 1e3 for q, v in grid.items()},
                   speedup_planned=fast / planned_s, speedup_oracle=fast / best_s,
                   ceiling=1 + fast / max(cpu_s, gpu_s), planned_share_of_oracle=best_s / planned_s,
                   max_rel_err=err, outputs_match=err <= 1e-5)
        r.close()  # the queue is the probes' now
        out["sync_us"] = sync_costs(ocl, reps=sync_reps)
        out["notify_us"] = notify_latency(ocl)
        return out
    finally:
        if r is not None:
            r.close()
        os.sched_setaffinity(0, prev)
