"""Search-space throughput: architecture strings to end-to-end predictions. Writes JSON.

    python -m bench.nas_throughput [--profile pixel4/tflite-gpu] [--out bench/results/nas_throughput.json]

For each space (NAS-Bench-201 and the ImageNet MBConv space), on one core (this process
pinned to core 0) unless said otherwise, every timed run starting cold (an empty kernel
cache and no piece predicted yet):

- ``fast``: ``oplat.sweep.predict_space`` from architecture strings (what
  ``oplat predict --space S --archs FILE --json-lines`` runs: networks composed of cached
  pieces, :mod:`oplat.spaces.compose`), networks per second, median of 3 runs; ``warm``:
  the same networks again on the same composer (every piece predicted already: the cost
  of composing alone); ``composer``: pieces lowered, composed of smaller ones, merged;
- ``per_model``: each network's IR built and lowered whole, then predicted (the path
  before composition, still that of onnxruntime profiles), with its time cut into
  stages (build the IR, lower, features + regressors, the end-to-end term and results),
  and ``identical``: how many of the fast path's records equal this path's, bit for bit;
- ``whole_space`` (NB201): all 15,625 networks, cold, both paths, and how many agree;
- ``floor``: the regressors alone on precomputed feature matrices, once for every kernel
  and once for the distinct kernels only;
- ``onnx_path``: what a search loop did before (arch -> ONNX -> load -> predict), on a
  subset, and a check that its totals equal the fast path's;
- ``all_cores``: the process pool over every core (spawned workers, their start-up included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from oplat.features import features_and_baseline, predictor_key
from oplat.onnx_loader import load_onnx
from oplat.predict import GLUE_KEYS, gc_paused, predict_models, predicted_kernels
from oplat.profile import load_profile
from oplat.spaces import get_space
from oplat.spaces.compose import SpaceComposer
from oplat.sweep import predict_space, score_archs

ROOT = Path(__file__).resolve().parents[1]


def _timed(fn, runs: int = 3) -> tuple[float, object]:
    ts, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), out


def bench_space(prof, space: str, n: int, n_onnx: int, seed: int = 0) -> dict:
    sp = get_space(space)
    rng = np.random.default_rng(seed)
    archs = [sp.sample(rng) for _ in range(n)]

    def fast():
        prof._cache.clear()
        return list(predict_space(prof, sp, archs))

    fast_s, fast_out = _timed(fast)
    prof._cache.clear()
    comp = SpaceComposer(prof, sp)
    comp.summaries(archs)
    stats = comp.stats
    warm_s, _ = _timed(lambda: comp.summaries(archs))

    # the per-model path, timed whole and then stage by stage
    prof._cache.clear()
    t = time.perf_counter()
    whole = score_archs(prof, sp, archs)
    per_model_s = time.perf_counter() - t
    identical = sum(a == b for a, b in zip(fast_out, whole))

    # stage by stage, the same work
    prof._cache.clear()
    with gc_paused():
        t0 = time.perf_counter()
        graphs = [sp.graph(a) for a in archs]
        t1 = time.perf_counter()
        lowered = [prof.lower(g) for g in graphs]
        t2 = time.perf_counter()
        glue_keys = {k for k in prof.boosters if k in GLUE_KEYS}
        items = [(k.type, k.impl, k.params, k.linked) for lm in lowered for k in predicted_kernels(lm, glue_keys)]
        prof.predict_kernels(items)
        t3 = time.perf_counter()
        predict_models(prof, lowered)  # kernels now cached: what is left is the e2e term and assembly
        t4 = time.perf_counter()
    stages = {"build_ir_s": t1 - t0, "lower_s": t2 - t1, "features_regressors_s": t3 - t2,
              "e2e_term_and_results_s": t4 - t3}

    # the regressors' floor: inplace_predict alone on precomputed features
    groups: dict[str, list] = {}
    uniq: dict[str, dict] = {}
    for it in items:
        key = predictor_key(it[0], it[1])
        if key in prof.boosters:
            groups.setdefault(key, []).append(it)
            sig = (it[0], it[1], tuple((a, tuple(b) if isinstance(b, list) else b) for a, b in it[2].items()),
                   tuple(it[3]))
            uniq.setdefault(key, {})[sig] = it
    base = prof.meta.get("baseline", {})

    def floor(sets):
        mats = {}
        for key, its in sets.items():
            x, xb = features_and_baseline(key, its)
            mats[key] = (x, xb @ np.asarray(base[key]) if key in base else None)

        def run():
            for key, (x, m) in mats.items():
                prof.boosters[key].inplace_predict(x, base_margin=m)
        return _timed(run)[0]

    floor_all = floor(groups)
    floor_unique = floor({k: list(v.values()) for k, v in uniq.items()})
    n_items = sum(len(v) for v in groups.values())
    n_unique = sum(len(v) for v in uniq.values())

    # the ONNX path a search loop used before, on a subset: and its totals must agree
    sub = archs[:n_onnx]
    prof._cache.clear()
    t0 = time.perf_counter()
    models = [sp.onnx(a) for a in sub]
    t1 = time.perf_counter()
    loaded = [load_onnx(m) for m in models]
    t2 = time.perf_counter()
    ref = predict_models(prof, loaded)
    t3 = time.perf_counter()
    equal = all(r.total_ms == f["total_ms"] for r, f in zip(ref, fast_out[:n_onnx]))

    return {
        "space": space, "networks": n, "kernels_predicted": n_items, "distinct_kernels": n_unique,
        "fast": {"median_s": round(fast_s, 3), "networks_per_s": round(n / fast_s, 1),
                 "warm_networks_per_s": round(n / warm_s, 1)},
        "composer": {"pieces_lowered": stats.pieces_lowered, "pieces_composed": stats.pieces_composed,
                     "piece_hits": stats.piece_hits, "merges": stats.merges, "networks_whole": stats.per_model},
        "per_model": {"seconds": round(per_model_s, 3), "networks_per_s": round(n / per_model_s, 1),
                      "identical": identical, "of": n,
                      "stages_ms_per_network": {k: round(v / n * 1e3, 4) for k, v in stages.items()}},
        "fast_over_per_model": round(per_model_s / fast_s, 2),
        "floor": {"all_kernels_networks_per_s": round(n / floor_all, 1),
                  "distinct_kernels_networks_per_s": round(n / floor_unique, 1),
                  "all_kernels_ms_per_network": round(floor_all / n * 1e3, 4),
                  "distinct_kernels_ms_per_network": round(floor_unique / n * 1e3, 4)},
        "onnx_path": {"networks": n_onnx, "build_s": round(t1 - t0, 3), "load_s": round(t2 - t1, 3),
                      "predict_s": round(t3 - t2, 3), "networks_per_s": round(n_onnx / (t3 - t0), 1),
                      "totals_equal_fast_path": equal},
        "fast_over_onnx_path": round((n / fast_s) / (n_onnx / (t3 - t0)), 1),
    }


def whole_space(prof) -> dict:
    """Every NAS-Bench-201 network, cold, composed and per model."""
    import itertools
    import random

    from oplat.spaces.nb201 import OPS

    sp = get_space("nb201")
    archs = [f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|"
             for o in itertools.product(OPS, repeat=6)]
    random.Random(0).shuffle(archs)
    prof._cache.clear()
    comp = SpaceComposer(prof, sp)  # what predict_space runs in-process
    t = time.perf_counter()
    fast = comp.summaries(archs)
    fast_s = time.perf_counter() - t
    prof._cache.clear()
    t = time.perf_counter()
    whole = score_archs(prof, sp, archs)
    whole_s = time.perf_counter() - t
    return {"space": "nb201", "networks": len(archs), "fast_s": round(fast_s, 2),
            "fast_networks_per_s": round(len(archs) / fast_s, 1), "per_model_s": round(whole_s, 2),
            "per_model_networks_per_s": round(len(archs) / whole_s, 1),
            "identical": sum(a == b for a, b in zip(fast, whole)),
            "pieces_lowered": comp.stats.pieces_lowered, "pieces_composed": comp.stats.pieces_composed,
            "merges": comp.stats.merges}


def all_cores(profile: str, space: str, n: int, seed: int = 0) -> dict:
    sp = get_space(space)
    rng = np.random.default_rng(seed)
    archs = [sp.sample(rng) for _ in range(n)]
    jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    t = time.perf_counter()
    out = list(predict_space(profile, space, archs, jobs=jobs))
    s = time.perf_counter() - t
    assert len(out) == n
    return {"space": space, "networks": n, "workers": jobs, "seconds": round(s, 3),
            "networks_per_s": round(n / s, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="pixel4/tflite-gpu")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "nas_throughput.json")
    args = ap.parse_args()
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    prof = load_profile(args.profile)
    # all cores first (before pinning this process): the same spaces, more networks
    pooled = [all_cores(args.profile, "nb201", 6000), all_cores(args.profile, "mbconv", 2000)]
    if cores:
        os.sched_setaffinity(0, {cores[0]})
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    one_core = [bench_space(prof, "nb201", 2000, 200), bench_space(prof, "mbconv", 2000, 100)]
    one_core[0]["whole_space"] = whole_space(prof)
    for r, p in zip(one_core, pooled):
        r["all_cores"] = p
        p["speedup_over_one_core"] = round(p["networks_per_s"] / r["fast"]["networks_per_s"], 2)
    res = {"profile": args.profile, "machine_cores": len(cores) or os.cpu_count(), "one_core": one_core}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
