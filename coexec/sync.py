"""Lightweight synchronisation: the host polls an SVM flag the device stores into (spin,
then yield, then short sleeps, with a timeout) instead of clFinish per op."""

from __future__ import annotations

import os
import time

import numpy as np

from .errors import SyncTimeout


POLL_SPIN_S = 0.002  # pure spinning this long first


POLL_YIELD_S = 0.05  # then spinning with sched_yield up to this long, then 50-us sleeps


def poll(flag: np.ndarray, value: int, timeout_s: float = 10.0, at_least: bool = False) -> float:
    """Spin until ``flag[0] == value`` (``>= value`` with ``at_least``: a sequence
    counter that later work may have moved on) with bounded backoff; seconds spent.
    Raises :class:`SyncTimeout` on timeout.

    The backoff is by elapsed time, not by spin count, and its first step is
    ``os.sched_yield`` rather than ``time.sleep(0)``: a zero sleep is a timed sleep that
    took 84 us on a KVM guest here (timer slack), which every wait longer than the
    spinning phase paid on finding the flag set."""
    t0 = time.perf_counter()
    spins = 0
    while (flag[0] < value) if at_least else (flag[0] != value):
        spins += 1
        if spins & 255:
            continue
        waited = time.perf_counter() - t0
        if waited < POLL_SPIN_S:
            continue
        if waited > timeout_s:
            raise SyncTimeout(f"OpenCL completion flag not at {value} after {timeout_s:g} s "
                              "(device error or hang)")
        if waited < POLL_YIELD_S:
            os.sched_yield()
        else:
            time.sleep(50e-6)
    return time.perf_counter() - t0
