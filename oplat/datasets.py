"""Datasets: one schema for per-op latency rows and end-to-end measurements.

Per-op rows (``OpRow``) carry the kernel as the lowering describes it (type, GPU kernel
family, linked ops, geometry) and a latency in milliseconds. Every source (the shared
phone benchmark, ``oplat collect`` on this machine, the Android harness) produces the
same rows, so training never cares where they came from.

Schema (CSV, version :data:`SCHEMA_VERSION`): ``model, device, framework, processor,
kernel, impl, linked, params (JSON), latency_ms`` plus optional ``std_ms, min_ms,
count``. End-to-end rows: ``model, device, framework, processor, latency_ms``.
"""

from __future__ import annotations

import ast
import csv
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .errors import DatasetError

SCHEMA_VERSION = 1
SHARED_DATA = Path(os.environ.get("OPLAT_SHARED_DATA") or
                   Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mobile-ml-benchmark")

# GPU family of each phone of the shared benchmark (drives kernel choice in lowering).
PHONE_GPU_FAMILY = {"pixel4": "adreno", "mi8se": "adreno", "onefusion": "adreno", "s10": "mali",
                    "a03s": "powervr", "iphone7": "powervr", "iphonexs": "apple"}
PHONE_FACTS = {
    "pixel4": {"phone": "Google Pixel 4", "soc": "Snapdragon 855", "gpu": "Adreno 640"},
    "mi8se": {"phone": "Xiaomi Mi 8 SE", "soc": "Snapdragon 710", "gpu": "Adreno 616"},
    "onefusion": {"phone": "Snapdragon 710 phone", "soc": "Snapdragon 710", "gpu": "Adreno 616"},
    "s10": {"phone": "Samsung Galaxy S10", "soc": "Exynos 9820", "gpu": "Mali-G76"},
    "a03s": {"phone": "Samsung Galaxy A03s", "soc": "Helio P35", "gpu": "PowerVR GE8320"},
    "iphonexs": {"phone": "Apple iPhone XS", "soc": "A12 Bionic", "gpu": "Apple G11P"},
    "iphone7": {"phone": "Apple iPhone 7", "soc": "A10 Fusion", "gpu": "PowerVR GT7600 Plus"},
}
ATTRIBUTION = ("Trained on measurements by Li, Paolieri and Golubchik, \"A Benchmark for ML "
               "Inference Latency on Mobile Devices\" (EdgeSys 2024), MIT license.")

GPU_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_GROUP", "FULLY_CONNECTED", "MEAN",
           "CONCATENATION", "MAX_POOL_2D", "AVERAGE_POOL_2D")


@dataclass
class OpRow:
    """One measured kernel."""

    model: str
    device: str
    framework: str
    processor: str
    kernel: str
    impl: str
    linked: list[str]
    params: dict[str, Any]
    latency_ms: float
    extra: dict[str, Any] = field(default_factory=dict)


def _int(v: Any) -> int:
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return 0


def impl_from_kernel_name(name: str) -> tuple[str, list[str]]:
    """Split a GPU kernel name such as ``convolution_2d_3_linked_:_add_4_linked_:_relu_5``."""
    parts = name.split("_linked_:_")
    base = re.sub(r"_\d+$", "", parts[0])
    linked = [re.sub(r"_\d+$", "", p) for p in parts[1:]]
    impl = {"convolution_winograd_4x4_6x6": "winograd", "pooling_2d": "pooling_2d",
            "depthwise_conv_plus_1x1_conv": "depthwise_conv_plus_1x1_conv"}.get(base, base)
    return impl, linked


ROW_KEYS = ("Input_shape", "Input_channel", "Output_shape", "Stride", "Kernel", "Filter", "Group", "FLOPS")
_ROW_FIELDS = {"FULLY_CONNECTED": ("Input_channel", "Filter", "FLOPS"),
               "MEAN": ("Input_shape", "Input_channel", "FLOPS"),
               "CONCATENATION": ("Input_shape", "Input_channel", "Output_shape", "Kernel", "Filter"),
               "MAX_POOL_2D": ("Input_shape", "Input_channel", "Output_shape", "Stride", "Kernel", "FLOPS"),
               "AVERAGE_POOL_2D": ("Input_shape", "Input_channel", "Output_shape", "Stride", "Kernel", "FLOPS")}


def row_identity(kernel: str, params: dict[str, Any]) -> tuple:
    """What identifies a per-op row in the dataset: operation + the features it records."""
    fields = _ROW_FIELDS.get(kernel, ROW_KEYS)
    return (kernel,) + tuple((k, int(params[k])) for k in fields if params.get(k) is not None)


