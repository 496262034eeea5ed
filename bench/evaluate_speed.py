"""How long `oplat evaluate --devices pixel4` takes: grouped 10-fold CV of the GPU profile
on the shared phone data (every fold trains the regressors six times: once for the fold,
five times for the out-of-fold per-op sums the end-to-end term is fitted on). Times the
whole cross-validation in this process and appends the figure to the JSON under a label,
so runs of two checkouts side by side (``PYTHONPATH=<other checkout>``) land in one file.

    python -m bench.evaluate_speed --label now [--device pixel4] [--out bench/results/evaluate_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", required=True)
    ap.add_argument("--device", default="pixel4")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "evaluate_speed.json")
    args = ap.parse_args()
    import oplat
    from oplat.datasets import load_phone_e2e, load_phone_gpu_ops
    from oplat.evaluate import cross_validate
    from oplat.train import load_graphs

    t0 = time.perf_counter()
    rows = load_phone_gpu_ops(devices=[args.device])
    e2e = load_phone_e2e(processor="gpu") if "processor" in load_phone_e2e.__code__.co_varnames else load_phone_e2e()
    try:
        from oplat.zoo import zoo_dir
        folder = zoo_dir("cnn_zoo")
    except ImportError:  # a checkout from before the zoo moved into oplat
        folder = Path(oplat.__file__).resolve().parents[1] / "models" / "cnn_zoo"
    graphs = load_graphs(folder)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = cross_validate(rows, e2e, graphs, [args.device], folds=10, seed=0, e2e_term=["l2", "huber", "signed"])
    cv_s = time.perf_counter() - t0
    entry = {"code": str(Path(oplat.__file__).resolve().parents[1]), "device": args.device, "load_s": round(load_s, 1),
             "cv_s": round(cv_s, 1), "cores": os.cpu_count(),
             "e2e_mape": res["devices"][args.device]["end_to_end"].get("mape")}
    out = json.loads(args.out.read_text()) if args.out.is_file() else {}
    out[args.label] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps({args.label: entry}))


if __name__ == "__main__":
    main()
