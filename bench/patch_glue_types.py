"""Record in shipped GPU profiles which glue kernel types their end-to-end models contain.

Equivalent to what ``train_profile`` now stores (``overhead.glue_types_seen``), computed
from the same ONNX exports and lowering, for profiles trained before it did.

    python bench/patch_glue_types.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oplat.train import glue_types, load_graphs, lowered_for  # noqa: E402


def main() -> None:
    graphs = load_graphs(ROOT / "models" / "cnn_zoo")
    for meta_path in sorted((ROOT / "device_profiles").glob("*/tflite-gpu/profile.json")):
        meta = json.loads(meta_path.read_text())
        lowered = lowered_for(graphs, meta["gpu_family"])
        meta["overhead"]["glue_types_seen"] = glue_types(lowered.values())
        tmp = meta_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
        tmp.replace(meta_path)
        print(meta_path.parent, meta["overhead"]["glue_types_seen"])


if __name__ == "__main__":
    main()
