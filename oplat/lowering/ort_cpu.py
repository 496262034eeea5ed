"""Lowering for onnxruntime's CPU execution provider (MLAS kernels, full graph optimisation).

The kernels are those of the CPU lowering (``lower_tflite_cpu``: BatchNorm folded, the
same kernel families, residual adds and broadcast multiplies as nodes of their own), with
the differences that matter on this path:

- ``FusedConv`` takes HardSwish and Sigmoid as its activation besides ReLU/Clip, so
  they link into the convolution before them.

- Its graph optimiser folds fewer constants into a convolution than the TFLite
  converter (a per-channel add, a per-channel or rank-0 multiply; never a scalar add, a
  Sub or a Div: :func:`_ort_folds`), takes a scalar scale after attention's Q.K^T into a
  ``FusedMatMul``, and leaves a hard swish written out as x * relu6(x + 3) / 6 (as
  pytorchcv's MobileNetV3 exports it) as four nodes: the lowering runs its own converter
  passes (:data:`ORT_PASSES`), and an activation after an add of a constant or a multiply
  is a node of its own (only a residual add, which the NCHWc transformer folds into the
  conv before it, takes one in).

- A ReLU6 (``Clip`` 0..6) fused into a convolution is a link of its own (``relu6``):
  MLAS applies a ReLU inside the convolution's kernel but a Clip as a second pass over
  its output (a median 1.15x a ReLU-linked conv over mobilenet_v2's conv shapes,
  ``bench/ort_link_costs.py``), where the GPU and XNNPACK paths clamp for free.
- onnxruntime's NCHWc transformer runs convolutions, pools and global pools (and the
  adds, multiplies, activations and channel concats between them) on channel-blocked
  tensors, and inserts a ``ReorderInput`` where a convolution or pool reads a plain
  tensor and a ``ReorderOutput`` where a plain op (a reshape, a transpose, a Sub, a
  broadcast multiply) reads a blocked one. The block is 16 channels with AVX-512 and 8
  with AVX2 (:func:`host_nchwc_block`; a profile names the one it was measured with as
  its variant, ``nchwc8``), and layers whose channels are not whole blocks fall out of
  the blocked layout. In a CNN that is two reorders for the whole model; in a hybrid
  ViT (SegFormer's Mix-FFN, EfficientFormer) every convolution is wrapped in a pair.
  They are kernels here (``REORDER``), measured as what the single-op conv sessions
  spend in them. ``bench/ort_reorders.py`` counts them against onnxruntime's profiler.
- GELU is an erf evaluated per element, several times the cost of a ReLU at the same
  size: a kernel family of its own (``impl="gelu"``), not the generic element-wise one.
- An unfused x*sigmoid(x) (SiLU, MobileViT's activation) runs as onnxruntime's
  ``QuickGelu`` contrib kernel, an exponential per element: a family of its own too
  (``impl="swish"``; in MobileViT-XS 34 such nodes take 17% of the time in its profiler,
  which the generic element-wise family had predicted at a quarter of that).
"""

from __future__ import annotations

import functools
import math

from ..ir import Graph
from .kernels import Kernel, LoweredModel
from .passes import (_host_for_folding, bypass_identity, fold_affine_constants, fold_batchnorm, fold_quantization,
                     fuse_gelu, fuse_swish)
from .pipeline import lower_graph
from .work import Work
from .tflite_cpu import CPU_LINK_HOSTS, cpu_impl

# FusedConv takes ReLU/Clip, Sigmoid and HardSigmoid (squeeze-excite gates) as its
# activation; a HardSwish after a conv onnxruntime 1.32 runs as HardSigmoid and Mul of
# their own, which single-op rows time together with the conv, as one kernel (both read
# off the optimized graph onnxruntime writes, at either optimization level)
ORT_LINK_TOKENS = frozenset(("relu", "hard_swish", "sigmoid", "hard_sigmoid"))
ALIGN = 4  # a blocked convolution's channel counts are padded up to a block from a multiple of this
# ops that stay blocked when every activation input is blocked (NCHWc transformer), channel
# concats only over whole blocks (probed on onnxruntime 1.32 with 16-channel blocks: a Sub,
# a Div or a Max reads plain tensors, an Add or a Mul of equal shapes blocked ones)
_PASS_THROUGH = frozenset(("RELU", "SIGMOID", "HARD_SIGMOID", "RESIZE", "SWISH", "GELU",
                           "MUL_ADD"))  # MUL_ADD: an unfolded batch norm
_POOLS = frozenset(("MAX_POOL_2D", "AVERAGE_POOL_2D", "MEAN"))
_BINARY = frozenset(("ADD", "MUL"))


