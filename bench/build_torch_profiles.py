"""Build the shipped PyTorch Mobile GPU profiles (Vulkan, Metal) with held-out accuracy.

Per-op rows from ``torch_cnn_ops_gpu.csv`` (aten / vulkan_prepack ops mapped to this
project's kernel vocabulary), end-to-end latencies from ``torch_cnn_e2e.csv``, graphs
from ``models/cnn_zoo`` lowered with the ``torch-gpu`` rules. Grouped 10-fold CV over
models (seed 0), then a profile on all models per device saved to
``device_profiles/<device>/torch-gpu``.

    python bench/build_torch_profiles.py [--devices pixel4,s10,onefusion,iphonexs]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oplat.datasets import PHONE_FACTS, SHARED_DATA, TORCH_GPU_FAMILY, load_phone_e2e, load_torch_gpu_ops  # noqa: E402
from oplat.evaluate import cross_validate, scatter_png  # noqa: E402
from oplat.train import load_graphs, train_profile  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", default="pixel4,s10,onefusion,iphonexs")
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--out", type=Path, default=ROOT / "device_profiles")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "torch_profiles_cv.json")
    args = ap.parse_args()
    devices = args.devices.split(",")
    rows = load_torch_gpu_ops(devices=devices)
    e2e = load_phone_e2e(SHARED_DATA / "torch_cnn_e2e.csv", processor="gpu")
    graphs = load_graphs(ROOT / "models" / "cnn_zoo")
    source = "mobile-ml-benchmark:torch_cnn_ops_gpu.csv+torch_cnn_e2e.csv"
    kw = {"framework": "torch", "lowering": "torch-gpu", "gpu_family": lambda d: TORCH_GPU_FAMILY[d],
          "profile_id": lambda d: f"{d}/torch-gpu"}
    t0 = time.time()
    cv = cross_validate(rows, e2e, graphs, devices, folds=args.folds, seed=0, source=source,
                        progress=lambda s: print(s, flush=True), **kw)
    points = cv.pop("_points")
    cv["seconds"] = round(time.time() - t0, 1)
    cache: dict = {}
    for dev in devices:
        prof = train_profile(rows, e2e.get(dev, {}), graphs, dev, framework="torch", gpu_family=TORCH_GPU_FAMILY[dev],
                             lowering="torch-gpu", profile_id=f"{dev}/torch-gpu", source=source, lowered_cache=cache)
        prof.meta["framework_version"] = "PyTorch Mobile 2.0 (" + ("Metal" if TORCH_GPU_FAMILY[dev] == "metal" else "Vulkan") + ")"
        prof.meta["precision"] = "fp16" if TORCH_GPU_FAMILY[dev] == "vulkan" else "fp16"
        prof.meta.update({k: v for k, v in PHONE_FACTS.get(dev, {}).items()})
        acc = cv["devices"][dev]
        prof.meta["accuracy"] = {"method": f"grouped {args.folds}-fold CV over models, seed 0",
                                 "per_op": acc["per_op"], "end_to_end": acc["end_to_end"]}
        prof.save(args.out / dev / "torch-gpu")
        print(dev, json.dumps(acc), flush=True)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(cv, indent=1))
    scatter_png(points, str(args.results.with_suffix(".png")))


if __name__ == "__main__":
    main()
