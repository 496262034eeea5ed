"""Prediction: a model -> its lowered kernels -> per-kernel regressors -> the end-to-end
term -> a result with coverage.

The one place where a profile's total is defined (:func:`end_to_end_ms`); training fits
the end-to-end term against the same decomposition (:func:`outside_term_ms`).
"""

from __future__ import annotations

import contextlib
import gc
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol, Sequence

import numpy as np

from .features import EXTRA_KEYS, GLUE_KEYS, features_and_baseline, predictor_key
from .ir import Graph
from .lowering import LoweredModel
from .ood import describe, out_of_range, stand_in
from .overhead import OVERHEAD_FEATURES, KernelTallies, apply_overhead, factored_keys, kernel_tallies, tally_features


class Profile(Protocol):
    """What prediction needs of a profile (:class:`oplat.profile.Profile` is one)."""

    meta: dict[str, Any]
    boosters: dict[str, Any]
    _cache: dict[Any, float]

    @property
    def id(self) -> str: ...

    def lower(self, graph: Graph) -> LoweredModel: ...

    def predict_kernels(self, items: Sequence[tuple[str, str, dict[str, Any], Sequence[str]]]) -> np.ndarray: ...

# kernel predictions kept per profile (NAS populations and repeated blocks share most kernels)
CACHE_SIZE = 200_000


def outside_term_ms(key_sums: Mapping[str, float], factored: Sequence[str]) -> float:
    """The predicted time of the kernel families that sit outside the end-to-end term: the
    extra families (:data:`~oplat.features.EXTRA_KEYS`) without a factor of their own are
    added at factor 1. Training subtracts it from its targets; prediction adds it back."""
    return sum(v for key, v in key_sums.items() if key in EXTRA_KEYS and key not in factored)


def end_to_end_ms(coef: Sequence[float] | None, names: Sequence[str], lm: LoweredModel,
                  key_sums: Mapping[str, float], glue_keys: Iterable[str]) -> tuple[float, float]:
    """A model's (end-to-end ms, overhead ms) from its per-family kernel sums: the end-to-end
    term (coefficients ``coef`` over the features ``names``) plus the families outside it;
    the plain kernel sum where the profile has no term."""
    return end_to_end_from_tallies(coef, names, kernel_tallies(lm.kernels, glue_keys) if coef else None, key_sums)


def end_to_end_from_tallies(coef: Sequence[float] | None, names: Sequence[str], tallies: KernelTallies | None,
                            key_sums: Mapping[str, float]) -> tuple[float, float]:
    """:func:`end_to_end_ms` from a model's :class:`~oplat.overhead.KernelTallies` (the
    sum of its pieces' when it is composed of cached pieces)."""
    if not coef:
        return sum(key_sums.values()), 0.0
    total, overhead = apply_overhead(coef, tally_features(tallies, key_sums, names), names)
    return total + outside_term_ms(key_sums, factored_keys(names)), overhead


@dataclass(slots=True)
class OpPrediction:
    """One kernel's prediction."""

    name: str
    kernel: str
    impl: str
    linked: list[str]
    predicted_ms: float | None
    params: dict[str, Any]
    sources: list[str] = field(default_factory=list)
    note: str | None = None  # set when the kernel is outside what the features describe (oplat.ood)

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "kernel": self.kernel, "impl": self.impl, "linked": self.linked,
             "predicted_ms": self.predicted_ms,
             "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.params.items()},
             "sources": self.sources}
        if self.note:
            d["note"] = self.note
        return d


