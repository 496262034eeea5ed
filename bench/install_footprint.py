"""What a user installs: the wheel (shipped profiles inside), a core-only install in a
fresh venv outside the repository, and how fast it answers. Builds the wheel, creates the
venv, installs the wheel without extras, predicts a sample with a GPU and a CPU profile,
checks that a command needing an extra says which, and times ``import oplat`` and
``oplat predict`` (median of 7 runs). Writes JSON.

    python -m bench.install_footprint [--out bench/results/install_footprint.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "install_footprint.json")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="oplat-install-"))
    dist, venv = work / "dist", work / "venv"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-w", str(dist), "-q"], check=True)
    wheel = next(dist.glob("oplat-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True, cwd=work)
    sample = work / "model.onnx"
    shutil.copy(ROOT / "oplat" / "zoo" / "samples" / "mobilenetv2_w1.onnx", sample)
    oplat = str(venv / "bin" / "oplat")

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([oplat, *argv], capture_output=True, text=True, cwd=work)

    checks = {}
    for pid in ("pixel4/tflite-gpu", "s10/tflite-cpu-1large"):
        r = run("predict", str(sample), "--profile", pid, "--json")
        checks[pid] = {"exit": r.returncode, "total_ms": json.loads(r.stdout)["total_ms"] if r.returncode == 0 else None}
    r = run("predict", str(sample), "--profile", "pixel4/tflite-gpu", "--plot", str(work / "p.png"))
    checks["plot_without_extra"] = {"exit": r.returncode, "stderr": r.stderr.strip()}
    times = []
    for _ in range(7):
        t = time.perf_counter()
        run("predict", str(sample), "--profile", "pixel4/tflite-gpu", "--json")
        times.append(time.perf_counter() - t)
    imports = []
    for _ in range(7):
        t = time.perf_counter()
        subprocess.run([str(venv / "bin" / "python"), "-c", "import oplat"], check=True, cwd=work)
        imports.append(time.perf_counter() - t)
    site = next((venv / "lib").glob("python*/site-packages"))
    sizes = sorted(((p.name, _du(p)) for p in site.iterdir() if p.is_dir()), key=lambda x: -x[1])
    result = {"wheel": wheel.name, "wheel_mb": round(wheel.stat().st_size / 2 ** 20, 1),
              "core_venv_mb": round(_du(venv) / 2 ** 20), "largest_in_core_venv_mb": {n: round(s / 2 ** 20)
                                                                                   for n, s in sizes[:6]},
              "checks": checks, "predict_cli_s_median": round(statistics.median(times), 3),
              "import_oplat_s_median": round(statistics.median(imports), 3),
              "python": sys.version.split()[0]}
    shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
