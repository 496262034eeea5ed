"""Kernel detector for the TFLite GPU delegate (OpenCL on Android, Metal on iOS).

Each rule is a small named pass over a working list of nodes. The passes reproduce
what the TFLite converter and the GPU delegate do to a graph:

converter:  constant folding, BatchNorm folded into conv, bias/scale constants folded,
            HardSwish/Swish recognised, explicit Pad kept or absorbed into the conv
delegate:   convolution flavour (direct, grouped, depthwise, 1x1-on-1x1 as fully
            connected, Winograd 4x4->6x6 on Mali/PowerVR/Apple), global pools as MEAN,
            element-wise ops linked into the producing kernel
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..ir import Graph
from ..shape_rules import spatial_pads
from .kernels import LAYOUT, Kernel, LoweredModel

GPU_FAMILIES = ("adreno", "mali", "powervr", "apple")


@dataclass(eq=False, slots=True)  # identity equality; slots: thousands per model
class Node:
    """A node of the working graph during lowering."""

    name: str
    type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    linked: list[str] = field(default_factory=list)
    pad: list[int] | None = None  # explicit pad absorbed: [top, left, bottom, right]
    dead: bool = False


class Work:
    """Mutable node list with producer/consumer maps kept up to date incrementally."""

    def __init__(self, g: Graph, nodes: list[Node]) -> None:
        self.g = g
        self.nodes = nodes
        self.unsupported: list[dict[str, str]] = []
        self.pre_activation = False
        self.reindex()

    def reindex(self) -> None:
        """Rebuild the maps from scratch (after bulk edits of ``nodes``)."""
        self.nodes = [n for n in self.nodes if not n.dead]
        self.producer: dict[str, Node] = {}
        self.consumers: dict[str, list[Node]] = {}
        for n in self.nodes:
            self._link(n)

    def _link(self, n: Node) -> None:
        for t in n.inputs:
            self.consumers.setdefault(t, []).append(n)
        for t in n.outputs:
            self.producer[t] = n

    def _unlink(self, n: Node) -> None:
        for t in n.inputs:
            cs = self.consumers.get(t)
            if cs:
                for i, c in enumerate(cs):
                    if c is n:
                        del cs[i]
                        break
        for t in n.outputs:
            if self.producer.get(t) is n:
                del self.producer[t]

    def rewire(self, n: Node, inputs: list[str] | None = None, outputs: list[str] | None = None) -> None:
        """Change the tensors a node reads or writes, keeping the maps right."""
        self._unlink(n)
        if inputs is not None:
            n.inputs = list(inputs)
        if outputs is not None:
            n.outputs = list(outputs)
        self._link(n)

    def delete(self, n: Node) -> None:
        """Drop a node (its list slot is compacted away later)."""
        self._unlink(n)
        n.dead = True

    def compact(self) -> None:
        self.nodes = [n for n in self.nodes if not n.dead]

    def shape(self, t: str) -> tuple[int, ...]:
        return self.g.tensors[t].shape or ()

    def const(self, t: str) -> bool:
        return self.g.is_const(t)

    def value(self, t: str) -> np.ndarray | None:
        return self.g.tensors[t].value

    def runtime_inputs(self, n: Node) -> list[str]:
        return [t for t in n.inputs if t and not self.const(t)]

    def only_consumer(self, t: str) -> Node | None:
        cs = self.consumers.get(t, [])
        if len(cs) != 1 or t in self.g.outputs:
            return None
        return cs[0]

    def remove(self, n: Node, replacement: str) -> None:
        """Delete ``n`` and let its consumers read ``replacement`` instead of its output."""
        out = n.outputs[0]
        cons = list(self.consumers.get(out, []))
        self.delete(n)
        for c in cons:
            self.rewire(c, inputs=[replacement if t == out else t for t in c.inputs])
        if out in self.g.outputs:
            p = self.producer.get(replacement)
            if p is not None:
                rcons = list(self.consumers.get(replacement, []))
                self.rewire(p, outputs=[out if t == replacement else t for t in p.outputs])
                for c in rcons:
                    self.rewire(c, inputs=[out if t == replacement else t for t in c.inputs])

    def absorb(self, host: Node, n: Node) -> None:
        """Merge ``n`` into ``host``: host now writes n's output."""
        self.delete(n)
        self.rewire(host, outputs=list(n.outputs))
        host.sources += n.sources


