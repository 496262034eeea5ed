"""Validation before prediction: a graph that onnxruntime or the TFLite runtime would
reject gets one line naming the node and the problem, and sizes are bounded before
anything is allocated.

Two stages: :func:`check_onnx` on the ONNX proto before shape inference (structure,
operator schemas and attribute types through ``onnx.checker`` on a weight-free copy,
tensor sizes of initializers and inputs, constant-size producers such as ``Range`` and
``ConstantOfShape``), and :func:`check_graph` on the IR once shapes are known (every
tensor's dims positive and bounded, windows that fit their padded input, groups that
divide the channels, positive strides and dilations, axes in range).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import ModelLoadError
from .ir import Graph, Op
from .shape_rules import spatial_pads

# the largest tensor a model may declare (elements): 2^31 fp32 values are 8 GB, far above
# any mobile model's largest tensor, and far below what would exhaust a machine
MAX_ELEMENTS = 1 << 31


class InvalidModel(ModelLoadError):
    """The model is malformed or would be rejected by its runtime."""


def _numel(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def _weight_free(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy the checker can read without weights: initializers become typed inputs, and
    graph outputs without a declared shape get an empty one (the checker requires it; we
    infer shapes ourselves)."""
    c = onnx.ModelProto(ir_version=model.ir_version)  # everything but the weights' bytes
    c.opset_import.extend(model.opset_import)
    c.functions.extend(model.functions)
    g = c.graph
    g.name = model.graph.name
    for field in ("node", "input", "output", "value_info", "sparse_initializer"):
        getattr(g, field).extend(getattr(model.graph, field))
    have = {i.name for i in g.input}
    for t in model.graph.initializer:
        if t.name not in have:
            g.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    for o in g.output:
        if o.type.HasField("tensor_type") and not o.type.tensor_type.HasField("shape"):
            o.type.tensor_type.shape.SetInParent()
    order = _topological(g)
    del g.node[:]
    g.node.extend(order)
    return c


