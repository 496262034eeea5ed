"""Open any supported model file (ONNX or TFLite) as an IR graph."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from .errors import ModelLoadError
from .ir import Graph
from .onnx_loader import load_onnx


def is_tflite(path: str | os.PathLike) -> bool:
    """TFLite flatbuffers carry the identifier ``TFL3`` at byte 4."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return len(head) == 8 and head[4:8] == b"TFL3"


def load_model(path: str | os.PathLike, input_shapes: Mapping[str, Sequence[int]] | None = None) -> Graph:
    """Load ``path`` (ONNX, or .tflite by content) into a shape-complete graph."""
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"model file not found: {p}")
    if is_tflite(p) or p.suffix.lower() == ".tflite":
        from .tflite_loader import load_tflite

        return load_tflite(p)
    return load_onnx(p, input_shapes)
