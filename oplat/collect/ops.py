"""Single-kernel models: one op (with its fused activation / residual add) per ONNX file.

A kernel *config* is a plain dict in the dataset's parameter vocabulary:
``{"kernel": "CONV_2D", "Input_shape": 56, "Input_channel": 64, "Filter": 64,
"Kernel": 3, "Stride": 1, "Group": 1, "linked": ["relu"]}``. ``config_id`` hashes it,
``onnx_single_op`` builds the model that runs exactly that kernel.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

KERNELS = ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_GROUP", "FULLY_CONNECTED", "MEAN", "MAX_POOL_2D",
           "AVERAGE_POOL_2D", "CONCATENATION", "ADD", "MUL", "RELU", "HARD_SWISH", "SIGMOID", "BATCH_MATMUL",
           "SOFTMAX", "LAYER_NORM", "TRANSPOSE", "GELU", "HARD_SIGMOID", "SPLIT", "SLICE", "GATHER", "RESIZE",
           "REDUCE", "SWISH")
# data-movement kernels (XNNPACK/TFLite run them as kernels of their own); configs give
# ``Input_dims`` and: SPLIT ``Axis``/``Parts``; SLICE ``Output_dims`` (sliced from 0);
# GATHER ``Axis``/``Indices`` (0: one scalar index, the axis drops); RESIZE ``Output_dims``/``Mode``;
# REDUCE ``Output_dims`` (a mean over the axes that become 1, dims kept: token or channel means)
LAYOUT_KERNELS = ("SPLIT", "SLICE", "GATHER", "RESIZE", "REDUCE")
UNARY = {"RELU": "Relu", "HARD_SWISH": "HardSwish", "SIGMOID": "Sigmoid", "GELU": "Gelu", "HARD_SIGMOID": "HardSigmoid"}


def config_id(cfg: dict[str, Any]) -> str:
    """Stable short id of a config (what resumable collection keys on)."""
    blob = json.dumps(cfg, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _w(rng: np.random.Generator, shape, name: str) -> onnx.TensorProto:
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else int(shape[0])
    return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(max(fan_in, 1))).astype(np.float32), name)


def _act_nodes(linked: list[str], x: str, residual: str | None) -> tuple[list[onnx.NodeProto], list, str]:
    nodes, inits = [], []
    for i, tok in enumerate(linked):
        y = f"link{i}"
        if tok == "add":
            if residual is None:
                raise ValueError("an 'add' link needs a residual input")
            nodes.append(helper.make_node("Add", [x, residual], [y]))
        elif tok == "relu":
            nodes.append(helper.make_node("Relu", [x], [y]))
        elif tok == "relu6":
            inits += [numpy_helper.from_array(np.array(0, np.float32), f"lo{i}"),
                      numpy_helper.from_array(np.array(6, np.float32), f"hi{i}")]
            nodes.append(helper.make_node("Clip", [x, f"lo{i}", f"hi{i}"], [y]))
        elif tok == "hard_swish":
            nodes.append(helper.make_node("HardSwish", [x], [y]))
        elif tok == "sigmoid":
            nodes.append(helper.make_node("Sigmoid", [x], [y]))
        elif tok == "hard_sigmoid":
            nodes.append(helper.make_node("HardSigmoid", [x], [y], alpha=1 / 6, beta=0.5))
        elif tok == "gelu":
            nodes.append(helper.make_node("Gelu", [x], [y], domain="com.microsoft"))
        else:
            raise ValueError(f"no builder for linked op {tok!r}")
        x = y
    return nodes, inits, x


def onnx_single_op(cfg: dict[str, Any], seed: int = 0) -> onnx.ModelProto:
    """The ONNX model running one kernel config (input name ``x``, output ``y``)."""
    rng = np.random.default_rng(seed)
    k = cfg["kernel"]
    h = int(cfg.get("Input_shape", 1))
    c = int(cfg.get("Input_channel", 1))
    linked = list(cfg.get("linked", []))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, h])]
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    residual = None
    extra_outputs: list[str] = []  # more graph outputs than ``y`` (a split's other parts)
    if k in ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_GROUP"):
        ks, s = int(cfg.get("Kernel", 1)), int(cfg.get("Stride", 1))
        if k == "DEPTHWISE_CONV_2D":
            g, f = c, c * int(cfg.get("Filter", 1) or 1)
        else:
            g, f = int(cfg.get("Group", 1) or 1), int(cfg["Filter"])
        p = ks // 2
        inits += [_w(rng, (f, c // g, ks, ks), "w"), numpy_helper.from_array(np.zeros(f, np.float32), "b")]
        nodes.append(helper.make_node("Conv", ["x", "w", "b"], ["conv"], kernel_shape=[ks, ks], strides=[s, s],
                                      pads=[p] * 4, group=g))
        out_h = (h + 2 * p - ks) // s + 1
        if "add" in linked:
            residual = "r"
            inputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, f, out_h, out_h]))
        more, more_inits, y = _act_nodes(linked, "conv", residual)
    elif k == "FULLY_CONNECTED":
        rows = int(cfg.get("Rows", 1))
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, c])]
        f = int(cfg["Filter"])
        inits += [_w(rng, (f, c), "w"), numpy_helper.from_array(np.zeros(f, np.float32), "b")]
        nodes.append(helper.make_node("Gemm", ["x", "w", "b"], ["fc"], transB=1))
        if "add" in linked:
            residual = "r"
            inputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [rows, f]))
        more, more_inits, y = _act_nodes(linked, "fc", residual)
    elif k == "MEAN":
        nodes.append(helper.make_node("GlobalAveragePool", ["x"], ["y0"]))
        more, more_inits, y = [], [], "y0"
    elif k in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        ks, s = int(cfg.get("Kernel", 3)), int(cfg.get("Stride", 2))
        p = ks // 2 if s == 1 else 0
        nodes.append(helper.make_node("MaxPool" if k == "MAX_POOL_2D" else "AveragePool", ["x"], ["y0"],
                                      kernel_shape=[ks, ks], strides=[s, s], pads=[p] * 4))
        more, more_inits, y = [], [], "y0"
    elif k == "CONCATENATION":
        n = int(cfg.get("Kernel", 2))
        total = int(cfg.get("Filter", 2 * c))
        rest = max(1, (total - c) // max(n - 1, 1))
        inputs += [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, [1, rest, h, h]) for i in range(1, n)]
        nodes.append(helper.make_node("Concat", ["x"] + [f"x{i}" for i in range(1, n)], ["y0"], axis=1))
        more, more_inits, y = [], [], "y0"
    elif k in ("ADD", "MUL"):
        dims = [int(d) for d in cfg.get("Input_dims", [1, c, h, h])]
        other = [int(d) for d in cfg.get("Other_dims", dims)]
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims),
                  helper.make_tensor_value_info("x1", TensorProto.FLOAT, other)]
        nodes.append(helper.make_node(k.capitalize(), ["x", "x1"], ["y0"]))
        more, more_inits, y = _act_nodes(linked, "y0", None)  # a ResNet's add + relu
    elif k == "BATCH_MATMUL":
        b, m, kk, n = (int(cfg[x]) for x in ("Batch", "M", "K", "N"))
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [b, m, kk]),
                  helper.make_tensor_value_info("x1", TensorProto.FLOAT, [b, kk, n])]
        nodes.append(helper.make_node("MatMul", ["x", "x1"], ["y0"]))
        more, more_inits, y = [], [], "y0"
    elif k in ("SOFTMAX", "LAYER_NORM"):
        r, cols = int(cfg["Rows"]), int(cfg["Cols"])
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [r, cols])]
        if k == "SOFTMAX":
            nodes.append(helper.make_node("Softmax", ["x"], ["y0"], axis=-1))
        else:
            inits += [numpy_helper.from_array(np.ones(cols, np.float32), "g"),
                      numpy_helper.from_array(np.zeros(cols, np.float32), "bb")]
            nodes.append(helper.make_node("LayerNormalization", ["x", "g", "bb"], ["y0"], axis=-1))
        more, more_inits, y = [], [], "y0"
    elif k == "TRANSPOSE":
        dims = [int(d) for d in cfg["Input_dims"]]
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)]
        nodes.append(helper.make_node("Transpose", ["x"], ["y0"], perm=[int(p) for p in cfg["Perm"]]))
        more, more_inits, y = [], [], "y0"
    elif k in LAYOUT_KERNELS:
        dims = [int(d) for d in cfg["Input_dims"]]
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)]
        more, more_inits, y, extra_outputs = [], [], "y0", _layout_nodes(cfg, dims, nodes, inits)
    elif k == "SWISH":  # x * sigmoid(x): onnxruntime fuses the pair into QuickGelu
        dims = [int(d) for d in cfg["Input_dims"]]
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)]
        nodes += [helper.make_node("Sigmoid", ["x"], ["s0"]), helper.make_node("Mul", ["x", "s0"], ["y0"])]
        more, more_inits, y = [], [], "y0"
    elif k in UNARY:
        dims = [int(d) for d in cfg.get("Input_dims", [1, c, h, h])]
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)]
        nodes.append(helper.make_node(UNARY[k], ["x"], ["y0"], domain="com.microsoft" if k == "GELU" else ""))
        more, more_inits, y = [], [], "y0"
    else:
        raise ValueError(f"no single-op builder for kernel {k!r} (known: {', '.join(KERNELS)})")
    nodes += more
    inits += more_inits
    nodes.append(helper.make_node("Identity", [y], ["y"]))
    rank = {"FULLY_CONNECTED": 2, "SOFTMAX": 2, "LAYER_NORM": 2, "BATCH_MATMUL": 3}.get(k, 4)
    if (k in ("TRANSPOSE", "ADD", "MUL", "SWISH") or k in UNARY or k in LAYOUT_KERNELS) and "Input_dims" in cfg:
        rank = len(cfg["Input_dims"]) - (k == "GATHER" and not int(cfg.get("Indices", 0)))
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, [f"d{i}" for i in range(rank)])
            for o in ["y"] + extra_outputs]
    graph = helper.make_graph(nodes, f"single_{k.lower()}", inputs, outs, inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    return m


def _layout_nodes(cfg: dict[str, Any], dims: list[int], nodes: list, inits: list) -> list[str]:
    """Append the node of a data-movement config reading ``x`` and writing ``y0`` (and,
    for a split, more parts: returned as extra graph outputs so none is dead code)."""
    k = cfg["kernel"]
    rank = len(dims)
    if k == "SPLIT":
        axis, parts = int(cfg.get("Axis", 1)) % rank, int(cfg.get("Parts", 2))
        size = [dims[axis] // parts] * parts
        size[-1] += dims[axis] - sum(size)
        if min(size) < 1:
            raise ValueError(f"cannot split {dims[axis]} into {parts} parts")
        inits.append(numpy_helper.from_array(np.array(size, np.int64), "split"))
        names = ["y0"] + [f"part{i}" for i in range(1, parts)]
        nodes.append(helper.make_node("Split", ["x", "split"], names, axis=axis))
        return names[1:]
    if k == "SLICE":
        out = [int(d) for d in cfg["Output_dims"]]
        if len(out) != rank or any(not 0 < o <= d for o, d in zip(out, dims)):
            raise ValueError(f"slice {out} does not fit in {dims}")
        inits += [numpy_helper.from_array(np.zeros(rank, np.int64), "starts"),
                  numpy_helper.from_array(np.array(out, np.int64), "ends")]
        nodes.append(helper.make_node("Slice", ["x", "starts", "ends"], ["y0"]))
    elif k == "GATHER":
        axis, n = int(cfg.get("Axis", 1)) % rank, int(cfg.get("Indices", 0))
        if n > dims[axis]:
            raise ValueError(f"{n} indices along an axis of {dims[axis]}")
        idx = np.array(0, np.int64) if n == 0 else np.arange(n, dtype=np.int64)
        inits.append(numpy_helper.from_array(idx, "idx"))
        nodes.append(helper.make_node("Gather", ["x", "idx"], ["y0"], axis=axis))
    elif k == "REDUCE":
        out = [int(d) for d in cfg["Output_dims"]]
        axes = [i for i, (o, d) in enumerate(zip(out, dims)) if o == 1 and d != 1]
        if len(out) != rank or not axes or any(o != d for i, (o, d) in enumerate(zip(out, dims)) if i not in axes):
            raise ValueError(f"reduce {dims} -> {out}: only whole axes reduce to 1")
        nodes.append(helper.make_node("ReduceMean", ["x"], ["y0"], axes=axes, keepdims=1))
    elif k == "RESIZE":
        out = [int(d) for d in cfg["Output_dims"]]
        if rank != 4 or out[:2] != dims[:2]:
            raise ValueError(f"resize {dims} -> {out}: only the two spatial dims of a 4-D tensor change")
        inits.append(numpy_helper.from_array(np.array(out, np.int64), "sizes"))
        nodes.append(helper.make_node("Resize", ["x", "", "", "sizes"], ["y0"], mode=cfg.get("Mode", "nearest")))
    return []