@dataclass
class PredictionResult:
    """End-to-end and per-kernel predictions for one model."""

    model: str
    profile: str
    total_ms: float
    ops_ms: float
    overhead_ms: float
    ops: list[OpPrediction]
    unsupported: list[dict[str, str]]
    glue: list[dict[str, Any]]
    key_sums: dict[str, float] = field(default_factory=dict)
    coverage: dict[str, Any] = field(default_factory=dict)
    batch: int = 1

    @property
    def approximated(self) -> list[OpPrediction]:
        """The kernels priced by a stand-in because the features cannot describe them."""
        return [o for o in self.ops if o.note]

    @property
    def complete(self) -> bool:
        """True when every op of the model was predicted (nothing is left out of the total)."""
        return not self.unsupported

    def summary(self) -> dict[str, Any]:
        """The one-line record of this prediction: totals, completeness and coverage."""
        return {"total_ms": self.total_ms, "ops_ms": self.ops_ms, "overhead_ms": self.overhead_ms,
                "complete": self.complete, "kernels": len(self.ops),
                "coverage": {k: self.coverage[k] for k in ("ops", "flops", "approximated_ops") if k in self.coverage}}

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "profile": self.profile, "total_ms": self.total_ms,
                "ops_ms": self.ops_ms, "overhead_ms": self.overhead_ms, "complete": self.complete,
                "coverage": self.coverage, "batch": self.batch,
                "ops": [o.to_dict() for o in self.ops], "unsupported": self.unsupported,
                "glue_kernels": self.glue}


def predicted_kernels(lm: LoweredModel, glue_keys: Iterable[str]) -> list:
    """The kernels a profile predicts one by one: the row kernels, and the glue kernels it has
    a regressor for (a CPU profile's TRANSPOSE)."""
    glue_keys = set(glue_keys)
    if not glue_keys:
        return lm.rows
    return [k for k in lm.kernels if k.is_row or predictor_key(k.type, k.impl) in glue_keys]


def unpredicted(lm: LoweredModel, keys: Iterable[str], glue_seen: Iterable[str] | None) -> list[dict[str, Any]]:
    """What a profile with regressors ``keys`` (and end-to-end training models whose glue
    kernel types were ``glue_seen``) leaves out of a lowered model: ops the lowering does
    not know, kernels without a regressor, and glue kernels of types it never saw."""
    keys = set(keys)
    glue_keys = {k for k in keys if k in GLUE_KEYS}
    out = list(lm.unsupported)
    for k in predicted_kernels(lm, glue_keys):
        if predictor_key(k.type, k.impl) not in keys:
            out.append({"name": k.name, "op_type": k.type, "reason": "no regressor in profile",
                        "sources": list(k.sources)})
    if glue_seen is not None:
        seen_set = set(glue_seen)
        for k in lm.glue:
            if k.type not in seen_set and predictor_key(k.type, k.impl) not in glue_keys:
                out.append({"name": k.name, "op_type": k.type,
                            "reason": "not in this profile's training models; only counted "
                                      "as generic glue in the end-to-end term",
                            "sources": list(k.sources)})
    return out


def coverage(lm: LoweredModel, unsupported: Sequence[Mapping[str, Any]], graph: Graph | None) -> dict[str, Any]:
    """What share of a model the prediction covers: of its kernels (``ops``) and, when its
    graph is known, of its FLOPs (``flops``: :func:`oplat.flops.op_flops` of the ops each
    predicted kernel runs, against those of every op left out), and the names of the op
    types left out."""
    n_in, f_in, f_out = coverage_counts(lm, unsupported, graph)
    return coverage_from_counts(n_in, len(unsupported), f_in, f_out, graph is not None,
                                {u["op_type"] for u in unsupported})


def coverage_counts(lm: LoweredModel, unsupported: Sequence[Mapping[str, Any]],
                    graph: Graph | None, flops: bool = False) -> tuple[int, float, float]:
    """The sums :func:`coverage` divides (all of them sums over ops, so a network's are its
    pieces' summed): kernels predicted, and FLOPs of the ops predicted and left out
    (both 0 when the graph is unknown, or when nothing is left out unless ``flops``)."""
    out_names = {u["name"] for u in unsupported} | {s for u in unsupported for s in u.get("sources", ())}
    n_in = len(lm.kernels) - sum(1 for k in lm.kernels if k.name in out_names)
    f_in = f_out = 0.0
    if graph is not None and (out_names or flops):
        from .flops import op_flops

        covered = {s for k in lm.kernels if k.name not in out_names for s in (k.sources or [k.name])}
        for op in graph.ops():
            if op.name in out_names:
                f_out += op_flops(graph, op)
            elif op.name in covered:
                f_in += op_flops(graph, op)
    return n_in, f_in, f_out


