"""Co-execution planner: per unit, whole on CPU, whole on GPU, or split at a ratio.

- :func:`simulate` scores a plan on a two-processor timeline (DAG-aware: independent
  branches overlap on different processors; a consumer waits for the data it needs,
  paying the synchronisation/sharing cost when the other processor wrote it; per-channel
  consumers of a split producer split the same way continue on their own channels
  without a sync, CoDL's chain idea).
- :func:`plan` is the planner: :func:`plan_dp`, dynamic programming over the topological
  order over the full ratio grid of both split dimensions with the transition costs of
  the edge from the previous unit (linear in the number of units), then
  :func:`refine`, a local search on the timeline that captures what the DP cannot see
  (branches running concurrently on the two processors). Models of up to
  ``SMALL_MODEL_UNITS`` units get the exhaustive per-unit search instead.
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
SMALL_MODEL_UNITS = 64  # up to this many units the planner searches exhaustively per unit


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


class Timeline:
    """The two-processor timeline of a cost model, set up for fast repeated scoring.

    Decisions are coded as ints (``dim * (steps + 1) + index``); per unit it keeps the
    producers, whether the unit may continue on its producer's split without a sync, and
    the GPU/CPU milliseconds of every code. :meth:`run` scores a plan, optionally
    resuming from a base run that shares the first ``start`` decisions.
    """

    def __init__(self, cm: CostModel):
        self.steps = steps = cm.steps
        self.dims = tuple(cm.dims)
        n_codes = len(self.dims) * (steps + 1)
        self.prods = [tuple(u.producers) for u in cm.units]
        self.follow = [u.split_kind in FOLLOW_KINDS for u in cm.units]
        self.sync = cm.sync_ms
        self.per_byte = cm.share_ms_per_mb / 1e6
        # CPU work (not waiting) each time the CPU reads what the GPU wrote: its run of
        # ops is cut there (a new session call, layouts changed back and forth)
        self.cut, self.cut_per_byte = cm.cpu_boundary[0] / 1000.0, cm.cpu_boundary[1] / 1e6
        # measured in planned runs (CostModel.context): more CPU work per cut, a factor on
        # CPU work next to GPU work, the driver's time per GPU launch on the CPU's core
        ctx = cm.context
        self.cut += ctx.get("cpu_us", 0.0) / 1000.0
        self.cut_per_byte += ctx.get("cpu_ms_per_mb", 0.0) / 1e6
        self.cpu_factor = ctx.get("cpu_factor", 1.0)
        self.host = ctx.get("host_us", 0.0) / 1000.0
        self.out_bytes = [u.out_bytes for u in cm.units]
        self.ms: list[list[tuple[float, float]]] = []  # ms[u][code] = (gpu part, cpu part)
        for u in cm.units:
            row = [(0.0, 0.0)] * n_codes
            for di, dim in enumerate(self.dims):
                g, c = cm.times[dim][u.index]
                for i in range(steps + 1):
                    row[di * (steps + 1) + i] = (float(g[i]) if i > 0 else 0.0, float(c[i]) if i < steps else 0.0)
            self.ms.append(row)

    def code(self, d: Decision) -> int:
        """The int code of a decision."""
        return self.dims.index(d.dim) * (self.steps + 1) + d.index

    def decision(self, code: int) -> Decision:
        """The decision of an int code."""
        return Decision(self.dims[code // (self.steps + 1)], code % (self.steps + 1))

    def run(self, codes: Sequence[int], start: int = 0, base: tuple | None = None,
            detail: list | None = None, bound: float = float("inf")) -> tuple[float, tuple | None]:
        """(latency, state) of the plan ``codes``; ``base`` (the state of an earlier run
        whose first ``start`` codes are the same) resumes the timeline at unit ``start``.
        With ``detail``, per-unit timings are appended to it. A run that cannot end
        before ``bound`` (a processor's clock plus the work still queued for it reaches
        it) stops there and returns (inf, None)."""
        steps, s1 = self.steps, self.steps + 1
        n = len(codes)
        ms = self.ms
        if base is None or start == 0:
            start = 0
            clk_g = [0.0] * (n + 1)
            clk_c = [0.0] * (n + 1)
            fin_g, fin_c, rdy_g, rdy_c = [0.0] * n, [0.0] * n, [0.0] * n, [0.0] * n
            # work each processor still has after unit i: with the codes after ``start``
            # unchanged, clock + that is a lower bound of the end (see ``bound``)
            gsuf, csuf = [0.0] * (n + 1), [0.0] * (n + 1)
            for i in range(n - 1, -1, -1):
                g_ms, c_ms = ms[i][codes[i]]
                gsuf[i], csuf[i] = gsuf[i + 1] + g_ms, csuf[i + 1] + c_ms
        else:
            clk_g, clk_c, fin_g, fin_c, rdy_g, rdy_c = (list(a) for a in base[:6])
            gsuf, csuf = base[6], base[7]
        cg, cc = clk_g[start], clk_c[start]
        prods, follow, outb = self.prods, self.follow, self.out_bytes
        sync, per_byte = self.sync, self.per_byte
        cut, cut_per_byte = self.cut, self.cut_per_byte
        cfac, host = self.cpu_factor, self.host
        for i in range(start, n):
            clk_g[i], clk_c[i] = cg, cc
            code = codes[i]
            idx = code % s1
            on_g, on_c = idx > 0, idx < steps
            g_ms, c_ms = ms[i][code]
            fol = follow[i] and on_g and on_c
            sg, sc = cg, cc
            extra_c = 0.0
            for p in prods[i]:
                if fol and codes[p] == code:
                    tg, tc = fin_g[p], fin_c[p]
                else:
                    tg, tc = rdy_g[p], rdy_c[p]
                    if on_c and codes[p] % s1 > 0 and (cut or cut_per_byte):
                        extra_c += cut + cut_per_byte * outb[p]
                if tg > sg:
                    sg = tg
                if tc > sc:
                    sc = tc
            if on_c and (extra_c or on_g):
                c_ms = c_ms * cfac + extra_c
            if on_g and host:
                # the driver enqueues the GPU part on the CPU executor's core (ahead of
                # CPU work, in the runtime's GPU-first order: the GPU does not wait for it)
                cc += host
                if on_c and cc > sc:
                    sc = cc
            share = idx / steps
            if on_g:
                fg = sg + g_ms
                cg = fg
            if on_c:
                fc = sc + c_ms
                cc = fc
            if on_g and on_c:
                rg = max(fg, fc + sync + per_byte * outb[i] * (1.0 - share))
                rc = max(fc, fg + sync + per_byte * outb[i] * share)
                fin_g[i], fin_c[i] = fg, fc
            elif on_g:
                rg, rc = fg, fg + sync + per_byte * outb[i]
                fin_g[i], fin_c[i] = fg, rc
            else:
                rg, rc = fc + sync + per_byte * outb[i], fc
                fin_g[i], fin_c[i] = rg, fc
            rdy_g[i], rdy_c[i] = rg, rc
            if cg + gsuf[i + 1] >= bound or cc + csuf[i + 1] >= bound:
                return float("inf"), None
            if detail is not None:
                waited = max((sg - clk_g[i]) if on_g else 0.0, (sc - clk_c[i]) if on_c else 0.0)
                detail.append({"gpu_ms": g_ms, "cpu_ms": c_ms, "wait_ms": waited,
                               "end_ms": max(fg if on_g else 0.0, fc if on_c else 0.0)})
        clk_g[n], clk_c[n] = cg, cc
        return max(cg, cc), (clk_g, clk_c, fin_g, fin_c, rdy_g, rdy_c, gsuf, csuf)


def simulate(cm: CostModel, decisions: Sequence[Decision]) -> tuple[float, list[dict]]:
    """Predicted latency of a plan on the two-processor timeline, and per-unit timings."""
    tl = Timeline(cm)
    detail: list[dict] = []
    total, _ = tl.run([tl.code(d) for d in decisions], detail=detail)
    return total, detail


def _grid_states(cm: CostModel) -> list[Decision]:
    out = [Decision("channel", 0), Decision("channel", cm.steps)]
    for dim in cm.dims:
        out += [Decision(dim, i) for i in range(1, cm.steps)]
    return out


def plan(cm: CostModel, refinements: int = 3, max_sweeps: int = 10) -> list[Decision]:
    """The planner: :func:`plan_dp`, re-run with the sync costs of the previous plan's
    non-adjacent producers (branches, residuals); the best of those and the
    single-processor plans on the timeline simulation is refined by :func:`refine`, and
    so is the all-GPU plan (a start from which branches move to the CPU one at a time);
    a last local search tries every grid point of every unit."""
    n = len(cm.units)
    tl = Timeline(cm)
    all_gpu, all_cpu = [Decision("channel", cm.steps)] * n, [Decision("channel", 0)] * n
    candidates = [all_gpu, all_cpu]
    d = plan_dp(cm)
    candidates.append(d)
    for _ in range(refinements):
        d = plan_dp(cm, prior=d)
        candidates.append(d)
    score = lambda c: tl.run([tl.code(x) for x in c])[0]  # noqa: E731
    best = min(candidates, key=score)
    if n <= SMALL_MODEL_UNITS:  # small enough for the exhaustive per-unit search
        return oracle_search(cm, starts=[best], max_sweeps=max_sweeps, tl=tl)[0]
    outs = [refine(cm, best, max_sweeps, tl)]
    if best != all_gpu:
        outs.append(refine(cm, all_gpu, max_sweeps, tl))
    # then the whole grid from the better result (cheap: most candidates are cut short
    # by the bound), reaching what the coarse candidates skipped
    codes = [tl.code(s) for s in _grid_states(cm)]
    cur, _ = _local_search(tl, [tl.code(d) for d in min(outs, key=score)], lambda i, keep: codes, max_sweeps)
    return [tl.decision(c) for c in cur]


def _local_search(tl: Timeline, codes: list[int], cands_of, max_sweeps: int) -> tuple[list[int], float]:
    """Coordinate descent on the timeline: per unit in order, the best of its candidate
    codes with the others fixed, until a sweep changes nothing (or ``max_sweeps``)."""
    cur = list(codes)
    t, base = tl.run(cur)
    for _ in range(max_sweeps):
        improved = False
        for i in range(len(cur)):
            keep = before = cur[i]
            for c in cands_of(i, keep):
                if c == keep:
                    continue
                cur[i] = c
                t2, _ = tl.run(cur, start=i, base=base, bound=t - 1e-9)
                if t2 < t - 1e-9:
                    t, keep, improved = t2, c, True
            cur[i] = keep
            if keep != before:  # the base timeline from here on is stale
                t, base = tl.run(cur)
        if not improved:
            break
    return cur, t


def refine(cm: CostModel, decisions: Sequence[Decision], max_sweeps: int = 10,
           tl: Timeline | None = None) -> list[Decision]:
    """Per-unit local search on the timeline over a few candidates: whole on either side,
    the unit's own best split of each dimension, and grid points of its current
    dimension (the neighbours of its current split, or a coarse grid when it runs
    whole). The oracle tries every grid point of every dimension."""
    tl = tl or Timeline(cm)
    steps, s1 = cm.steps, cm.steps + 1
    whole = (tl.code(Decision("channel", 0)), tl.code(Decision("channel", steps)))
    own_best = []
    for u in cm.units:
        best = set(whole)
        if u.split_kind is not None:
            for di, dim in enumerate(tl.dims):
                g, c = cm.times[dim][u.index]
                j = int(np.argmin(np.maximum(g, c)))
                if 0 < j < steps:
                    best.add(di * s1 + j)
        own_best.append(tuple(best))

    def cands_of(i: int, keep: int) -> list[int]:
        if cm.units[i].split_kind is None:
            return list(whole)
        dim0, j0 = (keep // s1) * s1, keep % s1
        if 0 < j0 < steps:  # around the current split
            near = {j0 + k for k in (-4, -2, -1, 1, 2, 4)}
        else:  # a coarse grid; the neighbours follow in later sweeps once it splits
            near = {steps // 8, steps // 4, steps // 2, steps - steps // 4, steps - steps // 8}
        return list(own_best[i]) + [dim0 + j for j in near if 0 < j < steps]

    cur, _ = _local_search(tl, [tl.code(d) for d in decisions], cands_of, max_sweeps)
    return [tl.decision(c) for c in cur]


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


def oracle_search(cm: CostModel, starts: Sequence[Sequence[Decision]] = (), max_sweeps: int = 10,
                  tl: Timeline | None = None) -> tuple[list[Decision], float]:
    """Exhaustive per-unit grid search on the timeline simulation (see module doc), from
    ``starts``, the all-GPU and the all-CPU plans."""
    tl = tl or Timeline(cm)
    codes = [tl.code(s) for s in _grid_states(cm)]
    n = len(cm.units)
    candidates = [list(s) for s in starts] + [[Decision("channel", cm.steps)] * n, [Decision("channel", 0)] * n]
    best_plan, best_t = None, float("inf")
    for start in candidates:
        cur, t = _local_search(tl, [tl.code(d) for d in start], lambda i, keep: codes, max_sweeps)
        if t < best_t:
            best_plan, best_t = [tl.decision(c) for c in cur], t
    return best_plan, best_t
