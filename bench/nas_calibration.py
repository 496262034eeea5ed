"""Calibrating to a device no profile has seen, within a search space. Writes JSON.

    python -m bench.nas_calibration measure --space nb201 --backend ort-cpu --threads 1 --cores 1 [-n 300]
    python -m bench.nas_calibration score [--k 10] [--out bench/results/nas_calibration.json]

``measure`` times ``n`` random networks of a space on a backend of this machine
(resumable: a dataset under ``bench/results/nas_measured/``; two rounds, each network's
figure the least of its round medians, against the machine's drift).

``score`` takes every measured (space, device) set, and for each calibration method
fits on ``k`` measured networks and predicts the rest: Spearman and Kendall rank
correlation and the share within +-10% on the held-out networks, over several random
draws of the ``k`` (median and worst draw), and with the ``k`` chosen by
``oplat.calibrate.design_points`` (what ``oplat suggest`` does). Every ``host/*`` profile
is left out of the library, so the device is unseen. For the onnxruntime proxies,
``other_cpu_base`` also calibrates ``--ort-base`` (default ``host/ort-cpu-1t``), an
onnxruntime profile whose collection ran on another CPU than this one (checked by CPU id,
else skipped): the case of a user whose new device runs the same runtime as a profile.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from oplat.calibrate import METHODS as CAL_METHODS
from oplat.calibrate import (apply_fit, auto_method, blend_fit, blend_library, choose_method, design_points,
                             fit_method, loo_errors, per_key_design, spearman)
from oplat.collect.backends import make_backend
from oplat.collect.whole import measure_models
from oplat.profile import load_profile
from oplat.spaces import get_space

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "results" / "nas_measured"
# the library a space's unseen CPU device is calibrated from: the phones' CPU profiles
# of the base's kind (oplat.calibrate.blend_library), this machine's own left out
BASE = "pixel4/tflite-cpu-1large"
EXCLUDE = ("host",)


def measure(args: argparse.Namespace) -> None:
    sp = get_space(args.space)
    rng = np.random.default_rng(args.seed)
    archs = list(dict.fromkeys(sp.sample(rng) for _ in range(args.n)))
    backend = make_backend(args.backend, args.threads, args.cores)
    path = DATA / f"{args.space}_{args.backend}_{args.threads}t.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    models = {a: (lambda a=a: sp.onnx(a, graph_only=False)) for a in archs}
    done = {"n": 0}

    def tick(_):
        done["n"] += 1
        if done["n"] % 25 == 0:
            print(f"{done['n']}/{len(archs)}", flush=True)

    out = measure_models(backend, models, path, device=f"host-{args.backend}-{args.threads}t", on_model=tick,
                         rounds=2)
    print(f"{path}: {len(out)} networks measured")


def _kendall(a: np.ndarray, b: np.ndarray) -> float:
    n = len(a)
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    iu = np.triu_indices(n, 1)
    return float(np.sum(da[iu] * db[iu]) / max(1, len(iu[0])))


def _metrics(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    err = np.abs(pred - y) / y
    return {"spearman": spearman(pred, y), "kendall": _kendall(pred, y), "within_10": float(np.mean(err <= 0.10)),
            "mape": float(np.mean(err))}


def _design_all(space: str, archs: list[str], library):
    """What every method needs: the base's per-key sums and the rest of its prediction
    (oplat.calibrate.per_key_design), and every library member's totals (for the blend)."""
    sp = get_space(space)
    lowered = [library[0].lower(sp.graph(a)) for a in archs]
    keys, sums, rest, _ = per_key_design(library[0], lowered)
    x = np.stack([[r.total_ms for r in p.predict_many(lowered)] for p in library], axis=1)
    return sums, rest, x


def _fit_predict(method: str, sums: np.ndarray, rest: np.ndarray, x: np.ndarray, tr: np.ndarray,
                 y: np.ndarray) -> tuple[np.ndarray, float]:
    """Predictions for every network from the measurements ``y[tr]``, and the method's
    leave-one-out MAPE on those measurements (what a user can see)."""
    if method == "blend":
        coef, loo = blend_fit(x[tr], y[tr])
        return x @ coef[:-1] + coef[-1], float(loo.mean())
    if method == "auto":  # what oplat calibrate does by default (oplat.calibrate.auto_method)
        _, scores, _ = choose_method(sums[tr], rest[tr], y[tr])
        best = auto_method(_fit_predict("blend", sums, rest, x, tr, y)[1], scores)
        return _fit_predict(best, sums, rest, x, tr, y)[0], float("nan")
    fit = fit_method(method, sums[tr], rest[tr], y[tr])
    return apply_fit(sums, rest, fit), float(loo_errors(method, sums[tr], rest[tr], y[tr]).mean())


