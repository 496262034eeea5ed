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
    from ..train import _profile, fit_regressors

    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    for r in measured:
        k = predictor_key(r.kernel, r.impl)
        counts[k] = counts.get(k, 0) + 1
    preds = []
    for _ in range(members):
        idx = rng.integers(0, len(measured), len(measured))
        prof = _profile({}, fit_regressors([measured[i] for i in idx]))
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
