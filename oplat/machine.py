"""This machine: CPU identity, machine facts recorded with measurements, whether two
machines' facts disagree, and running a block pinned to some cores.

A leaf module (numpy and the standard library only), used by collection, profiles and
the co-execution runtime alike.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from typing import Any, Iterator, Sequence

import numpy as np


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


@contextlib.contextmanager
def pinned(cores: Sequence[int] | None) -> Iterator[None]:
    """Run the block on ``cores`` (threads started inside inherit them); the caller's
    affinity comes back after it. ``None`` or empty: left as it is."""
    if not cores:
        yield
        return
    prev = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(cores))
    try:
        yield
    finally:
        os.sched_setaffinity(0, prev)


__all__ = ["cpu_identity", "other_cpu", "machine_facts", "speed_probe_ms", "machine_mismatch", "pinned"]
