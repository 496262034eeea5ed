"""Measured co-execution of single layers on this machine: onnxruntime on one core, PoCL's
OpenCL device on the other, sharing fine-grained SVM.

For each layer: CPU-only, GPU-only, planned (the linear partition model on this run's
whole-layer times) and oracle (grid search over GPU shares on measured times), all
medians measured in one run, plus the per-op synchronisation cost of the SVM path
(launches enqueued ahead behind device-side gates the host releases with a store; the
host polls a flag the device stores), of enqueue-then-poll, event waits and clFinish
(``sync_us``, :func:`coexec.probes.sync_costs`) and the time from a running
kernel's release to the host knowing it finished (``notify_us``, launch latency
excluded).

    python -m bench.coexec_runtime [--runs 9]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402

from coexec.corun import bench_layer  # noqa: E402
from coexec.layers import LayerSpec  # noqa: E402

LAYERS = {
    "conv 56x56x64->64 3x3": ("conv", (64, 56, 56), (64, 64, 3, 3)),
    "conv 28x28x128->128 3x3": ("conv", (128, 28, 28), (128, 128, 3, 3)),
    "conv 14x14x256->256 3x3": ("conv", (256, 14, 14), (256, 256, 3, 3)),
    "linear 1x768->3072": ("linear", (768,), (3072, 768)),
    "linear 1x3072->768": ("linear", (3072,), (768, 3072)),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "coexec_runtime.json")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = {}
    for name, (kind, x_shape, w_shape) in LAYERS.items():
        w = (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))).astype(np.float32)
        layer = LayerSpec(kind, w, np.zeros(w_shape[0], np.float32), 1, 1 if kind == "conv" else 0)
        res = bench_layer(layer, x_shape, steps=args.steps, runs=args.runs)
        rows[name] = res
        print(f"{name:26s} cpu {res['cpu_ms']:7.3f}  gpu {res['gpu_ms']:7.3f}  planned {res['planned_ms']:7.3f} "
              f"({res['planned_ratio']:.3f})  oracle {res['oracle_ms']:7.3f} ({res['oracle_ratio']:.3f})  "
              f"speedup {res['speedup_planned']:.2f}x / {res['speedup_oracle']:.2f}x  ceiling {res['ceiling']:.2f}x  "
              f"ok={res['outputs_match']}", flush=True)
    sync = {m: statistics.median(r["sync_us"][m] for r in rows.values())
            for m in ("svm", "svm_enqueue", "event", "finish")}
    notify = {m: statistics.median(r["notify_us"][m] for r in rows.values()) for m in ("svm", "event", "finish")}
    summary = {"sync_us_median": sync, "svm_vs_event": sync["event"] / max(sync["svm"], 1e-9),
               "notify_us_median": notify, "notify_event_over_svm": notify["event"] / max(notify["svm"], 1e-9),
               "notify_finish_over_svm": notify["finish"] / max(notify["svm"], 1e-9),
               "planned_share_of_oracle": {k: r["planned_share_of_oracle"] for k, r in rows.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "layers": rows}, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
