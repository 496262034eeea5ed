"""Training: per-kernel XGBoost regressors and the end-to-end term, per device.

``ProfileTrainer.fit`` fits one regressor per predictor key on log latency, then fits the
end-to-end term on models with both a graph and an end-to-end measurement. The per-op
sums fed to the end-to-end fit are out-of-fold (inner grouped K-fold), so the
overhead model learns from per-op predictions as inaccurate as those it will see on
new models.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import xgboost as xgb

from .datasets import ATTRIBUTION, PHONE_FACTS, PHONE_GPU_FAMILY, OpRow
from .features import EXTRA_KEYS, GLUE_KEYS, KEYS, baseline_matrix, feature_matrix, predictor_key
from .fitting import fit_baseline, group_folds
from .ood import trained_ranges
from .predict import outside_term_ms
from .ir import Graph
from .lowering import LoweredModel, lower
from .overhead import (E2E_TERMS, OVERHEAD_FEATURES, choose_e2e_term, choose_factor_ridge, e2e_terms,
                       fit_overhead, graph_features, layout_types_of, overhead_features)
from .profile import Profile

XGB_PARAMS = {"objective": "reg:squarederror", "eta": 0.05, "max_depth": 6, "subsample": 0.8,
              "colsample_bytree": 0.9, "min_child_weight": 2, "tree_method": "hist", "nthread": 2,
              "seed": 0, "verbosity": 0}
XGB_ROUNDS = 400
# an extra kernel family gets an end-to-end factor only if this many fitting models have it
MIN_FACTOR_MODELS = 5


def fit_regressors(rows: Sequence[OpRow]) -> tuple[dict[str, xgb.Booster], dict[str, list[float]]]:
    """One booster per predictor key on log(latency_ms), refining a log-linear baseline."""
    by_key: dict[str, list[OpRow]] = collections.defaultdict(list)
    for r in rows:
        key = predictor_key(r.kernel, r.impl)
        if key is not None and r.latency_ms > 0:
            by_key[key].append(r)
    out, base = {}, {}
    for key in KEYS + EXTRA_KEYS:
        rs = by_key.get(key)
        if not rs or len(rs) < 3:
            continue
        items = [(r.kernel, r.impl, r.params, r.linked) for r in rs]
        x = feature_matrix(key, items)
        y = np.log([r.latency_ms for r in rs])
        xb = baseline_matrix(key, items)
        coef = fit_baseline(xb, y)
        out[key] = xgb.train(XGB_PARAMS, xgb.DMatrix(x, label=y, base_margin=xb @ coef), XGB_ROUNDS)
        base[key] = coef.tolist()
    return out, base


def profile_from_fit(meta: dict[str, Any], fitted: tuple[dict[str, xgb.Booster], dict[str, list[float]]]) -> Profile:
    boosters, base = fitted
    for b in boosters.values():
        b.set_param({"nthread": 1})
    return Profile(dict(meta, baseline=base), boosters)


def lowered_for(graphs: Mapping[str, Graph], family: str, backend: str = "tflite-gpu",
                cache: dict | None = None) -> dict[str, LoweredModel]:
    """Lower every graph for one GPU family (memoised in ``cache``)."""
    out = {}
    for name, g in graphs.items():
        key = (name, family, backend)
        if cache is not None and key in cache:
            out[name] = cache[key]
            continue
        lm = lower(g, backend, family)
        if cache is not None:
            cache[key] = lm
        out[name] = lm
    return out


def oof_op_sums(rows: Sequence[OpRow], lowered: Mapping[str, LoweredModel], meta: dict[str, Any],
                inner_folds: int = 5) -> dict[str, dict[str, float]]:
    """Per-op sum of each model's lowered kernels, predicted by regressors not trained on it."""
    models = sorted({r.model for r in rows} | set(lowered))
    sums = {}
    for fold in group_folds(models, inner_folds, seed=1):
        held = set(fold)
        prof = profile_from_fit(meta, fit_regressors([r for r in rows if r.model not in held]))
        for m in fold:
            if m in lowered:
                sums[m] = prof.predict(lowered[m]).key_sums
    return sums


