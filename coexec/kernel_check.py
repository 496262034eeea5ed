"""Every OpenCL kernel of the runtime checked on an OpenCL device: one layer of a typical
size per kernel, run whole on plain device buffers (so any OpenCL device, with or without
shared virtual memory, can be checked with the kernels co-execution launches) against
onnxruntime, timed with device events; and what the device offers co-execution
(fine-grained SVM, SVM atomics, fp16)."""

from __future__ import annotations

import platform
from typing import Any, Callable

import numpy as np

from .cpu import reference
from .layers import BROADCAST, UNARY_MODES, LayerSpec
from .opencl import OclExecutor


def layers(seed: int = 0) -> dict[str, tuple[LayerSpec, np.ndarray]]:
    """Layers of typical sizes, one per kernel the runtime has (the conv kernel a layer
    gets depends on its shape: the name says which)."""
    rng = np.random.default_rng(seed)

    def r(*s: int, scale: float = 1.0) -> np.ndarray:
        return (rng.standard_normal(s) * scale).astype(np.float32)

    def conv(c: int, f: int, k: int, s: int = 1, h: int = 28, **kw) -> tuple[LayerSpec, np.ndarray]:
        return LayerSpec("conv", r(f, c, k, k, scale=1 / np.sqrt(c * k * k)), r(f), s, k // 2, **kw), r(c, h, h)

    none = np.zeros(1, np.float32)
    x = r(96, 28, 28)
    return {
        "conv 3x3 s1 56x56x64->64 (conv_v8)": conv(64, 64, 3, h=56),
        "conv 3x3 s1 14x14x256->256 relu (conv_v8)": conv(256, 256, 3, h=14, lo=0.0),
        "conv 3x3 s2 56x56x32->64 (conv2d_oc8)": conv(32, 64, 3, 2, h=56),
        "conv 3x3 s2 28x28x16->20 (conv2d_oc4)": conv(16, 20, 3, 2),
        "conv 3x3 s1 28x28x8->7 (conv2d_nchw)": conv(8, 7, 3),
        "conv 1x1 28x28x96->192 (conv1x1_v8)": conv(96, 192, 1),
        "linear 1x768->3072 (linear16)": (LayerSpec("linear", r(3072, 768, scale=1 / np.sqrt(768)), r(3072)), r(768)),
        "linear 1x3072->768 (linear16)": (LayerSpec("linear", r(768, 3072, scale=1 / np.sqrt(3072)), r(768)), r(3072)),
        "depthwise 3x3 s1 56x56x96 relu6": (LayerSpec("dwconv", r(96, 1, 3, 3), r(96), 1, 1, lo=0.0, hi=6.0),
                                           r(96, 56, 56)),
        "depthwise 5x5 s2 28x28x96": (LayerSpec("dwconv", r(96, 1, 5, 5), r(96), 2, 2), x),
        "maxpool 3x3 s2 112x112x64": (LayerSpec("maxpool", none, none, 2, 1, k=3, channels=64), r(64, 112, 112)),
        "avgpool 3x3 s1 28x28x96": (LayerSpec("avgpool", none, none, 1, 1, k=3, channels=96), x),
        "global average 7x7x960": (LayerSpec("gap", none, none, channels=960), r(960, 7, 7)),
        "add + relu 28x28x96": (LayerSpec("add", r(x.size), none, lo=0.0, channels=96), x),
        "mul per channel 28x28x96": (LayerSpec("mul", r(96), none, channels=96), x),
        "hardswish 28x28x96": (LayerSpec("unary", none, none, mode=UNARY_MODES["hardswish"], alpha=1 / 6, beta=0.5,
                                         channels=96), x),
        "sigmoid 28x28x96": (LayerSpec("unary", none, none, mode=UNARY_MODES["sigmoid"], channels=96), x),
        "hardsigmoid 28x28x96": (LayerSpec("unary", none, none, mode=UNARY_MODES["hardsigmoid"], alpha=0.2, beta=0.5,
                                           channels=96), x),
        "softmax 6x197x197": (LayerSpec("softmax", none, none, channels=6 * 197), r(6, 197, 197)),
        "layernorm 197x384": (LayerSpec("layernorm", r(384), r(384), alpha=1e-5, channels=197), r(197, 384)),
        "matmul 197x384->1536 + bias": (LayerSpec("matmul", r(384, 1536, scale=1 / np.sqrt(384)), r(1536),
                                                  channels=197, cols=1536), r(197, 384)),
        "gelu 197x1536": (LayerSpec("unary", none, none, mode=UNARY_MODES["gelu"], channels=197), r(197, 1536)),
        "div by a scalar 197x384": (LayerSpec("div", np.array([1.4142], np.float32), none, mode=BROADCAST["scalar"],
                                              channels=197), r(197, 384)),
        "transpose 197x6x64 -> 6x197x64": (LayerSpec("transpose", none, none, channels=197, perm=(1, 0, 2)),
                                           r(197, 6, 64)),
    }


def check_layer(ocl: OclExecutor, layer: LayerSpec, x: np.ndarray, runs: int) -> dict:
    """``layer`` whole on plain device buffers: its output against onnxruntime's and the
    median kernel time over ``runs`` runs after two warm-up runs."""
    ocl.run_buffers(layer, x, runs=2)
    y, ms = ocl.run_buffers(layer, x, runs=runs)
    ref = reference(layer, x)
    err = float(np.nanmax(np.abs(y - ref)) / max(float(np.abs(ref).max()), 1e-12)) if not np.isnan(y).all() else 1.0
    return {"kernel_ms": ms, "max_rel_err": err, "nan": int(np.isnan(y).sum()),
            "ok": bool(err <= 1e-4 and not np.isnan(y).any())}


def device_facts(ocl: OclExecutor) -> dict[str, Any]:
    """The device's name, platform, driver, compute units, SVM capabilities and fp16."""
    dev, cl = ocl.device, ocl.cl
    caps = getattr(dev, "svm_capabilities", 0)
    return {"device": dev.name.strip(), "platform": dev.platform.name.strip(), "vendor": dev.vendor.strip(),
            "version": dev.version.strip(), "driver": dev.driver_version.strip(),
            "compute_units": dev.max_compute_units,
            "svm": {name: bool(caps & getattr(cl.device_svm_capabilities, name))
                    for name in ("COARSE_GRAIN_BUFFER", "FINE_GRAIN_BUFFER", "FINE_GRAIN_SYSTEM", "ATOMICS")},
            "fp16": "cl_khr_fp16" in dev.extensions, "host": platform.node()}


def check_device(ocl: OclExecutor, runs: int = 20,
                 progress: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every layer of :func:`layers` checked and timed on ``ocl``'s device: ``{"facts",
    "summary", "layers"}`` (a kernel that fails to build or run is recorded as not ok)."""
    rows = {}
    for name, (layer, x) in layers().items():
        try:
            res = check_layer(ocl, layer, x, runs)
        except Exception as e:  # noqa: BLE001 - a kernel that fails is the finding
            res = {"ok": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0]}"}
        rows[name] = res
        if progress:
            progress(name, res)
    facts = device_facts(ocl)
    summary = {"layers": len(rows), "ok": sum(r["ok"] for r in rows.values()),
               "co_execution_ready": facts["svm"]["FINE_GRAIN_BUFFER"]}
    return {"facts": facts, "summary": summary, "layers": rows}


__all__ = ["layers", "check_layer", "device_facts", "check_device"]
