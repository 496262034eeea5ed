"""The OpenCL kernels built from one source with -D variants (conv2d_oc4/oc8 from
conv_oc.cl, matmul_rows1/8 from matmul_rows.cl) against the hand-copied kernels they
replaced (coexec/runtime.py at commit 1a4c918, read with git), side by side on one
executor: outputs bit for bit, and the median kernel time (7 alternating rounds of 5 runs).

    python -m bench.cl_variants [--out bench/results/cl_variants.json]
"""
import argparse
import json
import re
import statistics
import subprocess
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ap = argparse.ArgumentParser()
ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cl_variants.json")
args = ap.parse_args()
from coexec.opencl import OclExecutor
from coexec.kernel_check import layers
src = subprocess.run(["git", "show", "1a4c918:coexec/runtime.py"], capture_output=True, text=True, check=True,
                     cwd=ROOT).stdout
OLD = re.search(r'KERNELS = r"""\n(.*?)"""\n', src, re.S).group(1)
ocl = OclExecutor(require_svm=False)
cl = ocl.cl
old = cl.Program(ocl.ctx, OLD).build()
new_shared = dict(ocl._shared)
old_shared = {k: cl.Kernel(old, "matmul_rows" if k == "matmul_rows1" else k) for k in new_shared}
L = layers()
pick = ["conv 3x3 s2 56x56x32->64 (conv2d_oc8)", "conv 3x3 s2 28x28x16->20 (conv2d_oc4)", "matmul 197x384->1536 + bias"]
from coexec.layers import LayerSpec
rng = np.random.default_rng(0)
L["matmul 197x384->100 (matmul_rows1)"] = (LayerSpec("matmul", rng.standard_normal((384, 100)).astype(np.float32), rng.standard_normal(100).astype(np.float32), channels=197, cols=100), rng.standard_normal((197, 384)).astype(np.float32))
pick.append("matmul 197x384->100 (matmul_rows1)")
res = {}
for name in pick:
    layer, x = L[name]
    t = {"old": [], "new": []}
    outs = {}
    for rep in range(7):
        for which, sh in (("old", old_shared), ("new", new_shared)):
            ocl._shared = sh
            if name.endswith("(matmul_rows1)") and which == "old":
                # old scalar kernel takes no r1 argument
                orig = ocl._other_call
                def patched(*a, orig=orig):
                    n, args, size = orig(*a)
                    return ("matmul_rows1", args[:-3] + args[-2:], size) if n == "matmul_rows1" else (n, args, size)
                ocl._other_call = patched
                y, ms = ocl.run_buffers(layer, x, runs=5)
                ocl._other_call = orig
            else:
                y, ms = ocl.run_buffers(layer, x, runs=5)
            t[which].append(ms); outs[which] = y
    res[name] = {"old_ms": statistics.median(t["old"]), "new_ms": statistics.median(t["new"]),
                 "ratio_new_over_old": statistics.median(t["new"]) / statistics.median(t["old"]),
                 "identical_output": bool(np.array_equal(outs["old"], outs["new"]))}
    print(name, res[name])
args.out.write_text(json.dumps(res, indent=1))
