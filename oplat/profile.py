"""Device profiles: per-kernel XGBoost regressors + an end-to-end term, stored as data.

A profile folder holds ``profile.json`` (metadata, overhead coefficients, accuracy,
provenance) and one ``<KEY>.ubj`` XGBoost model per predictor key. No pickle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import xgboost as xgb

from .errors import ProfileError
from .features import FEATURE_SCHEMA_VERSION
from .ir import Graph
from .lowering import LoweredModel, lower
from .outputs import replace_folder
from .overhead import OVERHEAD_FEATURES
from .predict import OpPrediction, PredictionResult, predict_models, regressor_predictions

PROFILE_FORMAT = 1


def _shipped() -> Path:
    """The folder of the shipped profiles: the package ``oplat_profiles`` where oplat is
    installed, ``device_profiles/`` beside the package in a source tree."""
    try:
        from importlib.resources import files

        return Path(str(files("oplat_profiles")))
    except ImportError:
        return Path(__file__).resolve().parents[1] / "device_profiles"


SHIPPED = _shipped()


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
    known = list_profiles()
    for pid, folder in known:
        if pid == str(id_or_path):
            return folder
    raise ProfileError(f"unknown profile {str(id_or_path)!r}; " + did_you_mean(str(id_or_path), [k for k, _ in known]))


def did_you_mean(wanted: str, ids: list[str]) -> str:
    """One short hint for a profile id not found: the closest ids (a device name alone
    gets that device's profiles), or how to list them."""
    import difflib

    if not ids:
        return "no profiles are installed"
    w = wanted.strip().lower()
    same = [i for i in ids if i.lower() == w]
    device = [i for i in ids if i.split("/")[0].lower() == w.split("/")[0]]
    close = same or difflib.get_close_matches(w, ids, n=3, cutoff=0.6) or sorted(device, key=len)[:3]
    if close:
        return f"did you mean {', '.join(close)}?" + (" (ids are case-sensitive)" if same else "")
    return "see 'oplat profiles' for the ids"


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
        from .machine import other_cpu

        return other_cpu(machine)

    @property
    def variant(self) -> str:
        """The lowering variant: a GPU family (``adreno``, ``mali``, ``powervr``, ``apple``),
        ``vulkan``/``metal`` for PyTorch, ``cpu``, or ``nchwc<block>`` for onnxruntime
        (stored as ``gpu_family`` in ``profile.json``, format 1)."""
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
        """Write the profile (metadata JSON + one UBJ per regressor) into ``folder``: a new or
        empty folder, or one holding a profile, which it replaces (its other files are
        kept). Atomic: written beside and renamed into place (:func:`oplat.outputs.replace_folder`)."""
        return self._save(folder, lambda tmp: self._write_meta(tmp, models=_save_boosters(tmp, self.boosters)))

    def _save(self, folder: str | os.PathLike, fill) -> Path:
        folder = Path(folder)
        replace_folder(folder, fill)
        self.path = folder
        return folder

    def _write_meta(self, folder: Path, **extra: Any) -> Path:
        """``profile.json`` in ``folder`` from ``self.meta`` plus ``extra`` keys."""
        meta = dict(self.meta, **extra, format=PROFILE_FORMAT, feature_schema=FEATURE_SCHEMA_VERSION)
        (folder / "profile.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        self.meta = meta
        return folder

    # prediction -----------------------------------------------------------------
    def lower(self, graph: Graph) -> LoweredModel:
        """Lower a graph the way this profile's framework runs it."""
        return lower(graph, self.backend, self.variant)

    def predict_kernels(self, items: Sequence[tuple[str, str, dict[str, Any], Sequence[str]]]) -> np.ndarray:
        """Milliseconds for ``(kernel, impl, params, linked)`` items (NaN where no regressor);
        see :func:`oplat.predict.regressor_predictions`."""
        return regressor_predictions(self, items)

    def predict(self, model: str | os.PathLike | Graph | LoweredModel,
                input_shapes: Mapping[str, Sequence[int]] | None = None) -> PredictionResult:
        """Predict a model file, IR graph or lowered model."""
        return predict_models(self, [model], input_shapes)[0]

    def predict_many(self, models: Iterable[str | os.PathLike | Graph | LoweredModel],
                     input_shapes: Mapping[str, Sequence[int]] | None = None) -> list[PredictionResult]:
        """Batch prediction: one regressor call per kernel type for all models together."""
        return predict_models(self, models, input_shapes)


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
        """Write metadata with every member's and the prefixed member regressors (as
        :meth:`Profile.save`: atomically, replacing only a profile)."""
        def fill(tmp: Path) -> None:
            blend = []
            for i, (m, w) in enumerate(zip(self.members, self.weights)):
                mm = {k: v for k, v in m.meta.items() if k not in ("models", "accuracy", "decomposition")}
                blend.append({"id": m.id, "weight": w, "meta": mm,
                              "models": _save_boosters(tmp, m.boosters, f"m{i}-")})
            self._write_meta(tmp, models={}, blend=dict(self.meta.get("blend", {}), members=blend))

        return self._save(folder, fill)


def load_profile(id_or_path: str | os.PathLike) -> Profile:
    """Load a device profile by id (``pixel4/tflite-gpu``) or folder path."""
    return Profile.load(id_or_path)


__all__ = ["Profile", "BlendProfile", "PredictionResult", "OpPrediction", "load_profile", "list_profiles",
           "resolve_profile", "OVERHEAD_FEATURES"]
