"""The working graph the lowering passes rewrite: nodes with their links, shapes and
constant values, consumers and producers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ir import Graph
from ..onnx_utils import clip_bounds


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


def scalar(w: Work, t: str) -> float | None:
    v = w.value(t)
    if v is None or v.size != 1:
        return None
    return float(v.reshape(-1)[0])


def clip_bounds_of(w: Work, n: Node) -> tuple[float, float] | None:
    return clip_bounds(n.attrs, n.inputs, lambda t: scalar(w, t))


# --- converter passes ------------------------------------------------------------
def all_const_outputs(g: Graph, outputs: list[str]) -> bool:
    outs = [t for t in outputs if t]
    return bool(outs) and all(g.is_const(t) for t in outs)
