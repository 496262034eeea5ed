"""The trust invariant on a large seeded corpus of broken and hostile model files
(:mod:`oplat.fuzz`: truncations, bit flips, insertions and deletions of valid ONNX and
.tflite seeds, hand-broken graphs and unusual valid models): every file through
``oplat predict --json``, ``oplat convert`` and ``coexec plan``, under a 4 GB address-space
cap and a 20 s alarm per run, so a huge allocation or a hang shows as a crash. Writes the
count per command and outcome (ok: a finite prediction; refused: exit 2 with one line;
crash: anything else) and every crash.

    python -m bench.fuzz_corpus [--files 2000] [--seed 1] [--out bench/results/fuzz_corpus.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import tempfile
import time
from pathlib import Path

from rich.progress import Progress

from coexec.cli import main as coexec_main
from oplat.cli import main as oplat_main
from oplat.fuzz import OUTCOMES, corpus, run_case

ROOT = Path(__file__).resolve().parents[1]


class _Alarm(Exception):
    pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fuzz_corpus.json")
    args = ap.parse_args()
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, resource.getrlimit(resource.RLIMIT_AS)[1]))

    def alarm(*_):
        raise _Alarm("over 20 s")

    signal.signal(signal.SIGALRM, alarm)
    commands = {
        "predict": lambda p, d: (oplat_main, ["predict", str(p), "--profile", "pixel4/tflite-gpu", "--json"]),
        "convert": lambda p, d: (oplat_main, ["convert", str(p), "-o", str(d / "out.tflite"), "--force"]),
        "coexec_plan": lambda p, d: (coexec_main, ["plan", str(p), "--device", "pixel4", "--json"]),
    }
    t0 = time.time()
    files = corpus(seed=args.seed, n=args.files)
    made_s = time.time() - t0
    counts = {c: dict.fromkeys(OUTCOMES, 0) for c in commands}
    crashes, slowest = [], (0.0, "")
    folder = Path(tempfile.mkdtemp(prefix="oplat-fuzz-"))
    with Progress() as bar:
        task = bar.add_task("fuzz", total=len(files))
        for name, data in files:
            path = folder / name
            path.write_bytes(data)
            for cmd, make in commands.items():
                action, argv = make(path, folder)
                t = time.time()
                signal.alarm(20)
                try:
                    outcome, detail = run_case(action, argv)
                finally:
                    signal.alarm(0)
                slowest = max(slowest, (time.time() - t, f"{cmd} {name}"))
                counts[cmd][outcome] += 1
                if outcome == "crash":
                    crashes.append({"file": name, "command": cmd, "detail": detail})
            path.unlink()
            bar.advance(task)
    kinds = {}
    for name, _ in files:
        kind = name.split("_")[0] if name.startswith(("struct", "edge")) else name.split("_", 1)[1].rsplit(".", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    result = {"files": len(files), "seed": args.seed, "corpus_seconds": round(made_s, 2),
              "run_seconds": round(time.time() - t0 - made_s, 1), "file_kinds": kinds, "counts": counts,
              "crashes": crashes, "slowest_run": {"seconds": round(slowest[0], 2), "what": slowest[1]},
              "limits": {"address_space_gb": 4, "alarm_s": 20}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "crashes"} | {"crashes": len(crashes)}))


if __name__ == "__main__":
    main()
