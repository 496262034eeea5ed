"""Write small .tflite models with LiteRT's schema object API (no TensorFlow needed).

Used for single-op benchmark models and test fixtures. ``TFLiteBuilder`` appends
tensors and operators to one subgraph; ``build()`` returns the flatbuffer bytes.
"""

from __future__ import annotations

import numpy as np

from .tflite_loader import _schema

_TYPES = {"float32": 0, "int32": 2, "int64": 4}


class TFLiteBuilder:
    """Minimal builder: ``add_input``, ``add_const``, ``add_op``, ``mark_output``, ``build``."""

    def __init__(self) -> None:
        s = self.s = _schema()
        self.model = s.ModelT()
        self.model.version = 3
        self.model.buffers = [s.BufferT()]  # buffer 0: empty sentinel
        self.model.operatorCodes = []
        self.sub = s.SubGraphT()
        self.sub.tensors, self.sub.operators, self.sub.inputs, self.sub.outputs = [], [], [], []
        self._codes: dict[int, int] = {}

    def _tensor(self, name: str, shape, dtype: str = "float32", data: np.ndarray | None = None) -> int:
        t = self.s.TensorT()
        t.name, t.shape, t.type = name, list(shape), _TYPES[dtype]
        if data is not None:
            b = self.s.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data, dtype=dtype).tobytes(), np.uint8)
            self.model.buffers.append(b)
            t.buffer = len(self.model.buffers) - 1
        else:
            t.buffer = 0
        self.sub.tensors.append(t)
        return len(self.sub.tensors) - 1

    def add_input(self, name: str, shape) -> int:
        i = self._tensor(name, shape)
        self.sub.inputs.append(i)
        return i

    def add_const(self, name: str, data: np.ndarray) -> int:
        return self._tensor(name, data.shape, str(data.dtype), data)

    def add_tensor(self, name: str, shape) -> int:
        return self._tensor(name, shape)

    def add_op(self, op: str, inputs: list[int], outputs: list[int], options_type: str | None = None,
               **options) -> None:
        code = getattr(self.s.BuiltinOperator, op)
        if code not in self._codes:
            oc = self.s.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = 1
            self.model.operatorCodes.append(oc)
            self._codes[code] = len(self.model.operatorCodes) - 1
        o = self.s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = self._codes[code], inputs, outputs
        if options_type:
            opts = getattr(self.s, f"{options_type}T")()
            for k, v in options.items():
                setattr(opts, k, v)
            o.builtinOptionsType = getattr(self.s.BuiltinOptions, options_type)
            o.builtinOptions = opts
        self.sub.operators.append(o)

    def mark_output(self, i: int) -> None:
        self.sub.outputs.append(i)

    def build(self) -> bytes:
        import flatbuffers

        self.model.subgraphs = [self.sub]
        b = flatbuffers.Builder(1024)
        b.Finish(self.model.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def conv_classifier_tflite(h: int = 32, c_in: int = 3, c_mid: int = 16, classes: int = 10,
                           seed: int = 0) -> bytes:
    """Conv3x3(relu) -> depthwise 3x3(relu6) -> mean -> fully connected: a tiny CNN."""
    rng = np.random.default_rng(seed)
    b = TFLiteBuilder()
    x = b.add_input("input", [1, h, h, c_in])
    w1 = b.add_const("conv/w", rng.standard_normal((c_mid, 3, 3, c_in)).astype(np.float32) * 0.1)
    b1 = b.add_const("conv/b", np.zeros(c_mid, np.float32))
    y1 = b.add_tensor("conv/out", [1, h, h, c_mid])
    b.add_op("CONV_2D", [x, w1, b1], [y1], "Conv2DOptions", padding=0, strideH=1, strideW=1,
             dilationHFactor=1, dilationWFactor=1, fusedActivationFunction=1)
    w2 = b.add_const("dw/w", rng.standard_normal((1, 3, 3, c_mid)).astype(np.float32) * 0.1)
    b2 = b.add_const("dw/b", np.zeros(c_mid, np.float32))
    y2 = b.add_tensor("dw/out", [1, h // 2, h // 2, c_mid])
    b.add_op("DEPTHWISE_CONV_2D", [y1, w2, b2], [y2], "DepthwiseConv2DOptions", padding=0, strideH=2,
             strideW=2, depthMultiplier=1, dilationHFactor=1, dilationWFactor=1, fusedActivationFunction=3)
    axes = b.add_const("mean/axes", np.array([1, 2], np.int32))
    y3 = b.add_tensor("mean/out", [1, c_mid])
    b.add_op("MEAN", [y2, axes], [y3], "ReducerOptions", keepDims=False)
    w4 = b.add_const("fc/w", rng.standard_normal((classes, c_mid)).astype(np.float32) * 0.1)
    b4 = b.add_const("fc/b", np.zeros(classes, np.float32))
    y4 = b.add_tensor("logits", [1, classes])
    b.add_op("FULLY_CONNECTED", [y3, w4, b4], [y4], "FullyConnectedOptions", fusedActivationFunction=0)
    b.mark_output(y4)
    return b.build()
