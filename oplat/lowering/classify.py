"""Kernel classification: which kernel (type, implementation, parameters) a framework runs
for each node of the working graph: convolution flavour (direct, grouped, depthwise, 1x1 on
1x1 as fully connected, Winograd 4x4->6x6 where the GPU family takes it), pools, global
pools as MEAN, matmuls, row kernels and glue."""

from __future__ import annotations

import math
from typing import Any

from ..shape_rules import spatial_pads
from .kernels import Kernel
from .work import Node, Work, clip_bounds_of

GPU_FAMILIES = ("adreno", "mali", "powervr", "apple")


# --- delegate passes ------------------------------------------------------------
ACT_TOKENS = {"Relu": "relu", "HardSwish": "hard_swish", "Sigmoid": "sigmoid", "Swish": "swish",
              "Tanh": "tanh", "LeakyRelu": "leaky_relu", "PRelu": "prelu", "Elu": "elu",
              "Gelu": "gelu", "Erf": "erf", "Abs": "abs", "Neg": "neg", "Sqrt": "sqrt",
              "Exp": "exp", "Log": "log", "HardSigmoid": "hard_sigmoid", "Min": "minimum",
              "Max": "maximum", "Pow": "pow"}


BINARY_TOKENS = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "mul"}  # div by const -> mul


RESHAPES = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")


