"""How well could any end-to-end term do on the phones? Bounds from the data alone.

1. Run-to-run spread of the end-to-end measurements: each phone's ``std / mean`` of the
   ``<device>|gpu|float`` columns of ``tflite_cnn_e2e.csv`` (median, mean, 90th percentile);
   also of every CPU core set, next to its shipped profile's held-out accuracy.
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
import functools
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oplat.datasets import SHARED_DATA, load_phone_e2e, load_phone_gpu_ops  # noqa: E402
from oplat.evaluate import error_metrics  # noqa: E402

DEVICES = "pixel4,s10,mi8se,a03s,iphonexs,iphone7"


@functools.lru_cache(maxsize=1)
def _e2e_rows() -> tuple[dict[str, str], ...]:
    """The rows of ``tflite_cnn_e2e.csv``, read once for every column asked about."""
    with open(SHARED_DATA / "tflite_cnn_e2e.csv", newline="") as f:
        return tuple(csv.DictReader(f))


def run_spread(device: str, processor: str = "gpu", precision: str = "float") -> dict[str, float]:
    """Relative run-to-run standard deviation of one phone's end-to-end measurements
    (``<device>|<processor>|<precision>`` columns of ``tflite_cnn_e2e.csv``)."""
    col = f"{device}|{processor}|{precision}"
    rel = [float(r[f"{col}|std"]) / float(r[f"{col}|mean"])
           for r in _e2e_rows() if r.get(f"{col}|mean") and float(r[f"{col}|mean"]) > 0]
    a = np.array(rel)
    return {"models": len(a), "median": round(float(np.median(a)), 4), "mean": round(float(a.mean()), 4),
            "p90": round(float(np.percentile(a, 90)), 4)}


def cpu_spread_vs_accuracy() -> dict:
    """Per shipped CPU core-set profile: run-to-run spread of its measurements next to its
    held-out share within +-10% (the profile's metadata), and the spreads of the core sets
    that meet the 90% target against those that miss it."""
    from oplat.profile import list_profiles

    out = {}
    for pid, folder in list_profiles():
        meta = json.loads((folder / "profile.json").read_text())
        if meta.get("lowering") != "tflite-cpu" or pid.endswith("-vit") or "core_set" not in meta:
            continue
        prec = "quant" if meta.get("precision") == "int8" else "float"
        out[pid] = {"run_to_run_rel_std_median": run_spread(meta["device"], meta["core_set"], prec)["median"],
                    "held_out_within_10": meta["accuracy"]["end_to_end"]["within_10"]}
    meet = [v["run_to_run_rel_std_median"] for v in out.values() if v["held_out_within_10"] >= 0.9]
    miss = [v["run_to_run_rel_std_median"] for v in out.values() if v["held_out_within_10"] < 0.9]
    return {"core_sets": out, "meeting_90": {"n": len(meet), "median_spread": float(np.median(meet))},
            "missing_90": {"n": len(miss), "median_spread": float(np.median(miss)) if miss else None}}


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
    cpu = cpu_spread_vs_accuracy()
    result["cpu_core_sets"] = cpu
    print(f"CPU core sets: run-to-run std median {cpu['meeting_90']['median_spread']:.2%} on the "
          f"{cpu['meeting_90']['n']} whose profile meets 90% within ±10%, "
          f"{cpu['missing_90']['median_spread']:.2%} on the {cpu['missing_90']['n']} that miss it")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
