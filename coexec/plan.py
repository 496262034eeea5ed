"""Plans: make one from a model and a device's profiles; the versioned JSON format."""

from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from oplat.errors import OplatError
from oplat.profile import Profile, load_profile

from .cost import GPU_ALIGN, SYNC_US, CostModel, build_units
from .planner import Decision, oracle_search, plan, simulate

PLAN_FORMAT = 1


class PlanError(OplatError):
    """A plan that does not fit the model or the profiles."""


def model_hash(path: str | os.PathLike) -> str:
    """sha256 of the model file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_profiles(device: str) -> tuple[str, str]:
    """(CPU, GPU) profile ids used for ``--device``.

    The CPU side is the fp32 core set with the most threads on the big and medium cores
    (the cores a co-execution runtime pins its CPU worker to), the GPU side the GPU.
    """
    import re

    from oplat.profile import list_profiles

    best, best_key = f"{device}/tflite-cpu-1large", (-1, -1)
    for pid, _ in list_profiles():
        m = re.fullmatch(rf"{re.escape(device)}/tflite-cpu-((?:\d+(?:large|med))+)", pid)
        if m:
            counts = [int(n) for n in re.findall(r"(\d+)(?:large|med)", m.group(1))]
            key = (sum(counts), int("large" in m.group(1)))
            if key > best_key:
                best, best_key = pid, key
    return best, f"{device}/tflite-gpu"


def check_pair(cpu: Profile, gpu: Profile, allow_mixed: bool = False) -> None:
    """Refuse a CPU and GPU profile of different devices (unless ``allow_mixed``)."""
    if cpu.meta.get("processor") != "cpu" or gpu.meta.get("processor") != "gpu":
        raise PlanError(f"--cpu-profile must be a CPU profile and --gpu-profile a GPU profile "
                        f"(got {cpu.id} [{cpu.meta.get('processor')}], {gpu.id} [{gpu.meta.get('processor')}])")
    if cpu.meta.get("device") != gpu.meta.get("device") and not allow_mixed:
        raise PlanError(f"profiles of different devices: {cpu.id} and {gpu.id} (use --allow-mixed to plan anyway)")


def make_plan(model: str | os.PathLike, cpu_profile: str | Profile, gpu_profile: str | Profile,
              sync_us: float = SYNC_US["svm"], steps: int = 16, dims: Sequence[str] = ("channel", "row"),
              share_ms_per_mb: float = 0.0, allow_mixed: bool = False, oracle: bool = False,
              input_shapes: Mapping[str, Sequence[int]] | None = None, min_gain: float | None = 0.0,
              use_context: bool = True) -> dict[str, Any]:
    """Plan co-execution of ``model`` on the device of the two profiles (a JSON-able dict).

    A CPU profile that carries measured ``boundary`` costs (``coexec boundary``) adds
    what cutting its executor's work costs to the CPU's work wherever it reads GPU output,
    and what reading device-written data costs (``crossing``) to every synchronisation.
    A CPU profile whose boundary costs carry ``context`` (measured planned runs, see
    :func:`coexec.calibration.fit_context`) adds those too, unless ``use_context`` is
    false (how they are measured). ``min_gain``: a plan predicted to beat the faster
    processor alone by less than this fraction is replaced by that processor alone (a gain smaller than the
    profiles' error is a coin toss); None: the overestimate measured with the context
    costs (``min_gain`` in them), else 0.
    """
    from oplat.model_io import load_model

    cpu = cpu_profile if isinstance(cpu_profile, Profile) else load_profile(cpu_profile)
    gpu = gpu_profile if isinstance(gpu_profile, Profile) else load_profile(gpu_profile)
    check_pair(cpu, gpu, allow_mixed)
    elsewhere = {p.id: why for p in (cpu, gpu) if (why := p.measured_elsewhere())}
    graph = load_model(model, input_shapes)
    t0 = time.perf_counter()
    units = build_units(graph, gpu, cpu)
    boundary = cpu.meta.get("boundary") or {}
    b_us, b_mb = float(boundary.get("us", 0.0)), float(boundary.get("ms_per_mb", 0.0))
    cross = boundary.get("crossing") or {}  # data moving between the processors' caches
    x_us, x_mb = float(cross.get("us", 0.0)), float(cross.get("ms_per_mb", 0.0))
    # channel splits in blocks both processors work in (onnxruntime's NCHWc convs take 8
    # channels at a time on AVX2: 26 output channels cost what 32 do)
    align = math.lcm(GPU_ALIGN, int(cpu.meta.get("channel_align", 1)), int(gpu.meta.get("channel_align", 1)))
    context = (boundary.get("context") or {}) if use_context else {}
    if min_gain is None:
        min_gain = float(context.get("min_gain") or 0.0)
    # the boundary cost is CPU work at every cut (Timeline), the crossing cost latency
    cm = CostModel(units, gpu, cpu, steps=steps, sync_us=sync_us + x_us, share_ms_per_mb=share_ms_per_mb + x_mb,
                   dims=dims, cpu_boundary=(b_us, b_mb), channel_align=align, context=context)
    decisions = plan(cm)
    planned, detail = simulate(cm, decisions)
    cpu_ms, _ = simulate(cm, [Decision("channel", 0)] * len(units))
    gpu_ms, _ = simulate(cm, [Decision("channel", steps)] * len(units))
    kept_single = planned * (1.0 + min_gain) > min(cpu_ms, gpu_ms)
    if kept_single:
        decisions = [Decision("channel", steps if gpu_ms <= cpu_ms else 0)] * len(units)
        planned, detail = simulate(cm, decisions)
    seconds = time.perf_counter() - t0
    ops = []
    fast_is_gpu = gpu_ms <= cpu_ms
    for u, d, det in zip(units, decisions, detail):
        place = d.placement(steps)
        whole_gpu = cm.unit_ms(u.index, steps)[0]
        whole_cpu = cm.unit_ms(u.index, 0)[1]
        spent = max(det["gpu_ms"], det["cpu_ms"]) + det["wait_ms"]
        ops.append({"name": u.name, "kernel": u.gpu.type, "sources": u.sources, "placement": place,
                    "dimension": d.dim if place == "split" else None,
                    "ratio": round(d.index / steps, 6), "splittable": u.split_kind is not None,
                    "note": u.note or (None if u.split_kind else "runs whole: no split rule for this kernel"),
                    "predicted_gpu_ms": round(det["gpu_ms"], 5), "predicted_cpu_ms": round(det["cpu_ms"], 5),
                    "predicted_sync_ms": round(det["wait_ms"], 5),
                    "whole_gpu_ms": _num(whole_gpu), "whole_cpu_ms": _num(whole_cpu),
                    "saved_ms": _num((whole_gpu if fast_is_gpu else whole_cpu) - spent)})
    best_single = min(cpu_ms, gpu_ms)
    out = {"format": PLAN_FORMAT, "model": Path(model).name, "model_sha256": model_hash(model),
            "device": gpu.meta.get("device"), "profiles": {"cpu": cpu.id, "gpu": gpu.id},
            "sync_us": sync_us, "share_ms_per_mb": share_ms_per_mb, "steps": steps, "dims": list(dims),
            "boundary_us": b_us, "boundary_ms_per_mb": b_mb, "crossing_us": x_us, "crossing_ms_per_mb": x_mb,
            "min_gain": min_gain, "channel_align": align, "context": cm.context,
            # profiles of another machine than the one planning (host profiles moved)
            "profiles_measured_elsewhere": elsewhere,
            "kept_single": bool(kept_single and min_gain > 0),
            # None: some op has no kernel on that processor (it cannot run the model alone)
            "predicted_ms": {k: round(v, 4) if np.isfinite(v) else None
                             for k, v in (("cpu", cpu_ms), ("gpu", gpu_ms), ("coexec", planned))},
            "speedup": round(best_single / planned, 4) if planned > 0 else 1.0,
            "faster_single": "cpu" if cpu_ms < gpu_ms else "gpu",
            "split_share": round(sum(o["placement"] == "split" for o in ops) / max(len(ops), 1), 4),
            "planner_seconds": round(seconds, 4),
            # kernel types a profile has no regressor for, costed by proxy (see CostModel._predict)
            "approximated_kernels": cm.approximated, "ops": ops}
    if oracle:
        _, t_or = oracle_search(cm, starts=[decisions])
        out["oracle_ms"] = round(t_or, 4)
    return out


def forced_plan(plan: Mapping[str, Any], ratio: float = 0.5) -> dict[str, Any]:
    """A copy of ``plan`` splitting every splittable op at ``ratio``, convolutions by rows and
    channels in turn, the rest by channels: what a split model must survive (it computes
    what the original does, whatever the plan)."""
    forced = copy.deepcopy(dict(plan))
    for i, op in enumerate(forced["ops"]):
        if op["splittable"]:
            op["placement"], op["ratio"] = "split", ratio
            op["dimension"] = "row" if i % 2 and op["kernel"] in ("CONV_2D", "DEPTHWISE_CONV_2D") else "channel"
    return forced


def _num(x: float, nd: int = 5) -> float | None:
    """JSON-safe rounding: None where an op cannot run on that processor (infinite cost)."""
    return round(float(x), nd) if np.isfinite(x) else None


def validate_plan(plan: Mapping[str, Any], model: str | os.PathLike | None = None) -> None:
    """Check the plan's format, ratios and (given the model file) its model hash."""
    if plan.get("format") != PLAN_FORMAT:
        raise PlanError(f"plan format {plan.get('format')!r} is not {PLAN_FORMAT}")
    for op in plan.get("ops", []):
        r = op.get("ratio")
        if not isinstance(r, (int, float)) or not 0.0 <= r <= 1.0:
            raise PlanError(f"plan op {op.get('name')!r}: ratio {r!r} outside [0, 1]")
        if op.get("placement") not in ("cpu", "gpu", "split"):
            raise PlanError(f"plan op {op.get('name')!r}: placement {op.get('placement')!r} is not cpu, gpu or split")
    if model is not None and plan.get("model_sha256") != model_hash(model):
        raise PlanError(f"plan was made for another model (sha256 {str(plan.get('model_sha256'))[:12]}..., "
                        f"{Path(model).name} is {model_hash(model)[:12]}...)")
