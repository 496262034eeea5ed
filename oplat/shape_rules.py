"""Our own shape rules, applied where ONNX shape inference gives up.

ONNX inference stops at the first op it cannot type (a custom domain, a Reshape whose
target is computed at run time from values it could not propagate, ...). These rules
cover the ops that matter for latency, so one unknown op does not blind the rest.
"""

from __future__ import annotations

import math

import numpy as np

from .ir import Graph, Op

UNARY = {"Relu", "Clip", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "LeakyRelu", "PRelu",
         "Elu", "Selu", "Erf", "Gelu", "Softmax", "LogSoftmax", "BatchNormalization",
         "LayerNormalization", "InstanceNormalization", "Identity", "Dropout", "Cast",
         "Neg", "Abs", "Sqrt", "Exp", "Log", "Reciprocal", "Softplus", "Mish", "Dequantize",
         "QuantizeLinear", "DequantizeLinear", "Floor", "Ceil", "Round", "Sin", "Cos",
         "GroupNormalization", "MeanVarianceNormalization", "LpNormalization", "Hardmax", "Celu",
         "Softsign", "Sign", "Not", "IsNaN", "IsInf", "ThresholdedRelu", "Shrink", "Tan", "Atan",
         "Asin", "Acos", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "BitwiseNot"}
BROADCAST = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Where", "Equal", "Less",
             "Greater", "And", "Or", "Mod"}


def broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """Numpy broadcasting of several shapes."""
    return tuple(np.broadcast_shapes(*shapes))


def conv_out(size: int, k: int, s: int, p0: int, p1: int, d: int = 1, ceil: bool = False) -> int:
    """Output length of a convolution or pooling window along one axis."""
    eff = d * (k - 1) + 1
    r = (size + p0 + p1 - eff) / s
    return int(math.ceil(r) if ceil else math.floor(r)) + 1


def spatial_pads(attrs: dict, in_hw: tuple[int, ...], k: tuple[int, ...], s: tuple[int, ...],
                 d: tuple[int, ...] | None = None) -> list[int]:
    """Explicit [top, left, ..., bottom, right] pads, resolving auto_pad SAME_*."""
    n = len(in_hw)
    d = d or (1,) * n
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(n):
            out = -(-in_hw[i] // s[i])
            total = max((out - 1) * s[i] + d[i] * (k[i] - 1) + 1 - in_hw[i], 0)
            small, big = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else big)
            end.append(big if auto == "SAME_UPPER" else small)
        return begin + end
    if auto == "VALID":
        return [0] * (2 * n)
    return list(attrs.get("pads", [0] * (2 * n)))


# where each convolution keeps its weight among its inputs
CONV_WEIGHT_INPUT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}


def window_out_shape(g: Graph, op: Op) -> tuple[int, ...] | None:
    """Output shape of Conv/ConvTranspose-free window ops (Conv, MaxPool, AveragePool)."""
    x = g.tensors[op.inputs[0]].shape
    if x is None:
        return None
    if op.type in CONV_WEIGHT_INPUT:
        w = g.tensors[op.inputs[CONV_WEIGHT_INPUT[op.type]]].shape
        if w is None:
            return None
        k = tuple(op.attrs.get("kernel_shape", w[2:]))
        c_out = w[0]
    else:
        k = tuple(op.attrs["kernel_shape"])
        c_out = x[1]
    n = len(k)
    s = tuple(op.attrs.get("strides", [1] * n))
    d = tuple(op.attrs.get("dilations", [1] * n))
    pads = spatial_pads(op.attrs, x[2:], k, s, d)
    ceil = bool(op.attrs.get("ceil_mode", 0))
    hw = tuple(conv_out(x[2 + i], k[i], s[i], pads[i], pads[n + i], d[i], ceil) for i in range(n))
    return (x[0], c_out) + hw


# QOperator ops (com.microsoft) shaped like their float op, by their data inputs
QOPERATOR_DATA = {"QLinearAdd": (0, 3), "QLinearMul": (0, 3), "QLinearSigmoid": (0,), "QLinearLeakyRelu": (0,)}


