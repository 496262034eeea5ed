"""How steady is this machine? A reference conv (the canary) and four kernels of other
kinds are timed one after the other, over and over, for ``--seconds``; the JSON gives
each kernel's coefficient of variation raw and divided by the canary timed just before
it (what a drift correction could remove), and the canary's range.

    python -m bench.machine_noise --seconds 120 [--backend ort-cpu]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from oplat.collect.backends import make_backend  # noqa: E402
from oplat.machine import machine_facts  # noqa: E402

CANARY = {"kernel": "CONV_2D", "Input_shape": 28, "Input_channel": 64, "Filter": 64, "Kernel": 3, "Stride": 1,
          "linked": ["relu"]}
KERNELS = {
    "conv1x1_56x64x128": {"kernel": "CONV_2D", "Input_shape": 56, "Input_channel": 64, "Filter": 128, "Kernel": 1,
                          "Stride": 1, "linked": []},
    "dw3x3_112x32_relu6": {"kernel": "DEPTHWISE_CONV_2D", "Input_shape": 112, "Input_channel": 32, "Kernel": 3,
                           "Stride": 1, "linked": ["relu6"]},
    "fc_197x384x1536": {"kernel": "FULLY_CONNECTED", "Input_channel": 384, "Filter": 1536, "Rows": 197, "linked": []},
    "conv3x3_14x96x96": {"kernel": "CONV_2D", "Input_shape": 14, "Input_channel": 96, "Filter": 96, "Kernel": 3,
                         "Stride": 1, "linked": ["relu"]},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="ort-cpu")
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "machine_noise.json"))
    args = ap.parse_args()
    b = make_backend(args.backend, 1)
    rec = []
    t0 = time.time()
    while time.time() - t0 < args.seconds:
        c = b.measure(CANARY)["median_ms"]
        rec.append([c] + [b.measure(k)["median_ms"] for k in KERNELS.values()])
    a = np.array(rec)

    def cv(x: np.ndarray) -> float:
        return round(float(x.std() / x.mean()), 4)

    out = {"backend": args.backend, "seconds": args.seconds, "rounds": len(a), "machine": machine_facts(),
           "canary": {"cv": cv(a[:, 0]), "min_ms": round(float(a[:, 0].min()), 4),
                      "max_ms": round(float(a[:, 0].max()), 4)},
           "kernels": {name: {"median_ms": round(float(np.median(a[:, j])), 4), "cv": cv(a[:, j]),
                              "cv_over_canary": cv(a[:, j] / a[:, 0]),
                              "corr_with_canary": round(float(np.corrcoef(a[:, j], a[:, 0])[0, 1]), 3)}
                       for j, name in enumerate(KERNELS, 1)}}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: out[k] for k in ("rounds", "canary", "kernels")}, indent=1))


if __name__ == "__main__":
    main()
