"""A phone's profile from nothing measured, over adb, with the method of ``oplat
profile-device``: per-op rows collected on the phone (``collect``), whole models measured
on it (``measure``: a fitting set and a held-out test set of the benchmark's CNN exports,
the fitting set ordered to cover the most families first), the profile trained on the rows
with the end-to-end term fitted on the fitting models, and scored on the test models (in
its metadata). Every measurement is kept under ``<out>/.android-harness-profile/``: running
the same call again resumes, across disconnects too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from oplat.collect.device import informative_order, score_models
from oplat.collect.profiles import collected_profile_id
from oplat.collect.run import read_collected
from oplat.onnx_loader import load_onnx
from oplat.outputs import atomic_write_text
from oplat.profile import Profile
from oplat.store import DatasetStore
from oplat.train import ProfileTrainer, load_graphs
from oplat.zoo import zoo_dir

from .adb import Device
from .collect import collect_phone, phone_configs
from .measure import measure_csv


def _template(path: Path, names: list[str]) -> Path:
    """A measurements CSV of zoo models (kept as it is when it exists: it holds latencies)."""
    if not path.exists():
        atomic_write_text(path, "model,latency_ms\n" + "".join(f"{zoo_dir('cnn_zoo') / n}.onnx,\n" for n in names))
    return path


def _measured(path: Path) -> dict[str, float]:
    import csv

    out = {}
    for r in csv.DictReader(path.read_text().splitlines()):
        if (r.get("latency_ms") or "").strip():
            out[Path(r["model"].strip()).stem] = float(r["latency_ms"])
    return out


def profile_phone(serial: str, binary: str | Path, out: str | Path, budget_s: float | None = None,
                  processor: str = "cpu", threads: int = 1, cores: str | None = None, configs: int = 300,
                  fit_models: int = 24, test_models: int = 12, runs: int = 20, thermal: bool = True,
                  progress: Callable[[str], None] | None = None) -> tuple[Profile, dict[str, Any]]:
    """Profile one phone's ``processor`` (``cores``: its core set for the CPU); returns the
    profile (saved under ``out/<device>/<id>``) and a report with its held-out accuracy."""
    out = Path(out)
    work = out / ".android-harness-profile" / f"{serial}-{processor}-{cores or threads}"
    work.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda stage: None)
    graphs = load_graphs(zoo_dir("cnn_zoo"))
    say("per-op collection")
    collect_phone(serial, binary, phone_configs(graphs.values(), configs), work / "ops.csv", processor=processor,
                  threads=threads, cores=cores, budget_s=budget_s, runs=runs, thermal=thermal)
    order = informative_order(sorted(graphs))
    fit_names, test_names = order[:fit_models], order[fit_models:fit_models + test_models]
    dev = Device(serial)
    for label, names in (("fitting models", fit_names), ("held-out models", test_names)):
        say(f"whole models: {label}")
        measure_csv(dev, _template(work / f"{label.split()[0]}.csv", names), binary, threads=threads, cores=cores,
                    gpu=processor == "gpu", runs=runs, thermal_wait_s=60.0 if thermal else 0.0)
    say("training")
    rows = read_collected(work / "ops.csv")
    meta = DatasetStore(work / "ops.csv").meta
    device, pid, lowering, variant = collected_profile_id(meta, rows[0].device, "tflite", processor)
    fit_e2e, test_e2e = _measured(work / "fitting.csv"), _measured(work / "held-out.csv")
    prof = ProfileTrainer("tflite", processor, lowering=lowering, variant=variant, profile_id=pid,
                          source=f"android-harness profile ({serial}, {processor}, {cores or threads})",
                          e2e_term="auto").fit(rows, fit_e2e, {n: graphs[n] for n in fit_e2e}, rows[0].device)
    held_out, per_model = score_models(prof, {n: load_onnx(zoo_dir("cnn_zoo") / f"{n}.onnx") for n in test_e2e},
                                       test_e2e)
    prof.meta["collection"] = {k: meta.get(k) for k in ("backend", "threads", "cores", "machine")}
    prof.meta["accuracy"] = {"method": "held-out CNN exports measured on the phone in the same run, never trained on",
                             "end_to_end": held_out["all"]}
    folder = prof.save(out / device / pid.split("/", 1)[1])
    report = {"profile": pid, "folder": str(folder), "per_op_rows": len(rows), "fit_models": len(fit_e2e),
              "held_out": held_out, "models": per_model}
    atomic_write_text(work / "report.json", json.dumps(report, indent=1))
    return prof, report


__all__ = ["profile_phone"]
