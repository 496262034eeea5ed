"""Measurements of the runtime's fixed costs on this machine: synchronisation round trips
(flag, gate, event, finish), the device's notification latency and the CPU executor's best
channel block."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .cpu import CpuExecutor
from .errors import SyncTimeout
from .layers import LayerSpec
from .opencl import GATE_SPINS, OclExecutor
from .sync import poll


def channel_block(cpu: "CpuExecutor", runs: int = 15) -> dict[str, Any]:
    """The output-channel block the CPU executor's conv works in, measured: a 3x3 conv
    (64 in, 28x28) timed at every output channel count from 48 to 64 (counts interleaved
    run by run, so drift hits all alike; medians), the block read off by
    :func:`block_from_times` (onnxruntime's NCHWc convs: 8 on AVX2)."""
    rng = np.random.default_rng(0)
    layer = LayerSpec("conv", rng.standard_normal((64, 64, 3, 3)).astype(np.float32), np.zeros(64, np.float32), 1, 1)
    x = rng.standard_normal((64, 28, 28)).astype(np.float32)
    y = np.empty((64, 28, 28), np.float32)
    counts = range(48, 65)
    ts: dict[int, list[float]] = {n: [] for n in counts}
    for k in range(runs + 3):
        for n in counts:
            t0 = time.perf_counter()
            cpu.run(layer, x, y, 64 - n, 64, x.shape)
            if k >= 3:  # warm-up rounds
                ts[n].append(time.perf_counter() - t0)
    ms = {n: float(np.median(v)) * 1e3 for n, v in ts.items()}
    return {"block": block_from_times(ms), "ms_by_channels": {str(k): round(v, 4) for k, v in sorted(ms.items())}}


def block_from_times(ms: dict[int, float]) -> int:
    """The channel block b in 1, 4, 8, 16 whose staircase ``a + c * ceil(n / b)`` fits the
    conv times ``ms[n]`` best (least squares over all counts, so one noisy reading
    cannot decide it)."""
    n = np.array(sorted(ms), float)
    t = np.array([ms[k] for k in sorted(ms)])
    best = (np.inf, 1)
    for b in (1, 4, 8, 16):
        x = np.stack([np.ones_like(n), np.ceil(n / b)], axis=1)
        coef, *_ = np.linalg.lstsq(x, t, rcond=None)
        sse = float(np.sum((x @ coef - t) ** 2))
        if coef[1] > 0 and sse < best[0] * 0.999:
            best = (sse, b)
    return best[1]


def sync_costs(ocl: OclExecutor, n: int = 200, reps: int = 15) -> dict[str, float]:
    """Median per-op synchronisation cost (us) of each way the host and the device hand
    work to each other.

    - ``svm``: the runtime's SVM path (:class:`~coexec.graph_runner.GraphRunner` with
      ``sync="svm"``): ``n`` launches enqueued ahead, each a :data:`gate` then a flag
      store; per op the host releases one with a store into SVM and polls its flag, so a
      handoff each way costs a store and a poll, no enqueue and no device wake-up;
    - ``svm_enqueue``: the host enqueues each trivial kernel, flushes and polls its SVM flag;
    - ``event``: the same with a wait on the kernel's event; ``finish``: with clFinish.

    For the last three the per-op time of the same kernels enqueued without any wait (one
    finish at the end, ``pipelined_op_us``: the enqueue work, which the SVM path does
    ahead) is taken off. Methods alternate within each repetition so that they see the
    same machine state.
    """
    flag = ocl.svm((1,), np.int32)
    flag[0] = 0
    seq = 0
    go, gflag, timed_out = (ocl.svm((1,), np.int32) for _ in range(3))
    cl = ocl.cl
    gated = []
    for i in range(1, n + 1):
        g, f = ocl.kernel("gate"), ocl.kernel("set_flag")
        g.set_args(cl.SVM(go), np.int32(i), np.int32(GATE_SPINS), cl.SVM(timed_out))
        f.set_args(cl.SVM(gflag), np.int32(i))
        gated.append((g, f))

    def gated_round_trips() -> float:
        """Per-op seconds of releasing each pre-enqueued gate and polling its flag."""
        go[0] = gflag[0] = timed_out[0] = 0
        for g, f in gated:
            cl.enqueue_nd_range_kernel(ocl.queue, g, (1,), None)
            cl.enqueue_nd_range_kernel(ocl.queue, f, (1,), None)
        ocl.flush()
        t0 = time.perf_counter()
        for i in range(1, n + 1):
            go[0] = i
            poll(gflag, i)
        per_op = (time.perf_counter() - t0) / n
        ocl.queue.finish()
        if timed_out[0]:
            raise SyncTimeout(f"a gate gave up waiting for release {int(timed_out[0])}")
        return per_op

    def waited_ops(method: str) -> float:
        """Per-op seconds of enqueueing trivial kernels, waiting after each by ``method``."""
        nonlocal seq
        t0 = time.perf_counter()
        for _ in range(n):
            seq += 1
            ev = ocl.signal(flag, seq)
            if method == "none":
                continue
            ocl.flush()
            if method == "svm_enqueue":
                poll(flag, seq)
            elif method == "event":
                ev.wait()
            else:
                ocl.queue.finish()
        if method == "none":
            ocl.queue.finish()
        return (time.perf_counter() - t0) / n

    per_op: dict[str, list[float]] = {m: [] for m in ("none", "svm_enqueue", "event", "finish", "svm")}
    for _ in range(reps):
        for method in per_op:
            per_op[method].append((gated_round_trips() if method == "svm" else waited_ops(method)) * 1e6)
    base = float(np.median(per_op["none"]))
    out = {m: max(float(np.median(v)) - base, 0.0) for m, v in per_op.items() if m not in ("none", "svm")}
    return {"svm": float(np.median(per_op["svm"])), **out, "pipelined_op_us": base}


def notify_latency(ocl: OclExecutor, n: int = 200, max_spins: int = 200_000_000) -> dict[str, float]:
    """Median microseconds from the moment a running device kernel is released to the
    moment the host knows it has finished, per method (svm flag polling, event wait,
    clFinish): the part of a synchronisation that pipelining cannot hide.

    Each probe kernel (``wait_go``) announces its start in SVM and spins until the host
    stores the go value; the clock starts at that store, so kernel launch latency is
    excluded for every method alike. Methods alternate probe by probe.
    """
    go, started, done = (ocl.svm((1,), np.int32) for _ in range(3))
    go[0] = started[0] = done[0] = 0
    cl = ocl.cl
    seq = 0
    out: dict[str, list[float]] = {"svm": [], "event": [], "finish": []}
    for _ in range(n):
        for method in out:
            seq += 1
            ocl.k_wait_go.set_args(cl.SVM(go), cl.SVM(started), cl.SVM(done), np.int32(seq), np.int32(max_spins))
            ev = cl.enqueue_nd_range_kernel(ocl.queue, ocl.k_wait_go, (1,), None)
            ocl.flush()
            poll(started, seq)
            t0 = time.perf_counter()
            go[0] = seq
            if method == "svm":
                poll(done, seq)
            elif method == "event":
                ev.wait()
            else:
                ocl.queue.finish()
            out[method].append((time.perf_counter() - t0) * 1e6)
            ocl.queue.finish()  # the queue is empty before the next probe
    return {m: float(np.median(v)) for m, v in out.items()}
