"""Prediction speed: per-model API, whole CLI call, and batch throughput. Writes JSON.

    python -m bench.speed [--profile pixel4/tflite-gpu] [--out bench/results/speed.json]

- predict_ms: ``profile.predict(graph)`` on an already-loaded graph of ~150 kernels
  (hrnet_w18_small_v2 export), median of 30 runs
- cli_s: ``oplat predict oplat/zoo/samples/resnet18.onnx --profile ... --json`` as a new
  process, median of 5 runs
- batch_models_per_s: ``profile.predict_many`` over 200 random NAS-Bench-201 networks
  (graph-only, loaded before the timer starts), median of 3 runs
Every timed run uses freshly loaded graphs and an empty per-kernel prediction cache.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from oplat.spaces.nb201 import nb201_model, random_arch  # noqa: E402
from oplat.onnx_loader import load_onnx  # noqa: E402
from oplat.profile import load_profile  # noqa: E402
from oplat.zoo import zoo_dir  # noqa: E402


def median_time(fn, n: int) -> float:
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="pixel4/tflite-gpu")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "speed.json")
    args = ap.parse_args()
    prof = load_profile(args.profile)
    g = load_onnx(zoo_dir("cnn_zoo") / "hrnet_w18_small_v2.onnx")
    n_kernels = len(prof.predict(g).ops)
    onnx_path = zoo_dir("cnn_zoo") / "hrnet_w18_small_v2.onnx"
    ts = []
    for _ in range(30):  # a freshly loaded graph each time; only predict() is timed
        g = load_onnx(onnx_path)
        prof._cache.clear()
        t = time.perf_counter()
        prof.predict(g)
        ts.append(time.perf_counter() - t)
    predict_s = statistics.median(ts)

    cmd = [sys.executable, "-m", "oplat.cli", "predict", str(zoo_dir("samples") / "resnet18.onnx"),
           "--profile", args.profile, "--json"]
    cli_s = median_time(lambda: subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT), 5)

    rng = np.random.default_rng(0)
    nets = [nb201_model(random_arch(rng), graph_only=True) for _ in range(200)]
    times = []
    for _ in range(3):  # fresh graphs and an empty prediction cache every run: nothing warm
        graphs = [load_onnx(m) for m in nets]
        prof._cache.clear()
        t = time.perf_counter()
        prof.predict_many(graphs)
        times.append(time.perf_counter() - t)
    batch_s = statistics.median(times)
    res = {"profile": args.profile, "predict_graph": {"model": "hrnet_w18_small_v2", "kernels": n_kernels,
                                                      "ir_ops": len(g), "median_ms": round(predict_s * 1e3, 2)},
           "cli_resnet18": {"median_s": round(cli_s, 3)},
           "batch_nb201": {"models": len(graphs), "median_s": round(batch_s, 3),
                           "models_per_s": round(len(graphs) / batch_s, 1)}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
