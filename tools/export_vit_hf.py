"""Graph-only ONNX builds of the Hugging Face ViTs measured in the shared benchmark.

Names are the benchmark's (Hugging Face ids without the organisation); the architectures
come from this project's ViT generators (``oplat/zoo/vit.py``) with the published
configurations (width, depth, heads, patch, window, resolution). Weights are absent
(graph-only): latency depends on the graph, not the weights. Each build's FLOPs are
within 1-4% of the benchmark's ``flops`` column (checked in tests/test_zoo.py). Not built
yet: SwinV2, FocalNet, SwiftFormer, MobileViTV2 and the BiT-hybrid ViT.

    python -m tools.export_vit_hf [--out oplat/zoo/vit_zoo]
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import onnx  # noqa: E402

from oplat.zoo import vit  # noqa: E402
from oplat.zoo import zoo_dir  # noqa: E402

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
    "efficientformer-l7-300": partial(vit.efficientformer, "l7"),
    "swin-base-patch4-window7-224": partial(vit.swin, 128, (2, 2, 18, 2), (4, 8, 16, 32)),
    **{f"mit-{v}": partial(vit.mit, v) for v in ("b0", "b1", "b2", "b3", "b4", "b5")},
    **{f"pvt-{v}-224": partial(vit.pvt, v) for v in ("tiny", "small", "medium", "large")},
    "cvt-13": partial(vit.cvt, (1, 2, 10)),
    "cvt-13-384": partial(vit.cvt, (1, 2, 10), res=384),
    "cvt-21": partial(vit.cvt, (1, 4, 16)),
    "cvt-21-384": partial(vit.cvt, (1, 4, 16), res=384),
    **{f"poolformer_{v}": partial(vit.poolformer, v) for v in ("s12", "s24", "s36", "m36", "m48")},
    **{f"van-{v}": partial(vit.van, v) for v in ("tiny", "small", "base", "large")},
    **{f"levit-{v}": partial(vit.levit_hf, v) for v in ("128S", "128", "192", "256", "384")},
    "vit-msn-small": partial(vit.vit, 384, 12, 6, 16),
    "vit-msn-base": partial(vit.vit, 768, 12, 12, 16),
    "vit-msn-base-4": partial(vit.vit, 768, 12, 12, 4),
    "beit-base-patch16-224": partial(vit.vit, 768, 12, 12, 16, rel_pos=True, layer_scale=True, head="mean"),
    "beit-base-patch16-384": partial(vit.vit, 768, 12, 12, 16, res=384, rel_pos=True, layer_scale=True, head="mean"),
    "dinov2-small-imagenet1k-1-layer": partial(vit.vit, 384, 12, 6, 14, layer_scale=True, head="cls+mean"),
    "dinov2-base-imagenet1k-1-layer": partial(vit.vit, 768, 12, 12, 14, layer_scale=True, head="cls+mean"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=zoo_dir("vit_zoo"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, fn in HF_VITS.items():
        onnx.save(fn(graph_only=True), args.out / f"{name}.onnx")
        print(name)


if __name__ == "__main__":
    main()