def _params_from_feature(op: str, feat: dict[str, Any]) -> dict[str, Any]:
    p = {k: _int(v) for k, v in feat.items() if str(v) != "-"}
    h = p.get("Input_shape", 0)
    p.setdefault("Input_w", h)
    if op in ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_GROUP", "MAX_POOL_2D", "AVERAGE_POOL_2D",
              "CONCATENATION"):
        p["Output_w"] = p.get("Output_shape", 0)
    if op in ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_GROUP"):
        p.setdefault("Kernel_w", p.get("Kernel", 0))
        p.setdefault("Dilation", 1)
    if op == "FULLY_CONNECTED":
        p["Input_shape"] = p["Output_shape"] = 1
    return p


def load_phone_gpu_ops(path: str | Path | None = None,
                       devices: Iterable[str] | None = None) -> list[OpRow]:
    """Rows of ``tflite_cnn_ops_gpu.csv`` (latencies converted from us to ms).

    The linked ops of a row come from the Adreno kernel name when one is present: Adreno
    never runs Winograd, whose kernel names omit the linked ops, so its names describe
    the fusion the graph itself implies, the same on every device.
    """
    path = Path(path) if path else SHARED_DATA / "tflite_cnn_ops_gpu.csv"
    if not path.is_file():
        raise DatasetError(f"per-op CSV not found: {path}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        for need in ("model", "operation", "feature"):
            if need not in cols:
                raise DatasetError(f"{path}: missing column {need!r}")
        all_devs = [c.split("|")[0] for c in cols if c.endswith("|gpu|float")]
        devs = list(devices) if devices else all_devs
        unknown = set(devs) - set(all_devs)
        if unknown:
            raise DatasetError(f"{path}: no GPU columns for device(s) {', '.join(sorted(unknown))}")
        out: list[OpRow] = []
        for lineno, r in enumerate(reader, start=2):
            try:
                feat = ast.literal_eval(r["feature"])
            except (ValueError, SyntaxError):
                raise DatasetError(f"{path}:{lineno}: malformed feature dict") from None
            params = _params_from_feature(r["operation"], feat)
            ref = next((r[f"{d}|gpu|kernel"] for d in ("pixel4", "mi8se") if f"{d}|gpu|kernel" in r), None)
            _, canon_linked = impl_from_kernel_name(ref or "")
            for d in devs:
                lat = r.get(f"{d}|gpu|float", "")
                if lat in ("", "nan", None):
                    continue
                impl, linked = impl_from_kernel_name(r.get(f"{d}|gpu|kernel", ""))
                out.append(OpRow(r["model"], d, "tflite", "gpu", r["operation"], impl,
                                 canon_linked if ref else linked, params, float(lat) / 1000.0,
                                 {"row": lineno}))
    return out


def load_phone_e2e(path: str | Path | None = None, processor: str = "gpu",
                   precision: str = "float") -> dict[str, dict[str, float]]:
    """``{device: {model: ms}}`` from an ``*_e2e.csv`` (mean column, us -> ms)."""
    path = Path(path) if path else SHARED_DATA / "tflite_cnn_e2e.csv"
    if not path.is_file():
        raise DatasetError(f"end-to-end CSV not found: {path}")
    out: dict[str, dict[str, float]] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if "model" not in (reader.fieldnames or []):
            raise DatasetError(f"{path}: missing column 'model'")
        suffix = f"|{processor}|{precision}|mean"
        cols = [c for c in reader.fieldnames or [] if c.endswith(suffix)]
        for r in reader:
            for c in cols:
                try:
                    ms = float(r.get(c) or "nan") / 1000.0
                except ValueError:  # "N/A": the model did not run in that configuration
                    continue
                if ms == ms:
                    out.setdefault(c.split("|")[0], {})[r["model"]] = ms
    return out


def inconsistent_e2e(path: str | Path | None = None, threshold: float = 0.4, neighbours: int = 5,
                     min_shared: int = 3) -> dict[tuple[str, str, str], dict[str, float]]:
    """CPU measurements that disagree with the same model's measurements on the device's other core sets.

    Per device and precision, each measurement (model m, core set c) is estimated from
    the ``neighbours`` models whose latencies on the other core sets are the most nearly a
    constant factor of m's (smallest mean absolute deviation of the log ratios from their
    median, over at least ``min_shared`` core sets), each scaled by that factor: the median of those
    estimates. A measurement more than ``threshold`` (natural log; 0.4 = 1.5x) off its
    estimate is flagged. Families that really scale differently (RegNets on little
    cores) have each other as neighbours and stay unflagged; what is left is runs that
    went wrong on the phone (s10 1large2med mobilenet_wd2: 82 ms where mobilenetb_wd2,
    the same network, took 9.9 ms; several flagged runs report a std of 35-75% of their
    mean). Uses the measured table only, never a predictor.
    Returns ``{(device, config, precision): {model: log residual}}``.
    """
    path = Path(path) if path else SHARED_DATA / "tflite_cnn_e2e.csv"
    if not path.is_file():
        raise DatasetError(f"end-to-end CSV not found: {path}")
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
    groups: dict[tuple[str, str], list[str]] = {}
    for dev, cfg, prec in e2e_configs(path):
        if cfg != "gpu":
            groups.setdefault((dev, prec), []).append(cfg)
    models = [r["model"] for r in table]
    out: dict[tuple[str, str, str], dict[str, float]] = {}
    for (dev, prec), cfgs in groups.items():
        lat = np.full((len(table), len(cfgs)), np.nan)
        for i, r in enumerate(table):
            for j, cfg in enumerate(cfgs):
                try:
                    v = float(r.get(f"{dev}|{cfg}|{prec}|mean") or "nan")
                except ValueError:
                    continue
                if v > 0:
                    lat[i, j] = math.log(v)
        for j, cfg in enumerate(cfgs):
            other = np.delete(lat, j, axis=1)
            diff = other[:, None, :] - other[None, :, :]  # [m, m2, core set]: log ratio
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                offset = np.nanmedian(diff, axis=2)
                spread = np.nanmean(np.abs(diff - offset[:, :, None]), axis=2)
            shared = (~np.isnan(diff)).sum(axis=2)
            for i in np.flatnonzero(~np.isnan(lat[:, j])):
                ok = (shared[i] >= min_shared) & ~np.isnan(lat[:, j]) & (np.arange(len(table)) != i)
                cand = np.flatnonzero(ok)
                if len(cand) < neighbours:
                    continue
                near = cand[np.argsort(spread[i, cand], kind="stable")[:neighbours]]
                resid = float(lat[i, j] - np.median(lat[near, j] + offset[i, near]))
                if abs(resid) > threshold:
                    out.setdefault((dev, cfg, prec), {})[models[i]] = round(resid, 3)
    return out


TORCH_GPU_FAMILY = {"pixel4": "vulkan", "s10": "vulkan", "onefusion": "vulkan", "iphonexs": "metal"}
_TORCH_ELTWISE = {"aten::relu": "RELU", "aten::clamp": "CLIP", "aten::sigmoid": "SIGMOID",
                  "aten::hardswish": "HARD_SWISH", "vulkan_prepack::run_batchnorm_context": "MUL_ADD"}


def _torch_row(op: str, f: dict[str, Any], kernel_name: str) -> tuple[str, str, dict[str, Any]] | None:
    """(kernel type, impl, params) in this project's vocabulary for one torch_cnn_ops_gpu row."""
    name = kernel_name.split(".", 1)[-1] if kernel_name else ""
    c, h = _int(f.get("input_channel", 0)), _int(f.get("input_shape", 0))
    if op == "vulkan_prepack::run_conv2d_context":
        ks, co = _int(f["kernel_size"]), _int(f["output_channel"])
        g = _int(f.get("groups", c if "_dw" in name else 1))
        ho = _int(f["output_shape"])
        p = {"Input_shape": h + 2 * _int(f.get("padding", 0)), "Input_w": h + 2 * _int(f.get("padding", 0)),
             "Input_channel": c, "Output_shape": ho, "Output_w": ho, "Kernel": ks, "Kernel_w": ks,
             "Stride": _int(f["stride"]), "Filter": co, "Group": g, "Dilation": 1, "FLOPS": _int(f.get("flops", 0))}
        if g > 1 and g == c:
            p.update(Filter=co // c, Group=1)
            return "DEPTHWISE_CONV_2D", name or "prepack_conv2d", p
        return ("CONV_2D_GROUP" if g > 1 else "CONV_2D"), name or "prepack_conv2d", p
    if op == "vulkan_prepack::run_linear_context":
        return "FULLY_CONNECTED", name or "linear", {"Input_shape": 1, "Output_shape": 1, "Input_channel": h,
                                                     "Filter": _int(f["output_shape"]), "FLOPS": _int(f.get("flops", 0))}
    if op in ("aten::max_pool2d", "aten::avg_pool2d"):
        ks, st, pad = _int(f.get("kernel_size", 2)), _int(f.get("stride", 2)) or 1, _int(f.get("padding", 0))
        ho = _int(f["output_shape"]) if "output_shape" in f else (h + 2 * pad - ks) // st + 1
        return ("MAX_POOL_2D" if "max" in op else "AVERAGE_POOL_2D"), "pooling_2d", {
            "Input_shape": h, "Input_w": h, "Input_channel": c, "Output_shape": ho, "Output_w": ho,
            "Kernel": ks, "Stride": st}
    if op == "aten::adaptive_avg_pool2d":
        return "MEAN", "mean", {"Input_shape": h, "Input_w": h, "Input_channel": c, "Output_shape": c}
    e = c * h * h
    if op in ("aten::add", "aten::mul"):
        t = "ADD" if op == "aten::add" else "MUL"
        return t, t.lower(), {"Output_elements": e, "Input_elements": 2 * e, "Output_shape": (1, c, h, h), "Inputs": 2}
    if op in _TORCH_ELTWISE:
        return _TORCH_ELTWISE[op], "eltwise", {"Output_elements": e, "Input_elements": e,
                                               "Output_shape": (1, c, h, h), "Inputs": 1}
    return None


def load_torch_gpu_ops(path: str | Path | None = None, devices: Iterable[str] | None = None) -> list[OpRow]:
    """Rows of ``torch_cnn_ops_gpu.csv`` (PyTorch Mobile Vulkan/Metal), in this project's vocabulary."""
    path = Path(path) if path else SHARED_DATA / "torch_cnn_ops_gpu.csv"
    if not path.is_file():
        raise DatasetError(f"per-op CSV not found: {path}")
    out: list[OpRow] = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        devs = list(devices) if devices else [c.split("|")[0] for c in cols if c.endswith("|gpu|float")]
        for lineno, r in enumerate(reader, start=2):
            try:
                feat = ast.literal_eval(r["feature"])
            except (ValueError, SyntaxError):
                raise DatasetError(f"{path}:{lineno}: malformed feature dict") from None
            for d in devs:
                lat = r.get(f"{d}|gpu|float", "")
                if lat in ("", "nan", None):
                    continue
                row = _torch_row(r["operation"], feat, r.get(f"{d}|gpu|kernel", "") or r.get("pixel4|gpu|kernel", ""))
                if row is None:
                    continue
                kernel, impl, params = row
                if TORCH_GPU_FAMILY.get(d) == "metal" and kernel in ("CONV_2D", "CONV_2D_GROUP", "DEPTHWISE_CONV_2D"):
                    impl = "prepack_conv2d"
                out.append(OpRow(r["model"], d, "torch", "gpu", kernel, impl, [], params, float(lat) / 1000.0,
                                 {"row": lineno}))
    return out


def e2e_configs(path: str | Path | None = None) -> list[tuple[str, str, str]]:
    """``(device, config, precision)`` of every end-to-end column of an ``*_e2e.csv``.

    ``config`` is a CPU core set (``1large``, ``1large2med``, ...) or ``gpu``;
    ``precision`` is ``float`` or ``quant``.
    """
    path = Path(path) if path else SHARED_DATA / "tflite_cnn_e2e.csv"
    if not path.is_file():
        raise DatasetError(f"end-to-end CSV not found: {path}")
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    seen: dict[tuple[str, str, str], None] = {}
    for c in header:
        parts = c.split("|")
        if len(parts) == 4 and parts[3] == "mean":
            seen[(parts[0], parts[1], parts[2])] = None
    return list(seen)


def coreset_threads(config: str) -> int:
    """Thread count of a core-set name such as ``1large2med`` (3)."""
    return sum(int(n) for n in re.findall(r"(\d+)[a-z]+", config)) or 1


def write_op_rows(path: str | Path, rows: Iterable[OpRow]) -> None:
    """Write rows in the project's CSV schema (atomically: temp file + rename)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["schema_version", "model", "device", "framework", "processor", "kernel",
                    "impl", "linked", "params", "latency_ms"])
        for r in rows:
            w.writerow([SCHEMA_VERSION, r.model, r.device, r.framework, r.processor, r.kernel,
                        r.impl, "|".join(r.linked), json.dumps(r.params, sort_keys=True),
                        f"{r.latency_ms:.6g}"])
    tmp.replace(path)


def read_op_rows(path: str | Path) -> list[OpRow]:
    """Read rows written by :func:`write_op_rows` (or by ``oplat collect``)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset not found: {path}")
    out = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        need = {"model", "device", "framework", "processor", "kernel", "impl", "linked", "params",
                "latency_ms"}
        missing = need - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{path}: not an oplat dataset (missing {', '.join(sorted(missing))})")
        for lineno, r in enumerate(reader, start=2):
            try:
                out.append(OpRow(r["model"], r["device"], r["framework"], r["processor"], r["kernel"],
                                 r["impl"], [x for x in r["linked"].split("|") if x],
                                 json.loads(r["params"]), float(r["latency_ms"])))
            except (ValueError, json.JSONDecodeError) as e:
                raise DatasetError(f"{path}:{lineno}: malformed row ({e})") from None
    return out
