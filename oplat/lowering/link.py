"""Linking: element-wise kernels fused into the kernel that produces their input, as the
framework fuses them (which hosts and which activations depend on the backend)."""

from __future__ import annotations

from collections.abc import Callable

from .kernels import LAYOUT, Kernel

LINK_HOSTS = frozenset(("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_GROUP", "FULLY_CONNECTED",
                        "CONCATENATION", "MAX_POOL_2D", "AVERAGE_POOL_2D"))


_LAYOUT = frozenset(LAYOUT)


def link_elementwise(kernels: list[Kernel], graph_outputs: list[str],
                     hosts: frozenset[str] | Callable[[Kernel], bool] | None = None,
                     tokens: frozenset[str] | None = None) -> list[Kernel]:
    """The GPU delegate merges an element-wise op into the kernel producing its input.

    Conditions (as in the delegate's MergeNodes): the host's output feeds only that op,
    the op's output has the host's shape, and the op's other inputs were computed
    before the host ran. Chains merge repeatedly (conv + add + relu). ``hosts`` and
    ``tokens`` restrict which kernels absorb and which ops are absorbed (the CPU path
    only fuses clamping activations, see :func:`lower_tflite_cpu`); ``hosts`` may be a
    predicate on the kernel where its type alone does not decide (onnxruntime's).
    """
    hosts = LINK_HOSTS if hosts is None else hosts
    can_host = hosts if callable(hosts) else (lambda k: k.type in hosts)
    order = {t: i for i, k in enumerate(kernels) for t in k.outputs}
    consumers: dict[str, list[int]] = {}
    for i, k in enumerate(kernels):
        for t in k.inputs:
            consumers.setdefault(t, []).append(i)
    outputs = set(graph_outputs)
    dead: set[int] = set()
    for i, host in enumerate(kernels):
        if i in dead or host.impl == "mean" or not can_host(host):
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
