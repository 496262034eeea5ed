"""Write each shipped phone profile's trained ranges (``trained_ranges`` in profile.json).

    python -m tools.profile_ranges [--check]

A profile trained now records the ranges of its rows' shape parameters per regressor
(``oplat.train.ProfileTrainer``). The shipped phone profiles predate that; their rows
are the per-op measurements of the benchmark's models, so their ranges are those of the
kernels of the models each was trained on (the CNN zoo less the profile's excluded
models, or the ViTs its metadata lists), lowered the way the profile lowers them.
Profiles measured on a host (collected single-op rows) and calibrated blends are left
as they are. ``--check`` writes nothing and exits 1 when a file would change.
"""

from __future__ import annotations

import argparse
import json
import sys

from oplat.features import predictor_key
from oplat.onnx_loader import load_onnx
from oplat.ood import trained_ranges
from oplat.outputs import atomic_write_text
from oplat.profile import list_profiles, load_profile
from oplat.zoo import zoo_dir


def training_models(meta: dict) -> list:
    training = meta.get("training") or {}
    if meta.get("model_family") == "vision transformers":
        names = training.get("models") or []
        return [zoo_dir("vit_zoo") / f"{n}.onnx" for n in names if (zoo_dir("vit_zoo") / f"{n}.onnx").is_file()]
    excluded = set(training.get("excluded_models") or [])
    return [p for p in sorted(zoo_dir("cnn_zoo").glob("*.onnx")) if p.stem not in excluded]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    graphs: dict = {}
    lowered: dict = {}
    changed = 0
    for pid, folder in list_profiles():
        path = folder / "profile.json"
        meta = json.loads(path.read_text())
        if "blend" in meta or meta.get("lowering") not in ("tflite-gpu", "tflite-cpu", "torch-gpu") \
                or str(meta.get("device", "")).startswith("host"):
            continue
        prof = load_profile(folder)
        items = []
        for p in training_models(meta):
            if p not in graphs:
                graphs[p] = load_onnx(p)
            key = (meta.get("lowering"), prof.variant, meta.get("precision"), p)
            if key not in lowered:
                lowered[key] = prof.lower(graphs[p])
            items += [(predictor_key(k.type, k.impl), k.params) for k in lowered[key].kernels]
        ranges = trained_ranges(items)
        if meta.get("trained_ranges") == ranges:
            continue
        changed += 1
        if not args.check:
            meta["trained_ranges"] = ranges
            atomic_write_text(path, json.dumps(meta, indent=1, sort_keys=True))
        print(f"{pid}: {len(ranges)} regressors' ranges{' (would change)' if args.check else ''}")
    print(f"{changed} profiles {'would change' if args.check else 'written'}", file=sys.stderr)
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
