"""Adaptive vs uniform sampling on a really measured pool.

The pool is a dataset collected for real with ``oplat collect`` (default: this
machine's onnxruntime CPU rows, bench/results/host_ort-cpu_1t_ops.csv). A quarter is
held out as the test set; from the rest, *uniform* takes random subsets of growing
size, *adaptive* starts from the same random 250 and adds batches chosen by committee
disagreement or, nn-Meter style, near the measured configs the predictor erred on
(:mod:`oplat.collect.adaptive`), never looking at the latencies of what it has not
"measured" yet. Both are scored by per-op MAPE on the test set.

    python -m bench.adaptive_sampling [--pool DATASET] [--max 4000]

Writes bench/results/adaptive_sampling.json and .png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from oplat.collect.adaptive import choose_batch  # noqa: E402
from oplat.collect.run import read_collected  # noqa: E402
from oplat.train import _profile, fit_regressors  # noqa: E402


def score(train, test) -> dict[str, float]:
    prof = _profile({}, fit_regressors(train))
    pred = prof.predict_kernels([(r.kernel, r.impl, r.params, r.linked) for r in test])
    true = np.array([r.latency_ms for r in test])
    ok = np.isfinite(pred)
    ape = np.abs(pred[ok] / true[ok] - 1)
    return {"mape": float(ape.mean()), "median_ape": float(np.median(ape)), "within_10": float((ape <= 0.1).mean()),
            "covered": float(ok.mean())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pool", default=str(ROOT / "bench" / "results" / "host_ort-cpu_1t_ops.csv"))
    ap.add_argument("--start", type=int, default=250)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--max", type=int, default=4000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--strategies", default="error,committee", help="adaptive strategies to compare")
    args = ap.parse_args()
    t0 = time.time()
    rows = read_collected(args.pool)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(rows))
    n_test = len(rows) // 4
    test = [rows[i] for i in perm[:n_test]]
    pool = [rows[i] for i in perm[n_test:]]
    budgets = [b for b in (250, 500, 1000, 1500, 2000, 3000, 4000, 6000, 8000) if b <= min(2 * args.max, len(pool))]
    uniform: dict[int, list[dict]] = {b: [] for b in budgets}
    strategies = args.strategies.split(",")
    adaptive_runs: dict[str, dict[int, list[dict]]] = {s: {} for s in strategies}
    items = [(r.kernel, r.impl, r.params, r.linked) for r in pool]
    for seed in range(args.seeds):
        order = np.random.default_rng(100 + seed).permutation(len(pool))
        for b in budgets:
            uniform[b].append(score([pool[i] for i in order[:b]], test))
        for strategy in strategies:
            chosen = [int(i) for i in order[: args.start]]
            remaining = [int(i) for i in order[args.start:]]
            errors: dict[str, float] = {}  # config id -> out-of-sample error when it was "measured"
            runs = adaptive_runs[strategy]
            while True:
                n = len(chosen)
                if n in budgets:
                    runs.setdefault(n, []).append(score([pool[i] for i in chosen], test))
                    print(f"seed {seed} n={n} {strategy} {runs[n][-1]['mape']:.3f} "
                          f"uniform {uniform[n][-1]['mape']:.3f}", flush=True)
                if n >= args.max:
                    break
                have = [pool[i] for i in chosen]
                cand = [items[i] for i in remaining]
                pick = choose_batch(strategy, have, cand, args.batch, seed + n, errors)
                picked = [remaining[j] for j in pick]
                chosen += picked
                gone = set(picked)
                remaining = [i for i in remaining if i not in gone]

    def agg(d):
        return {str(b): {k: float(np.median([s[k] for s in v])) for k in v[0]} for b, v in sorted(d.items())}

    u = agg(uniform)
    adaptive = {s: agg(r) for s, r in adaptive_runs.items()}
    # smallest adaptive budget that matches uniform's accuracy at budget b
    match: dict[str, dict] = {}
    for s, a in adaptive.items():
        match[s] = {}
        for b in budgets:
            target = u[str(b)]["mape"]
            hit = [int(n) for n in a if a[n]["mape"] <= target]
            match[s][str(b)] = {"uniform_mape": target, "adaptive_configs_needed": min(hit) if hit else None,
                                "ratio": (min(hit) / b) if hit else None}
    result = {"pool": Path(args.pool).name, "pool_rows": len(pool), "test_rows": len(test), "seeds": args.seeds,
              "batch": args.batch, "start": args.start, "uniform": u, "adaptive": adaptive, "match": match,
              "seconds": round(time.time() - t0, 1),
              "methods": {"committee": "4 bootstrap profiles; batches drawn with probability ~ std of log-latency, "
                                       "20% uniform",
                          "error": "nn-Meter style: batches drawn with probability ~ mean out-of-sample error of "
                                   "the 5 nearest measured configs of the same regressor, 20% uniform"}}
    out = ROOT / "bench" / "results" / "adaptive_sampling.json"
    out.write_text(json.dumps(result, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([int(b) for b in u], [v["mape"] * 100 for v in u.values()], "o-", label="uniform")
    for (name, a), marker in zip(adaptive.items(), "s^v"):
        ax.plot([int(b) for b in a], [v["mape"] * 100 for v in a.values()], marker + "-", label=f"adaptive ({name})")
    ax.set_xscale("log")
    ax.set_xlabel("measured configurations")
    ax.set_ylabel("held-out per-op MAPE (%)")
    ax.set_title(f"{Path(args.pool).stem}: {len(test)} test ops, median of {args.seeds} seeds")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    print(json.dumps(match, indent=1))


if __name__ == "__main__":
    main()
