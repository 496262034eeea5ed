"""What a fused activation costs on onnxruntime's CPU path, and its fixed cost per call.

For each convolution of mobilenet_v2_1.0 (the distinct shapes the ``ort-cpu`` lowering
gives), the single-op time with no activation, ReLU, ReLU6 (Clip 0..6) and HardSwish
linked, side by side in one pass; plus the call floor (a do-nothing model's run time)
that single-op timings are net of, measured beside each shape. Writes JSON.

    python -m bench.ort_link_costs [--model mobilenet_v2_1.0]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from oplat.zoo import build  # noqa: E402
from oplat.collect.backends import make_backend  # noqa: E402
from oplat.machine import machine_facts  # noqa: E402
from oplat.collect.sampler import zoo_configs  # noqa: E402
from oplat.onnx_loader import load_onnx  # noqa: E402

LINKS = {"none": [], "relu": ["relu"], "relu6": ["relu6"], "hard_swish": ["hard_swish"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mobilenet_v2_1.0")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "ort_link_costs.json"))
    args = ap.parse_args()
    b = make_backend("ort-cpu", 1)
    floors = []
    shapes = {}
    for c in zoo_configs([load_onnx(build(args.model, graph_only=True))], b.lowering):
        if c["kernel"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            base = {k: v for k, v in c.items() if k != "linked"}
            shapes[json.dumps(base, sort_keys=True)] = base
    rows = []
    for base in shapes.values():
        floors.append(b.measure_call_floor_ms())  # beside each shape: it drifts with the machine
        t = {name: b.measure({**base, "linked": links})["median_ms"] for name, links in LINKS.items()}
        rows.append({**base, "ms": {k: round(v, 4) for k, v in t.items()},
                     "relu6_over_relu": round(t["relu6"] / t["relu"], 3)})
    ratios = sorted(r["relu6_over_relu"] for r in rows)
    floor = {"median": round(statistics.median(floors), 5), "min": round(min(floors), 5),
             "max": round(max(floors), 5)}
    out = {"model": args.model, "machine": machine_facts(), "call_floor_ms": floor,
           "convs": len(rows), "relu6_over_relu": {"median": statistics.median(ratios), "min": ratios[0],
                                                    "max": ratios[-1]},
           "relu_over_none_median": statistics.median(r["ms"]["relu"] / r["ms"]["none"] for r in rows),
           "hard_swish_over_relu_median": statistics.median(r["ms"]["hard_swish"] / r["ms"]["relu"] for r in rows),
           "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k not in ("rows", "machine")}, indent=1))


if __name__ == "__main__":
    main()