def _topological(g: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The nodes in an order that computes every input first, file order where it already
    does (onnxruntime sorts a file's nodes itself, so an unsorted file is valid); a cycle or
    an input nothing makes is refused, naming the node. Kahn's algorithm, linear time."""
    import heapq

    nodes = list(g.node)
    available = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    producer = {}
    for i, n in enumerate(nodes):
        for o in n.output:
            producer.setdefault(o, i)
    users: list[list[int]] = [[] for _ in nodes]
    need = [0] * len(nodes)
    for i, n in enumerate(nodes):
        for x in set(n.input):
            if x in available:
                continue
            if x not in producer:
                raise InvalidModel(f"node {n.name or n.op_type!r} reads {x!r}, which no node, input or "
                                   "initializer provides")
            need[i] += 1
            users[producer[x]].append(i)
    heap = [i for i, k in enumerate(need) if k == 0]
    heapq.heapify(heap)
    order = []
    while heap:
        i = heapq.heappop(heap)
        order.append(nodes[i])
        for j in users[i]:
            need[j] -= 1
            if need[j] == 0:
                heapq.heappush(heap, j)
    if len(order) != len(nodes):
        n = nodes[next(i for i, k in enumerate(need) if k > 0)]
        raise InvalidModel(f"the graph has a cycle through node {n.name or n.op_type!r}")
    return order


def _data_fits(t: onnx.TensorProto) -> bool:
    """Whether an initializer stored in the file holds as many values as its dims say."""
    if t.data_location == onnx.TensorProto.EXTERNAL:
        return True
    n = _numel(t.dims)
    if t.raw_data:
        try:
            size = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
        except Exception:  # noqa: BLE001 - a data type numpy does not know: not checked
            return True
        return len(t.raw_data) == n * size
    count = max(len(t.float_data), len(t.int32_data), len(t.string_data), len(t.int64_data),
                len(t.double_data), len(t.uint64_data))
    return count in (n, 2 * n) or (n == 0 and count == 0)


def check_onnx(model: onnx.ModelProto, label: str) -> None:
    """Refuse (:class:`InvalidModel`, one line) an ONNX model onnxruntime would not load,
    or whose declared tensors would not fit in memory, before anything is inferred."""
    g = model.graph
    for t in g.initializer:
        if any(d < 0 for d in t.dims):
            raise InvalidModel(f"{label}: initializer {t.name!r} has a negative dim {list(t.dims)}")
        if _numel(t.dims) > MAX_ELEMENTS:
            raise InvalidModel(f"{label}: initializer {t.name!r} has {_numel(t.dims):.3g} elements "
                               f"(dims {list(t.dims)}); no model can be that large")
        if not _data_fits(t):
            raise InvalidModel(f"{label}: initializer {t.name!r}: its data does not fit its dims {list(t.dims)}")
    inits = {t.name for t in g.initializer}
    for i in g.input:
        if i.name in inits or not i.type.tensor_type.HasField("shape"):
            continue
        dims = [d.dim_value for d in i.type.tensor_type.shape.dim if d.HasField("dim_value")]
        if any(d < 0 for d in dims):
            raise InvalidModel(f"{label}: input {i.name!r} has a negative dim")
    try:
        onnx.checker.check_model(_weight_free(model))
    except InvalidModel as e:
        raise InvalidModel(f"{label}: {e}") from None
    except onnx.checker.ValidationError as e:
        msg = " ".join(str(e).split())
        raise InvalidModel(f"{label}: not a valid ONNX graph: {msg[:300]}") from None
    except Exception as e:  # noqa: BLE001 - the checker's own failures on hostile input
        raise InvalidModel(f"{label}: not a valid ONNX graph ({type(e).__name__})") from None
    _check_constant_producers(model, label)


def _const_values(model: onnx.ModelProto, label: str) -> dict[str, np.ndarray]:
    out = {}
    tensors = [(t.name, t) for t in model.graph.initializer]
    tensors += [(n.output[0], a.t) for n in model.graph.node if n.op_type == "Constant" and n.output
                for a in n.attribute if a.name == "value"]
    for name, t in tensors:
        if t.data_location != onnx.TensorProto.EXTERNAL and _numel(t.dims) <= 64:
            try:
                out[name] = numpy_helper.to_array(t)
            except (ValueError, TypeError, KeyError):  # KeyError: a data type onnx does not know
                raise InvalidModel(f"{label}: constant {name!r}: its data does not fit its dims {list(t.dims)}") from None
    return out


def _check_constant_producers(model: onnx.ModelProto, label: str) -> None:
    """Ops whose output size is set by constant values (which ONNX shape inference would
    materialise) are refused above :data:`MAX_ELEMENTS`."""
    consts = _const_values(model, label)
    for n in model.graph.node:
        size = None
        vals = [consts.get(i) for i in n.input]
        try:
            if n.op_type == "Range" and len(vals) == 3 and all(v is not None for v in vals):
                start, limit, delta = (float(np.asarray(v).reshape(-1)[0]) for v in vals)
                size = math.inf if delta == 0 else max(math.ceil((limit - start) / delta), 0)
            elif n.op_type == "ConstantOfShape" and vals and vals[0] is not None:
                size = _numel(np.asarray(vals[0]).reshape(-1).tolist())
                if any(d < 0 for d in np.asarray(vals[0]).reshape(-1)):
                    raise InvalidModel(f"{label}: {n.op_type} {n.name or n.output[0]!r}: negative shape")
            elif n.op_type == "Expand" and len(vals) > 1 and vals[1] is not None:
                size = _numel(np.abs(np.asarray(vals[1]).reshape(-1)).tolist())
        except (ValueError, TypeError, OverflowError):
            raise InvalidModel(f"{label}: {n.op_type} {n.name or n.output[0]!r}: unreadable constant input") from None
        if size is not None and size > MAX_ELEMENTS:
            raise InvalidModel(f"{label}: {n.op_type} {n.name or n.output[0]!r} would make "
                               f"{size:.3g} elements; no model's tensor is that large")


# the fewest inputs each op the lowering reads takes (onnx.checker holds ONNX files to their
# schemas; this holds every graph, a .tflite's translated ops included)
MIN_INPUTS = {**dict.fromkeys(("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Conv", "Gemm", "MatMul", "PRelu",
                               "Equal", "Less", "Greater"), 2),
              **dict.fromkeys(("Relu", "Clip", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "Softmax", "Concat",
                               "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean", "Transpose", "Flatten", "Reshape",
                               "Pad", "LeakyRelu", "Gelu", "Erf", "Sqrt", "Exp", "Identity", "Cast", "Resize",
                               "Slice", "Gather", "Split", "BatchNormalization", "LayerNormalization"), 1)}


def _where(op: Op) -> str:
    return f"{op.type} {op.name!r}"


def check_graph(g: Graph, label: str) -> None:
    """Refuse (:class:`InvalidModel`, one line naming the node) a shape-complete IR graph
    that its runtime would reject."""
    for op in g.ops():
        need = MIN_INPUTS.get(op.type, 0)
        if sum(1 for i in op.inputs if i) < need or not any(op.outputs):
            raise InvalidModel(f"{label}: {_where(op)} has {sum(1 for i in op.inputs if i)} inputs and "
                               f"{sum(1 for o in op.outputs if o)} outputs ({op.type} takes at least {need} "
                               "inputs and one output)")
        for t in op.outputs:
            shape = g.tensors[t].shape if t else None
            if shape is None:
                continue
            if any(d <= 0 for d in shape) and not (len(shape) and _scalarish(op)):
                raise InvalidModel(f"{label}: {_where(op)} gives {t!r} the shape {list(shape)} (a dim of 0 "
                                   "or less): its input is too small for it, or its attributes are wrong")
            if _numel(shape) > MAX_ELEMENTS:
                raise InvalidModel(f"{label}: {_where(op)} makes {t!r} of {_numel(shape):.3g} elements")
        # per-op rules read ONNX layouts; a .tflite graph's NHWC tensors are only re-labelled
        # NCHW when 4-D, so its ops get the size checks alone
        check = _CHECKS.get(op.type) if g.meta.get("format") != "tflite" else None
        if check is not None:
            why = check(g, op)
            if why:
                raise InvalidModel(f"{label}: {_where(op)}: {why}")
    for t in g.inputs:
        shape = g.tensors[t].shape
        if shape is not None and any(d <= 0 for d in shape):
            raise InvalidModel(f"{label}: input {t!r} has the shape {list(shape)} (a dim of 0 or less)")


def _scalarish(op: Op) -> bool:
    """Ops whose empty outputs are legitimate (shape arithmetic on empty lists)."""
    return op.type in ("Shape", "Slice", "Squeeze", "Unsqueeze", "Concat", "Gather", "ConstantOfShape",
                       "Constant", "Range", "NonZero")


def _ints(v: Any, what: str) -> list[int] | str:
    if v is None:
        return []
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, (int, np.integer)) for x in v):
        return f"attribute {what} must be a list of integers (got {v!r})"
    return [int(x) for x in v]


