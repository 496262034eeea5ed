"""The lowering driver: working graph -> converter passes -> classification -> linking."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..errors import ModelLoadError
from ..ir import Graph
from .classify import classify
from .kernels import Kernel, LoweredModel
from .link import link_elementwise
from .passes import PASSES, absorb_explicit_pads, detect_pre_activation
from .work import Node, Work, all_const_outputs


# what a malformed graph that passed validation (a .tflite file's ops get size checks only)
# raises inside the rules: turned into one line naming the node
_MALFORMED = (IndexError, KeyError, ValueError, TypeError, ZeroDivisionError, AttributeError)


# kernels whose parameters describe one NCHW image: a batch > 1 is recorded as "Images"
# (BATCH_MATMUL's own "Batch" is its count of matrices)
BATCHED_TYPES = ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_GROUP", "MAX_POOL_2D", "AVERAGE_POOL_2D", "MEAN",
                 "CONCATENATION")


class LoweringError(ModelLoadError):
    """A graph the lowering cannot turn into kernels."""


def live_ops(g: Graph, ops: list) -> list:
    """The ops of ``ops`` (topologically ordered) whose results reach a graph output."""
    live_t = set(g.outputs)
    keep = []
    for op in reversed(ops):
        if any(t in live_t for t in op.outputs if t):
            keep.append(op)
            live_t.update(t for t in op.inputs if t)
    keep.reverse()
    return keep


def lower_graph(g: Graph, variant: str, backend: str, hosts: frozenset[str] | Callable[[Kernel], bool] | None = None,
                tokens: frozenset[str] | None = None, prune_dead: bool = True,
                pre_activation: bool | None = None, probe: dict | None = None,
                passes: Sequence[Callable[[Work], None]] | None = None) -> LoweredModel:
    """Lower ``g`` for ``backend``: converter passes, then each node classified as the kernel
    ``variant`` runs, then element-wise kernels linked into their ``hosts`` (every kernel
    type when None) where their activation is one of ``tokens`` (any when None).

    ``prune_dead`` drops ops whose results reach no graph output, as the TFLite converter
    and TorchScript do (a NAS-Bench-201 cell whose last node reads only the input leaves
    the rest of the cell dead); onnxruntime runs them (``bench/results/nas_calibration.json``
    data: 0.91 ms with the dead branch, 0.16 ms without, under onnxruntime; 0.15 ms both
    under LiteRT).

    For :mod:`oplat.spaces.compose`, which lowers a network piece by piece:
    ``pre_activation`` overrides the network-wide flag the passes detect (a piece does not
    see the rest of its network), and ``probe`` (a dict) receives the working graph after
    the passes (``"work"``), the flag as detected (``"pre_activation"``) and the tensors
    the live ops read (``"live_inputs"``).

    ``passes`` replaces the converter passes (:data:`~oplat.lowering.passes.PASSES`) for a
    runtime whose graph optimiser fuses otherwise (onnxruntime's, :mod:`.ort_cpu`)."""
    # attrs are shared with the IR, never mutated in place (passes assign new dicts)
    if g.meta.get("folded_marked"):  # the loader flagged constant-only ops already
        ops = [op for op in g.ops() if not op.folded]
    else:
        ops = [op for op in g.ops() if not all_const_outputs(g, op.outputs)]
    if prune_dead:
        ops = live_ops(g, ops)
    nodes = [Node(op.name, op.type, list(op.inputs), list(op.outputs), op.attrs, [op.name]) for op in ops]
    w = Work(g, nodes)
    for p in list(PASSES if passes is None else passes) + [absorb_explicit_pads, detect_pre_activation]:
        try:
            p(w)
        except _MALFORMED as e:
            raise LoweringError(f"{g.name}: the graph cannot be lowered ({p.__name__}: {type(e).__name__}: {e}); "
                                "a graph its runtime accepts should lower: please report it") from None
    w.compact()
    if probe is not None:
        probe["work"], probe["pre_activation"] = w, w.pre_activation
        probe["live_inputs"] = {t for op in ops for t in op.inputs}
    if pre_activation is not None:
        w.pre_activation = pre_activation
    kernels: list[Kernel] = []
    for n in w.nodes:
        try:
            k = classify(w, n, variant)
        except _MALFORMED as e:
            raise LoweringError(f"{g.name}: {n.type} {n.name!r} cannot be lowered ({type(e).__name__}: {e}): "
                                "its shapes or attributes are malformed") from None
        if k is None:
            w.unsupported.append({"name": n.name, "op_type": n.type})
            continue
        out_shape = tuple(w.shape(n.outputs[0]))
        k.params["_out_shape"] = out_shape
        if k.type in BATCHED_TYPES and len(out_shape) == 4 and out_shape[0] > 1:
            k.params["Images"] = int(out_shape[0])  # the image kernels' params describe one image
        kernels.append(k)
    kernels = link_elementwise(kernels, g.outputs, hosts, tokens)
    for k in kernels:
        k.params.pop("_out_shape", None)
    return LoweredModel(g.name, kernels, w.unsupported, backend)
