"""How many of the dataset's per-op rows does our lowering of the ONNX exports reproduce?

``share`` compares the operation and every recorded feature. The dataset's TFLite
models were converted from tf2cv (Keras) implementations, which keep an explicit PAD in
front of some model families' convs and pools and not others; the PyTorch graph does not
show which, so ``share_ignoring_input_padding`` also reports the match with the recorded
(padded or not) input size left out.

For every model with an export in ``oplat/zoo/cnn_zoo``, lower it for each GPU family and
compare the kernel rows (operation and every feature, plus the GPU kernel family and
linked ops) with the dataset's rows of that model, as multisets. Writes JSON.

    python bench/lowering_match.py --out bench/results/lowering_match.json
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oplat.datasets import PHONE_GPU_FAMILY, load_phone_gpu_ops, row_identity as row_key  # noqa: E402
from oplat.lowering import lower  # noqa: E402
from oplat.onnx_loader import load_onnx  # noqa: E402
from oplat.zoo import zoo_dir  # noqa: E402

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", type=Path, default=zoo_dir("cnn_zoo"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lowering_match.json")
    ap.add_argument("--show", type=int, default=0, help="print up to N mismatching models")
    args = ap.parse_args()
    rows = load_phone_gpu_ops()
    by_model: dict[str, dict[str, list]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in rows:
        by_model[r.model][r.device].append(r)
    total = matched = full_total = full_matched = nopad_matched = 0
    per_model = {}
    shown = 0
    for model in sorted(by_model):
        path = args.zoo / f"{model}.onnx"
        if not path.is_file():
            continue
        g = load_onnx(path)
        m_tot = m_ok = 0
        for dev, drows in by_model[model].items():
            lm = lower(g, "tflite-gpu", PHONE_GPU_FAMILY[dev])
            ours = collections.Counter(row_key(k.type, k.params) for k in lm.rows)
            ours_full = collections.Counter(row_key(k.type, k.params) + (k.impl, tuple(k.linked)) for k in lm.rows)
            theirs = collections.Counter(row_key(r.kernel, r.params) for r in drows)
            theirs_full = collections.Counter(row_key(r.kernel, r.params) + (r.impl, tuple(r.linked)) for r in drows)
            ok = sum((ours & theirs).values())
            nopad = lambda key: tuple(x for x in key if not (isinstance(x, tuple) and x[0] == "Input_shape"))
            nopad_matched += sum((collections.Counter(nopad(k) for k in ours.elements())
                                  & collections.Counter(nopad(k) for k in theirs.elements())).values())
            total += len(drows); matched += ok; m_tot += len(drows); m_ok += ok
            full_total += len(drows); full_matched += sum((ours_full & theirs_full).values())
            if dev == "s10" and ok < len(drows) and shown < args.show:
                shown += 1
                print(f"== {model} ({ok}/{len(drows)}; ours {len(lm.rows)})")
                for k in sorted(theirs - ours):
                    print("   data only:", k)
                for k in sorted(ours - theirs):
                    print("   ours only:", k)
        per_model[model] = round(m_ok / max(m_tot, 1), 4)
    result = {"rows": total, "matched": matched, "share": round(matched / max(total, 1), 4),
              "share_with_kernel_and_links": round(full_matched / max(full_total, 1), 4),
              "share_ignoring_input_padding": round(nopad_matched / max(total, 1), 4),
              "models": len(per_model), "per_model": per_model}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "per_model"}))


if __name__ == "__main__":
    main()
