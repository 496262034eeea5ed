"""Few-shot calibration: a CPU profile of one phone calibrated to another phone.

For every ordered pair of phones and every core set both have (fp32, or int8 with
``--precision quant``): 10 models of the target phone are the calibration
measurements, the other models are held out; the calibrated profile predicts the
held-out models. Two ways to pick the 10:

- ``random``: drawn at random (fixed seed per pair);
- ``suggested``: what ``oplat suggest`` picks (:func:`oplat.calibrate.design_points`
  over the library's predictions of the target's measured models; no measurement of
  the target is used to choose).

Member predictions are **out-of-fold** by default (``--members oof``): each member
core set's end-to-end decomposition is refitted in grouped 10-fold CV over models
(the folds of ``tools/build_profiles/cpu.py``) and predicts each model from the fold
that did not train on it, so calibration is scored on models no profile has seen, as
for a user's new architecture. ``--members shipped`` scores with the shipped profiles
(trained on every model: the protocol of the first version of this script, which
flatters every method).

Reported per strategy: share within +-10%, MAPE and Spearman of the default
calibration (``blend`` of the other phones' profiles, never the target phone's), of
the base alone (the per-base methods of ``oplat calibrate``) and the uncalibrated
base's MAPE, all on the same draws; and per target, the ceiling of the blend: its share
within +-10% when 90% of the target's models are measured (grouped 10-fold).

    python -m bench.calibrate_transfer [--shots 10] [--seed 0] [--precision float] [--members oof]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402
from rich.progress import Progress  # noqa: E402

from oplat.calibrate import (apply_fit, auto_method, blend_fit, blend_weights, choose_method, design_points, fit_method,  # noqa: E402
                             spearman)
from oplat.datasets import e2e_configs, inconsistent_e2e, load_phone_e2e  # noqa: E402
from oplat.decompose import E2EDecomposer, kernel_tables  # noqa: E402
from oplat.fitting import error_metrics, group_folds  # noqa: E402
from oplat.lowering import lower  # noqa: E402
from oplat.profile import load_profile  # noqa: E402
from oplat.train import load_graphs  # noqa: E402
from oplat.zoo import zoo_dir  # noqa: E402

STRATEGIES = ("random", "suggested")
GRID_COMPONENTS = (2, 3, 4, 5, 6, 8, 10, 15, 100)
GRID_RIDGES = (1e-3, 1e-2, 1e-1)


def member_tables(names, tables, measured, bad, oof: bool, pid: str, lowered):
    """Per model (in ``names`` order): predicted ms per kernel family and the fixed cost.

    ``oof``: each measured model from the fold model that did not train on it (grouped
    10-fold, seed 0), unmeasured ones from the fit on every measured model; else the
    shipped profile ``pid`` (``lowered``: the models lowered for it, in ``names`` order).
    """
    if not oof:
        res = load_profile(pid).predict_many(lowered)
        return [r.key_sums for r in res], [r.total_ms - sum(r.key_sums.values()) for r in res]
    models = sorted(measured)
    keys: dict[str, dict[str, float]] = {}
    fixed: dict[str, float] = {}

    def fit(train, predict):
        d = E2EDecomposer().fit([tables[m] for m in train], [measured[m] for m in train])
        for m, k in zip(predict, d.predict_key_sums([tables[m] for m in predict])):
            keys[m], fixed[m] = k, d.fixed_ms

    fit([m for m in models if m not in bad], [n for n in names if n not in measured])
    for held in group_folds(models, 10, 0):
        fit([m for m in models if m not in set(held) and m not in bad], held)
    return [keys[n] for n in names], [fixed[n] for n in names]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", choices=("float", "quant"), default="float")
    ap.add_argument("--members", choices=("oof", "shipped"), default="oof")
    ap.add_argument("--design-grid", action="store_true",
                    help="also score suggest's design over a grid of (components, ridge): how the defaults were "
                         "chosen (on --precision quant, by share of pairs >= 85%%, then median within 10%%)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    suffix = "" if args.precision == "float" else "_int8"
    out = args.out or ROOT / "bench" / "results" / f"calibrate_transfer{suffix}.json"
    t0 = time.time()
    graphs = load_graphs(zoo_dir("cnn_zoo"))
    names = sorted(graphs)
    tables = kernel_tables(graphs, bytes_per_elem=4.0 if args.precision == "float" else 1.0)
    flagged = inconsistent_e2e()
    lowered = [lower(graphs[n], "tflite-cpu") for n in names] if args.members == "shipped" else None
    measured_all = {}
    for d, c, p in e2e_configs():
        if p == args.precision and c != "gpu":
            m = {k: v for k, v in load_phone_e2e(processor=c, precision=p).get(d, {}).items() if k in graphs and v > 0}
            if len(m) >= 20:  # as tools/build_profiles/cpu.py: fewer measured models get no profile
                measured_all[(d, c)] = m
    tag = "" if args.precision == "float" else "-int8"
    pids = {dc: f"{dc[0]}/tflite-cpu-{dc[1]}{tag}" for dc in measured_all}
    members: dict = {}
    with Progress() as bar:
        task = bar.add_task(f"member predictions ({args.members})", total=len(measured_all))
        for dc, m in measured_all.items():
            ks, fx = member_tables(names, tables, m, flagged.get((*dc, args.precision), {}), args.members == "oof",
                                   pids[dc], lowered)
            members[dc] = (ks, np.array([sum(k.values()) for k in ks]) + np.array(fx), np.array(fx))
            bar.advance(task)
    by_dev: dict[str, set[str]] = {}
    for d, c in measured_all:
        by_dev.setdefault(d, set()).add(c)
    pairs = [(b, t, c) for b, t in itertools.permutations(sorted(by_dev), 2) for c in sorted(by_dev[b] & by_dev[t])]
    ceiling = {}
    for t, c in measured_all:  # the blend with 90% of the target's models measured (grouped 10-fold)
        models = sorted(measured_all[(t, c)])
        x = np.stack([members[dc][1][[names.index(m) for m in models]] for dc in measured_all if dc[0] != t], axis=1)
        y = np.array([measured_all[(t, c)][m] for m in models])
        pred = np.empty(len(y))
        for held in group_folds(models, 10, 0):
            h = np.isin(models, held)
            coef = blend_weights(x[~h], y[~h])
            pred[h] = x[h] @ coef[:-1] + coef[-1]
        ceiling[f"{t}|{c}"] = error_metrics(pred, y)["within_10"]
    rows = []
    grid = {(k, r): [] for k in GRID_COMPONENTS for r in GRID_RIDGES} if args.design_grid else {}
    for row, (b, t, c) in enumerate(pairs):
        measured = measured_all[(t, c)]
        models = sorted(measured)
        idx = [names.index(m) for m in models]
        y_all = np.array([measured[m] for m in models])
        library = [dc for dc in measured_all if dc[0] != t]  # nothing of the target phone
        library.sort(key=lambda dc: dc != (b, c))  # the base first, as blend_library orders it
        x_all = np.stack([members[dc][1][idx] for dc in library], axis=1)
        ks, _, fx = members[(b, c)]
        keys = sorted({k for i in idx for k in ks[i]})
        sums_all = np.array([[ks[i].get(k, 0.0) for k in keys] for i in idx])
        rest_all = fx[idx]
        rng = np.random.default_rng([args.seed, row])
        draws = {"random": sorted(models.index(s) for s in rng.choice(models, args.shots, replace=False)),
                 "suggested": design_points(x_all, args.shots)}
        entry = {"base": pids[(b, c)], "target": f"{t}|{c}", "library": len(library)}
        for strategy, shots in draws.items():
            held = np.setdiff1d(np.arange(len(models)), shots)
            y, true = y_all[shots], y_all[held]
            coef, blend_loo = blend_fit(x_all[shots], y)
            pred = x_all[held] @ coef[:-1] + coef[-1]
            chosen, scores, _ = choose_method(sums_all[shots], rest_all[shots], y)
            own = apply_fit(sums_all[held], rest_all[held], fit_method(chosen, sums_all[shots], rest_all[shots], y))
            auto = pred if auto_method(float(blend_loo.mean()), scores) == "blend" else own
            ea = error_metrics(auto, true)
            raw = sums_all[held].sum(axis=1) + rest_all[held]
            em, eo = error_metrics(pred, true), error_metrics(own, true)
            entry[strategy] = {"shots": [models[i] for i in shots], "held_out": len(held),
                               "within_10": em["within_10"], "mape": em["mape"], "spearman": spearman(pred, true),
                               "members": int((coef[:-1] > 1e-9).sum()),
                               "per_base_method": chosen, "per_base_within_10": eo["within_10"],
                               "per_base_mape": eo["mape"], "per_base_spearman": spearman(own, true),
                               "uncalibrated_mape": error_metrics(raw, true)["mape"],
                               "auto_within_10": ea["within_10"], "auto_mape": ea["mape"],
                               "blend_loo_mape": float(blend_loo.mean()), "per_base_loo_mape": float(scores[chosen]),
                               "auto_spearman": spearman(auto, true)}
        rows.append(entry)
        for (k, r), scores in grid.items():
            shots = design_points(x_all, args.shots, k, r)
            held = np.setdiff1d(np.arange(len(models)), shots)
            coef = blend_weights(x_all[shots], y_all[shots])
            scores.append(error_metrics(x_all[held] @ coef[:-1] + coef[-1], y_all[held])["within_10"])

    reachable = [e for e in rows if ceiling[e["target"]] >= 0.85]

    def summary(strategy: str) -> dict:
        r = [e[strategy] for e in rows]
        w, s = [x["within_10"] for x in r], [x["spearman"] for x in r]
        return {"median_within_10": statistics.median(w), "min_within_10": min(w),
                "share_pairs_within10_ge_85": sum(x >= 0.85 for x in w) / len(w),
                "share_pairs_within10_ge_85_ceiling_ge_85":
                    sum(e[strategy]["within_10"] >= 0.85 for e in reachable) / max(len(reachable), 1),
                "pairs_ceiling_ge_85": len(reachable),
                "median_spearman": statistics.median(s), "min_spearman": min(s),
                "share_pairs_spearman_ge_095": sum(x >= 0.95 for x in s) / len(s),
                "median_mape": statistics.median(x["mape"] for x in r),
                "median_uncalibrated_mape": statistics.median(x["uncalibrated_mape"] for x in r),
                "auto": {"median_within_10": statistics.median(x["auto_within_10"] for x in r),
                         "share_pairs_within10_ge_85": sum(x["auto_within_10"] >= 0.85 for x in r) / len(r),
                         "min_spearman": min(x["auto_spearman"] for x in r),
                         "median_mape": statistics.median(x["auto_mape"] for x in r)},
                "per_base": {"median_within_10": statistics.median(x["per_base_within_10"] for x in r),
                             "share_pairs_within10_ge_85": sum(x["per_base_within_10"] >= 0.85 for x in r) / len(r),
                             "min_spearman": min(x["per_base_spearman"] for x in r),
                             "median_mape": statistics.median(x["per_base_mape"] for x in r)}}

    result = {"precision": args.precision, "members": args.members, "shots": args.shots, "seed": args.seed,
              "pairs": len(rows), "summary": {s: summary(s) for s in STRATEGIES},
              "ceiling_within_10": {"method": "blend fitted on the other 90% of the target's models (grouped 10-fold)",
                                    "targets_below_85": sorted(k for k, v in ceiling.items() if v < 0.85),
                                    "per_target": ceiling},
              "seconds": round(time.time() - t0, 1), "rows": rows}
    if grid:
        result["design_grid"] = [{"components": k, "ridge": r,
                                  "share_pairs_within10_ge_85": float(np.mean(np.array(w) >= 0.85)),
                                  "median_within_10": float(np.median(w))} for (k, r), w in grid.items()]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
