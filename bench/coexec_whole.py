"""Whole-model co-execution on this machine's pair: plan from the host profiles, run it.

For each zoo CNN: ``coexec plan`` with the CPU executor's profile (host/coexec-cpu, with
its measured boundary costs from ``coexec boundary``) and the OpenCL executor's
(host/coexec-ocl, collected with ``oplat collect --backend opencl``), plans predicted to
gain less than ``--min-gain`` kept on the faster processor, then ``coexec run`` (CPU
only, GPU only, planned; interleaved runs, medians, and the median of per-round ratios
``paired_speedup``; outputs checked against onnxruntime). The question the issue asks:
is the planned run faster than the faster single executor where the planner predicts a gain, and never
more than 3% slower anywhere? Runs go through every order of the three runners in turn
(a run right after the OpenCL runner's is slower here), so ``--runs`` is best a multiple
of 6. A plan that keeps every op on one processor runs that executor's own runner: its
timed runs are the same code in other slots, so the summary also gives their ratio (the
noise floor of the comparison) and the speedup by construction (1 when the plan kept the
measured faster processor, else the two executors' measured ratio).

    python -m bench.coexec_whole [--models a,b] [--runs 12] [--min-gain F] [--out FILE]

Writes bench/results/coexec_whole.json.
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

from coexec.calibration import run_plan  # noqa: E402
from coexec.plan import make_plan  # noqa: E402
from oplat.zoo import build  # noqa: E402

MODELS = "squeezenet1_1,resnet10,resnet18_w0.5,mobilenet_v1_0.5,regnetx_200mf,mnasnet_0.5"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--runs", type=int, default=12)
    ap.add_argument("--cpu-profile", default="host/coexec-cpu")
    ap.add_argument("--gpu-profile", default="host/coexec-ocl")
    ap.add_argument("--sync", default="svm")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "coexec_whole.json")
    ap.add_argument("--min-gain", type=float, default=None,
                    help="plans predicted to gain less than this run on the faster processor alone "
                         "(default: what 'coexec boundary' measured and stored in the CPU profile)")
    args = ap.parse_args()
    from oplat.machine import cpu_identity
    from oplat.profile import load_profile

    facts = cpu_identity()
    out = {"cpu_profile": args.cpu_profile, "gpu_profile": args.gpu_profile, "sync": args.sync,
           "min_gain": args.min_gain, "runs": args.runs,
           "machine": {"cpu": facts.get("cpu"), "cpu_id": facts.get("cpu_id"), "cores": os.cpu_count()},
           # the profiles plan for the machine they were collected on, which may be another
           "profiles_collected_on": {p: (load_profile(p).meta.get("collection") or {}).get("machine", {}).get("cpu")
                                     for p in (args.cpu_profile, args.gpu_profile)},
           "models": {}}  # per model: the plan's min_gain
    tmp = Path(tempfile.mkdtemp())
    t0 = time.time()
    for name in args.models.split(","):
        path = tmp / f"{name}.onnx"
        onnx.save(build(name), path)
        plan = make_plan(path, args.cpu_profile, args.gpu_profile, dims=("channel",), min_gain=args.min_gain)
        res = run_plan(str(path), plan, runs=args.runs, sync=args.sync)
        fast = min(res["cpu_ms"], res["gpu_ms"])
        pred = plan["predicted_ms"]
        row = {"predicted_ms": pred, "predicted_speedup": plan["speedup"], "kept_single": plan["kept_single"],
               "boundary_us": plan["boundary_us"], "boundary_ms_per_mb": plan["boundary_ms_per_mb"],
               "splits": sum(o["placement"] == "split" for o in plan["ops"]), "cpu_ms": res["cpu_ms"],
               "gpu_ms": res["gpu_ms"], "planned_ms": res["planned_ms"], "speedup": fast / res["planned_ms"],
               "paired_speedup": res["paired_speedup"], "context": plan.get("context"), "min_gain": plan["min_gain"],
               "planned_sync_ms": res["planned_sync_ms"], "outputs_match": res["outputs_match"],
               "gpu_fallback": len(res["gpu_fallback"]), "gpu_only_cpu_ops": res["gpu_only_cpu_ops"],
               "ops_on_gpu": sum(o["on"] == "gpu" for o in res["ops"]), "actions": len(res["ops"])}
        # the OpenCL profile in context: per plan op, the GPU-only run's kernels against the
        # op's prediction
        pairs = [(o["predicted_ms"], o["ms"]) for o in res["gpu_ops"] if o["ms"] > 0]
        err = [abs(p - m) / m for p, m in pairs]
        row["gpu_kernels"] = {"n": len(pairs), "mape": float(np.mean(err)) if err else None,
                              "within_10": float(np.mean([e <= 0.1 for e in err])) if err else None,
                              "sum_predicted_ms": sum(p for p, _ in pairs), "sum_measured_ms": sum(m for _, m in pairs)}
        row["cpu_predicted_over_measured"] = pred["cpu"] / res["cpu_ms"] if pred.get("cpu") else None
        # a plan that keeps every op on one processor runs that executor's own runner: its
        # "planned" runs are the same code timed in other slots (their ratio is the noise
        # floor, "same_runner_ratio"), and against the faster executor it is 1 by construction
        # when it kept the faster one, else the measured ratio of the two executors
        runner = res["planned_runner"]
        row["planned_runner"] = runner
        if runner in ("cpu", "gpu"):
            row["same_runner_ratio"] = res[f"{runner}_ms"] / res["planned_ms"]
            row["speedup_by_construction"] = fast / res[f"{runner}_ms"]
        else:
            row["speedup_by_construction"] = row["paired_speedup"]
        out["models"][name] = row
        print(f"{name:18s} CPU {res['cpu_ms']:8.2f}  GPU {res['gpu_ms']:8.2f}  planned {res['planned_ms']:8.2f} ms  "
              f"speedup {row['speedup']:.3f} paired {row['paired_speedup']:.3f} (predicted {plan['speedup']:.3f})  "
              f"GPU ops {row['ops_on_gpu']}  "
              f"ok={res['outputs_match']}", flush=True)
    rows = list(out["models"].values())
    gain = [r for r in rows if r["predicted_speedup"] > 1.0]
    out["summary"] = {"models": len(rows), "predicted_gain": len(gain),
                      "faster_where_gain_predicted": sum(r["speedup"] > 1.0 for r in gain),
                      "worst_speedup": min(r["speedup"] for r in rows),
                      "never_3pct_slower": all(r["speedup"] >= 0.97 for r in rows),
                      "worst_paired_speedup": min(r["paired_speedup"] for r in rows),
                      "never_3pct_slower_paired": all(r["paired_speedup"] >= 0.97 for r in rows),
                      "faster_where_gain_predicted_paired": sum(r["paired_speedup"] > 1.0 for r in gain),
                      "single_processor_plans": sum(r["planned_runner"] in ("cpu", "gpu") for r in rows),
                      "same_runner_ratio_range": [round(min(v), 4), round(max(v), 4)] if (v := [
                          r["same_runner_ratio"] for r in rows if "same_runner_ratio" in r]) else None,
                      "worst_speedup_by_construction": min(r["speedup_by_construction"] for r in rows),
                      "never_3pct_slower_by_construction": all(r["speedup_by_construction"] >= 0.97 for r in rows),
                      "all_outputs_match": all(r["outputs_match"] for r in rows),
                      "gpu_kernel_mape_median": float(np.median([r["gpu_kernels"]["mape"] for r in rows
                                                                 if r["gpu_kernels"]["mape"] is not None])),
                      "cpu_predicted_over_measured": [round(r["cpu_predicted_over_measured"], 3) for r in rows],
                      "seconds": round(time.time() - t0, 1)}
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out["summary"], indent=1))


if __name__ == "__main__":
    main()