METHODS = CAL_METHODS + ("auto",)


def _score_methods(sums, rest, x, y, draws, design) -> dict[str, dict]:
    out = {}
    for method in METHODS:
        per = []
        for tr in draws + [design]:
            te = np.setdiff1d(np.arange(len(y)), tr)
            pred = _fit_predict(method, sums, rest, x, tr, y)[0]
            per.append(_metrics(pred[te], y[te]))
        rand = per[:-1]
        out[method] = {
            "random_k_median": {m: float(np.median([p[m] for p in rand])) for m in rand[0]},
            "random_k_worst": {m: float(min(p[m] for p in rand)) if m != "mape" else float(max(p[m] for p in rand))
                               for m in rand[0]},
            "designed_k": per[-1]}
    return out


def _other_cpu_base(ref: str):
    """An onnxruntime profile measured on another CPU than this one (checked by the CPU id
    its collection recorded), or None."""
    from oplat.machine import machine_facts

    prof = load_profile(ref)
    theirs = ((prof.meta.get("collection") or {}).get("machine") or {}).get("cpu_id")
    ours = machine_facts().get("cpu_id")
    if not theirs or theirs == ours:
        print(f"{ref} was measured on this CPU ({ours}): not an unseen-device base here")
        return None
    return prof, theirs, ours


def score(args: argparse.Namespace) -> None:
    base = load_profile(BASE)
    library = blend_library(base, exclude_devices=EXCLUDE)
    assert not any(p.id.startswith("host/") for p in library)
    other = _other_cpu_base(args.ort_base) if args.ort_base else None
    results = []
    for path in sorted(DATA.glob("*.csv")):
        import csv

        rows = [r for r in csv.DictReader(ln for ln in path.open() if not ln.startswith("#"))
                if r.get("status") == "ok"]
        best: dict[str, float] = {}
        for r in rows:
            best[r["model"]] = min(best.get(r["model"], np.inf), float(r["latency_ms"]))
        space = path.stem.split("_")[0]
        archs = sorted(best)
        y = np.array([best[a] for a in archs])
        sums, rest, x = _design_all(space, archs, library)
        rng = np.random.default_rng(0)
        entry = {"dataset": path.name, "space": space, "networks": len(archs), "k": args.k,
                 "library": [p.id for p in library], "measured_ms_range": [float(y.min()), float(y.max())],
                 "methods": {}}
        draws = [rng.choice(len(y), args.k, replace=False) for _ in range(args.draws)]
        design = np.asarray(design_points(np.log(x), args.k))
        entry["methods"] = _score_methods(sums, rest, x, y, draws, design)
        raw = _metrics(x[:, 0], y)
        entry["uncalibrated_base"] = raw
        if other is not None and "_ort-cpu_" in path.name:
            # the same draws, from an onnxruntime profile of another CPU (its lowering is
            # onnxruntime's: dead branches kept, layout reorders); alone, no blend
            o_sums, o_rest, o_x = _design_all(space, archs, [other[0]])
            entry["other_cpu_base"] = {"base": other[0].id, "base_cpu": other[1], "this_cpu": other[2],
                                       "methods": _score_methods(o_sums, o_rest, o_x, y, draws, design),
                                       "uncalibrated_base": _metrics(o_x[:, 0], y)}
        results.append(entry)
        print(json.dumps({k: v for k, v in entry.items() if k != "library"}, indent=1))
    args.out.write_text(json.dumps({"base": BASE, "excluded": EXCLUDE, "results": results}, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--space", default="nb201")
    m.add_argument("--backend", default="ort-cpu")
    m.add_argument("--threads", type=int, default=1)
    m.add_argument("--cores", type=lambda s: [int(c) for c in s.split(",")], default=None)
    m.add_argument("-n", type=int, default=300)
    m.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("score")
    s.add_argument("--k", type=int, default=10)
    s.add_argument("--draws", type=int, default=20)
    s.add_argument("--ort-base", default="host/ort-cpu-1t",
                   help="for the onnxruntime proxies, also calibrate this onnxruntime profile of another CPU "
                        "(skipped when it was measured on this one; '' to skip)")
    s.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "nas_calibration.json")
    args = ap.parse_args()
    measure(args) if args.cmd == "measure" else score(args)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
