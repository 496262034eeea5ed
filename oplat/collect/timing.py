"""Timing discipline shared by every measurement backend: warm-up runs, then rounds of
runs until the median is stable (standard error of the median under ``rel_tol``) or a
cap on runs or time is hit."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import numpy as np

LEVELS = ("median_ms", "mean_ms", "min_ms")


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




__all__ = ["time_runs", "LEVELS"]
