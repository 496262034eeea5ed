"""Layout reorders: the ``ort-cpu`` lowering's REORDER kernels against onnxruntime's own.

    python -m bench.ort_reorders [--models a,b] [--out bench/results/ort_reorders.json]
        [--stored bench/results/host_ort-cpu_1t_kernel_check.json --stored-variant nchwc8]

For every model of the generated zoo (CNNs and ViTs), the number of ``ReorderInput`` and
``ReorderOutput`` nodes onnxruntime's profiler records in one run (CPU execution
provider, full optimisation, 1 thread) next to the ``in``/``out`` REORDER kernels the
lowering places, with this machine's NCHWc block size. With ``--stored``, also the counts
a ``bench/host_kernel_check.py`` JSON recorded on another machine (session 10's AVX2 host)
against the lowering with that machine's variant (``--stored-variant nchwc8``). Writes JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from oplat.zoo import build, list_models  # noqa: E402
from oplat.graph_only import with_random_weights  # noqa: E402
from oplat.lowering import lower  # noqa: E402
from oplat.lowering.ort_cpu import host_nchwc_block  # noqa: E402
from oplat.onnx_loader import load_onnx  # noqa: E402


def ort_reorders(backend, model) -> tuple[int, int]:
    """(ReorderInput, ReorderOutput) nodes onnxruntime ran for ``model``, from its profiler
    (:meth:`oplat.collect.ort_cpu.OrtCpuBackend.reorders`)."""
    found, _ = backend.reorders(with_random_weights(model).SerializeToString(), runs=1, warmup=0)
    directions = [r["direction"] for r in found]
    return directions.count("in"), directions.count("out")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="", help="comma-separated zoo names (default: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ort_reorders.json")
    ap.add_argument("--stored", type=Path, help="a host_kernel_check.py JSON with onnxruntime node counts")
    ap.add_argument("--stored-variant", default="nchwc8", help="the lowering variant of the machine it ran on")
    args = ap.parse_args()
    import onnxruntime as ort
    from rich.progress import track

    from oplat.collect.backends import make_backend

    backend = make_backend("ort-cpu", threads=1)
    names = [n for n in args.models.split(",") if n] or list_models()
    rows = {}
    for name in track(names, description="models", console=None):
        m = build(name, graph_only=True)
        mine = [k.params["Direction"] for k in lower(load_onnx(m), "ort-cpu", "cpu").kernels if k.type == "REORDER"]
        theirs = ort_reorders(backend, m)
        rows[name] = {"lowering": [mine.count("in"), mine.count("out")], "onnxruntime": list(theirs),
                      "match": (mine.count("in"), mine.count("out")) == theirs}
    res = {"onnxruntime": ort.__version__, "nchwc_block": host_nchwc_block(), "models": len(rows),
           "matching": sum(r["match"] for r in rows.values()),
           "reorders": {"lowering": sum(sum(r["lowering"]) for r in rows.values()),
                        "onnxruntime": sum(sum(r["onnxruntime"]) for r in rows.values())},
           "per_model": rows}
    if args.stored:
        stored = {}
        for name, v in json.loads(args.stored.read_text())["models"].items():
            nodes = v.get("onnxruntime_nodes", {})
            theirs = [nodes.get(k, {}).get("nodes", 0) for k in ("ReorderInput", "ReorderOutput")]
            mine = [k.params["Direction"] for k in lower(load_onnx(build(name, graph_only=True)), "ort-cpu",
                                                         args.stored_variant).kernels if k.type == "REORDER"]
            stored[name] = {"lowering": [mine.count("in"), mine.count("out")], "onnxruntime": theirs,
                            "match": [mine.count("in"), mine.count("out")] == theirs}
        res["stored_check"] = {"file": str(args.stored.relative_to(ROOT) if args.stored.is_absolute() else args.stored),
                               "variant": args.stored_variant, "models": len(stored),
                               "matching": sum(r["match"] for r in stored.values()), "per_model": stored}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "per_model"
                      } | ({"stored_check": {k: v for k, v in res["stored_check"].items() if k != "per_model"}}
                           if "stored_check" in res else {})))
    for name, r in rows.items():
        if not r["match"]:
            print(f"{name}: lowering in/out {r['lowering']}, onnxruntime {r['onnxruntime']}")


if __name__ == "__main__":
    main()
