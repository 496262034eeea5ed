"""The co-execution runtime's OpenCL kernels on this machine's OpenCL device: build them,
run every layer kind on plain device buffers against onnxruntime, time each kernel with
device events, and report what the device offers co-execution (fine-grained SVM, SVM
atomics, fp16). Runs on any OpenCL device, with or without shared virtual memory, so a
GPU of another machine can be checked with the same kernels the co-execution runtime
launches (set ``COEXEC_OPENCL_DEVICE`` to a part of a device or platform name to pick one).

    python -m bench.ocl_kernel_check [--runs 20] [--out FILE]

Writes bench/results/ocl_kernel_check.json unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from coexec.kernel_check import check_device, device_facts  # noqa: E402
from coexec.opencl import OclExecutor  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ocl_kernel_check.json")
    args = ap.parse_args()
    ocl = OclExecutor(require_svm=False)
    facts = device_facts(ocl)
    print(f"{facts['device']} ({facts['platform']}, {facts['version']}); SVM {facts['svm']}; fp16 {facts['fp16']}")

    def show(name: str, res: dict) -> None:
        print(f"  {name:44s} " + (f"{res['kernel_ms']:8.4f} ms  err {res['max_rel_err']:.1e}  "
                                   f"{'ok' if res['ok'] else 'WRONG'}" if "kernel_ms" in res else res["error"]),
              flush=True)

    result = check_device(ocl, args.runs, progress=show)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["summary"]))


if __name__ == "__main__":
    main()
