"""Search-space throughput: architecture strings to end-to-end predictions. Writes JSON.

    python -m bench.nas_throughput [--profile pixel4/tflite-gpu] [--out bench/results/nas_throughput.json]

For each space (NAS-Bench-201 and the ImageNet MBConv space), on one core (this process
pinned to core 0) unless said otherwise, every timed run with an empty kernel cache:

- ``fast``: ``oplat.sweep.predict_space`` from architecture strings (what
  ``oplat predict --space S --archs FILE --json-lines`` runs), networks per second,
  median of 3 runs;
- ``stages``: the same work cut into stages: build the IR, lower, features + regressors
  (with the cache deduplicating the kernels that recur across candidates), the
  end-to-end term and result assembly;
- ``floor``: the regressors alone on precomputed feature matrices, once for every kernel
  and once for the distinct kernels only: no Python path can go below the latter;
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
from oplat.sweep import predict_space

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
        "fast": {"median_s": round(fast_s, 3), "networks_per_s": round(n / fast_s, 1)},
        "stages_ms_per_network": {k: round(v / n * 1e3, 4) for k, v in stages.items()},
        "floor": {"all_kernels_networks_per_s": round(n / floor_all, 1),
                  "distinct_kernels_networks_per_s": round(n / floor_unique, 1),
                  "all_kernels_ms_per_network": round(floor_all / n * 1e3, 4),
                  "distinct_kernels_ms_per_network": round(floor_unique / n * 1e3, 4)},
        "onnx_path": {"networks": n_onnx, "build_s": round(t1 - t0, 3), "load_s": round(t2 - t1, 3),
                      "predict_s": round(t3 - t2, 3), "networks_per_s": round(n_onnx / (t3 - t0), 1),
                      "totals_equal_fast_path": equal},
        "fast_over_onnx_path": round((n / fast_s) / (n_onnx / (t3 - t0)), 1),
    }


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
    one_core = [bench_space(prof, "nb201", 2000, 200), bench_space(prof, "mbconv", 500, 100)]
    for r, p in zip(one_core, pooled):
        r["all_cores"] = p
        p["speedup_over_one_core"] = round(p["networks_per_s"] / r["fast"]["networks_per_s"], 2)
    res = {"profile": args.profile, "machine_cores": len(cores) or os.cpu_count(), "one_core": one_core}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
