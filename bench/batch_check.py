"""Batched inference: onnxruntime at batch 1, 4 and 16 against the batch method of the
prediction path. Writes JSON.

    python -m bench.batch_check [--profile host/ort-cpu-1t] [--cores 1] [--out bench/results/batch_check.json]

Five zoo CNNs, built with a free batch dimension, are timed with onnxruntime (1 thread,
pinned; two interleaved rounds, each figure the least of its round medians) at each batch.
The profile predicts each at each batch the way the prediction path does (``per_kernel``:
each image kernel's one-image prediction B times, ``oplat.ood.stand_in``; the end-to-end
term's fixed and per-kernel costs not multiplied), and as the alternative that was
checked and set aside (``stacked``: one kernel over the B images stacked along the
height, which takes the regressors past the sizes they were trained on). The profile was measured on another machine, so each model's predictions are
put on this machine's scale by one factor, its batch-1 measured/predicted ratio; what is
checked is how the prediction grows with the batch. Beside it, two naive methods: the
batch-1 time (batch ignored) and B times it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx

from oplat.collect.backends import make_backend
from oplat.collect.whole import measure_rounds
from oplat.onnx_loader import load_onnx
from oplat.profile import load_profile
from oplat.zoo import build

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("resnet18", "mobilenet_v2_1.0", "efficientnet_lite0", "mnasnet_1.0", "regnetx_400mf")
BATCHES = (1, 4, 16)


def batched(name: str, b: int) -> onnx.ModelProto:
    m = build(name)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = b
    for o in m.graph.output:  # the builder writes batch-1 output shapes
        o.type.tensor_type.ClearField("shape")
    return m


def _stacked(lm):
    """The batch's images stacked along the height in every image kernel."""
    for k in lm.kernels:
        b = k.params.pop("Images", None)
        if b:
            for name in ("Input_shape", "Output_shape") if k.type != "MEAN" else ("Input_shape",):
                if isinstance(k.params.get(name), (int, float)):
                    k.params[name] *= b
            if "FLOPS" in k.params:
                k.params["FLOPS"] *= b
    return lm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="host/ort-cpu-1t")
    ap.add_argument("--cores", default="1")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "batch_check.json")
    args = ap.parse_args()
    prof = load_profile(args.profile)
    backend = make_backend("ort-cpu", 1, [int(c) for c in args.cores.split(",")])
    models = {(n, b): batched(n, b) for n in MODELS for b in BATCHES}
    measured = measure_rounds(backend, models, rounds=2, max_seconds=2.0)
    rows, errs = [], {"per_kernel": [], "stacked": [], "ignored": [], "linear": []}
    for n in MODELS:
        pred = {b: prof.predict(load_onnx(models[(n, b)])).total_ms for b in BATCHES}
        stacked = {b: prof.predict(_stacked(prof.lower(load_onnx(models[(n, b)])))).total_ms for b in BATCHES}
        ratio = measured[(n, 1)] / pred[1]
        for b in BATCHES:
            m = measured[(n, b)]
            ways = {"per_kernel": pred[b] * ratio, "stacked": stacked[b] * ratio, "ignored": pred[1] * ratio,
                    "linear": b * pred[1] * ratio}
            row = {"model": n, "batch": b, "measured_ms": round(m, 3)}
            for w, v in ways.items():
                row[f"{w}_ms"] = round(v, 3)
                row[f"{w}_err"] = round(v / m - 1, 4)
                if b > 1:
                    errs[w].append(abs(v / m - 1))
            rows.append(row)
    summary = {w: {"mape": round(float(np.mean(e)), 4), "max_abs_err": round(float(np.max(e)), 4),
                   "within_15": round(float(np.mean(np.asarray(e) <= 0.15)), 3)} for w, e in errs.items()}
    res = {"profile": args.profile, "backend": backend.settings, "batches": BATCHES,
           "summary_batches_above_1": summary, "rows": rows}
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
