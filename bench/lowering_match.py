"""How many of the dataset's per-op rows does our lowering of the ONNX exports reproduce?

``share`` compares the operation and every recorded feature. The dataset's TFLite
models were converted from tf2cv (Keras) implementations, which keep an explicit PAD in
front of some model families' convs and pools and not others; the PyTorch graph does not
show which, so ``share_ignoring_input_padding`` also reports the match with the recorded
(padded or not) input size left out.

For every model with an export in ``oplat/zoo/cnn_zoo``, lower it for each GPU family and
compare the kernel rows (operation and every feature, plus the GPU kernel family and
linked ops) with the dataset's rows of that model, as multisets. Writes JSON.

    python -m bench.lowering_match --out bench/results/lowering_match.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from oplat.datasets import load_phone_gpu_ops  # noqa: E402
from oplat.evaluate import lowering_match  # noqa: E402
from oplat.zoo import zoo_dir  # noqa: E402

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", type=Path, default=zoo_dir("cnn_zoo"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lowering_match.json")
    ap.add_argument("--show", type=int, default=0, help="print up to N mismatching models")
    args = ap.parse_args()
    result = lowering_match(load_phone_gpu_ops(), args.zoo, show=args.show)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "per_model"}))


if __name__ == "__main__":
    main()
