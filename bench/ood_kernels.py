"""Non-square convolution kernels (Inception's 1x7/7x1, 1x3/3x1), measured on this machine
against a profile that never saw one. Writes JSON.

    python -m bench.ood_kernels [--profile host/ort-cpu-1t] [--cores 0] [--out bench/results/ood_kernels.json]

No training model of any shipped profile has a non-square kernel, and the features carry
one kernel size. This times single-conv models with onnxruntime (1 thread, pinned), the
non-square convs of Inception v3/v4 and Inception-ResNet v2 beside square convs of the
same shapes, in two interleaved rounds (each conv's figure the least of its round
medians). The profile (measured on another x86 machine: its scale differs) is put on
this machine's scale by one factor, the median measured/predicted ratio of the square
convs. Then each non-square conv is predicted two ways: as the stand-in of ``oplat.ood``
(the square max(kh,kw) conv at kh*kw/k^2 of its time), and naively (the features as they
are, which describe only the kernel height). Reported: error per way, and the FLOP rates.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from oplat.collect.backends import make_backend
from oplat.collect.whole import measure_rounds
from oplat.onnx_loader import load_onnx
from oplat.profile import load_profile
from oplat.zoo.builder import OnnxBuilder

ROOT = Path(__file__).resolve().parents[1]
# (H, C_in, C_out, kh, kw): Inception v3 (17x17 and 8x8 grids), v4 and Inception-ResNet v2 shapes
NONSQUARE = [(17, 128, 128, 1, 7), (17, 128, 192, 7, 1), (17, 160, 160, 1, 7), (17, 160, 192, 7, 1),
             (17, 192, 192, 1, 7), (17, 192, 192, 7, 1), (17, 192, 224, 1, 7), (17, 224, 256, 7, 1),
             (17, 128, 160, 1, 7), (17, 192, 160, 7, 1), (8, 384, 384, 1, 3), (8, 384, 384, 3, 1),
             (8, 448, 512, 3, 1), (8, 512, 256, 1, 3), (8, 192, 224, 1, 3), (8, 224, 256, 3, 1),
             (35, 64, 64, 1, 7), (35, 64, 64, 7, 1), (73, 64, 64, 1, 7), (73, 64, 64, 7, 1)]


def conv_model(h: int, ci: int, co: int, kh: int, kw: int):
    b = OnnxBuilder(f"conv{kh}x{kw}_{h}_{ci}_{co}", (1, ci, h, h))
    return b.model(b.conv("input", co, (kh, kw), bias=False))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="host/ort-cpu-1t")
    ap.add_argument("--cores", default="0")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ood_kernels.json")
    args = ap.parse_args()
    prof = load_profile(args.profile)
    backend = make_backend("ort-cpu", 1, [int(c) for c in args.cores.split(",")])
    shapes = []
    for h, ci, co, kh, kw in NONSQUARE:
        k = max(kh, kw)
        shapes += [(h, ci, co, kh, kw), (h, ci, co, k, k)]
    shapes += [(h, ci, co, 3, 3) for h, ci, co, _, _ in NONSQUARE[::2]]
    shapes += [(h, ci, co, 1, 1) for h, ci, co, _, _ in NONSQUARE[::2]]
    shapes = list(dict.fromkeys(shapes))
    models = {s: conv_model(*s) for s in shapes}
    measured = measure_rounds(backend, models, rounds=2, max_seconds=0.5)

    def predicted(s, naive: bool) -> float:
        g = load_onnx(models[s])
        lm = prof.lower(g)
        if naive:  # the features as they are: drop the width so no stand-in applies
            for k in lm.kernels:
                k.params.pop("Kernel_w", None)
        prof._cache.clear()
        res = prof.predict(lm)
        return sum(o.predicted_ms for o in res.ops if o.kernel == "CONV_2D")

    square = [s for s in shapes if s[3] == s[4]]
    ratio = statistics.median(measured[s] / predicted(s, False) for s in square)
    rows = []
    for s in NONSQUARE:
        h, ci, co, kh, kw = s
        flops = 2 * h * h * co * ci * kh * kw
        k = max(kh, kw)
        m = measured[s]
        stand = predicted(s, False) * ratio
        naive = predicted(s, True) * ratio
        rows.append({"shape": f"{h}x{h} {ci}->{co} k{kh}x{kw}", "measured_ms": round(m, 4),
                     "stand_in_ms": round(stand, 4), "naive_ms": round(naive, 4),
                     "stand_in_err": round(stand / m - 1, 4), "naive_err": round(naive / m - 1, 4),
                     "gflops_measured": round(flops / m / 1e6, 2),
                     "gflops_square_measured": round(2 * h * h * co * ci * k * k / measured[(h, ci, co, k, k)] / 1e6, 2)})
    sq_err = [abs(measured[s] / (predicted(s, False) * ratio) - 1) for s in square]

    def summary(key):
        e = np.abs([r[key] for r in rows])
        return {"mape": round(float(e.mean()), 4), "median_abs_err": round(float(np.median(e)), 4),
                "within_15": round(float(np.mean(e <= 0.15)), 3), "within_25": round(float(np.mean(e <= 0.25)), 3)}

    res = {"profile": args.profile, "backend": backend.settings, "machine_ratio_measured_over_predicted": round(ratio, 4),
           "square_convs": {"n": len(square), "mape_after_ratio": round(float(np.mean(sq_err)), 4)},
           "nonsquare": {"n": len(rows), "stand_in": summary("stand_in_err"), "naive": summary("naive_err")},
           "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
