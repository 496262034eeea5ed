"""How well could any end-to-end term do on the phones? Bounds from the data alone.

1. Run-to-run spread of the end-to-end measurements: each phone's ``std / mean`` of the
   ``<device>|gpu|float`` columns of ``tflite_cnn_e2e.csv`` (median, mean, 90th percentile);
   also of every CPU core set, next to its shipped profile's held-out accuracy.
2. An oracle for the per-op part: the model's *measured* per-op rows (not predictions),
   summed per kernel implementation, plus a constant and the kernel count, fitted to the
   end-to-end latency by least squares on relative error and scored leave-one-model-out.
   Its MAPE is what a linear end-to-end term reaches with perfect per-op predictions;
   ``oplat evaluate`` (held-out per-op predictions) is compared with it. The same term
   fitted and scored on all models (``in_sample``) is the best any linear term over these
   columns can do on this data; a held-out fit does worse.
3. Near twins: zoo CNNs whose kernels differ only by a fused activation (pytorchcv's
   ``mobilenet``/``mobilenetb``) or by one small block (``mobilenetv2``/``mobilenetv2b``):
   their end-to-end ratio next to their measured per-op sums' ratio. Where the sums agree
   and the end-to-end times do not, the difference is the measurement's, not a model's.
4. PyTorch GPU per-op rows: how far apart identical kernels (same op, shapes, fused
   activation) in different models were timed, and each model's per-op sum against its
   end-to-end time, per phone.
5. Exact twins among the ViTs (identical kernels once lowered: any predictor that reads
   the model file gives them one prediction): their end-to-end disagreement per core set,
   and the least MAPE that core set can have on them alone, as a share of its models.

    python -m bench.e2e_noise_floor [--devices s10,a03s]
"""

from __future__ import annotations

import argparse
import collections
import csv
import functools
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from oplat.datasets import SHARED_DATA, load_phone_e2e, load_phone_gpu_ops  # noqa: E402
from oplat.fitting import error_metrics  # noqa: E402
from oplat.zoo import zoo_dir  # noqa: E402

DEVICES = "pixel4,s10,mi8se,a03s,iphonexs,iphone7"


@functools.lru_cache(maxsize=1)
def _e2e_rows() -> tuple[dict[str, str], ...]:
    """The rows of ``tflite_cnn_e2e.csv``, read once for every column asked about."""
    with open(SHARED_DATA / "tflite_cnn_e2e.csv", newline="") as f:
        return tuple(csv.DictReader(f))


@functools.lru_cache(maxsize=None)
def _gpu_data(device: str) -> tuple[tuple, dict[str, float]]:
    """One phone's per-op GPU rows and end-to-end GPU latencies, read once for every use."""
    return tuple(load_phone_gpu_ops(devices=[device])), load_phone_e2e(processor="gpu").get(device, {})


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
    rows, e2e = _gpu_data(device)
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
    lhs = np.vstack([a, np.sqrt(ridge) * np.eye(a.shape[1])])
    coef = np.linalg.lstsq(lhs, np.concatenate([np.ones(len(y)), np.zeros(a.shape[1])]), rcond=None)[0]
    out["in_sample"] = error_metrics((x / scale) @ coef, y)
    return out


NEAR_TWINS = [(f"mobilenet_{w}", f"mobilenetb_{w}") for w in ("wd4", "wd2", "w3d4", "w1")] + [
    (f"mobilenetv2_{w}", f"mobilenetv2b_{w}") for w in ("wd4", "wd2", "w3d4", "w1")]


def near_twins(device: str) -> dict:
    """End-to-end ratio and measured per-op sum ratio of each :data:`NEAR_TWINS` pair."""
    rows, e2e = _gpu_data(device)
    sums: dict[str, float] = collections.Counter()
    for r in rows:
        sums[r.model] += r.latency_ms
    pairs = []
    for a, b in NEAR_TWINS:
        if a in e2e and b in e2e and sums[a] > 0 and sums[b] > 0:
            pairs.append({"pair": [a, b], "e2e_ratio": round(e2e[b] / e2e[a], 4),
                          "per_op_sum_ratio": round(sums[b] / sums[a], 4)})
    gap = [abs(np.log(p["e2e_ratio"] / p["per_op_sum_ratio"])) for p in pairs]
    return {"pairs": pairs, "max_unexplained": round(float(np.expm1(max(gap))), 4) if gap else None}


