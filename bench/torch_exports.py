"""Today's PyTorch exports through oplat and coexec. Writes JSON.

    pip install torch==2.13.0 pytorchcv onnxscript
    python -m bench.torch_exports [--folder /tmp/exports] [--out bench/results/torch_exports.json]

pytorchcv imports ``torchvision.ops`` at import time; where PyPI's torchvision does not
load beside the local torch build, a stub package with ``DeformConv2d`` on PYTHONPATH
is enough (none of these models uses it). Each model is exported with the legacy
exporter (opset 17) and, for the co-execution checks, with ``dynamo=True`` (weights in
``model.onnx.data``). Then:

- ``oplat predict`` (pixel4/tflite-gpu): total, completeness, approximated kernels;
- ``coexec`` split with the plan made from the pixel4 CPU and GPU profiles and with a
  plan forcing every splittable op to split at 1/2: the split model passes
  ``onnx.checker`` and computes what the original does (largest relative difference of
  the outputs under onnxruntime, the issue's bar being 1e-4).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from coexec.plan import forced_plan, make_plan
from coexec.split import split_model
from oplat.model_io import load_model
from oplat.profile import load_profile

ROOT = Path(__file__).resolve().parents[1]
SPLIT = ("resnet18", "mobilenetv2_w1", "squeezenet_v1_1")
PREDICT_ONLY = (("nasnet_4a1056", 224), ("inceptionv3", 299), ("inceptionv4", 299), ("inceptionresnetv2", 299))


def export(name: str, res: int, folder: Path, dynamo: bool) -> Path:
    import torch
    from pytorchcv.model_provider import get_model

    out = folder / (f"{name}_dynamo.onnx" if dynamo else f"{name}.onnx")
    if not out.exists():
        m = get_model(name, pretrained=False).eval()
        x = torch.randn(1, 3, res, res)
        if dynamo:
            torch.onnx.export(m, (x,), str(out), dynamo=True, input_names=["input"])
        else:
            torch.onnx.export(m, x, str(out), opset_version=17, dynamo=False, input_names=["input"])
    return out


def _run(path: Path, x: np.ndarray) -> list[np.ndarray]:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})


def split_check(path: Path, cpu, gpu) -> dict:
    tmp = Path(tempfile.mkdtemp())
    dims = [d.dim_value for d in onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(0).standard_normal(dims).astype(np.float32)
    ref = _run(path, x)
    planned = make_plan(path, cpu, gpu, sync_us=10)
    out = {}
    for label, plan in (("planned", planned), ("forced", forced_plan(planned))):
        o = tmp / f"{label}.onnx"
        split_model(path, plan, o)
        onnx.checker.check_model(str(o), full_check=True)
        got = _run(o, x)
        rel = max(float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-12)) for a, b in zip(ref, got))
        out[label] = {"split_ops": sum(1 for op in plan["ops"] if op["placement"] == "split"),
                      "checker": "ok", "max_rel_diff": rel}
    return out


def predict(path: Path, prof) -> dict:
    r = prof.predict(load_model(path))
    return {"total_ms": round(r.total_ms, 3), "complete": r.complete, "coverage_flops": r.coverage.get("flops"),
            "approximated_ops": r.coverage.get("approximated_ops", 0),
            "unsupported": sorted({u["op_type"] for u in r.unsupported})}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "oplat_torch_exports")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "torch_exports.json")
    args = ap.parse_args()
    import torch

    args.folder.mkdir(parents=True, exist_ok=True)
    cpu, gpu = load_profile("pixel4/tflite-cpu-3med"), load_profile("pixel4/tflite-gpu")
    res: dict = {"torch": torch.__version__, "models": {}}
    for name in SPLIT:
        for dynamo in (False, True):
            p = export(name, 224, args.folder, dynamo)
            res["models"][p.name] = {"predict": predict(p, gpu), "split": split_check(p, cpu, gpu)}
            print(p.name, json.dumps(res["models"][p.name]))
    for name, r in PREDICT_ONLY:
        p = export(name, r, args.folder, False)
        res["models"][p.name] = {"predict": predict(p, gpu)}
        print(p.name, json.dumps(res["models"][p.name]))
    args.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
