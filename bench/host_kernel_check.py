"""Where a host profile's miss on a whole model comes from, kernel family by family.

For each model: the profile's per-op predictions next to the same kernels timed alone,
now, by the collection's own single-op timing (``Backend.measure``), summed per kernel
family, and both next to the whole model's measured latency (from the truth run's
JSON). If the single-op sum matches the whole model but the predictions do not, the
regressors are off; if the single-op sum is off too, the model runs its kernels
differently from how they run alone. On onnxruntime the script also records what its
own profiler says the optimised graph runs (node count and share of the time per op
type) next to the lowering's kernel counts per type.

    python -m bench.host_kernel_check --backend ort-cpu mobilenet_v3_small_1.0 squeezenet1_1
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from oplat.zoo import build  # noqa: E402
from oplat.collect.backends import make_backend  # noqa: E402
from oplat.collect.sampler import kernel_config  # noqa: E402
from oplat.features import predictor_key  # noqa: E402
from oplat.onnx_loader import load_onnx  # noqa: E402
from oplat.profile import load_profile  # noqa: E402


def check(profile, backend, name: str) -> dict:
    """Per-family predicted and single-op-measured milliseconds of one zoo model."""
    lm = profile.lower(load_onnx(build(name, graph_only=True)))
    res = profile.predict(lm)
    pred = {o.name: o.predicted_ms for o in res.ops}
    fams: dict[str, dict] = collections.defaultdict(lambda: {"kernels": 0, "predicted_ms": 0.0, "single_ms": 0.0})
    for k in lm.kernels:
        cfg = kernel_config(k)
        if pred.get(k.name) is None or cfg is None:
            continue
        f = fams[predictor_key(k.type, k.impl)]
        f["kernels"] += 1
        f["predicted_ms"] += pred[k.name]
        f["single_ms"] += backend.measure(backend.adapt(cfg))["median_ms"]
    return {"predicted_total_ms": res.total_ms, "predicted_ops_ms": sum(f["predicted_ms"] for f in fams.values()),
            "single_ops_ms": sum(f["single_ms"] for f in fams.values()), "families": dict(fams),
            "lowering_kernels": dict(collections.Counter(k.type for k in lm.kernels))}


def ort_nodes(name: str, threads: int, runs: int = 10) -> dict[str, dict[str, float]]:
    """onnxruntime's profiled nodes of one zoo model: per op type, nodes per run and share of the time."""
    import os
    import tempfile

    import onnxruntime as ort

    from oplat.onnx_utils import random_feeds

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    sess = ort.InferenceSession(build(name).SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = random_feeds(sess.get_inputs())
    for _ in range(runs):
        sess.run(None, feeds)
    path = sess.end_profiling()
    events = json.loads(Path(path).read_text())
    os.remove(path)
    by: dict[str, list[float]] = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by[e["args"]["op_name"]].append(e["dur"])
    total = sum(sum(v) for v in by.values()) or 1.0
    return {op: {"nodes": len(v) // runs, "share": round(sum(v) / total, 4)}
            for op, v in sorted(by.items(), key=lambda kv: -sum(kv[1]))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--backend", default="ort-cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile", help="profile id or folder (default: host/<backend>-<threads>t)")
    ap.add_argument("--out", type=Path, help="JSON path (default: bench/results/host_<backend>_<t>t_kernel_check.json)")
    args = ap.parse_args()
    tag = f"host_{args.backend}_{args.threads}t"
    profile = load_profile(args.profile or f"host/{args.backend}-{args.threads}t")
    backend = make_backend(args.backend, args.threads)
    truth = json.loads((ROOT / "bench" / "results" / f"{tag}_truth.json").read_text())["models"]
    out = {}
    for name in args.models:
        r = check(profile, backend, name)
        r["measured_ms"] = truth.get(name, {}).get("measured_ms")
        out[name] = r
        if args.backend == "ort-cpu":
            r["onnxruntime_nodes"] = ort_nodes(name, args.threads)
        print(f"{name}: whole model {r['measured_ms']} ms, predicted {r['predicted_total_ms']:.3f} "
              f"(its kernels {r['predicted_ops_ms']:.3f}), the same kernels timed alone {r['single_ops_ms']:.3f}")
        for fam, f in sorted(r["families"].items(), key=lambda kv: -kv[1]["single_ms"]):
            print(f"   {fam:20s} {f['kernels']:3d} predicted {f['predicted_ms']:.3f}  alone {f['single_ms']:.3f}")
        if "onnxruntime_nodes" in r:
            print("   onnxruntime runs:", ", ".join(f"{op} {v['nodes']} ({v['share']:.0%})"
                                                 for op, v in r["onnxruntime_nodes"].items()))
            print("   the lowering has:", ", ".join(f"{t} {n}" for t, n in sorted(r["lowering_kernels"].items())))
    path = args.out or ROOT / "bench" / "results" / f"{tag}_kernel_check.json"
    path.write_text(json.dumps({"profile": args.profile or profile.id, "models": out}, indent=1))


if __name__ == "__main__":
    main()
