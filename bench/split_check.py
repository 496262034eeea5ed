"""Split correctness on every zoo model: the split model computes what the original does.

For each zoo model (random weights): a plan from the pixel4 profiles (sync 10 us) and a
forced plan that splits every splittable op at 1/2 (channel and row splits alternating)
are applied with ``coexec split``; onnxruntime runs original and split models on the
same input and the largest difference relative to the output's magnitude is recorded.

    python bench/split_check.py [--models a,b]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from rich.progress import Progress  # noqa: E402

import oplat.zoo as zoo  # noqa: E402
from coexec.plan import make_plan  # noqa: E402
from coexec.split import split_model  # noqa: E402
from oplat.profile import load_profile  # noqa: E402

TOL = 1e-5


def _run(path: Path, x: np.ndarray) -> list[np.ndarray]:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "split_check.json")
    args = ap.parse_args()
    names = args.models.split(",") if args.models else zoo.list_models()
    cpu, gpu = load_profile("pixel4/tflite-cpu-3med"), load_profile("pixel4/tflite-gpu")
    tmp = Path(tempfile.mkdtemp())
    rows = {}
    with Progress() as bar:
        task = bar.add_task("split", total=len(names))
        for n in names:
            bar.update(task, description=n)
            path = tmp / f"{n}.onnx"
            onnx.save(zoo.build(n), path)
            dims = [d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim]
            x = np.random.default_rng(0).standard_normal(dims).astype(np.float32)
            ref = _run(path, x)
            row = {}
            planned = make_plan(path, cpu, gpu, sync_us=10)
            forced = json.loads(json.dumps(planned))
            for i, op in enumerate(forced["ops"]):
                if op["splittable"]:
                    op["placement"], op["ratio"] = "split", 0.5
                    op["dimension"] = "row" if i % 2 and op["kernel"] in ("CONV_2D", "DEPTHWISE_CONV_2D") else "channel"
            for label, plan in (("planned", planned), ("forced", forced)):
                out = tmp / f"{n}.{label}.onnx"
                m, kept = split_model(path, plan, out)
                got = _run(out, x)
                err = max(float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(a))), 1e-12)
                          for a, b in zip(ref, got))
                row[label] = {"ops_split": sum(1 for nd in m.graph.node if nd.name.endswith("/concat")),
                              "kept_whole": len(kept), "max_rel_diff": err, "ok": err <= TOL}
            rows[n] = row
            path.unlink()
            for f in tmp.glob(f"{n}.*.onnx"):
                f.unlink()
            bar.advance(task)
    ok = all(r[k]["ok"] for r in rows.values() for k in r)
    result = {"tolerance": TOL, "models": len(rows), "all_ok": ok,
              "worst": max((r[k]["max_rel_diff"], n, k) for n, r in rows.items() for k in r),
              "forced_ops_split": sum(r["forced"]["ops_split"] for r in rows.values()), "per_model": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "per_model"}))


if __name__ == "__main__":
    main()
