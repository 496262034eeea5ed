"""A small ONNX graph builder (onnx.helper underneath) used by every zoo generator.

Weights are random (seeded); ``graph_only=True`` records initializer dims without data,
which is all latency prediction needs and keeps generated NAS populations tiny.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..graph_only import strip_weights


class OnnxBuilder:
    """Append ops in NCHW; every method returns the output tensor name."""

    def __init__(self, name: str, input_shape: tuple[int, ...], seed: int = 0, opset: int = 17) -> None:
        self.name, self.opset = name, opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.input = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_shape))
        self.shapes: dict[str, tuple[int, ...]] = {"input": tuple(input_shape)}
        self._n = 0

    def _uid(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def const(self, arr: np.ndarray, prefix: str = "w") -> str:
        name = self._uid(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def weight(self, shape: tuple[int, ...], fan_in: int) -> str:
        """A random weight tensor (normal, scaled by ``fan_in``); a sink that keeps no
        data overrides this and skips drawing it."""
        return self.const((self.rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32))

    def op(self, op_type: str, inputs: list[str], shape: tuple[int, ...] | None = None, **attrs) -> str:
        out = self._uid(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self._uid(op_type), **attrs))
        if shape is not None:
            self.shapes[out] = tuple(shape)
        return out

    def segment(self, key: Any, fn: Callable[..., str], *inputs: str) -> str:
        """``fn(self, *inputs)``: a piece of the network named by a hashable ``key`` that
        fixes what ``fn`` builds from inputs of given shapes (search spaces mark their
        repeated pieces so; :mod:`oplat.spaces.compose` predicts a network from the pieces'
        cached predictions, this builder just builds them)."""
        return fn(self, *inputs)

    # layers ---------------------------------------------------------------------
    def conv(self, x: str, c_out: int, k: int | tuple[int, int] = 3, s: int = 1, groups: int = 1,
             bias: bool = True, pad: int | None = None, dilation: int = 1) -> str:
        """A Conv; ``k`` is a size or a (height, width) pair (Inception's 1x7 and 7x1)."""
        n, c_in, h, w = self.shapes[x]
        kh, kw = (k, k) if isinstance(k, int) else k
        ph, pw = ((kh // 2) * dilation, (kw // 2) * dilation) if pad is None else (pad, pad)
        wt = self.weight((c_out, c_in // groups, kh, kw), c_in // groups * kh * kw)
        ins = [x, wt] + ([self.const(np.zeros(c_out, np.float32), "b")] if bias else [])
        ho = (h + 2 * ph - dilation * (kh - 1) - 1) // s + 1
        wo = (w + 2 * pw - dilation * (kw - 1) - 1) // s + 1
        return self.op("Conv", ins, (n, c_out, ho, wo), kernel_shape=[kh, kw], strides=[s, s],
                       pads=[ph, pw, ph, pw], group=groups, dilations=[dilation, dilation])

    def bn(self, x: str) -> str:
        c = self.shapes[x][1]
        ps = [self.const(np.ones(c, np.float32), "g"), self.const(np.zeros(c, np.float32), "b"),
              self.const(np.zeros(c, np.float32), "m"), self.const(np.ones(c, np.float32), "v")]
        return self.op("BatchNormalization", [x] + ps, self.shapes[x], epsilon=1e-5)

    def act(self, x: str, kind: str = "relu") -> str:
        s = self.shapes[x]
        if kind == "relu":
            return self.op("Relu", [x], s)
        if kind == "relu6":
            return self.op("Clip", [x, self.const(np.array(0, np.float32), "lo"),
                                    self.const(np.array(6, np.float32), "hi")], s)
        if kind == "hswish":
            return self.op("HardSwish", [x], s)
        if kind == "hsigmoid":
            return self.op("HardSigmoid", [x], s, alpha=1 / 6, beta=0.5)
        if kind == "sigmoid":
            return self.op("Sigmoid", [x], s)
        if kind == "swish":
            return self.op("Mul", [x, self.op("Sigmoid", [x], s)], s)
        if kind == "gelu":
            return self.op("Gelu", [x], s) if self.opset >= 20 else self._gelu_erf(x)
        if kind in ("none", None):
            return x
        raise ValueError(kind)

    def _gelu_erf(self, x: str) -> str:
        s = self.shapes[x]
        e = self.op("Erf", [self.op("Div", [x, self.const(np.array(np.sqrt(2), np.float32), "c")], s)], s)
        y = self.op("Add", [e, self.const(np.array(1, np.float32), "c")], s)
        return self.op("Mul", [self.op("Mul", [x, y], s), self.const(np.array(0.5, np.float32), "c")], s)

    def conv_bn_act(self, x: str, c_out: int, k: int = 3, s: int = 1, groups: int = 1, act: str = "relu") -> str:
        return self.act(self.bn(self.conv(x, c_out, k, s, groups, bias=False)), act)

    def add(self, a: str, b: str) -> str:
        return self.op("Add", [a, b], self.shapes[a])

    def mul(self, a: str, b: str) -> str:
        sa, sb = self.shapes[a], self.shapes[b]
        return self.op("Mul", [a, b], tuple(np.broadcast_shapes(sa, sb)))

    def avg_pool(self, x: str, k: int = 3, s: int = 1, p: int = 1) -> str:
        n, c, h, w = self.shapes[x]
        return self.op("AveragePool", [x], (n, c, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1),
                       kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, count_include_pad=0)

    def max_pool(self, x: str, k: int = 3, s: int = 2, p: int = 1) -> str:
        n, c, h, w = self.shapes[x]
        return self.op("MaxPool", [x], (n, c, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1),
                       kernel_shape=[k, k], strides=[s, s], pads=[p] * 4)

    def channel_shuffle(self, x: str, groups: int = 2) -> str:
        """ShuffleNet's channel shuffle as exporters write it: Reshape, Transpose, Reshape."""
        n, c, h, w = self.shapes[x]
        y = self.op("Reshape", [x, self.const(np.array([n, groups, c // groups, h, w], np.int64), "shape")],
                    (n, groups, c // groups, h, w))
        y = self.op("Transpose", [y], (n, c // groups, groups, h, w), perm=[0, 2, 1, 3, 4])
        return self.op("Reshape", [y, self.const(np.array([n, c, h, w], np.int64), "shape")], (n, c, h, w))

    def gap(self, x: str) -> str:
        n, c = self.shapes[x][:2]
        return self.op("GlobalAveragePool", [x], (n, c, 1, 1))

    def concat(self, xs: list[str], axis: int = 1) -> str:
        s = list(self.shapes[xs[0]])
        s[axis] = sum(self.shapes[x][axis] for x in xs)
        return self.op("Concat", xs, tuple(s), axis=axis)

    def flatten(self, x: str) -> str:
        s = self.shapes[x]
        return self.op("Flatten", [x], (s[0], int(np.prod(s[1:]))), axis=1)

    def linear(self, x: str, n_out: int, bias: bool = True) -> str:
        s = self.shapes[x]
        k = s[-1]
        w = self.weight((k, n_out), k)
        y = self.op("MatMul", [x, w], s[:-1] + (n_out,))
        if bias:
            y = self.op("Add", [y, self.const(np.zeros(n_out, np.float32), "b")], s[:-1] + (n_out,))
        return y

    def classifier(self, x: str, classes: int) -> str:
        return self.linear(self.flatten(self.gap(x)), classes)

    def se(self, x: str, reduction: int = 4, gate: str = "sigmoid", round_to: int = 8) -> str:
        c = self.shapes[x][1]
        mid = max(round_to, int(c / reduction + round_to / 2) // round_to * round_to)
        s = self.act(self.conv(self.gap(x), mid, k=1), "relu")
        s = self.act(self.conv(s, c, k=1), gate)
        return self.mul(x, s)

    def model(self, output: str, graph_only: bool = False) -> onnx.ModelProto:
        out = helper.make_tensor_value_info(output, TensorProto.FLOAT, list(self.shapes.get(output, ())) or None)
        g = helper.make_graph(self.nodes, self.name, [self.input], [out], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", self.opset)], producer_name="oplat.zoo")
        m.ir_version = 8
        return strip_weights(m) if graph_only else m
