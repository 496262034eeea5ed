"""Co-execution planner: per unit, whole on CPU, whole on GPU, or split at a ratio.

- :func:`simulate` scores a plan on a two-processor timeline (DAG-aware: independent
  branches overlap on different processors; a consumer waits for the data it needs,
  paying the synchronisation/sharing cost when the other processor wrote it; per-channel
  consumers of a split producer split the same way continue on their own channels
  without a sync, CoDL's chain idea).
- :func:`plan_dp` is the planner: dynamic programming over the topological order over
  the full ratio grid of both split dimensions, with the transition costs of the edge
  from the previous unit; linear in the number of units.
- :func:`oracle_search` is the expensive reference: exhaustive per-unit search over the
  same grid on the timeline simulation itself, repeated until no single unit's change
  helps (started from the planner's plan, all-GPU and all-CPU plans).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .cost import CostModel, Unit

FOLLOW_KINDS = ("depthwise", "pool")  # per-channel work: can continue on its own channels


@dataclass(frozen=True)
class Decision:
    """Where a unit runs: ``ratio`` is the GPU share on grid point ``index`` of ``dim``."""

    dim: str
    index: int

    def placement(self, steps: int) -> str:
        return "cpu" if self.index == 0 else "gpu" if self.index == steps else "split"


def _can_follow(u: Unit, p: Unit, du: Decision, dp: Decision, steps: int) -> bool:
    """``u`` reads only its own channels (rows) of ``p``'s split output."""
    return (du == dp and 0 < du.index < steps and u.split_kind in FOLLOW_KINDS
            and (du.dim == "channel" or u.split_kind != "eltwise"))


def simulate(cm: CostModel, decisions: Sequence[Decision], start: int = 0,
             prefix: tuple | None = None, snapshots: list | None = None) -> tuple[float, list[dict]]:
    """Predicted latency of a plan on the two-processor timeline, and per-unit timings.

    ``prefix`` (the ``snapshots`` of an earlier run with the same first ``start``
    decisions) resumes the timeline at unit ``start``.
    """
    steps = cm.steps
    if prefix is not None and start > 0:
        clock = dict(prefix[start][0])
        fin, ready = prefix[start][1][:start], prefix[start][2][:start]
        fin, ready = list(fin), list(ready)
    else:
        start, clock, fin, ready = 0, {"gpu": 0.0, "cpu": 0.0}, [], []
    detail = []
    for u, d in zip(cm.units[start:], decisions[start:]):
        if snapshots is not None:
            snapshots.append((dict(clock), fin, ready))
        g_ms, c_ms = cm.unit_ms(u.index, d.index, d.dim)
        parts = {"gpu": g_ms if d.index > 0 else 0.0, "cpu": c_ms if d.index < steps else 0.0}
        on = [p for p in ("gpu", "cpu") if (p == "gpu" and d.index > 0) or (p == "cpu" and d.index < steps)]
        f: dict[str, float] = {}
        waited = 0.0
        for proc in on:
            start = clock[proc]
            for pi in u.producers:
                if _can_follow(u, cm.units[pi], d, decisions[pi], steps):
                    t = fin[pi].get(proc, ready[pi][proc])
                else:
                    t = ready[pi][proc]
                if t > start:
                    waited = max(waited, t - start)
                    start = t
            f[proc] = start + parts[proc]
            clock[proc] = f[proc]
        share = d.index / steps
        r: dict[str, float] = {}
        for proc in ("gpu", "cpu"):
            t = 0.0
            for q, tq in f.items():
                frac = share if q == "gpu" else 1.0 - share
                t = max(t, tq if q == proc else tq + cm.share_ms(u.out_bytes * frac))
            r[proc] = t
        fin.append(f)
        ready.append(r)
        detail.append({"gpu_ms": parts["gpu"], "cpu_ms": parts["cpu"], "wait_ms": waited,
                       "end_ms": max(f.values())})
    if snapshots is not None:
        snapshots.append((dict(clock), fin, ready))
    total = max(clock.values())
    return total, detail


def _grid_states(cm: CostModel) -> list[Decision]:
    out = [Decision("channel", 0), Decision("channel", cm.steps)]
    for dim in cm.dims:
        out += [Decision(dim, i) for i in range(1, cm.steps)]
    return out


def plan(cm: CostModel, refinements: int = 3) -> list[Decision]:
    """The planner: :func:`plan_dp`, re-run with the sync costs of the previous plan's
    non-adjacent producers (branches, residuals), best of those and the single-processor
    plans on the timeline simulation."""
    n = len(cm.units)
    candidates = [[Decision("channel", cm.steps)] * n, [Decision("channel", 0)] * n]
    d = plan_dp(cm)
    candidates.append(d)
    for _ in range(refinements):
        d = plan_dp(cm, prior=d)
        candidates.append(d)
    best = min(candidates, key=lambda c: simulate(cm, c)[0])
    return refine(cm, best)


