"""Device profiles: per-kernel XGBoost regressors + an end-to-end term, stored as data.

A profile folder holds ``profile.json`` (metadata, overhead coefficients, accuracy,
provenance) and one ``<KEY>.ubj`` XGBoost model per predictor key. No pickle.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import xgboost as xgb

from .errors import ProfileError
from .features import EXTRA_KEYS, FEATURE_SCHEMA_VERSION, GLUE_KEYS, features_and_baseline, predictor_key
from .ir import Graph
from .lowering import LoweredModel, lower
from .overhead import OVERHEAD_FEATURES, apply_overhead, factored_keys, graph_features

PROFILE_FORMAT = 1
SHIPPED = Path(__file__).resolve().parents[1] / "device_profiles"


def profile_dirs() -> list[Path]:
    """Folders searched for profile ids: $OPLAT_PROFILES (os.pathsep-separated), then the shipped ones."""
    extra = [Path(p) for p in os.environ.get("OPLAT_PROFILES", "").split(os.pathsep) if p]
    return extra + [SHIPPED]


def list_profiles() -> list[tuple[str, Path]]:
    """(id, folder) of every profile found, ids like ``pixel4/tflite-gpu``."""
    out = []
    for root in profile_dirs():
        if not root.is_dir():
            continue
        for meta in sorted(root.glob("*/*/profile.json")):
            out.append((f"{meta.parent.parent.name}/{meta.parent.name}", meta.parent))
    return out


def resolve_profile(id_or_path: str | os.PathLike) -> Path:
    """Folder of a profile given by id (``pixel4/tflite-gpu``) or by path."""
    p = Path(id_or_path)
    if (p / "profile.json").is_file():
        return p
    for pid, folder in list_profiles():
        if pid == str(id_or_path):
            return folder
    known = ", ".join(pid for pid, _ in list_profiles()) or "none"
    raise ProfileError(f"unknown profile {str(id_or_path)!r} (known: {known})")


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

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kernel": self.kernel, "impl": self.impl, "linked": self.linked,
                "predicted_ms": self.predicted_ms,
                "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.params.items()},
                "sources": self.sources}


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

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "profile": self.profile, "total_ms": self.total_ms,
                "ops_ms": self.ops_ms, "overhead_ms": self.overhead_ms,
                "ops": [o.to_dict() for o in self.ops], "unsupported": self.unsupported,
                "glue_kernels": self.glue}


class Profile:
    """A trained device profile: ``Profile.load(id_or_path)`` then ``predict(model)``."""

    def __init__(self, meta: dict[str, Any], boosters: Mapping[str, xgb.Booster],
                 path: Path | None = None) -> None:
        self.meta = meta
        self.boosters = dict(boosters)
        self.path = path
        self._cache: dict[Any, float] = {}

    # identity -------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.meta.get("id", f"{self.meta.get('device')}/{self.meta.get('framework')}-{self.meta.get('processor')}")

    def measured_elsewhere(self) -> str | None:
        """For a profile of this kind of machine (device ``host``, measured with ``oplat
        collect``): the CPU it was measured on when that is not this machine's, else None.
        Its predictions describe that machine."""
        machine = (self.meta.get("collection") or {}).get("machine") or {}
        if self.meta.get("device") != "host" or not machine:
            return None
        from .collect.backends import other_cpu

        return other_cpu(machine)

    @property
    def gpu_family(self) -> str:
        return self.meta.get("gpu_family", "adreno")

    @property
    def backend(self) -> str:
        return self.meta.get("lowering", "tflite-gpu")

    # persistence ----------------------------------------------------------------
    @classmethod
    def load(cls, id_or_path: str | os.PathLike) -> "Profile":
        """Load a profile by id or folder."""
        folder = resolve_profile(id_or_path)
        try:
            meta = json.loads((folder / "profile.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ProfileError(f"{folder}: unreadable profile.json ({e})") from None
        if meta.get("format") != PROFILE_FORMAT:
            raise ProfileError(f"{folder}: profile format {meta.get('format')} is not {PROFILE_FORMAT}")
        if meta.get("feature_schema") != FEATURE_SCHEMA_VERSION:
            raise ProfileError(f"{folder}: feature schema {meta.get('feature_schema')} does not match "
                               f"this oplat ({FEATURE_SCHEMA_VERSION}); retrain the profile")
        if "blend" in meta:
            spec = meta["blend"]["members"]
            members = [Profile(m["meta"], _load_boosters(folder, m["models"]), folder) for m in spec]
            return BlendProfile(meta, members, [m["weight"] for m in spec], folder)
        return cls(meta, _load_boosters(folder, meta.get("models", {})), folder)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the profile (metadata JSON + one UBJ per regressor)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return self._write_meta(folder, models=_save_boosters(folder, self.boosters))

    def _write_meta(self, folder: Path, **extra: Any) -> Path:
        """``profile.json`` (written atomically) from ``self.meta`` plus ``extra`` keys."""
        meta = dict(self.meta, **extra, format=PROFILE_FORMAT, feature_schema=FEATURE_SCHEMA_VERSION)
        tmp = folder / "profile.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
        tmp.replace(folder / "profile.json")
        # regressors of a profile this one replaced: not listed, so never loaded; removed
        used = set(meta.get("models", {}).values()) | {
            f for m in meta.get("blend", {}).get("members", []) for f in m.get("models", {}).values()}
        for stale in folder.glob("*.ubj"):
            if stale.name not in used:
                stale.unlink()
        self.meta, self.path = meta, folder
        return folder

    # prediction -----------------------------------------------------------------
    def lower(self, graph: Graph) -> LoweredModel:
        """Lower a graph the way this profile's framework runs it."""
        return lower(graph, self.backend, self.gpu_family)

    CACHE_SIZE = 200_000

    def predict_kernels(self, items: Sequence[tuple[str, str, dict[str, Any], Sequence[str]]]) -> np.ndarray:
        """Milliseconds for ``(kernel, impl, params, linked)`` items (NaN where no regressor).

        Kernels already predicted (same type, parameters and links) come from a cache:
        NAS populations and repeated blocks share most of their kernels.
        """
        out = np.full(len(items), np.nan)
        cache = self._cache
        groups: dict[str, list[int]] = {}
        sigs: list[Any] = [None] * len(items)
        for i, (k, impl, params, linked) in enumerate(items):
            # key order is part of the signature: a different order can only miss, never collide
            sig = (k, impl, tuple((a, tuple(b) if isinstance(b, list) else b) for a, b in params.items()),
                   tuple(linked))
            hit = cache.get(sig)
            if hit is not None:
                out[i] = hit
                continue
            key = predictor_key(k, impl)
            if key in self.boosters:
                sigs[i] = sig
                groups.setdefault(key, []).append(i)
        base = self.meta.get("baseline", {})
        if len(cache) > self.CACHE_SIZE:
            cache.clear()
        n_new = sum(len(v) for v in groups.values())
        threads = (os.cpu_count() or 1) if n_new > 2000 else 1  # threads only pay off on big batches
        for key, idx in groups.items():
            self.boosters[key].set_param({"nthread": threads})
            sel = [items[i] for i in idx]
            x, xb = features_and_baseline(key, sel)
            margin = xb @ np.asarray(base[key]) if key in base else None
            vals = np.exp(self.boosters[key].inplace_predict(x, base_margin=margin))
            out[idx] = vals
            for i, v in zip(idx, vals.tolist()):
                cache[sigs[i]] = v
        return out

    def predict(self, model: str | os.PathLike | Graph | LoweredModel,
                input_shapes: Mapping[str, Sequence[int]] | None = None) -> PredictionResult:
        """Predict a model file, IR graph or lowered model."""
        return self.predict_many([model], input_shapes)[0]

    def predict_many(self, models: Iterable[str | os.PathLike | Graph | LoweredModel],
                     input_shapes: Mapping[str, Sequence[int]] | None = None) -> list[PredictionResult]:
        """Batch prediction: one regressor call per kernel type for all models together."""
        with _gc_paused():
            return self._predict_many(models, input_shapes)

    def _predict_many(self, models, input_shapes) -> list[PredictionResult]:
        from .model_io import load_model

        lowered: list[LoweredModel] = []
        for m in models:
            if isinstance(m, LoweredModel):
                lowered.append(m)
            else:
                g = m if isinstance(m, Graph) else load_model(m, input_shapes)
                lm = self.lower(g)
                assumed = set(g.meta.get("assumed_shapes", ()))
                for u in lm.unsupported:
                    if u["name"] in assumed:
                        u["reason"] = "unknown op; its output shape was assumed equal to its input's"
                lowered.append(lm)
        # glue kernels this profile has a regressor for (a CPU profile's TRANSPOSE) count as ops
        glue_keys = {key for key in self.boosters if key in GLUE_KEYS}
        predicted: list[list] = []
        items = []
        for mi, lm in enumerate(lowered):
            ks = lm.rows if not glue_keys else [
                k for k in lm.kernels if k.is_row or predictor_key(k.type, k.impl) in glue_keys]
            predicted.append(ks)
            for k in ks:
                items.append((k.type, k.impl, k.params, k.linked))
        preds = (self.predict_kernels(items) if items else np.zeros(0)).tolist()
        results = []
        pos = 0
        coef = self.meta.get("overhead", {}).get("coef")
        names = tuple(self.meta.get("overhead", {}).get("features") or OVERHEAD_FEATURES)
        factored = factored_keys(names)
        for mi, lm in enumerate(lowered):
            ops, unsupported = [], list(lm.unsupported)
            key_sums: dict[str, float] = {}
            for k in predicted[mi]:
                v = preds[pos]
                pos += 1
                if v != v:  # NaN: no regressor for this kernel type
                    v = None
                    unsupported.append({"name": k.name, "op_type": k.type, "reason": "no regressor in profile"})
                else:
                    key = predictor_key(k.type, k.impl)
                    key_sums[key] = key_sums.get(key, 0.0) + v
                ops.append(OpPrediction(k.name, k.type, k.impl, k.linked, v, k.params, k.sources))
            ops_sum = sum(key_sums.values())
            extra = sum(v for key, v in key_sums.items() if key in EXTRA_KEYS and key not in factored)
            if coef:
                total, overhead = apply_overhead(coef, graph_features(lm, key_sums, glue_keys, names=names), names)
                total += extra  # kernel families without a factor sit outside the end-to-end term
            else:
                total, overhead = ops_sum, 0.0
            seen = self.meta.get("overhead", {}).get("glue_types_seen")
            if seen is not None:
                seen_set = set(seen)
                for k in lm.glue:
                    if k.type not in seen_set and predictor_key(k.type, k.impl) not in glue_keys:
                        unsupported.append({"name": k.name, "op_type": k.type,
                                            "reason": "not in this profile's training models; only counted "
                                                      "as generic glue in the end-to-end term"})
            glue = [{"name": k.name, "kernel": k.type, "linked": k.linked} for k in lm.glue]
            res = PredictionResult(lm.name, self.id, total, ops_sum, overhead, ops, unsupported, glue)
            res.key_sums = key_sums
            results.append(res)
        return results


