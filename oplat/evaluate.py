"""Grouped K-fold cross-validation of profiles: held-out models, per-op and end to end."""

from __future__ import annotations

import collections
import os
from pathlib import Path
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


def lowering_match(rows: Sequence[OpRow], zoo: str | os.PathLike, show: int = 0) -> dict[str, Any]:
    """How many of the dataset's per-op GPU ``rows`` the ``tflite-gpu`` lowering of the ONNX
    exports in ``zoo`` reproduces (as multisets per model and phone): ``share`` compares the
    operation and every recorded feature, ``share_with_kernel_and_links`` also the GPU
    kernel family and linked ops, ``share_ignoring_input_padding`` leaves the recorded
    (padded or not) input size out; ``per_model`` the share of each model. ``show``: print
    up to that many mismatching models' rows (s10)."""
    from .datasets import PHONE_GPU_FAMILY, row_identity as row_key
    from .lowering import lower
    from .onnx_loader import load_onnx

    zoo = Path(zoo)
    by_model: dict[str, dict[str, list]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in rows:
        by_model[r.model][r.device].append(r)
    total = matched = full_total = full_matched = nopad_matched = 0
    per_model = {}
    shown = 0
    for model in sorted(by_model):
        path = zoo / f"{model}.onnx"
        if not path.is_file():
            continue
        g = load_onnx(path)
        m_tot = m_ok = 0
        for dev, drows in by_model[model].items():
            lm = lower(g, "tflite-gpu", PHONE_GPU_FAMILY[dev])
            ours = collections.Counter(row_key(k.type, k.params) for k in lm.rows)
            ours_full = collections.Counter(row_key(k.type, k.params) + (k.impl, tuple(k.linked)) for k in lm.rows)
            theirs = collections.Counter(row_key(r.kernel, r.params) for r in drows)
            theirs_full = collections.Counter(row_key(r.kernel, r.params) + (r.impl, tuple(r.linked)) for r in drows)
            ok = sum((ours & theirs).values())
            nopad = lambda key: tuple(x for x in key if not (isinstance(x, tuple) and x[0] == "Input_shape"))
            nopad_matched += sum((collections.Counter(nopad(k) for k in ours.elements())
                                  & collections.Counter(nopad(k) for k in theirs.elements())).values())
            total += len(drows); matched += ok; m_tot += len(drows); m_ok += ok
            full_total += len(drows); full_matched += sum((ours_full & theirs_full).values())
            if dev == "s10" and ok < len(drows) and shown < show:
                shown += 1
                print(f"== {model} ({ok}/{len(drows)}; ours {len(lm.rows)})")
                for k in sorted(theirs - ours):
                    print("   data only:", k)
                for k in sorted(ours - theirs):
                    print("   ours only:", k)
        per_model[model] = round(m_ok / max(m_tot, 1), 4)
    return {"rows": total, "matched": matched, "share": round(matched / max(total, 1), 4),
            "share_with_kernel_and_links": round(full_matched / max(full_total, 1), 4),
            "share_ignoring_input_padding": round(nopad_matched / max(total, 1), 4),
            "models": len(per_model), "per_model": per_model}