def refine(cm: CostModel, decisions: Sequence[Decision], sweeps: int = 2) -> list[Decision]:
    """Per-unit local search on the timeline over a few candidates: whole on either side,
    the neighbouring grid points and the unit's own best split of each dimension."""
    cur = list(decisions)
    t, _ = simulate(cm, cur)
    steps = cm.steps
    local_best = {}
    for dim in cm.dims:
        for u in cm.units:
            g, c = cm.times[dim][u.index]
            local_best[(dim, u.index)] = int(np.argmin(np.maximum(g, c)))
    for _ in range(sweeps):
        improved = False
        snaps: list = []
        t, _ = simulate(cm, cur, snapshots=snaps)
        for i, u in enumerate(cm.units):
            keep = before = cur[i]
            cands = {Decision("channel", 0), Decision("channel", steps)}
            cands |= {Decision(dim, local_best[(dim, u.index)]) for dim in cm.dims}
            if u.split_kind is not None:
                cands |= {Decision(keep.dim, j) for j in range(1, steps)}
            for d in cands:
                if d == keep or (d.index in (0, steps) and d.dim != "channel"):
                    continue
                cur[i] = d
                t2, _ = simulate(cm, cur, start=i, prefix=snaps)
                if t2 < t - 1e-9:
                    t, keep, improved = t2, d, True
            cur[i] = keep
            if keep != before:  # later snapshots are stale
                snaps = []
                simulate(cm, cur, snapshots=snaps)
        if not improved:
            break
    return cur


def plan_dp(cm: CostModel, prior: Sequence[Decision] | None = None) -> list[Decision]:
    """DP over units in order with chain transition costs (see module doc); with
    ``prior``, edges from non-adjacent producers are costed with their prior placement."""
    states = _grid_states(cm)
    steps = cm.steps
    n_s = len(states)
    units = cm.units
    if not units:
        return []
    idx = np.array([s.index for s in states])
    on_gpu, on_cpu = idx > 0, idx < steps
    pos = {s: j for j, s in enumerate(states)}

    def own_cost(u: Unit) -> np.ndarray:
        out = np.empty(n_s)
        for j, s in enumerate(states):
            g, c = cm.unit_ms(u.index, s.index, s.dim)
            out[j] = max(g if s.index > 0 else 0.0, c if s.index < steps else 0.0)
        return out

    def crossing(u: Unit, prod: Unit, placed: Decision) -> np.ndarray:
        """Sync/sharing cost, for every state of ``u``, of reading ``prod`` placed as ``placed``."""
        share = placed.index / steps
        t = np.zeros(n_s)
        if placed.index > 0:  # a GPU part exists: states with a CPU side wait for it
            t = np.where(on_cpu, cm.share_ms(prod.out_bytes * share), 0.0)
        if placed.index < steps:
            t = np.maximum(t, np.where(on_gpu, cm.share_ms(prod.out_bytes * (1 - share)), 0.0))
        if _can_follow(u, prod, placed, placed, steps):  # same split: each side keeps its own channels
            t[pos[placed]] = 0.0
        return t

    def fixed_edges(u: Unit) -> np.ndarray:
        extra = np.zeros(n_s)
        if prior is not None:
            for p in u.producers:
                if p != u.index - 1:
                    extra = np.maximum(extra, crossing(u, units[p], prior[p]))
        return extra

    cost = own_cost(units[0])
    back = []
    for i in range(1, len(units)):
        u, prev = units[i], units[i - 1]
        own = own_cost(u) + fixed_edges(u)
        trans = np.zeros((n_s, n_s))  # [previous state, this state]
        if prev.index in u.producers:
            for a in range(n_s):
                trans[a] = crossing(u, prev, states[a])
        tot = cost[:, None] + trans + own[None, :]
        best = np.argmin(tot, axis=0)
        back.append(best)
        cost = tot[best, np.arange(n_s)]
    j = int(np.argmin(cost))
    path = [j]
    for b in reversed(back):
        j = int(b[j])
        path.append(j)
    path.reverse()
    return [states[j] for j in path]


def oracle_search(cm: CostModel, starts: Sequence[Sequence[Decision]] = (), max_sweeps: int = 6
                  ) -> tuple[list[Decision], float]:
    """Exhaustive per-unit grid search on the timeline simulation (see module doc)."""
    states = _grid_states(cm)
    n = len(cm.units)
    candidates = [list(s) for s in starts] + [[Decision("channel", cm.steps)] * n,
                                              [Decision("channel", 0)] * n]
    best_plan, best_t = None, float("inf")
    for plan in candidates:
        t, _ = simulate(cm, plan)
        for _ in range(max_sweeps):
            improved = False
            for i in range(n):
                keep = plan[i]
                for s in states:
                    if s == keep:
                        continue
                    plan[i] = s
                    t2, _ = simulate(cm, plan)
                    if t2 < t - 1e-9:
                        t, keep, improved = t2, s, True
                plan[i] = keep
            if not improved:
                break
        if t < best_t:
            best_plan, best_t = list(plan), t
    return best_plan, best_t
