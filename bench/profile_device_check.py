"""A profile made by ``oplat profile-device``, checked afterwards in a separate process: the
generated zoo's models (held out: never used in training) measured again on this machine
(onnxruntime or LiteRT as the profile was, fastest of ``--rounds`` round medians) against
the profile's predictions. Writes JSON: MAPE and the share within ±10%, CNNs and ViTs.

    python -m bench.profile_device_check PROFILE_FOLDER [--cores 0] [--rounds 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from functools import partial
from pathlib import Path

from oplat.collect.backends import make_backend
from oplat.collect.whole import measure_models
from oplat.fitting import error_metrics
from oplat.onnx_loader import load_onnx
from oplat.profile import load_profile
from oplat.zoo import ZOO, build, is_transformer

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("profile")
    ap.add_argument("--cores", default="0")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "profile_device_check.json")
    args = ap.parse_args()
    prof = load_profile(args.profile)
    coll = prof.meta.get("collection") or {}
    backend = make_backend(coll.get("backend", "ort-cpu"), int(coll.get("threads") or 1),
                           [int(c) for c in args.cores.split(",")] if args.cores else None)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        measured = measure_models(backend, {n: partial(build, n) for n in sorted(ZOO)}, Path(tmp) / "e2e.csv",
                                  rounds=args.rounds)
    groups = {"cnn": ([], []), "vit": ([], [])}
    per_model = {}
    for n, ms in measured.items():
        r = prof.predict(load_onnx(build(n, graph_only=True)))
        fam = "vit" if is_transformer(n) else "cnn"
        groups[fam][0].append(r.total_ms)
        groups[fam][1].append(ms)
        per_model[n] = {"measured_ms": round(ms, 4), "predicted_ms": round(r.total_ms, 4),
                        "error": round(r.total_ms / ms - 1, 4), "complete": r.complete}
    preds = [v["predicted_ms"] for v in per_model.values()]
    true = [v["measured_ms"] for v in per_model.values()]
    result = {"profile": prof.id, "folder": str(args.profile), "rounds": args.rounds,
              "in_profile_metadata": (prof.meta.get("accuracy") or {}).get("end_to_end"),
              "measured_again": {"all": error_metrics(preds, true),
                                 **{f: error_metrics(*groups[f]) for f in groups}},
              "models": per_model, "seconds": round(time.time() - t0, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["measured_again"]))


if __name__ == "__main__":
    main()
