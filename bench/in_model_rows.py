"""What the in-model rows of ``oplat profile-device`` are worth. Writes JSON.

    python -m bench.in_model_rows WORK_DIR [--out bench/results/in_model_rows.json]

``WORK_DIR`` is a profile-device run's ``DIR/.oplat-profile-device/<backend>-<t>t`` (its
single-op rows ``ops.csv``, in-model rows ``in_model.csv`` and whole-model measurements
``e2e_fit.csv``/``e2e_test.csv``). From the same measurements, with the method of
``profile_device`` (:class:`oplat.train.ProfileTrainer`, fitting models' twins left out):

- ``held_out``: the generated zoo's models (never trained on) predicted by a profile
  trained on the single-op rows alone, and on the single-op and in-model rows together;
- ``in_model_over_single_op``: per kernel family, the median ratio of a kernel's time
  inside a fitting model to what the single-op-only profile predicts for it (how far a
  kernel timed alone is from the same kernel inside a network).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from oplat.collect.device import FACTOR_RIDGES, FRAMEWORKS, score_models, twins_of
from oplat.collect.run import read_collected
from oplat.collect.whole import read_measured
from oplat.features import predictor_key
from oplat.onnx_loader import load_onnx
from oplat.store import DatasetStore
from oplat.train import ProfileTrainer, load_graphs, lowered_for
from oplat.zoo import build, zoo_dir

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "in_model_rows.json")
    args = ap.parse_args()
    meta = DatasetStore(args.work / "ops.csv").meta
    backend, variant = meta.get("lowering") or ["ort-cpu", "nchwc8"]
    fit_e2e, test_e2e = read_measured(args.work / "e2e_fit.csv"), read_measured(args.work / "e2e_test.csv")
    graphs = {**load_graphs(zoo_dir("cnn_zoo")), **load_graphs(zoo_dir("vit_zoo"))}
    test_graphs = {n: load_onnx(build(n, graph_only=True)) for n in sorted(test_e2e)}
    cache: dict = {}
    twins = twins_of(lowered_for({n: graphs[n] for n in fit_e2e}, variant, backend, cache),
                     lowered_for(test_graphs, variant, backend))
    fit = {n: v for n, v in fit_e2e.items() if n not in twins}
    single = read_collected(args.work / "ops.csv")
    in_model = read_collected(args.work / "in_model.csv")

    def train(rows):
        return ProfileTrainer(FRAMEWORKS.get(meta.get("backend"), "onnxruntime"), "cpu", lowering=backend,
                              variant=variant, profile_id="host/ablation", source="bench.in_model_rows",
                              factor_ridge=list(FACTOR_RIDGES), extra_factors=True, factor_units="raw",
                              e2e_term="auto").fit(rows, fit, graphs, "host", lowered_cache=cache)

    res = {"work": str(args.work), "machine": meta.get("machine", {}).get("cpu"), "single_op_rows": len(single),
           "in_model_rows": len(in_model), "in_model_models": len({r.model for r in in_model}),
           "fit_models": len(fit), "test_models": len(test_graphs), "held_out": {}}
    base = None
    for tag, rows in (("single_op_rows", single), ("single_op_and_in_model_rows", single + in_model)):
        prof = train(rows)
        held, _ = score_models(prof, test_graphs, test_e2e)
        res["held_out"][tag] = held
        base = base or prof
        print(tag, {k: (round(v["mape"], 4), round(v["within_10"], 3)) for k, v in held.items()}, flush=True)
    ratios: dict[str, list[float]] = {}
    if in_model:
        pred = base.predict_kernels([(r.kernel, r.impl, r.params, r.linked) for r in in_model])
        for r, p in zip(in_model, pred):
            if p == p and p > 0:
                ratios.setdefault(predictor_key(r.kernel, r.impl) or r.kernel, []).append(r.latency_ms / p)
    res["in_model_over_single_op"] = {k: {"median": round(float(np.median(v)), 3), "rows": len(v)}
                                      for k, v in sorted(ratios.items())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res["in_model_over_single_op"], indent=1))


if __name__ == "__main__":
    main()
