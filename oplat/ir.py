"""Graph IR: one networkx DiGraph of ops with every tensor's shape known.

Both the ONNX and the TFLite loaders produce this IR, with ONNX op types and NCHW
shapes as the common vocabulary, so the lowering passes see a single format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import networkx as nx
import numpy as np


@dataclass
class Tensor:
    """A value in the graph. ``value`` is set for small constants only (shape math)."""

    name: str
    shape: tuple[int, ...] | None
    dtype: str = "float32"
    const: bool = False
    value: np.ndarray | None = None

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape or ():
            n *= int(d)
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * np.dtype(self.dtype).itemsize


@dataclass
class Op:
    """One operator: ONNX op type, tensor names in and out, attributes as plain Python."""

    name: str
    type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    folded: bool = False  # computes only constants (the converter folds it away)


class Graph:
    """Ops as nodes of a DiGraph (edge = tensor flowing producer -> consumer)."""

    def __init__(self, name: str = "graph") -> None:
        self.name = name
        self.nx = nx.DiGraph()
        self.tensors: dict[str, Tensor] = {}
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self._producer: dict[str, str] = {}
        self._consumers: dict[str, list[str]] = {}
        self.meta: dict[str, Any] = {}
        self._topo: list[Op] | None = None

    # construction -------------------------------------------------------------
    def add_tensor(self, t: Tensor) -> Tensor:
        """Register (or replace) a tensor."""
        self.tensors[t.name] = t
        return t

    def add_op(self, op: Op) -> Op:
        """Add an op; edges come from the tensors it reads that another op writes."""
        if op.name in self.nx:
            raise ValueError(f"duplicate op name {op.name!r}")
        self.nx.add_node(op.name, op=op)
        self._topo = None
        for t in op.outputs:
            self._producer[t] = op.name
            for c in self._consumers.get(t, []):
                self._link(op.name, c, t)
        for t in op.inputs:
            if not t:
                continue
            self._consumers.setdefault(t, []).append(op.name)
            p = self._producer.get(t)
            if p is not None:
                self._link(p, op.name, t)
        return op

    def _link(self, src: str, dst: str, tensor: str) -> None:
        if self.nx.has_edge(src, dst):
            self.nx.edges[src, dst]["tensors"].append(tensor)
        else:
            self.nx.add_edge(src, dst, tensors=[tensor])

    # queries ------------------------------------------------------------------
    def op(self, name: str) -> Op:
        """The op called ``name``."""
        return self.nx.nodes[name]["op"]

    def ops(self) -> Iterator[Op]:
        """Ops in a deterministic topological order (computed once, then cached)."""
        if self._topo is None:
            nodes = self.nx.nodes
            ops = [data["op"] for _, data in nodes.items()]
            if self._is_topological(ops):  # ONNX files list nodes in topological order
                self._topo = ops
            else:
                self._topo = [nodes[name]["op"] for name in
                              nx.lexicographical_topological_sort(self.nx, key=self._order_key)]
        return iter(self._topo)

    def _is_topological(self, ops: list[Op]) -> bool:
        seen: set[str] = set()
        producer = self._producer
        for op in ops:
            for t in op.inputs:
                if t and t in producer and t not in seen:
                    return False
            seen.update(op.outputs)
        return True

    def _order_key(self, name: str) -> int:
        return self.nx.nodes[name].get("index", 0)

    def producer(self, tensor: str) -> Op | None:
        """The op writing ``tensor`` (None for graph inputs and initializers)."""
        p = self._producer.get(tensor)
        return None if p is None else self.op(p)

    def consumers(self, tensor: str) -> list[Op]:
        """Ops reading ``tensor``."""
        return [self.op(c) for c in self._consumers.get(tensor, [])]

    def shape(self, tensor: str) -> tuple[int, ...]:
        """The shape of ``tensor`` (raises KeyError when unknown)."""
        s = self.tensors[tensor].shape
        if s is None:
            raise KeyError(tensor)
        return s

    def is_const(self, tensor: str) -> bool:
        t = self.tensors.get(tensor)
        return bool(t and t.const)

    def __len__(self) -> int:
        return self.nx.number_of_nodes()

    def number_ops(self) -> None:
        """Record insertion order so that topological order follows the file's order."""
        for i, name in enumerate(self.nx.nodes):
            self.nx.nodes[name]["index"] = i
        self._topo = None
