"""Profiles from ``oplat collect`` (and ``android-harness collect``) datasets: one per
device, framework and processor in a dataset, named and lowered as it was collected."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import OplatError
from ..profile import Profile
from ..store import DatasetStore
from ..train import ProfileTrainer
from .backends import BackendError, backend_class
from .run import read_collected


def collected_profile_id(meta: dict, device: str, framework: str, processor: str) -> tuple[str, str, str, str]:
    """(device, profile id, lowering, variant) of a dataset's rows of one device/framework/
    processor, from the dataset's header ``meta``: a phone's id says its core set, a host's
    its backend and thread count; the lowering is the collecting backend's (as recorded)."""
    threads = meta.get("threads", 1)
    name = {"onnxruntime": "ort", "litert": "litert"}.get(framework, framework)
    lowering, variant = "tflite-gpu", "adreno"
    if framework == "tflite":  # a phone collected with android-harness
        device = "".join(ch for ch in device.lower() if ch.isalnum()) or "phone"
        cores = meta.get("cores")
        pid = f"{device}/tflite-{processor}" + (f"-{cores}" if processor == "cpu" and cores else
                                                f"-{threads}t" if processor == "cpu" else "")
        if processor == "cpu":
            lowering, variant = "tflite-cpu", "cpu"
        return device, pid, lowering, variant
    # rows were named by the collecting backend's lowering: predict with the same
    try:
        backend_cls = backend_class(meta.get("backend", ""))
    except BackendError:
        backend_cls = None
    if meta.get("lowering"):  # as recorded (a machine's NCHWc block size, for one)
        lowering, variant = meta["lowering"]
    elif backend_cls is not None:
        lowering, variant = backend_cls.lowering
    return device, f"{device}/{name}-{processor}-{threads}t", lowering, variant


def profiles_from_dataset(path: str | os.PathLike) -> list[tuple[Profile, int]]:
    """Each profile the dataset at ``path`` trains, with its number of rows."""
    rows = read_collected(path)
    if not rows:
        raise OplatError(f"{path}: no measured rows to train on")
    meta = DatasetStore(path).meta
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r.device, r.framework, r.processor), []).append(r)
    out = []
    for (device, framework, processor), rs in groups.items():
        device, pid, lowering, variant = collected_profile_id(meta, device, framework, processor)
        prof = ProfileTrainer(framework, processor, lowering=lowering, variant=variant, profile_id=pid,
                              source=f"oplat collect:{Path(path).name}").fit(rs, {}, {}, device)
        prof.meta["collection"] = {k: meta.get(k) for k in ("backend", "threads", "cores", "machine")}
        if meta.get("backend") == "opencl":  # the runtime has OpenCL kernels for these ops only
            prof.meta["runs_only_predicted_kernels"] = True
        out.append((prof, len(rs)))
    return out


__all__ = ["collected_profile_id", "profiles_from_dataset"]