def _save_boosters(folder: Path, boosters: Mapping[str, xgb.Booster], prefix: str = "") -> dict[str, str]:
    """Write one UBJ per regressor; returns ``{key: file name}`` for the metadata."""
    files = {}
    for key, b in sorted(boosters.items()):
        files[key] = f"{prefix}{key}.ubj"
        b.save_model(str(folder / files[key]))
    return files


def _load_boosters(folder: Path, files: Mapping[str, str]) -> dict[str, xgb.Booster]:
    boosters = {}
    for key, fname in files.items():
        b = xgb.Booster()
        try:
            b.load_model(str(folder / fname))
        except (xgb.core.XGBoostError, OSError) as e:
            raise ProfileError(f"{folder}: cannot load model {fname} ({str(e).splitlines()[0]})") from None
        b.set_param({"nthread": 1})
        boosters[key] = b
    return boosters


class BlendProfile(Profile):
    """A weighted sum of member profiles that lower models the same way.

    Each kernel's prediction is the weighted sum of the members' predictions (a member
    without a regressor for the kernel's family is left out and the others' weights
    scaled up to the same total); the end-to-end term is ``meta["overhead"]`` as for any
    profile. Members must be profiles whose end-to-end term is the kernel sum plus a
    fixed cost (CPU profiles decomposed from end-to-end data): then the blend's total is
    exactly the weighted sum of the members' totals plus its own fixed cost. Stored in one
    folder: ``profile.json`` holds every member's metadata, the UBJ files are prefixed
    per member.
    """

    def __init__(self, meta: dict[str, Any], members: Sequence[Profile], weights: Sequence[float],
                 path: Path | None = None) -> None:
        keys = {k for m in members for k in m.boosters}
        super().__init__(meta, {k: None for k in keys}, path)  # type: ignore[misc]
        self.members = list(members)
        self.weights = [float(w) for w in weights]

    def predict_kernels(self, items: Sequence[tuple[str, str, dict[str, Any], Sequence[str]]]) -> np.ndarray:
        """Weighted sum of the members' kernel predictions (NaN where no member has a regressor)."""
        total = np.zeros(len(items))
        wsum = np.zeros(len(items))
        for m, w in zip(self.members, self.weights):
            if w <= 0:
                continue
            v = m.predict_kernels(items)
            ok = ~np.isnan(v)
            total[ok] += w * v[ok]
            wsum[ok] += w
        out = np.full(len(items), np.nan)
        have = wsum > 0
        out[have] = total[have] * (sum(w for w in self.weights if w > 0) / wsum[have])
        return out

    def save(self, folder: str | os.PathLike) -> Path:
        """Write metadata with every member's and the prefixed member regressors."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        blend = []
        for i, (m, w) in enumerate(zip(self.members, self.weights)):
            mm = {k: v for k, v in m.meta.items() if k not in ("models", "accuracy", "decomposition")}
            blend.append({"id": m.id, "weight": w, "meta": mm, "models": _save_boosters(folder, m.boosters, f"m{i}-")})
        return self._write_meta(folder, models={}, blend=dict(self.meta.get("blend", {}), members=blend))


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector: lowering creates many short-lived, acyclic
    objects whose generation-2 scans (over every loaded graph) otherwise halve the
    batch throughput. Reference counting still frees them at once."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def load_profile(id_or_path: str | os.PathLike) -> Profile:
    """Load a device profile by id (``pixel4/tflite-gpu``) or folder path."""
    return Profile.load(id_or_path)


__all__ = ["Profile", "BlendProfile", "PredictionResult", "OpPrediction", "load_profile", "list_profiles",
           "resolve_profile", "OVERHEAD_FEATURES"]
