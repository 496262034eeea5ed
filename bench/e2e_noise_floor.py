"""How well could any end-to-end term do on the phone GPUs? Two bounds from the data alone.

1. Run-to-run spread of the end-to-end measurements: each phone's ``std / mean`` of the
   ``<device>|gpu|float`` columns of ``tflite_cnn_e2e.csv`` (median, mean, 90th percentile).
2. An oracle for the per-op part: the model's *measured* per-op rows (not predictions),
   summed per kernel implementation, plus a constant and the kernel count, fitted to the
   end-to-end latency by least squares on relative error and scored leave-one-model-out.
   Its MAPE is what a linear end-to-end term reaches with perfect per-op predictions;
   ``oplat evaluate`` (held-out per-op predictions) is compared with it.

    python bench/e2e_noise_floor.py [--devices s10,a03s]
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oplat.datasets import SHARED_DATA, load_phone_e2e, load_phone_gpu_ops  # noqa: E402
from oplat.evaluate import error_metrics  # noqa: E402

DEVICES = "pixel4,s10,mi8se,a03s,iphonexs,iphone7"


def run_spread(device: str) -> dict[str, float]:
    """Relative run-to-run standard deviation of the phone's GPU end-to-end measurements."""
    with open(SHARED_DATA / "tflite_cnn_e2e.csv", newline="") as f:
        rel = [float(r[f"{device}|gpu|float|std"]) / float(r[f"{device}|gpu|float|mean"])
               for r in csv.DictReader(f) if r.get(f"{device}|gpu|float|mean")]
    a = np.array(rel)
    return {"models": len(a), "median": round(float(np.median(a)), 4), "mean": round(float(a.mean()), 4),
            "p90": round(float(np.percentile(a, 90)), 4)}


def oracle_loo(device: str, ridge: float = 1e-3, min_models: int = 8) -> dict[str, float]:
    """Leave-one-model-out end-to-end error of a linear term over measured per-op sums."""
    rows = load_phone_gpu_ops(devices=[device])
    e2e = load_phone_e2e(processor="gpu").get(device, {})
    by_model: dict[str, list] = collections.defaultdict(list)
    for r in rows:
        by_model[r.model].append(r)
    models = sorted(m for m in by_model if m in e2e)
    groups = sorted({f"{r.kernel}:{r.impl}" for r in rows})
    groups = [g for g in groups if sum(any(f"{r.kernel}:{r.impl}" == g for r in by_model[m]) for m in models)
              >= min_models]
    x = []
    for m in models:
        sums = collections.Counter()
        for r in by_model[m]:
            sums[f"{r.kernel}:{r.impl}"] += r.latency_ms
        x.append([1.0, float(len(by_model[m]))] + [sums[g] for g in groups])
    x = np.array(x)
    y = np.array([e2e[m] for m in models])
    a = x / y[:, None]
    scale = np.abs(a).max(axis=0) + 1e-12
    a = a / scale
    pred = np.zeros(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        lhs = np.vstack([a[keep], np.sqrt(ridge) * np.eye(a.shape[1])])
        coef = np.linalg.lstsq(lhs, np.concatenate([np.ones(keep.sum()), np.zeros(a.shape[1])]), rcond=None)[0]
        pred[i] = (x[i] / scale) @ coef
    out = error_metrics(pred, y)
    err = np.abs(pred / y - 1)
    out["worst"] = [(models[i], round(float(err[i]), 4)) for i in np.argsort(-err)[:5]]
    out["groups"] = groups
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", default=DEVICES)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "e2e_noise_floor.json")
    args = ap.parse_args()
    result = {}
    for dev in args.devices.split(","):
        result[dev] = {"run_to_run_rel_std": run_spread(dev), "measured_ops_linear_loo": oracle_loo(dev)}
        o = result[dev]["measured_ops_linear_loo"]
        print(f"{dev}: run-to-run std {result[dev]['run_to_run_rel_std']['median']:.1%} (median); "
              f"linear term on measured per-op sums, leave-one-out: MAPE {o['mape']:.2%}, "
              f"within ±10% {o['within_10']:.1%}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
