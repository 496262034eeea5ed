"""Converter passes: what the TFLite converter (and PyTorch's optimize_for_mobile) do to a
graph before any kernel is chosen: identities bypassed, HardSwish/Swish/GELU recognised,
BatchNorm and affine constants folded, explicit zero pads absorbed, pre-activations marked.
Each is a small named pass over the working graph."""

from __future__ import annotations

import math
from typing import Callable

from .work import Node, Work, clip_bounds_of, scalar


def bypass_identity(w: Work) -> None:
    """Identity, Dropout and no-op Cast do not survive conversion."""
    for n in list(w.nodes):
        if n.type in ("Identity", "Dropout") or (n.type == "Cast" and
                                                 w.g.tensors[n.inputs[0]].dtype == w.g.tensors[n.outputs[0]].dtype):
            w.remove(n, n.inputs[0])


# QOperator ops -> the float op whose kernel the int8 runtime runs, and which inputs are
# its data (the others are scales and zero points)
QOPERATORS = {"QLinearConv": ("Conv", (0, 3, 8)), "ConvInteger": ("Conv", (0, 1)),
              "QLinearMatMul": ("MatMul", (0, 3)), "MatMulInteger": ("MatMul", (0, 1)),
              "QLinearAdd": ("Add", (0, 3)), "QLinearMul": ("Mul", (0, 3)),
              "QLinearGlobalAveragePool": ("GlobalAveragePool", (0,)), "QLinearSigmoid": ("Sigmoid", (0,)),
              "QLinearLeakyRelu": ("LeakyRelu", (0,))}
QDQ = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")


def fold_quantization(w: Work) -> None:
    """Quantized ONNX as TFLite and onnxruntime run it: Q/DQ pairs around an op fold into
    its int8 kernel (QDQ), and QLinearConv, ConvInteger, QLinearMatMul, MatMulInteger and
    the other QOperator ops are the kernel of their float op; scales and zero points are
    parameters of the kernel, not work of their own."""
    integer = []
    for n in list(w.nodes):
        if n.type in QDQ:
            w.remove(n, n.inputs[0])
        elif n.type in QOPERATORS:
            typ, data = QOPERATORS[n.type]
            ins = [n.inputs[i] if i < len(n.inputs) else "" for i in data]
            while ins and not ins[-1]:
                ins.pop()
            if n.type.endswith("Integer"):
                integer.append(n)
            n.type = typ
            w.rewire(n, inputs=ins, outputs=n.outputs[:1])
    # dynamic quantization: the int32 result's Cast to float and its rescaling by a scalar
    # are the hybrid kernel's own epilogue
    for n in integer:
        for _ in range(2):
            cons = w.consumers.get(n.outputs[0], [])
            if len(cons) != 1:
                break
            c = cons[0]
            other = [t for t in c.inputs if t != n.outputs[0]]
            if c.type == "Cast" or (c.type == "Mul" and len(other) == 1 and _is_scalar(w, other[0])):
                w.remove(c, n.outputs[0])
            else:
                break
    # the scale products that fed those epilogues (input scale x weight scale) are unused now
    for n in list(w.nodes):
        if (not n.dead and n.type == "Mul" and all(_is_scalar(w, t) for t in n.inputs)
                and not any(w.consumers.get(o) for o in n.outputs) and not set(n.outputs) & set(w.g.outputs)):
            w.delete(n)


def _is_scalar(w: Work, t: str) -> bool:
    s = w.shape(t)
    return s is not None and len(s) <= 1 and math.prod(s) == 1


def _is_add_const(w: Work, n: Node | None, value: float) -> str | None:
    """If ``n`` is ``x + value`` return x."""
    if n is None or n.type != "Add":
        return None
    a, b = n.inputs[0], n.inputs[1]
    for x, c in ((a, b), (b, a)):
        if w.const(c) and scalar(w, c) == value and not w.const(x):
            return x
    return None


def _relu6_of(w: Work, t: str) -> Node | None:
    n = w.producer.get(t)
    if n is not None and n.type == "Clip" and clip_bounds_of(w, n) == (0.0, 6.0):
        return n
    return None


def _div_or_mul_by(w: Work, n: Node | None, value: float) -> str | None:
    """If ``n`` is ``x / value`` (or ``x * 1/value``) return x."""
    if n is None:
        return None
    if n.type == "Div" and w.const(n.inputs[1]):
        s = scalar(w, n.inputs[1])
        if s is not None and abs(s - value) <= 1e-5 * abs(value):
            return n.inputs[0]
    if n.type == "Mul":
        for x, c in ((n.inputs[0], n.inputs[1]), (n.inputs[1], n.inputs[0])):
            s = scalar(w, c) if w.const(c) else None
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
            elif other is not None and w.const(other) and scalar(w, other) == 0.5 and not got_half:
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


def _converter_folds(op: str, host: str, const_shape: tuple[int, ...], channels: int) -> bool:
    """The TFLite converter folds any scalar or per-channel constant into its host."""
    return math.prod(const_shape or (1,)) in (1, channels)


def fold_affine_constants(w: Work, folds: Callable[[str, str, tuple[int, ...], int], bool] = _converter_folds,
                          host_of: Callable[[Work, str], Node | None] = _host_for_folding) -> None:
    """Add/Sub/Mul/Div by a constant right after a conv (``host_of`` the tensor it reads)
    fold into bias/weights where ``folds(op, host type, constant's shape, channels)``."""
    for n in list(w.nodes):  # topological order: chains (conv + add + mul) fold one by one
        if n.dead or n.type not in ("Add", "Sub", "Mul", "Div") or len(n.inputs) != 2:
            continue
        rt = w.runtime_inputs(n)
        if len(rt) != 1 or (n.type in ("Sub", "Div") and rt[0] != n.inputs[0]):
            continue
        const = n.inputs[1] if rt[0] == n.inputs[0] else n.inputs[0]
        host = host_of(w, rt[0])
        if host is None:
            continue
        out_shape = w.shape(n.outputs[0])
        channels = out_shape[-1] if host.type in ("MatMul", "Gemm") else (out_shape[1] if len(out_shape) > 1 else 1)
        if folds(n.type, host.type, tuple(w.shape(const) or ()), channels):
            w.absorb(host, n)


def detect_pre_activation(w: Work) -> None:
    """Mark the network as pre-activation style if any conv reads ReLU(BatchNorm(x))."""
    w.pre_activation = any(n.type == "Conv" and _is_pre_activated(w, n.inputs[0]) for n in w.nodes if not n.dead)


def _is_pre_activated(w: Work, t: str) -> bool:
    act = w.producer.get(t)
    if act is None or act.type not in ("Relu", "Clip"):
        return False
    bn = w.producer.get(act.inputs[0])
    return bn is not None and bn.type == "BatchNormAffine"


# (constant-only ops never enter the working list: lower_tflite_gpu filters them)
PASSES: list[Callable[[Work], None]] = [
    fold_quantization, bypass_identity, fuse_hard_swish, fuse_swish, fuse_gelu, fold_batchnorm,
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
        cval = scalar(w, n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] else 0.0
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
