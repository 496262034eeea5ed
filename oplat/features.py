"""Per-kernel feature vectors for the regressors.

One regressor per *predictor key*: the GPU kernel family that ran, not the TFLite op
name (a 1x1 conv on a 1x1 map runs the fully-connected kernel; an average pool over the
whole map runs the MEAN kernel). Features are geometry, work and memory traffic, plus
the choices the lowering made (Winograd, linked ops) and GPU alignment effects
(channels in slices of 4).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

FEATURE_SCHEMA_VERSION = 3
BYTES = 2  # fp16 on mobile GPUs

KEYS = ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_GROUP", "FULLY_CONNECTED", "MEAN", "POOL_2D",
        "CONCATENATION")
# Transformer kernels: predicted per op, added to the end-to-end total outside the
# end-to-end term (whose feature vector is fixed by KEYS).
# CPU (XNNPACK) kernel families with their own regressor: 1x1 convs run GEMM, the stem
# conv over 3 channels is its own microkernel, stride-2 depthwise convs another; unfused
# element-wise and layout kernels are predicted per op on CPU.
CPU_KEYS = ("CONV_1x1", "CONV_STEM", "DW_S2", "ELTWISE", "LAYOUT", "FC_TOKENS")
# onnxruntime's CPU path (lowering "ort-cpu"): GELU apart from cheap element-wise ops, and
# the NCHWc layout reorders its transformer inserts
ORT_KEYS = ("GELU", "REORDER", "SWISH")
EXTRA_KEYS = ("BATCH_MATMUL", "SOFTMAX", "LAYER_NORM", "TRANSPOSE", "ADD", "MUL") + CPU_KEYS + ORT_KEYS
# kernels described by their element counts alone (``binary_features``)
ELEMENT_KEYS = ("ADD", "MUL", "ELTWISE", "LAYOUT") + ORT_KEYS
# glue kernels (no row of their own in the phone data) that a profile may still predict
GLUE_KEYS = ("TRANSPOSE",) + ELEMENT_KEYS
_IMPL_KEYS = {"gemm_1x1": "CONV_1x1", "conv_stem": "CONV_STEM", "depthwise_s2": "DW_S2",
              "eltwise": "ELTWISE", "layout": "LAYOUT", "fc_tokens": "FC_TOKENS", "gelu": "GELU", "swish": "SWISH",
              "reorder": "REORDER"}
_CONV_KEYS = ("CONV_2D", "CONV_2D_GROUP", "CONV_1x1", "CONV_STEM")

ACTS = ("relu", "hard_swish", "sigmoid", "swish", "minimum", "tanh")


def predictor_key(kernel: str, impl: str) -> str | None:
    """The regressor that predicts this kernel (None: no per-op regressor for it)."""
    k = _IMPL_KEYS.get(impl)
    if k is not None:
        return k
    if impl == "fully_connected" or kernel == "FULLY_CONNECTED":
        return "FULLY_CONNECTED"
    if impl == "mean" or kernel == "MEAN":
        return "MEAN"
    if kernel in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        return "POOL_2D"
    if kernel in KEYS or kernel in EXTRA_KEYS:
        return kernel
    return None


def _slices(c: float) -> float:
    return math.ceil(c / 4)


def _common(p: dict[str, Any]) -> tuple[float, ...]:
    h, w = float(p.get("Input_shape", 1) or 1), float(p.get("Input_w", p.get("Input_shape", 1)) or 1)
    return h, w


def _link_feats(linked: Sequence[str]) -> list[float]:
    return list(_link_feats_cached(tuple(linked)))


@lru_cache(maxsize=4096)
def _link_feats_cached(linked: tuple[str, ...]) -> tuple[float, ...]:
    n_bin = sum(1 for t in linked if t in ("add", "mul", "sub"))
    # a ReLU6 is a ReLU and a minimum (a clamp): no new feature, a distinct vector
    act = [float(any(t == a or (t == "relu6" and a in ("relu", "minimum")) for t in linked)) for a in ACTS]
    return tuple([float(len(linked)), float(n_bin)] + act)


def _conv_columns(items):
    """(h, w, c_in, c_out, h_out, w_out, k, stride, groups) as float arrays, one pass."""
    rows = []
    for _, _, p, _ in items:
        h = p.get("Input_shape") or 1
        ho = p.get("Output_shape") or 1
        rows.append((h, p.get("Input_w") or h, p.get("Input_channel") or 1, p.get("Filter") or 1, ho,
                     p.get("Output_w") or ho, p.get("Kernel") or 1, p.get("Stride") or 1, p.get("Group") or 1))
    a = np.array(rows, dtype=np.float64).reshape(len(items), 9)
    cols = [a[:, i] for i in range(9)]
    cols[8] = np.maximum(cols[8], 1)
    return tuple(cols)


def features_and_baseline(key: str, items) -> tuple[np.ndarray, np.ndarray]:
    """Both regressor inputs at once (convolutions share one pass over the parameters)."""
    if key in _CONV_KEYS and items:
        cols = _conv_columns(items)
        return _conv_matrix(items, cols), _conv_baseline(items, cols)
    return feature_matrix(key, items), baseline_matrix(key, items)


def _conv_baseline(items, cols=None) -> np.ndarray:
    """Vectorised baseline rows for convolutions (same values as :func:`work_terms`)."""
    h, w, ci, co, ho, wo, k, _, g = cols if cols is not None else _conv_columns(items)
    flops = 2 * ho * wo * co * ci / g * k * k
    traffic = (h * w * ci + ho * wo * co + k * k * ci * co / g) * BYTES
    return np.stack([np.log1p(flops), np.log1p(traffic), np.ones(len(items))], axis=1)


def _conv_matrix(items: Sequence[tuple[str, str, dict[str, Any], Sequence[str]]], cols=None) -> np.ndarray:
    """Vectorised :func:`conv_features` (the most frequent kernel by far)."""
    h, w, ci, co, ho, wo, k, st, g = cols if cols is not None else _conv_columns(items)
    wino = np.array([float(i == "winograd") for _, i, _, _ in items])
    flops = 2.0 * ho * wo * co * (ci / g) * k * k
    in_b, out_b, w_b = h * w * ci * BYTES, ho * wo * co * BYTES, k * k * ci * co / g * BYTES
    sci, sco = np.ceil(ci / 4), np.ceil(co / 4)
    tiles = np.ceil(ho / 4) * np.ceil(wo / 4)
    links = np.array([_link_feats_cached(tuple(l)) for _, _, _, l in items]).reshape(len(items), -1)
    cols = [h, ci, ho, co, k, st, g, np.log1p(flops), np.log1p(in_b), np.log1p(out_b), np.log1p(w_b),
            flops / (in_b + out_b + w_b), sci, sco, ci % 4, co % 4, tiles, wino, ho * wo,
            np.log1p(ho * wo * sco), np.log1p(ho * wo * sci * sco * k * k / g)]
    return np.hstack([np.stack(cols, axis=1), links]).astype(np.float32)


def conv_features(p: dict[str, Any], impl: str, linked: Sequence[str]) -> list[float]:
    h, w = _common(p)
    ci, co = float(p["Input_channel"]), float(p.get("Filter", 1))
    ho = float(p["Output_shape"])
    wo = float(p.get("Output_w", ho))
    k, s, g = float(p.get("Kernel", 1)), float(p.get("Stride", 1)), float(max(p.get("Group", 1), 1))
    flops = 2.0 * ho * wo * co * (ci / g) * k * k
    in_b, out_b, w_b = h * w * ci * BYTES, ho * wo * co * BYTES, k * k * ci * co / g * BYTES
    tiles = math.ceil(ho / 4) * math.ceil(wo / 4)
    return [h, ci, ho, co, k, s, g, math.log1p(flops), math.log1p(in_b), math.log1p(out_b),
            math.log1p(w_b), flops / (in_b + out_b + w_b), _slices(ci), _slices(co), ci % 4, co % 4,
            tiles, float(impl == "winograd"), ho * wo, math.log1p(ho * wo * _slices(co)),
            math.log1p(ho * wo * _slices(ci) * _slices(co) * k * k / g)] + _link_feats(linked)


def dw_features(p: dict[str, Any], impl: str, linked: Sequence[str]) -> list[float]:
    h, w = _common(p)
    c = float(p["Input_channel"])
    ho = float(p["Output_shape"])
    wo = float(p.get("Output_w", ho))
    k, s = float(p.get("Kernel", 3)), float(p.get("Stride", 1))
    mult = float(max(p.get("Filter", 1), 1))
    flops = 2.0 * ho * wo * c * mult * k * k
    return [h, c, ho, k, s, mult, math.log1p(flops), math.log1p(h * w * c), math.log1p(ho * wo * c * mult),
            _slices(c), c % 4, ho * wo, math.log1p(ho * wo * _slices(c))] + _link_feats(linked)


def fc_features(p: dict[str, Any], impl: str, linked: Sequence[str]) -> list[float]:
    ci, co = float(p["Input_channel"]), float(p.get("Filter", 1))
    rows = float(p.get("Input_shape", 1) or 1) if p.get("Kernel") is None else 1.0
    return [ci, co, rows, math.log1p(ci * co), _slices(ci), _slices(co), ci % 4, co % 4,
            math.log1p(2 * ci * co * rows)] + _link_feats(linked)


def mean_features(p: dict[str, Any], impl: str, linked: Sequence[str]) -> list[float]:
    h, w = _common(p)
    c = float(p["Input_channel"])
    return [h, w, c, math.log1p(h * w * c), _slices(c), c % 4]


def pool_features(p: dict[str, Any], impl: str, linked: Sequence[str], kernel: str = "") -> list[float]:
    h, w = _common(p)
    c = float(p["Input_channel"])
    ho = float(p["Output_shape"])
    k, s = float(p.get("Kernel", 1)), float(p.get("Stride", 1))
    return [h, c, ho, k, s, math.log1p(ho * ho * c * k * k), math.log1p(h * w * c), _slices(c),
            float(kernel == "MAX_POOL_2D")] + _link_feats(linked)


def concat_features(p: dict[str, Any], impl: str, linked: Sequence[str]) -> list[float]:
    h, w = _common(p)
    c0, c = float(p["Input_channel"]), float(p.get("Filter", 1))
    n = float(p.get("Kernel", 2))
    return [h, c0, c, n, math.log1p(h * w * c), _slices(c), float(int(c0) % 4 == 0),
            math.log1p(h * w * _slices(c))] + _link_feats(linked)


def bmm_features(p: dict[str, Any], impl: str, linked: Sequence[str]) -> list[float]:
    b, m, k, n = (float(p.get(x, 1)) for x in ("Batch", "M", "K", "N"))
    flops = 2 * b * m * k * n
    traffic = (b * m * k + b * k * n + b * m * n) * BYTES
    return [b, m, k, n, math.log1p(flops), math.log1p(traffic), flops / traffic, _slices(k), _slices(n),
            k % 4, n % 4]


def transpose_features(p: dict[str, Any], impl: str, linked: Sequence[str]) -> list[float]:
    shape = list(p.get("Input_dims") or p.get("Output_shape") or [1])
    perm = list(p.get("Perm") or range(len(shape)))
    e = float(p.get("Output_elements", 1))
    inner_kept = float(bool(perm) and perm[-1] == len(perm) - 1)
    run = float(shape[perm[-1]]) if perm and shape else 1.0  # contiguous run read per element written
    return [e, math.log1p(e), float(len(shape)), inner_kept, math.log1p(run), float(shape[-1]) if shape else 1.0]


def binary_features(p: dict[str, Any], impl: str, linked: Sequence[str]) -> list[float]:
    e = float(p.get("Output_elements", 1))
    i = float(p.get("Input_elements", 2 * e))
    return [e, math.log1p(e), i / max(e, 1), float(i < 2 * e)]  # < 2x: one operand is broadcast


def rows_features(p: dict[str, Any], impl: str, linked: Sequence[str]) -> list[float]:
    r, c = float(p.get("Rows", 1)), float(p.get("Cols", 1))
    return [r, c, math.log1p(r * c), _slices(c), c % 4]


def feature_vector(key: str, kernel: str, impl: str, params: dict[str, Any],
                   linked: Sequence[str]) -> list[float]:
    """The feature vector of one kernel for the regressor ``key``."""
    if key in _CONV_KEYS:
        return conv_features(params, impl, linked)
    if key in ("DEPTHWISE_CONV_2D", "DW_S2"):
        return dw_features(params, impl, linked)
    if key in ("FULLY_CONNECTED", "FC_TOKENS"):
        return fc_features(params, impl, linked)
    if key == "MEAN":
        return mean_features(params, impl, linked)
    if key == "POOL_2D":
        return pool_features(params, impl, linked, kernel)
    if key == "CONCATENATION":
        return concat_features(params, impl, linked)
    if key == "BATCH_MATMUL":
        return bmm_features(params, impl, linked)
    if key in ("SOFTMAX", "LAYER_NORM"):
        return rows_features(params, impl, linked)
    if key == "TRANSPOSE":
        return transpose_features(params, impl, linked)
    if key in ELEMENT_KEYS:
        return binary_features(params, impl, linked)
    raise KeyError(key)


def feature_matrix(key: str, items: Sequence[tuple[str, str, dict[str, Any], Sequence[str]]]) -> np.ndarray:
    """Stack the feature vectors of ``(kernel, impl, params, linked)`` items."""
    if key in _CONV_KEYS and items:
        return _conv_matrix(items)
    return np.array([feature_vector(key, k, i, p, l) for k, i, p, l in items], dtype=np.float32)


def work_terms(key: str, kernel: str, params: dict[str, Any]) -> tuple[float, float]:
    """(FLOPs, bytes moved) of a kernel: the inputs of the log-linear baseline."""
    p = params
    if key in GLUE_KEYS:  # a transpose too: its traffic is its elements in and out
        e = float(p.get("Output_elements", 1))
        return e, (e + float(p.get("Input_elements", e))) * BYTES
    h = float(p.get("Input_shape", 1) or 1)
    w = float(p.get("Input_w", h) or 1)
    ci = float(p.get("Input_channel", 1) or 1)
    ho = float(p.get("Output_shape", 1) or 1)
    wo = float(p.get("Output_w", ho) or 1)
    k = float(p.get("Kernel", 1) or 1)
    if key in _CONV_KEYS:
        co, g = float(p.get("Filter", 1)), float(max(p.get("Group", 1), 1))
        return 2 * ho * wo * co * ci / g * k * k, (h * w * ci + ho * wo * co + k * k * ci * co / g) * BYTES
    if key in ("DEPTHWISE_CONV_2D", "DW_S2"):
        m = float(max(p.get("Filter", 1), 1))
        return 2 * ho * wo * ci * m * k * k, (h * w * ci + ho * wo * ci * m + k * k * ci * m) * BYTES
    if key == "FULLY_CONNECTED":
        co = float(p.get("Filter", 1))
        return 2 * ci * co, (ci + co + ci * co) * BYTES
    if key == "FC_TOKENS":  # a transformer's token-wise linear layer: rows x weights
        co, rows = float(p.get("Filter", 1)), float(p.get("Input_shape", 1) or 1)
        return 2 * rows * ci * co, (rows * ci + rows * co + ci * co) * BYTES
    if key == "MEAN":
        return h * w * ci, (h * w * ci + ci) * BYTES
    if key == "POOL_2D":
        return ho * wo * ci * k * k, (h * w * ci + ho * wo * ci) * BYTES
    if key == "CONCATENATION":
        co = float(p.get("Filter", ci))
        return h * w * co, 2 * h * w * co * BYTES
    if key == "BATCH_MATMUL":
        b, m, kk, n = (float(p.get(x, 1)) for x in ("Batch", "M", "K", "N"))
        return 2 * b * m * kk * n, (b * m * kk + b * kk * n + b * m * n) * BYTES
    if key in ("SOFTMAX", "LAYER_NORM"):
        e = float(p.get("Rows", 1)) * float(p.get("Cols", 1))
        return (5 if key == "SOFTMAX" else 8) * e, 2 * e * BYTES
    raise KeyError(key)


def baseline_matrix(key: str, items: Sequence[tuple[str, str, dict[str, Any], Sequence[str]]]) -> np.ndarray:
    """Rows ``[log FLOPs, log bytes, 1]`` for the log-linear baseline that trees refine.

    Trees cannot extrapolate beyond the largest op they saw; a power law in work and
    traffic can, so the regressors learn the residual over this baseline.
    """
    if key in _CONV_KEYS and items:
        return _conv_baseline(items)
    out = np.empty((len(items), 3), dtype=np.float64)
    for i, (k, _, p, _) in enumerate(items):
        f, b = work_terms(key, k, p)
        out[i] = (math.log1p(f), math.log1p(b), 1.0)
    return out
