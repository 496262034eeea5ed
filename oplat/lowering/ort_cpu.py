"""Lowering for onnxruntime's CPU execution provider (MLAS kernels, full graph optimisation).

The kernels are those of the CPU lowering (``lower_tflite_cpu``: BatchNorm folded, the
same kernel families, residual adds and broadcast multiplies as nodes of their own), with
four differences that matter on this path:

- ``FusedConv`` takes HardSwish and Sigmoid as its activation besides ReLU/Clip, so
  they link into the convolution before them.

- A ReLU6 (``Clip`` 0..6) fused into a convolution is a link of its own (``relu6``):
  MLAS applies a ReLU inside the convolution's kernel but a Clip as a second pass over
  its output (a median 1.15x a ReLU-linked conv over mobilenet_v2's conv shapes,
  ``bench/ort_link_costs.py``), where the GPU and XNNPACK paths clamp for free.
- onnxruntime's NCHWc transformer runs convolutions (and the pools, global pools,
  element-wise ops and channel concats between them) on channel-blocked tensors, and
  inserts a ``ReorderInput`` where a blocked op reads a plain tensor and a
  ``ReorderOutput`` where a plain op (a reshape, a transpose, HardSwish, a broadcast
  multiply) reads a blocked one. In a CNN that is two reorders for the whole model; in
  a hybrid ViT (SegFormer's Mix-FFN, EfficientFormer, MobileViT) every convolution is
  wrapped in a pair. They are kernels here (``REORDER``), measured as what the
  single-op conv sessions spend in them.
- GELU is an erf evaluated per element, several times the cost of a ReLU at the same
  size: a kernel family of its own (``impl="gelu"``), not the generic element-wise one.
- An unfused x*sigmoid(x) (SiLU, MobileViT's activation) runs as onnxruntime's
  ``QuickGelu`` contrib kernel, an exponential per element: a family of its own too
  (``impl="swish"``; in MobileViT-XS 34 such nodes take 17% of the time in its profiler,
  which the generic element-wise family had predicted at a quarter of that).
"""

from __future__ import annotations

import math

from ..ir import Graph
from .kernels import Kernel, LoweredModel
from .tflite_gpu import CPU_LINK_HOSTS, _cpu_impl, _lower

# FusedConv takes ReLU/Clip, HardSwish and Sigmoid (a squeeze-excite gate) as its activation
ORT_LINK_TOKENS = frozenset(("relu", "hard_swish", "sigmoid"))
BLOCK = 8  # channels per block on AVX2 (MLAS's NCHWc block size there)
# ops that stay blocked when every activation input is blocked (NCHWc transformer)
# (global pools and stride-1 average pools read plain tensors: a reorder out before them)
_PASS_THROUGH = frozenset(("MAX_POOL_2D", "RELU", "SIGMOID", "HARD_SIGMOID", "CONCATENATION", "RESIZE",
                           "MUL_ADD"))  # MUL_ADD: an unfolded batch norm
_BINARY = frozenset(("ADD", "MUL", "SUB"))


