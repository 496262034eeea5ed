"""Calibration and validation of co-execution against real runs: a plan run for real
against its predictions (``run_plan``), the cost of a CPU/GPU boundary and of crossing
between the executors (``coexec boundary``), and the context costs a plan pays beyond its
per-op predictions, fitted from planned runs."""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from oplat.fitting import nnls
from oplat.machine import pinned

from .graph_runner import GraphRunner
from .layers import max_rel_err
from .opencl import OclExecutor


def run_plan(model_path: str, plan: dict[str, Any], runs: int = 10, sync: str = "svm",
             cpu_cores: Sequence[int] | None = None, gpu_cores: Sequence[int] | None = None,
             cpu_only: bool = False, seed: int = 0) -> dict[str, Any]:
    """CPU-only, GPU-only and planned co-execution of a whole model, measured side by side
    (interleaved runs, medians), outputs checked against onnxruntime on the original."""
    import onnxruntime as ort

    from .errors import RuntimeUnavailable
    from .split import fold_batchnorm, split_model

    ncpu = os.cpu_count() or 1
    gpu_cores = list(gpu_cores) if gpu_cores else [ncpu - 1]
    cpu_cores = list(cpu_cores) if cpu_cores else [c for c in range(ncpu) if c not in gpu_cores] or [0]
    split, kept = split_model(model_path, plan)
    original = onnx.load(model_path)
    folded = fold_batchnorm(original)  # as in the split model (and in every runtime)
    ocl = None
    if not cpu_only:
        try:
            ocl = OclExecutor(gpu_cores)
        except RuntimeUnavailable as e:
            raise RuntimeUnavailable(f"{e} (use --cpu-only to run on the CPU executor alone)") from None
    runners = {"cpu": GraphRunner(folded, ocl, cpu_cores, sync, force="cpu")}
    if ocl is not None:
        runners["gpu"] = GraphRunner(folded, ocl, cpu_cores, sync, force="gpu")
        sides = {o.get("placement") for o in plan.get("ops", [])}
        # a plan that keeps every op on one processor runs as that executor does: the
        # same runner (a second onnxruntime session of the same graph can differ by
        # several percent for where its buffers landed, which is not the plan's doing)
        single = next(iter(sides)) if len(sides) == 1 and sides <= {"cpu", "gpu"} else None
        runners["planned"] = runners[single] if single else GraphRunner(split, ocl, cpu_cores, sync)
    rng = np.random.default_rng(seed)
    sess = ort.InferenceSession(original.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
             for i in sess.get_inputs()}
    ref = sess.run(None, feeds)
    errs = {}
    for name, r in runners.items():
        out = r.run(feeds)["outputs"]
        got = [out[o] for o in r.outputs]
        errs[name] = max(max_rel_err(g, e) for g, e in zip(got, ref))
    times: dict[str, list[float]] = {k: [] for k in runners}
    syncs: list[float] = []
    orders = list(itertools.permutations(runners))
    for i in range(runs):  # interleaved: drift on a shared machine hits all three alike
        # every order in turn: a run right after the OpenCL runner's is slower (3-13% for
        # the very same CPU runner here), so no runner may keep that place or its neighbour
        for name in orders[i % len(orders)]:
            r = runners[name]
            # the run before warms this runner's caches (the other runners' runs evicted
            # them): each time is that of back-to-back inferences, whatever ran before
            r.run(feeds)
            res = r.run(feeds)
            times[name].append(res["seconds"])
            if name == "planned":
                syncs.append(res["sync_seconds"])
    med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    detail = runners.get("planned", runners["cpu"]).run(feeds, record=True)["ops"]
    # the OpenCL kernels of the GPU-only run, each whole: their measured time against the
    # GPU profile's prediction of the whole op (the profile's accuracy in context)
    gpu_kernels = ([o for o in runners["gpu"].run(feeds, record=True)["ops"] if o["on"] == "gpu"]
                   if "gpu" in runners else [])
    # plan op of every node of the split graph (a part "X/gpu" belongs to plan op X)
    plan_op = {s: o for o in plan.get("ops", []) for s in o.get("sources") or [o["name"]]}
    out = {"model": os.path.basename(model_path), "plan_profiles": plan.get("profiles"), "sync": sync,
           "cpu_cores": cpu_cores, "gpu_cores": gpu_cores, "device": ocl.device.name if ocl else None, "runs": runs,
           "cpu_ms": med["cpu"], "gpu_ms": med.get("gpu"), "planned_ms": med.get("planned"),
           # the runner the planned runs used: "cpu"/"gpu" when the plan keeps every op there
           "planned_runner": (single or "split") if ocl is not None else None,
           "runs_ms": {k: [round(t * 1e3, 4) for t in v] for k, v in times.items()},
           "planned_sync_ms": float(np.median(syncs)) * 1e3 if syncs else None,
           "max_rel_err": errs, "outputs_match": all(v <= 1e-4 for v in errs.values()),
           "gpu_fallback": runners["planned"].gpu_fallback if "planned" in runners else [],
           # "GPU only" runs on the CPU what has no OpenCL kernel (depthwise, pools, ...): so many ops
           "gpu_only_cpu_ops": len(runners["gpu"].gpu_fallback) if "gpu" in runners else None,
           "kept_whole": kept, "predicted_ms": plan.get("predicted_ms"), "ops": detail, "gpu_kernels": gpu_kernels}
    if ocl is not None:
        fast = min(med["cpu"], med["gpu"])
        out["speedup"] = fast / med["planned"]
        # per round, the faster single executor's time over the planned run's (the three
        # ran back to back): drift on a shared machine cancels in each ratio
        f = "cpu" if med["cpu"] <= med["gpu"] else "gpu"
        out["paired_speedup"] = float(np.median(np.array(times[f]) / np.array(times["planned"])))
    # per plan op, its kernels' measured sum against its predicted GPU time (an op's Add or
    # activation may run as kernels of their own here while the profile predicts the op)
    by_op: dict[int, dict[str, Any]] = {}
    for o in gpu_kernels:
        p = plan_op.get(o["name"])
        if p is not None and p.get("whole_gpu_ms") is not None:
            g = by_op.setdefault(id(p), {"name": p["name"], "predicted_ms": p["whole_gpu_ms"], "ms": 0.0,
                                         "kernels": 0})
            g["ms"] += o["ms"]
            g["kernels"] += 1
    out["gpu_ops"] = list(by_op.values())
    for o in detail:
        ops = {id(p): p for n in o.get("nodes", [o["name"]]) if (p := plan_op.get(n.split("/")[0])) is not None}
        if ops:
            key = "predicted_gpu_ms" if o["on"] == "gpu" else "predicted_cpu_ms"
            o["predicted_ms"] = round(sum(p[key] for p in ops.values()), 5)
    return out


