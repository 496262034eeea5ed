"""Where a phone GPU profile's held-out end-to-end error comes from: per-op sum or end-to-end term.

    python bench/gpu_e2e_decomposition.py [--devices s10,a03s] [--out bench/results/gpu_e2e_decomposition.json]

Grouped 10-fold CV over models (seed 0, the shipped profiles' settings), as ``oplat
evaluate``: for every held-out model, the measured end-to-end latency, the sum of its
*measured* per-op rows, the profile's predicted per-op sum (its lowered graph) and its
predicted end-to-end term, next to the term the measurements imply (end to end minus the
measured per-op sum). The summary scores the prediction, and the measured per-op sum plus
the predicted term: what perfect per-op predictions would reach with this end-to-end term.
Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oplat.datasets import load_phone_e2e, load_phone_gpu_ops  # noqa: E402
from oplat.evaluate import error_metrics  # noqa: E402
from oplat.train import group_folds, load_graphs, train_profile  # noqa: E402


def decompose(device: str, rows, e2e: dict[str, float], graphs, folds: int = 10) -> dict[str, dict]:
    """Per held-out model: measured and predicted parts of its end-to-end latency (ms)."""
    rows = [r for r in rows if r.device == device]
    models = sorted({r.model for r in rows} | set(e2e))
    cache: dict = {}
    out = {}
    for held in group_folds(models, folds, 0):
        prof = train_profile(rows, e2e, graphs, device, exclude_models=held, lowered_cache=cache)
        for m in held:
            if m not in graphs or m not in e2e:
                continue
            res = prof.predict(graphs[m])
            op_sum = sum(r.latency_ms for r in rows if r.model == m)
            out[m] = {"measured_ms": e2e[m], "measured_ops_ms": op_sum, "predicted_ops_ms": res.ops_ms,
                      "predicted_term_ms": res.overhead_ms, "implied_term_ms": e2e[m] - op_sum,
                      "predicted_ms": res.total_ms, "error": res.total_ms / e2e[m] - 1}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", default="pixel4,s10,mi8se,a03s,iphonexs,iphone7")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu_e2e_decomposition.json")
    args = ap.parse_args()
    devices = args.devices.split(",")
    rows = load_phone_gpu_ops(devices=devices)
    e2e = load_phone_e2e(processor="gpu")
    graphs = load_graphs(ROOT / "models" / "cnn_zoo")
    t0 = time.time()
    result: dict = {"folds": 10, "seed": 0, "devices": {}}
    for dev in devices:
        per = decompose(dev, rows, e2e.get(dev, {}), graphs)
        v = list(per.values())
        meas = [x["measured_ms"] for x in v]
        term_share = [x["implied_term_ms"] / x["measured_ms"] for x in v]
        result["devices"][dev] = {
            "predicted": error_metrics([x["predicted_ms"] for x in v], meas),
            "measured_ops_plus_predicted_term": error_metrics(
                [x["measured_ops_ms"] + x["predicted_term_ms"] for x in v], meas),
            "per_op_sum_error_median": float(np.median([abs(x["predicted_ops_ms"] / x["measured_ops_ms"] - 1)
                                                        for x in v if x["measured_ops_ms"] > 0])),
            "implied_term_share_median": float(np.median(term_share)),
            "models": {m: {k: round(val, 4) for k, val in x.items()} for m, x in per.items()}}
        d = result["devices"][dev]
        print(f"{dev}: predicted MAPE {d['predicted']['mape']:.2%} (within ±10% {d['predicted']['within_10']:.1%}); "
              f"measured per-op sums + predicted term {d['measured_ops_plus_predicted_term']['mape']:.2%} "
              f"({d['measured_ops_plus_predicted_term']['within_10']:.1%}); per-op sum error median "
              f"{d['per_op_sum_error_median']:.1%}; the term is a median {d['implied_term_share_median']:.0%} "
              "of the latency", flush=True)
    result["seconds"] = round(time.time() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
