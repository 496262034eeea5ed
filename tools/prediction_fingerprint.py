"""Fingerprint every shipped profile's predictions on the zoo, to check that a refactor
changes no number (bit for bit).

    python -m tools.prediction_fingerprint -o before.json [--profiles GLOB]
    python -m tools.prediction_fingerprint -o after.json --compare before.json

Writes ``{profile: {model: [total_ms, ops_ms, overhead_ms, sha1 of the per-op list]}}``
with floats as their exact repr; ``--compare`` exits 1 listing every difference.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import sys
from pathlib import Path


def zoo_files() -> list[Path]:
    """Every ONNX file of the shipped zoo and samples."""
    try:
        from oplat.zoo import data_dir
        root = data_dir()
    except ImportError:  # before the zoo moved into oplat
        root = Path(__file__).resolve().parents[1] / "models"
    return sorted(p for p in root.rglob("*.onnx"))


def fingerprint(pattern: str = "*") -> dict:
    from oplat.model_io import load_model
    from oplat.profile import list_profiles, load_profile
    from oplat.errors import OplatError

    files = zoo_files()
    graphs = {}
    for f in files:
        try:
            graphs[f.relative_to(f.parents[1]).as_posix()] = load_model(f)
        except OplatError as e:
            graphs[f.name] = None
            print(f"skip {f.name}: {e}", file=sys.stderr)
    out: dict = {}
    for pid, _folder in list_profiles():
        if not fnmatch.fnmatch(pid, pattern):
            continue
        prof = load_profile(pid)
        names = [n for n, g in graphs.items() if g is not None]
        res = prof.predict_many([graphs[n] for n in names])
        out[pid] = {}
        for n, r in zip(names, res):
            ops = json.dumps([[o.name, o.kernel, o.impl, repr(o.predicted_ms)] for o in r.ops]
                             + [[u.get("name"), u.get("op_type")] for u in r.unsupported])
            out[pid][n] = [repr(r.total_ms), repr(r.ops_ms), repr(r.overhead_ms),
                           hashlib.sha1(ops.encode()).hexdigest()]
        print(f"{pid}: {len(names)} models", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--profiles", default="*", help="glob over profile ids")
    ap.add_argument("--compare", help="an earlier fingerprint JSON to compare with")
    a = ap.parse_args(argv)
    fp = fingerprint(a.profiles)
    Path(a.output).write_text(json.dumps(fp, indent=0, sort_keys=True))
    if a.compare:
        old = json.loads(Path(a.compare).read_text())
        old = {pid: v for pid, v in old.items() if fnmatch.fnmatch(pid, a.profiles)}
        diffs = [(p, m) for p in old for m in old[p] if fp.get(p, {}).get(m) != old[p][m]]
        missing = [p for p in old if p not in fp]
        for p, m in diffs[:50]:
            print(f"DIFF {p} {m}: {old[p][m]} -> {fp.get(p, {}).get(m)}")
        n = sum(len(v) for v in old.values())
        print(f"{n - len(diffs)} of {n} predictions identical; {len(missing)} profiles missing")
        return 1 if diffs or missing else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