def torch_per_op_consistency() -> dict:
    """Per phone of ``torch_cnn_ops_gpu.csv``: spread of identical kernels' per-op times
    across models, and per-op sums against end-to-end times."""
    from oplat.datasets import load_torch_gpu_ops

    e2e = load_phone_e2e(SHARED_DATA / "torch_cnn_e2e.csv", processor="gpu")
    rows = load_torch_gpu_ops()
    out = {}
    for dev in sorted({r.device for r in rows}):
        same: dict[str, list[float]] = collections.defaultdict(list)
        sums: dict[str, float] = collections.Counter()
        for r in rows:
            if r.device == dev:
                same[json.dumps([r.kernel, r.impl, r.params, r.linked], sort_keys=True, default=str)].append(
                    r.latency_ms)
                sums[r.model] += r.latency_ms
        groups = [np.asarray(v) for v in same.values() if len(v) >= 3]
        log_sd = [np.std(np.log(g)) for g in groups]
        ratio = [sums[m] / e2e[dev][m] for m in sums if m in e2e.get(dev, {})]
        out[dev] = {"identical_kernel_groups": len(groups),
                    "log_sd_median": round(float(np.median(log_sd)), 4),
                    "log_sd_p90": round(float(np.percentile(log_sd, 90)), 4),
                    "max_over_min_largest": round(float(max(g.max() / g.min() for g in groups)), 1),
                    "per_op_sum_over_e2e_median": round(float(np.median(ratio)), 4),
                    "per_op_sum_over_e2e_p10_p90": [round(float(q), 4) for q in np.percentile(ratio, [10, 90])]}
    return out


def vit_exact_twins() -> dict:
    """Groups of benchmark ViTs with identical lowered kernels, and per core set their
    end-to-end disagreement and the least MAPE share they force (best single prediction)."""
    from oplat.datasets import e2e_configs
    from oplat.lowering import lower
    from oplat.train import load_graphs

    graphs = load_graphs(zoo_dir("vit_zoo"))
    sig: dict[str, list[str]] = collections.defaultdict(list)
    for name, g in graphs.items():
        lm = lower(g, "tflite-cpu")
        sig[json.dumps(sorted(json.dumps([k.type, k.impl, k.params, k.linked], sort_keys=True, default=str)
                              for k in lm.kernels if k.type != "RESHAPE"))].append(name)
    groups = sorted(sorted(v) for v in sig.values() if len(v) > 1)
    out: dict = {"groups": groups, "configs": {}}
    for csv_name, fw in (("tflite_transformer_e2e.csv", "tflite"), ("torch_transformer_e2e.csv", "torch")):
        path = SHARED_DATA / csv_name
        for dev, cfg, prec in e2e_configs(path):
            if prec != "float" or cfg == "gpu":
                continue
            lat = load_phone_e2e(path, processor=cfg).get(dev, {})
            n = sum(1 for m in lat if m in graphs)
            floor, worst = 0.0, 0.0
            for g in groups:
                ys = np.array([lat[m] for m in g if m in lat])
                if len(ys) < 2:
                    continue
                floor += min(float(np.sum(np.abs(p / ys - 1))) for p in ys)  # optimum sits at a measurement
                worst = max(worst, float(ys.max() / ys.min() - 1))
            if n:
                out["configs"][f"{dev}/{fw}-cpu-{cfg}-vit"] = {"models": n, "twin_spread_max": round(worst, 4),
                                                              "mape_floor_from_twins": round(floor / n, 4)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", default=DEVICES)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "e2e_noise_floor.json")
    args = ap.parse_args()
    result = {}
    for dev in args.devices.split(","):
        result[dev] = {"run_to_run_rel_std": run_spread(dev), "measured_ops_linear_loo": oracle_loo(dev),
                       "near_twins": near_twins(dev)}
        o = result[dev]["measured_ops_linear_loo"]
        print(f"{dev}: run-to-run std {result[dev]['run_to_run_rel_std']['median']:.1%} (median); "
              f"linear term on measured per-op sums, leave-one-out: MAPE {o['mape']:.2%}, "
              f"within ±10% {o['within_10']:.1%}; in sample: MAPE {o['in_sample']['mape']:.2%}, "
              f"within ±10% {o['in_sample']['within_10']:.1%}; near twins: up to "
              f"{result[dev]['near_twins']['max_unexplained']:.1%} apart beyond their per-op sums", flush=True)
    cpu = cpu_spread_vs_accuracy()
    result["cpu_core_sets"] = cpu
    print(f"CPU core sets: run-to-run std median {cpu['meeting_90']['median_spread']:.2%} on the "
          f"{cpu['meeting_90']['n']} whose profile meets 90% within ±10%, "
          f"{cpu['missing_90']['median_spread']:.2%} on the {cpu['missing_90']['n']} that miss it")
    result["torch_gpu_per_op"] = torch_per_op_consistency()
    for dev, t in result["torch_gpu_per_op"].items():
        print(f"torch GPU per-op rows, {dev}: identical kernels' log-sd median {t['log_sd_median']:.3f}, "
              f"p90 {t['log_sd_p90']:.3f}, widest {t['max_over_min_largest']}x; per-op sum / end-to-end "
              f"median {t['per_op_sum_over_e2e_median']:.2f}")
    result["vit_exact_twins"] = vit_exact_twins()
    print("ViT exact twins:", result["vit_exact_twins"]["groups"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
