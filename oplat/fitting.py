"""Numerical fitting shared by training, the end-to-end term, calibration and coexec's
cost calibration: non-negative least squares (plain and on relative error), the
log-linear baseline of the per-kernel regressors, grouped folds and error metrics.

A leaf module: numpy only, no other oplat module.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def nnls(a: np.ndarray, b: np.ndarray, max_iter: int = 500) -> np.ndarray:
    """Lawson-Hanson non-negative least squares: argmin ||a x - b|| subject to x >= 0."""
    m, n = a.shape
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    w = a.T @ (b - a @ x)
    it = 0
    while (~passive).any() and w[~passive].max(initial=-np.inf) > 1e-10 and it < max_iter:
        it += 1
        j = np.argmax(np.where(passive, -np.inf, w))
        passive[j] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            mask = passive & (z <= 0)
            alpha = np.min(x[mask] / (x[mask] - z[mask]))
            x = x + alpha * (z - x)
            passive &= x > 1e-12
        w = a.T @ (b - a @ x)
    return x


def relative_nnls(a: np.ndarray, measured: np.ndarray, ridge: float | np.ndarray,
                  prior: np.ndarray | None = None, raw: np.ndarray | None = None,
                  weights: np.ndarray | None = None) -> np.ndarray:
    """Non-negative ``x`` minimising the relative error of ``a @ x`` against ``measured``
    plus ``ridge * |x - prior|^2`` measured in column-scaled units (each column of the
    relative problem scaled to a maximum of 1, so ridges are comparable across columns
    of any unit). ``ridge``: one value or one per column; ``prior``: zeros when None;
    ``raw``: a mask of columns whose ridge is in the coefficient's own units instead;
    ``weights``: one per row on its squared relative error (the ridge keeps its strength
    against their mean).
    """
    wts = 1.0 / measured
    a = a * wts[:, None]
    scale = np.maximum(np.abs(a).max(axis=0), 1e-12)
    lam = np.sqrt(np.broadcast_to(np.asarray(ridge, dtype=float), scale.shape))
    if raw is not None and raw.any():  # floored: a column of zeros keeps a finite weight
        lam = np.where(raw, lam / np.maximum(scale, 1e-6), lam)
    b = measured * wts
    if weights is not None:
        sw = np.sqrt(np.asarray(weights, dtype=float))
        a, b, lam = a * sw[:, None], b * sw, lam * float(np.sqrt(np.mean(weights)))
    target = np.zeros(len(scale)) if prior is None else lam * (prior * scale)
    return nnls(np.vstack([a / scale, np.diag(lam)]), np.concatenate([b, target])) / scale


def fit_baseline(xb: np.ndarray, y: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """Least-squares log-linear baseline (log ms over log FLOPs, log bytes, 1)."""
    a = np.vstack([xb, np.sqrt(ridge) * np.eye(xb.shape[1])])
    return np.linalg.lstsq(a, np.concatenate([y, np.zeros(xb.shape[1])]), rcond=None)[0]


def group_folds(models: Sequence[str], k: int, seed: int = 0) -> list[list[str]]:
    """Split model names into ``k`` groups with a fixed seed."""
    names = sorted(set(models))
    rng = np.random.default_rng(seed)
    rng.shuffle(names)
    return [sorted(names[i::k]) for i in range(k)]


def index_folds(n: int, k: int, seed: int = 0) -> list[np.ndarray]:
    """Split row indices ``0..n-1`` into ``min(k, n)`` groups of a fixed random order (rows
    that are models already: :func:`group_folds` groups by name)."""
    order = np.random.default_rng(seed).permutation(n)
    return [order[i::k] for i in range(min(k, n))]


def error_metrics(pred: Sequence[float], true: Sequence[float]) -> dict[str, float]:
    """MAPE, RMSPE and the shares within +-10% / +-5% (fractions, not percent)."""
    p, t = np.asarray(pred, float), np.asarray(true, float)
    if len(t) == 0:
        return {"n": 0}
    e = (p - t) / t
    return {"n": int(len(t)), "mape": float(np.mean(np.abs(e))), "rmspe": float(np.sqrt(np.mean(e ** 2))),
            "within_10": float(np.mean(np.abs(e) <= 0.10)), "within_5": float(np.mean(np.abs(e) <= 0.05))}


def fit_linear(rows: np.ndarray, measured: np.ndarray, ridge: float = 1e-4) -> np.ndarray:
    """Non-negative coefficients minimising the relative error of the sums."""
    return relative_nnls(rows, measured, ridge)


__all__ = ["nnls", "relative_nnls", "fit_baseline", "fit_linear", "group_folds", "index_folds", "error_metrics"]
