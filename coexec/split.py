"""Rewrite an ONNX model so every split op becomes its CPU part and GPU part.

- Conv split along output channels: weights and bias sliced, two Convs, Concat on C.
- Grouped and depthwise Conv along groups: the input's channels sliced per group range.
- Conv split along output rows: each part reads its rows of the input plus the halo the
  kernel needs (pads adjusted at the borders), Concat on H.
- Gemm / MatMul with constant weights along N (output features), Concat on the last axis.
- BatchNormalization after a Conv is folded into it first (as every runtime does).
- Unary activations fused into a split op (Relu, Clip, HardSwish, ...) run on each part
  before the join, so both processors run their part with the activation fused.
- Everything else runs whole; element-wise ops follow their producer.

Every node is tagged with its processor: ``doc_string`` ``coexec:cpu|gpu`` and a JSON
map in the model's ``metadata_props`` (``coexec.placement``). The outputs are the
original computation regrouped, so they match the original model's to float rounding.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from oplat.onnx_utils import attr as _attr
from oplat.onnx_utils import attrs as _attrs
from oplat.onnx_utils import node_names
from oplat.onnx_utils import set_attrs as _set_attrs

from .plan import PlanError, validate_plan


class _Rewriter:
    def __init__(self, model: onnx.ModelProto, align: int = 4) -> None:
        self.model = model
        self.align = align  # GPU channel counts are multiples of this (as planned)
        g = model.graph
        self.inits = {t.name: t for t in g.initializer}
        self.new_inits: list[onnx.TensorProto] = []
        self.placement: dict[str, str] = {}
        inferred = onnx.shape_inference.infer_shapes(model)
        self.shapes: dict[str, list[int]] = {}
        for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim]
            self.shapes[vi.name] = dims

    def weight(self, name: str) -> np.ndarray:
        t = self.inits.get(name)
        if t is None:
            raise PlanError(f"weights {name!r} are not constant initializers: cannot split")
        if t.data_location == onnx.TensorProto.EXTERNAL or (not t.raw_data and not t.float_data and
                                                             not t.int64_data and not t.double_data
                                                             and not t.int32_data and any(t.dims)):
            raise PlanError(f"model has no weight data ({name!r} is graph-only); split needs real weights")
        return numpy_helper.to_array(t)

    def const(self, name: str, value: np.ndarray) -> str:
        self.new_inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def tag(self, node: onnx.NodeProto, proc: str) -> onnx.NodeProto:
        node.doc_string = f"coexec:{proc}"
        self.placement[node.name] = proc
        return node

    # -- rewrite rules -------------------------------------------------------------
    def split_conv_channels(self, n: onnx.NodeProto, ratio: float) -> list[onnx.NodeProto]:
        w = self.weight(n.input[1])
        group = int(_attr(n, "group", 1))
        c_out = w.shape[0]
        if group == 1:
            k = _aligned(ratio * c_out, c_out, self.align)
            if k in (0, c_out):
                return []
            parts = []
            for proc, sl in (("gpu", slice(0, k)), ("cpu", slice(k, c_out))):
                ins = [n.input[0], self.const(f"{n.name}/{proc}/W", w[sl])]
                if len(n.input) > 2 and n.input[2]:
                    ins.append(self.const(f"{n.name}/{proc}/B", self.weight(n.input[2])[sl]))
                m = helper.make_node("Conv", ins, [f"{n.output[0]}/{proc}"], name=f"{n.name}/{proc}")
                m.attribute.extend(n.attribute)
                parts.append(self.tag(m, proc))
            return parts + [self._concat(n, [p.output[0] for p in parts], 1)]
        # grouped / depthwise: split along groups, each part reads its input channels
        g1 = int(round(ratio * group))
        if g1 in (0, group):
            return []
        c_in = self.shapes.get(n.input[0], [0, 0])[1]
        if c_in <= 0:
            raise PlanError(f"{n.name}: input channel count unknown")
        in_per, out_per = c_in // group, c_out // group
        parts, nodes = [], []
        for proc, g0, g_end in (("gpu", 0, g1), ("cpu", g1, group)):
            sl_out = f"{n.name}/{proc}/x"
            starts = self.const(f"{n.name}/{proc}/starts", np.array([g0 * in_per], np.int64))
            ends = self.const(f"{n.name}/{proc}/ends", np.array([g_end * in_per], np.int64))
            axes = self.const(f"{n.name}/{proc}/axes", np.array([1], np.int64))
            nodes.append(self.tag(helper.make_node("Slice", [n.input[0], starts, ends, axes], [sl_out],
                                                   name=f"{n.name}/{proc}/slice"), proc))
            ins = [sl_out, self.const(f"{n.name}/{proc}/W", w[g0 * out_per:g_end * out_per])]
            if len(n.input) > 2 and n.input[2]:
                ins.append(self.const(f"{n.name}/{proc}/B", self.weight(n.input[2])[g0 * out_per:g_end * out_per]))
            m = helper.make_node("Conv", ins, [f"{n.output[0]}/{proc}"], name=f"{n.name}/{proc}")
            m.attribute.extend(n.attribute)
            _set_attrs(m, group=g_end - g0)
            parts.append(self.tag(m, proc))
        return nodes + parts + [self._concat(n, [p.output[0] for p in parts], 1)]

    def split_conv_rows(self, n: onnx.NodeProto, ratio: float) -> list[onnx.NodeProto]:
        from oplat.shape_rules import spatial_pads

        x_shape = self.shapes.get(n.input[0])
        y_shape = self.shapes.get(n.output[0])
        if not x_shape or not y_shape or min(x_shape[2:] + y_shape[2:]) <= 0:
            raise PlanError(f"{n.name}: spatial shapes unknown, cannot split rows")
        w = self.weight(n.input[1])
        kh, kw = (_attr(n, "kernel_shape") or list(w.shape[2:]))[:2]
        sh, sw = (_attr(n, "strides") or [1, 1])[:2]
        dh, dw = (_attr(n, "dilations") or [1, 1])[:2]
        attrs = _attrs(n)
        pads = spatial_pads(attrs, (x_shape[2], x_shape[3]), (kh, kw), (sh, sw))
        h_in, h_out = x_shape[2], y_shape[2]
        r1 = int(round(ratio * h_out))
        if r1 in (0, h_out):
            return []
        k_eff = (kh - 1) * dh + 1
        nodes, parts = [], []
        for proc, a, b in (("gpu", 0, r1), ("cpu", r1, h_out)):
            lo = a * sh - pads[0]
            hi = (b - 1) * sh - pads[0] + k_eff  # exclusive
            top, bottom = max(0, -lo), max(0, hi - h_in)
            starts = self.const(f"{n.name}/{proc}/starts", np.array([max(lo, 0)], np.int64))
            ends = self.const(f"{n.name}/{proc}/ends", np.array([min(hi, h_in)], np.int64))
            axes = self.const(f"{n.name}/{proc}/axes", np.array([2], np.int64))
            sl_out = f"{n.name}/{proc}/x"
            nodes.append(self.tag(helper.make_node("Slice", [n.input[0], starts, ends, axes], [sl_out],
                                                   name=f"{n.name}/{proc}/slice"), proc))
            m = helper.make_node("Conv", [sl_out] + list(n.input[1:]), [f"{n.output[0]}/{proc}"],
                                 name=f"{n.name}/{proc}")
            m.attribute.extend(n.attribute)
            _set_attrs(m, auto_pad=None, pads=[top, pads[1], bottom, pads[3]])  # None drops auto_pad
            parts.append(self.tag(m, proc))
        return nodes + parts + [self._concat(n, [p.output[0] for p in parts], 2)]

    def split_gemm(self, n: onnx.NodeProto, ratio: float) -> list[onnx.NodeProto]:
        b = self.weight(n.input[1])
        trans_b = n.op_type == "Gemm" and int(_attr(n, "transB", 0))
        n_out = b.shape[0] if trans_b else b.shape[-1]
        k = _aligned(ratio * n_out, n_out, self.align)
        if k in (0, n_out):
            return []
        parts = []
        for proc, sl in (("gpu", slice(0, k)), ("cpu", slice(k, n_out))):
            bw = b[sl] if trans_b else b[..., sl]
            ins = [n.input[0], self.const(f"{n.name}/{proc}/B", bw)]
            if n.op_type == "Gemm" and len(n.input) > 2 and n.input[2]:
                c = self.weight(n.input[2])
                ins.append(self.const(f"{n.name}/{proc}/C", c[..., sl] if c.ndim and c.shape[-1] == n_out else c))
            m = helper.make_node(n.op_type, ins, [f"{n.output[0]}/{proc}"], name=f"{n.name}/{proc}")
            m.attribute.extend(n.attribute)
            parts.append(self.tag(m, proc))
        return parts + [self._concat(n, [p.output[0] for p in parts], -1)]

    def split_pool_channels(self, n: onnx.NodeProto, ratio: float) -> list[onnx.NodeProto]:
        c = (self.shapes.get(n.input[0]) or [0, 0])[1]
        k = int(round(ratio * c))
        if c <= 0 or k in (0, c):
            return []
        nodes, parts = [], []
        for proc, a, b in (("gpu", 0, k), ("cpu", k, c)):
            starts = self.const(f"{n.name}/{proc}/starts", np.array([a], np.int64))
            ends = self.const(f"{n.name}/{proc}/ends", np.array([b], np.int64))
            axes = self.const(f"{n.name}/{proc}/axes", np.array([1], np.int64))
            sl_out = f"{n.name}/{proc}/x"
            nodes.append(self.tag(helper.make_node("Slice", [n.input[0], starts, ends, axes], [sl_out],
                                                   name=f"{n.name}/{proc}/slice"), proc))
            m = helper.make_node(n.op_type, [sl_out], [f"{n.output[0]}/{proc}"], name=f"{n.name}/{proc}")
            m.attribute.extend(n.attribute)
            parts.append(self.tag(m, proc))
        return nodes + parts + [self._concat(n, [p.output[0] for p in parts], 1)]

    def _concat(self, n: onnx.NodeProto, ins: list[str], axis: int) -> onnx.NodeProto:
        return self.tag(helper.make_node("Concat", ins, [n.output[0]], name=f"{n.name}/concat", axis=axis), "gpu")


# element-wise ops of one input (Clip's bounds are constants): applying them to each part
# before the join equals applying them after it
UNARY = {"Relu", "Clip", "LeakyRelu", "HardSigmoid", "HardSwish", "Sigmoid", "Tanh", "Elu"}


def _fused_activations(n: onnx.NodeProto, op: Mapping[str, Any], by_node: Mapping[str, tuple[str, dict]],
                       consumers: Mapping[str, list[onnx.NodeProto]], graph_outputs: set[str]
                       ) -> list[onnx.NodeProto]:
    """The chain of unary activations fused into split op ``n`` (same plan op, sole consumers)."""
    chain: list[onnx.NodeProto] = []
    cur = n.output[0]
    while cur not in graph_outputs:
        users = consumers.get(cur, [])
        if len(users) != 1:
            break
        a = users[0]
        if a.op_type not in UNARY or a.input[0] != cur or by_node.get(a.name, ("",))[0] != op["name"]:
            break
        chain.append(a)
        cur = a.output[0]
    return chain


def _push_activations(replaced: list[onnx.NodeProto], acts: list[onnx.NodeProto], rw: _Rewriter
                      ) -> list[onnx.NodeProto]:
    """Move the activations ``acts`` (applied to the join's output) onto each part, so each
    processor runs its part with the activation fused and the join comes last."""
    concat = replaced[-1]
    nodes = list(replaced[:-1])
    ins = []
    for part in concat.input:
        producer = next(p for p in nodes if part in p.output)
        proc = producer.doc_string.split(":", 1)[1]
        x = part
        for a in acts:
            c = onnx.NodeProto()
            c.CopyFrom(a)
            c.name, c.input[0] = f"{a.name}/{proc}", x
            del c.output[:]
            c.output.append(f"{a.output[0]}/{proc}")
            nodes.append(rw.tag(c, proc))
            x = c.output[0]
        ins.append(x)
    del concat.input[:]
    concat.input.extend(ins)
    concat.output[0] = acts[-1].output[0]
    return nodes + [concat]


def fold_batchnorm(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with every BatchNormalization that follows a Conv (its sole
    consumer, all parameters constant) folded into that Conv's weights and bias, as
    onnxruntime and the GPU delegates do: the conv's parts then carry it when split, and
    the OpenCL conv runs it without a kernel of its own. Outputs agree to float rounding."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n)
    outputs = {o.name for o in g.output}
    dropped: set[int] = set()
    new_inits: list[onnx.TensorProto] = []
    for n in g.node:
        users = consumers.get(n.output[0], []) if n.op_type == "Conv" else []
        if len(users) != 1 or n.output[0] in outputs or n.input[1] not in inits:
            continue
        bn = users[0]
        if (bn.op_type != "BatchNormalization" or len(bn.output) != 1 or bn.input[0] != n.output[0]
                or not all(x in inits for x in bn.input[1:5])
                or (len(n.input) > 2 and n.input[2] and n.input[2] not in inits)):
            continue
        scale, beta, mean, var = (numpy_helper.to_array(inits[x]).astype(np.float64) for x in bn.input[1:5])
        eps = float(_attr(bn, "epsilon", 1e-5))
        w = numpy_helper.to_array(inits[n.input[1]])
        b = (numpy_helper.to_array(inits[n.input[2]]).astype(np.float64) if len(n.input) > 2 and n.input[2]
             else np.zeros(w.shape[0]))
        k = scale / np.sqrt(var + eps)
        w2 = (w.astype(np.float64) * k.reshape(-1, *([1] * (w.ndim - 1)))).astype(w.dtype)
        b2 = ((b - mean) * k + beta).astype(w.dtype)
        wn, bname = f"{n.name or n.output[0]}/W_bn", f"{n.name or n.output[0]}/B_bn"
        new_inits += [numpy_helper.from_array(w2, wn), numpy_helper.from_array(b2, bname)]
        x = n.input[0]
        del n.input[:]
        n.input.extend([x, wn, bname])
        n.output[0] = bn.output[0]
        dropped.add(id(bn))
    if not dropped:
        return m
    keep = [n for n in g.node if id(n) not in dropped]
    del g.node[:]
    g.node.extend(keep)
    g.initializer.extend(new_inits)
    used = {x for n in g.node for x in n.input} | {i.name for i in g.input}
    live = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(live)
    return m


def _aligned(x: float, total: int, align: int = 4) -> int:
    """GPU channel count: a multiple of ``align`` (as planned), within [0, total]."""
    return int(min(max(round(x / align) * align, 0), total))


def split_model(model: str | os.PathLike, plan: Mapping[str, Any], out: str | os.PathLike | None = None
                ) -> tuple[onnx.ModelProto, list[dict[str, str]]]:
    """Apply ``plan`` to ``model``; returns the new model and the ops kept whole (with why)."""
    from oplat.graph_only import is_graph_only, load_with_weights

    validate_plan(plan, model)
    m = load_with_weights(model)  # a dynamo export keeps its weights in model.onnx.data
    if is_graph_only(m):
        raise PlanError(f"{model}: model is graph-only (no weight data); split needs real weights")
    # the plan names unnamed nodes as the loader does; and Constant nodes (exporters put a
    # Clip's bounds in them right before it) go first, so every part of a split op, placed
    # where the op was, finds them already made
    for node, name in zip(m.graph.node, node_names(m.graph.node)):
        node.name = name
    # Identity nodes that only rename a weight (torch exports of shared parameters) are
    # dropped, their readers reading the weight itself
    inits = {i.name for i in m.graph.initializer}
    outputs = {o.name for o in m.graph.output}
    rename = {n.output[0]: n.input[0] for n in m.graph.node
              if n.op_type == "Identity" and n.input and n.input[0] in inits and n.output[0] not in outputs}
    if rename:
        keep = [n for n in m.graph.node if not (n.op_type == "Identity" and n.output and n.output[0] in rename)]
        for n in keep:
            n.input[:] = [rename.get(x, x) for x in n.input]
        del m.graph.node[:]
        m.graph.node.extend(keep)
    consts = [n for n in m.graph.node if n.op_type == "Constant" and not n.input]
    rest = [n for n in m.graph.node if not (n.op_type == "Constant" and not n.input)]
    del m.graph.node[:]
    m.graph.node.extend(consts + rest)
    m = fold_batchnorm(m)
    rw = _Rewriter(m, int(plan.get("channel_align", 4)))
    by_node: dict[str, tuple[str, dict]] = {}
    for op in plan["ops"]:
        for s in op.get("sources") or [op["name"]]:
            by_node[s] = (op["name"], op)
    kept: list[dict[str, str]] = []
    new_nodes: list[onnx.NodeProto] = []
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in m.graph.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n)
    graph_outputs = {o.name for o in m.graph.output}
    absorbed: set[str] = set()
    for n in m.graph.node:
        if n.name in absorbed:
            continue
        entry = by_node.get(n.name)
        op = entry[1] if entry else None
        replaced: list[onnx.NodeProto] = []
        if op is not None and op["placement"] == "split" and n.name == op["name"]:
            try:
                if n.op_type == "Conv" and op.get("dimension") == "row":
                    replaced = rw.split_conv_rows(n, op["ratio"])
                elif n.op_type == "Conv":
                    replaced = rw.split_conv_channels(n, op["ratio"])
                elif n.op_type in ("Gemm", "MatMul") and n.input[1] in rw.inits:
                    replaced = rw.split_gemm(n, op["ratio"])
                elif n.op_type in ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"):
                    replaced = rw.split_pool_channels(n, op["ratio"])
                else:
                    kept.append({"name": n.name, "reason": f"no split rule for {n.op_type}"})
            except PlanError as e:
                if "graph-only" in str(e):
                    raise
                kept.append({"name": n.name, "reason": str(e)})
        if replaced:
            acts = _fused_activations(n, op, by_node, consumers, graph_outputs)
            if acts:
                replaced = _push_activations(replaced, acts, rw)
                absorbed.update(a.name for a in acts)
            new_nodes.extend(replaced)
            continue
        proc = "gpu"
        if op is not None:
            proc = "cpu" if op["placement"] == "cpu" or (op["placement"] == "split" and op["ratio"] < 0.5) else "gpu"
        new_nodes.append(rw.tag(n, proc))
    del m.graph.node[:]
    m.graph.node.extend(new_nodes)
    m.graph.initializer.extend(rw.new_inits)
    used = {t for node in m.graph.node for t in node.input}
    keep_inits = [t for t in m.graph.initializer if t.name in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep_inits)
    meta = {p.key: p for p in m.metadata_props}
    for key, value in (("coexec.placement", json.dumps(rw.placement)),
                       ("coexec.plan_sha", str(plan.get("model_sha256", ""))),
                       ("coexec.kept_whole", json.dumps(kept))):
        if key in meta:
            meta[key].value = value
        else:
            m.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.checker.check_model(m)
    if out is not None:
        onnx.save(m, str(out))
    return m, kept