class ProfileTrainer:
    """Trains a device profile from per-op rows and end-to-end measurements, scikit-learn
    style: hyper-parameters in the constructor, data in :meth:`fit`, which returns the
    fitted :class:`~oplat.profile.Profile`.

    ``framework``, ``processor``, ``lowering`` and ``variant`` say what the profile
    describes and how models are lowered for it (``variant``: the lowering variant, by
    default the phone's GPU family). With ``extra_factors`` the end-to-end term also scales
    the predicted sums of the extra kernel families (transformer and CPU kernels,
    :data:`~oplat.features.EXTRA_KEYS`) that occur in at least :data:`MIN_FACTOR_MODELS`
    fitting models; otherwise those families are added at factor 1. ``factor_ridge`` may be
    a list of candidates, chosen by 10-fold CV over the fitting models with the
    one-standard-error rule (:func:`~oplat.overhead.choose_factor_ridge`; the CV table goes
    into the metadata). ``factor_units``: how the ridge measures a factor's distance from 1
    (:func:`~oplat.overhead.fit_overhead`). ``layout_by_type``: layout work in columns per
    kernel type (:func:`~oplat.overhead.overhead_features`). ``e2e_term``: how the
    end-to-end term is fitted, a name of :data:`~oplat.overhead.E2E_TERMS` (``"l2"``,
    ``"huber"``, ``"signed"``: per-kernel counts of either sign) or a list of them
    (``"auto"``: all; :func:`~oplat.overhead.e2e_terms`), of which the one with the least
    10-fold CV MAPE over the fitting models is used (:func:`~oplat.overhead.choose_e2e_term`;
    its CV table goes into the metadata). ``profile_id`` and ``source`` are recorded.
    """

    def __init__(self, framework: str = "tflite", processor: str = "gpu", lowering: str = "tflite-gpu",
                 variant: str | None = None, e2e_term: str | Sequence[str] = "l2",
                 factor_ridge: float | Sequence[float] = 0.1, signed_counts: bool = False,
                 extra_factors: bool = False, factor_units: str = "scaled", layout_by_type: bool = False,
                 profile_id: str | None = None, source: str = "") -> None:
        self.framework = framework
        self.processor = processor
        self.lowering = lowering
        self.variant = variant
        self.e2e_term = e2e_term
        self.factor_ridge = factor_ridge
        self.signed_counts = signed_counts
        self.extra_factors = extra_factors
        self.factor_units = factor_units
        self.layout_by_type = layout_by_type
        self.profile_id = profile_id
        self.source = source

    def fit(self, rows: Sequence[OpRow], e2e_ms: Mapping[str, float], graphs: Mapping[str, Graph],
            device: str, exclude_models: Sequence[str] = (), lowered_cache: dict | None = None) -> Profile:
        """The profile of ``device`` from its rows in ``rows`` and the end-to-end times
        ``e2e_ms`` of the models in ``graphs``, leaving ``exclude_models`` out of both
        (``lowered_cache``: lowered graphs memoised across calls)."""
        framework, processor, lowering = self.framework, self.processor, self.lowering
        factor_ridge, signed_counts = self.factor_ridge, self.signed_counts
        factor_units, source = self.factor_units, self.source

        terms = e2e_terms(self.e2e_term)
        excl = set(exclude_models)
        rows = [r for r in rows if r.model not in excl and r.device == device]
        family = self.variant or PHONE_GPU_FAMILY.get(device, "adreno")
        meta: dict[str, Any] = {
            "id": self.profile_id or f"{device}/{framework}-{processor}", "device": device, "framework": framework,
            "processor": processor, "precision": "fp16" if framework == "tflite" and processor == "gpu" else "fp32",
            "gpu_family": family, "lowering": lowering,
            "framework_version": "TensorFlow Lite 2.10 GPU delegate" if framework == "tflite" else "",
            **{k: v for k, v in PHONE_FACTS.get(device, {}).items()},
        }
        fitted = fit_regressors(rows)
        usable = {m: g for m, g in graphs.items() if m in e2e_ms and m not in excl}
        lowered = lowered_for(usable, family, backend=lowering, cache=lowered_cache)
        coef, ridge_cv, term_cv = None, None, None
        names = OVERHEAD_FEATURES
        if len(lowered) >= 5:
            if {r.model for r in rows} & set(lowered):
                sums = oof_op_sums(rows, lowered, meta)
            else:  # per-op rows from single-kernel models: no model leaks into its own sum
                full = profile_from_fit(meta, fitted)
                sums = {m: full.predict(lm).key_sums for m, lm in lowered.items()}
            models = sorted(sums)
            factored = [k for k in EXTRA_KEYS if k in fitted[0] and sum(
                1 for m in models if sums[m].get(k, 0.0) > 0) >= MIN_FACTOR_MODELS] if self.extra_factors else []
            names = overhead_features(factored, layout_types_of(lowered[m] for m in models) if self.layout_by_type else None)
            predicted_glue = [k for k in fitted[0] if k in GLUE_KEYS]
            feats = [graph_features(lowered[m], sums[m], predicted_glue, names=names) for m in models]
            # kernels predicted outside the end-to-end term (unfactored transformer kernels,
            # predicted glue) are subtracted from the targets, as prediction adds them back
            extra = [outside_term_ms(sums[m], factored) for m in models]
            targets = [max(e2e_ms[m] - x, 0.05 * e2e_ms[m]) for m, x in zip(models, extra)]
            if not isinstance(factor_ridge, (int, float)):
                factor_ridge, ridge_cv = choose_factor_ridge(feats, targets, [e2e_ms[m] for m in models], factor_ridge,
                                                             signed_counts=signed_counts, names=names,
                                                             factor_units=factor_units)
            fit_kw = {"factor_ridge": factor_ridge, "names": names, "factor_units": factor_units}
            if len(terms) > 1:
                chosen, term_cv = choose_e2e_term(feats, targets, [e2e_ms[m] for m in models], models, terms, **fit_kw)
                terms = [chosen]
            fit_kw["signed_counts"] = signed_counts
            fit_kw.update(E2E_TERMS[terms[0]])
            coef = fit_overhead(feats, targets, **fit_kw).tolist()
        meta["overhead"] = {"features": list(names), "coef": coef, "factor_ridge": factor_ridge,
                            "factor_units": factor_units,
                            **({"factor_ridge_cv_mape": ridge_cv} if ridge_cv else {}),
                            "e2e_term": terms[0] if coef is not None else None,
                            **({"e2e_term_cv_mape": term_cv} if term_cv else {}),
                            "signed_counts": signed_counts or terms[0] == "signed",
                            "fitted_on_models": len(lowered),
                            "glue_types_seen": glue_types(lowered.values())}
        meta["trained_ranges"] = trained_ranges((predictor_key(r.kernel, r.impl), r.params) for r in rows)
        meta["training"] = {"source": source, "rows": len(rows),
                            "models": len({r.model for r in rows}), "excluded_models": sorted(excl),
                            "rows_per_key": dict(collections.Counter(
                                k for k in (predictor_key(r.kernel, r.impl) for r in rows) if k)),
                            "attribution": ATTRIBUTION if "mobile-ml-benchmark" in source else ""}
        return profile_from_fit(meta, fitted)


def glue_types(lowered: Iterable[LoweredModel]) -> list[str]:
    """Kernel types without a regressor that occur in the end-to-end training models.

    Prediction reports other such kernels (a ViT's BATCH_MATMUL on a CNN-trained
    profile, say) as not covered instead of silently folding them into the overhead.
    """
    return sorted({k.type for lm in lowered for k in lm.glue})


def load_graphs(folder: str | Path | None, names: Sequence[str] | None = None,
                progress: Callable[[str], None] | None = None) -> dict[str, Graph]:
    """Graphs of ``folder/<model>.onnx`` for the given model names (all when None)."""
    from .onnx_loader import load_onnx

    out: dict[str, Graph] = {}
    if folder is None:
        return out
    folder = Path(folder)
    paths = sorted(folder.glob("*.onnx")) if names is None else [folder / f"{n}.onnx" for n in names]
    for p in paths:
        if p.is_file():
            out[p.stem] = load_onnx(p)
            if progress:
                progress(p.stem)
    return out
