"""Few-shot calibration of a device profile to a new phone from a few end-to-end measurements.

The base profile's per-op knowledge (which kernels cost what, relative to each other)
transfers; the new phone differs mostly in speed per kernel family. Candidate
corrections, chosen per calibration by leave-one-out error on the measurements:

- ``scale``: one factor on every kernel and on the fixed cost;
- ``scale+fixed``: one factor on the kernels plus a new fixed per-inference cost;
- ``per-key`` / ``per-key-smooth``: a factor per kernel family, shrunk (weakly /
  strongly) towards the global factor so ten measurements cannot overfit, plus a fixed
  cost.

The result is an ordinary profile: factors are written into the regressors' baseline
intercepts (``log`` factor) and the end-to-end term, so per-op and end-to-end
predictions stay consistent.

- ``blend``: the new phone as a non-negative weighted sum of the base and the other
  shipped profiles that lower models the same way (other phones and core sets), plus a
  fixed cost (:class:`~oplat.profile.BlendProfile`). Ten measurements pin down a few
  weights far better than ten per-family factors: what one phone's kernels cost
  relative to each other is mostly a mix of what other phones' cost. Chosen whenever
  such a library exists (the per-base methods need more measurements to compete).

Which models are measured matters as much: :func:`suggest_models` picks them before
anything is measured (``oplat suggest``), a D-optimal design over what the library
predicts for each candidate.
"""

from __future__ import annotations

import copy
import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .errors import OplatError
from .fitting import nnls, relative_nnls
from .outputs import (MAX_CSV_BYTES, MAX_MODEL_BYTES, OutputError, atomic_write_text, check_output_file,
                      check_output_folder, read_text_input, regular_input)
from .profile import BlendProfile, Profile, list_profiles, load_profile

METHODS = ("scale", "scale+fixed", "per-key", "per-key-smooth", "blend")
SHRINK = {"per-key": 3e-3, "per-key-smooth": 3e-2}
BLEND_RIDGE = 1e-2
# the default calibration leaves the blend only for a per-base method with under half its
# leave-one-out error (auto_method)
AUTO_MARGIN = 0.5
# measurement design of suggest_models: chosen on the int8 core sets (bench/calibrate_transfer.py
# --precision quant), reported on fp32
SUGGEST_COMPONENTS = 4
SUGGEST_RIDGE = 0.1


class CalibrationError(OplatError):
    """Bad measurements or an output folder that would be overwritten."""


@dataclass
class Measurement:
    """One measured model: its ONNX path and end-to-end milliseconds."""

    model: Path
    latency_ms: float


def measured_model_path(csv_path: Path, name: str) -> Path:
    """A measurements CSV's model path: absolute, or relative to the CSV's folder."""
    model = Path(name)
    return model if model.is_absolute() else csv_path.parent / model


def measure_record_path(csv_path: Path) -> Path:
    """Where ``android-harness measure`` records the phone and settings of a CSV it fills."""
    return csv_path.with_name(csv_path.name + ".phone.json")


def read_measurements(path: str | Path) -> list[Measurement]:
    """Parse a ``model,latency_ms`` CSV; model paths are absolute or relative to the CSV."""
    path = Path(path)
    text = read_text_input(path, "measurements", MAX_CSV_BYTES)
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or not {"model", "latency_ms"} <= set(reader.fieldnames):
        raise CalibrationError(f"{path}: needs the columns model,latency_ms (got {reader.fieldnames})")
    out = []
    for i, row in enumerate(reader, start=2):  # line 1 is the header
        name = (row.get("model") or "").strip()
        raw = (row.get("latency_ms") or "").strip()
        if not name:
            raise CalibrationError(f"{path}:{i}: empty model path")
        try:
            ms = float(raw)
        except ValueError:
            raise CalibrationError(f"{path}:{i}: latency_ms {raw!r} is not a number") from None
        if not math.isfinite(ms) or ms <= 0:
            raise CalibrationError(f"{path}:{i}: latency_ms {raw!r} must be a positive number")
        model = measured_model_path(path, name)
        try:
            regular_input(model, "model file", MAX_MODEL_BYTES)
        except OutputError as e:
            raise CalibrationError(f"{path}:{i}: {e}") from None
        out.append(Measurement(model, ms))
    if len(out) < 3:
        raise CalibrationError(f"{path}: {len(out)} measurement rows; calibration needs at least 3")
    return out