def _conv_takes_blocks(k: Kernel) -> bool:
    """A convolution the NCHWc transformer converts: plain, depthwise or grouped with whole
    blocks per group, including a 1x1 conv over a pooled vector (a Gemm is left alone)."""
    p = k.params
    if k.type not in ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_GROUP"):
        return False
    c_in = int(p.get("Input_channel") or 0)
    if k.type == "DEPTHWISE_CONV_2D":
        return c_in * int(p.get("Filter") or 1) % BLOCK == 0 and c_in > 0
    groups = int(p.get("Group") or 1) if k.type == "CONV_2D_GROUP" else 1
    out_c = int(p.get("Filter") or 0)
    return out_c > 0 and (out_c // groups) % BLOCK == 0 and (groups == 1 or (c_in // groups) % BLOCK == 0)


def reorder_params(dims, direction: str) -> dict:
    """The parameters of a ``REORDER`` kernel converting a tensor of plain ``dims`` into
    (``"in"``) or out of (``"out"``) the blocked layout."""
    d = tuple(int(x) for x in dims)
    e = math.prod(d) if d else 0
    return {"Input_dims": d, "Direction": direction, "Output_elements": e, "Input_elements": e,
            "Output_shape": d, "Inputs": 1}


def nchwc_reorders(lm: LoweredModel, graph: Graph) -> LoweredModel:
    """``lm`` with a ``REORDER`` kernel wherever the NCHWc transformer converts a tensor
    between the plain and the blocked layout (see the module docstring)."""
    tensors = graph.tensors

    def dims(t: str) -> tuple[int, ...]:
        return tuple(int(d) for d in (tensors[t].shape or ())) if t in tensors else ()

    def acts(k: Kernel) -> list[str]:
        return [t for t in k.inputs if t and t in tensors and not tensors[t].const]

    blocked: set[str] = set()
    converted: set[str] = set()  # blocked tensors already reordered back to plain
    out: list[Kernel] = []

    def reorder(t: str, direction: str, before: Kernel) -> None:
        out.append(Kernel(f"{before.name}/reorder_{direction}", "REORDER", "reorder",
                          reorder_params(dims(t), direction), inputs=[t], outputs=[t]))

    producer: dict[str, str] = {}
    for k in lm.kernels:
        ins = acts(k)
        # a conv reading a fused x*sigmoid(x) or a GELU (contrib ops: QuickGelu, Gelu, whose
        # output shapes its transformer does not see) is left plain
        if _conv_takes_blocks(k) and not (ins and ins[0] not in blocked and producer.get(ins[0]) in ("SWISH", "GELU")):
            x = ins[0] if ins else None
            # a stem conv over < BLOCK channels reads the plain input directly, and a
            # pooled 1x1 map is laid out the same either way
            d = dims(x) if x else ()
            if x is not None and x not in blocked and int(k.params.get("Input_channel") or 0) >= BLOCK \
                    and len(d) == 4 and d[2] * d[3] > 1:
                reorder(x, "in", k)
            stays = True
        elif k.type in _PASS_THROUGH or k.type in _BINARY or (k.type == "AVERAGE_POOL_2D"
                                                               and int(k.params.get("Stride") or 1) > 1):
            shapes = {dims(t) for t in ins}
            stays = bool(ins) and all(t in blocked for t in ins) and (k.type not in _BINARY or len(shapes) == 1)
        else:
            stays = False
        if not stays:
            for t in ins:
                if t in blocked and t not in converted:
                    reorder(t, "out", k)
                    converted.add(t)
        out.append(k)
        producer.update((t, k.type) for t in k.outputs)
        if stays:
            blocked.update(k.outputs)
    for t in graph.outputs:
        if t in blocked and t not in converted:
            reorder(t, "out", out[-1])
    return LoweredModel(lm.name, out, lm.unsupported, lm.backend)


def relu6_links(lm: LoweredModel, graph: Graph) -> None:
    """Rename the ``relu`` links that came from a ``Clip`` (the shared lowering spells a
    Clip from 0 as ``relu``) to ``relu6``, one per Clip the kernel absorbed."""
    for k in lm.kernels:
        if "relu" not in k.linked:
            continue
        clips = sum(1 for s in k.sources if s in graph.nx and graph.op(s).type == "Clip")
        linked = list(k.linked)
        for i, t in enumerate(linked):
            if t == "relu" and clips:
                linked[i], clips = "relu6", clips - 1
        k.linked = linked


def lower_ort_cpu(g: Graph, gpu_family: str = "cpu") -> LoweredModel:
    """Lower an IR graph to the kernels onnxruntime's CPU execution provider runs."""
    lm = _lower(g, "cpu", "ort-cpu", CPU_LINK_HOSTS, ORT_LINK_TOKENS)
    for k in lm.kernels:
        k.impl = {"GELU": "gelu", "SWISH": "swish"}.get(k.type) or _cpu_impl(k)
    relu6_links(lm, g)
    lm = nchwc_reorders(lm, g)
    lm.backend = "ort-cpu"
    return lm
