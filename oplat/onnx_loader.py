"""Load an ONNX file into the IR with every tensor shape inferred.

Works on graph-only files (weights absent): initializer dims are enough. Small
constants (shape math: Reshape targets, axes, pads) are evaluated with numpy so the
ops computing them can be folded away like a converter would.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from .errors import ModelLoadError, ShapeError
from .ir import Graph, Op, Tensor
from .onnx_utils import node_names, text
from .shape_rules import infer_op_shapes
from .validate import check_graph, check_onnx

MAX_CONST_VALUE = 4096  # elements; larger constants keep only their shape


def parse_input_shapes(specs: Sequence[str] | None) -> dict[str, tuple[int, ...]]:
    """Parse ``name=1x3x224x224`` strings (a bare ``1x3x224x224`` applies to the only input)."""
    out: dict[str, tuple[int, ...]] = {}
    for spec in specs or []:
        name, _, dims = spec.rpartition("=")
        try:
            shape = tuple(int(d) for d in dims.lower().replace(",", "x").split("x"))
        except ValueError:
            raise ShapeError(f"bad --input-shape {spec!r}: expected name=1x3x224x224") from None
        if any(d <= 0 for d in shape):
            raise ShapeError(f"bad --input-shape {spec!r}: dims must be positive")
        out[name] = shape
    return out


def read_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """Read a model without its external data, with a clear error for bad files."""
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"model file not found: {p}")
    data = p.read_bytes()
    if not data:
        raise ModelLoadError(f"{p}: empty file, not an ONNX model")
    try:
        model = onnx.load_from_string(data)
    except Exception as e:  # protobuf DecodeError and friends
        raise ModelLoadError(f"{p}: corrupt or truncated ONNX file ({type(e).__name__})") from None
    if model.ir_version <= 0 or not model.graph.node or not model.graph.output:
        raise ModelLoadError(f"{p}: not an ONNX model (no graph found)")
    return model


def load_onnx(path_or_model: str | os.PathLike | onnx.ModelProto,
              input_shapes: Mapping[str, Sequence[int]] | None = None) -> Graph:
    """Load an ONNX model (path or ModelProto) into a shape-complete :class:`Graph`."""
    if isinstance(path_or_model, onnx.ModelProto):
        model, label = path_or_model, path_or_model.graph.name or "model"
    else:
        model, label = read_onnx(path_or_model), str(path_or_model)
    model = _with_input_shapes(model, dict(input_shapes or {}), label)
    check_onnx(model, label)
    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except Exception as e:
        raise ModelLoadError(f"{label}: ONNX shape inference failed: {str(e).splitlines()[0]}") from None
    g = _to_graph(inferred, Path(label).stem)
    check_graph(g, label)
    missing = [t for op in g.ops() for t in op.outputs if t and g.tensors[t].shape is None]
    if missing:
        op = g.producer(missing[0])
        raise ShapeError(f"{label}: cannot infer the shape of {missing[0]!r} "
                         f"(output of {op.type if op else '?'} {op.name if op else ''})")
    return g


def _with_input_shapes(model: onnx.ModelProto, shapes: dict[str, Sequence[int]],
                       label: str) -> onnx.ModelProto:
    inits = {t.name for t in model.graph.initializer}
    real_inputs = [i for i in model.graph.input if i.name not in inits]
    if "" in shapes:
        if len(real_inputs) != 1:
            raise ShapeError(f"{label}: the model has {len(real_inputs)} inputs; name one in --input-shape")
        shapes[real_inputs[0].name] = shapes.pop("")
    unknown = set(shapes) - {i.name for i in real_inputs}
    if unknown:
        raise ShapeError(f"{label}: --input-shape names no input of the model: {sorted(unknown)[0]!r} "
                         f"(inputs: {', '.join(i.name for i in real_inputs)})")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    if shapes:
        # shapes the exporter recorded for the old input size (torch's dynamo exporter writes
        # every intermediate's) would be kept by shape inference: the model would be priced
        # at the size it was exported at. Inference recomputes them from the new inputs.
        del m.graph.value_info[:]
        for out in m.graph.output:
            out.type.tensor_type.ClearField("shape")
    for inp in m.graph.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim
        if inp.name in shapes:
            new = shapes[inp.name]
            if len(dims) and len(new) != len(dims):
                raise ShapeError(f"{label}: input {inp.name!r} has rank {len(dims)}, "
                                 f"--input-shape gives {len(new)} dims")
            inp.type.tensor_type.shape.ClearField("dim")
            for d in new:
                inp.type.tensor_type.shape.dim.add().dim_value = int(d)
            continue
        if not inp.type.tensor_type.HasField("shape") or any(d.dim_value <= 0 for d in dims):
            shown = "x".join(d.dim_param or (str(d.dim_value) if d.dim_value > 0 else "?") for d in dims)
            raise ShapeError(f"{label}: input {inp.name!r} has a dynamic shape [{shown or 'unknown'}]; "
                             f"give it with --input-shape {inp.name}=1x3x224x224")
    return m


def _dtype(elem_type: int) -> str:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name
    except Exception:
        return "float32"


def _value_info_shape(vi: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
    return None if any(d < 0 for d in dims) else tuple(dims)


def _to_graph(model: onnx.ModelProto, name: str) -> Graph:
    g = Graph(text(model.graph.name) or name)
    g.meta["producer"] = text(model.producer_name)
    g.meta["opset"] = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    for t in model.graph.initializer:
        value = None
        if t.data_location != onnx.TensorProto.EXTERNAL and np.prod(t.dims, dtype=np.int64) <= MAX_CONST_VALUE:
            try:
                value = numpy_helper.to_array(t)
            except (ValueError, TypeError) as e:
                raise ModelLoadError(f"{name}: initializer {text(t.name)!r}: its data does not fit its dims "
                                     f"{list(t.dims)} ({str(e).splitlines()[0]})") from None
        g.add_tensor(Tensor(text(t.name), tuple(int(d) for d in t.dims), _dtype(t.data_type), True, value))
    for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        if text(vi.name) in g.tensors:
            continue
        g.add_tensor(Tensor(text(vi.name), _value_info_shape(vi), _dtype(vi.type.tensor_type.elem_type)))
    inits = {text(t.name) for t in model.graph.initializer}
    g.inputs = [text(i.name) for i in model.graph.input if text(i.name) not in inits]
    g.outputs = [text(o.name) for o in model.graph.output]
    for node, op_name in zip(model.graph.node, node_names(model.graph.node)):
        attrs = {text(a.name): _attr(a) for a in node.attribute}
        op = Op(op_name, text(node.op_type), [text(x) for x in node.input], [text(x) for x in node.output], attrs)
        for t in op.outputs:
            g.tensors.setdefault(t, Tensor(t, None))
        for t in op.inputs:
            if t:
                g.tensors.setdefault(t, Tensor(t, None))
        g.add_op(op)
    assumed = []
    for op in g.ops():  # one pass: constants computed upstream feed shape rules downstream
        _fold_constant(g, op)
        infer_op_shapes(g, op)
        if _assume_shape_preserving(g, op):
            assumed.append(op.name)
        outs = [t for t in op.outputs if t]
        op.folded = bool(outs) and all(g.tensors[t].const for t in outs)
    g.meta["folded_marked"] = True
    g.meta["assumed_shapes"] = assumed
    return g


def _assume_shape_preserving(g: Graph, op: Op) -> bool:
    """An op nobody can type (custom domain, ...) with one data input and one output is
    taken to keep its input's shape, so the rest of the graph can still be predicted;
    the op itself is reported as unsupported by the lowering."""
    outs = [t for t in op.outputs if t]
    if len(outs) != 1 or g.tensors[outs[0]].shape is not None:
        return False
    if onnx.defs.has(op.type):  # a standard op whose shape is unknown is not assumed: a
        return False             # Slice with computed bounds would be priced at the wrong size
    data = [t for t in op.inputs if t and not g.tensors[t].const]
    if len(data) != 1 or g.tensors[data[0]].shape is None:
        return False
    src = g.tensors[data[0]]
    g.tensors[outs[0]].shape = src.shape
    if g.tensors[outs[0]].dtype == "float32":
        g.tensors[outs[0]].dtype = src.dtype
    return True


def _attr(a: onnx.AttributeProto):
    if a.type == onnx.AttributeProto.TENSOR:
        return numpy_helper.to_array(a.t) if a.t.data_location != onnx.TensorProto.EXTERNAL else None
    if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
        return None  # control flow bodies are not lowered
    v = onnx.helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [x.decode(errors="replace") for x in v]
    return v


# constant folding of shape math ---------------------------------------------------
def _fold_constant(g: Graph, op: Op) -> None:
    """Mark op outputs constant when every input is; evaluate small ones with numpy."""
    if op.type == "Constant":
        value = op.attrs.get("value")
        if value is None:
            for k in ("value_float", "value_int"):
                if k in op.attrs:
                    value = np.array(op.attrs[k])
            for k in ("value_floats", "value_ints"):
                if k in op.attrs:
                    value = np.array(op.attrs[k])
        t = g.tensors[op.outputs[0]]
        t.const = True
        if value is not None:
            t.value = value
            t.shape = tuple(value.shape)
            t.dtype = value.dtype.name
        return
    runtime_inputs = [i for i in op.inputs if i and not g.tensors[i].const]
    if op.type == "Shape":
        src = g.tensors[op.inputs[0]]
        if src.shape is not None:
            start, end = op.attrs.get("start", 0), op.attrs.get("end")
            _set_const(g, op.outputs[0], np.array(src.shape[start:end], dtype=np.int64))
        return
    if runtime_inputs or op.type in ("RandomNormal", "RandomUniform"):
        return
    values = [g.tensors[i].value if i else None for i in op.inputs]
    result = None
    if all(v is not None for v, i in zip(values, op.inputs) if i):
        try:
            result = _eval(op, values)
        except Exception:
            result = None
    for k, out in enumerate(op.outputs):
        t = g.tensors[out]
        t.const = True
        if k == 0 and result is not None and result.size <= MAX_CONST_VALUE:
            _set_const(g, out, result)


def _set_const(g: Graph, name: str, value: np.ndarray) -> None:
    t = g.tensors[name]
    t.const, t.value, t.shape, t.dtype = True, value, tuple(value.shape), value.dtype.name


def _eval(op: Op, v: list) -> np.ndarray | None:
    t, a = op.type, op.attrs
    if t == "Identity":
        return v[0]
    if t == "Cast":
        return v[0].astype(onnx.helper.tensor_dtype_to_np_dtype(a["to"]))
    if t == "Gather":
        return np.take(v[0], v[1], axis=a.get("axis", 0))
    if t == "Unsqueeze":
        axes = a.get("axes") if len(v) < 2 else v[1].tolist()
        out = v[0]
        for ax in sorted(int(x) % (out.ndim + len(axes)) for x in axes):
            out = np.expand_dims(out, ax)
        return out
    if t == "Squeeze":
        axes = a.get("axes") if len(v) < 2 else v[1].tolist()
        return np.squeeze(v[0], axis=tuple(axes) if axes is not None else None)
    if t == "Concat":
        return np.concatenate([x for x in v if x is not None], axis=a.get("axis", 0))
    binary = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": None,
              "Equal": np.equal, "Less": np.less, "Greater": np.greater, "Max": np.maximum,
              "Min": np.minimum, "Pow": np.power}
    if t in binary:
        if t == "Div":
            if np.issubdtype(v[0].dtype, np.integer):
                return (v[0] // v[1]).astype(v[0].dtype)
            return v[0] / v[1]
        return binary[t](v[0], v[1])
    if t == "Slice":
        data, starts, ends = v[0], v[1], v[2]
        axes = v[3] if len(v) > 3 and v[3] is not None else np.arange(len(starts))
        steps = v[4] if len(v) > 4 and v[4] is not None else np.ones(len(starts), dtype=np.int64)
        sl = [slice(None)] * data.ndim
        for s, e, ax, st in zip(starts, ends, axes, steps):
            sl[int(ax)] = slice(int(s), int(min(e, 2**62)) if e > -2**62 else None, int(st))
        return data[tuple(sl)]
    if t == "Reshape":
        shape = [d if d != 0 else v[0].shape[i] for i, d in enumerate(v[1].tolist())]
        return v[0].reshape(shape)
    if t == "ConstantOfShape":
        val = a.get("value")
        fill = val.reshape(-1)[0] if val is not None else np.float32(0)
        return np.full(v[0].astype(np.int64).tolist(), fill)
    if t == "Range":
        return np.arange(v[0], v[1], v[2])
    if t in ("Sqrt", "Neg", "Abs", "Floor", "Ceil", "Reciprocal", "Exp"):
        f = {"Sqrt": np.sqrt, "Neg": np.negative, "Abs": np.abs, "Floor": np.floor,
             "Ceil": np.ceil, "Reciprocal": np.reciprocal, "Exp": np.exp}[t]
        return f(v[0])
    if t == "Transpose":
        return np.transpose(v[0], a.get("perm"))
    return None
