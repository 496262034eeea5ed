"""Where a host profile's miss on a whole model comes from, kernel family by family.

For each model: the profile's per-op predictions next to the same kernels timed alone,
now, by the collection's own single-op timing (``Backend.measure``), summed per kernel
family, and both next to the whole model's measured latency (from the truth run's
JSON). If the single-op sum matches the whole model but the predictions do not, the
regressors are off; if the single-op sum is off too, the model runs its kernels
differently from how they run alone.

    python bench/host_kernel_check.py --backend ort-cpu mobilenet_v3_small_1.0 squeezenet1_1
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.zoo import build  # noqa: E402
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
            "single_ops_ms": sum(f["single_ms"] for f in fams.values()), "families": dict(fams)}


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
        print(f"{name}: whole model {r['measured_ms']} ms, predicted {r['predicted_total_ms']:.3f} "
              f"(its kernels {r['predicted_ops_ms']:.3f}), the same kernels timed alone {r['single_ops_ms']:.3f}")
        for fam, f in sorted(r["families"].items(), key=lambda kv: -kv[1]["single_ms"]):
            print(f"   {fam:20s} {f['kernels']:3d} predicted {f['predicted_ms']:.3f}  alone {f['single_ms']:.3f}")
    path = args.out or ROOT / "bench" / "results" / f"{tag}_kernel_check.json"
    path.write_text(json.dumps({"profile": args.profile or profile.id, "models": out}, indent=1))


if __name__ == "__main__":
    main()
