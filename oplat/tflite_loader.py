"""Load a .tflite flatbuffer into the IR (ONNX op vocabulary, NCHW shapes).

Reads the file with LiteRT's generated schema (``ai_edge_litert.schema_py_generated``;
``tflite_runtime`` is not needed). Fused activations become explicit activation ops so
the lowering can link them exactly as it does for ONNX graphs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import ModelLoadError
from .extras import MissingExtra
from .ir import Graph, Op, Tensor
from .shape_rules import spatial_pads
from .validate import check_graph

MAX_CONST_VALUE = 4096


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema  # type: ignore
    except ImportError:  # pragma: no cover - older installs
        try:
            from tflite_runtime import schema_py_generated as schema  # type: ignore
        except ImportError:
            raise MissingExtra(".tflite files (reading or writing) need ai-edge-litert, which is not installed: "
                               "pip install 'oplat[tflite]'") from None
    return schema


_DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8",
           10: "float64"}


def _name(x) -> str:
    """A tensor name as text (invalid UTF-8 escaped, so output stays strict JSON)."""
    return x.decode("utf-8", "backslashreplace") if isinstance(x, bytes) else str(x)


def _to_nchw(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0], shape[3], shape[1], shape[2]) if len(shape) == 4 else shape


def _axis_to_nchw(axis: int, rank: int) -> int:
    if rank != 4:
        return axis
    return {0: 0, 1: 2, 2: 3, 3: 1}[axis % 4]


def load_tflite(path: str | os.PathLike) -> Graph:
    """Load a TFLite model (first subgraph) into a shape-complete :class:`Graph`.

    The flatbuffer is untrusted: every offset, index and size read from it is checked,
    and a file that is not what it claims to be is one :class:`ModelLoadError`."""
    schema = _schema()
    p = Path(path)
    data = p.read_bytes()
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
        sub = model.subgraphs[0]
    except Exception as e:  # noqa: BLE001 - any failure to unpack means a corrupt file
        raise ModelLoadError(f"{p}: corrupt or truncated TFLite file ({type(e).__name__})") from None
    try:
        g = _build(schema, model, sub, p)
    except _Corrupt as e:
        raise ModelLoadError(f"{p}: corrupt TFLite file ({e})") from None
    except (IndexError, KeyError, ValueError, TypeError, AttributeError, OverflowError) as e:
        raise ModelLoadError(f"{p}: corrupt TFLite file ({type(e).__name__} while reading it)") from None
    return g


class _Corrupt(Exception):
    pass


def _index(i, n: int, what: str) -> int:
    if not isinstance(i, (int, np.integer)) or not -1 <= i < n:
        raise _Corrupt(f"{what} index {i} out of range (0..{n - 1})")
    return int(i)


def _build(schema, model, sub, p: Path) -> Graph:
    if sub.tensors is None or sub.operators is None or sub.inputs is None or sub.outputs is None:
        raise _Corrupt("its subgraph lacks tensors, operators, inputs or outputs")
    buffers = model.buffers or []
    codes = model.operatorCodes or []
    ops_by_code = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    g = Graph(p.stem)
    g.meta["format"] = "tflite"
    names = []
    for i, t in enumerate(sub.tensors):
        name = _name(t.name) or f"t{i}"
        if name in g.tensors:
            name = f"{name}:{i}"
        names.append(name)
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        if any(d < 0 for d in (t.shapeSignature if t.shapeSignature is not None else [])):
            shape = tuple(max(d, 1) for d in shape)
        if any(d < 0 for d in shape):
            raise _Corrupt(f"tensor {name!r} has a negative dim {list(shape)}")
        buf = buffers[t.buffer] if 0 <= t.buffer < len(buffers) else None
        const = bool(buf is not None and buf.data is not None and len(buf.data) > 0)
        dtype = _DTYPES.get(t.type, "float32")
        value = None
        if const and int(np.prod(shape or (1,))) <= MAX_CONST_VALUE:
            raw = bytes(bytearray(buf.data))
            if len(raw) != int(np.prod(shape or (1,))) * np.dtype(dtype).itemsize:
                raise _Corrupt(f"tensor {name!r}: {len(raw)} bytes of data for the shape {list(shape)}")
            value = np.frombuffer(raw, dtype=dtype).reshape(shape)
        g.add_tensor(Tensor(name, shape, dtype, const, value))
    n = len(names)
    g.inputs = [names[_index(i, n, "input")] for i in sub.inputs]
    g.outputs = [names[_index(i, n, "output")] for i in sub.outputs]
    for oi, op in enumerate(sub.operators):
        code = codes[_index(op.opcodeIndex, len(codes), "operator code")]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        opname = ops_by_code.get(builtin, f"BUILTIN_{builtin}")
        ins = [names[_index(i, n, "tensor")] if i >= 0 else "" for i in (op.inputs if op.inputs is not None else [])]
        outs = [names[_index(i, n, "tensor")] for i in (op.outputs if op.outputs is not None else [])]
        if not outs or any(not o for o in outs):
            raise _Corrupt(f"operator {oi} ({opname}) has no valid output")
        for ops in _translate(g, opname, op.builtinOptions, ins, outs, f"{opname}_{oi}"):
            g.add_op(ops)
    # activations are NHWC in the file; the IR is NCHW
    for t in g.tensors.values():
        if t.shape is not None and len(t.shape) == 4 and not t.const:
            t.shape = _to_nchw(t.shape)
    g.meta["folded_marked"] = True  # TFLite ops never compute constants
    check_graph(g, str(p))
    return g


_ACT = {1: ("Relu", {}), 3: ("Clip", {"min": 0.0, "max": 6.0}), 2: ("Clip", {"min": -1.0, "max": 1.0}),
        4: ("Tanh", {})}


def _with_activation(g: Graph, op: Op, options) -> list[Op]:
    act = getattr(options, "fusedActivationFunction", 0) if options is not None else 0
    if not act or act not in _ACT:
        return [op]
    out = op.outputs[0]
    pre = f"{out}:pre_act"
    g.add_tensor(Tensor(pre, g.tensors[out].shape, g.tensors[out].dtype))
    op.outputs = [pre]
    typ, attrs = _ACT[act]
    return [op, Op(f"{op.name}:act", typ, [pre], [out], dict(attrs))]


def _padding(options, in_hw, k, s, d=(1, 1)) -> list[int]:
    mode = "SAME_UPPER" if getattr(options, "padding", 1) == 0 else "VALID"
    return spatial_pads({"auto_pad": mode}, in_hw, k, s, d)


def _translate(g: Graph, name: str, o, ins: list[str], outs: list[str], opname: str) -> list[Op]:
    t = g.tensors
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        x, w = t[ins[0]].shape, t[ins[1]].shape  # NHWC, [O,KH,KW,I] or [1,KH,KW,C*M]
        s = (o.strideH, o.strideW)
        d = (getattr(o, "dilationHFactor", 1) or 1, getattr(o, "dilationWFactor", 1) or 1)
        k = (w[1], w[2])
        pads = _padding(o, (x[1], x[2]), k, s, d)
        if name == "CONV_2D":
            t[ins[1]].shape = (w[0], w[3], w[1], w[2])
            group = 1
        else:
            t[ins[1]].shape = (w[3], 1, w[1], w[2])
            group = x[3]
        op = Op(opname, "Conv", ins, outs, {"kernel_shape": list(k), "strides": list(s), "dilations": list(d),
                                            "pads": pads, "group": group})
        return _with_activation(g, op, o)
    if name == "FULLY_CONNECTED":
        op = Op(opname, "Gemm", ins, outs, {"transB": 1})
        return _with_activation(g, op, o)
    if name in ("ADD", "MUL", "SUB", "DIV"):
        op = Op(opname, name.capitalize(), ins, outs)
        return _with_activation(g, op, o)
    if name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        x = t[ins[0]].shape
        k, s = (o.filterHeight, o.filterWidth), (o.strideH, o.strideW)
        op = Op(opname, "AveragePool" if name.startswith("AVERAGE") else "MaxPool", ins, outs,
                {"kernel_shape": list(k), "strides": list(s), "pads": _padding(o, (x[1], x[2]), k, s)})
        return _with_activation(g, op, o)
    if name == "MEAN":
        axes = t[ins[1]].value
        rank = len(t[ins[0]].shape or ())
        ax = [_axis_to_nchw(int(a), rank) for a in (axes.reshape(-1).tolist() if axes is not None else [1, 2])]
        return [Op(opname, "ReduceMean", ins[:1], outs, {"axes": ax, "keepdims": int(bool(getattr(o, "keepDims", 0)))})]
    if name == "CONCATENATION":
        rank = len(t[ins[0]].shape or ())
        op = Op(opname, "Concat", ins, outs, {"axis": _axis_to_nchw(o.axis, rank)})
        return _with_activation(g, op, o)
    simple = {"RELU": ("Relu", {}), "RELU6": ("Clip", {"min": 0.0, "max": 6.0}), "LOGISTIC": ("Sigmoid", {}),
              "HARD_SWISH": ("HardSwish", {}), "TANH": ("Tanh", {}), "SOFTMAX": ("Softmax", {"axis": -1}),
              "RESHAPE": ("Reshape", {}), "SQUEEZE": ("Reshape", {}), "EXPAND_DIMS": ("Reshape", {}),
              "TRANSPOSE": ("Transpose", {}), "PAD": ("Pad", {}), "PADV2": ("Pad", {}),
              "DEQUANTIZE": ("Cast", {}), "QUANTIZE": ("Cast", {}), "BATCH_MATMUL": ("MatMul", {}),
              "GELU": ("Gelu", {}), "RESIZE_BILINEAR": ("Resize", {}), "RESIZE_NEAREST_NEIGHBOR": ("Resize", {}),
              "STRIDED_SLICE": ("Slice", {}), "SLICE": ("Slice", {}), "GATHER": ("Gather", {}),
              "LEAKY_RELU": ("LeakyRelu", {}), "PRELU": ("PRelu", {}), "MAXIMUM": ("Max", {}),
              "MINIMUM": ("Min", {}), "SPLIT": ("Split", {}), "SQRT": ("Sqrt", {}), "EXP": ("Exp", {})}
    if name in simple:
        typ, attrs = simple[name]
        if typ == "Reshape":
            ins = ins[:1]
        if typ == "Pad" and len(ins) > 1 and t[ins[1]].value is not None:
            pv = t[ins[1]].value.astype(int)  # [[before, after]] per NHWC dim
            if pv.shape == (4, 2):
                order = [0, 3, 1, 2]
                attrs = {"pads": [int(pv[i, 0]) for i in order] + [int(pv[i, 1]) for i in order]}
            ins = ins[:1]
        return [Op(opname, typ, ins, outs, dict(attrs))]
    return [Op(opname, f"tflite:{name}", ins, outs)]
