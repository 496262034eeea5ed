"""Model zoo: ONNX models built with onnx.helper (no torch): ``list_models()``,
``build(name)``; and the shipped ONNX files (``zoo_dir("cnn_zoo")``: the benchmark's
pytorchcv CNNs, ``"vit_zoo"``: its Vision Transformers, ``"samples"``: samples for the
manual), all graph-only: shapes and attributes without weights.

Names are ``family_variant`` (``resnet18``, ``mobilenet_v2_1.0``, ...) plus
``<space>:<architecture string>`` for the networks of a search space
(:mod:`oplat.spaces`: ``nb201``, ``mbconv``, ``mbconv-cifar``).
"""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

# the builders import onnx and every family: loaded on first use, so finding the shipped
# files (the CLI's defaults) costs nothing
_REGISTRY_NAMES = ("ZOO", "build", "list_models", "is_transformer")


def __getattr__(name: str) -> Any:
    if name in _REGISTRY_NAMES:
        from . import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'oplat.zoo' has no attribute {name!r}")


# the folders of shipped ONNX files (package data of this package)
SHIPPED_SETS = ("cnn_zoo", "vit_zoo", "samples")


def zoo_dir(name: str) -> Path:
    """The folder of a shipped set of ONNX files (one of :data:`SHIPPED_SETS`)."""
    if name not in SHIPPED_SETS:
        raise KeyError(name)
    # package data of an installed (unzipped) distribution or of the source tree: a real folder
    with as_file(files(__name__) / name) as p:
        return Path(p)


def data_dir() -> Path:
    """The folder holding every shipped set of ONNX files."""
    return zoo_dir("samples").parent


__all__ = ["ZOO", "build", "list_models", "is_transformer", "zoo_dir", "data_dir", "SHIPPED_SETS"]
