"""Few-shot calibration: a CPU profile of one phone calibrated to another phone.

For every ordered pair of phones and every fp32 core set both have: 10 models drawn at
random (fixed seed) are the calibration measurements of the target phone, the other
models are held out; the calibrated base profile predicts the held-out models.
Reports share within +-10%, MAPE and Spearman rank correlation of the default
calibration (``blend``: the base and the shipped profiles of the other phones, never
the target phone's), of the base alone (the per-base methods) and the uncalibrated
base's MAPE, all on the same draws.

    python bench/calibrate_transfer.py [--shots 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from rich.progress import Progress  # noqa: E402

from oplat.calibrate import blend_library, calibrate_profile, spearman  # noqa: E402
from oplat.datasets import e2e_configs, load_phone_e2e  # noqa: E402
from oplat.evaluate import error_metrics  # noqa: E402
from oplat.profile import load_profile  # noqa: E402
from oplat.train import load_graphs  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "calibrate_transfer.json")
    args = ap.parse_args()
    graphs = load_graphs(ROOT / "models" / "cnn_zoo")
    configs = [(d, c) for d, c, p in e2e_configs() if p == "float" and c != "gpu"]
    by_dev: dict[str, set[str]] = {}
    for d, c in configs:
        by_dev.setdefault(d, set()).add(c)
    pairs = [(b, t, c) for b, t in itertools.permutations(sorted(by_dev), 2) for c in sorted(by_dev[b] & by_dev[t])]
    rows = []
    cache: dict = {}
    with Progress() as bar:
        task = bar.add_task("calibrate", total=len(pairs))
        for b, t, c in pairs:
            bar.update(task, description=f"{b} -> {t} {c}")
            measured = load_phone_e2e(processor=c)[t]
            models = sorted(m for m in measured if m in graphs)
            rng = np.random.default_rng([args.seed, len(rows)])
            shots = sorted(rng.choice(models, args.shots, replace=False).tolist())
            held = [m for m in models if m not in set(shots)]
            pid = f"{b}/tflite-cpu-{c}"
            if pid not in cache:
                base = load_profile(pid)
                cache[pid] = blend_library(base)
            library = [p for p in cache[pid] if p.meta.get("device") != t]  # nothing of the target phone
            base = library[0]
            sg, sy = [graphs[m] for m in shots], [measured[m] for m in shots]
            prof, rep = calibrate_profile(base, sg, sy, library=library)
            own, own_rep = calibrate_profile(base, sg, sy)  # the base alone (per-base methods)
            hg = [graphs[m] for m in held]
            pred = [r.total_ms for r in prof.predict_many(hg)]
            pred_own = [r.total_ms for r in own.predict_many(hg)]
            raw = [r.total_ms for r in base.predict_many(hg)]
            true = [measured[m] for m in held]
            em, eo = error_metrics(pred, true), error_metrics(pred_own, true)
            rows.append({"base": pid, "target": f"{t}|{c}", "method": rep["method"], "within_10": em["within_10"],
                         "mape": em["mape"], "spearman": spearman(pred, true),
                         "members": rep.get("members"), "library": len(library),
                         "per_base_method": own_rep["method"], "per_base_within_10": eo["within_10"],
                         "per_base_mape": eo["mape"], "per_base_spearman": spearman(pred_own, true),
                         "uncalibrated_mape": error_metrics(raw, true)["mape"], "held_out": len(held)})
            bar.advance(task)
    w = [r["within_10"] for r in rows]
    s = [r["spearman"] for r in rows]
    summary = {"pairs": len(rows), "shots": args.shots, "median_within_10": statistics.median(w),
               "min_within_10": min(w), "share_pairs_within10_ge_85": sum(x >= 0.85 for x in w) / len(w),
               "median_spearman": statistics.median(s), "min_spearman": min(s),
               "share_pairs_spearman_ge_095": sum(x >= 0.95 for x in s) / len(s),
               "median_mape": statistics.median(r["mape"] for r in rows),
               "median_uncalibrated_mape": statistics.median(r["uncalibrated_mape"] for r in rows),
               "per_base": {"median_within_10": statistics.median(r["per_base_within_10"] for r in rows),
                            "share_pairs_within10_ge_85":
                                sum(r["per_base_within_10"] >= 0.85 for r in rows) / len(rows),
                            "min_spearman": min(r["per_base_spearman"] for r in rows),
                            "median_mape": statistics.median(r["per_base_mape"] for r in rows)}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "pairs": rows}, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