def boundary_cost(models: Mapping[str, onnx.ModelProto], cores: Sequence[int] | None = None,
                  runs: int = 9, progress: Callable[[], None] | None = None) -> dict[str, Any]:
    """What cutting the CPU executor's work at a processor boundary costs, measured:
    :func:`boundary_row` per model (``progress`` called after each), fitted by
    :func:`fit_boundary` with one segment call (:func:`segment_call_us`) as the least a
    boundary costs."""
    rows = []
    for name, m in models.items():
        rows.append(boundary_row(name, m, cores, runs))
        if progress:
            progress()
    return fit_boundary(rows, segment_call_us(cores, runs)) | {"runs": runs, "cores": list(cores) if cores else None}


def boundary_row(name: str, model: onnx.ModelProto, cores: Sequence[int] | None = None,
                 runs: int = 9) -> dict[str, Any]:
    """One model on the CPU executor as one segment and with every node its own segment
    (interleaved runs, medians), with the boundaries and MB crossing of the cut run: the
    extra time is onnxruntime's layout changes and the session call at every cut."""
    from .split import fold_batchnorm

    m = fold_batchnorm(model)  # as the runtime runs it
    whole = GraphRunner(m, None, cores, force="cpu")
    cut = GraphRunner(m, None, cores, force="cpu", per_node=True)
    feeds = whole.random_feeds()
    t: dict[str, list[float]] = {"whole": [], "cut": []}
    for k in range(runs + 2):
        for key, r in (("whole", whole), ("cut", cut)):
            sec = r.run(feeds)["seconds"]
            if k >= 2:  # two warm-up runs
                t[key].append(sec)
    segs = [a[1] for a in cut.actions if a[0] == "cpu"]
    n = len(segs) - sum(a[0] == "cpu" for a in whole.actions)
    mb = sum(sg["out_bytes"] for sg in segs) / 1e6
    return {"model": name, "whole_ms": float(np.median(t["whole"])) * 1e3,
            "cut_ms": float(np.median(t["cut"])) * 1e3, "boundaries": n, "crossing_mb": round(mb, 3)}


