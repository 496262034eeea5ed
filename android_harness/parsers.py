"""Parsers for the real output of TFLite/LiteRT ``benchmark_model`` and ``onnxruntime_perf_test``.

Handles every shape seen in the wild: with or without the ``INFO: `` prefix (and
logcat's ``I tflite  : ``), old and new memory lines, ``count=`` lines with or without
percentiles and in exponent notation, op-profiling tables in text form (tab separated,
with or without the ``[start]`` column; columns are read from the header) and CSV form
(``--op_profiling_output_mode=csv``), delegate nodes (``TfLiteGpuDelegateV2``,
``TfLiteXNNPackDelegate``), and onnxruntime_perf_test's summary and profiling JSON.
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

_PREFIX = re.compile(r"^(?:INFO: |WARNING: |ERROR: |[IWEVD] tflite\s*: |\S+ \S+ \d+ \d+ [IWEVD] tflite\s*: )")
_NUM = r"([-+]?[\d.]+(?:[eE][-+]?\d+)?)"
_SUMMARY = re.compile(rf"Inference timings in us: Init: {_NUM}, First inference: {_NUM}, "
                      rf"Warmup \(avg\): {_NUM}, Inference \(avg\): {_NUM}")
_COUNT = re.compile(r"^count=(\d+)((?: \w+=[-+\d.eE]+)*)")
_MEM_NEW = re.compile(rf"Memory footprint delta from the start of the tool \(MB\): init={_NUM} overall={_NUM}")
_MEM_OLD = re.compile(rf"Peak memory footprint \(MB\): init={_NUM} overall={_NUM}")
_MEM_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: {_NUM}")
_INIT_MS = re.compile(rf"Initialized session in {_NUM}\s*ms")


class ParseError(ValueError):
    """Output that does not contain what a finished run prints."""


def strip_prefix(line: str) -> str:
    """Remove log prefixes (``INFO: ``, logcat's ``I tflite  : ``)."""
    return _PREFIX.sub("", line.rstrip("\r\n"))


def parse_benchmark_model(text: str) -> dict[str, Any]:
    """Summary, run statistics, memory and (when present) op-profiling rows of one run.

    Raises :class:`ParseError` when the run did not finish (no ``Inference timings``
    line): the caller records the partial output with the failure.
    """
    lines = [strip_prefix(x) for x in text.splitlines()]
    out: dict[str, Any] = {"counts": []}
    for ln in lines:
        m = _SUMMARY.search(ln)
        if m:
            init, first, warm, avg = (float(x) for x in m.groups())
            out.update(init_us=init, first_us=first, warmup_avg_us=warm, avg_us=avg, avg_ms=avg / 1000.0)
            continue
        m = _COUNT.match(ln.strip())
        if m:
            stats = {"count": int(m.group(1))}
            for kv in m.group(2).split():
                k, v = kv.split("=", 1)
                stats[k] = float(v)
            out["counts"].append(stats)
            continue
        m = _MEM_NEW.search(ln) or _MEM_OLD.search(ln)
        if m:
            out["memory_init_mb"], out["memory_overall_mb"] = float(m.group(1)), float(m.group(2))
            continue
        m = _MEM_PEAK.search(ln)
        if m:
            out["memory_peak_mb"] = float(m.group(1))
            continue
        m = _INIT_MS.search(ln)
        if m:
            out["init_ms"] = float(m.group(1))
    if "avg_us" not in out:
        raise ParseError("no 'Inference timings in us' line: the benchmark did not finish")
    # the last count= line with the most runs is the measured phase (the first is warm-up)
    runs = [c for c in out["counts"] if "avg" in c]
    if runs:
        out["runs"] = runs[-1]
    out["ops"] = parse_op_profiling(text)
    return out


def _split_cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().split("\t") if c.strip() != ""]