def per_key_design(prof: Profile, graphs: Sequence[Any]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Per-key predicted sums, the rest of the end-to-end prediction and the totals."""
    res = prof.predict_many(graphs)
    keys = sorted({k for r in res for k in r.key_sums})
    sums = np.array([[r.key_sums.get(k, 0.0) for k in keys] for r in res]).reshape(len(res), len(keys))
    total = np.array([r.total_ms for r in res])
    rest = total - sums.sum(axis=1)  # fixed cost, dispatch and glue terms of the end-to-end model
    return keys, sums, rest, total


def fit_method(method: str, sums: np.ndarray, rest: np.ndarray, y: np.ndarray, shrink: float | None = None
               ) -> tuple[np.ndarray, float, float]:
    """(per-key factors, factor on the rest, new fixed ms) minimising relative error."""
    ops = sums.sum(axis=1)
    w = 1.0 / y
    if method == "scale":
        s = float(np.sum(w * w * y * (ops + rest)) / max(np.sum((w * (ops + rest)) ** 2), 1e-12))
        return np.full(sums.shape[1], s), s, 0.0
    if method == "scale+fixed":
        a = np.stack([ops + rest, np.ones_like(y)], axis=1) * w[:, None]
        s, c = nnls(a, np.ones_like(y))
        return np.full(sums.shape[1], s), s, float(c)
    # per-key: factors shrunk towards the global scale
    shrink = SHRINK.get(method, 0.1) if shrink is None else shrink
    s0, _, _ = fit_method("scale", sums, rest, y)
    s0 = s0[0] if len(s0) else 1.0
    # penalty in factor units: a family the measurements barely exercise keeps the
    # global factor instead of soaking up noise
    a = np.hstack([sums, rest[:, None], np.ones((len(y), 1))]) * w[:, None]
    k = sums.shape[1]
    lam = np.full(k + 2, math.sqrt(shrink))
    lam[-1] = 0.0
    prior = np.concatenate([np.full(k + 1, s0), [0.0]])
    coef = nnls(np.vstack([a, np.diag(lam)]), np.concatenate([np.ones_like(y), lam * prior]))
    return coef[:k], float(coef[k]), float(coef[k + 1])


def apply_fit(sums: np.ndarray, rest: np.ndarray, fit: tuple[np.ndarray, float, float]) -> np.ndarray:
    """End-to-end milliseconds of models (per-key sums, rest of the prediction) under a
    :func:`fit_method` result."""
    f, r, c = fit
    return sums @ f + r * rest + c


def loo_errors(method: str, sums: np.ndarray, rest: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Leave-one-out relative errors of one method on the measurements."""
    n = len(y)
    err = np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        fit = fit_method(method, sums[keep], rest[keep], y[keep])
        err[i] = abs(apply_fit(sums[i:i + 1], rest[i:i + 1], fit)[0] - y[i]) / y[i]
    return err


def choose_method(sums: np.ndarray, rest: np.ndarray, y: np.ndarray, method: str | None = None
                  ) -> tuple[str, dict[str, float], dict[str, np.ndarray]]:
    """The per-base method (``method`` when given) with the lowest leave-one-out error on
    the measurements; also every method's mean error and its per-measurement errors."""
    scores, errors = {}, {}
    for m in [x for x in METHODS if x != "blend"] if method is None else (method,):
        if m.startswith("per-key") and len(y) < 5:
            continue
        if len(y) >= 3:
            errors[m] = loo_errors(m, sums, rest, y)
        scores[m] = float(np.mean(errors[m])) if m in errors else float("nan")
    return method or min(scores, key=scores.get), scores, errors


def auto_method(blend_loo_mape: float | None, scores: Mapping[str, float], margin: float = AUTO_MARGIN) -> str:
    """The calibration ``oplat calibrate`` makes by default: the blend (when a library can
    join the base), unless the best of the base's own methods (``scores``: leave-one-out
    MAPE on the measurements, :func:`choose_method`) has under ``margin`` times the blend's
    leave-one-out error. Ten measurements make leave-one-out noisy, and across phones the
    blend is the better bet (bench/results/calibrate_transfer.json); within a search
    space, where what differs is the kernel families' relative costs, the per-family
    factors are far ahead (bench/results/nas_calibration.json)."""
    valid = {m: v for m, v in scores.items() if v == v}
    best = min(valid, key=valid.get) if valid else None
    if blend_loo_mape is not None and (best is None or valid[best] >= margin * blend_loo_mape):
        return "blend"
    return best or "scale"


def _as_new_phone(meta: dict[str, Any], errors: np.ndarray, base_id: str) -> None:
    """Metadata of a calibrated profile: not the base's phone any more, and its accuracy
    is the leave-one-out error on the calibration measurements (not the base's)."""
    for k in ("soc", "gpu"):
        meta.pop(k, None)
    meta["device"] = "calibrated"
    meta["phone"] = f"calibrated from {base_id}"
    meta["accuracy"] = {"method": "leave-one-out over the calibration measurements",
                        "end_to_end": {"n": int(len(errors)), "mape": float(np.mean(errors)),
                                       "within_10": float(np.mean(errors <= 0.10)),
                                       "within_5": float(np.mean(errors <= 0.05))}}


def blend_library(base: Profile, exclude_devices: Sequence[str] = ()) -> list[Profile]:
    """``base`` and every listed profile that can join it in a blend: same lowering,
    processor, precision and model family, an end-to-end term that is the kernel sum plus
    a fixed cost, and a device not in ``exclude_devices``."""
    def sig(meta: Mapping[str, Any]) -> tuple:
        return (meta.get("lowering"), meta.get("processor"), meta.get("precision"), meta.get("model_family"),
                (meta.get("overhead") or {}).get("method"), meta.get("framework"))

    if "blend" in base.meta or sig(base.meta)[4] != "e2e-decomposition":
        return [base]
    out, skip = [base], set(exclude_devices)
    for pid, folder in list_profiles():
        if pid == base.id or pid.split("/")[0] in skip:
            continue
        try:
            meta = json.loads((folder / "profile.json").read_text())
        except (OSError, ValueError):
            continue
        if "blend" not in meta and sig(meta) == sig(base.meta):
            out.append(load_profile(folder))
    return out


def blend_weights(x: np.ndarray, y: np.ndarray, ridge: float = BLEND_RIDGE) -> np.ndarray:
    """Non-negative member weights and a fixed cost (last) fitted to measurements ``y``
    from the members' predictions ``x`` (models x members), minimising relative error;
    a small ridge on the column-scaled weights spreads them over similar members."""
    ridges = np.full(x.shape[1] + 1, ridge)
    ridges[-1] = 0.0  # the fixed cost is not shrunk
    return relative_nnls(np.hstack([x, np.ones((len(y), 1))]), y, ridges)


def blend_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`blend_weights` and their leave-one-out relative errors on the measurements."""
    coef = blend_weights(x, y)
    loo = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        c = blend_weights(x[keep], y[keep])
        loo[i] = abs(x[i] @ c[:-1] + c[-1] - y[i]) / y[i]
    return coef, loo


def member_predictions(library: Sequence[Profile], graphs: Sequence[Any],
                       progress: Callable[[str], None] | None = None) -> np.ndarray:
    """End-to-end milliseconds of each graph (rows) by each library profile (columns);
    ``progress`` is called with each profile's id once it has predicted."""
    from .lowering import LoweredModel

    # members lower models the same way (blend_library): lower once for all of them
    lowered = [g if isinstance(g, LoweredModel) else library[0].lower(g) for g in graphs]
    cols = []
    for p in library:
        cols.append([r.total_ms for r in p.predict_many(lowered)])
        if progress:
            progress(p.id)
    return np.stack(cols, axis=1)


def calibrate_blend(library: Sequence[Profile], graphs: Sequence[Any], measured_ms: Sequence[float]
                    ) -> tuple[BlendProfile, dict[str, Any]]:
    """A :class:`BlendProfile` of ``library`` (the first is the base) fitted to the measurements."""
    y = np.asarray(measured_ms, dtype=float)
    x = member_predictions(library, graphs)
    coef, loo = blend_fit(x, y)
    used = [(p, float(w)) for p, w in zip(library, coef[:-1]) if w > 1e-9]
    base = library[0]
    fixed = float(coef[-1]) + sum(w * float((p.meta.get("overhead") or {}).get("fixed_ms", 0.0)) for p, w in used)
    meta = {k: copy.deepcopy(v) for k, v in base.meta.items()
            if k not in ("models", "accuracy", "decomposition", "baseline", "training", "blend", "calibration")}
    ov = copy.deepcopy(base.meta.get("overhead") or {})
    feats = ov.get("features", [])
    ov["coef"] = [1.0 if f.startswith("sum_ms:") else fixed if f == "const_ms" else 0.0 for f in feats]
    ov["fixed_ms"] = fixed
    meta["overhead"] = ov
    meta["blend"] = {"const_ms": float(coef[-1])}
    report = {"base": base.id, "method": "blend", "loo_mape": {"blend": float(loo.mean())}, "measurements": len(y),
              "members": {p.id: w for p, w in used}, "library": len(library), "fixed_ms": fixed,
              "base_mape": float(np.mean(np.abs(x[:, 0] - y) / y))}
    meta["calibration"] = report
    _as_new_phone(meta, loo, base.id)
    if not used:  # every weight zero: the fixed cost alone; keep the base so kernels still have regressors
        used = [(base, 0.0)]
    return BlendProfile(meta, [p for p, _ in used], [w for _, w in used]), report


def calibrate_profile(base: Profile, graphs: Sequence[Any], measured_ms: Sequence[float],
                      method: str | None = None, library: Sequence[Profile] | None = None
                      ) -> tuple[Profile, dict[str, Any]]:
    """A new profile: ``base`` corrected to the measurements.

    ``method`` None: of ``blend`` (when ``library``, the profiles to blend with the base,
    :func:`blend_library`, holds another profile and there are 5 or more measurements)
    and the per-base methods, the one with the lowest leave-one-out error
    (:func:`auto_method`).
    """
    if isinstance(base, BlendProfile):
        raise CalibrationError(f"{base.id} is itself a calibrated blend; calibrate from one of its members "
                               f"({', '.join(m.id for m in base.members)})")
    y = np.asarray(measured_ms, dtype=float)
    others = [p for p in (library or []) if p is not base and p.id != base.id]
    if method == "blend":
        return calibrate_blend([base] + others, graphs, y)
    keys, sums, rest, total = per_key_design(base, graphs)
    chosen, scores, errors = choose_method(sums, rest, y, method)
    if method is None and others and len(y) >= 5:
        # the blend against the base's own methods, by leave-one-out error: across phones
        # on ImageNet CNNs the blend wins (bench/results/calibrate_transfer.json); within a
        # search space, where the kernel families' relative costs are what differs, a
        # factor per family does (bench/results/nas_calibration.json)
        blended, report = calibrate_blend([base] + others, graphs, y)
        if auto_method(report["loo_mape"]["blend"], scores) == "blend":
            report["loo_mape"].update(scores)
            return blended, report
        scores = {**scores, "blend": report["loo_mape"]["blend"]}
    factors, rest_factor, fixed = fit_method(chosen, sums, rest, y)
    meta = copy.deepcopy(base.meta)
    # kernel families absent from the measured models take the global factor
    default = rest_factor if chosen.startswith("per-key") else float(factors[0]) if len(factors) else rest_factor
    per_key = dict(zip(keys, factors))
    for key in meta.get("baseline", {}):
        f = per_key.get(key, default)
        if f > 0:
            meta["baseline"][key][-1] += math.log(f)
    ov = meta.get("overhead") or {}
    coef = ov.get("coef")
    if coef:
        feats = ov.get("features", [])
        ov["coef"] = [c if name.startswith("sum_ms:") else c * rest_factor for name, c in zip(feats, coef)]
        if "const_ms" in feats:
            ov["coef"][feats.index("const_ms")] += fixed
        if "fixed_ms" in ov:
            ov["fixed_ms"] = ov["fixed_ms"] * rest_factor + fixed
    report = {"base": base.id, "method": chosen, "loo_mape": scores, "measurements": len(y),
              "factors": {k: float(f) for k, f in zip(keys, factors)}, "rest_factor": rest_factor,
              "fixed_ms": fixed,
              "base_mape": float(np.mean(np.abs(total - y) / y))}
    meta["calibration"] = report
    if len(y) >= 3:  # a per-key method asked for with 3-4 measurements was not scored above
        _as_new_phone(meta, errors[chosen] if chosen in errors else loo_errors(chosen, sums, rest, y), base.id)
    boosters = {k: b for k, b in base.boosters.items()}
    return Profile(meta, boosters), report


def choose_base(graphs: Sequence[Any], measured_ms: Sequence[float],
                candidates: Sequence[str] | None = None,
                progress: Callable[[str], None] | None = None) -> tuple[str, dict[str, float]]:
    """The shipped profile whose calibrated leave-one-out error on the measurements is lowest."""
    y = np.asarray(measured_ms, dtype=float)
    ids = list(candidates) if candidates is not None else [pid for pid, _ in list_profiles()]
    scores = {}
    for pid in ids:
        prof = load_profile(pid)
        _, sums, rest, _ = per_key_design(prof, graphs)
        scores[pid] = min(float(np.mean(loo_errors(m, sums, rest, y))) for m in ("scale", "scale+fixed"))
        if progress:
            progress(pid)
    return min(scores, key=scores.get), scores


def design_points(x: np.ndarray, k: int, components: int = SUGGEST_COMPONENTS,
                  ridge: float = SUGGEST_RIDGE) -> list[int]:
    """Indices of ``k`` rows of ``x`` (candidate models x library members' predictions)
    chosen greedily for a D-optimal design.

    Each model is described the way the blend fit sees it: its members' predictions
    relative to their mean (the fit minimises relative error) and the inverse of that mean
    (the fixed-cost column), reduced to the ``components`` leading principal directions
    across the candidates plus a constant. Each step adds the model that most increases
    the determinant of the design's information matrix (``ridge`` on the diagonal), i.e.
    the one the models chosen so far say least about: the architectures where the
    library's phones disagree most, which random draws often miss (grouped convolutions
    scale with threads unlike dense ones; element-wise work tracks memory bandwidth).
    """
    x = np.asarray(x, dtype=float)
    mean = x.mean(axis=1, keepdims=True)
    rel = np.hstack([x / mean, 1.0 / mean])
    u, sv, _ = np.linalg.svd(rel - rel.mean(axis=0), full_matrices=False)
    c = min(components, len(sv))
    z = np.hstack([u[:, :c] * sv[:c], np.ones((len(x), 1))])
    info = ridge * np.eye(z.shape[1])
    chosen: list[int] = []
    for _ in range(min(k, len(x))):
        inv = np.linalg.inv(info)
        gain = np.einsum("ij,jk,ik->i", z, inv, z)
        gain[chosen] = -np.inf
        i = int(np.argmax(gain))
        chosen.append(i)
        info += np.outer(z[i], z[i])
    return chosen


def suggest_models(library: Sequence[Profile], graphs: Mapping[str, Any], k: int = 10,
                   progress: Callable[[str], None] | None = None, max_ms: float | None = None) -> list[str]:
    """The ``k`` of ``graphs`` (name -> graph) most worth measuring on a new phone to
    calibrate a blend of ``library`` (see :func:`blend_library` and :func:`design_points`),
    best first. ``max_ms``: leave out candidates the base (``library[0]``) predicts slower
    (a benchmark of 50 runs of a 900-GFLOP ViT takes minutes on a phone).
    ``progress``: as for :func:`member_predictions`."""
    names = sorted(graphs)
    if k > len(names):
        raise CalibrationError(f"{k} models asked for, {len(names)} candidates given")
    x = member_predictions(library, [graphs[n] for n in names], progress)
    keep = np.flatnonzero(x[:, 0] <= max_ms) if max_ms is not None else np.arange(len(names))
    if k > len(keep):
        raise CalibrationError(f"{k} models asked for, {len(keep)} candidates predicted under {max_ms:g} ms "
                               f"on {library[0].id}")
    return [names[keep[i]] for i in design_points(x[keep], k)]


def write_template(models: Sequence[str | Path], path: str | Path, force: bool = False) -> tuple[Path, int]:
    """A ``model,latency_ms`` CSV with the latencies left to fill in; model paths are
    written relative to the CSV's folder when they lie below it. An existing CSV is only
    changed with ``force``, and then merged: every latency already measured in it is kept
    (for the suggested models and, appended, for the others). Returns the path and how
    many measured latencies were kept."""
    path = Path(path)
    check_output_file(path, force, "measurements CSV", _is_measurements_csv)
    kept: dict[str, str] = {}
    order: list[str] = []
    if path.exists():
        reader = csv.DictReader(read_text_input(path, "measurements", MAX_CSV_BYTES).splitlines())
        for row in reader:
            name = (row.get("model") or "").strip()
            if name:
                order.append(name)
                if (row.get("latency_ms") or "").strip():
                    kept[name] = row["latency_ms"].strip()
    lines = ["model,latency_ms"]
    written = set()
    for m in models:
        m = Path(m).absolute()  # not resolved: a symlinked model keeps the name it was given
        try:
            m = m.relative_to(path.parent.absolute())
        except ValueError:
            pass
        lines.append(f"{m},{kept.get(str(m), '')}")
        written.add(str(m))
    lines += [f"{name},{kept[name]}" for name in order if name in kept and name not in written]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path, len(kept)


def _is_measurements_csv(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.readline()
    except OSError:
        return False
    return head.strip().replace(" ", "").startswith("model,latency_ms")


def refuse_overwrite(out: str | Path, force: bool = False, inputs: Sequence[str | Path] = ()) -> Path:
    """``out`` if a profile may be written there (:func:`oplat.outputs.check_output_folder`):
    a new or empty folder, or with ``force`` one that holds a profile."""
    return check_output_folder(out, force, inputs=inputs)


def write_profile(prof: Profile, out: str | Path, force: bool = False, inputs: Sequence[str | Path] = ()) -> Path:
    """Save a calibrated profile; an existing profile is only replaced with ``force``, and
    nothing but a profile ever is."""
    out = refuse_overwrite(out, force, inputs)
    name = out.name
    prof.meta["id"] = f"{out.parent.name}/{name}" if out.parent.name else name
    return prof.save(out)


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    def ranks(x):
        x = np.asarray(x, dtype=float)
        order = np.argsort(x, kind="mergesort")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=float)
        for v in np.unique(x):
            idx = x == v
            if idx.sum() > 1:
                r[idx] = r[idx].mean()
        return r
    ra, rb = ranks(a), ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    d = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / d if d else 0.0


def setting_mismatches(csv_path: Path, meta: dict) -> list[str]:
    """How the run recorded beside a measurements CSV (``android-harness measure``'s
    ``<csv>.phone.json``) differs from what the base profile models: thread count, GPU or CPU."""
    sidecar = measure_record_path(csv_path)
    if not sidecar.is_file():
        return []
    try:
        run = json.loads(sidecar.read_text())
    except ValueError:
        return [f"{sidecar} is not JSON; the measurement settings were not checked"]
    out = []
    if bool(run.get("gpu")) != (meta.get("processor") == "gpu"):
        where = "the GPU" if run.get("gpu") else "the CPU"
        out.append(f"{csv_path.name} was measured on {where}; {meta.get('id')} models the {meta.get('processor')}")
    elif not run.get("gpu") and meta.get("threads") and run.get("threads") != meta.get("threads"):
        out.append(f"{csv_path.name} was measured with {run.get('threads')} thread(s); {meta.get('id')} models "
                   f"{meta.get('threads')} (a base of the same thread count transfers best)")
    return out


__all__ = ["Measurement", "read_measurements", "measured_model_path", "measure_record_path", "calibrate_profile",
           "calibrate_blend", "blend_library", "choose_base",
           "blend_fit", "blend_weights", "member_predictions", "choose_method", "fit_method", "apply_fit", "auto_method",
           "per_key_design", "loo_errors",
           "design_points", "suggest_models", "write_template",
           "write_profile", "refuse_overwrite", "spearman", "setting_mismatches", "CalibrationError", "METHODS"]
