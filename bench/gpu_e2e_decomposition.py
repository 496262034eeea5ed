"""Where a phone GPU profile's held-out end-to-end error comes from: per-op sum or end-to-end term.

    python -m bench.gpu_e2e_decomposition [--devices s10,a03s] [--out bench/results/gpu_e2e_decomposition.json]

Grouped 10-fold CV over models (seed 0, the shipped profiles' settings;
:func:`oplat.evaluate.cross_validate`, as ``oplat evaluate``): for every held-out model,
the measured end-to-end latency, the sum of its *measured* per-op rows, the profile's predicted per-op sum (its lowered graph) and its
predicted end-to-end term, next to the term the measurements imply (end to end minus the
measured per-op sum). The summary scores the prediction, and the measured per-op sum plus
the predicted term: what perfect per-op predictions would reach with this end-to-end term.
Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from oplat.datasets import load_phone_e2e, load_phone_gpu_ops  # noqa: E402
from oplat.evaluate import cross_validate  # noqa: E402
from oplat.fitting import error_metrics  # noqa: E402
from oplat.train import load_graphs  # noqa: E402
from oplat.zoo import zoo_dir  # noqa: E402


def decompose(points: dict, measured_ops: dict[str, float]) -> dict[str, dict]:
    """Per held-out model of one device's :func:`~oplat.evaluate.cross_validate` points:
    measured and predicted parts of its end-to-end latency (ms)."""
    out = {}
    for m, pred, meas, (ops_ms, term_ms) in zip(points["e2e_models"], *points["e2e"], points["e2e_parts"]):
        op_sum = measured_ops.get(m, 0.0)
        out[m] = {"measured_ms": meas, "measured_ops_ms": op_sum, "predicted_ops_ms": ops_ms,
                  "predicted_term_ms": term_ms, "implied_term_ms": meas - op_sum,
                  "predicted_ms": pred, "error": pred / meas - 1}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", default="pixel4,s10,mi8se,a03s,iphonexs,iphone7")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu_e2e_decomposition.json")
    args = ap.parse_args()
    devices = args.devices.split(",")
    rows = load_phone_gpu_ops(devices=devices)
    e2e = load_phone_e2e(processor="gpu")
    graphs = load_graphs(zoo_dir("cnn_zoo"))
    t0 = time.time()
    points = cross_validate(rows, e2e, graphs, devices, folds=10, seed=0)["_points"]
    result: dict = {"folds": 10, "seed": 0, "devices": {}}
    for dev in devices:
        measured_ops: dict[str, float] = {}
        for r in rows:
            if r.device == dev:
                measured_ops[r.model] = measured_ops.get(r.model, 0.0) + r.latency_ms
        per = decompose(points[dev], measured_ops)
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
