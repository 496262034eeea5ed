"""Regenerate the graph-only ONNX exports of the benchmark's CNNs from the pytorchcv zoo.

The shared dataset names its models after pytorchcv; this script rebuilds them with
random weights, exports ONNX (opset 17, eval mode, batch 1) and strips the weights so
the files stay small. It needs torch and pytorchcv, which are *not* dependencies of the
project; run it in a separate environment:

    python -m venv /opt/exportenv
    /opt/exportenv/bin/pip install torch==2.13.0 onnx numpy && /opt/exportenv/bin/pip install --no-deps pytorchcv
    /opt/exportenv/bin/python -m tools.export_pytorchcv --out oplat/zoo/cnn_zoo [NAMES...]

pytorchcv's model_provider imports every module (one of them needs torchvision), so the
models are imported module by module from the names model_provider lists.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import io
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from oplat.graph_only import strip_weights  # noqa: E402
from oplat.zoo import zoo_dir  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "mobile-ml-benchmark"


def model_modules() -> dict[str, str]:
    """Map every pytorchcv model name to the module that defines it."""
    import pytorchcv

    text = (Path(pytorchcv.__file__).parent / "model_provider.py").read_text()
    out: dict[str, str] = {}
    pattern = r"^from \.models\.(\w+) import (?:\(([^)]*)\)|(.*)$)"
    for m in re.finditer(pattern, text, re.M):
        for name in re.split(r"[\s,]+", m.group(2) or m.group(3)):
            if name:
                out[name] = m.group(1)
    return out


def dataset_models() -> list[str]:
    with open(DATA / "tflite_cnn_e2e.csv") as f:
        return [row["model"] for row in csv.DictReader(f)]


def export(name: str, module: str, out_dir: Path) -> Path:
    import onnx
    import torch

    fn = getattr(importlib.import_module(f"pytorchcv.models.{module}"), name)
    net = fn(pretrained=False).eval()
    # The benchmark ran every model at 224x224, also those whose zoo default is larger
    # (efficientnet_edge_medium_b/large_b): the graphs are fully convolutional.
    x = torch.randn(1, 3, 224, 224)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(net, (x,), buf, opset_version=17, dynamo=False,
                          input_names=["input"], output_names=["output"],
                          do_constant_folding=True)
    model = onnx.load_from_string(buf.getvalue())
    model.producer_name = f"pytorchcv:{name}"
    path = out_dir / f"{name}.onnx"
    onnx.save(strip_weights(model), path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="model names (default: every model of the dataset)")
    ap.add_argument("--out", type=Path, default=zoo_dir("cnn_zoo"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    modules = model_modules()
    failed = []
    for name in args.names or dataset_models():
        try:
            p = export(name, modules[name], args.out)
            print(f"{name}: {p.stat().st_size // 1024} KB", flush=True)
        except Exception as e:  # keep going; report at the end
            failed.append(name)
            print(f"{name}: FAILED {type(e).__name__}: {e}", flush=True)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