def _rule(g: Graph, op: Op) -> list[tuple[int, ...] | None]:
    shapes = [g.tensors[i].shape if i else None for i in op.inputs]
    t, a = op.type, op.attrs
    if t in QOPERATOR_DATA:
        data = [shapes[i] if i < len(shapes) else None for i in QOPERATOR_DATA[t]]
        return [None if any(s is None for s in data) else broadcast(*data)]
    if t == "QLinearGlobalAveragePool":
        s = shapes[0]
        if s is None:
            return [None]
        return [(s[0],) + (1,) * (len(s) - 2) + (s[-1],) if a.get("channels_last") else s[:2] + (1,) * (len(s) - 2)]
    if t in UNARY:
        return [shapes[0]] + [None] * (len(op.outputs) - 1)
    if t in BROADCAST:
        if any(s is None for s in shapes):
            return [None]
        return [broadcast(*shapes)]
    if t in ("Conv", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool"):
        return [window_out_shape(g, op)]
    if t in ("GlobalAveragePool", "GlobalMaxPool"):
        s = shapes[0]
        return [None if s is None else s[:2] + (1,) * (len(s) - 2)]
    if t == "Flatten":
        s = shapes[0]
        if s is None:
            return [None]
        ax = a.get("axis", 1) % max(len(s), 1)
        return [(int(np.prod(s[:ax], dtype=np.int64)), int(np.prod(s[ax:], dtype=np.int64)))]
    if t in ("Gemm", "MatMul"):
        sa, sb = shapes[0], shapes[1]
        if sa is None or sb is None:
            return [None]
        if t == "Gemm":
            m = sa[1] if a.get("transA", 0) else sa[0]
            n = sb[0] if a.get("transB", 0) else sb[1]
            return [(m, n)]
        if len(sb) == 1:
            return [sa[:-1]]
        if len(sa) == 1:
            return [sb[:-2] + sb[-1:]]
        batch = broadcast(sa[:-2], sb[:-2])
        return [batch + (sa[-2], sb[-1])]
    if t == "Concat":
        if any(s is None for s in shapes):
            return [None]
        ax = a.get("axis", 0) % len(shapes[0])
        out = list(shapes[0])
        out[ax] = sum(s[ax] for s in shapes)
        return [tuple(out)]
    if t == "Transpose":
        s = shapes[0]
        if s is None:
            return [None]
        perm = a.get("perm") or list(reversed(range(len(s))))
        return [tuple(s[p] for p in perm)]
    if t == "Reshape":
        s, target = shapes[0], g.tensors[op.inputs[1]].value
        if s is None or target is None:
            return [None]
        dims = [s[i] if d == 0 else int(d) for i, d in enumerate(target.tolist())]
        if -1 in dims:
            known = int(np.prod([d for d in dims if d != -1], dtype=np.int64))
            dims[dims.index(-1)] = int(np.prod(s, dtype=np.int64)) // max(known, 1)
        return [tuple(dims)]
    if t == "Pad":
        s = shapes[0]
        pads = a.get("pads")
        if pads is None and len(op.inputs) > 1 and op.inputs[1]:
            v = g.tensors[op.inputs[1]].value
            pads = None if v is None else v.tolist()
        if s is None or pads is None:
            return [None]
        n = len(s)
        return [tuple(d + int(pads[i]) + int(pads[n + i]) for i, d in enumerate(s))]
    if t == "Slice":
        return [slice_shape(g, op, shapes[0])]
    if t in ("Squeeze", "Unsqueeze"):
        s = shapes[0]
        axes = a.get("axes")
        if axes is None and len(op.inputs) > 1 and op.inputs[1]:
            v = g.tensors[op.inputs[1]].value
            axes = None if v is None else v.reshape(-1).tolist()
        if s is None or (axes is None and t == "Unsqueeze"):
            return [None]
        if t == "Squeeze":
            drop = {x % len(s) for x in axes} if axes is not None else {i for i, d in enumerate(s) if d == 1}
            return [tuple(d for i, d in enumerate(s) if i not in drop)]
        out = list(s)
        for ax in sorted(int(x) % (len(s) + len(axes)) for x in axes):
            out.insert(ax, 1)
        return [tuple(out)]
    if t in ("Expand", "Tile"):
        s = shapes[0]
        v = g.tensors[op.inputs[1]].value if len(op.inputs) > 1 and op.inputs[1] else None
        if s is None or v is None:
            return [None]
        v = [int(x) for x in v.reshape(-1).tolist()]
        if t == "Tile":
            return [tuple(d * r for d, r in zip(s, v))] if len(v) == len(s) else [None]
        return [broadcast(s, tuple(v))]
    if t in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin"):
        s = shapes[0]
        if s is None:
            return [None]
        axes = a.get("axes")
        if axes is None and len(op.inputs) > 1 and op.inputs[1]:
            v = g.tensors[op.inputs[1]].value
            axes = None if v is None else v.tolist()
        axes = [x % len(s) for x in (axes if axes is not None else range(len(s)))]
        keep = a.get("keepdims", 1)
        return [tuple((1 if i in axes else d) for i, d in enumerate(s) if keep or i not in axes)]
    return [None] * len(op.outputs)


def slice_shape(g: Graph, op: Op, s: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """The output shape of an ONNX Slice (opset 1: attributes; 10+: inputs) with constant
    starts, ends, axes and steps; None when any is computed at run time."""
    if s is None:
        return None
    a = op.attrs
    if "starts" in a:
        starts, ends = a["starts"], a["ends"]
        axes, steps = a.get("axes"), None
    else:
        vals = []
        for i in range(1, 5):
            name = op.inputs[i] if i < len(op.inputs) else ""
            if not name:
                vals.append(None)
                continue
            v = g.tensors[name].value
            if v is None:
                return None
            vals.append([int(x) for x in v.reshape(-1).tolist()])
        starts, ends, axes, steps = vals
        if starts is None or ends is None:
            return None
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    out = list(s)
    for st, en, ax, step in zip(starts, ends, axes, steps):
        ax %= len(s)
        d = s[ax]
        if step == 0:
            return None
        st = st + d if st < 0 else st
        en = en + d if en < 0 else en
        if step > 0:
            st, en = min(max(st, 0), d), min(max(en, 0), d)
            out[ax] = max(0, -(-(en - st) // step))
        else:
            st, en = min(max(st, 0), d - 1), min(max(en, -1), d - 1)
            out[ax] = max(0, -(-(st - en) // -step))
    return tuple(out)


def infer_op_shapes(g: Graph, op: Op) -> None:
    """Fill in the output shapes of ``op`` that ONNX inference left unknown."""
    if all(g.tensors[o].shape is not None for o in op.outputs if o):
        return
    try:
        results = _rule(g, op)
    except Exception:
        return
    for out, shape in zip(op.outputs, results):
        if out and shape is not None and g.tensors[out].shape is None:
            g.tensors[out].shape = tuple(int(d) for d in shape)
