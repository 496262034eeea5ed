"""The end-to-end term: what per-op rows do not contain.

End-to-end latency = sum of per-kernel predictions + overhead, where the overhead is a
non-negative linear model over graph-level features: a fixed cost per inference, a
dispatch cost per kernel, and the unfused element-wise and layout work (count and bytes)
that has no row of its own. A multiplicative term on the per-op sum absorbs a constant
bias of the per-op timing method (profiling adds or hides time per kernel).
Fitted by non-negative least squares on relative error.

The base feature vector (:data:`OVERHEAD_FEATURES`) has a factor per base kernel family
(:data:`~oplat.features.KEYS`). A profile may append factors for other kernel families
it predicts (``sum_ms:FC_TOKENS``, ``sum_ms:CONV_1x1``, ...: :func:`overhead_features`);
the families without one are added to the total at factor 1, outside the term.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from .features import KEYS, predictor_key
from .fitting import group_folds, index_folds, relative_nnls
from .lowering.kernels import LAYOUT, LoweredModel

SUM_FEATURES = tuple(f"sum_ms:{k}" for k in KEYS)
# the end-to-end terms a profile can be fitted with (fit_overhead arguments), and how
# many reweighting rounds the Huber fit takes
E2E_TERMS = {"l2": {}, "huber": {"loss": "huber"}, "signed": {"signed_counts": True}}
HUBER_ROUNDS = 30
COUNT_FEATURES = tuple(f"count:{k}" for k in KEYS)
OVERHEAD_FEATURES = SUM_FEATURES + ("const_ms",) + COUNT_FEATURES + (
    "glue_ops", "glue_mb", "layout_ops", "layout_mb", "rows_small")


def overhead_features(factored: Sequence[str] = (), layout_types: Sequence[str] | None = None) -> tuple[str, ...]:
    """Feature names of an end-to-end term with factors for the extra keys ``factored``.

    With ``layout_types`` the layout work is counted per kernel type (``layout_ops:SLICE``,
    ``layout_mb:SLICE``, ...) for those types instead of in one pair of columns: a copy and
    an interpolation cost differently per byte, and a type that no fitting model has gets
    no cost learned from another's.
    """
    base = OVERHEAD_FEATURES
    if layout_types is not None:
        base = tuple(n for n in base if n not in ("layout_ops", "layout_mb")) + tuple(
            f"layout_{what}:{t}" for t in layout_types for what in ("ops", "mb"))
    return base + tuple(f"sum_ms:{k}" for k in factored)


def factored_keys(features: Sequence[str]) -> tuple[str, ...]:
    """The extra kernel families a stored feature list carries a factor for."""
    return tuple(f[len("sum_ms:"):] for f in features if f.startswith("sum_ms:") and f not in SUM_FEATURES)


def layout_types_of(lowered: Iterable[LoweredModel]) -> list[str]:
    """The layout kernel types (reshapes aside, which move no data) in ``lowered``."""
    return sorted({k.type for lm in lowered for k in lm.glue if k.type in LAYOUT and k.type != "RESHAPE"})


def graph_features(lm: LoweredModel, key_sums: Mapping[str, float],
                   predicted_glue: Iterable[str] = (), factored: Sequence[str] = (),
                   names: Sequence[str] | None = None) -> list[float]:
    """The end-to-end model's inputs for one lowered model, in the order of ``names``
    (default: :func:`overhead_features` of ``factored``; a stored list names its own
    factored families, :func:`factored_keys`).

    ``key_sums`` holds the predicted per-op milliseconds summed per predictor key;
    glue kernel types in ``predicted_glue`` have their own regressor in the profile and
    are left out of the glue terms (their time is already predicted); factored extra
    keys get a sum feature of their own, after the base features.
    """
    names = overhead_features(factored) if names is None else names
    return tally_features(kernel_tallies(lm.kernels, predicted_glue), key_sums, names)


@dataclass
class KernelTallies:
    """The counts of a kernel list that the end-to-end term reads, all of them sums over
    kernels (so a network's tallies are the sum of its pieces', :meth:`add`): rows per
    predictor key, unfused glue and layout kernels with their elements moved (per layout
    type too), and rows with small outputs."""

    counts: dict[str, int] = field(default_factory=dict)
    glue_ops: int = 0
    glue_elems: int = 0
    layout: dict[str, list[int]] = field(default_factory=dict)  # type -> [kernels, elements]
    small: int = 0

    def add(self, other: "KernelTallies") -> None:
        for k, v in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        self.glue_ops += other.glue_ops
        self.glue_elems += other.glue_elems
        for t, (n, e) in other.layout.items():
            cur = self.layout.setdefault(t, [0, 0])
            cur[0] += n
            cur[1] += e
        self.small += other.small


def _elems(k) -> int:
    return k.params.get("Output_elements", 0) + k.params.get("Input_elements", 0)


def kernel_tallies(kernels: Sequence, predicted_glue: Iterable[str] = ()) -> KernelTallies:
    """:class:`KernelTallies` of ``kernels`` (glue types in ``predicted_glue`` have a
    regressor of their own and are left out of the glue terms)."""
    skip = set(predicted_glue)
    t = KernelTallies()
    for k in kernels:
        if k.is_row:
            key = predictor_key(k.type, k.impl)
            if key in KEYS:
                t.counts[key] = t.counts.get(key, 0) + 1
            if _out_elems(k) < 8192:
                t.small += 1
            continue
        if skip and predictor_key(k.type, k.impl) in skip:
            continue
        if k.type not in LAYOUT:
            t.glue_ops += 1
            t.glue_elems += _elems(k)
        elif k.type != "RESHAPE":
            cur = t.layout.setdefault(k.type, [0, 0])
            cur[0] += 1
            cur[1] += _elems(k)
    return t


def tally_features(t: KernelTallies, key_sums: Mapping[str, float], names: Sequence[str]) -> list[float]:
    """The end-to-end term's inputs, in the order of ``names``, from a model's tallies and
    its per-key predicted sums."""
    mb = 2.0 / 1e6  # fp16 bytes in MB
    layout_ops = sum(n for n, _ in t.layout.values())
    layout_elems = sum(e for _, e in t.layout.values())
    d = dict(zip(OVERHEAD_FEATURES, [float(key_sums.get(k, 0.0)) for k in KEYS] + [1.0]
                 + [float(t.counts.get(k, 0)) for k in KEYS]
                 + [float(t.glue_ops), t.glue_elems * mb, float(layout_ops), layout_elems * mb, float(t.small)]))
    for typ, (n, e) in t.layout.items():
        d[f"layout_ops:{typ}"], d[f"layout_mb:{typ}"] = float(n), e * mb
    d.update((f"sum_ms:{k}", float(key_sums.get(k, 0.0))) for k in factored_keys(names))
    return [d.get(n, 0.0) for n in names]


def _out_elems(k) -> float:
    p = k.params
    if k.type == "FULLY_CONNECTED":
        return float(p.get("Filter", 1))
    if k.type == "MEAN":
        return float(p.get("Input_channel", 1))
    if k.type == "BATCH_MATMUL":
        return float(p.get("Batch", 1)) * float(p.get("M", 1)) * float(p.get("N", 1))
    if k.type in ("SOFTMAX", "LAYER_NORM"):
        return float(p.get("Rows", 1)) * float(p.get("Cols", 1))
    ho = p.get("Output_shape", 1)
    return float(ho) * float(p.get("Output_w", ho)) * float(p.get("Filter", p.get("Input_channel", 1)))


def fit_overhead(features: Sequence[Sequence[float]], measured_ms: Sequence[float],
                 ridge: float = 1e-3, factor_ridge: float = 0.1, signed_counts: bool = False,
                 names: Sequence[str] = OVERHEAD_FEATURES, factor_units: str = "scaled",
                 loss: str = "l2", huber_delta: float = 0.05) -> np.ndarray:
    """Coefficients minimising relative squared error.

    Per-kernel-type sum factors are shrunk towards 1 (trust the per-op predictions
    unless the data says otherwise) and can never go negative, so a model with unusual
    kernel proportions cannot get a nonsensical total; the other terms are costs
    shrunk towards 0 and non-negative, except per-kernel counts with ``signed_counts``
    (per-op timings of single-kernel models that include a per-kernel cost the whole
    model does not pay, such as layout reorders around each op). One NNLS problem over
    column-scaled features. ``names`` labels the columns (:func:`overhead_features`).

    ``factor_units``: ``"scaled"`` penalises a factor's distance from 1 in column-scaled
    units, i.e. weighted by the largest share its kernel family has in any model, so a
    family that is a sliver of every fitting model is barely held; ``"raw"`` penalises
    ``factor_ridge * (factor - 1)^2`` alike for every family, so a family the fitting
    models hardly exercise keeps a factor near 1 (what a test model where it weighs more
    needs).

    ``loss``: ``"l2"`` (squared relative error) or ``"huber"``: squared up to
    ``huber_delta`` relative error and linear beyond (iteratively reweighted), so a few
    models whose measurements disagree with their siblings' do not pull the term.
    """
    if loss not in ("l2", "huber"):
        raise ValueError(f"loss must be 'l2' or 'huber', not {loss!r}")
    x = np.asarray(features, dtype=float)
    y = np.asarray(measured_ms, dtype=float)
    is_sum = np.array([n.startswith("sum_ms:") for n in names])
    counts = [list(names).index(c) for c in COUNT_FEATURES] if signed_counts else []
    cols = np.hstack([x, -x[:, counts]])
    ridges = np.full(cols.shape[1], ridge)
    ridges[:len(names)][is_sum] = factor_ridge
    if factor_units not in ("scaled", "raw"):
        raise ValueError(f"factor_units must be 'scaled' or 'raw', not {factor_units!r}")
    prior = np.zeros(cols.shape[1])
    prior[:len(names)][is_sum] = 1.0
    raw = np.zeros(cols.shape[1], dtype=bool)
    if factor_units == "raw":
        raw[:len(names)] = is_sum
    coef = relative_nnls(cols, y, ridges, prior, raw=raw)
    if loss == "huber":
        for _ in range(HUBER_ROUNDS):
            err = np.abs(cols @ coef - y) / y
            coef = relative_nnls(cols, y, ridges, prior, raw=raw,
                                 weights=np.where(err <= huber_delta, 1.0, huber_delta / np.maximum(err, 1e-12)))
    out = coef[:x.shape[1]].copy()
    out[counts] -= coef[x.shape[1]:]
    return out


def apply_overhead(coef: Sequence[float], features: Sequence[float],
                   names: Sequence[str] = OVERHEAD_FEATURES) -> tuple[float, float]:
    """(end-to-end ms, overhead ms = end-to-end minus the plain per-op sum) for one model."""
    f = np.asarray(features, dtype=float)
    c = np.asarray(coef, dtype=float)
    ops = float(sum(v for v, n in zip(f, names) if n.startswith("sum_ms:")))
    total = max(float(f @ c), 0.25 * ops)  # signed count terms can never erase the kernels' own time
    return total, total - ops


def choose_factor_ridge(features: Sequence[Sequence[float]], targets: Sequence[float],
                        measured_ms: Sequence[float], grid: Sequence[float], folds: int = 10,
                        seed: int = 0, **fit_kwargs) -> tuple[float, dict[str, float]]:
    """A factor ridge from ``grid`` by cross-validation, and each candidate's CV MAPE.

    K-fold over the fitting models (``folds`` groups, fixed seed): the term is fitted on
    the other folds and scored on the end-to-end total, ``measured_ms``, which exceeds
    ``targets`` by what prediction adds outside the term. The choice follows the
    one-standard-error rule: the strongest ridge whose CV MAPE is within one standard
    error of the least. The fitting models share few architectures with the models a
    profile will meet, and the weakest ridge fits their mix of kernel families, not
    what holds beyond it.
    """
    x = np.asarray(features, dtype=float)
    y = np.asarray(targets, dtype=float)
    m = np.asarray(measured_ms, dtype=float)
    outside = m - y
    groups = index_folds(len(y), folds, seed)
    names = fit_kwargs.get("names", OVERHEAD_FEATURES)
    table, errors = {}, {}
    for lam in grid:
        err = np.zeros(len(y))
        for held in groups:
            train = np.setdiff1d(np.arange(len(y)), held)
            coef = fit_overhead(x[train], y[train], factor_ridge=lam, **fit_kwargs)
            for i in held:
                err[i] = abs(apply_overhead(coef, x[i], names)[0] + outside[i] - m[i]) / m[i]
        table[str(lam)] = float(err.mean())
        errors[lam] = err
    least = min(grid, key=lambda lam: table[str(lam)])
    bound = table[str(least)] + float(np.std(errors[least], ddof=1) / np.sqrt(len(y)))
    return float(max(lam for lam in grid if table[str(lam)] <= bound)), table


def choose_e2e_term(features: Sequence[Sequence[float]], targets: Sequence[float],
                    measured_ms: Sequence[float], models: Sequence[str], candidates: Sequence[str],
                    folds: int = 10, seed: int = 7, **fit_kwargs) -> tuple[str, dict[str, float]]:
    """The end-to-end term (a name of :data:`E2E_TERMS`) with the least cross-validated
    MAPE over the fitting models, and each candidate's CV MAPE.

    K-fold over the fitting models (``models`` names them; groups of
    :func:`oplat.train.group_folds`, with its own seed): each candidate is fitted on the
    other folds and scored on the end-to-end total, ``measured_ms``.
    """

    x = np.asarray(features, dtype=float)
    y = np.asarray(targets, dtype=float)
    m = np.asarray(measured_ms, dtype=float)
    outside = m - y
    index = {n: i for i, n in enumerate(models)}
    groups = [[index[n] for n in g] for g in group_folds(models, folds, seed)]
    feature_names = fit_kwargs.get("names", OVERHEAD_FEATURES)
    table = {}
    for name in candidates:
        kw = dict(fit_kwargs, **E2E_TERMS[name])
        err = []
        for held in groups:
            train = np.setdiff1d(np.arange(len(y)), held)
            coef = fit_overhead(x[train], y[train], **kw)
            err += [abs(apply_overhead(coef, x[i], feature_names)[0] + outside[i] - m[i]) / m[i] for i in held]
        table[name] = float(np.mean(err))
    return min(candidates, key=lambda n: table[n]), table


def e2e_terms(spec: str | Sequence[str]) -> list[str]:
    """Names of :data:`E2E_TERMS` from ``"auto"`` (all of them), a comma list or a sequence;
    ``ValueError`` naming any unknown one."""
    terms = list(E2E_TERMS) if spec == "auto" else (
        [t.strip() for t in spec.split(",") if t.strip()] if isinstance(spec, str) else list(spec))
    unknown = [t for t in terms if t not in E2E_TERMS]
    if unknown or not terms:
        raise ValueError(f"unknown end-to-end term {','.join(unknown) or spec!r} "
                         f"(known: auto, {', '.join(E2E_TERMS)})")
    return terms
