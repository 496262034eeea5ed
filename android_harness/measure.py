"""Fill a ``model,latency_ms`` CSV (``oplat suggest --csv``) with a phone's measurements.

Each row without a latency is benchmarked end to end with ``benchmark_model`` (ONNX
files are converted to .tflite first) and its mean latency written back; the CSV is
rewritten atomically after every model, so a run that stops (phone unplugged, binary
crash) keeps what it measured and the next run measures only the rest. The phone and
the settings are recorded beside the CSV (``<csv>.phone.json``) and a later run on
another phone or with other settings is refused: one CSV, one phone, one core set.
The filled CSV is what ``oplat calibrate --measurements`` reads.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path
from typing import Any, Callable

from oplat.calibrate import measure_record_path, measured_model_path
from oplat.outputs import MAX_CSV_BYTES, MAX_JSON_BYTES, atomic_write_text, read_text_input

from .adb import Device, HarnessError
from .bench import ThermalGuard, run_benchmark_model
from .facts import device_facts

# what must match between runs that fill the same CSV
SETTINGS = ("threads", "cores", "gpu", "runs", "warmup")


def as_tflite(model: str | Path) -> Path:
    """``model`` itself if it is a .tflite file, else its conversion (random weights for
    a graph-only ONNX file) in a temporary folder."""
    model = Path(model)
    if model.suffix != ".onnx":
        return model
    import onnx

    from oplat.onnx2tflite import onnx_to_tflite

    out = Path(tempfile.mkdtemp(prefix="oplat-")) / (model.stem + ".tflite")
    out.write_bytes(onnx_to_tflite(onnx.load(str(model), load_external_data=False), nhwc_inputs=True))
    return out


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    text = read_text_input(path, "measurements", MAX_CSV_BYTES)
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"model", "latency_ms"} <= set(reader.fieldnames):
        raise HarnessError(f"{path}: needs the columns model,latency_ms (got {reader.fieldnames})")
    return list(reader.fieldnames), list(reader)


def _write_atomic(path: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _check_same_phone(sidecar: Path, csv_name: str, record: dict[str, Any]) -> None:
    if not sidecar.exists():
        return
    try:
        old = json.loads(read_text_input(sidecar, "measurement record", MAX_JSON_BYTES))
    except ValueError:
        raise HarnessError(f"{sidecar} is not JSON: remove it, or use another CSV") from None
    if not isinstance(old, dict):
        raise HarnessError(f"{sidecar} is not a measurement record: remove it, or use another CSV")
    for key in ("serial", "model", *SETTINGS):
        if old.get(key) != record.get(key):
            raise HarnessError(f"{csv_name} was measured with {key}={old.get(key)!r}, "
                               f"this run has {key}={record.get(key)!r}: use another CSV for another phone or "
                               "settings")


def measure_csv(dev: Device, path: str | Path, binary: str | Path | None, threads: int = 1,
                cores: str | None = None, gpu: bool = False, runs: int = 50, warmup: int = 5,
                cooldown_s: float = 0.0, thermal_wait_s: float = 60.0,
                on_start: Callable[[int], None] | None = None,
                on_model: Callable[[str, float | None], None] | None = None) -> dict[str, int]:
    """Measure every model of the CSV that has no latency yet; returns counts
    (``measured``, ``already``, ``total``). ``on_start(rows)`` once the CSV is checked,
    ``on_model(model, ms)`` after each row (``ms`` None for a row that was already filled)."""
    path = Path(path)
    fields, rows = _read(path)
    todo = {i for i, r in enumerate(rows) if not (r.get("latency_ms") or "").strip()}
    models = []
    for i, row in enumerate(rows):
        name = (row.get("model") or "").strip()
        if not name:
            raise HarnessError(f"{path}:{i + 2}: empty model path")  # line 1 is the header
        models.append(measured_model_path(path, name))
        if i in todo and not models[-1].is_file():
            raise HarnessError(f"{path}:{i + 2}: model file not found: {models[-1]}")
    facts = device_facts(dev)
    record = {"serial": dev.serial, "model": facts.get("model"), "soc": facts.get("soc"), "threads": threads,
              "cores": cores, "gpu": gpu, "runs": runs, "warmup": warmup}
    sidecar = measure_record_path(path)
    _check_same_phone(sidecar, path.name, record)
    if todo and not sidecar.exists():
        atomic_write_text(sidecar, json.dumps(record, indent=1))
    guard = ThermalGuard(dev, max_wait_s=thermal_wait_s) if thermal_wait_s > 0 else None
    if on_start:
        on_start(len(rows))
    measured = 0
    for i, (row, model) in enumerate(zip(rows, models)):
        name = row["model"].strip()
        if i not in todo:
            if on_model:
                on_model(name, None)
            continue
        res = run_benchmark_model(dev, as_tflite(model), binary, threads=threads, cores=cores, gpu=gpu,
                                  runs=runs, warmup=warmup, cooldown_s=cooldown_s, guard=guard, facts=facts)
        row["latency_ms"] = f"{res['avg_ms']:.6g}"
        _write_atomic(path, fields, rows)
        measured += 1
        if on_model:
            on_model(name, res["avg_ms"])
    return {"measured": measured, "already": len(rows) - len(todo), "total": len(rows)}
