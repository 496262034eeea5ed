"""Build the IR directly: the zoo's builder API with a :class:`~oplat.ir.Graph` as its sink.

A search loop scores thousands of candidates: writing each as ONNX, serialising it and
running ONNX shape inference on it costs ten times more than predicting it
(``bench/results/nas_throughput.json``). The builder already knows every shape, so
the graph it emits is the one :func:`oplat.onnx_loader.load_onnx` would make of the
same network's graph-only ONNX file: same op names, attributes, shapes and small
constant values, so lowering and prediction see the same thing (tested in
``tests/oplat/test_spaces.py``). Random weights above the graph-only threshold are
never drawn.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ir import Graph, Op, Tensor
from ..zoo.builder import OnnxBuilder

# what a graph-only ONNX file keeps inline (graph_only.strip_weights) and what the loader
# evaluates (onnx_loader.MAX_CONST_VALUE): constants within both keep their values
INLINE_BYTES = 1024
MAX_CONST_VALUE = 4096


def _attr(v: Any) -> Any:
    """An attribute as it comes back from an ONNX file: floats rounded to float32, lists
    as lists."""
    if type(v) is int:
        return v
    if isinstance(v, float):
        return float(np.float32(v))
    if isinstance(v, (list, tuple)):
        return [x if type(x) is int else _attr(x) for x in v]
    return v


_DTYPE_NAMES: dict[np.dtype, str] = {}


class GraphBuilder(OnnxBuilder):
    """:class:`~oplat.zoo.builder.OnnxBuilder` writing IR ops instead of ONNX nodes."""

    def __init__(self, name: str, input_shape: tuple[int, ...], seed: int = 0, opset: int = 17) -> None:
        self.name, self.opset = name, opset
        self._seed, self._rng = seed, None
        self.shapes: dict[str, tuple[int, ...]] = {"input": tuple(input_shape)}
        self._n = 0
        self.g = Graph(name)
        self.g.add_tensor(Tensor("input", tuple(int(d) for d in input_shape)))
        self.g.inputs = ["input"]

    @property
    def rng(self) -> np.random.Generator:  # type: ignore[override]
        # drawn from only for small weights: pieces of a network built alone rarely need one
        if self._rng is None:
            self._rng = np.random.default_rng(self._seed)
        return self._rng

    @rng.setter
    def rng(self, value: np.random.Generator) -> None:
        self._rng = value

    @classmethod
    def with_inputs(cls, name: str, inputs: dict[str, tuple[int, ...]], seed: int = 0) -> "GraphBuilder":
        """A builder whose graph inputs are ``inputs`` (name -> shape) instead of one
        ``"input"``: a piece of a network built on its own."""
        b = cls(name, (), seed)
        b.g = Graph(name)
        b.shapes = {}
        for n, shape in inputs.items():
            b.shapes[n] = tuple(shape)
            b.g.add_tensor(Tensor(n, tuple(int(d) for d in shape)))
        b.g.inputs = list(inputs)
        return b

    def weight(self, shape: tuple[int, ...], fan_in: int) -> str:
        n = 1
        for d in shape:
            n *= int(d)
        if n * 4 <= INLINE_BYTES:  # small enough that a graph-only file keeps its values
            return self.const((self.rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32))
        name = self._uid("w")
        self.g.add_tensor(Tensor(name, tuple(int(d) for d in shape), "float32", True, None))
        return name

    def const(self, arr: np.ndarray, prefix: str = "w") -> str:
        arr = np.asarray(arr)
        name = self._uid(prefix)
        keep = arr.nbytes <= INLINE_BYTES and arr.size <= MAX_CONST_VALUE
        dtype = _DTYPE_NAMES.get(arr.dtype) or _DTYPE_NAMES.setdefault(arr.dtype, arr.dtype.name)
        self.g.add_tensor(Tensor(name, tuple(map(int, arr.shape)), dtype, True, arr if keep else None))
        return name

    def op(self, op_type: str, inputs: list[str], shape: tuple[int, ...] | None = None, **attrs) -> str:
        out = self._uid(op_type.lower())
        name = self._uid(op_type)
        if shape is None:
            raise ValueError(f"{op_type} {name}: the graph builder needs every output shape")
        self.shapes[out] = tuple(shape)
        g = self.g
        folded = all(g.tensors[t].const for t in inputs if t)
        g.tensors[out] = Tensor(out, tuple(map(int, shape)), "float32", folded)
        op = Op(name, op_type, list(inputs), [out], {k: v if type(v) is int else _attr(v) for k, v in attrs.items()},
                folded=folded)
        g.add_op(op)
        return out

    def model(self, output: str, graph_only: bool = True) -> Graph:  # type: ignore[override]
        """The finished graph (``graph_only`` is accepted for the API's sake: no weights)."""
        g = self.g
        g.outputs = [output]
        g.meta.update(producer="oplat.zoo", opset=self.opset, folded_marked=True, assumed_shapes=[])
        return g
