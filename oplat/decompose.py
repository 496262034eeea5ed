"""Per-op latency models learned from end-to-end measurements only.

Phones' CPU data has no per-op rows: only whole-model latencies per core set. A
model's latency is the sum of its kernels' latencies plus a fixed per-inference cost,
so per-kernel models are fitted for the sums to match:

1. a constrained linear model: each kernel costs ``a_k * FLOPs + b_k * bytes + c_k``
   for its regressor key ``k`` (XNNPACK microkernel family), all coefficients
   non-negative, fitted by NNLS on the relative error of the sums; FLOPs of GEMM-like
   kernels count output channels padded to the microkernel's 8-wide tiles (optionally
   shrunk towards one cost per kernel family when few models are measured);
2. back-fitting: each training model's measured total (less the fixed cost) is
   redistributed over its kernels in proportion to the current per-kernel estimates,
   and one XGBoost regressor per key (on log latency, over a log-linear FLOPs/bytes
   baseline, the same form as profiles trained on per-op rows) is fitted to those
   targets (``iterations`` rounds of this; one was the most accurate held out);
3. a final scale and fixed cost so the per-kernel sums match the measurements.

The result is an ordinary :class:`~oplat.profile.Profile` (boosters + baseline per key,
end-to-end term = fixed cost), so prediction, the co-execution planner and
calibration treat it like any other profile.
"""

from __future__ import annotations

import collections
import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import xgboost as xgb

from .features import EXTRA_KEYS, KEYS, baseline_matrix, feature_matrix, predictor_key, work_terms
from .ir import Graph
from .lowering import LoweredModel, lower
from .fitting import error_metrics, fit_baseline, fit_linear, group_folds, nnls, relative_nnls
from .overhead import OVERHEAD_FEATURES
from .profile import Profile

DECOMP_KEYS = KEYS + EXTRA_KEYS
E2E_XGB_PARAMS = {"objective": "reg:squarederror", "eta": 0.1, "max_depth": 3, "subsample": 0.8,
                  "min_child_weight": 3, "reg_lambda": 5.0, "tree_method": "hist", "nthread": 2,
                  "seed": 0, "verbosity": 0}
E2E_XGB_ROUNDS = 40
_GEMM_KEYS = ("CONV_2D", "CONV_2D_GROUP", "CONV_1x1", "CONV_STEM", "FULLY_CONNECTED")


def kernel_work(key: str, kernel: str, params: Mapping[str, Any], bytes_per_elem: float = 4.0) -> tuple[float, float]:
    """(GFLOPs, MB moved) of one kernel as the linear model sees it (padded output channels)."""
    flops, traffic = work_terms(key, kernel, dict(params))
    if key in _GEMM_KEYS:
        co = float(params.get("Filter", 1) or 1)
        flops *= math.ceil(co / 8) * 8 / co
    return flops / 1e9, traffic * bytes_per_elem / 2.0 / 1e6  # work_terms counts fp16 bytes


class KernelTable:
    """The kernels of one lowered model grouped by regressor key, with their work terms."""

    def __init__(self, lm: LoweredModel, bytes_per_elem: float = 4.0) -> None:
        self.name = lm.name
        self.items: dict[str, list[tuple[str, str, dict[str, Any], list[str]]]] = collections.defaultdict(list)
        work: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
        for k in lm.kernels:
            key = predictor_key(k.type, k.impl)
            if key is None:
                continue  # reshapes are free (metadata only)
            self.items[key].append((k.type, k.impl, k.params, k.linked))
            work[key].append(kernel_work(key, k.type, k.params, bytes_per_elem))
        self.work = {key: np.asarray(v, dtype=float).reshape(-1, 2) for key, v in work.items()}
        # regressor inputs, computed once: back-fitting revisits every table many times
        self.x = {key: feature_matrix(key, items) for key, items in self.items.items()}
        self.xb = {key: baseline_matrix(key, items) for key, items in self.items.items()}

    def linear_row(self, keys: Sequence[str]) -> np.ndarray:
        """Per-key sums of (GFLOPs, MB, count) and a 1 for the fixed cost."""
        v = np.zeros(3 * len(keys) + 1)
        for i, key in enumerate(keys):
            w = self.work.get(key)
            if w is not None:
                v[3 * i:3 * i + 3] = (w[:, 0].sum(), w[:, 1].sum(), len(w))
        v[-1] = 1.0
        return v


# Kernel families that cost alike per FLOP and per byte: GEMM microkernels, depthwise
# convolutions, and memory-bound kernels (element-wise, layout, reductions).
KEY_GROUPS = {
    "gemm": ("CONV_2D", "CONV_2D_GROUP", "CONV_1x1", "CONV_STEM", "FULLY_CONNECTED", "FC_TOKENS", "BATCH_MATMUL"),
    "depthwise": ("DEPTHWISE_CONV_2D", "DW_S2"),
    "memory": ("MEAN", "POOL_2D", "CONCATENATION", "SOFTMAX", "LAYER_NORM", "TRANSPOSE", "ADD", "MUL",
               "ELTWISE", "LAYOUT"),
}