def parse_op_profiling(text: str) -> list[dict[str, Any]]:
    """Per-op rows of the 'Operator-wise Profiling Info for Regular Benchmark Runs' table
    (its 'Run Order' section), text or CSV form. Empty when profiling was off."""
    lines = [strip_prefix(x) for x in text.splitlines()]
    start = None
    for i, ln in enumerate(lines):
        if "Operator-wise Profiling Info for Regular Benchmark Runs" in ln:
            start = i
    if start is None:
        return []
    i = start + 1
    # CSV form: a header line starting with 'node type' or '"node type"' right away
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i < len(lines) and lines[i].lstrip('"').lower().startswith("node type") and "," in lines[i]:
        return _csv_table(lines, i)
    while i < len(lines) and "Run Order" not in lines[i]:
        i += 1
    i += 1
    if i >= len(lines) or "[node type]" not in lines[i]:
        return []
    header = [h.strip("[]").lower() for h in _split_cells(lines[i])]
    rows = []
    for ln in lines[i + 1:]:
        if not ln.strip() or ln.startswith("=") or ln.startswith("Number of nodes"):
            break
        cells = _split_cells(ln)
        if len(cells) != len(header):
            continue
        rows.append(_row(dict(zip(header, cells))))
    return rows


def _csv_table(lines: list[str], i: int) -> list[dict[str, Any]]:
    block = []
    for ln in lines[i:]:
        if not ln.strip() or ln.startswith("="):
            break
        block.append(ln)
    rows = []
    reader = csv.reader(io.StringIO("\n".join(block)))
    header = [h.strip().strip("[]").lower() for h in next(reader)]
    for cells in reader:
        if len(cells) == len(header):
            rows.append(_row(dict(zip(header, [c.strip() for c in cells]))))
    return rows


def _row(d: dict[str, str]) -> dict[str, Any]:
    def num(key: str) -> float | None:
        v = d.get(key)
        if v is None:
            return None
        try:
            return float(v.rstrip("%"))
        except ValueError:
            return None
    return {"type": d.get("node type", ""), "name": d.get("name", ""), "first_ms": num("first"),
            "avg_ms": num("avg ms"), "percent": num("%"), "times_called": num("times called"),
            "start_ms": num("start"), "mem_kb": num("mem kb")}


_ORT_AVG = re.compile(r"Average inference time cost(?: total)?:\s*" + _NUM + r"\s*ms")
_ORT_PCT = re.compile(r"P(\d+) Latency:\s*" + _NUM + r"\s*s")


def parse_ort_perf_test(text: str) -> dict[str, Any]:
    """``onnxruntime_perf_test`` summary: average ms, runs, percentiles (ms), throughput."""
    out: dict[str, Any] = {}
    m = _ORT_AVG.search(text)
    if not m:
        raise ParseError("no 'Average inference time cost' line: the perf test did not finish")
    out["avg_ms"] = float(m.group(1))
    m = re.search(r"Number of inferences per second:\s*" + _NUM, text)
    if m:
        out["throughput_per_s"] = float(m.group(1))
    m = re.search(r"Total inference requests:\s*(\d+)", text)
    if m:
        out["runs"] = int(m.group(1))
    m = re.search(r"Total inference run time:\s*" + _NUM + r"\s*s", text)
    if m:
        out["total_s"] = float(m.group(1))
    out["percentiles_ms"] = {f"p{p}": float(v) * 1000 for p, v in _ORT_PCT.findall(text)}
    m = re.search(r"Peak working set size:\s*(\d+)\s*bytes", text)
    if m:
        out["peak_bytes"] = int(m.group(1))
    return out


def parse_ort_profile(data: str | list) -> list[dict[str, Any]]:
    """Per-node mean ms from an onnxruntime profiling JSON (``-p`` / ``enable_profiling``)."""
    events = json.loads(data) if isinstance(data, str) else data
    acc: dict[str, list] = {}
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        name = e["name"][: -len("_kernel_time")]
        a = acc.setdefault(name, [e.get("args", {}).get("op_name", ""), 0.0, 0])
        a[1] += float(e.get("dur", 0)) / 1000.0
        a[2] += 1
    return [{"name": n, "type": t, "avg_ms": s / c, "times_called": c} for n, (t, s, c) in acc.items()]