def _scalar(w: Work, t: str) -> float | None:
    v = w.value(t)
    if v is None or v.size != 1:
        return None
    return float(v.reshape(-1)[0])


def _clip_bounds(w: Work, n: Node) -> tuple[float | None, float | None]:
    lo = n.attrs.get("min")
    hi = n.attrs.get("max")
    if len(n.inputs) > 1 and n.inputs[1]:
        lo = _scalar(w, n.inputs[1])
    if len(n.inputs) > 2 and n.inputs[2]:
        hi = _scalar(w, n.inputs[2])
    return lo, hi


# --- converter passes ------------------------------------------------------------
def _all_const_outputs(g: Graph, outputs: list[str]) -> bool:
    outs = [t for t in outputs if t]
    return bool(outs) and all(g.is_const(t) for t in outs)


def bypass_identity(w: Work) -> None:
    """Identity, Dropout and no-op Cast do not survive conversion."""
    for n in list(w.nodes):
        if n.type in ("Identity", "Dropout") or (n.type == "Cast" and
                                                 w.g.tensors[n.inputs[0]].dtype == w.g.tensors[n.outputs[0]].dtype):
            w.remove(n, n.inputs[0])


def _is_add_const(w: Work, n: Node | None, value: float) -> str | None:
    """If ``n`` is ``x + value`` return x."""
    if n is None or n.type != "Add":
        return None
    a, b = n.inputs[0], n.inputs[1]
    for x, c in ((a, b), (b, a)):
        if w.const(c) and _scalar(w, c) == value and not w.const(x):
            return x
    return None


def _relu6_of(w: Work, t: str) -> Node | None:
    n = w.producer.get(t)
    if n is not None and n.type == "Clip" and _clip_bounds(w, n) == (0.0, 6.0):
        return n
    return None


def _div_or_mul_by(w: Work, n: Node | None, value: float) -> str | None:
    """If ``n`` is ``x / value`` (or ``x * 1/value``) return x."""
    if n is None:
        return None
    if n.type == "Div" and w.const(n.inputs[1]):
        s = _scalar(w, n.inputs[1])
        if s is not None and abs(s - value) <= 1e-5 * abs(value):
            return n.inputs[0]
    if n.type == "Mul":
        for x, c in ((n.inputs[0], n.inputs[1]), (n.inputs[1], n.inputs[0])):
            s = _scalar(w, c) if w.const(c) else None
            if s is not None and abs(s - 1.0 / value) < 1e-6:
                return x
    return None


def _single_consumer(w: Work, n: Node) -> Node | None:
    cs = w.consumers.get(n.outputs[0], [])
    return cs[0] if len(cs) == 1 else None


def _other_input(n: Node, t: str) -> str | None:
    if n.type != "Mul" or t not in n.inputs:
        return None
    rest = [i for i in n.inputs if i != t]
    return rest[0] if rest else t


def fuse_hard_swish(w: Work) -> None:
    """x * relu6(x + 3) / 6 (either association, /6 or *1/6) becomes one HardSwish op."""
    for add in list(w.nodes):
        if add.dead:
            continue
        x = _is_add_const(w, add, 3.0)
        clip = _single_consumer(w, add) if x is not None else None
        if clip is None or _relu6_of(w, clip.outputs[0]) is not clip:
            continue
        nxt = _single_consumer(w, clip)
        if nxt is None:
            continue
        if _other_input(nxt, clip.outputs[0]) == x:        # Mul(x, clip) then / 6
            last = _single_consumer(w, nxt)
            if last is None or _div_or_mul_by(w, last, 6.0) != nxt.outputs[0]:
                continue
            chain = [add, clip, nxt, last]
        elif _div_or_mul_by(w, nxt, 6.0) == clip.outputs[0]:  # clip / 6 then Mul(x, .)
            last = _single_consumer(w, nxt)
            if last is None or _other_input(last, nxt.outputs[0]) != x:
                continue
            chain = [add, clip, nxt, last]
        else:
            continue
        for c in chain[:-1]:
            w.delete(c)
        last.type, last.attrs = "HardSwish", {}
        w.rewire(last, inputs=[x])
        last.sources = sum((c.sources for c in chain[:-1]), []) + last.sources


