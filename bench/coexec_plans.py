"""Predicted co-execution speedups on the phone profiles, for every zoo CNN and ViT.

For each device (its default CPU core set + GPU profiles) and each sync cost (10 us,
100 us, 1 ms): predicted CPU-only, GPU-only and planned co-execution latency, speedup
over the faster processor, share of ops split and planner time; at the middle sync
cost also the exhaustive per-op oracle on the same predictions.

    python -m bench.coexec_plans [--devices pixel4,s10] [--models a,b] [--no-oracle]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import onnx  # noqa: E402
from rich.progress import Progress  # noqa: E402

import oplat.zoo as zoo  # noqa: E402
from coexec.cost import CostModel, build_units  # noqa: E402
from coexec.plan import default_profiles, make_plan  # noqa: E402
from coexec.planner import oracle_search, plan, simulate  # noqa: E402
from oplat.onnx_loader import load_onnx  # noqa: E402
from oplat.profile import load_profile  # noqa: E402

SYNCS = (10.0, 100.0, 1000.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", default="pixel4,s10")
    ap.add_argument("--models", default="")
    ap.add_argument("--no-oracle", action="store_true")
    ap.add_argument("--oracle-sweeps", type=int, default=10)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "coexec_plans.json")
    args = ap.parse_args()
    names = args.models.split(",") if args.models else zoo.list_models()
    tmp = Path(tempfile.mkdtemp())
    paths = {}
    for n in names:
        paths[n] = tmp / f"{n}.onnx"
        onnx.save(zoo.build(n, graph_only=True), paths[n])
    result: dict = {"syncs_us": list(SYNCS), "devices": {}}
    with Progress() as bar:
        task = bar.add_task("plans", total=len(names) * len(args.devices.split(",")))
        for dev in args.devices.split(","):
            cpu_id, gpu_id = default_profiles(dev)
            cpu, gpu = load_profile(cpu_id), load_profile(gpu_id)
            rows = {}
            for n in names:
                bar.update(task, description=f"{dev} {n}")
                row = {"kind": "vit" if zoo.is_transformer(n) else "cnn"}
                for s in SYNCS:
                    p = make_plan(paths[n], cpu, gpu, sync_us=s)
                    row[f"sync_{int(s)}us"] = {"cpu_ms": p["predicted_ms"]["cpu"], "gpu_ms": p["predicted_ms"]["gpu"],
                                               "coexec_ms": p["predicted_ms"]["coexec"], "speedup": p["speedup"],
                                               "split_share": p["split_share"],
                                               "planner_s": p["planner_seconds"], "ops": len(p["ops"])}
                if not args.no_oracle:
                    cm = CostModel(build_units(load_onnx(paths[n]), gpu, cpu), gpu, cpu, sync_us=SYNCS[1],
                                   dims=("channel", "row"))
                    dec = plan(cm)
                    planned, _ = simulate(cm, dec)
                    t0 = time.perf_counter()
                    _, best = oracle_search(cm, starts=[dec], max_sweeps=args.oracle_sweeps)
                    row["oracle_100us"] = {"planner_ms": planned, "oracle_ms": best,
                                           "gap": planned / best - 1.0, "oracle_s": time.perf_counter() - t0}
                rows[n] = row
                bar.advance(task)
            summary = {}
            for s in SYNCS:
                k = f"sync_{int(s)}us"
                for kind in ("cnn", "vit"):
                    sp = [r[k]["speedup"] for r in rows.values() if r["kind"] == kind]
                    sh = [r[k]["split_share"] for r in rows.values() if r["kind"] == kind]
                    if sp:
                        summary[f"{k}_{kind}"] = {"models": len(sp), "median_speedup": statistics.median(sp),
                                                  "max_speedup": max(sp), "median_split_share": statistics.median(sh),
                                                  "share_with_gain": sum(x > 1.01 for x in sp) / len(sp)}
            gaps = [r["oracle_100us"]["gap"] for r in rows.values() if "oracle_100us" in r]
            if gaps:
                summary["oracle_gap"] = {"median": statistics.median(gaps), "max": max(gaps),
                                         "within_2pct": sum(g <= 0.02 for g in gaps) / len(gaps)}
            summary["planner_s_max"] = max(r["sync_100us"]["planner_s"] for r in rows.values())
            result["devices"][dev] = {"cpu_profile": cpu_id, "gpu_profile": gpu_id, "summary": summary,
                                      "models": rows}
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=1))
    for dev, d in result["devices"].items():
        print(dev, d["cpu_profile"], d["gpu_profile"])
        for k, v in d["summary"].items():
            print(f"  {k}: {json.dumps(v)}")


if __name__ == "__main__":
    main()