def coverage_from_counts(n_in: int, n_out: int, f_in: float, f_out: float, graph_known: bool,
                         missing_types: Iterable[str]) -> dict[str, Any]:
    """:func:`coverage`'s record from its sums (:func:`coverage_counts`)."""
    res: dict[str, Any] = {"ops": round(n_in / max(n_in + n_out, 1), 4), "flops": None,
                           "missing_types": sorted(set(missing_types))}
    if graph_known and not n_out:
        res["flops"] = 1.0  # nothing left out: every FLOP the kernels run is predicted
    elif graph_known:
        res["flops"] = round(f_in / (f_in + f_out), 4) if f_in + f_out > 0 else 1.0
    return res


RNN_OPS = ("LSTM", "GRU", "RNN")


def graph_batch(graph: Graph) -> int:
    """The batch a model runs at: the leading dim of its inputs (the largest, if they differ),
    but the second of an input a recurrent op reads sequence first (ONNX's default layout)."""
    dims = []
    for i in graph.inputs:
        t = graph.tensors.get(i)
        if t is None or not t.shape or len(t.shape) < 2:
            continue
        seq_first = any(op.type in RNN_OPS and op.inputs and op.inputs[0] == i and not op.attrs.get("layout", 0)
                        for op in graph.consumers(i))
        dims.append(t.shape[1] if seq_first else t.shape[0])
    return max(dims, default=1)


def regressor_predictions(profile: Profile, items: Sequence[tuple[str, str, dict[str, Any], Sequence[str]]]) -> np.ndarray:
    """Milliseconds for ``(kernel, impl, params, linked)`` items from ``profile``'s own
regressors (NaN where it has none).

    Kernels already predicted (same type, parameters and links) come from a cache:
    NAS populations and repeated blocks share most of their kernels.
    """
    out = np.full(len(items), np.nan)
    items = list(items)  # stand-ins replace entries of this copy, never the caller's
    cache = profile._cache
    groups: dict[str, list[int]] = {}
    sigs: list[Any] = [None] * len(items)
    scale: dict[int, float] = {}
    for i, (k, impl, params, linked) in enumerate(items):
        # key order is part of the signature: a different order can only miss, never collide
        sig = (k, impl, tuple((a, tuple(b) if isinstance(b, list) else b) for a, b in params.items()),
               tuple(linked))
        hit = cache.get(sig)
        if hit is not None:
            out[i] = hit
            continue
        sub = stand_in(k, impl, params)
        if sub is not None:  # a kernel the features cannot describe: priced by its stand-in
            impl, params, scale[i] = sub
            items[i] = (k, impl, params, linked)
        key = predictor_key(k, impl)
        if key in profile.boosters:
            sigs[i] = sig
            groups.setdefault(key, []).append(i)
    base = profile.meta.get("baseline", {})
    if len(cache) > CACHE_SIZE:
        cache.clear()
    n_new = sum(len(v) for v in groups.values())
    # threads only pay off on big batches; as many as the cores this process may use
    threads = _usable_cores() if n_new > 2000 else 1
    for key, idx in groups.items():
        profile.boosters[key].set_param({"nthread": threads})
        sel = [items[i] for i in idx]
        x, xb = features_and_baseline(key, sel)
        margin = xb @ np.asarray(base[key]) if key in base else None
        vals = np.exp(profile.boosters[key].inplace_predict(x, base_margin=margin))
        if scale:
            vals = vals * np.array([scale.get(i, 1.0) for i in idx])
        out[idx] = vals
        for i, v in zip(idx, vals.tolist()):
            cache[sigs[i]] = v
    return out

