"""Adaptive (active) sampling: measure next the configs the current model is least sure of.

nn-Meter's adaptive sampler measures more configs near those its predictor errs on.
Here a committee of profiles, each trained on a bootstrap resample of what is measured,
predicts every candidate config; the candidates where the members disagree most (std
of log-latency) are measured next. Disagreement is computable before measuring, so the
loop needs no oracle, and kernel types with too few rows come first (they are where a
profile knows nothing).

    order = next_batch(measured_rows, candidate_items, k=200)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..datasets import OpRow
from ..features import predictor_key

MIN_ROWS = 8


def committee_disagreement(measured: Sequence[OpRow], items: Sequence[tuple[str, str, dict[str, Any], Sequence[str]]],
                           members: int = 4, seed: int = 0) -> np.ndarray:
    """Std of log-predictions over ``members`` bootstrap-trained profiles, per item.

    Items whose predictor key has fewer than ``MIN_ROWS`` measured rows get +inf.
    """
    from ..train import fit_regressors, profile_from_fit

    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    for r in measured:
        k = predictor_key(r.kernel, r.impl)
        counts[k] = counts.get(k, 0) + 1
    preds = []
    for _ in range(members):
        idx = rng.integers(0, len(measured), len(measured))
        prof = profile_from_fit({}, fit_regressors([measured[i] for i in idx]))
        preds.append(np.log(prof.predict_kernels(items)))
    p = np.vstack(preds)
    import warnings

    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no regressor for that key yet
        sd = np.nanstd(p, axis=0)
    keys = [predictor_key(k, i) for k, i, _, _ in items]
    few = np.array([counts.get(k, 0) < MIN_ROWS for k in keys])
    sd[few | ~np.isfinite(sd)] = np.inf
    return sd


def next_batch(measured: Sequence[OpRow], candidates: Sequence[tuple[str, str, dict[str, Any], Sequence[str]]],
               k: int, members: int = 4, seed: int = 0, explore: float = 0.2) -> list[int]:
    """Indices of the ``k`` candidates to measure next.

    Candidates are drawn without replacement with probability proportional to the
    committee's disagreement, mixed with an ``explore`` share of uniform probability so
    that regions the committee is wrongly sure about still get visited.
    """
    rng = np.random.default_rng(seed)
    n = len(candidates)
    if n <= k:
        return list(range(n))
    if len(measured) < 2 * MIN_ROWS:
        return sorted(rng.choice(n, k, replace=False).tolist())
    sd = committee_disagreement(measured, candidates, members, seed)
    finite = np.isfinite(sd)
    cap = 10 * (float(sd[finite].max()) if finite.any() else 1.0)
    w = np.where(finite, sd, cap) + 1e-9
    # a batch drawn with probability ~ disagreement (plus a uniform share), not the top-k:
    # greedy top-k batches pile onto one uncertain corner; weighted draws keep the
    # pool's density while leaning to where the committee is unsure
    p = (1 - explore) * w / w.sum() + explore / n
    return sorted(rng.choice(n, k, replace=False, p=p).tolist())


def _embed(key: str, items: Sequence[tuple[str, str, dict[str, Any], Sequence[str]]]) -> np.ndarray:
    from ..features import feature_matrix

    x = feature_matrix(key, items).astype(np.float64)
    return np.sign(x) * np.log1p(np.abs(x))  # sizes span decades: neighbours in log space


def out_of_sample_errors(before: Sequence[OpRow], new: Sequence[OpRow]) -> np.ndarray:
    """|log(predicted / measured)| of ``new`` rows under a profile fitted on ``before``
    (NaN where it has no regressor): errors the sampler learns from without measuring
    anything twice, since each batch is scored before it joins the training rows."""
    from ..train import fit_regressors, profile_from_fit

    if not new:
        return np.zeros(0)
    if len(before) < 2 * MIN_ROWS:
        return np.full(len(new), np.nan)
    prof = profile_from_fit({}, fit_regressors(before))
    pred = prof.predict_kernels([(r.kernel, r.impl, r.params, r.linked) for r in new])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(np.log(pred / np.array([r.latency_ms for r in new])))


def score_new_rows(measured: Sequence[OpRow], errors: dict[str, float]) -> None:
    """Add to ``errors`` (config id -> error) the out-of-sample errors of the rows not
    scored yet: predicted by a profile of the rows scored before them; when none is
    scored yet (a first batch, or rows found on resuming) the rows are split in two
    halves that predict each other."""
    new = [r for r in measured if r.extra["config_id"] not in errors]
    if not new:
        return
    old = [r for r in measured if r.extra["config_id"] in errors]
    if old:
        parts = [(old, new)]
    else:
        half = len(new) // 2
        parts = [(new[half:], new[:half]), (new[:half], new[half:])]
    for before, rows in parts:
        for r, e in zip(rows, out_of_sample_errors(before, rows)):
            errors[r.extra["config_id"]] = float(e)


def error_driven_batch(measured: Sequence[OpRow], errors: Sequence[float],
                       candidates: Sequence[tuple[str, str, dict[str, Any], Sequence[str]]], k: int,
                       seed: int = 0, explore: float = 0.2, neighbours: int = 5) -> list[int]:
    """Indices of the ``k`` candidates to measure next, nn-Meter style: near where the
    predictor erred.

    ``errors`` are the measured rows' out-of-sample errors (:func:`out_of_sample_errors`,
    NaN when unknown). A candidate's weight is the mean error of its ``neighbours``
    nearest measured rows of the same regressor (log-feature space, standardised per
    regressor), so hard kernel families get more of the budget and, inside a family, the
    regions where it errs; regressors with fewer than ``MIN_ROWS`` scored rows get the
    largest weight. Drawn without replacement, mixed with an ``explore`` share of uniform.
    """
    rng = np.random.default_rng(seed)
    n = len(candidates)
    if n <= k:
        return list(range(n))
    err = np.asarray(errors, dtype=float)
    ok = np.isfinite(err)
    if ok.sum() < 2 * MIN_ROWS:
        return sorted(rng.choice(n, k, replace=False).tolist())
    # a regressor without enough scored rows is weighted as one erring by 50% or the
    # 90th-percentile error, whichever is larger: it has barely been learnt
    top = max(float(np.quantile(err[ok], 0.9)), 0.5)
    w = np.full(n, top)
    m_by_key: dict[str, list[int]] = {}
    for i, r in enumerate(measured):
        if ok[i]:
            m_by_key.setdefault(predictor_key(r.kernel, r.impl), []).append(i)
    c_by_key: dict[str, list[int]] = {}
    for i, (kern, impl, _, _) in enumerate(candidates):
        c_by_key.setdefault(predictor_key(kern, impl), []).append(i)
    for key, cidx in c_by_key.items():
        midx = m_by_key.get(key, [])
        if key is None or len(midx) < MIN_ROWS:
            continue
        xm = _embed(key, [(measured[i].kernel, measured[i].impl, measured[i].params, measured[i].linked)
                          for i in midx])
        xc = _embed(key, [candidates[i] for i in cidx])
        mu, sd = xm.mean(0), xm.std(0) + 1e-9
        xm, xc = (xm - mu) / sd, (xc - mu) / sd
        e = err[midx]
        nb = min(neighbours, len(midx))
        for s in range(0, len(cidx), 512):
            d = ((xc[s:s + 512, None, :] - xm[None, :, :]) ** 2).sum(-1)
            near = np.argpartition(d, nb - 1, axis=1)[:, :nb]
            w[np.asarray(cidx[s:s + 512])] = e[near].mean(1)
    w = w + 1e-6
    p = (1 - explore) * w / w.sum() + explore / n
    return sorted(rng.choice(n, k, replace=False, p=p).tolist())


STRATEGIES = ("error", "committee")


def choose_batch(strategy: str, measured: Sequence[OpRow],
                 candidates: Sequence[tuple[str, str, dict[str, Any], Sequence[str]]], k: int, seed: int,
                 errors: dict[str, float]) -> list[int]:
    """Indices of the ``k`` candidates to measure next by ``strategy``: "committee"
    (:func:`next_batch`) or "error" (:func:`error_driven_batch`, after scoring the
    measured rows not yet in ``errors``, which it updates)."""
    if strategy == "committee":
        return next_batch(measured, candidates, k, seed=seed)
    score_new_rows(measured, errors)
    return error_driven_batch(measured, [errors.get(r.extra["config_id"], np.nan) for r in measured], candidates,
                              k, seed=seed)
