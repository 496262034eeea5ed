"""Graph-only ONNX models: keep every tensor's dims and dtype, drop the weights.

A graph-only file marks large initializers as external data whose file is absent.
Shape inference needs only dims, so latency prediction works on such files; they are
small enough to ship as fixtures and to pass around in a NAS loop.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from onnx import TensorProto

ABSENT_LOCATION = "__weights_absent__"


def strip_weights(model: onnx.ModelProto, size_threshold: int = 1024) -> onnx.ModelProto:
    """Return a copy of ``model`` whose initializers above ``size_threshold`` bytes hold no data.

    Small tensors (shape constants of Reshape, axes, scalars) stay inline because shape
    inference needs their values.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graphs = [out.graph]
    while graphs:
        g = graphs.pop()
        for t in g.initializer:
            _strip_tensor(t, size_threshold)
        for node in g.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    graphs.append(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    graphs.extend(attr.graphs)
    return out


def _strip_tensor(t: TensorProto, size_threshold: int) -> None:
    nbytes = _tensor_nbytes(t)
    if nbytes <= size_threshold or t.data_location == TensorProto.EXTERNAL:
        return
    for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data",
                  "uint64_data", "string_data"):
        t.ClearField(field)
    t.data_location = TensorProto.EXTERNAL
    del t.external_data[:]
    for key, value in (("location", ABSENT_LOCATION), ("offset", "0"), ("length", str(nbytes))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value


def _tensor_nbytes(t: TensorProto) -> int:
    n = 1
    for d in t.dims:
        n *= d
    itemsize = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize if t.data_type else 4
    return n * itemsize


def is_graph_only(model: onnx.ModelProto) -> bool:
    """True when at least one initializer refers to external data (present or not)."""
    return any(t.data_location == TensorProto.EXTERNAL for t in model.graph.initializer)


def external_data_present(model: onnx.ModelProto, folder: str | os.PathLike) -> bool:
    """True when the model has external initializers and every file they name lies in
    ``folder`` (a location escaping it counts as absent) and exists: a torch
    ``dynamo=True`` export's ``model.onnx.data``, not a graph-only file's absent weights."""
    base = Path(folder).resolve()
    found = False
    for t in model.graph.initializer:
        if t.data_location != TensorProto.EXTERNAL:
            continue
        loc = {e.key: e.value for e in t.external_data}.get("location", "")
        if not loc or loc == ABSENT_LOCATION:
            return False
        f = (base / loc).resolve()
        if base not in f.parents or not f.is_file():
            return False
        found = True
    return found


def load_with_weights(path: str | os.PathLike) -> onnx.ModelProto:
    """An ONNX file with its weights: external data read in when it is all present beside
    the file; otherwise (graph-only) as it is, :func:`is_graph_only` telling which."""
    p = Path(path)
    model = onnx.load(str(p), load_external_data=False)
    if external_data_present(model, p.parent):
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, str(p.parent))
    return model


def with_random_weights(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """A runnable copy of a graph-only model: absent initializers get random values.

    Values are small normals (scaled by fan-in) so activations stay finite; timing does
    not depend on them.
    """
    import numpy as np
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    # BatchNorm variances must stay positive, or the model computes NaN
    positive = {n.input[4] for n in out.graph.node if n.op_type == "BatchNormalization" and len(n.input) > 4}
    alias = {n.output[0]: n.input[0] for n in out.graph.node if n.op_type == "Identity"}
    for name in list(positive):  # exporters dedupe equal initializers through Identity nodes
        while name in alias:
            name = alias[name]
            positive.add(name)
    for t in out.graph.initializer:
        if t.data_location != TensorProto.EXTERNAL:
            continue
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
        shape = tuple(t.dims)
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        if np.issubdtype(dtype, np.floating):
            arr = (rng.standard_normal(shape) / np.sqrt(max(fan_in, 1))).astype(dtype)
            if t.name in positive:
                arr = np.abs(arr) + dtype.type(0.5)
        else:
            arr = np.zeros(shape, dtype)
        new = numpy_helper.from_array(arr, t.name)
        t.CopyFrom(new)
    return out
