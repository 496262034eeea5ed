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
    """Ops with every tensor's shape; :attr:`nx` is the networkx DiGraph view
    (edge = tensor flowing producer -> consumer), built on first use.

    The ops live in plain dicts: a NAS loop builds thousands of graphs whose lowering
    never needs the DiGraph, and building one costs more than the rest of the graph.
    """

    def __init__(self, name: str = "graph") -> None:
        self.name = name
        self.tensors: dict[str, Tensor] = {}
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self._ops: dict[str, Op] = {}
        self._producer: dict[str, str] = {}
        self._consumers: dict[str, list[str]] = {}
        self.meta: dict[str, Any] = {}
        self._topo: list[Op] | None = None
        self._nx: nx.DiGraph | None = None

    # construction -------------------------------------------------------------
    def add_tensor(self, t: Tensor) -> Tensor:
        """Register (or replace) a tensor."""
        self.tensors[t.name] = t
        return t

    def add_op(self, op: Op) -> Op:
        """Add an op; edges come from the tensors it reads that another op writes."""
        if op.name in self._ops:
            raise ValueError(f"duplicate op name {op.name!r}")
        self._ops[op.name] = op
        self._topo = self._nx = None
        for t in op.outputs:
            self._producer[t] = op.name
        for t in op.inputs:
            if t:
                self._consumers.setdefault(t, []).append(op.name)
        return op

    @property
    def nx(self) -> nx.DiGraph:
        """The ops as a networkx DiGraph: node data ``op`` (and ``index``, the file's
        order), edge data ``tensors``."""
        if self._nx is None:
            d = nx.DiGraph()
            for i, (name, op) in enumerate(self._ops.items()):
                d.add_node(name, op=op, index=i)
            for name, op in self._ops.items():
                for t in op.inputs:
                    p = self._producer.get(t) if t else None
                    if p is None:
                        continue
                    if d.has_edge(p, name):
                        d.edges[p, name]["tensors"].append(t)
                    else:
                        d.add_edge(p, name, tensors=[t])
            self._nx = d
        return self._nx

    # queries ------------------------------------------------------------------
    def op(self, name: str) -> Op:
        """The op called ``name``."""
        return self._ops[name]

    def ops(self) -> Iterator[Op]:
        """Ops in a deterministic topological order (computed once, then cached): the
        order they were added in (a file's order) where that is topological."""
        if self._topo is None:
            ops = list(self._ops.values())
            if self._is_topological(ops):  # ONNX files list nodes in topological order
                self._topo = ops
            else:
                index = {name: i for i, name in enumerate(self._ops)}
                self._topo = [self._ops[name] for name in
                              nx.lexicographical_topological_sort(self.nx, key=index.__getitem__)]
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
        return len(self._ops)

    def __contains__(self, name: str) -> bool:
        """True when an op is called ``name``."""
        return name in self._ops
