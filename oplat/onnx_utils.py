"""Small ONNX helpers shared by the loader, the converter, the lowering and coexec:
node attributes, a Clip's bounds, random inputs for a session.

A leaf module: onnx and numpy only.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper


# ONNX ops found only in quantized models (QDQ pairs, QOperator ops, dynamic quantization)
QUANTIZED_OPS = frozenset(("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
                           "QLinearMatMul", "ConvInteger", "MatMulInteger", "QLinearAdd", "QLinearMul", "QGemm",
                           "QLinearGlobalAveragePool", "QLinearConcat", "QLinearSigmoid", "QLinearLeakyRelu"))


def text(s: str | bytes) -> str:
    """A name from a protobuf string field as text: protobuf hands back bytes for invalid
    UTF-8, which are escaped (so every output stays strict JSON)."""
    return s.decode("utf-8", "backslashreplace") if isinstance(s, bytes) else s


def node_names(nodes: Sequence[onnx.NodeProto]) -> list[str]:
    """The name each node goes by in oplat: its own, or ``<op_type>_<index>`` for an unnamed
    one, made unique by trailing underscores. Plans and predictions name ops this way, so a
    rewrite of the file (``coexec split``) finds them again."""
    used: set[str] = set()
    out = []
    for i, node in enumerate(nodes):
        name = text(node.name) or f"{text(node.op_type)}_{i}"
        while name in used:
            name += "_"
        used.add(name)
        out.append(name)
    return out


def attrs(node: onnx.NodeProto) -> dict[str, Any]:
    """Every attribute of ``node`` as a Python value."""
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    """One attribute of ``node`` (``default`` when absent)."""
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def set_attrs(node: onnx.NodeProto, **values: Any) -> None:
    """Replace (or add) attributes of ``node``; a value of None removes the attribute."""
    keep = [a for a in node.attribute if a.name not in values]
    del node.attribute[:]
    node.attribute.extend(keep)
    for k, v in values.items():
        if v is not None:
            node.attribute.append(helper.make_attribute(k, v))


def scalar_of(consts: Mapping[str, Any], name: str) -> float | None:
    """The single value of constant ``name`` in ``consts``; None when it is not a
    one-element constant."""
    v = consts.get(name)
    if v is None:
        return None
    v = np.asarray(v)
    return float(v.reshape(-1)[0]) if v.size == 1 else None


def clip_bounds(node_attrs: Mapping[str, Any], inputs: Sequence[str],
                scalar: Callable[[str], float | None]) -> tuple[float, float] | None:
    """A Clip's ``(min, max)``: from its attributes (opset < 11) or its optional second and
    third inputs, read through ``scalar`` (a constant's single value, or None); an absent
    bound is -inf / inf. None when a bound is an input that is not a known constant."""
    lo, hi = node_attrs.get("min", -np.inf), node_attrs.get("max", np.inf)
    bounds = [lo, hi]
    for i in (1, 2):
        if len(inputs) > i and inputs[i]:
            v = scalar(inputs[i])
            if v is None:
                return None
            bounds[i - 1] = v
    return float(bounds[0]), float(bounds[1])


def random_feeds(inputs, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal float32 values for a session's ``get_inputs()`` (dynamic dims as 1)."""
    rng = np.random.default_rng(seed)
    return {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
            for i in inputs}


__all__ = ["QUANTIZED_OPS", "text", "node_names", "attrs", "attr", "set_attrs", "scalar_of", "clip_bounds", "random_feeds"]
