"""NAS-Bench-201 networks from their architecture strings.

``|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|``
describes one cell: node j sums op(node i) over its incoming edges i<j. The network is
the benchmark's macro skeleton: stem conv3x3 (C) + BN, three stages of N cells at C, 2C,
4C joined by ResNet reduction blocks, BN-ReLU, global pool, linear. CIFAR: 32x32, C=16, N=5.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import onnx

from ..zoo.builder import OnnxBuilder

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def parse_arch(arch: str) -> list[list[tuple[str, int]]]:
    """``[[(op, src), ...] for node 1..3]``; raises ValueError on a malformed string."""
    nodes = []
    for part in arch.strip().split("+"):
        edges = [e for e in part.strip().strip("|").split("|") if e]
        node = []
        for e in edges:
            op, _, src = e.partition("~")
            if op not in OPS or not src.isdigit():
                raise ValueError(f"bad NAS-Bench-201 edge {e!r} in {arch!r}")
            node.append((op, int(src)))
        nodes.append(node)
    if len(nodes) != 3 or [len(n) for n in nodes] != [1, 2, 3]:
        raise ValueError(f"a NAS-Bench-201 cell has 3 nodes with 1, 2, 3 edges: {arch!r}")
    for j, node in enumerate(nodes, start=1):
        if any(src >= j for _, src in node):
            raise ValueError(f"edge to node {j} from a later node in {arch!r}")
    return nodes


def _node(b: OnnxBuilder, *xs: str, edges: tuple[tuple[str, int], ...]) -> str:
    """One node of a cell: the sum of ``op(xs[i])`` over its ``edges`` (not ``none``);
    zeros of its input's shape when every edge is ``none`` (``edges`` empty)."""
    c = b.shapes[xs[0]][1]
    terms = []
    for op, i in edges:
        s = xs[i]
        if op == "skip_connect":
            terms.append(s)
        elif op == "avg_pool_3x3":
            terms.append(b.avg_pool(s, 3, 1, 1))
        else:
            k = 3 if op == "nor_conv_3x3" else 1
            terms.append(b.bn(b.conv(b.act(s, "relu"), c, k, 1, bias=False)))
    if not terms:  # all-none node: zeros of the right shape
        terms.append(b.op("Mul", [xs[0], b.const(np.zeros(1, np.float32), "zero")], b.shapes[xs[0]]))
    y = terms[0]
    for t in terms[1:]:
        y = b.add(y, t)
    return y


def _cell(b: OnnxBuilder, x: str, arch: list[list[tuple[str, int]]]) -> str:
    # a segment of segments (oplat.spaces.compose): 155 kinds of node make every cell
    states = [x]
    for node in arch:
        live = [(op, src) for op, src in node if op != "none"]
        srcs = [states[src] for _, src in live] or [states[node[-1][1]]]
        edges = tuple((op, i) for i, (op, _) in enumerate(live))
        states.append(b.segment(("nb201-node", edges), partial(_node, edges=edges), *srcs))
    return states[-1]


def _stem(b: OnnxBuilder, x: str, c: int) -> str:
    return b.bn(b.conv(x, c, 3, 1, bias=False))


def _reduction(b: OnnxBuilder, x: str, c_out: int) -> str:
    a = b.bn(b.conv(b.act(x, "relu"), c_out, 3, 2, bias=False))
    a = b.bn(b.conv(b.act(a, "relu"), c_out, 3, 1, bias=False))
    short = b.conv(b.avg_pool(x, 2, 2, 0), c_out, 1, 1, bias=False)
    return b.add(a, short)


def _head(b: OnnxBuilder, x: str, classes: int) -> str:
    return b.classifier(b.act(b.bn(x), "relu"), classes)


def _network(b: OnnxBuilder, cell: list[list[tuple[str, int]]], c: int, n: int, classes: int) -> str:
    key = tuple(tuple(node) for node in cell)
    x = b.segment(("nb201-stem", c), partial(_stem, c=c), "input")
    for stage in range(3):
        if stage:
            c_out = c * 2 ** stage
            x = b.segment(("nb201-reduction", c_out), partial(_reduction, c_out=c_out), x)
        for _ in range(n):
            x = b.segment(("nb201-cell", key), partial(_cell, arch=cell), x)
    return b.segment(("nb201-head", classes), partial(_head, classes=classes), x)


def nb201_model(arch: str, c: int = 16, n: int = 5, resolution: int = 32, classes: int = 10,
                graph_only: bool = False, seed: int = 0) -> onnx.ModelProto:
    """Build the NAS-Bench-201 network of ``arch`` as ONNX."""
    cell = parse_arch(arch)
    b = OnnxBuilder("nb201", (1, 3, resolution, resolution), seed=seed)
    return b.model(_network(b, cell, c, n, classes), graph_only)


def random_arch(rng) -> str:
    """A uniformly sampled architecture string."""
    nodes = []
    for j in range(1, 4):
        nodes.append("|" + "|".join(f"{OPS[rng.integers(len(OPS))]}~{i}" for i in range(j)) + "|")
    return "+".join(nodes)