def key_group(key: str) -> str:
    """The :data:`KEY_GROUPS` family of a regressor key (unknown keys are memory-bound)."""
    return next((g for g, ks in KEY_GROUPS.items() if key in ks), "memory")


def fit_linear_shrunk(rows: np.ndarray, measured: np.ndarray, keys: Sequence[str], shrink: float,
                      ridge: float = 1e-4) -> np.ndarray:
    """:func:`fit_linear` with each key's coefficients pulled towards its family's.

    First one (FLOPs, bytes, count) cost per :data:`KEY_GROUPS` family, then per-key
    costs with a ridge of strength ``shrink`` towards the family's (in the column-scaled
    units of the relative fit). With few measured models (16 ViTs against 18 keys x 3
    coefficients) the unshrunk fit gives a key only one architecture uses the whole
    architecture's residual (MobileViT's one MEAN took 45 ms on pixel4).
    """
    groups = list(KEY_GROUPS)
    tie = np.zeros((rows.shape[1], 3 * len(groups) + 1))
    for i, key in enumerate(keys):
        g = groups.index(key_group(key))
        tie[3 * i:3 * i + 3, 3 * g:3 * g + 3] = np.eye(3)
    tie[-1, -1] = 1.0
    prior = tie @ fit_linear(rows @ tie, measured, ridge)
    return relative_nnls(rows, measured, shrink, prior)


class E2EDecomposer:
    """Fit per-kernel regressors whose sums reproduce end-to-end latencies.

    ``fit(tables, measured_ms)`` then ``to_profile(meta)``; ``predict_totals(tables)``
    gives the end-to-end predictions of the fitted model. ``shrink`` (None: off) pulls
    the linear stage's per-key costs towards their kernel family's
    (:func:`fit_linear_shrunk`), for training sets with few models.
    """

    def __init__(self, iterations: int = 1, rounds: int = E2E_XGB_ROUNDS,
                 params: Mapping[str, Any] | None = None, shrink: float | None = None) -> None:
        self.iterations = iterations
        self.shrink = shrink
        self.rounds = rounds
        self.params = dict(params or E2E_XGB_PARAMS)
        self.keys: list[str] = []
        self.boosters: dict[str, xgb.Booster] = {}
        self.baseline: dict[str, list[float]] = {}
        self.fixed_ms = 0.0
        self.linear: np.ndarray | None = None

    def _linear_estimates(self, t: KernelTable) -> dict[str, np.ndarray]:
        out = {}
        for key, w in t.work.items():
            i = self.keys.index(key)
            a, b, c = self.linear[3 * i:3 * i + 3]
            out[key] = np.maximum(a * w[:, 0] + b * w[:, 1] + c, 1e-5)
        return out

    def fit(self, tables: Sequence[KernelTable], measured_ms: Sequence[float]) -> "E2EDecomposer":
        """Fit on models' kernel tables and their measured end-to-end milliseconds."""

        y = np.asarray(measured_ms, dtype=float)
        if len(tables) < 5:
            raise ValueError(f"need at least 5 measured models to decompose, got {len(tables)}")
        self.keys = [k for k in DECOMP_KEYS if any(k in t.work for t in tables)]
        rows = np.array([t.linear_row(self.keys) for t in tables])
        self.linear = (fit_linear(rows, y) if self.shrink is None
                       else fit_linear_shrunk(rows, y, self.keys, self.shrink))
        fixed = float(self.linear[-1])
        est = [self._linear_estimates(t) for t in tables]
        self.boosters, self.baseline = {}, {}
        for _ in range(self.iterations):
            by_key: dict[str, tuple[list, list, list]] = collections.defaultdict(lambda: ([], [], []))
            for t, e, m in zip(tables, est, y):
                total = sum(v.sum() for v in e.values())
                s = max(m - fixed, 0.05 * m) / max(total, 1e-9)
                for key, v in e.items():
                    by_key[key][0].append(t.x[key])
                    by_key[key][1].append(t.xb[key])
                    by_key[key][2].append(np.log(v * s))
            for key, (xs, xbs, targets) in by_key.items():
                yk, xb = np.concatenate(targets), np.vstack(xbs)
                coef = fit_baseline(xb, yk)
                self.baseline[key] = coef.tolist()
                self.boosters[key] = xgb.train(self.params, xgb.DMatrix(np.vstack(xs), label=yk,
                                                                       base_margin=xb @ coef), self.rounds)
            est = [self._predict_table(t) for t in tables]
        # final scale of every kernel and fixed cost: relative least squares on the sums
        sums = np.array([sum(v.sum() for v in e.values()) for e in est])
        a = np.stack([sums, np.ones_like(sums)], axis=1) / y[:, None]
        scale, fixed = nnls(a, np.ones_like(y))
        if scale > 0:
            for key in self.baseline:
                self.baseline[key][-1] += math.log(scale)
        self.fixed_ms = float(fixed)
        return self

    def _predict_table(self, t: KernelTable) -> dict[str, np.ndarray]:
        if not self.boosters:
            return self._linear_estimates(t)
        out = {}
        lin = None
        for key, items in t.items.items():
            b = self.boosters.get(key)
            if b is None:  # a kernel family no training model had: linear estimate
                lin = lin or self._linear_estimates(t)
                out[key] = lin.get(key, np.full(len(items), 1e-3))
                continue
            margin = t.xb[key] @ np.asarray(self.baseline[key])
            out[key] = np.exp(b.inplace_predict(t.x[key], base_margin=margin))
        return out

    def predict_totals(self, tables: Sequence[KernelTable]) -> np.ndarray:
        """End-to-end milliseconds of each model."""
        return np.array([sum(v.sum() for v in self._predict_table(t).values()) + self.fixed_ms for t in tables])

    def predict_key_sums(self, tables: Sequence[KernelTable]) -> list[dict[str, float]]:
        """Each model's predicted milliseconds per kernel family (the fixed cost not included)."""
        return [{k: float(v.sum()) for k, v in self._predict_table(t).items()} for t in tables]

    def to_profile(self, meta: Mapping[str, Any]) -> Profile:
        """A profile whose end-to-end term is the fixed cost (kernel sums pass through)."""
        coef = [0.0] * len(OVERHEAD_FEATURES)
        for i, name in enumerate(OVERHEAD_FEATURES):
            if name.startswith("sum_ms:"):
                coef[i] = 1.0
            elif name == "const_ms":
                coef[i] = self.fixed_ms
        boosters = dict(self.boosters)
        for b in boosters.values():
            b.set_param({"nthread": 1})
        m = dict(meta)
        m["baseline"] = {k: list(v) for k, v in self.baseline.items()}
        m["overhead"] = {"features": list(OVERHEAD_FEATURES), "coef": coef, "method": "e2e-decomposition",
                         "fixed_ms": self.fixed_ms, "glue_types_seen": None}
        m["decomposition"] = {"iterations": self.iterations, "rounds": self.rounds, "keys": self.keys,
                              "shrink": self.shrink,
                              "linear_coef": [float(x) for x in self.linear]}
        return Profile(m, boosters)


