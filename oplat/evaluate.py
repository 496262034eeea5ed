"""Grouped K-fold cross-validation of profiles: held-out models, per-op and end to end."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .datasets import OpRow
from .ir import Graph
from .fitting import error_metrics, group_folds
from .train import ProfileTrainer


def cross_validate(rows: Sequence[OpRow], e2e: Mapping[str, Mapping[str, float]],
                   graphs: Mapping[str, Graph], devices: Sequence[str], folds: int = 10,
                   seed: int = 0, progress: Callable[[str], None] | None = None,
                   source: str = "", **train_kwargs: Any) -> dict[str, Any]:
    """Train on K-1 groups of models, predict the held-out group, for every device.

    Per-op predictions use the dataset's rows of held-out models; end-to-end predictions
    lower each held-out model's graph (the path a user's model file takes), so they also
    carry any lowering error.
    """
    result: dict[str, Any] = {"folds": folds, "seed": seed, "devices": {}}
    points: dict[str, list] = {}
    cache: dict = {}
    for dev in devices:
        drows = [r for r in rows if r.device == dev]
        models = sorted({r.model for r in drows} | set(e2e.get(dev, {})))
        op_pred, op_true, e_pred, e_true, e_models, e_parts = [], [], [], [], [], []
        for k, held in enumerate(group_folds(models, folds, seed)):
            kw = {k: (v(dev) if callable(v) else v) for k, v in train_kwargs.items()}
            prof = ProfileTrainer(source=source, **kw).fit(drows, e2e.get(dev, {}), graphs, dev,
                                                           exclude_models=held, lowered_cache=cache)
            hs = set(held)
            test = [r for r in drows if r.model in hs]
            if test:
                op_pred.extend(prof.predict_kernels([(r.kernel, r.impl, r.params, r.linked) for r in test]))
                op_true.extend(r.latency_ms for r in test)
            for m in held:
                if m in graphs and m in e2e.get(dev, {}):
                    res = prof.predict(graphs[m])
                    e_pred.append(res.total_ms)
                    e_parts.append((res.ops_ms, res.overhead_ms))
                    e_true.append(e2e[dev][m])
                    e_models.append(m)
            if progress:
                progress(f"{dev} fold {k + 1}/{folds}")
        e_err = np.abs(np.array(e_pred) - np.array(e_true)) / np.array(e_true) if e_true else np.zeros(0)
        worst = [(e_models[i], round(float(e_err[i]), 4)) for i in np.argsort(-e_err)[:5]] if len(e_err) else []
        result["devices"][dev] = {"per_op": error_metrics(op_pred, op_true),
                                  "end_to_end": error_metrics(e_pred, e_true), "worst_end_to_end": worst}
        # per held-out model: its name and its prediction's (per-op sum, end-to-end term)
        points[dev] = {"op": (op_pred, op_true), "e2e": (e_pred, e_true), "e2e_models": e_models,
                       "e2e_parts": e_parts}
    result["_points"] = points
    return result


def scatter_png(points: Mapping[str, Any], path: str) -> None:
    """Predicted vs measured scatter, one panel per device (end to end and per op)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    devs = list(points)
    fig, axes = plt.subplots(2, len(devs), figsize=(3.2 * len(devs), 6.4), squeeze=False)
    for j, dev in enumerate(devs):
        for i, kind in enumerate(("e2e", "op")):
            pred, true = points[dev][kind]
            ax = axes[i][j]
            if len(true):
                ax.loglog(true, pred, ".", ms=3 if kind == "op" else 5, alpha=0.5)
                lo, hi = min(min(true), min(pred)), max(max(true), max(pred))
                ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
                ax.plot([lo, hi], [lo * 1.1, hi * 1.1], "k:", lw=0.6)
                ax.plot([lo, hi], [lo * 0.9, hi * 0.9], "k:", lw=0.6)
            ax.set_title(f"{dev} {'end-to-end' if kind == 'e2e' else 'per op'}", fontsize=9)
            ax.set_xlabel("measured ms", fontsize=8)
            ax.set_ylabel("predicted ms", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
