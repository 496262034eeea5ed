"""FLOP rates a profile predicts per conv kernel shape (1x1, square, each non-square shape)
for given models. Writes JSON.

    python -m bench.conv_flop_rates MODEL.onnx ... [--profiles iphonexs/tflite-cpu-2large,pixel4/tflite-gpu]
        [--out bench/results/conv_flop_rates.json]

Used on Inception v3, v4 and Inception-ResNet v2 exported from pytorchcv with torch 2.13
(``get_model(name).eval()`` then ``torch.onnx.export(m, torch.randn(1, 3, 299, 299), f,
opset_version=17, dynamo=False)``): their 1xk and kx1 convs should run at about the rate
of the square convs of the same profile (oplat.ood), not at a 1x1's or a kxk's.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

from oplat.model_io import load_model
from oplat.profile import load_profile

ROOT = Path(__file__).resolve().parents[1]


def rates(profile_id: str, path: str) -> dict:
    res = load_profile(profile_id).predict(load_model(path))
    agg: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for o in res.ops:
        if o.kernel != "CONV_2D":
            continue
        kh, kw = o.params["Kernel"], o.params.get("Kernel_w", o.params["Kernel"])
        shape = "1x1" if kh == kw == 1 else "square" if kh == kw else f"{kh}x{kw}"
        a = agg[shape]
        a[0] += 1
        a[1] += o.params["FLOPS"]
        a[2] += o.predicted_ms
    return {"total_ms": round(res.total_ms, 3), "complete": res.complete,
            "approximated_ops": res.coverage.get("approximated_ops", 0),
            "convs": {k: {"n": int(v[0]), "gflops_per_s": round(v[1] / v[2] / 1e6, 1), "ms": round(v[2], 3)}
                      for k, v in sorted(agg.items())}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--profiles", default="iphonexs/tflite-cpu-2large,pixel4/tflite-gpu")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "conv_flop_rates.json")
    args = ap.parse_args()
    out = {Path(m).name: {p: rates(p, m) for p in args.profiles.split(",")} for m in args.models}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
