"""The right profile for a model: when a model does not fit a profile's family (transformer
kernels on a CNN profile, int8 on an fp32 profile or the reverse, an op another profile of
the same device covers), say so and name the profiles of the same device that fit.

Candidates are judged from their metadata alone (regressor keys, glue types seen, how they
lower a model), so no regressor is loaded: the model is lowered once per distinct lowering.
"""

from __future__ import annotations

import json
from typing import Any

from .ir import Graph
from .onnx_utils import QUANTIZED_OPS
from .lowering import lower
from .predict import coverage, unpredicted
from .profile import Profile, list_profiles



def model_precision(graph: Graph) -> str:
    """``"int8"`` for a quantized model (QDQ or QOperator ONNX ops, or int8/uint8 activations
    of a .tflite file), ``"float"`` otherwise."""
    if any(op.type in QUANTIZED_OPS for op in graph.ops()):
        return "int8"
    if graph.meta.get("format") == "tflite":
        acts = [graph.tensors[t].dtype for op in graph.ops() for t in op.outputs if t in graph.tensors]
        if acts and sum(d in ("int8", "uint8") for d in acts) > len(acts) / 2:
            return "int8"
    return "float"


def profile_precision(meta: dict[str, Any]) -> str:
    """``"int8"`` for an int8 profile, ``"float"`` for fp32/fp16 ones."""
    return "int8" if str(meta.get("precision", "")).startswith("int") else "float"


def _keys(meta: dict[str, Any]) -> set[str]:
    keys = set(meta.get("models") or {})
    for m in (meta.get("blend") or {}).get("members", []) or []:
        keys |= set(m.get("models") or {})
    return keys


def fitting_profiles(graph: Graph, profile: Profile, limit: int = 3,
                     same_processor: bool = False) -> list[tuple[str, float]]:
    """Profiles of ``profile``'s device that predict more of ``graph`` (share of its FLOPs)
    than ``profile`` does, at the model's precision, best first: ``[(id, flops share)]``
    (only those of ``profile``'s processor with ``same_processor``)."""
    device = profile.meta.get("device")
    want = model_precision(graph)
    mine = _share(graph, profile.meta, {})
    cache: dict[tuple[str, str], Any] = {}
    found = []
    for pid, folder in list_profiles():
        if pid.split("/")[0] != device or pid == profile.id:
            continue
        try:
            meta = json.loads((folder / "profile.json").read_text())
        except (OSError, ValueError):
            continue
        if profile_precision(meta) != want or (
                same_processor and meta.get("processor") != profile.meta.get("processor")):
            continue
        share = _share(graph, meta, cache)
        # at the profile's own precision only a better cover helps; at another, an equal one
        bar = (mine or 0.0) + (1e-9 if want == profile_precision(profile.meta) else -1e-9)
        if share is not None and share > bar:
            same_kind = meta.get("processor") == profile.meta.get("processor")
            # the same processor first, then the most covered, then the closest id (same core set)
            found.append((not same_kind, -share, -_common_prefix(pid, profile.id), pid))
    return [(pid, -neg) for _, neg, _, pid in sorted(found)[:limit]]


def _common_prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _share(graph: Graph, meta: dict[str, Any], cache: dict) -> float | None:
    key = (meta.get("lowering", "tflite-gpu"), meta.get("gpu_family", "adreno"))
    if key not in cache:
        try:
            cache[key] = lower(graph, *key)
        except Exception:  # noqa: BLE001 - a profile whose lowering cannot take the model fits it no better
            cache[key] = None
    lm = cache[key]
    if lm is None:
        return None
    left_out = unpredicted(lm, _keys(meta), (meta.get("overhead") or {}).get("glue_types_seen"))
    cov = coverage(lm, left_out, graph)
    return cov["flops"] if cov["flops"] is not None else cov["ops"]


def advice(graph: Graph, profile: Profile, complete: bool) -> list[str]:
    """One-line notes on how well ``profile`` fits ``graph``: a precision mismatch, and the
    profiles of the same device that fit better (asked for only when the prediction is
    incomplete or the precisions differ)."""
    notes = []
    model_p, prof_p = model_precision(graph), profile_precision(profile.meta)
    if model_p != prof_p:
        notes.append(f"the model is {'int8 (quantized)' if model_p == 'int8' else 'float'}, {profile.id} "
                     f"models {'int8' if prof_p == 'int8' else 'float'} kernels")
    if not complete or model_p != prof_p:
        better = fitting_profiles(graph, profile)
        if better:
            notes.append("profiles of " + str(profile.meta.get("device")) + " that fit it: "
                         + ", ".join(f"{pid} ({share:.0%} of its FLOPs)" for pid, share in better))
        elif model_p != prof_p:
            notes.append(f"no {model_p} profile of {profile.meta.get('device')} predicts it as well")
    return notes


__all__ = ["model_precision", "profile_precision", "fitting_profiles", "advice", "QUANTIZED_OPS"]
