"""Where a planned run's CPU time goes: each CPU segment's time inside a co-executed run
next to the same segment replayed alone right after it (same buffers, GPU idle).

Equal times mean the CPU side's excess over the plan's prediction is work the segments
do (cuts, layout changes), not waiting or contention with the OpenCL device.

    python -m bench.coexec_replay [--models a,b] [--runs 15]

Writes bench/results/coexec_replay.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402
import onnx  # noqa: E402

from coexec.graph_runner import GraphRunner  # noqa: E402
from coexec.plan import make_plan  # noqa: E402
from coexec.opencl import OclExecutor  # noqa: E402
from coexec.split import split_model  # noqa: E402
from oplat.zoo import build  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mobilenet_v1_0.5,regnetx_400mf,squeezenet1_1")
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    ocl = OclExecutor([1])
    tmp = Path(tempfile.mkdtemp())
    out = {}
    for name in args.models.split(","):
        path = tmp / f"{name}.onnx"
        onnx.save(build(name), path)
        # every split the planner considers, gain or not: the point is the CPU side's cost
        plan = make_plan(path, "host/coexec-cpu", "host/coexec-ocl", dims=("channel",), min_gain=-1.0)
        split, _ = split_model(path, plan)
        r = GraphRunner(split, ocl, [0])
        feeds = r.random_feeds()
        for _ in range(3):
            r.run(feeds)
        segs = [a[1] for a in r.actions if a[0] == "cpu"]
        inside, alone = np.zeros(len(segs)), np.zeros(len(segs))
        prev = os.sched_getaffinity(0)
        for _ in range(args.runs):
            ops = [o for o in r.run(feeds, record=True)["ops"] if o["on"] == "cpu"]
            inside += [o["ms"] for o in ops]
            os.sched_setaffinity(0, {0})
            for i, s in enumerate(segs):
                t0 = time.perf_counter()
                s["sess"].run_with_iobinding(s["io"])
                alone[i] += (time.perf_counter() - t0) * 1e3
            os.sched_setaffinity(0, prev)
        inside, alone = inside / args.runs, alone / args.runs
        out[name] = {"segments": len(segs), "inside_run_ms": float(inside.sum()), "replayed_alone_ms": float(alone.sum()),
                     "predicted_cpu_ms": float(sum(o["predicted_cpu_ms"] for o in plan["ops"])),
                     "median_segment_excess_us": float(np.median(inside - alone) * 1e3)}
        print(name, json.dumps(out[name]), flush=True)
    (ROOT / "bench" / "results" / "coexec_replay.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
