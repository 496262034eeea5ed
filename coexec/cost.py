"""Cost model of CPU/GPU co-execution, from a device's CPU and GPU latency profiles.

A *unit* is one kernel the GPU delegate launches (a convolution with the element-wise
ops linked into it, a pool, a fully connected layer, ...); the CPU path's kernels are
mapped onto the units through the ONNX nodes they come from. For a unit run with a
fraction ``r`` of its output channels (or output rows) on the GPU:

- ``t_gpu(r)``: the GPU profile predicts the *partial* kernel, its channel count
  rounded to the GPU's 4-channel slices (the regressors see the real partial shape, and
  a 3x3 conv can leave or enter Winograd territory);
- ``t_cpu(1 - r)``: the CPU profile predicts the CPU kernels of the unit with the
  remaining channels (or rows);
- synchronisation: a consumer reading data the other processor wrote waits for its
  completion flag (``sync_us``: microseconds with SVM polling, about a millisecond with
  event waits) and, without unified memory, pays for making those bytes visible.

Kernels a profile has no regressor for (GPU glue such as an unlinked HardSwish) are
costed with that profile's end-to-end glue terms (per-op and per-MB coefficients).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from oplat.ir import Graph
from oplat.lowering import Kernel
from oplat.lowering.classify import winograd_suitable
from oplat.profile import Profile

GPU_ALIGN = 4  # GPU kernels work on slices of 4 channels
SYNC_US = {"svm": 10.0, "event": 1000.0}
# the measured context costs the timeline uses (CostModel's ``context``)
CONTEXT_KEYS = ("cpu_factor", "cpu_us", "cpu_ms_per_mb", "gpu_factor", "host_us")


@dataclass
class Unit:
    """One planning unit: a GPU kernel and the CPU kernels of the same ONNX nodes."""

    index: int
    gpu: Kernel
    cpu: list[Kernel]
    sources: list[str]
    inputs: list[str]
    outputs: list[str]
    split_kind: str | None  # conv, group, depthwise, fc, bmm, rows, eltwise, pool, mean; None: whole only
    channels: int  # size of the channel-split dimension
    rows: int  # output rows (row split)
    out_bytes: float
    note: str = ""
    producers: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.gpu.name


# kernels the graph splitter (coexec.split) can cut in two; the rest run whole
SPLITTABLE = ("conv", "group", "depthwise", "fc", "pool", "mean")


def _split_kind(k: Kernel) -> tuple[str | None, int]:
    p = k.params
    t = k.type
    if t == "CONV_2D":
        return "conv", int(p.get("Filter", 1))
    if t == "CONV_2D_GROUP":
        return "group", int(p.get("Group", 1))
    if t == "DEPTHWISE_CONV_2D":
        return "depthwise", int(p.get("Input_channel", 1))
    if t == "FULLY_CONNECTED":
        return "fc", int(p.get("Filter", 1))
    if t == "BATCH_MATMUL":
        return "bmm", int(p.get("N", 1))
    if t in ("SOFTMAX", "LAYER_NORM"):
        return "rows", int(p.get("Rows", 1))
    if t in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        return "pool", int(p.get("Input_channel", 1))
    if t == "MEAN":
        return "mean", int(p.get("Input_channel", 1))
    if "Output_elements" in p and t not in ("RESHAPE", "TRANSPOSE", "CONCATENATION") and t not in (
            "PAD", "SLICE", "SPLIT", "RESIZE", "GATHER"):
        shape = p.get("Output_shape") or ()
        return "eltwise", int(shape[1]) if len(shape) >= 2 else int(p.get("Output_elements", 1))
    return None, 1


def _out_rows(k: Kernel) -> int:
    p = k.params
    if k.type in ("CONV_2D", "CONV_2D_GROUP", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D"):
        return int(p.get("Output_shape", 1) or 1)
    return 1


def scale_kernel(k: Kernel, kind: str, part: int, total: int, dim: str = "channel",
                 variant: str | None = None) -> tuple[str, str, dict[str, Any], list[str]]:
    """The ``(type, impl, params, linked)`` item of the part of ``k`` that computes ``part``
    of ``total`` channels (or output rows with ``dim="row"``)."""
    p = dict(k.params)
    f = part / max(total, 1)
    impl = k.impl
    if dim == "row" and kind in ("conv", "group", "depthwise", "pool"):
        ho = int(p.get("Output_shape", 1) or 1)
        s, kk = int(p.get("Stride", 1) or 1), int(p.get("Kernel", 1) or 1)
        p["Output_shape"] = part
        p["Input_shape"] = min(int(p.get("Input_shape", ho) or ho), (part - 1) * s + kk)  # rows plus halo
        if "FLOPS" in p:
            p["FLOPS"] = p["FLOPS"] * part / max(ho, 1)
    elif kind == "conv":
        p["Filter"] = part
        p["FLOPS"] = p.get("FLOPS", 0) * f
    elif kind == "group":
        g = max(int(p.get("Group", 1)), 1)
        p["Input_channel"] = int(p["Input_channel"]) * part // g
        p["Filter"] = int(p["Filter"]) * part // g
        p["Group"] = part
        p["FLOPS"] = p.get("FLOPS", 0) * f
    elif kind in ("depthwise", "pool", "mean"):
        p["Input_channel"] = part
        if kind == "mean":
            p["Output_shape"] = part
        if "FLOPS" in p:
            p["FLOPS"] = p["FLOPS"] * f
    elif kind == "fc":
        p["Filter"] = part
        p["FLOPS"] = p.get("FLOPS", 0) * f
    elif kind == "bmm":
        p["N"] = part
        p["FLOPS"] = p.get("FLOPS", 0) * f
    elif kind == "rows":
        p["Rows"] = part
    elif kind == "eltwise":
        for key in ("Output_elements", "Input_elements"):
            if key in p:
                p[key] = max(int(round(p[key] * f)), 1)
        shape = list(p.get("Output_shape") or ())
        if len(shape) >= 2:
            shape[1] = part
            p["Output_shape"] = tuple(shape)
    if variant is not None and k.type == "CONV_2D" and impl in ("winograd", "convolution_2d"):
        impl = "winograd" if winograd_suitable(int(p.get("Kernel", 1)), int(p.get("Stride", 1)),
                                               int(p.get("Dilation", 1)), int(p["Input_channel"]),
                                               int(p["Filter"]), int(p["Output_shape"]),
                                               int(p.get("Output_w", p["Output_shape"])), variant) \
            else "convolution_2d"
    return k.type, impl, p, list(k.linked)


def _traffic_mb(k: Kernel) -> float:
    p = k.params
    return (p.get("Output_elements", 0) + p.get("Input_elements", 0)) * 2 / 1e6


def _out_bytes(k: Kernel) -> float:
    p = k.params
    if "Output_elements" in p:
        return 4.0 * p["Output_elements"]
    if k.type == "FULLY_CONNECTED":
        return 4.0 * p.get("Filter", 1) * p.get("Output_shape", 1)
    if k.type == "BATCH_MATMUL":
        return 4.0 * p.get("Batch", 1) * p.get("M", 1) * p.get("N", 1)
    if k.type in ("SOFTMAX", "LAYER_NORM"):
        return 4.0 * p.get("Rows", 1) * p.get("Cols", 1)
    if k.type == "MEAN":
        return 4.0 * p.get("Input_channel", 1)
    ho = p.get("Output_shape", 1) or 1
    c = p.get("Filter", p.get("Input_channel", 1))
    if k.type == "DEPTHWISE_CONV_2D":
        c = p.get("Input_channel", 1) * p.get("Filter", 1)
    return 4.0 * ho * (p.get("Output_w", ho) or ho) * c


def build_units(graph: Graph, gpu: Profile, cpu: Profile) -> list[Unit]:
    """Lower ``graph`` for both processors and group the CPU kernels by GPU kernel."""
    glm, clm = gpu.lower(graph), cpu.lower(graph)
    owner: dict[str, int] = {}
    units: list[Unit] = []
    for i, k in enumerate(glm.kernels):
        kind, ch = _split_kind(k)
        units.append(Unit(i, k, [], list(k.sources), list(k.inputs), list(k.outputs), kind, ch,
                          _out_rows(k), _out_bytes(k)))
        for s in k.sources:
            owner[s] = i
    last = 0
    for k in clm.kernels:
        idx = next((owner[s] for s in k.sources if s in owner), last)
        units[idx].cpu.append(k)
        last = idx
    # every tensor a unit's ONNX nodes write; a unit depends on whatever writes the
    # inputs of any of its nodes (a linked residual Add reads the other branch's output,
    # which its kernel's own input list does not show)
    producer: dict[str, int] = {}
    for u in units:
        for t in u.outputs:
            producer[t] = u.index
        for s in u.sources:
            if s in graph:
                for t in graph.op(s).outputs:
                    producer.setdefault(t, u.index)
    for u in units:
        ins = set(u.inputs)
        for s in u.sources:
            if s in graph:
                ins.update(graph.op(s).inputs)
        u.producers = sorted({producer[t] for t in ins if t in producer and producer[t] != u.index})
        if u.split_kind not in SPLITTABLE:
            u.note = f"no split rule for {u.gpu.type}" if u.split_kind else ""
            u.split_kind = None
        elif u.gpu.type == "FULLY_CONNECTED" and not u.gpu.params.get("Weights_const", 1):
            u.split_kind, u.note = None, "weights are not constant"
        else:
            # the CPU kernels of the unit must split the same way (same output channels)
            if any(_split_kind(c)[0] is None and c.type != "RESHAPE" for c in u.cpu):
                u.split_kind, u.note = None, "a CPU kernel of this unit cannot be split"
    return units


class CostModel:
    """Predicted milliseconds of every unit at every split ratio of a grid."""

    def __init__(self, units: Sequence[Unit], gpu: Profile, cpu: Profile, steps: int = 16,
                 sync_us: float = SYNC_US["svm"], share_ms_per_mb: float = 0.0,
                 dims: Sequence[str] = ("channel",), cpu_boundary: tuple[float, float] = (0.0, 0.0),
                 channel_align: int = GPU_ALIGN, context: Mapping[str, float] | None = None) -> None:
        """``context``: what planned runs cost on the executors beyond per-op predictions
        (``coexec boundary`` with ``--gpu-cores``, :func:`coexec.calibration.fit_context`):
        a factor on CPU work that reads GPU output or is half of a split (``cpu_factor``),
        CPU work per such cut (``cpu_us``, ``cpu_ms_per_mb`` of what it reads), a factor
        on GPU kernels (``gpu_factor``) and the driver's time per GPU launch (``host_us``,
        spent on the CPU executor's core). ``channel_align``: channel splits give the GPU a
        multiple of this (GPU slices of 4; more when the CPU kernels work in wider channel
        blocks). ``cpu_boundary``: (us,
        ms per MB of output) that each op's CPU time, measured as a single-op model,
        carries for being cut out of its graph (session call, layout changes); inside a
        run of CPU ops it is not paid, so it is taken off each CPU op (never below a fifth
        of it) and the planner's timeline adds it to the CPU's work wherever it reads
        what the GPU wrote."""
        self.units = list(units)
        self.cpu_boundary = cpu_boundary
        self.context = {k: float(v) for k, v in (context or {}).items() if k in CONTEXT_KEYS}
        self.channel_align = channel_align
        self.gpu, self.cpu = gpu, cpu
        self.steps = steps
        self.sync_ms = sync_us / 1000.0
        self.share_ms_per_mb = share_ms_per_mb
        self.dims = tuple(dims)
        self.ratios = np.linspace(0.0, 1.0, steps + 1)
        self._glue_cost = {prof.id: _glue_coefs(prof) for prof in (gpu, cpu)}
        self.approximated: dict[str, dict[str, int]] = {gpu.id: {}, cpu.id: {}}
        # times[dim][u] = (gpu_ms[r], cpu_ms[r]) over the ratio grid (r = GPU share)
        self.times: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        for dim in self.dims:
            self._tabulate(dim)

    def _parts(self, u: Unit, dim: str) -> tuple[np.ndarray, int]:
        total = u.rows if dim == "row" else u.channels
        if u.split_kind is None or total < 2 or (dim == "row" and u.split_kind not in
                                                  ("conv", "group", "depthwise", "pool")):
            return np.array([0] + [-1] * (self.steps - 1) + [total]), total
        align = self.channel_align if dim == "channel" and u.split_kind in ("conv", "fc", "depthwise", "bmm") else 1
        g = np.round(self.ratios * total / align) * align
        g = np.clip(g, 0, total).astype(int)
        g[0], g[-1] = 0, total
        return g, total

    def _tabulate(self, dim: str) -> None:
        gitems, citems, gidx, cidx = [], [], [], []
        parts_all = []
        fam = self.gpu.variant
        for ui, u in enumerate(self.units):
            parts, total = self._parts(u, dim)
            parts_all.append(parts)
            # each CPU kernel's split kind and size along ``dim``, once per unit
            cpu = [(c, _split_kind(c)) for c in u.cpu if c.type != "RESHAPE"]
            cpu = [(c, kind or "whole", size if dim == "channel" else _out_rows(c)) for c, (kind, size) in cpu]
            for ri, gp in enumerate(parts):
                if gp < 0:
                    continue
                cp = total - gp
                if gp > 0:
                    kind = u.split_kind or "whole"
                    gitems.append(scale_kernel(u.gpu, kind, gp, total, dim, fam) if gp < total else
                                  (u.gpu.type, u.gpu.impl, u.gpu.params, list(u.gpu.linked)))
                    gidx.append((ui, ri))
                if cp > 0:
                    for c, ckind, ctotal in cpu:
                        cpart = ctotal if cp == total else max(1, round(ctotal * cp / total))
                        citems.append(scale_kernel(c, ckind, cpart, ctotal, dim) if cp < total else
                                      (c.type, c.impl, c.params, list(c.linked)))
                        cidx.append((ui, ri))
        gms = self._predict(self.gpu, gitems)
        cms = self._predict(self.cpu, citems)
        n = len(self.units)
        g_t = np.full((n, self.steps + 1), np.inf)
        c_t = np.full((n, self.steps + 1), np.inf)
        for ui, parts in enumerate(parts_all):
            valid = parts >= 0
            g_t[ui, valid] = 0.0
            c_t[ui, valid] = 0.0
        gf = self.context.get("gpu_factor", 1.0)
        for (ui, ri), v in zip(gidx, gms):
            g_t[ui, ri] += v * gf
        b_ms, b_mb = self.cpu_boundary[0] / 1000.0, self.cpu_boundary[1]
        for (ui, ri), v, item in zip(cidx, cms, citems):
            if b_ms or b_mb:
                v = max(v - b_ms - b_mb * _out_bytes(Kernel("", item[0], item[1], item[2])) / 1e6, 0.2 * v)
            c_t[ui, ri] += v
        self.times[dim] = [(g_t[i], c_t[i]) for i in range(n)]

    def _predict(self, prof: Profile, items: list) -> np.ndarray:
        """Milliseconds of each item; kernels without a regressor in ``prof`` get a proxy
        (a batched matmul as the fully connected kernel of the same GEMM, softmax and
        layer norm as element-wise work, other glue from the end-to-end glue terms),
        counted in :attr:`approximated`."""
        if not items:
            return np.zeros(0)
        ms = prof.predict_kernels(items)
        missing = np.flatnonzero(np.isnan(ms))
        if len(missing) and prof.meta.get("runs_only_predicted_kernels"):
            # an executor with kernels for only some ops (the host OpenCL runtime): the
            # others cannot run there at all
            ms[missing] = np.inf
            return ms
        if len(missing):
            proxies = [_proxy(items[i]) for i in missing]
            ms[missing] = prof.predict_kernels(proxies)
        per_op, per_mb = self._glue_cost[prof.id]
        for i in missing:
            typ, _, params, _ = items[i]
            if typ != "RESHAPE":
                self.approximated[prof.id][typ] = self.approximated[prof.id].get(typ, 0) + 1
            if np.isnan(ms[i]):
                ms[i] = 0.0 if typ == "RESHAPE" else per_op + per_mb * _traffic_mb(Kernel("", typ, "", params))
        return ms

    def unit_ms(self, u: int, ratio_index: int, dim: str = "channel") -> tuple[float, float]:
        """(GPU ms, CPU ms) of unit ``u`` at grid point ``ratio_index`` (GPU share)."""
        g, c = self.times[dim][u]
        return float(g[ratio_index]), float(c[ratio_index])

    def share_ms(self, nbytes: float) -> float:
        """Cost of making ``nbytes`` written by one processor visible to the other."""
        return self.sync_ms + self.share_ms_per_mb * nbytes / 1e6


def _proxy(item: tuple) -> tuple:
    typ, impl, p, linked = item
    if typ == "BATCH_MATMUL":
        rows = int(p.get("Batch", 1)) * int(p.get("M", 1))
        return ("FULLY_CONNECTED", "fully_connected",
                {"Input_shape": rows, "Input_channel": p.get("K", 1), "Output_shape": rows, "Filter": p.get("N", 1),
                 "FLOPS": p.get("FLOPS", 0)}, [])
    if typ in ("SOFTMAX", "LAYER_NORM"):
        e = int(p.get("Rows", 1)) * int(p.get("Cols", 1))
        return (typ, "eltwise", {"Output_elements": e, "Input_elements": e,
                                 "Output_shape": (p.get("Rows", 1), p.get("Cols", 1)), "Inputs": 1}, [])
    if "Output_elements" in p:
        return (typ, "eltwise", p, [])
    return item


def _glue_coefs(prof: Profile) -> tuple[float, float]:
    ov = prof.meta.get("overhead") or {}
    coef, feats = ov.get("coef"), ov.get("features") or []
    if not coef:
        return 0.005, 0.0
    get = {f: c for f, c in zip(feats, coef)}
    return float(get.get("glue_ops", 0.0)), float(get.get("glue_mb", 0.0))