def fuse_gelu(w: Work) -> None:
    """x * 0.5 * (1 + erf(x / sqrt(2))), in the associations exporters emit, becomes Gelu."""
    for erf in list(w.nodes):
        if erf.dead or erf.type != "Erf":
            continue
        scale = w.producer.get(erf.inputs[0])
        if scale is None or len(w.consumers.get(scale.outputs[0], [])) != 1:
            continue
        x = _div_or_mul_by(w, scale, 2 ** 0.5)
        add = _single_consumer(w, erf)
        if x is None or _is_add_const(w, add, 1.0) != erf.outputs[0]:
            continue
        chain, cur, got_x, got_half = [scale, erf, add], add, False, False
        for _ in range(2):
            m = _single_consumer(w, cur)
            if m is None or m.type != "Mul":
                break
            other = _other_input(m, cur.outputs[0])
            if other == x and not got_x:
                got_x = True
            elif other is not None and w.const(other) and _scalar(w, other) == 0.5 and not got_half:
                got_half = True
            else:
                break
            chain.append(m)
            cur = m
        if not (got_x and got_half):
            continue
        # x * 0.5 may also come first: Mul(Mul(x, 0.5), 1 + erf)
        last = chain[-1]
        for c in chain[:-1]:
            w.delete(c)
        last.type, last.attrs = "Gelu", {}
        w.rewire(last, inputs=[x])
        last.sources = sum((c.sources for c in chain[:-1]), []) + last.sources


def fuse_swish(w: Work) -> None:
    """x * sigmoid(x) becomes one Swish op."""
    for n in list(w.nodes):
        if n.type != "Mul" or n.dead:
            continue
        a, b = n.inputs[0], n.inputs[1]
        for x, y in ((a, b), (b, a)):
            s = w.producer.get(y)
            if s is not None and s.type == "Sigmoid" and s.inputs[0] == x and len(w.consumers[y]) == 1:
                w.delete(s)
                n.type = "Swish"
                w.rewire(n, inputs=[x])
                n.sources = s.sources + n.sources
                break


def _host_for_folding(w: Work, t: str) -> Node | None:
    """Conv/Gemm producing ``t`` for nobody else: a constant after it folds into weights."""
    p = w.producer.get(t)
    if p is None or p.type not in ("Conv", "Gemm", "MatMul", "ConvTranspose") or p.linked:
        return None
    if w.only_consumer(t) is None:
        return None
    if p.type == "MatMul" and not w.const(p.inputs[1]):
        return None
    return p


def fold_batchnorm(w: Work) -> None:
    """BatchNorm after a conv folds into its weights; elsewhere it becomes MUL + ADD."""
    for n in list(w.nodes):
        if n.type != "BatchNormalization":
            continue
        host = _host_for_folding(w, n.inputs[0])
        if host is not None:
            w.absorb(host, n)
        else:
            n.type, n.attrs = "BatchNormAffine", {}


def fold_affine_constants(w: Work) -> None:
    """Add/Sub/Mul/Div by a per-channel constant right after a conv fold into bias/weights."""
    for n in list(w.nodes):  # topological order: chains (conv + add + mul) fold one by one
        if n.dead or n.type not in ("Add", "Sub", "Mul", "Div") or len(n.inputs) != 2:
            continue
        rt = w.runtime_inputs(n)
        if len(rt) != 1 or (n.type in ("Sub", "Div") and rt[0] != n.inputs[0]):
            continue
        const = n.inputs[1] if rt[0] == n.inputs[0] else n.inputs[0]
        host = _host_for_folding(w, rt[0])
        if host is None:
            continue
        out_shape = w.shape(n.outputs[0])
        channels = out_shape[-1] if host.type in ("MatMul", "Gemm") else (out_shape[1] if len(out_shape) > 1 else 1)
        if math.prod(w.shape(const) or (1,)) in (1, channels):
            w.absorb(host, n)


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