def _nhwc(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(H, W, C) of an NCHW or (N, C) tensor."""
    if len(shape) == 4:
        return shape[2], shape[3], shape[1]
    if len(shape) == 2:
        return 1, 1, shape[1]
    if len(shape) == 3:
        return 1, shape[1], shape[2]
    return 1, 1, math.prod(shape or (1,))


def winograd_suitable(k: int, s: int, d: int, c_in: int, c_out: int, h_out: int, w_out: int,
                      family: str) -> bool:
    """TFLite GPU picks Winograd 4x4->6x6 for 3x3 stride-1 convs with enough tiles and channels.

    The thresholds reproduce the dataset's kernel column exactly (732 of 732 3x3 stride-1
    convs on Mali, PowerVR and Apple); Adreno never picks it in TFLite 2.10.
    """
    if family in ("adreno", "cpu") or k != 3 or s != 1 or d != 1:
        return False
    tiles = math.ceil(h_out / 4) * math.ceil(w_out / 4)
    return math.ceil(c_in / 4) >= 16 and math.ceil(c_out / 4) >= 16 and tiles >= 32


def _as_2d(x: tuple[int, ...], y: tuple[int, ...], wt: tuple[int, ...], attrs: dict[str, Any]):
    """A Conv1d as the conv over an image of height 1 that TFLite converts it to (CONV_2D
    of a 1 x L input, kernel 1 x k): its shapes and attributes in 2-D."""
    if len(x) != 3:
        return x, y, attrs
    k = list(attrs.get("kernel_shape") or wt[2:])
    a = dict(attrs, kernel_shape=[1, *k[:1]], strides=[1, *(attrs.get("strides") or [1])[:1]],
             dilations=[1, *(attrs.get("dilations") or [1])[:1]])
    if "pads" in attrs:
        p = list(attrs["pads"])
        a["pads"] = [0, p[0], 0, p[1]]
    return (x[0], x[1], 1, x[2]), (y[0], y[1], 1, y[2]), a


def _conv_kernel(w: Work, n: Node, family: str) -> Kernel:
    x, wt = w.shape(n.inputs[0]), w.shape(n.inputs[1])
    y = w.shape(n.outputs[0])
    x, y, attrs = _as_2d(x, y, wt, n.attrs)
    c_in, h_in, w_in = x[1], x[2], x[3]
    c_out, h_out, w_out = y[1], y[2], y[3]
    kh, kw = (attrs.get("kernel_shape") or wt[2:])[:2]
    sh, sw = (attrs.get("strides") or [1, 1])[:2]
    dil = (attrs.get("dilations") or [1, 1])[0]
    group = int(attrs.get("group", 1))
    pads = spatial_pads(attrs, (h_in, w_in), (kh, kw), (sh, sw))
    if n.pad:  # an explicit Pad op in front
        pads = [a + b for a, b in zip(pads, n.pad)]
    pad_kept = _pad_is_kept(w, n, group, c_in, pads)
    h_rec = h_in + (pads[0] + pads[2] if pad_kept else 0)
    w_rec = w_in + (pads[1] + pads[3] if pad_kept else 0)
    flops = 2 * h_out * w_out * c_out * (c_in // group) * kh * kw
    depthwise = group > 1 and group == c_in and c_out % c_in == 0
    params: dict[str, Any] = {"Input_shape": h_rec, "Input_w": w_rec, "Input_channel": c_in,
                              "Output_shape": h_out, "Output_w": w_out, "Stride": max(sh, sw),
                              "Kernel": kh, "Kernel_w": kw, "Filter": c_out, "Group": group,
                              "FLOPS": flops, "Dilation": dil}
    if depthwise:
        params.update(Filter=c_out // c_in, Group=1)
        return Kernel(n.name, "DEPTHWISE_CONV_2D", "depthwise_convolution", params)
    if group > 1:
        return Kernel(n.name, "CONV_2D_GROUP", "convolution_2d_grouped", params)
    if h_rec == 1 and w_rec == 1 and kh == 1 and kw == 1:
        return Kernel(n.name, "CONV_2D", "fully_connected", params)
    # Winograd F(4x4, 3x3) takes square 3x3 kernels only
    impl = ("winograd" if kh == kw and winograd_suitable(kh, sh, dil, c_in, c_out, h_out, w_out, family)
            else "convolution_2d")
    return Kernel(n.name, "CONV_2D", impl, params)


def _pad_is_kept(w: Work, n: Node, group: int, c_in: int, pads: list[int]) -> bool:
    """Whether the TFLite model keeps a PAD in front of this conv (recorded input is padded).

    Depthwise convs keep an explicit PAD. Other convs take SAME padding when it
    reproduces theirs, except in pre-activation networks (BatchNorm -> ReLU -> Conv
    blocks, as in PreResNet and DenseNet), whose converted models build every conv from
    a plain padded conv.
    """
    if not any(pads):
        return False
    if group > 1 and group == c_in:
        return True
    return bool(n.pad) or (group == 1 and w.pre_activation)


def _pool_kernel(w: Work, n: Node) -> Kernel:
    x, y = w.shape(n.inputs[0]), w.shape(n.outputs[0])
    h_in, w_in, c = _nhwc(x)
    h_out, w_out, _ = _nhwc(y)
    global_avg = (n.type == "AveragePool" and tuple(n.attrs.get("kernel_shape", ())) == (h_in, w_in)
                  and not any(n.attrs.get("pads", [0])) and not n.pad)
    if n.type in ("GlobalAveragePool", "ReduceMean") or global_avg:
        # the converter turns an average pool over the whole map into MEAN
        params = {"Input_shape": h_in, "Input_w": w_in, "Input_channel": c, "Output_shape": c,
                  "Stride": 1, "Kernel": 0, "FLOPS": h_in * w_in * c}
        return Kernel(n.name, "MEAN", "mean", params)
    kh, kw = n.attrs["kernel_shape"][:2]
    sh = (n.attrs.get("strides") or [1, 1])[0]
    pads = spatial_pads(n.attrs, (h_in, w_in), (kh, kw), (sh, sh))
    if n.pad:
        pads = [a + b for a, b in zip(pads, n.pad)]
    # Symmetric padding that SAME reproduces is absorbed into the pool; a ceil-mode window
    # that needs extra input is padded explicitly on both sides (as the tf2cv models do).
    if n.pad:
        h_rec, w_rec = h_in + pads[0] + pads[2], w_in + pads[1] + pads[3]
    elif (h_out - 1) * sh + kh > h_in + pads[0] + pads[2]:
        h_rec, w_rec = h_in + 2, w_in + 2
    else:
        h_rec, w_rec = h_in, w_in
    params = {"Input_shape": h_rec, "Input_w": w_rec, "Input_channel": c, "Output_shape": h_out,
              "Output_w": w_out, "Stride": sh, "Kernel": kh, "FLOPS": h_out * w_out * c * kh * kw}
    typ = "MAX_POOL_2D" if n.type == "MaxPool" else "AVERAGE_POOL_2D"
    impl = "mean" if (typ == "AVERAGE_POOL_2D" and h_out == 1 and w_out == 1) else "pooling_2d"
    return Kernel(n.name, typ, impl, params)


def _fc_kernel(w: Work, n: Node) -> Kernel:
    a, y = w.shape(n.inputs[0]), w.shape(n.outputs[0])
    b = w.shape(n.inputs[1])
    if n.type == "Gemm":
        k_in = a[0] if n.attrs.get("transA", 0) else a[-1]
    else:
        k_in = a[-1]
    n_out = y[-1]
    rows = math.prod(y[:-1] or (1,))
    params = {"Input_shape": rows, "Input_channel": k_in, "Output_shape": rows, "Filter": n_out,
              "FLOPS": 2 * rows * k_in * n_out, "Weights_const": int(w.const(n.inputs[1]))}
    del b
    return Kernel(n.name, "FULLY_CONNECTED", "fully_connected", params)


def _concat_kernel(w: Work, n: Node) -> Kernel:
    ins = [t for t in n.inputs if t]
    x, y = w.shape(ins[0]), w.shape(n.outputs[0])
    h, wd, c0 = _nhwc(x)
    ho, wo, c = _nhwc(y)
    params = {"Input_shape": h, "Input_w": wd, "Input_channel": c0, "Output_shape": ho,
              "Kernel": len(ins), "Filter": c, "Axis": n.attrs.get("axis", 1)}
    return Kernel(n.name, "CONCATENATION", "concat", params)


def _elementwise_token(w: Work, n: Node) -> str | None:
    if n.type == "Clip":
        bounds = clip_bounds_of(w, n)
        return "relu" if bounds is not None and bounds[0] == 0.0 else "minimum"
    if n.type == "BatchNormAffine":
        return "mul+add"
    if n.type in BINARY_TOKENS:
        return BINARY_TOKENS[n.type]
    return ACT_TOKENS.get(n.type)


def classify(w: Work, n: Node, family: str) -> Kernel | None:
    """Map one working node to a kernel (None when the backend has no kernel for it)."""
    t = n.type
    if t == "Conv":
        k = _conv_kernel(w, n, family)
    elif t in ("MaxPool", "AveragePool", "GlobalAveragePool"):
        k = _pool_kernel(w, n)
    elif t == "ReduceMean" and _is_spatial_mean(w, n):
        k = _pool_kernel(w, n)
    elif t == "Gemm" or (t == "MatMul" and w.const(n.inputs[1])):
        k = _fc_kernel(w, n)
    elif t == "MatMul":
        k = _bmm_kernel(w, n)
    elif t == "Concat":
        k = _concat_kernel(w, n)
    elif t in RESHAPES:
        k = _glue(w, n, "RESHAPE")
    elif t == "Transpose":
        k = _glue(w, n, "TRANSPOSE")
        dims = w.shape(n.inputs[0])
        k.params["Input_dims"] = tuple(dims)
        k.params["Perm"] = tuple(n.attrs.get("perm") or reversed(range(len(dims))))
    elif t == "Pad":
        k = _glue(w, n, "PAD")
    elif t in ("Resize", "Upsample"):
        k = _glue(w, n, "RESIZE")
        k.params["Input_dims"] = tuple(w.shape(n.inputs[0]))
        mode = n.attrs.get("mode", "nearest")
        k.params["Mode"] = mode.decode() if isinstance(mode, bytes) else mode
    elif t == "Slice":
        k = _glue(w, n, "SLICE")
        k.params["Input_dims"] = tuple(w.shape(n.inputs[0]))
    elif t == "Split":
        k = _glue(w, n, "SPLIT")
        k.params.update(Input_dims=tuple(w.shape(n.inputs[0])), Axis=int(n.attrs.get("axis", 0)),
                        Parts=len(n.outputs))
    elif t == "Softmax":
        k = _rows_kernel(w, n, "SOFTMAX", "softmax")
    elif t in ("ReduceMean", "ReduceSum", "ReduceMax"):
        k = _glue(w, n, "REDUCE")
        k.params["Input_dims"] = tuple(w.shape(n.inputs[0]))
    elif t == "GlobalMaxPool":
        k = _glue(w, n, "REDUCE_MAX")
    elif t == "Gather":
        k = _glue(w, n, "GATHER")
        dims, out = tuple(w.shape(n.inputs[0])), k.params["Output_shape"]
        axis = int(n.attrs.get("axis", 0)) % max(len(dims), 1)
        k.params.update(Input_dims=dims, Axis=axis,
                        Indices=0 if len(out) < len(dims) else int(out[axis]) if axis < len(out) else 1)
    elif t in ("LayerNormalization",):
        k = _rows_kernel(w, n, "LAYER_NORM", "layer_norm")
    elif t in ("GroupNormalization", "InstanceNormalization"):
        k = _group_norm_kernel(w, n)
    else:
        tok = _elementwise_token(w, n)
        if tok is None:
            return None
        k = _glue(w, n, tok.upper().replace("+", "_"))
        k.params["token"] = tok
        if k.type in ("ADD", "MUL") and len(n.inputs) == 2:
            k.params["Input_dims"] = tuple(w.shape(n.inputs[0]))
            k.params["Other_dims"] = tuple(w.shape(n.inputs[1]))
    # the working node dies with this lowering, so its lists can be handed over as they are
    k.sources = n.sources
    k.inputs = [t for t in n.inputs if t]
    k.outputs = n.outputs
    k.linked = n.linked
    return k


def _is_spatial_mean(w: Work, n: Node) -> bool:
    x = w.shape(n.inputs[0])
    axes = n.attrs.get("axes")
    if axes is None and len(n.inputs) > 1 and n.inputs[1]:
        v = w.value(n.inputs[1])
        axes = None if v is None else v.tolist()
    return len(x) == 4 and axes is not None and sorted(a % 4 for a in axes) == [2, 3]


def _bmm_kernel(w: Work, n: Node) -> Kernel:
    """MatMul of two runtime tensors (attention scores and context)."""
    a, y = w.shape(n.inputs[0]), w.shape(n.outputs[0])
    batch = math.prod(y[:-2] or (1,))
    m, k_dim, n_dim = (y[-2] if len(y) > 1 else 1), a[-1], y[-1]
    params = {"Batch": batch, "M": m, "K": k_dim, "N": n_dim, "FLOPS": 2 * batch * m * k_dim * n_dim}
    return Kernel(n.name, "BATCH_MATMUL", "batch_matmul", params)


def _rows_kernel(w: Work, n: Node, typ: str, impl: str) -> Kernel:
    """Row-wise kernels over the last axis (softmax, layer norm)."""
    x = w.shape(n.inputs[0])
    params = {"Rows": math.prod(x[:-1] or (1,)), "Cols": x[-1] if x else 1}
    return Kernel(n.name, typ, impl, params)


def _group_norm_kernel(w: Work, n: Node) -> Kernel:
    """Group (and instance) norm: a row-wise normalisation whose rows are the (batch,
    group) pairs and whose columns are each group's channels times the spatial size."""
    x = w.shape(n.inputs[0])
    channels = x[1] if len(x) > 1 else 1
    groups = int(n.attrs.get("num_groups", channels)) if n.type == "GroupNormalization" else channels
    total = math.prod(x or (1,))
    rows = (x[0] if x else 1) * groups
    return Kernel(n.name, "LAYER_NORM", "layer_norm", {"Rows": rows, "Cols": total // max(rows, 1)})


def _glue(w: Work, n: Node, typ: str) -> Kernel:
    tensors = w.g.tensors
    out = tensors[n.outputs[0]].shape or ()
    in_elems = 0
    n_in = 0
    for t in n.inputs:
        if t:
            ti = tensors[t]
            if not ti.const:
                in_elems += math.prod(ti.shape or (1,))
                n_in += 1
    params = {"Output_elements": math.prod(out or (1,)), "Input_elements": in_elems,
              "Output_shape": tuple(out), "Inputs": n_in}
    return Kernel(n.name, typ, typ.lower(), params)