def kernel_tables(graphs: Mapping[str, Graph], backend: str = "tflite-cpu", bytes_per_elem: float = 4.0,
                  cache: dict | None = None, variant: str = "adreno") -> dict[str, KernelTable]:
    """Lower every graph for ``backend`` (and ``variant``, for GPU lowerings) and tabulate
    its kernels (memoised in ``cache``)."""
    out = {}
    for name, g in graphs.items():
        key = (name, backend, bytes_per_elem, variant)
        if cache is not None and key in cache:
            out[name] = cache[key]
            continue
        out[name] = KernelTable(lower(g, backend, variant), bytes_per_elem)
        if cache is not None:
            cache[key] = out[name]
    return out


def cross_validate_e2e(tables: Mapping[str, KernelTable], measured: Mapping[str, float], folds: int = 10,
                       seed: int = 0, iterations: int = 1,
                       progress: Callable[[int], None] | None = None,
                       unreliable: Iterable[str] = (), shrink: float | None = None) -> dict[str, Any]:
    """Grouped K-fold over models: end-to-end predictions of held-out models.

    Models in ``unreliable`` (measurements flagged by
    :func:`oplat.datasets.inconsistent_e2e`) are never trained on and are still
    predicted: ``end_to_end`` scores the other models, ``end_to_end_all`` every model.
    """

    bad = set(unreliable)
    models = sorted(m for m in measured if m in tables)
    pred, true, names = [], [], []
    for k, held in enumerate(group_folds(models, folds, seed)):
        train = [m for m in models if m not in set(held) and m not in bad]
        d = E2EDecomposer(iterations, shrink=shrink).fit([tables[m] for m in train], [measured[m] for m in train])
        pred.extend(d.predict_totals([tables[m] for m in held]).tolist())
        true.extend(measured[m] for m in held)
        names.extend(held)
        if progress:
            progress(k)
    err = np.abs(np.array(pred) - np.array(true)) / np.array(true)
    keep = [i for i, n in enumerate(names) if n not in bad]
    worst = [(names[i], round(float(err[i]), 4)) for i in sorted(keep, key=lambda i: -err[i])[:5]]
    return {"end_to_end": error_metrics([pred[i] for i in keep], [true[i] for i in keep]),
            "end_to_end_all": error_metrics(pred, true), "worst_end_to_end": worst,
            "unreliable": {names[i]: round(float(pred[i] / true[i] - 1), 4) for i in range(len(names))
                           if names[i] in bad},
            "method": f"grouped {folds}-fold CV over models, seed {seed}", "_points": (pred, true, names)}