def _window(g: Graph, op: Op) -> str | None:
    x = g.tensors[op.inputs[0]].shape
    if x is None or len(x) < 3:
        return None if x is None else f"input of rank {len(x)} (needs N, C and spatial dims)"
    n = len(x) - 2
    if op.type == "Conv":
        w = g.tensors[op.inputs[1]].shape if len(op.inputs) > 1 else None
        if w is None:
            return "no weights"
        if len(w) != len(x):
            return f"weights of rank {len(w)} for an input of rank {len(x)}"
        k = op.attrs.get("kernel_shape", list(w[2:]))
        group = op.attrs.get("group", 1)
        if not isinstance(group, int) or group < 1:
            return f"group {group!r} (must be a positive integer)"
        if x[1] % group or w[0] % group or w[1] * group != x[1]:
            return (f"group {group} does not fit {x[1]} input channels and weights {list(w)} "
                    f"(needs input channels = {w[1]} x group, output channels divisible by group)")
    else:
        if "kernel_shape" not in op.attrs:
            return "no kernel_shape attribute (required)"
        k = op.attrs["kernel_shape"]
    k = _ints(k, "kernel_shape")
    if isinstance(k, str):
        return k
    if len(k) != n:
        return f"kernel_shape {k} for {n} spatial dims"
    strides = _ints(op.attrs.get("strides", [1] * n), "strides")
    dil = _ints(op.attrs.get("dilations", [1] * n), "dilations")
    for vals, what in ((strides, "strides"), (dil, "dilations")):
        if isinstance(vals, str):
            return vals
        if len(vals) != n or any(v < 1 for v in vals):
            return f"{what} {vals} (must be {n} positive integers)"
    if any(v < 1 for v in k):
        return f"kernel_shape {k} (must be positive)"
    pads = spatial_pads(op.attrs, tuple(x[2:]), tuple(k), tuple(strides), tuple(dil))
    if len(pads) != 2 * n or any(not isinstance(p, (int, np.integer)) or p < 0 for p in pads):
        return f"pads {pads} (must be {2 * n} non-negative integers)"
    for i in range(n):
        eff = dil[i] * (k[i] - 1) + 1
        if eff > x[2 + i] + pads[i] + pads[n + i]:
            return (f"window {eff} (kernel {k[i]}, dilation {dil[i]}) is larger than the padded input "
                    f"{x[2 + i]} + {pads[i] + pads[n + i]} along spatial axis {i}")
    return None


