"""Graph-only ONNX builds of the Hugging Face ViTs measured in the shared benchmark.

Names are the benchmark's (Hugging Face ids without the organisation); the architectures
come from this project's ViT generators (``models/zoo/vit.py``) with the published
configurations (width, depth, heads, patch, window, resolution). Weights are absent
(graph-only): latency depends on the graph, not the weights.

    python models/export_vit_hf.py [--out models/vit_zoo]
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import onnx  # noqa: E402

from models.zoo import vit  # noqa: E402

HF_VITS = {
    "deit-tiny-distilled-patch16-224": partial(vit.vit, 192, 12, 3, 16, distilled=True),
    "deit-small-distilled-patch16-224": partial(vit.vit, 384, 12, 6, 16, distilled=True),
    "deit-base-distilled-patch16-224": partial(vit.vit, 768, 12, 12, 16, distilled=True),
    "deit-base-distilled-patch16-384": partial(vit.vit, 768, 12, 12, 16, res=384, distilled=True),
    "vit-base-patch16-224-in21k": partial(vit.vit, 768, 12, 12, 16),
    "vit-base-patch16-384": partial(vit.vit, 768, 12, 12, 16, res=384),
    "vit-base-patch32-224-in21k": partial(vit.vit, 768, 12, 12, 32),
    "vit-base-patch32-384": partial(vit.vit, 768, 12, 12, 32, res=384),
    "swin-tiny-patch4-window7-224": partial(vit.swin, 96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "swin-small-patch4-window7-224": partial(vit.swin, 96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "swin-base-patch4-window12-384": partial(vit.swin, 128, (2, 2, 18, 2), (4, 8, 16, 32), window=12, res=384),
    "mobilevit-xx-small": partial(vit.mobilevit, "xxs"),
    "mobilevit-x-small": partial(vit.mobilevit, "xs"),
    "mobilevit-small": partial(vit.mobilevit, "s"),
    "efficientformer-l1-300": partial(vit.efficientformer, "l1"),
    "efficientformer-l3-300": partial(vit.efficientformer, "l3"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "models" / "vit_zoo")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, fn in HF_VITS.items():
        onnx.save(fn(graph_only=True), args.out / f"{name}.onnx")
        print(name)


if __name__ == "__main__":
    main()