def segment_call_us(cores: Sequence[int] | None = None, runs: int = 9) -> float:
    """Microseconds one segment costs however little it computes: a one-node segment
    (a Relu over 64 floats) run through its bound session, median of ``runs`` x 50 calls."""
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "tiny",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 4, 4])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 4, 4])])
    r = GraphRunner(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), None, cores, force="cpu")
    seg = next(a[1] for a in r.actions if a[0] == "cpu")
    ts = []
    with pinned(cores):
        for _ in range(runs):
            t0 = time.perf_counter()
            for _ in range(50):
                seg["sess"].run_with_iobinding(seg["io"])
            ts.append((time.perf_counter() - t0) / 50)
    return float(np.median(ts)) * 1e6


def fit_boundary(rows: Sequence[Mapping[str, Any]], floor_us: float = 0.0) -> dict[str, Any]:
    """Fit per-model extra time (cut - whole, ms) as ``us`` per boundary + ``ms_per_mb``
    per MB crossing, both non-negative; ``us`` is at least ``floor_us`` (what a segment
    costs however small: the fit across models of other sizes can put it under that)."""
    rows = list(rows)
    extra = np.array([r["cut_ms"] - r["whole_ms"] for r in rows])
    x = np.array([[r["boundaries"], r["crossing_mb"]] for r in rows], float)
    coef = np.linalg.lstsq(x, extra, rcond=None)[0] if len(rows) >= 2 else np.array([-1.0, -1.0])
    if coef[0] * 1e3 < floor_us:  # the per-boundary term held at the floor, the rest per MB
        a = floor_us / 1e3
        coef = np.array([a, max(float((extra - a * x[:, 0]) @ x[:, 1] / max(x[:, 1] @ x[:, 1], 1e-12)), 0.0)])
    if coef.min() < 0:
        coef = nnls(x, extra)
    fitted = x @ coef
    return {"us": round(float(coef[0]) * 1e3, 2), "ms_per_mb": round(float(coef[1]), 5), "floor_us": round(floor_us, 2),
            "fit_mape": round(float(np.mean(np.abs(fitted - extra) / np.maximum(np.abs(extra), 1e-9))), 4),
            "models": rows}