@functools.lru_cache(maxsize=1)
def host_nchwc_block() -> int:
    """The NCHWc block size of this machine's onnxruntime (MLAS: 16 with AVX-512, 8 with
    AVX2; 0 where the transformer does not run), read from how it rewrites a 1x1
    convolution over 12 channels: with 8-channel blocks the input is reordered into
    blocks, with 16 the convolution reads the plain tensor."""
    import os
    import tempfile

    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((16, 12, 1, 1), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 12, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 4, 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with tempfile.TemporaryDirectory() as d:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.optimized_model_filepath = os.path.join(d, "opt.onnx")
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        ops = [(n.domain, n.op_type) for n in onnx.load(so.optimized_model_filepath).graph.node]
    if not any(dom.endswith("nchwc") for dom, _ in ops):
        return 0
    return 8 if any(op == "ReorderInput" for _, op in ops) else 16


def nchwc_block(variant: str = "cpu") -> int:
    """The block size a lowering variant names: ``"nchwc8"`` / ``"nchwc16"`` (the machine a
    profile was measured on), or the host's (:func:`host_nchwc_block`) for ``"cpu"``."""
    if variant.startswith("nchwc") and variant[5:].isdigit():
        return int(variant[5:])
    return host_nchwc_block()


def _conv_input_layout(k: Kernel, block: int) -> str | None:
    """How the NCHWc transformer runs convolution ``k``: reading a ``"blocked"`` input,
    reading the ``"plain"`` one directly (fewer input channels than a block), or not at all
    (``None``). Its output is blocked either way, its channels padded to whole blocks.
    Depthwise convolutions need channels in multiples of ``ALIGN``, grouped ones whole
    blocks per group (probed on onnxruntime 1.32 with 16-channel blocks)."""
    p = k.params
    if block <= 0 or k.type not in ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_GROUP"):
        return None
    c_in = int(p.get("Input_channel") or 0)
    if c_in <= 0:
        return None
    if k.type == "DEPTHWISE_CONV_2D":
        return "blocked" if int(p.get("Filter") or 1) == 1 and c_in % ALIGN == 0 else None
    if k.type == "CONV_2D_GROUP":
        groups = int(p.get("Group") or 1)
        out_c = int(p.get("Filter") or 0)
        return "blocked" if (c_in // groups) % block == 0 and (out_c // groups) % block == 0 else None
    if c_in < block:
        return "plain"
    return "blocked" if c_in % ALIGN == 0 else None


def _pool_input_layout(k: Kernel, block: int, in_dims: list[tuple[int, ...]],
                       out_dims: tuple[int, ...]) -> str | None:
    """``"blocked"`` when the NCHWc transformer runs pool ``k`` (a max or average pool, or a
    global average pool: a ``MEAN`` over the spatial dims of an NCHW map) on blocks, which
    it does over whole blocks of channels only, reordering a plain input in; else ``None``."""
    if block <= 0 or k.type not in _POOLS or not in_dims or len(in_dims[0]) != 4 or in_dims[0][1] % block:
        return None
    if k.type == "MEAN" and (len(out_dims) != 4 or out_dims[2:] != (1, 1)):
        return None
    return "blocked"


def reorder_params(dims, direction: str) -> dict:
    """The parameters of a ``REORDER`` kernel converting a tensor of plain ``dims`` into
    (``"in"``) or out of (``"out"``) the blocked layout."""
    d = tuple(int(x) for x in dims)
    e = math.prod(d) if d else 0
    return {"Input_dims": d, "Direction": direction, "Output_elements": e, "Input_elements": e,
            "Output_shape": d, "Inputs": 1}


def nchwc_reorders(lm: LoweredModel, graph: Graph, block: int = 8) -> LoweredModel:
    """``lm`` with a ``REORDER`` kernel wherever the NCHWc transformer converts a tensor
    between the plain and the blocked layout of ``block`` channels (see the module
    docstring); none when ``block`` is 0."""
    if block <= 0:
        return lm
    tensors = graph.tensors

    def dims(t: str) -> tuple[int, ...]:
        return tuple(int(d) for d in (tensors[t].shape or ())) if t in tensors else ()

    def acts(k: Kernel) -> list[str]:
        return [t for t in k.inputs if t and t in tensors and not tensors[t].const]

    blocked: set[str] = set()
    converted: set[str] = set()  # blocked tensors already reordered back to plain
    copies: set[str] = set()  # plain tensors already reordered into blocks
    out: list[Kernel] = []

    def reorder(t: str, direction: str, before: Kernel) -> None:
        out.append(Kernel(f"{before.name}/reorder_{direction}", "REORDER", "reorder",
                          reorder_params(dims(t), direction), inputs=[t], outputs=[t]))

    def to_plain(t: str, before: Kernel) -> None:
        """A reorder out of blocks for a plain reader of ``t``, unless it has one already."""
        if t in blocked and t not in converted:
            reorder(t, "out", before)
            converted.add(t)

    for k in lm.kernels:
        ins = acts(k)
        in_dims = [dims(t) for t in ins]
        layout = _conv_input_layout(k, block) or _pool_input_layout(k, block, in_dims,
                                                                    dims(k.outputs[0]) if k.outputs else ())
        if layout:
            if ins and layout == "plain":  # fewer channels than a block: it reads the plain tensor
                to_plain(ins[0], k)
            elif ins and ins[0] not in blocked and ins[0] not in copies and len(in_dims[0]) == 4:
                # one blocked copy, shared by later convolutions and pools (an element-wise
                # op still reads the plain tensor)
                reorder(ins[0], "in", k)
                copies.add(ins[0])
            stays = True
        elif k.type in _PASS_THROUGH or k.type in _BINARY or k.type == "CONCATENATION":
            stays = bool(ins) and all(t in blocked for t in ins)
            if k.type in _BINARY:  # a constant operand is a plain tensor
                stays = stays and len(set(in_dims)) == 1 and len(ins) == len([t for t in k.inputs if t])
            elif k.type == "CONCATENATION":
                stays = stays and all(len(d) == 4 and d[1] % block == 0 for d in in_dims)
        else:
            stays = False
        if not stays:
            for t in ins:
                to_plain(t, k)
        out.append(k)
        if stays:
            blocked.update(k.outputs)
    for t in graph.outputs:
        to_plain(t, out[-1])
    return LoweredModel(lm.name, out, lm.unsupported, lm.backend)


def _ort_folds(op: str, host: str, const_shape: tuple[int, ...], channels: int) -> bool:
    """Whether onnxruntime 1.32's optimiser folds ``op`` (by a constant of ``const_shape``)
    into the ``host`` before it (probed on its optimized graph): ``ConvAddFusion`` takes a
    per-channel ``[C,1,1]``/``[1,C,1,1]`` add, ``ConvMulFusion`` that or a rank-0 multiply;
    a MatMul with constant weights becomes a ``Gemm`` with an ``[N]`` bias, a ``FusedMatMul``
    with a scalar multiply or divide. A Sub, a scalar add (the ``+3`` of a hard swish written
    out) and everything after a Gemm or ConvTranspose stay nodes of their own."""
    per_channel = const_shape in ((channels, 1, 1), (1, channels, 1, 1))
    if host == "Conv":
        return (op == "Add" and per_channel) or (op == "Mul" and (per_channel or const_shape == ()))
    if host == "MatMul":
        return (op == "Add" and const_shape == (channels,)) or (op in ("Mul", "Div") and const_shape in ((), (1,)))
    return False


def _attention_matmul(w: Work, t: str):
    """A MatMul of two activations (attention's Q.K^T) producing ``t`` for nobody else:
    onnxruntime's ``MatMulScaleFusion`` takes a scalar multiply or divide after it into
    its ``FusedMatMul`` (in the ViTs of the zoo, the scale before the softmax)."""
    p = w.producer.get(t)
    if p is None or p.type != "MatMul" or p.linked or w.const(p.inputs[1]) or w.only_consumer(t) is None:
        return None
    return p


def fold_affine_constants_ort(w: Work) -> None:
    """The constant adds and multiplies after a conv or matmul that onnxruntime folds into
    it (:func:`_ort_folds`, also after attention's Q.K^T); the shared pass folds any
    per-channel or scalar one, as the TFLite converter does."""
    fold_affine_constants(w, _ort_folds, lambda w, t: _host_for_folding(w, t) or _attention_matmul(w, t))


# onnxruntime's optimiser, as far as the kernels go: no fusion of a hard swish written out
# as x * relu6(x + 3) / 6 (it runs Add, Clip, Mul and Div; pytorchcv's MobileNetV3 exports),
# and its own rules for folding constants into a conv or matmul
ORT_PASSES = (fold_quantization, bypass_identity, fuse_swish, fuse_gelu, fold_batchnorm, fold_affine_constants_ort)


def relu6_links(lm: LoweredModel, graph: Graph) -> None:
    """Rename the ``relu`` links that came from a ``Clip`` (the shared lowering spells a
    Clip from 0 as ``relu``) to ``relu6``, one per Clip the kernel absorbed."""
    for k in lm.kernels:
        if "relu" not in k.linked:
            continue
        clips = sum(1 for s in k.sources if s in graph and graph.op(s).type == "Clip")
        linked = list(k.linked)
        for i, t in enumerate(linked):
            if t == "relu" and clips:
                linked[i], clips = "relu6", clips - 1
        k.linked = linked


def _link_host(g: Graph):
    """Which kernels take in the activation after them under onnxruntime: a conv or fully
    connected one (``FusedConv``/``FusedGemm``), and a residual add, which the NCHWc
    transformer folds into the conv before it with its activation; an add of a constant
    and a multiply run their activation as a node of its own."""
    def can_host(k: Kernel) -> bool:
        if k.type == "ADD":
            return not any(t in g.tensors and g.tensors[t].const for t in k.inputs)
        return k.type in CPU_LINK_HOSTS and k.type != "MUL"
    return can_host


def lower_ort_cpu(g: Graph, variant: str = "cpu") -> LoweredModel:
    """Lower an IR graph to the kernels onnxruntime's CPU execution provider runs."""
    lm = lower_graph(g, "cpu", "ort-cpu", _link_host(g), ORT_LINK_TOKENS, prune_dead=False, passes=ORT_PASSES)
    for k in lm.kernels:
        k.impl = {"GELU": "gelu", "SWISH": "swish"}.get(k.type) or cpu_impl(k)
    relu6_links(lm, g)
    lm = nchwc_reorders(lm, g, nchwc_block(variant))
    lm.backend = "ort-cpu"
    return lm
