"""oplat: operator-wise latency prediction for mobile ML models.

    import oplat
    prof = oplat.load_profile("pixel4/tflite-gpu")
    res = prof.predict("model.onnx")          # res.total_ms, res.ops, res.unsupported
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load_profile", "list_profiles", "Profile", "load_model", "lower", "__version__"]


def __getattr__(name: str) -> Any:  # lazy: importing oplat stays cheap for the CLI
    if name in ("load_profile", "list_profiles", "Profile"):
        from . import profile

        return getattr(profile, name)
    if name == "load_model":
        from .model_io import load_model

        return load_model
    if name == "lower":
        from .lowering import lower

        return lower
    raise AttributeError(f"module 'oplat' has no attribute {name!r}")