def crossing_cost(ocl: OclExecutor, cores: Sequence[int] | None = None, runs: int = 40) -> dict[str, Any]:
    """What the CPU side pays to read a tensor the OpenCL device just wrote, measured.

    A pointwise conv on the device writes a tensor that a depthwise conv segment on the
    CPU reads; the segment is timed after the device wrote its input and after the host
    core rewrote the same input (medians), for four tensor sizes. The difference (cache
    lines moving between the processors' caches) is fitted as ``us`` per crossing plus
    ``ms_per_mb``; the planner adds both to every synchronisation and shared byte.
    """
    from onnx import TensorProto

    rng = np.random.default_rng(0)
    rows = []
    for c, h in ((256, 7), (128, 14), (128, 28), (64, 56)):
        w1 = numpy_helper.from_array((rng.standard_normal((c, c, 1, 1)) * 0.1).astype(np.float32), "w1")
        w2 = numpy_helper.from_array(rng.standard_normal((c, 1, 3, 3)).astype(np.float32), "w2")
        nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="pw", doc_string="coexec:gpu"),
                 helper.make_node("Conv", ["a", "w2"], ["y"], name="dw", group=c, pads=[1, 1, 1, 1],
                                  doc_string="coexec:cpu")]
        g = helper.make_graph(nodes, "crossing", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, h])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, h, h])], [w1, w2])
        r = GraphRunner(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), ocl, cores)
        seg = next(a[1] for a in r.actions if a[0] == "cpu")
        feeds = {"x": rng.standard_normal((1, c, h, h)).astype(np.float32)}
        after_gpu, after_cpu = [], []
        for k in range(runs + 3):
            ops = r.run(feeds, record=True)["ops"]
            with pinned(cores):
                a = r.buf["a"]
                a[...] = np.array(a)  # the same values, now written by this core
                t0 = time.perf_counter()
                seg["sess"].run_with_iobinding(seg["io"])
                dt = time.perf_counter() - t0
            if k >= 3:
                after_gpu.append(next(o["ms"] for o in ops if o["on"] == "cpu"))
                after_cpu.append(dt * 1e3)
        rows.append({"tensor_mb": round(4e-6 * c * h * h, 4), "after_gpu_ms": float(np.median(after_gpu)),
                     "after_cpu_ms": float(np.median(after_cpu))})
    extra = np.array([r["after_gpu_ms"] - r["after_cpu_ms"] for r in rows])
    x = np.array([[1.0, r["tensor_mb"]] for r in rows])
    coef = nnls(x, extra)
    return {"us": round(float(coef[0]) * 1e3, 2), "ms_per_mb": round(float(coef[1]), 5), "sizes": rows}


def context_rows(model_path: str, plan: Mapping[str, Any], ocl: OclExecutor, cores: Sequence[int] | None = None,
                 sync: str = "svm", runs: int = 15) -> dict[str, Any]:
    """One planned run of ``model_path`` measured action by action against its plan.

    Returns the CPU segments (median in-run ms, the plan's CPU ms of the ops they hold,
    MB they read that the GPU took part in making), the GPU launches (median kernel ms,
    the plan's GPU ms) and the driver thread's time enqueueing and flushing GPU work
    (median over plain runs, ms per run). What a plan costs in context beyond its per-op
    predictions is fitted from these by :func:`fit_context`.
    """
    from .split import split_model

    split, _ = split_model(model_path, plan)
    r = GraphRunner(split, ocl, cores, sync)
    feeds = r.random_feeds()
    for _ in range(3):
        r.run(feeds)
    gpu_made: set[str] = set()
    for a in r.actions:
        if a[0] == "gpu":
            gpu_made.update(a[1]["outputs"])
        elif a[0] == "join" and any(x in gpu_made for x in a[1]["inputs"]):
            gpu_made.update(a[1]["outputs"])
    recs, host = [], []
    for _ in range(runs):  # recorded and plain runs alternate
        recs.append([o["ms"] for o in r.run(feeds, record=True)["ops"]])
        host.append(r.run(feeds)["host_seconds"] * 1e3)
    med = np.median(np.array(recs), axis=0)
    plan_op = {s: o for o in plan.get("ops", []) for s in o.get("sources") or [o["name"]]}
    seen: dict[str, set[int]] = {"cpu": set(), "gpu": set()}  # a plan op counted once per side
    segs, launches = [], []
    step_of = {st["name"]: st for st in r.steps}
    rec_i = 0
    for a in r.actions:
        if a[0] not in ("cpu", "gpu", "join"):
            continue
        ms = float(med[rec_i])
        rec_i += 1
        if a[0] == "join":
            continue
        names = a[1]["names"] if a[0] == "cpu" else [a[1]["name"]] + ([a[1]["fused"]] if "fused" in a[1] else [])
        pred = 0.0
        for n in names:
            p = plan_op.get(n.split("/")[0])
            if p is not None and id(p) not in seen[a[0]]:
                seen[a[0]].add(id(p))
                pred += p["predicted_cpu_ms" if a[0] == "cpu" else "predicted_gpu_ms"]
        if a[0] == "cpu":
            made = {o for n in names for o in step_of[n]["outputs"]}
            ins = dict.fromkeys(x for n in names for x in step_of[n]["inputs"] if x in r.buf and x not in made)
            segs.append({"ms": ms, "predicted_ms": pred, "nodes": len(names),
                         "gpu_in_mb": sum(r.buf[x].nbytes for x in ins if x in gpu_made) / 1e6})
        else:
            launches.append({"ms": ms, "predicted_ms": pred})
    return {"model": os.path.basename(model_path), "segments": segs, "launches": launches,
            "host_ms": float(np.median(host)), "gpu_launches": len(launches)}


