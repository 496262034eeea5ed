"""Optional dependencies: the core install predicts, trains, evaluates and calibrates;
plots, .tflite files, host collection, co-execution and phones need an extra each. A
command that needs a missing one says in one line which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import OplatError

# module -> the extra that installs it
EXTRA_OF = {"matplotlib": "plot", "ai_edge_litert": "tflite", "onnxruntime": "collect", "pyopencl": "coexec",
            "adbutils": "phone"}


class MissingExtra(OplatError):
    """An optional dependency a command needs is not installed."""


def need(module: str, what: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` for ``what``, or raise :class:`MissingExtra` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = extra or EXTRA_OF.get(module.split(".")[0], "all")
        raise MissingExtra(f"{what} needs {module.split('.')[0]}, which is not installed: "
                           f"pip install 'oplat[{extra}]'") from None


__all__ = ["need", "MissingExtra", "EXTRA_OF"]