def _axis(g: Graph, op: Op, default: int = 0) -> str | None:
    x = g.tensors[op.inputs[0]].shape if op.inputs and op.inputs[0] else None
    ax = op.attrs.get("axis", default)
    if x is None:
        return None
    if not isinstance(ax, (int, np.integer)) or not -len(x) <= ax < max(len(x), 1):
        return f"axis {ax!r} out of range for rank {len(x)}"
    return None


def _flatten(g: Graph, op: Op) -> str | None:
    x = g.tensors[op.inputs[0]].shape
    ax = op.attrs.get("axis", 1)
    if x is not None and (not isinstance(ax, (int, np.integer)) or not -len(x) <= ax <= len(x)):
        return f"axis {ax!r} out of range for rank {len(x)}"
    return None


def _concat(g: Graph, op: Op) -> str | None:
    why = _axis(g, op)
    if why:
        return why
    shapes = [g.tensors[i].shape for i in op.inputs if i]
    if any(s is None for s in shapes) or not shapes:
        return None
    if len({len(s) for s in shapes}) != 1:
        return f"inputs of different ranks {[len(s) for s in shapes]}"
    ax = op.attrs.get("axis", 0) % len(shapes[0])
    for s in shapes[1:]:
        if any(a != b for i, (a, b) in enumerate(zip(shapes[0], s)) if i != ax):
            return f"inputs {list(shapes[0])} and {list(s)} differ outside axis {ax}"
    return None


def _gemm(g: Graph, op: Op) -> str | None:
    a, b = (g.tensors[i].shape for i in op.inputs[:2])
    if a is None or b is None:
        return None
    if op.type == "Gemm":  # (TFLite's FULLY_CONNECTED loads as a Gemm over the last axis of any rank)
        if len(b) != 2 or not a:
            return f"operands of rank {len(a)} and {len(b)} (the second must be a matrix)"
        k_a = a[0] if op.attrs.get("transA", 0) and len(a) == 2 else a[-1]
        k_b = b[1] if op.attrs.get("transB", 0) else b[0]
    else:
        k_a, k_b = a[-1], (b[-2] if len(b) > 1 else b[0])
    if k_a != k_b:
        return f"inner dims differ ({list(a)} x {list(b)})"
    return None


_CHECKS = {"Conv": _window, "MaxPool": _window, "AveragePool": _window, "Concat": _concat,
           "Softmax": lambda g, op: _axis(g, op, -1), "LogSoftmax": lambda g, op: _axis(g, op, -1),
           "Flatten": lambda g, op: _flatten(g, op),
           "Gemm": _gemm, "MatMul": _gemm}


__all__ = ["InvalidModel", "MAX_ELEMENTS", "check_onnx", "check_graph"]