def fit_context(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What planned runs cost beyond their plans' per-op predictions, fitted on
    :func:`context_rows` of several models (every term non-negative):

    - CPU segments after the first (runs of CPU ops cut where they read GPU output):
      ``ms = cpu_factor * predicted + cpu_us + cpu_ms_per_mb * MB read that the GPU
      helped make``, least squares on relative error (cold caches at every cut, the
      session call, parts slower than whole ops);
    - GPU launches: ``ms = gpu_factor * predicted`` (relative least squares, at least 1);
    - ``host_us``: the driver thread's time per GPU launch (enqueues, flush),
      time the CPU executor's core spends not computing.
    """
    segs = [s for r in rows for s in r["segments"][1:]]
    seg_y = np.array([s["ms"] for s in segs])
    seg_x = np.array([[s["predicted_ms"], 1.0, s["gpu_in_mb"]] for s in segs]).reshape(-1, 3)
    coef = np.array([1.0, 0.0, 0.0])
    if len(segs) >= 3:
        w = 1.0 / np.maximum(seg_y, 0.05)  # relative error; tiny segments do not dominate
        coef = nnls(seg_x * w[:, None], seg_y * w)
    launches = [ln for r in rows for ln in r["launches"] if ln["predicted_ms"] > 0]
    gpu_factor = 1.0
    if launches:
        y = np.array([ln["ms"] for ln in launches])
        p = np.array([ln["predicted_ms"] for ln in launches])
        w2 = 1.0 / np.maximum(y, 0.05) ** 2
        gpu_factor = max(float(np.sum(w2 * p * y) / np.sum(w2 * p * p)), 1.0)
    n = sum(r["gpu_launches"] for r in rows)
    host_us = max(sum(r["host_ms"] for r in rows) / n * 1e3, 0.0) if n else 0.0
    out = {"cpu_factor": round(float(coef[0]), 4), "cpu_us": round(float(coef[1]) * 1e3, 2),
           "cpu_ms_per_mb": round(float(coef[2]), 5), "gpu_factor": round(gpu_factor, 4), "host_us": round(host_us, 2),
           "segments": len(segs), "launches": len(launches)}
    if segs:
        out["cpu_mape_before"] = round(float(np.mean(np.abs(seg_x[:, 0] - seg_y) / seg_y)), 4)
        out["cpu_mape_after"] = round(float(np.mean(np.abs(seg_x @ coef - seg_y) / seg_y)), 4)
    out["models"] = [{"model": r["model"], "segments": len(r["segments"]), "gpu_launches": r["gpu_launches"],
                      "host_ms": round(r["host_ms"], 4)} for r in rows]
    return out


def plan_speedup(model_path: str, plan: Mapping[str, Any], ocl: OclExecutor, cores: Sequence[int] | None = None,
                 sync: str = "svm", runs: int = 11) -> float:
    """Measured speedup of ``plan`` over the processor its plan predicts faster alone:
    the median of per-round ratios, the two run back to back (after a warm run each)."""
    from .split import fold_batchnorm, split_model

    split, _ = split_model(model_path, plan)
    side = plan.get("faster_single", "cpu")
    single = GraphRunner(fold_batchnorm(onnx.load(model_path)), ocl, cores, sync, force=side)
    planned = GraphRunner(split, ocl, cores, sync)
    feeds = single.random_feeds()
    ratios = []
    for _ in range(runs):
        t = []
        for r in (single, planned):
            r.run(feeds)
            t.append(r.run(feeds)["seconds"])
        ratios.append(t[0] / t[1])
    return float(np.median(ratios))
