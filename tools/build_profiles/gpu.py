"""Build the shipped phone GPU profiles and record their held-out accuracy.

For each device: grouped 10-fold CV (fixed seed) gives the held-out accuracy, then a
profile trained on every model is saved to ``device_profiles/<device>/tflite-gpu`` with
that accuracy in its metadata. Also writes the CV table as JSON and a scatter PNG.

    python -m tools.build_profiles.gpu [--devices pixel4,s10] [--folds 10]
        [--factor-ridge 0.1 | 0.01,0.1,1,...] [--factor-units scaled|raw] [--signed-counts] [--layout-by-type]
        [--e2e-term auto | l2 | huber | signed | a comma list]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from oplat.datasets import load_phone_e2e, load_phone_gpu_ops  # noqa: E402
from oplat.evaluate import cross_validate  # noqa: E402
from oplat.report import scatter_png  # noqa: E402
from oplat.overhead import e2e_terms  # noqa: E402
from oplat.train import ProfileTrainer, load_graphs  # noqa: E402
from oplat.zoo import zoo_dir  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", default="pixel4,s10,mi8se,a03s,iphonexs,iphone7")
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--out", type=Path, default=ROOT / "device_profiles")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "gpu_profiles_cv.json")
    ap.add_argument("--factor-ridge", default="0.1",
                    help="end-to-end term's factor ridge; a comma list is chosen by inner 10-fold CV (one-SE rule)")
    ap.add_argument("--factor-units", choices=("scaled", "raw"), default="scaled")
    ap.add_argument("--signed-counts", action="store_true", help="per-type kernel counts may take either sign")
    ap.add_argument("--layout-by-type", action="store_true",
                    help="the end-to-end term's layout work in columns per kernel type (SLICE, RESIZE, ...)")
    ap.add_argument("--e2e-term", default="auto",
                    help="end-to-end term fit (oplat.overhead.E2E_TERMS); a list or auto is chosen per device "
                         "and fold by inner 10-fold CV over the fitting models")
    args = ap.parse_args()
    ridges = [float(r) for r in args.factor_ridge.split(",")]
    options = {"factor_ridge": ridges[0] if len(ridges) == 1 else ridges, "factor_units": args.factor_units,
               "signed_counts": args.signed_counts, "layout_by_type": args.layout_by_type,
               "e2e_term": e2e_terms(args.e2e_term)}
    devices = args.devices.split(",")
    rows = load_phone_gpu_ops(devices=devices)
    e2e = load_phone_e2e(processor="gpu")
    graphs = load_graphs(zoo_dir("cnn_zoo"))
    source = "mobile-ml-benchmark:tflite_cnn_ops_gpu.csv+tflite_cnn_e2e.csv"
    t0 = time.time()
    cv = cross_validate(rows, e2e, graphs, devices, folds=args.folds, seed=0, source=source,
                        progress=lambda s: print(s, flush=True), **options)
    points = cv.pop("_points")
    cv["seconds"] = round(time.time() - t0, 1)
    cv["options"] = options
    cache: dict = {}
    for dev in devices:
        prof = ProfileTrainer(source=source, **options).fit(rows, e2e.get(dev, {}), graphs, dev, lowered_cache=cache)
        acc = cv["devices"][dev]
        prof.meta["accuracy"] = {"method": f"grouped {args.folds}-fold CV over models, seed 0",
                                 "per_op": acc["per_op"], "end_to_end": acc["end_to_end"]}
        prof.save(args.out / dev / "tflite-gpu")
        print(dev, json.dumps(acc), flush=True)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(cv, indent=1))
    scatter_png(points, str(args.results.with_suffix(".png")))


if __name__ == "__main__":
    main()
