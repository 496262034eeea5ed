"""Build the shipped phone CPU profiles from end-to-end latencies, with held-out accuracy.

For every device and core set of ``tflite_cnn_e2e.csv`` (fp32, and int8 where measured):
grouped 10-fold CV over models (fixed seed) of the end-to-end decomposition
(:mod:`oplat.decompose`), then a profile trained on every model saved to
``device_profiles/<device>/tflite-cpu-<coreset>[-int8]`` with that accuracy in its
metadata. Measurements that disagree with the same model's measurements on the
device's other core sets (:func:`oplat.datasets.inconsistent_e2e`: runs that went
wrong on the phone) are left out of training; the accuracy is reported on the other
models (``end_to_end``) and on every model (``end_to_end_all``). Writes the table as
JSON and a scatter PNG.

    python -m tools.build_profiles.cpu [--devices pixel4,s10] [--precisions float,quant]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from rich.progress import Progress  # noqa: E402

from oplat.datasets import (ATTRIBUTION, PHONE_FACTS, coreset_threads, e2e_configs,  # noqa: E402
                            inconsistent_e2e, load_phone_e2e)
from oplat.decompose import E2EDecomposer, cross_validate_e2e, kernel_tables  # noqa: E402
from oplat.report import scatter_png  # noqa: E402
from oplat.train import load_graphs  # noqa: E402
from oplat.zoo import zoo_dir  # noqa: E402

SOURCE = "mobile-ml-benchmark:tflite_cnn_e2e.csv"


def profile_id(device: str, config: str, precision: str) -> str:
    """``pixel4/tflite-cpu-1large`` (``-int8`` for quantized models)."""
    return f"{device}/tflite-cpu-{config}" + ("-int8" if precision == "quant" else "")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", default="")
    ap.add_argument("--precisions", default="float,quant")
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=1)
    ap.add_argument("--shrink", type=float, default=-1.0,
                    help="pull per-kernel linear costs towards their family's (negative: off)")
    ap.add_argument("--out", type=Path, default=ROOT / "device_profiles")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "cpu_profiles_cv.json")
    args = ap.parse_args()
    devices = set(args.devices.split(",")) if args.devices else None
    shrink = args.shrink if args.shrink >= 0 else None
    precisions = args.precisions.split(",")
    configs = [c for c in e2e_configs() if c[1] != "gpu" and c[2] in precisions
               and (devices is None or c[0] in devices)]
    graphs = load_graphs(zoo_dir("cnn_zoo"))
    tables = {p: kernel_tables(graphs, bytes_per_elem=4.0 if p == "float" else 1.0) for p in precisions}
    flagged = inconsistent_e2e()
    result: dict = {"folds": args.folds, "seed": 0, "iterations": args.iterations, "shrink": shrink, "profiles": {}}
    points: dict = {}
    t0 = time.time()
    with Progress() as bar:
        task = bar.add_task("CPU profiles", total=len(configs))
        for dev, cfg, prec in configs:
            measured = load_phone_e2e(processor=cfg, precision=prec).get(dev, {})
            measured = {m: v for m, v in measured.items() if m in graphs and v > 0}
            if len(measured) < 20:
                bar.advance(task)
                continue
            pid = profile_id(dev, cfg, prec)
            bar.update(task, description=pid)
            bad = flagged.get((dev, cfg, prec), {})
            cv = cross_validate_e2e(tables[prec], measured, folds=args.folds, iterations=args.iterations,
                                    unreliable=bad, shrink=shrink)
            pred, true, _ = cv.pop("_points")
            points[pid] = {"e2e": (pred, true), "op": ([], [])}
            names = sorted(m for m in measured if m not in bad)
            d = E2EDecomposer(args.iterations, shrink=shrink).fit([tables[prec][m] for m in names],
                                                                   [measured[m] for m in names])
            meta = {"id": pid, "device": dev, "framework": "tflite", "processor": "cpu", "core_set": cfg,
                    "threads": coreset_threads(cfg), "precision": "fp32" if prec == "float" else "int8",
                    "gpu_family": "cpu", "lowering": "tflite-cpu",
                    "framework_version": "TensorFlow Lite 2.10 (XNNPACK)", **PHONE_FACTS.get(dev, {}),
                    "accuracy": {"method": cv["method"], "end_to_end": cv["end_to_end"],
                                 "end_to_end_all": cv["end_to_end_all"], "worst_end_to_end": cv["worst_end_to_end"]},
                    "training": {"source": SOURCE, "models": len(names), "column": f"{dev}|{cfg}|{prec}|mean",
                                 "left_out_inconsistent": bad, "attribution": ATTRIBUTION}}
            d.to_profile(meta).save(args.out / pid)
            result["profiles"][pid] = {k: v for k, v in cv.items() if k != "method"}
            bar.advance(task)
    result["seconds"] = round(time.time() - t0, 1)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=1))
    if points:
        scatter_png(dict(list(points.items())[:8]), str(args.results.with_suffix(".png")))
    for pid, r in result["profiles"].items():
        e, a = r["end_to_end"], r["end_to_end_all"]
        print(f"{pid:34s} MAPE {100 * e['mape']:5.2f}%  within10 {100 * e['within_10']:5.1f}%"
              f"  (all measurements: {100 * a['mape']:5.2f}%, {100 * a['within_10']:5.1f}%)")


if __name__ == "__main__":
    main()