def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def predict_models(profile: Profile, models: Iterable[str | os.PathLike | Graph | LoweredModel],
                   input_shapes: Mapping[str, Sequence[int]] | None = None,
                   totals: bool = True) -> list[PredictionResult]:
    """Predict model files, IR graphs or lowered models with ``profile``: one regressor call
    per kernel type for all models together. ``totals=False`` predicts the kernels only
    (``total_ms`` is their plain sum, no end-to-end term or coverage: pieces of a network,
    :mod:`oplat.spaces.compose`)."""
    with gc_paused():
        return _predict_models(profile, models, input_shapes, totals)


def _predict_models(profile: Profile, models, input_shapes, totals: bool = True) -> list[PredictionResult]:
    from .model_io import load_model

    lowered: list[LoweredModel] = []
    graphs: list[Graph | None] = []
    for m in models:
        if isinstance(m, LoweredModel):
            lowered.append(m)
            graphs.append(None)
        else:
            g = m if isinstance(m, Graph) else load_model(m, input_shapes)
            graphs.append(g)
            lm = profile.lower(g)
            assumed = set(g.meta.get("assumed_shapes", ()))
            for u in lm.unsupported:
                if u["name"] in assumed:
                    u["reason"] = "unknown op; its output shape was assumed equal to its input's"
            lowered.append(lm)
    glue_keys = {key for key in profile.boosters if key in GLUE_KEYS}
    seen = profile.meta.get("overhead", {}).get("glue_types_seen")
    predicted: list[list] = []
    items = []
    for mi, lm in enumerate(lowered):
        ks = predicted_kernels(lm, glue_keys)
        predicted.append(ks)
        for k in ks:
            items.append((k.type, k.impl, k.params, k.linked))
    preds = (profile.predict_kernels(items) if items else np.zeros(0)).tolist()
    results = []
    pos = 0
    coef = profile.meta.get("overhead", {}).get("coef")
    ranges = profile.meta.get("trained_ranges") or {}
    names = tuple(profile.meta.get("overhead", {}).get("features") or OVERHEAD_FEATURES)
    for mi, lm in enumerate(lowered):
        ops = []
        # NaN predictions are exactly the kernels without a regressor (unpredicted names them)
        unsupported = unpredicted(lm, profile.boosters.keys(), seen)
        key_sums: dict[str, float] = {}
        for k in predicted[mi]:
            v = preds[pos]
            pos += 1
            note = None
            if v != v:  # NaN: no regressor for this kernel type
                v = None
            else:
                key = predictor_key(k.type, k.impl)
                key_sums[key] = key_sums.get(key, 0.0) + v
                note = describe(k.type, k.params) or out_of_range(ranges.get(key), k.params)
            ops.append(OpPrediction(k.name, k.type, k.impl, k.linked, v, k.params, k.sources, note))
        ops_sum = sum(key_sums.values())
        if not totals:
            results.append(PredictionResult(lm.name, profile.id, ops_sum, ops_sum, 0.0, ops, unsupported, [],
                                            key_sums))
            continue
        total, overhead = end_to_end_ms(coef, names, lm, key_sums, glue_keys)
        glue = [{"name": k.name, "kernel": k.type, "linked": k.linked} for k in lm.glue]
        res = PredictionResult(lm.name, profile.id, total, ops_sum, overhead, ops, unsupported, glue)
        res.key_sums = key_sums
        res.coverage = coverage(lm, unsupported, graphs[mi])
        approx = res.approximated
        if approx:  # priced by a stand-in: counted, but flagged
            res.coverage["approximated_ops"] = len(approx)
            res.coverage["approximated_ms"] = sum(o.predicted_ms for o in approx)
        res.batch = graph_batch(graphs[mi]) if graphs[mi] is not None else 1
        results.append(res)
    return results


@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector: building and lowering graphs create many
    short-lived, acyclic objects whose generation-2 scans (over every loaded graph)
    otherwise halve the batch throughput. Reference counting still frees them at once."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


__all__ = ["OpPrediction", "PredictionResult", "predict_models", "regressor_predictions", "end_to_end_ms",
           "outside_term_ms", "coverage", "coverage_counts", "coverage_from_counts", "end_to_end_from_tallies", "gc_paused", "graph_batch", "predicted_kernels", "unpredicted", "CACHE_SIZE"]