def _conv_kernel(w: Work, n: Node, family: str) -> Kernel:
    x, wt = w.shape(n.inputs[0]), w.shape(n.inputs[1])
    y = w.shape(n.outputs[0])
    c_in, h_in, w_in = x[1], x[2], x[3]
    c_out, h_out, w_out = y[1], y[2], y[3]
    kh, kw = (n.attrs.get("kernel_shape") or wt[2:])[:2]
    sh, sw = (n.attrs.get("strides") or [1, 1])[:2]
    dil = (n.attrs.get("dilations") or [1, 1])[0]
    group = int(n.attrs.get("group", 1))
    pads = spatial_pads(n.attrs, (h_in, w_in), (kh, kw), (sh, sw))
    if n.pad:  # an explicit Pad op in front
        pads = [a + b for a, b in zip(pads, n.pad)]
    pad_kept = _pad_is_kept(w, n, group, c_in, pads)
    h_rec = h_in + (pads[0] + pads[2] if pad_kept else 0)
    w_rec = w_in + (pads[1] + pads[3] if pad_kept else 0)
    flops = 2 * h_out * w_out * c_out * (c_in // group) * kh * kw
    depthwise = group > 1 and group == c_in and c_out % c_in == 0
    params: dict[str, Any] = {"Input_shape": h_rec, "Input_w": w_rec, "Input_channel": c_in,
                              "Output_shape": h_out, "Output_w": w_out, "Stride": sh,
                              "Kernel": kh, "Kernel_w": kw, "Filter": c_out, "Group": group,
                              "FLOPS": flops, "Dilation": dil}
    if depthwise:
        params.update(Filter=c_out // c_in, Group=1)
        return Kernel(n.name, "DEPTHWISE_CONV_2D", "depthwise_convolution", params)
    if group > 1:
        return Kernel(n.name, "CONV_2D_GROUP", "convolution_2d_grouped", params)
    if h_rec == 1 and w_rec == 1 and kh == 1 and kw == 1:
        return Kernel(n.name, "CONV_2D", "fully_connected", params)
    impl = "winograd" if winograd_suitable(kh, sh, dil, c_in, c_out, h_out, w_out, family) else "convolution_2d"
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


def detect_pre_activation(w: Work) -> None:
    """Mark the network as pre-activation style if any conv reads ReLU(BatchNorm(x))."""
    w.pre_activation = any(n.type == "Conv" and _is_pre_activated(w, n.inputs[0]) for n in w.nodes if not n.dead)


def _is_pre_activated(w: Work, t: str) -> bool:
    act = w.producer.get(t)
    if act is None or act.type not in ("Relu", "Clip"):
        return False
    bn = w.producer.get(act.inputs[0])
    return bn is not None and bn.type == "BatchNormAffine"


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
        lo, hi = _clip_bounds(w, n)
        return "relu" if lo == 0.0 else "minimum"
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


LINK_HOSTS = frozenset(("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_GROUP", "FULLY_CONNECTED",
                        "CONCATENATION", "MAX_POOL_2D", "AVERAGE_POOL_2D"))
_LAYOUT = frozenset(LAYOUT)


def link_elementwise(kernels: list[Kernel], graph_outputs: list[str],
                     hosts: frozenset[str] | None = None,
                     tokens: frozenset[str] | None = None) -> list[Kernel]:
    """The GPU delegate merges an element-wise op into the kernel producing its input.

    Conditions (as in the delegate's MergeNodes): the host's output feeds only that op,
    the op's output has the host's shape, and the op's other inputs were computed
    before the host ran. Chains merge repeatedly (conv + add + relu). ``hosts`` and
    ``tokens`` restrict which kernels absorb and which ops are absorbed (the CPU path
    only fuses clamping activations, see :func:`lower_tflite_cpu`).
    """
    hosts = LINK_HOSTS if hosts is None else hosts
    order = {t: i for i, k in enumerate(kernels) for t in k.outputs}
    consumers: dict[str, list[int]] = {}
    for i, k in enumerate(kernels):
        for t in k.inputs:
            consumers.setdefault(t, []).append(i)
    outputs = set(graph_outputs)
    dead: set[int] = set()
    for i, host in enumerate(kernels):
        if host.type not in hosts or i in dead or host.impl == "mean":
            continue
        host_shape = host.params.get("_out_shape", ())
        while True:
            out = host.outputs[0]
            cs = consumers.get(out)
            if not cs or out in outputs:
                break
            if len(cs) != 1:
                cs = [c for c in cs if c not in dead]
                if len(cs) != 1:
                    break
            e = kernels[cs[0]]
            tok = e.params.get("token")
            if tok is None or e.type in _LAYOUT or e.params["Output_shape"] != host_shape:
                break
            if tokens is not None and tok not in tokens:
                break
            if any(t != out and order.get(t, -1) > i for t in e.inputs):
                break
            host.linked += tok.split("+")
            host.sources += e.sources
            host.outputs = e.outputs
            for t in e.outputs:
                order[t] = i
            dead.add(cs[0])
    return [k for i, k in enumerate(kernels) if i not in dead]


# (constant-only ops never enter the working list: lower_tflite_gpu filters them)
PASSES: list[Callable[[Work], None]] = [
    bypass_identity, fuse_hard_swish, fuse_swish, fuse_gelu, fold_batchnorm,
    fold_affine_constants,
]


def absorb_explicit_pads(w: Work) -> None:
    """A zero Pad in front of a conv or pool becomes that op's padding (recorded on it)."""
    for n in list(w.nodes):
        if n.type != "Pad" or n.dead:
            continue
        mode = n.attrs.get("mode", "constant")
        pads = n.attrs.get("pads")
        if pads is None and len(n.inputs) > 1:
            v = w.value(n.inputs[1])
            pads = None if v is None else [int(x) for x in v.tolist()]
        cval = _scalar(w, n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] else 0.0
        if mode != "constant" or pads is None or len(pads) != 8 or cval not in (0.0, None):
            continue
        if any(pads[i] for i in (0, 1, 4, 5)):
            continue  # padding batch or channels is a real op
        cons = w.consumers.get(n.outputs[0], [])
        if len(cons) != 1 or cons[0].type not in ("Conv", "MaxPool", "AveragePool"):
            continue
        c = cons[0]
        c.pad = [pads[2], pads[3], pads[6], pads[7]]
        c.sources = n.sources + c.sources
        w.remove(n, n.inputs[0])


def lower_tflite_gpu(g: Graph, gpu_family: str = "adreno") -> LoweredModel:
    """Lower an IR graph to the kernels TFLite's GPU delegate runs."""
    if gpu_family not in GPU_FAMILIES:
        raise ValueError(f"unknown GPU family {gpu_family!r} (known: {', '.join(GPU_FAMILIES)})")
    return _lower(g, gpu_family, "tflite-gpu")


# TFLite's converter fuses clamping activations into the op's fused_activation_function
# (conv, fully connected, add, mul); XNNPACK runs everything else as a node of its own.
CPU_LINK_HOSTS = frozenset(("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_GROUP", "FULLY_CONNECTED",
                            "ADD", "MUL"))
CPU_LINK_TOKENS = frozenset(("relu",))


def lower_tflite_cpu(g: Graph, gpu_family: str = "cpu") -> LoweredModel:
    """Lower an IR graph to the kernels TFLite's CPU path (XNNPACK delegate) runs.

    Same converter rules as the GPU path (BatchNorm and constants folded, HardSwish
    recognised, pads absorbed), but convolutions are never Winograd (XNNPACK runs
    IGEMM/GEMM and dedicated depthwise microkernels) and only ReLU/ReLU6 fuse into their
    producer: residual adds, HardSwish and sigmoid gates are kernels of their own.
    """
    lm = _lower(g, "cpu", "tflite-cpu", CPU_LINK_HOSTS, CPU_LINK_TOKENS)
    for k in lm.kernels:
        k.impl = _cpu_impl(k)
    return lm


def _cpu_impl(k: Kernel) -> str:
    """XNNPACK's microkernel family for one kernel (selects the CPU regressor)."""
    p = k.params
    if k.type == "CONV_2D" and k.impl != "fully_connected":
        if (p.get("Input_channel") or 8) <= 4:
            return "conv_stem"
        if p.get("Kernel") == 1 and p.get("Kernel_w", 1) == 1:
            return "gemm_1x1"
        return "igemm"
    if k.type == "DEPTHWISE_CONV_2D" and (p.get("Stride") or 1) > 1:
        return "depthwise_s2"
    if k.type == "FULLY_CONNECTED" and p.get("Kernel") is None and (p.get("Input_shape") or 1) > 1:
        return "fc_tokens"
    if k.type == "RESHAPE" or k.is_row or k.type in ("ADD", "MUL", "TRANSPOSE"):
        return k.impl
    return "layout" if k.type in LAYOUT else "eltwise"


TORCH_HOSTS = frozenset(("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_GROUP", "FULLY_CONNECTED"))


def lower_torch_gpu(g: Graph, gpu_family: str = "vulkan") -> LoweredModel:
    """Lower an IR graph to the kernels PyTorch Mobile's GPU backends run.

    ``optimize_for_mobile`` folds BatchNorm into the preceding conv (the passes above) and
    fuses a ReLU/ReLU6 that directly follows a conv or linear layer into its prepacked
    context; every other op is a kernel of its own (relu after an add, hardswish,
    sigmoid, add, mul, an unfolded batch norm). Vulkan's conv kernel is chosen by shape
    (``conv2d_pw_2x2`` for 1x1, ``conv2d_dw_3x3``/``_5x5`` for depthwise, ``conv2d``
    otherwise); Metal runs ``prepack_conv2d`` for all.
    """
    metal = gpu_family == "metal"
    lm = _lower(g, "cpu", "torch-gpu", TORCH_HOSTS, frozenset(("relu",)))
    for k in lm.kernels:
        k.impl = _torch_impl(k, metal)
    return lm


def _torch_impl(k: Kernel, metal: bool) -> str:
    p = k.params
    if k.type in ("CONV_2D", "CONV_2D_GROUP", "DEPTHWISE_CONV_2D"):
        if metal:
            return "prepack_conv2d"
        ks = p.get("Kernel")
        if k.type == "DEPTHWISE_CONV_2D":
            return {3: "conv2d_dw_3x3", 5: "conv2d_dw_5x5"}.get(ks, "conv2d_dw")
        if k.type == "CONV_2D" and ks == 1 and p.get("Kernel_w", 1) == 1:
            return "conv2d_pw_2x2"
        return "conv2d"
    if k.type == "FULLY_CONNECTED":
        return "linear" if metal else "addmm"
    if k.type == "RESHAPE" or k.is_row or k.type in ("ADD", "MUL", "TRANSPOSE"):
        return k.impl
    return "layout" if k.type in LAYOUT else "eltwise"


def _lower(g: Graph, family: str, backend: str, hosts: frozenset[str] | None = None,
           tokens: frozenset[str] | None = None) -> LoweredModel:
    gpu_family = family
    # attrs are shared with the IR, never mutated in place (passes assign new dicts)
    if g.meta.get("folded_marked"):  # the loader flagged constant-only ops already
        ops = [op for op in g.ops() if not op.folded]
    else:
        ops = [op for op in g.ops() if not _all_const_outputs(g, op.outputs)]
    nodes = [Node(op.name, op.type, list(op.inputs), list(op.outputs), op.attrs, [op.name]) for op in ops]
    w = Work(g, nodes)
    for p in PASSES + [absorb_explicit_pads, detect_pre_activation]:
        p(w)
    w.compact()
    kernels: list[Kernel] = []
    for n in w.nodes:
        k = classify(w, n, gpu_family)
        if k is None:
            w.unsupported.append({"name": n.name, "op_type": n.type})
            continue
        k.params["_out_shape"] = tuple(w.shape(n.outputs[0]))
        kernels.append(k)
    kernels = link_elementwise(kernels, g.outputs, hosts, tokens)
    for k in kernels:
        k.params.pop("_out_shape", None)
    return LoweredModel(g.name, kernels, w.unsupported, backend)
