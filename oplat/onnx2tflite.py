"""Convert an ONNX model to a .tflite flatbuffer (float32), the way TFLite's converter
would lay it out: NHWC convolutions with BatchNorm folded and ReLU/ReLU6 fused, GELU and
hard-sigmoid recognised, LayerNorm decomposed into the MEAN / SQUARED_DIFFERENCE / RSQRT
ops the TF converter emits, constant sub-graphs (Shape -> Gather -> Reshape chains)
folded.

Layout: a 4-D tensor made by a layout-aware op (conv, pool, element-wise, concat on
channels, ...) lives in NHWC; an op that needs the ONNX (NCHW) view of it (a Reshape of
a feature map, a Transpose) gets one TRANSPOSE inserted, as converted PyTorch models do.
Outputs are numerically those of the ONNX model (tests compare with onnxruntime), so
the result can be measured with LiteRT (host truth) or pushed to a phone.

    data = onnx_to_tflite(onnx.load("mobilenetv2.onnx"))
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import ModelLoadError, ShapeError
from .graph_only import is_graph_only, with_random_weights
from .onnx_utils import QUANTIZED_OPS
from .onnx_utils import attrs as _attrs
from .onnx_utils import clip_bounds, scalar_of
from .tflite_writer import TFLiteBuilder

NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)
_UNARY = {"Relu": "RELU", "Sigmoid": "LOGISTIC", "HardSwish": "HARD_SWISH", "Tanh": "TANH", "Sqrt": "SQRT",
          "Exp": "EXP", "Neg": "NEG", "Abs": "ABS"}
_BINARY = {"Add": ("ADD", "AddOptions"), "Sub": ("SUB", "SubOptions"), "Mul": ("MUL", "MulOptions"),
           "Div": ("DIV", "DivOptions"), "Max": ("MAXIMUM", None), "Min": ("MINIMUM", None)}
# ops whose NHWC form is the same op with the channel axis moved
_LAYOUT_FREE = set(_UNARY) | set(_BINARY) | {"Clip", "HardSigmoid", "Identity", "Dropout"}
_FOLDABLE_SKIP = {"RandomNormal", "RandomUniform"}


class ConvertError(ModelLoadError):
    """The ONNX model holds something the converter cannot express in TFLite."""


def onnx_to_tflite(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None = None,
                   nhwc_inputs: bool = False) -> bytes:
    """The .tflite bytes of ``model`` (graph-only models get random weights first).

    ``nhwc_inputs``: 4-D inputs are declared NHWC (as deployed TFLite models take
    images) instead of the ONNX NCHW with a TRANSPOSE behind them. The model is validated
    first (:mod:`oplat.validate`), and one whose weights exceed what a .tflite file can
    hold (2 GB) is refused before any weight is made.
    """
    from .onnx_loader import load_onnx

    quantized = sorted({n.op_type for n in model.graph.node if n.op_type in QUANTIZED_OPS})
    if quantized:
        raise ConvertError(f"{model.graph.name or 'model'}: a quantized model ({', '.join(quantized)}); the converter "
                           "writes float .tflite files only (oplat predict takes the quantized ONNX as it is)")
    try:
        load_onnx(model, input_shapes)  # validation: a malformed graph is one clear error
    except ShapeError as e:  # a dynamic input without a size, say: the converter's own error
        raise ConvertError(str(e)) from None
    weight_bytes = sum(int(np.prod(t.dims, dtype=np.float64)) * 4 for t in model.graph.initializer)
    if weight_bytes >= MAX_TFLITE_BYTES:
        raise ConvertError(f"{model.graph.name or 'model'}: {weight_bytes / 2 ** 30:.1f} GB of weights; "
                           "a .tflite file holds at most 2 GB")
    if is_graph_only(model):
        model = with_random_weights(model)
    return _Converter(model, input_shapes or {}, nhwc_inputs).run()


# flatbuffers address 32-bit offsets: a .tflite file is smaller than 2 GB
MAX_TFLITE_BYTES = 2 ** 31


class _Converter:
    def __init__(self, model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]],
                 nhwc_inputs: bool = False) -> None:
        self.nhwc_inputs = nhwc_inputs
        m = onnx.ModelProto()
        m.CopyFrom(model)
        init_names = {t.name for t in m.graph.initializer}
        for inp in m.graph.input:
            if inp.name in input_shapes:
                dims = inp.type.tensor_type.shape.dim
                for d, v in zip(dims, input_shapes[inp.name]):
                    d.ClearField("dim_param")
                    d.dim_value = int(v)
        self.consts: dict[str, np.ndarray] = {}
        self.alias: dict[str, str] = {}
        m = self._prefold(m)
        self.model = m
        self.graph = m.graph
        self.inputs = [i for i in m.graph.input if i.name not in init_names]
        for i in self.inputs:
            s = self.shapes.get(i.name)
            if not s or any(d is None or d <= 0 for d in s):
                raise ConvertError(f"input {i.name!r} has a dynamic shape {s}; give it a size "
                                   f"(--input-shape {i.name}=1x3x224x224)")
        self.b = TFLiteBuilder()
        self.t: dict[str, dict[str, int]] = {}  # onnx name -> {"nchw"|"nhwc": tflite tensor}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        self._index_nodes()
        self.skip: set[int] = set()
        self._n = 0

    def _infer(self, m: onnx.ModelProto) -> onnx.ModelProto:
        try:
            m = onnx.shape_inference.infer_shapes(m, data_prop=True)
        except Exception as e:
            raise ConvertError(f"shape inference failed: {str(e).splitlines()[0]}") from None
        self.consts.update({t.name: numpy_helper.to_array(t) for t in m.graph.initializer
                            if t.name not in self.consts})
        self.shapes: dict[str, list[int] | None] = {}
        for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
            dims = vi.type.tensor_type.shape.dim
            self.shapes[vi.name] = ([d.dim_value if d.HasField("dim_value") else None for d in dims]
                                    if vi.type.tensor_type.HasField("shape") else None)
        for n in m.graph.node:  # contrib element-wise ops (com.microsoft Gelu) keep their input's shape
            if n.op_type in ("Gelu", "FastGelu", "BiasGelu", "QuickGelu") and not self.shapes.get(n.output[0]):
                self.shapes[n.output[0]] = self.shapes.get(n.input[0])
        return m

    def _prefold(self, m: onnx.ModelProto) -> onnx.ModelProto:
        """Fold constant sub-graphs into initializers and re-infer shapes until nothing folds
        (computed Pad/Reshape sizes become known only after their Shape chains fold)."""
        for _ in range(200):
            m = self._infer(m)
            self.model = m
            keep, folded = [], []
            for node in m.graph.node:
                try:
                    done = self._fold(node)
                except ConvertError:
                    done = False
                (folded if done and node.op_type != "Constant" else keep).append(node)
            if not folded:
                return m
            del m.graph.node[:]
            m.graph.node.extend(keep)
            have = {t.name for t in m.graph.initializer}
            for node in folded:
                for o in node.output:
                    if o and o not in have:
                        m.graph.initializer.append(numpy_helper.from_array(np.asarray(self.consts[o]), o))
            used = {x for n in m.graph.node for x in n.input} | {o.name for o in m.graph.output}
            inits = [t for t in m.graph.initializer if t.name in used]
            del m.graph.initializer[:]
            m.graph.initializer.extend(inits)
        return m

    def _index_nodes(self) -> None:
        self.consumers = {}
        self.position = {}
        for k, n in enumerate(self.graph.node):
            self.position[n.output[0]] = k
            for x in n.input:
                self.consumers.setdefault(x, []).append(n)

    def _skip(self, node: onnx.NodeProto) -> None:
        self.skip.add(self.position[node.output[0]])

    # -- tensors ---------------------------------------------------------------
    def shape(self, name: str) -> list[int]:
        name = self.alias.get(name, name)
        if name in self.consts:
            return list(self.consts[name].shape)
        s = self.shapes.get(name)
        if s is None or any(d is None for d in s):
            raise ConvertError(f"shape of tensor {name!r} is unknown after shape inference")
        return list(s)

    def _uid(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def const(self, arr: np.ndarray, name: str = "c") -> int:
        arr = np.asarray(arr)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        if arr.dtype == np.int64:
            arr = arr.astype(np.int32)
        return self.b.add_const(self._uid(name), np.ascontiguousarray(arr))

    def new(self, name: str, shape: Sequence[int], layout: str = "nchw") -> int:
        idx = self.b.add_tensor(self._uid(name), list(shape))
        self.t.setdefault(name, {})[layout] = idx
        return idx

    def has_nhwc(self, name: str) -> bool:
        return "nhwc" in self.t.get(self.alias.get(name, name), {})

    def get(self, name: str, layout: str = "nchw") -> int:
        """The TFLite tensor of ONNX tensor ``name`` in ``layout`` (transposing once if needed)."""
        name = self.alias.get(name, name)
        if name in self.consts:
            arr = self.consts[name]
            if layout == "nhwc":
                arr = _const_nhwc(arr)
            return self.const(arr, name)
        have = self.t.get(name)
        if not have:
            raise ConvertError(f"tensor {name!r} is used before it is produced")
        if layout in have:
            return have[layout]
        shape = self.shape(name)
        perm, src = (NCHW_TO_NHWC, "nchw") if layout == "nhwc" else (NHWC_TO_NCHW, "nhwc")
        out_shape = [shape[p] for p in NCHW_TO_NHWC] if layout == "nhwc" else shape
        out = self.new(name, out_shape, layout)
        self.b.add_op("TRANSPOSE", [have[src], self.const(np.array(perm, np.int32), "perm")], [out],
                      "TransposeOptions")
        return out

    def out(self, name: str, layout: str = "nchw") -> int:
        s = self.shape(name)
        return self.new(name, [s[p] for p in NCHW_TO_NHWC] if layout == "nhwc" else s, layout)

    def single_consumer(self, name: str, op_types: Sequence[str]) -> onnx.NodeProto | None:
        cs = self.consumers.get(name, [])
        outs = {o.name for o in self.graph.output}
        if len(cs) == 1 and cs[0].op_type in op_types and name not in outs:
            return cs[0]
        return None

    # -- driver ----------------------------------------------------------------
    def run(self) -> bytes:
        for i in self.inputs:
            shape = self.shape(i.name)
            if self.nhwc_inputs and len(shape) == 4:
                self.t[i.name] = {"nhwc": self.b.add_input(i.name, [shape[p] for p in NCHW_TO_NHWC])}
            else:
                self.t[i.name] = {"nchw": self.b.add_input(i.name, shape)}
        self._match_gelu()
        for k, node in enumerate(self.graph.node):
            if k in self.skip:
                continue
            if self._fold(node):
                continue
            fn = getattr(self, f"op_{node.op_type}", None)
            if fn is None:
                raise ConvertError(f"unsupported op {node.op_type} (node {node.name or node.output[0]!r}) "
                                   f"for TFLite conversion")
            fn(node, _attrs(node))
        for o in self.graph.output:
            name = self.alias.get(o.name, o.name)
            if name in self.consts:
                raise ConvertError(f"output {o.name!r} is a constant")
            keep_nhwc = self.nhwc_inputs and self.has_nhwc(name) and "nchw" not in self.t.get(name, {})
            self.b.mark_output(self.get(name, "nhwc" if keep_nhwc else "nchw"))
        self.b.sub.name = self.graph.name or "main"
        return self.b.build()

    def _fold(self, node: onnx.NodeProto) -> bool:
        """Evaluate constant-only nodes (and Shape of static tensors) at conversion time."""
        if node.op_type == "Constant":
            a = _attrs(node)
            if "value" in a:
                self.consts[node.output[0]] = numpy_helper.to_array(a["value"])
            else:
                key = next(iter(a))
                self.consts[node.output[0]] = np.array(a[key])
            return True
        if node.op_type == "Shape":
            s = self.shape(node.input[0])
            a = _attrs(node)
            self.consts[node.output[0]] = np.array(s[a.get("start", 0):a.get("end", len(s))], np.int64)
            return True
        ins = [self.alias.get(x, x) for x in node.input if x]
        if node.op_type in _FOLDABLE_SKIP or not ins or not all(x in self.consts for x in ins):
            return False
        from onnx.reference import ReferenceEvaluator

        inputs = [onnx.helper.make_tensor_value_info(f"i{j}", onnx.helper.np_dtype_to_tensor_dtype(
            self.consts[self.alias.get(x, x)].dtype), None) for j, x in enumerate(node.input) if x]
        names = iter(f"i{j}" for j in range(len(inputs)))
        n2 = onnx.helper.make_node(node.op_type, [next(names) if x else "" for x in node.input],
                                   [f"o{j}" for j in range(len(node.output))], domain=node.domain)
        n2.attribute.extend(node.attribute)
        outs = [onnx.helper.make_value_info(f"o{j}", onnx.TypeProto()) for j in range(len(node.output))]
        g = onnx.helper.make_graph([n2], "fold", inputs, outs)
        m = onnx.helper.make_model(g, opset_imports=list(self.model.opset_import))
        try:
            vals = ReferenceEvaluator(m).run(None, {f"i{j}": self.consts[self.alias.get(x, x)]
                                                    for j, x in enumerate([x for x in node.input if x])})
        except Exception as e:
            raise ConvertError(f"cannot fold constant node {node.op_type} ({node.name}): {e}") from None
        for o, v in zip(node.output, vals):
            self.consts[o] = np.asarray(v)
        return True

    def _match_gelu(self) -> None:
        """x*0.5*(1+erf(x/sqrt2)) (either Mul order) -> one GELU op."""
        nodes = list(self.graph.node)
        pos = self.position
        producer = {o: n for n in nodes for o in n.output}
        for e in nodes:
            if e.op_type != "Erf":
                continue
            d = producer.get(e.input[0])
            if d is None or d.op_type not in ("Div", "Mul") or d.input[1] not in self.consts:
                continue
            c = float(np.asarray(self.consts[d.input[1]]).reshape(-1)[0])
            if not np.isclose(c, np.sqrt(2) if d.op_type == "Div" else 1 / np.sqrt(2), rtol=1e-3):
                continue
            x = d.input[0]
            a = self.single_consumer(e.output[0], ("Add",))
            if a is None or not _is_const_value(self.consts, a.input[1], 1.0):
                continue
            m1 = self.single_consumer(a.output[0], ("Mul",))
            if m1 is None:
                continue
            other = m1.input[0] if m1.input[1] == a.output[0] else m1.input[1]
            chain = [d, e, a, m1]
            if other == x:  # (x * (1 + erf)) * 0.5
                m2 = self.single_consumer(m1.output[0], ("Mul",))
                if m2 is None or not _is_const_value(self.consts, m2.input[1], 0.5):
                    continue
                chain.append(m2)
                final = m2.output[0]
            else:  # (x * 0.5) * (1 + erf)
                h = producer.get(other)
                if h is None or h.op_type != "Mul" or h.input[0] != x or not _is_const_value(self.consts, h.input[1], 0.5):
                    continue
                if len(self.consumers.get(h.output[0], [])) != 1:
                    continue
                chain.append(h)
                final = m1.output[0]
            ks = [pos[n.output[0]] for n in chain]
            self.skip.update(ks)
            self.skip.discard(max(ks))
            nodes[max(ks)] = onnx.helper.make_node("_Gelu", [x], [final], name=nodes[max(ks)].name)
        del self.graph.node[:]
        self.graph.node.extend(nodes)
        self._index_nodes()

    # -- ops -------------------------------------------------------------------
    def op__Gelu(self, node, a) -> None:
        layout = "nhwc" if self.has_nhwc(node.input[0]) else "nchw"
        self.b.add_op("GELU", [self.get(node.input[0], layout)], [self.out(node.output[0], layout)],
                      "GeluOptions", approximate=False)

    op_Gelu = op__Gelu  # com.microsoft Gelu

    def _fused_act(self, name: str) -> tuple[int, str]:
        """A ReLU / ReLU6 that is the only consumer of ``name``: (TFLite code, output name)."""
        n = self.single_consumer(name, ("Relu", "Clip"))
        if n is None:
            return 0, name
        if n.op_type == "Relu":
            code = 1
        else:
            bounds = self._clip_bounds(n)
            code = None if bounds is None else {(0.0, 6.0): 3, (-1.0, 1.0): 2, (0.0, float("inf")): 1}.get(bounds)
            if code is None:
                return 0, name
        self._skip(n)
        return code, n.output[0]

    def op_Conv(self, node, a) -> None:
        w = self.consts.get(node.input[1])
        if w is None:
            raise ConvertError(f"Conv {node.name!r} has non-constant weights")
        if w.ndim != 4:
            raise ConvertError(f"Conv {node.name!r}: only 2-D convolutions convert ({w.ndim - 2}-D given)")
        bias = self.consts[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0], np.float32)
        out_name = node.output[0]
        bn = self.single_consumer(out_name, ("BatchNormalization",))
        if bn is not None:
            sc, bb, mean, var = (self.consts[x] for x in bn.input[1:5])
            f = sc / np.sqrt(var + _attrs(bn).get("epsilon", 1e-5))
            w = w * f[:, None, None, None]
            bias = (bias - mean) * f + bb
            self._skip(bn)
            out_name = bn.output[0]
        act, out_name = self._fused_act(out_name)
        g = int(a.get("group", 1))
        f_out, cg, kh, kw = w.shape
        c_in = cg * g
        s = list(a.get("strides", [1, 1]))
        dil = list(a.get("dilations", [1, 1]))
        in_shape = self.shape(node.input[0])
        x, padding = self._padded(node.input[0], a, (kh, kw), s, dil, in_shape, 0.0)
        y = self.out(out_name, "nhwc")
        if g == c_in and g > 1 and f_out % c_in == 0:
            wt = w.reshape(f_out, kh, kw).transpose(1, 2, 0)[None]
            self.b.add_op("DEPTHWISE_CONV_2D", [x, self.const(wt.astype(np.float32), "w"),
                                                self.const(bias.astype(np.float32), "b")], [y],
                          "DepthwiseConv2DOptions", padding=padding, strideH=s[0], strideW=s[1],
                          depthMultiplier=f_out // c_in, dilationHFactor=dil[0], dilationWFactor=dil[1],
                          fusedActivationFunction=act)
        else:
            wt = w.transpose(0, 2, 3, 1)
            self.b.add_op("CONV_2D", [x, self.const(wt.astype(np.float32), "w"),
                                      self.const(bias.astype(np.float32), "b")], [y], "Conv2DOptions",
                          padding=padding, strideH=s[0], strideW=s[1], dilationHFactor=dil[0],
                          dilationWFactor=dil[1], fusedActivationFunction=act)

    def _padded(self, name: str, a: dict, k: Sequence[int], s: Sequence[int], dil: Sequence[int],
                in_shape: Sequence[int], pad_value: float) -> tuple[int, int]:
        """NHWC input tensor and TFLite padding (0 SAME, 1 VALID), adding PAD when neither fits."""
        x = self.get(name, "nhwc")
        pads = list(a.get("pads", [0, 0, 0, 0]))
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("SAME_UPPER",):
            return x, 0
        if auto == "VALID" or not (any(pads) or a.get("ceil_mode", 0)):
            return x, 1
        same = []
        for i in range(2):
            h = in_shape[2 + i]
            ek = (k[i] - 1) * dil[i] + 1
            total = max((-(-h // s[i]) - 1) * s[i] + ek - h, 0)
            same.append((total // 2, total - total // 2))
        if pads == [same[0][0], same[1][0], same[0][1], same[1][1]] and not a.get("ceil_mode", 0):
            return x, 0
        if a.get("ceil_mode", 0):  # ceil rounding = extra padding at the end
            pads = list(pads)
            for i in range(2):
                h = in_shape[2 + i]
                ek = (k[i] - 1) * dil[i] + 1
                o = -(-(h + pads[i] + pads[i + 2] - ek) // s[i]) + 1
                if (o - 1) * s[i] >= h + pads[i]:  # the last window must start inside
                    o -= 1
                pads[i + 2] += max(0, (o - 1) * s[i] + ek - (h + pads[i] + pads[i + 2]))
        hs = self.shape(name)
        padded = [hs[0], hs[2] + pads[0] + pads[2], hs[3] + pads[1] + pads[3], hs[1]]
        y = self.b.add_tensor(self._uid(name + "_pad"), padded)
        paddings = np.array([[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]], np.int32)
        if pad_value == 0.0:
            self.b.add_op("PAD", [x, self.const(paddings, "pads")], [y], "PadOptions")
        else:
            self.b.add_op("PADV2", [x, self.const(paddings, "pads"), self.const(np.array(pad_value, np.float32))],
                          [y], "PadV2Options")
        return y, 1

    def _pool(self, node, a, op: str) -> None:
        k = list(a["kernel_shape"])
        s = list(a.get("strides", [1, 1]))
        if op == "AVERAGE_POOL_2D" and any(a.get("pads", [0])) and not a.get("count_include_pad", 0):
            x, padding = self.get(node.input[0], "nhwc"), 0  # SAME excludes pads from the count
            ins = self.shape(node.input[0])
            o = self.shape(node.output[0])
            if [-(-ins[2] // s[0]), -(-ins[3] // s[1])] != o[2:]:
                x, padding = self._padded(node.input[0], a, k, s, [1, 1], ins, 0.0)
        else:
            x, padding = self._padded(node.input[0], a, k, s, [1, 1], self.shape(node.input[0]),
                                      -3.4e38 if op == "MAX_POOL_2D" else 0.0)
        act, out_name = self._fused_act(node.output[0])
        self.b.add_op(op, [x], [self.out(out_name, "nhwc")], "Pool2DOptions", padding=padding, strideH=s[0],
                      strideW=s[1], filterHeight=k[0], filterWidth=k[1], fusedActivationFunction=act)

    def op_MaxPool(self, node, a) -> None:
        self._pool(node, a, "MAX_POOL_2D")

    def op_AveragePool(self, node, a) -> None:
        self._pool(node, a, "AVERAGE_POOL_2D")

    def op_GlobalAveragePool(self, node, a) -> None:
        self.b.add_op("MEAN", [self.get(node.input[0], "nhwc"), self.const(np.array([1, 2], np.int32), "axes")],
                      [self.out(node.output[0], "nhwc")], "ReducerOptions", keepDims=True)

    def op_GlobalMaxPool(self, node, a) -> None:
        self.b.add_op("REDUCE_MAX", [self.get(node.input[0], "nhwc"), self.const(np.array([1, 2], np.int32))],
                      [self.out(node.output[0], "nhwc")], "ReducerOptions", keepDims=True)

    def op_ReduceMean(self, node, a) -> None:
        rank = len(self.shape(node.input[0]))
        axes = a.get("axes")
        if axes is None and len(node.input) > 1:
            axes = [int(v) for v in self.consts[node.input[1]]]
        axes = [ax % rank for ax in (axes if axes is not None else range(rank))]
        keep = int(a.get("keepdims", 1))
        if rank == 4 and self.has_nhwc(node.input[0]) and keep:
            nh = [NCHW_TO_NHWC.index(ax) for ax in axes]
            self.b.add_op("MEAN", [self.get(node.input[0], "nhwc"), self.const(np.array(sorted(nh), np.int32))],
                          [self.out(node.output[0], "nhwc")], "ReducerOptions", keepDims=True)
            return
        self.b.add_op("MEAN", [self.get(node.input[0]), self.const(np.array(axes, np.int32))],
                      [self.out(node.output[0])], "ReducerOptions", keepDims=bool(keep))

    def _elementwise_layout(self, names: Sequence[str], out: str) -> str:
        if len(self.shape(out)) != 4:
            return "nchw"
        live = [n for n in names if self.alias.get(n, n) not in self.consts]
        if live and all(self.has_nhwc(n) for n in live):
            return "nhwc"
        if live and any(self.has_nhwc(n) for n in live) and all(len(self.shape(n)) == 4 for n in live):
            return "nhwc"
        return "nchw"

    def _unary(self, node, op: str, opts: str | None = None, **kw) -> None:
        layout = self._elementwise_layout(node.input[:1], node.output[0])
        self.b.add_op(op, [self.get(node.input[0], layout)], [self.out(node.output[0], layout)], opts, **kw)

    def op_Relu(self, node, a) -> None:
        self._unary(node, "RELU")

    def op_Sigmoid(self, node, a) -> None:
        self._unary(node, "LOGISTIC")

    def op_HardSwish(self, node, a) -> None:
        self._unary(node, "HARD_SWISH")

    def op_Tanh(self, node, a) -> None:
        self._unary(node, "TANH")

    def op_Sqrt(self, node, a) -> None:
        self._unary(node, "SQRT")

    def op_Exp(self, node, a) -> None:
        self._unary(node, "EXP")

    def op_Erf(self, node, a) -> None:
        raise ConvertError(f"Erf outside a GELU pattern (node {node.name!r}) has no TFLite builtin")

    def op_Identity(self, node, a) -> None:
        self.alias[node.output[0]] = self.alias.get(node.input[0], node.input[0])

    op_Dropout = op_Identity

    def _clip_bounds(self, node: onnx.NodeProto) -> tuple[float, float] | None:
        return clip_bounds(_attrs(node), node.input, lambda t: scalar_of(self.consts, t))

    def op_Clip(self, node, a) -> None:
        bounds = self._clip_bounds(node)
        if bounds is None:
            raise ConvertError(f"Clip {node.name!r}: bounds computed at run time cannot be converted")
        lo, hi = bounds
        if (lo, hi) == (0.0, 6.0):
            return self._unary(node, "RELU6")
        if (lo, hi) == (0.0, float("inf")):
            return self._unary(node, "RELU")
        layout = self._elementwise_layout(node.input[:1], node.output[0])
        x = self.get(node.input[0], layout)
        shape = self.b.sub.tensors[x].shape
        if lo > -float("inf"):
            y = self.b.add_tensor(self._uid("clip_lo"), shape)
            self.b.add_op("MAXIMUM", [x, self.const(np.array(lo, np.float32))], [y])
            x = y
        self.b.add_op("MINIMUM", [x, self.const(np.array(hi, np.float32))], [self.out(node.output[0], layout)])

    def op_HardSigmoid(self, node, a) -> None:
        alpha, beta = a.get("alpha", 0.2), a.get("beta", 0.5)
        layout = self._elementwise_layout(node.input[:1], node.output[0])
        x = self.get(node.input[0], layout)
        shape = self.b.sub.tensors[x].shape
        t1 = self.b.add_tensor(self._uid("hs_mul"), shape)
        self.b.add_op("MUL", [x, self.const(np.array(6 * alpha, np.float32))], [t1], "MulOptions")
        t2 = self.b.add_tensor(self._uid("hs_add"), shape)
        self.b.add_op("ADD", [t1, self.const(np.array(6 * beta, np.float32))], [t2], "AddOptions",
                      fusedActivationFunction=3)
        self.b.add_op("MUL", [t2, self.const(np.array(1 / 6, np.float32))], [self.out(node.output[0], layout)],
                      "MulOptions")

    def _binary(self, node, a) -> None:
        op, opts = _BINARY[node.op_type]
        layout = self._elementwise_layout(node.input, node.output[0])
        ins = []
        for x in node.input:
            nm = self.alias.get(x, x)
            if nm in self.consts and layout == "nhwc":
                ins.append(self.const(_const_nhwc(self.consts[nm])))
            else:
                ins.append(self.get(x, layout))
        act, out_name = (0, node.output[0])
        if op in ("ADD", "SUB", "MUL", "DIV"):
            act, out_name = self._fused_act(node.output[0])
        kw = {"fusedActivationFunction": act} if opts else {}
        self.b.add_op(op, ins, [self.out(out_name, layout)], opts, **kw)

    op_Add = op_Sub = op_Mul = op_Div = op_Max = op_Min = _binary

    def op_Pow(self, node, a) -> None:
        e = self.consts.get(node.input[1])
        if e is not None and float(np.asarray(e).reshape(-1)[0]) == 2.0:
            layout = self._elementwise_layout(node.input[:1], node.output[0])
            x = self.get(node.input[0], layout)
            self.b.add_op("MUL", [x, x], [self.out(node.output[0], layout)], "MulOptions")
            return
        layout = "nchw"
        self.b.add_op("POW", [self.get(node.input[0]), self.get(node.input[1])], [self.out(node.output[0], layout)])

    def op_BatchNormalization(self, node, a) -> None:
        sc, bb, mean, var = (self.consts[x] for x in node.input[1:5])
        f = sc / np.sqrt(var + a.get("epsilon", 1e-5))
        rank = len(self.shape(node.input[0]))
        layout = "nhwc" if rank == 4 and self.has_nhwc(node.input[0]) else "nchw"
        x = self.get(node.input[0], layout)
        cshape = [-1] if layout == "nhwc" else [-1] + [1] * (rank - 2)
        t = self.b.add_tensor(self._uid("bn_mul"), self.b.sub.tensors[x].shape)
        self.b.add_op("MUL", [x, self.const(f.reshape(cshape).astype(np.float32))], [t], "MulOptions")
        act, out_name = self._fused_act(node.output[0])
        self.b.add_op("ADD", [t, self.const((bb - mean * f).reshape(cshape).astype(np.float32))],
                      [self.out(out_name, layout)], "AddOptions", fusedActivationFunction=act)

    def op_Concat(self, node, a) -> None:
        rank = len(self.shape(node.output[0]))
        axis = a["axis"] % rank
        live = [x for x in node.input if self.alias.get(x, x) not in self.consts]
        layout = "nhwc" if rank == 4 and live and any(self.has_nhwc(x) for x in live) else "nchw"
        ax = NCHW_TO_NHWC.index(axis) if layout == "nhwc" else axis
        self.b.add_op("CONCATENATION", [self.get(x, layout) for x in node.input],
                      [self.out(node.output[0], layout)], "ConcatenationOptions", axis=ax, fusedActivationFunction=0)

    def op_Split(self, node, a) -> None:
        shape = self.shape(node.input[0])
        rank = len(shape)
        axis = a.get("axis", 0) % rank
        split = a.get("split")
        if split is None and len(node.input) > 1 and node.input[1]:
            split = [int(v) for v in self.consts[node.input[1]]]
        if split is None:
            split = [shape[axis] // len(node.output)] * len(node.output)
        layout = "nhwc" if rank == 4 and self.has_nhwc(node.input[0]) else "nchw"
        ax = NCHW_TO_NHWC.index(axis) if layout == "nhwc" else axis
        outs = [self.out(o, layout) for o in node.output]
        self.b.add_op("SPLIT_V", [self.get(node.input[0], layout), self.const(np.array(split, np.int32)),
                                  self.const(np.array(ax, np.int32))], outs, "SplitVOptions", numSplits=len(outs))

    def op_Slice(self, node, a) -> None:
        shape = self.shape(node.input[0])
        rank = len(shape)
        starts = [int(v) for v in self.consts[node.input[1]]]
        ends = [int(v) for v in self.consts[node.input[2]]]
        axes = [int(v) % rank for v in self.consts[node.input[3]]] if len(node.input) > 3 and node.input[3] \
            else list(range(len(starts)))
        steps = [int(v) for v in self.consts[node.input[4]]] if len(node.input) > 4 and node.input[4] \
            else [1] * len(starts)
        begin, end, stride = [0] * rank, list(shape), [1] * rank
        for st, en, ax, sp in zip(starts, ends, axes, steps):
            d = shape[ax]
            st = max(0, min(d, st + d if st < 0 else st))
            en = max(0, min(d, en + d if en < 0 else en))
            begin[ax], end[ax], stride[ax] = st, en, sp
        layout = "nhwc" if rank == 4 and self.has_nhwc(node.input[0]) else "nchw"
        if layout == "nhwc":
            begin, end, stride = ([v[p] for p in NCHW_TO_NHWC] for v in (begin, end, stride))
        self.b.add_op("STRIDED_SLICE", [self.get(node.input[0], layout), self.const(np.array(begin, np.int32)),
                                        self.const(np.array(end, np.int32)), self.const(np.array(stride, np.int32))],
                      [self.out(node.output[0], layout)], "StridedSliceOptions", beginMask=0, endMask=0)

    def op_Gather(self, node, a) -> None:
        idx = self.consts.get(node.input[1])
        if idx is None:
            raise ConvertError(f"Gather {node.name!r} with computed indices does not convert")
        rank = len(self.shape(node.input[0]))
        axis = a.get("axis", 0) % rank
        self.b.add_op("GATHER", [self.get(node.input[0]), self.const(np.asarray(idx).astype(np.int32))],
                      [self.out(node.output[0])], "GatherOptions", axis=axis, batchDims=0)

    def _reshape_to(self, node, target: list[int]) -> None:
        src = self.shape(node.input[0])
        # a [N, C, 1, 1] map flattens the same from NHWC: no transpose back to NCHW
        layout = "nhwc" if len(src) == 4 and src[2] == src[3] == 1 and self.has_nhwc(node.input[0]) else "nchw"
        self.b.add_op("RESHAPE", [self.get(node.input[0], layout), self.const(np.array(target, np.int32))],
                      [self.out(node.output[0])], "ReshapeOptions", newShape=list(target))

    def op_Reshape(self, node, a) -> None:
        self._reshape_to(node, self.shape(node.output[0]))

    def op_Flatten(self, node, a) -> None:
        self._reshape_to(node, self.shape(node.output[0]))

    def op_Squeeze(self, node, a) -> None:
        self._reshape_to(node, self.shape(node.output[0]))

    op_Unsqueeze = op_Squeeze

    def op_Transpose(self, node, a) -> None:
        rank = len(self.shape(node.input[0]))
        perm = list(a.get("perm", reversed(range(rank))))
        if rank == 4 and self.has_nhwc(node.input[0]) and "nchw" not in self.t.get(node.input[0], {}):
            # compose with the NHWC->NCHW view instead of transposing twice
            perm = [NHWC_TO_NCHW[p] for p in perm]
            x = self.get(node.input[0], "nhwc")
        else:
            x = self.get(node.input[0])
        self.b.add_op("TRANSPOSE", [x, self.const(np.array(perm, np.int32), "perm")],
                      [self.out(node.output[0])], "TransposeOptions")

    def _fc(self, x_name: str, w: np.ndarray, bias: np.ndarray | None, out_name: str) -> None:
        """y = x @ w (+ bias) over the last dim: FULLY_CONNECTED with weights [N, K]."""
        n = w.shape[1]
        add = self.single_consumer(out_name, ("Add",))
        if bias is None and add is not None:
            other = add.input[1] if add.input[0] == out_name else add.input[0]
            c = self.consts.get(self.alias.get(other, other))
            if c is not None and c.size == n and list(self.shape(add.output[0])) == list(self.shape(out_name)):
                bias = c.reshape(-1)
                self._skip(add)
                out_name = add.output[0]
        act, out_name = self._fused_act(out_name)
        ins = [self.get(x_name), self.const(np.ascontiguousarray(w.T).astype(np.float32), "w")]
        ins.append(self.const((bias if bias is not None else np.zeros(n)).astype(np.float32), "b"))
        self.b.add_op("FULLY_CONNECTED", ins, [self.out(out_name)], "FullyConnectedOptions",
                      fusedActivationFunction=act, keepNumDims=len(self.shape(x_name)) > 2)

    def op_Gemm(self, node, a) -> None:
        w = self.consts.get(node.input[1])
        if w is None or a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            raise ConvertError(f"Gemm {node.name!r}: only x @ W(^T) + b with constant W converts")
        w = w.T if a.get("transB", 0) else w
        bias = self.consts.get(node.input[2]).reshape(-1) if len(node.input) > 2 and node.input[2] else None
        self._fc(node.input[0], w, bias, node.output[0])

    def op_MatMul(self, node, a) -> None:
        w = self.consts.get(self.alias.get(node.input[1], node.input[1]))
        if w is not None and w.ndim == 2:
            return self._fc(node.input[0], w, None, node.output[0])
        self.b.add_op("BATCH_MATMUL", [self.get(node.input[0]), self.get(node.input[1])], [self.out(node.output[0])],
                      "BatchMatMulOptions", adjX=False, adjY=False)

    def op_Softmax(self, node, a) -> None:
        rank = len(self.shape(node.input[0]))
        if a.get("axis", -1) % rank != rank - 1:
            raise ConvertError(f"Softmax {node.name!r} over a non-last axis does not convert")
        self.b.add_op("SOFTMAX", [self.get(node.input[0])], [self.out(node.output[0])], "SoftmaxOptions", beta=1.0)

    def op_LayerNormalization(self, node, a) -> None:
        shape = self.shape(node.input[0])
        if a.get("axis", -1) % len(shape) != len(shape) - 1:
            raise ConvertError(f"LayerNormalization {node.name!r} over several axes does not convert")
        x = self.get(node.input[0])
        red = shape[:-1] + [1]
        ax = self.const(np.array([len(shape) - 1], np.int32), "axes")
        mean = self.b.add_tensor(self._uid("ln_mean"), red)
        self.b.add_op("MEAN", [x, ax], [mean], "ReducerOptions", keepDims=True)
        sq = self.b.add_tensor(self._uid("ln_sq"), shape)
        self.b.add_op("SQUARED_DIFFERENCE", [x, mean], [sq], "SquaredDifferenceOptions")
        var = self.b.add_tensor(self._uid("ln_var"), red)
        self.b.add_op("MEAN", [sq, ax], [var], "ReducerOptions", keepDims=True)
        ve = self.b.add_tensor(self._uid("ln_ve"), red)
        self.b.add_op("ADD", [var, self.const(np.array(a.get("epsilon", 1e-5), np.float32))], [ve], "AddOptions")
        rs = self.b.add_tensor(self._uid("ln_rsqrt"), red)
        self.b.add_op("RSQRT", [ve], [rs])
        xc = self.b.add_tensor(self._uid("ln_xc"), shape)
        self.b.add_op("SUB", [x, mean], [xc], "SubOptions")
        xn = self.b.add_tensor(self._uid("ln_xn"), shape)
        self.b.add_op("MUL", [xc, rs], [xn], "MulOptions")
        gamma = self.consts[node.input[1]].astype(np.float32)
        beta = self.consts[node.input[2]].astype(np.float32) if len(node.input) > 2 and node.input[2] \
            else np.zeros_like(gamma)
        xg = self.b.add_tensor(self._uid("ln_xg"), shape)
        self.b.add_op("MUL", [xn, self.const(gamma)], [xg], "MulOptions")
        self.b.add_op("ADD", [xg, self.const(beta)], [self.out(node.output[0])], "AddOptions")

    def op_Pad(self, node, a) -> None:
        pads = a.get("pads")
        if pads is None:
            pads = [int(v) for v in self.consts[node.input[1]]]
        mode = a.get("mode", b"constant")
        if (mode.decode() if isinstance(mode, bytes) else mode) != "constant":
            raise ConvertError(f"Pad {node.name!r}: only constant padding converts")
        rank = len(self.shape(node.input[0]))
        p = np.array([[pads[i], pads[i + rank]] for i in range(rank)], np.int32)
        layout = "nhwc" if rank == 4 and self.has_nhwc(node.input[0]) else "nchw"
        if layout == "nhwc":
            p = p[list(NCHW_TO_NHWC)]
        self.b.add_op("PAD", [self.get(node.input[0], layout), self.const(p)], [self.out(node.output[0], layout)],
                      "PadOptions")

    def op_Resize(self, node, a) -> None:
        mode = a.get("mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        o = self.shape(node.output[0])
        size = self.const(np.array(o[2:], np.int32), "size")
        op, opts = (("RESIZE_NEAREST_NEIGHBOR", "ResizeNearestNeighborOptions") if mode == "nearest"
                    else ("RESIZE_BILINEAR", "ResizeBilinearOptions"))
        ctm = a.get("coordinate_transformation_mode", b"half_pixel")
        ctm = ctm.decode() if isinstance(ctm, bytes) else ctm
        self.b.add_op(op, [self.get(node.input[0], "nhwc"), size], [self.out(node.output[0], "nhwc")], opts,
                      alignCorners=ctm == "align_corners", halfPixelCenters=ctm in ("half_pixel", "pytorch_half_pixel"))


def _const_nhwc(arr: np.ndarray) -> np.ndarray:
    """A constant broadcast against an NCHW tensor, rearranged to broadcast against NHWC."""
    arr = np.asarray(arr)
    if arr.ndim == 0 or arr.size == 1:
        return arr
    a4 = arr.reshape((1,) * (4 - arr.ndim) + arr.shape) if arr.ndim < 4 else arr
    return a4.transpose(NCHW_TO_NHWC)


def _is_const_value(consts: Mapping[str, np.ndarray], name: str, value: float) -> bool:
    c = consts.get(name)
    return c is not None and c.size == 1 and np.isclose(float(np.asarray(c).reshape(-1)[0]), value)
