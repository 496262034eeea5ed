"""Build CPU profiles for Vision Transformers from ``tflite_transformer_e2e.csv``.

The benchmark ViTs this project builds (``tools/export_vit_hf.py`` -> ``oplat/zoo/vit_zoo``:
ViT/DeiT/BEiT/DINOv2/ViT-MSN, Swin, MobileViT, EfficientFormer, LeViT, SegFormer MiT,
PVT, CvT, PoolFormer, VAN; each within 1-4% of the benchmark's FLOPs) are decomposed
per core set like the CNN CPU profiles (:mod:`oplat.decompose`; TFLite 2.15 XNNPACK
kernels: token-wise fully connected, batched matmul, softmax, layer norm, GELU,
transposes). Held-out accuracy is leave-one-model-out; fitting CNNs and ViTs together
was less accurate held out (the two sets were measured with different TFLite versions),
so ViTs get profiles of their own: ``<device>/tflite-cpu-<coreset>-vit``. Measurements flagged by
:func:`oplat.datasets.inconsistent_e2e` are not trained on; ``end_to_end`` scores the
other models, ``end_to_end_all`` every model.

The same for PyTorch Mobile (``--framework torch``: ``torch_transformer_e2e.csv``,
profiles ``<device>/torch-cpu-<coreset>-vit``; PyTorch Mobile's CPU path runs linear
layers and convs through XNNPACK as TFLite does and softmax, layer norm, GELU and
batched matmul as kernels of their own, so the same kernel families are the basis of
the decomposition).

A few dozen models are few for 18 kernel keys with three linear costs each, so the linear
stage is shrunk towards one cost per kernel family (``--shrink``, 0.3: chosen over 0.01,
0.1, 1 and 10 by the number of profiles with a leave-one-model-out MAPE <= 10% over both
frameworks; off: ``--shrink -1``).

    python -m tools.build_profiles.vit_cpu [--devices pixel4,s10] [--framework tflite|torch]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from rich.progress import Progress  # noqa: E402

from oplat.datasets import (ATTRIBUTION, PHONE_FACTS, SHARED_DATA, coreset_threads, e2e_configs,  # noqa: E402
                            inconsistent_e2e, load_phone_e2e)
from oplat.decompose import E2EDecomposer, kernel_tables  # noqa: E402
from oplat.fitting import error_metrics  # noqa: E402
from oplat.train import load_graphs  # noqa: E402
from oplat.zoo import zoo_dir  # noqa: E402

FRAMEWORKS = {
    "tflite": {"csv": "tflite_transformer_e2e.csv", "version": "TensorFlow Lite 2.15 (XNNPACK)",
               "results": "vit_cpu_profiles_cv.json"},
    "torch": {"csv": "torch_transformer_e2e.csv", "version": "PyTorch Mobile (XNNPACK linear/conv, ATen others)",
              "results": "torch_vit_cpu_profiles_cv.json"},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", default="")
    ap.add_argument("--out", type=Path, default=ROOT / "device_profiles")
    ap.add_argument("--framework", choices=sorted(FRAMEWORKS), default="tflite")
    ap.add_argument("--results", type=Path, help="JSON with the held-out accuracy (default per framework)")
    ap.add_argument("--shrink", type=float, default=0.3,
                    help="pull per-kernel linear costs towards their family's (oplat.decompose.fit_linear_shrunk); "
                         "negative: off")
    args = ap.parse_args()
    fw = FRAMEWORKS[args.framework]
    csv_path = SHARED_DATA / fw["csv"]
    args.results = args.results or ROOT / "bench" / "results" / fw["results"]
    devices = set(args.devices.split(",")) if args.devices else None
    graphs = load_graphs(zoo_dir("vit_zoo"))
    tables = kernel_tables(graphs)
    configs = [(d, c) for d, c, p in e2e_configs(csv_path)
               if p == "float" and c != "gpu" and (devices is None or d in devices)]
    shrink = args.shrink if args.shrink >= 0 else None
    result: dict = {"method": "leave-one-model-out over the buildable benchmark ViTs", "profiles": {},
                    "shrink": shrink}
    flagged = inconsistent_e2e(csv_path)
    with Progress() as bar:
        task = bar.add_task("ViT CPU profiles", total=len(configs))
        for dev, cfg in configs:
            measured = {m: v for m, v in load_phone_e2e(csv_path, processor=cfg).get(dev, {}).items() if m in tables}
            names = sorted(measured)
            if len(names) < 8:
                bar.advance(task)
                continue
            pid = f"{dev}/{args.framework}-cpu-{cfg}-vit"
            bar.update(task, description=pid)
            bad = flagged.get((dev, cfg, "float"), {})
            pred, true, errs = [], [], {}
            for m in names:
                rest = [n for n in names if n != m and n not in bad]
                d = E2EDecomposer(shrink=shrink).fit([tables[n] for n in rest], [measured[n] for n in rest])
                p = float(d.predict_totals([tables[m]])[0])
                errs[m] = round((p - measured[m]) / measured[m], 4)
                if m not in bad:
                    pred.append(p)
                    true.append(measured[m])
            acc = error_metrics(pred, true)
            acc_all = error_metrics([measured[m] * (1 + errs[m]) for m in names], [measured[m] for m in names])
            good = [n for n in names if n not in bad]
            d = E2EDecomposer(shrink=shrink).fit([tables[n] for n in good], [measured[n] for n in good])
            meta = {"id": pid, "device": dev, "framework": args.framework, "processor": "cpu", "core_set": cfg,
                    "threads": coreset_threads(cfg), "precision": "fp32", "gpu_family": "cpu", "lowering": "tflite-cpu",
                    "framework_version": fw["version"], "model_family": "vision transformers",
                    **PHONE_FACTS.get(dev, {}),
                    "accuracy": {"method": result["method"], "end_to_end": acc, "end_to_end_all": acc_all,
                                 "per_model_error": errs},
                    "training": {"source": f"mobile-ml-benchmark:{fw['csv']}", "models": good,
                                 "left_out_inconsistent": bad, "attribution": ATTRIBUTION}}
            d.to_profile(meta).save(args.out / pid)
            result["profiles"][pid] = {"end_to_end": acc, "end_to_end_all": acc_all, "per_model_error": errs,
                                       "left_out_inconsistent": bad}
            bar.advance(task)
    mapes = [r["end_to_end"]["mape"] for r in result["profiles"].values()]
    result["summary"] = {"profiles": len(mapes), "median_mape": statistics.median(mapes), "max_mape": max(mapes),
                         "share_mape_le_10pct": sum(m <= 0.10 for m in mapes) / len(mapes)}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=1))
    for pid, r in result["profiles"].items():
        e = r["end_to_end"]
        print(f"{pid:36s} MAPE {100 * e['mape']:5.1f}%  within10 {100 * e['within_10']:5.1f}%")
    print(json.dumps(result["summary"]))


if __name__ == "__main__":
    main()
