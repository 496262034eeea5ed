"""Whole-model co-execution: the graph runner runs a split model (``coexec split``) on the
CPU executor and the OpenCL device at once.

Every tensor lives in fine-grained SVM, so the two sides read each other's outputs
without copies. The graph is turned once into a schedule of actions that one driver
thread replays per inference:

- ``gpu``: a node placed on the GPU with an OpenCL kernel in the runtime (dense conv with
  symmetric pads, linear layer over one row; a Relu/Clip right after it fused as an
  output clamp) is *enqueued* (non-blocking), followed by the tiny kernel that stores its
  sequence number into the SVM completion flag when something waits for it. With SVM
  sync all of them are enqueued when the inference starts, and one that reads CPU
  results first waits on the device behind a *gate* kernel (a bounded spin on an SVM
  release counter) that the host opens with one store when the segment that made them
  is done: the CPU hands work to the GPU without an enqueue or a wake-up of the device;
- ``cpu``: a *segment*, a maximal run of CPU nodes that needs no GPU result it has not
  already waited for, runs as one onnxruntime session (so onnxruntime fuses and
  dispatches it like a whole model) with its inputs and outputs bound to the SVM buffers
  once, at build time;
- ``wait``: before a segment that reads GPU-made tensors, wait for the newest of them:
  polling the flag (``sync="svm"``), waiting on the kernel's event (``"event"``) or
  finishing the queue (``"finish"``).

Nodes are ordered so that a GPU node is enqueued as soon as its inputs exist (before the
CPU work that can run beside it), so the GPU half of a split op runs while the CPU
computes the other half; the Concat that joins them is free (the halves wrote into its
slices). GPU-placed nodes without an OpenCL kernel run on the CPU and are reported
(``gpu_fallback``), never silently.
"""

from __future__ import annotations

import heapq
import time
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from oplat.errors import OplatError
from oplat.machine import pinned
from oplat.onnx_utils import attrs as _attrs
from oplat.onnx_utils import clip_bounds, scalar_of

from .layers import BROADCAST, UNARY_MODES, LayerSpec, wants_padded_input
from .translate import (CLAMPED_KINDS, CLAMPS, UNARY_OPS, batchnorm_layer, conv_layer, linear_layer, pool_layer,
                        row_layer, unary_layer)
from .opencl import OclExecutor
from .sync import poll

# nodes that only rename a tensor's shape: placed on the GPU, their output is a view of their input
RESHAPES = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")


def _placement(node: onnx.NodeProto) -> str:
    return "gpu" if node.doc_string == "coexec:gpu" else "cpu"


class GraphRunner:
    """Execute one (split) ONNX model with CPU and OpenCL executors sharing SVM."""

    def __init__(self, model: onnx.ModelProto, ocl: OclExecutor | None, cpu_cores: Sequence[int] | None = None,
                 sync: str = "svm", threads: int = 1, force: str | None = None, per_node: bool = False) -> None:
        """``force``: ``"cpu"`` or ``"gpu"`` overrides every node's placement (single-executor
        baselines); ``per_node``: every CPU node is its own segment (measures what a segment
        boundary costs)."""
        import onnxruntime as ort

        if sync not in ("svm", "event", "finish"):
            raise ValueError(f"sync must be svm, event or finish (got {sync!r})")
        self.ocl, self.sync, self.cpu_cores = ocl, sync, list(cpu_cores) if cpu_cores else None
        self.per_node = per_node
        m = onnx.shape_inference.infer_shapes(model)
        self.opsets = list(m.opset_import)
        self.consts = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
        self.shapes = self._static_shapes(m)
        self.inputs = [i.name for i in m.graph.input if i.name not in self.consts]
        self.outputs = [o.name for o in m.graph.output]
        self._allocate()
        consumers = _consumers(m)
        self.joins: set[str] = set()
        self._parts: set[str] = set()  # tensors that are slices of a join's output
        self._zero_copy_joins(m, consumers)
        self._device_views(m, force)
        self.so = _session_options(ort, threads)
        steps = self._steps(m, consumers, force)
        self.flag = ocl.svm((1,), np.int32) if ocl is not None else np.zeros(1, np.int32)
        self.flag[0] = 0
        self.steps = _gpu_first_order(steps)
        self.actions = self._schedule(self.steps)
        self._prepare_launches()
        self.events: dict[int, Any] = {}

    def _static_shapes(self, m: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
        """Every tensor's static shape (inferred by onnx; activations onnx cannot infer take their
        input's)."""
        shapes: dict[str, tuple[int, ...]] = {}
        for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
            if not vi.type.tensor_type.HasField("shape"):  # unknown, not a scalar
                continue
            dims = vi.type.tensor_type.shape.dim
            if all(d.HasField("dim_value") for d in dims):
                shapes[vi.name] = tuple(d.dim_value for d in dims)
        for node in m.graph.node:  # activations onnx cannot infer (contrib Gelu): the input's shape
            if node.op_type in UNARY_OPS and node.input and node.input[0] in shapes:
                shapes.setdefault(node.output[0], shapes[node.input[0]])
        return shapes

    def _allocate(self) -> None:
        """One buffer per computed tensor: SVM when there is a device, plain memory otherwise."""
        self.buf: dict[str, np.ndarray] = {}
        for name, shape in self.shapes.items():
            if name not in self.consts:
                self.buf[name] = self.ocl.svm(shape) if self.ocl is not None else np.empty(shape, np.float32)

    def _zero_copy_joins(self, m: onnx.ModelProto, consumers: dict[str, list[onnx.NodeProto]]) -> None:
        """Concats whose parts write straight into slices of their output."""
        # zero-copy joins: a Concat along channels (batch 1) whose inputs feed nothing else
        # is a set of contiguous slices of its output, so the parts write straight into it
        produced = {o for node in m.graph.node for o in node.output}
        # consumers first: a join that feeds another join is a slice of that one's output
        for node in reversed(m.graph.node):
            if node.op_type != "Concat" or node.output[0] not in self.buf:
                continue
            out_shape = self.shapes[node.output[0]]
            axis = int(_attrs(node).get("axis", 0)) % len(out_shape)
            ins = list(node.input)
            if (axis != 1 or out_shape[0] != 1 or len(set(ins)) != len(ins)
                    or any(x not in produced or x not in self.buf or len(consumers.get(x, [])) != 1
                           or x in self.outputs for x in ins)):
                continue
            flat = self.buf[node.output[0]].reshape(-1)
            off = 0
            for x in ins:
                n = int(np.prod(self.shapes[x]))
                self.buf[x] = flat[off:off + n].reshape(self.shapes[x])
                self._parts.add(x)
                off += n
            self.joins.add(node.name or node.output[0])

    def _device_views(self, m: onnx.ModelProto, force: str | None) -> None:
        """GPU-placed Slices and reshapes that are views of their input."""
        # zero-copy views: a Slice placed on the GPU (the OpenCL side has no Slice kernel)
        # that takes channels [s, e) of a batch-1 tensor is a view of its input, so a split
        # depthwise conv or pool reads its channels where they are, and so is a Reshape,
        # Flatten, Squeeze or Unsqueeze there (each treated as a join of one part: ready
        # when its input is)
        for node in m.graph.node:
            if (force or _placement(node)) == "gpu" and (self._channel_view(node, self.shapes)
                                                          or self._reshape_view(node, self.shapes)):
                self.joins.add(node.name or node.output[0])

    def _steps(self, m: onnx.ModelProto, consumers: dict[str, list[onnx.NodeProto]],
               force: str | None) -> list[dict[str, Any]]:
        """One step per node in graph order: a join, a GPU launch (its layer, buffers and a fused
        clamp or GELU chain) or a CPU node (a GPU-placed node without a kernel is recorded in
        ``gpu_fallback``)."""
        ocl = self.ocl
        steps: list[dict[str, Any]] = []
        self.gpu_fallback: list[str] = []
        fused: dict[str, dict[str, Any]] = {}  # activation node name -> the GPU step it went into
        for node in m.graph.node:
            name = node.name or node.output[0]
            place = force or _placement(node)
            missing = [o for o in node.output if o not in self.buf]
            if missing:
                raise OplatError(f"shape of {missing[0]!r} (node {node.name}) is not static; give the input a size")
            step: dict[str, Any] = {"name": name, "op": node.op_type, "placed": place, "node": node,
                                    "inputs": [x for x in node.input if x and x not in self.consts],
                                    "outputs": list(node.output)}
            if name in fused:
                continue
            if name in self.joins:
                step.update(kind="join")
                steps.append(step)
                continue
            on_device = place == "gpu" and ocl is not None
            gelu = self._erf_gelu(node, consumers, force) if on_device else None
            layer = self._ocl_layer(node, self.shapes) if on_device and gelu is None else None
            if gelu is not None:  # x / sqrt(2) -> Erf -> +1 -> * x -> * 0.5: one GELU kernel
                x_in, chain = gelu
                rows = int(np.prod(self.shapes[x_in][:-1], dtype=np.int64))
                none = np.zeros(1, np.float32)
                layer = (LayerSpec("unary", none, none, mode=UNARY_MODES["gelu"], channels=rows),
                         (rows, int(self.shapes[x_in][-1])), x_in, None)
                step.update(op="Gelu", inputs=[x_in], outputs=list(chain[-1].output),
                            fused_nodes=[n.name or n.output[0] for n in chain[1:]])
                for n in chain[1:]:
                    fused[n.name or n.output[0]] = step
            if layer is not None:
                spec, x_shape, x_in, operand = layer
                act = self._clamp_after(node, consumers, force) if spec.kind in CLAMPED_KINDS else None
                if act is not None:
                    act_node, lo, hi = act
                    spec.lo, spec.hi = max(spec.lo, lo), min(spec.hi, hi)
                    step["outputs"] = list(act_node.output)
                    step["fused"] = act_node.name or act_node.output[0]
                    fused[step["fused"]] = step
                if operand is not None:  # an Add/Mul of two computed tensors reads the second live
                    w, b = self.buf[operand], ocl.svm((1,))
                else:
                    w, b = ocl.svm(spec.w.shape), ocl.svm(spec.b.shape)
                    w[...], b[...] = spec.w, spec.b
                step.update(kind="gpu", layer=spec, x_shape=x_shape, x_in=x_in, w=w, b=b)
                if wants_padded_input(spec):
                    # the vectorised stride-1 kernel (what the OpenCL profile measured)
                    # reads a padded copy, made on the device right before it
                    step["xpad"] = ocl.padded_buffer(x_shape, spec.pad)
            else:
                if place == "gpu":
                    self.gpu_fallback.append(name)
                step.update(kind="cpu")
            steps.append(step)
        return steps

    def _prepare_launches(self) -> None:
        """Gates and release numbers of the schedule, and every GPU launch with its arguments set
        once."""
        ocl, sync = self.ocl, self.sync
        # only launches something waits for store their sequence number (one enqueue less
        # for the others; the queue is in order, so a flag at k means all before k are done)
        waited = {a[1] for a in self.actions if a[0] == "wait"}
        # with SVM sync every GPU launch is enqueued when the inference starts; one that
        # reads CPU results waits behind a gate on the device until the host, done with
        # the segment that made them, bumps the release counter: no enqueue, flush or
        # device wake-up between the CPU's result and the GPU kernel that reads it
        self.gated = sync == "svm" and ocl is not None
        self.go = ocl.svm((1,), np.int32) if self.gated else None
        self.gate_timeout = ocl.svm((1,), np.int32) if self.gated else None
        made_by: dict[str, int] = {}  # tensor -> number of the CPU segment that made it (1, 2, ...)
        parts: dict[str, list[str]] = {}  # join output -> its parts (made by later actions, maybe)

        def need_of(x: str) -> int:
            if x in parts:
                return max((need_of(p) for p in parts[x]), default=0)
            return made_by.get(x, 0)

        segments = 0
        for a in self.actions:
            if a[0] == "cpu":
                segments += 1
                a[1]["release"] = segments
                made_by.update((o, segments) for o in a[1]["made"])
            elif a[0] == "join":
                parts[a[1]["outputs"][0]] = list(a[1]["inputs"])
            elif a[0] == "gpu":  # every kernel argument set once, here (also the flag value it stores)
                st = a[1]
                need = max((need_of(x) for x in st["inputs"]), default=0) if self.gated else 0
                flag = self.flag if sync == "svm" and a[2] in waited else None
                st["launch"] = ocl.prepare(st["layer"], self.buf[st["x_in"]], st["w"], st["b"],
                                           self.buf[st["outputs"][0]], 0, st["layer"].out_channels, st["x_shape"],
                                           st.get("xpad"), flag=flag, value=a[2],
                                           gate=(self.go, need, self.gate_timeout) if need else None)
                st["gate_need"] = need  # 0: no gate

    def random_feeds(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Standard-normal float32 inputs of the graph's input shapes."""
        rng = np.random.default_rng(seed)
        return {i: rng.standard_normal(self.shapes[i]).astype(np.float32) for i in self.inputs}

    def _clamp_after(self, node: onnx.NodeProto, consumers, force: str | None):
        """The Relu/Clip that is the sole consumer of ``node``'s output, placed on the GPU too,
        with its bounds; None when there is none to fuse."""
        out = node.output[0]
        users = consumers.get(out, [])
        if out in self.outputs or len(users) != 1:
            return None
        a = users[0]
        if a.op_type not in CLAMPS or (force or _placement(a)) != "gpu" or a.output[0] not in self.buf:
            return None
        if a.op_type == "Relu":
            return a, 0.0, np.inf
        bounds = self._clip_bounds(a)
        return None if bounds is None else (a, *bounds)

    def _schedule(self, steps: list[dict[str, Any]]) -> list[tuple]:
        """Actions (``gpu``, ``cpu`` segment, ``wait``, ``join``) replayed by :meth:`run`."""
        actions: list[tuple] = []
        seg: list[dict[str, Any]] = []
        seg_made: set[str] = set()  # tensors made by the open segment
        seg_joins: set[str] = set()  # joins of parts the open segment makes
        pending: dict[str, int] = {}  # tensor -> GPU sequence number it waits for
        waited = nseq = 0

        def close() -> None:
            if seg:
                actions.append(("cpu", list(seg)))
                seg.clear()
                seg_made.clear()
                seg_joins.clear()

        for st in steps:
            ins = st["inputs"]
            if st["kind"] == "gpu":
                if any(x in seg_made or x in seg_joins for x in ins):
                    close()
                nseq += 1
                actions.append(("gpu", st, nseq))
                for o in st["outputs"]:
                    pending[o] = nseq
            elif st["kind"] == "join":
                pending[st["outputs"][0]] = max((pending.get(x, 0) for x in ins), default=0)
                if any(x in seg_made or x in seg_joins for x in ins):
                    seg_joins.add(st["outputs"][0])
                actions.append(("join", st))
            else:
                need = max((pending.get(x, 0) for x in ins), default=0)
                # a join of the open segment's parts is not an input the segment can have
                if any(x in seg_joins for x in ins):
                    close()
                if need > waited:
                    close()
                    actions.append(("wait", need))
                    waited = need
                seg.append(st)
                seg_made.update(st["outputs"])
                if self.per_node:
                    close()
        close()
        if nseq > waited:  # outputs, and GPU work nobody consumed: done before returning
            actions.append(("wait", nseq))
        # each segment becomes one session with its bindings
        return [("cpu", self._segment(a[1])) if a[0] == "cpu" else a for a in actions]

    def _segment(self, seg: list[dict[str, Any]]) -> dict[str, Any]:
        """One onnxruntime session for a run of CPU nodes, bound to the shared buffers."""
        import onnxruntime as ort

        made = [o for st in seg for o in st["outputs"]]
        made_set = set(made)
        members = {id(st) for st in seg}
        ins = list(dict.fromkeys(x for st in seg for x in st["inputs"] if x not in made_set))
        used_outside = {x for st in self.steps if id(st) not in members for x in st["inputs"]}
        outs = [o for o in made if o in used_outside or o in self.outputs]
        nodes = [st["node"] for st in seg]
        inits = [numpy_helper.from_array(self.consts[x], x)
                 for x in dict.fromkeys(x for n in nodes for x in n.input) if x in self.consts]
        vi = lambda n: helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, list(self.shapes[n]))  # noqa: E731
        g = helper.make_graph(nodes, "segment", [vi(x) for x in ins], [vi(o) for o in outs], inits)
        m = helper.make_model(g, opset_imports=self.opsets)
        m.ir_version = 8
        try:
            sess = ort.InferenceSession(m.SerializeToString(), self.so, providers=["CPUExecutionProvider"])
        except Exception as e:
            first = seg[0]["node"]
            raise OplatError(f"nodes {first.name} .. ({len(seg)} nodes) cannot run on the CPU executor: "
                             f"{str(e).splitlines()[0]}") from None
        io = sess.io_binding()
        for x in ins:
            io.bind_cpu_input(x, self.buf[x])
        for o in outs:
            b = self.buf[o]
            io.bind_output(o, "cpu", 0, np.float32, list(b.shape), b.ctypes.data)
        return {"sess": sess, "io": io, "names": [st["name"] for st in seg], "ops": [st["op"] for st in seg],
                "out_bytes": sum(self.buf[o].nbytes for o in outs), "made": made}

    def _ocl_layer(self, node: onnx.NodeProto, shapes) -> tuple[LayerSpec, tuple[int, ...], str, str | None] | None:
        """The OpenCL layer of ``node`` as (spec, input shape without the batch, the input it
        reads, the live second operand of an Add/Mul or None); None where the runtime has
        no kernel for it (the node then runs on the CPU, reported as a GPU fallback)."""
        a, op = _attrs(node), node.op_type
        live = [x for x in node.input if x and x not in self.consts]
        xs = shapes.get(live[0]) if live else None
        if xs is None or len(xs) < 2:
            return None
        if op in ("Softmax", "LayerNormalization"):  # rows of any leading shape
            spec = row_layer(node, a, xs, self.consts)
            return None if spec is None else (spec, tuple(xs), live[0], None)
        if op in ("Gemm", "MatMul"):
            if node.input[0] != live[0]:
                return None
            spec = linear_layer(node, a, xs, self.consts) if node.input[1] in self.consts else None
            if spec is not None:
                return spec, tuple(int(d) for d in xs[1:]), live[0], None
            return self._matmul_layer(node, a, xs, shapes, live)
        if op in ("Add", "Mul", "Sub", "Div"):
            return self._binary_layer(node, shapes, live)
        if op == "Transpose":
            perm = [int(v) for v in a.get("perm", reversed(range(len(xs))))]
            if len(xs) > 6 or sorted(perm) != list(range(len(xs))):
                return None
            return (LayerSpec("transpose", np.zeros(1, np.float32), np.zeros(1, np.float32), channels=int(xs[0]),
                              perm=tuple(perm)), tuple(int(d) for d in xs), live[0], None)
        if op in UNARY_OPS:  # one image's channels, or over any batch the rows of the last axis
            x_shape = tuple(int(d) for d in xs[1:]) if xs[0] == 1 else (int(np.prod(xs[:-1])), int(xs[-1]))
            spec = unary_layer(node, a, x_shape[0], self._clip_bounds(node) if op == "Clip" else (0.0, np.inf))
            return None if spec is None else (spec, x_shape, live[0], None)
        if xs[0] != 1:  # the other kinds work on one image (channels first after the batch)
            return None
        if op in ("Conv", "BatchNormalization") and (len(node.input) < 2 or node.input[1] not in self.consts):
            return None
        if op == "Conv":
            spec = conv_layer(node, a, xs, self.consts)
        elif op == "BatchNormalization":
            spec = batchnorm_layer(node, a, xs, self.consts)
        elif op in ("MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean"):
            spec = pool_layer(node, a, xs)
        else:
            spec = None
        return None if spec is None else (spec, tuple(int(d) for d in xs[1:]), live[0], None)

    def _binary_layer(self, node: onnx.NodeProto, shapes, live: list[str]):
        """An Add/Mul of a tensor and a second operand of its shape, one value per channel
        (batch 1), per last-axis position or a scalar: a constant (the layer's weights) or
        a computed tensor (read live). Other batches run as rows of the last axis."""
        out = shapes.get(node.output[0])
        shape_of = lambda x: tuple(self.consts[x].shape) if x in self.consts else shapes.get(x)  # noqa: E731
        full = [x for x in node.input if shape_of(x) == out]
        if out is None or len(out) < 2 or not full or full[0] not in live:
            return None
        if node.op_type in ("Sub", "Div") and full[0] != node.input[0]:  # the kernel's b is the right operand
            return None
        other = node.input[1] if node.input[0] == full[0] else node.input[0]
        o_shape = shape_of(other)
        if o_shape is None:
            return None
        size = int(np.prod(o_shape, dtype=np.int64))
        squeezed = tuple(d for d in o_shape if d != 1)
        if tuple(o_shape) == tuple(out):
            mode = BROADCAST["auto"]
        elif size == 1:
            mode = BROADCAST["scalar"]
        elif squeezed == (out[-1],) and o_shape[-1] == out[-1]:
            mode = BROADCAST["last"]
        elif (out[0] == 1 and len(out) > 2 and squeezed == (out[1],) and len(o_shape) >= len(out) - 1
              and o_shape[len(o_shape) - (len(out) - 1)] == out[1]):  # right-aligned on the channel axis
            mode = BROADCAST["auto"]  # one value per channel
        else:
            return None
        if out[0] == 1:
            x_shape, c = tuple(int(d) for d in out[1:]), int(out[1])
        elif mode != BROADCAST["auto"] or tuple(o_shape) == tuple(out):
            c = int(np.prod(out[:-1], dtype=np.int64))
            x_shape = (c, int(out[-1]))
        else:
            return None
        kind, none = node.op_type.lower(), np.zeros(1, np.float32)
        if other in self.consts:
            return LayerSpec(kind, self.consts[other].astype(np.float32).reshape(-1), none, mode=mode, channels=c), \
                x_shape, full[0], None
        if other not in self.buf:
            return None
        return LayerSpec(kind, none, none, mode=mode, channels=c), x_shape, full[0], other

    def _matmul_layer(self, node: onnx.NodeProto, a: dict[str, Any], xs: Sequence[int], shapes, live: list[str]):
        """Rows times a matrix: a MatMul by a constant [K, N] or a Gemm (no transA, unit
        alpha/beta) by constant weights, plus bias; or a MatMul of two computed tensors
        with one [K, N] matrix per batch (attention's batched products)."""
        out = shapes.get(node.output[0])
        if out is None or len(xs) < 2:
            return None
        k, none = int(xs[-1]), np.zeros(1, np.float32)
        rows, m = int(np.prod(xs[:-1], dtype=np.int64)), int(xs[-2])
        second = node.input[1]
        if second in self.consts:
            w = self.consts[second].astype(np.float32)
            if node.op_type == "Gemm":
                if (a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0
                        or len(xs) != 2 or w.ndim != 2):
                    return None
                w = w.T if a.get("transB", 0) else w
            if w.ndim != 2 or w.shape[0] != k:
                return None
            bias = none
            if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
                if node.input[2] not in self.consts or self.consts[node.input[2]].size != w.shape[1]:
                    return None
                bias = self.consts[node.input[2]].astype(np.float32).reshape(-1)
            spec = LayerSpec("matmul", np.ascontiguousarray(w), bias, channels=rows, cols=int(w.shape[1]))
            return spec, (rows // m, m, k) if len(xs) > 2 else (rows, k), live[0], None
        bs = shapes.get(second)
        if (node.op_type != "MatMul" or bs is None or second not in self.buf or len(bs) != len(xs)
                or tuple(bs[:-2]) != tuple(xs[:-2]) or bs[-2] != k):
            return None
        spec = LayerSpec("matmul", none, none, channels=rows, cols=int(bs[-1]))
        return spec, (rows // m, m, k), live[0], second

    def _reshape_view(self, node: onnx.NodeProto, shapes) -> bool:
        """Make ``node``'s output a view of its input when it only renames the shape
        (Reshape, Flatten, Squeeze, Unsqueeze); whether it did."""
        if node.op_type not in RESHAPES or not node.input or node.output[0] in self.outputs:
            return False
        src, out = node.input[0], node.output[0]
        if (out in self._parts or src not in self.buf or out not in self.buf
                or self.buf[src].size != self.buf[out].size):
            return False
        self.buf[out] = self.buf[src].reshape(shapes[out])
        return True

    def _channel_view(self, node: onnx.NodeProto, shapes) -> bool:
        """Make ``node``'s output a view of its input's channels when it is a Slice of
        constant channel bounds (axis 1, step 1) of a batch-1 tensor; whether it did."""
        if (node.op_type != "Slice" or len(node.input) < 4 or node.output[0] in self.outputs
                or node.output[0] in self._parts):
            return False
        src, out = node.input[0], node.output[0]
        params = [self.consts.get(x) for x in node.input[1:]]
        shape = shapes.get(src)
        if (src not in self.buf or out not in self.buf or any(v is None for v in params) or shape is None
                or len(shape) < 2 or shape[0] != 1 or any(np.size(v) != 1 for v in params)):
            return False
        start, end, axis = (int(np.asarray(v).reshape(-1)[0]) for v in params[:3])
        if axis % len(shape) != 1 or (len(params) > 3 and int(np.asarray(params[3]).reshape(-1)[0]) != 1):
            return False
        c = shape[1]
        start, end = (min(max(v + c if v < 0 else v, 0), c) for v in (start, end))
        if end <= start or tuple(shapes.get(out, ())) != (1, end - start, *shape[2:]):
            return False
        self.buf[out] = self.buf[src].reshape(c, -1)[start:end].reshape(shapes[out])
        return True

    def _erf_gelu(self, node: onnx.NodeProto, consumers, force: str | None):
        """The erf GELU as exporters write it, starting at ``node``: Div(x, sqrt 2) (or
        Mul(x, 1/sqrt 2)), Erf, Add 1, Mul by x, Mul by 0.5, every node on the GPU and each
        intermediate read only by the next; (x, the five nodes) or None."""
        def const(name: str, value: float) -> bool:
            v = self.consts.get(name)
            return v is not None and v.size == 1 and abs(float(v.reshape(-1)[0]) - value) < 1e-3 * abs(value)

        def only_user(out: str, op: str):
            users = consumers.get(out, [])
            if len(users) != 1 or users[0].op_type != op or (force or _placement(users[0])) != "gpu" \
                    or out in self.outputs:
                return None
            return users[0]

        if node.op_type == "Div" and len(node.input) == 2 and const(node.input[1], 2 ** 0.5):
            x = node.input[0]
        elif node.op_type == "Mul" and len(node.input) == 2 and const(node.input[1], 2 ** -0.5):
            x = node.input[0]
        else:
            return None
        erf = only_user(node.output[0], "Erf")
        add = erf and only_user(erf.output[0], "Add")
        if add is None or not any(const(i, 1.0) for i in add.input):
            return None
        mul = only_user(add.output[0], "Mul")
        if mul is None or x not in mul.input:
            return None
        half = only_user(mul.output[0], "Mul")
        if half is None or not any(const(i, 0.5) for i in half.input) or x not in self.buf:
            return None
        return x, [node, erf, add, mul, half]

    def _clip_bounds(self, node: onnx.NodeProto) -> tuple[float, float] | None:
        """A Clip's (min, max) from its attributes or constant inputs; None if not constant."""
        return clip_bounds(_attrs(node), node.input, lambda t: scalar_of(self.consts, t))

    def _wait(self, seq: int) -> float:
        t0 = time.perf_counter()
        if self.sync == "svm":
            poll(self.flag, seq, at_least=True)
        elif self.sync == "event":
            self.events[seq].wait()
        else:
            self.ocl.queue.finish()
        return time.perf_counter() - t0

    def run(self, x: dict[str, np.ndarray], record: bool = False) -> dict[str, Any]:
        """One inference; returns wall seconds, outputs and (``record``) per-action times."""
        with pinned(self.cpu_cores):
            return self._run(x, record)

    def _run(self, feeds: dict[str, np.ndarray], record: bool) -> dict[str, Any]:
        for name in self.inputs:
            self.buf[name][...] = feeds[name]
        times: list[dict[str, Any]] = []
        host = 0.0
        self.events.clear()
        # the previous run waited for all its GPU work: the flag counts this run's from 0
        self.flag[0] = 0
        t_start = time.perf_counter()
        try:
            if self.gated:
                self.go[0] = self.gate_timeout[0] = 0
                first = True
                for a in self.actions:
                    if a[0] == "gpu":
                        self.events[a[2]] = a[1]["launch"].enqueue()
                        if first:  # the device starts on the first launch while the rest are enqueued
                            self.ocl.flush()
                            first = False
                self.ocl.flush()
                host += time.perf_counter() - t_start
            sync_s, replay_host = self._replay(record, times)
        except BaseException:
            if self.gated:  # open every gate: the device drains its queue instead of spinning
                self.go[0] = np.iinfo(np.int32).max
                self.ocl.queue.finish()
            raise
        host += replay_host
        if self.gated and self.gate_timeout[0]:
            raise OplatError(f"a GPU launch gave up waiting for CPU segment {int(self.gate_timeout[0])} "
                             "(its inputs were not ready in time): this inference's outputs are wrong")
        wall = time.perf_counter() - t_start
        if record:
            for t in times:
                ev = t.pop("event", None)
                if ev is not None:
                    t["ms"] = (ev.profile.end - ev.profile.start) * 1e-6
        return {"seconds": wall, "sync_seconds": sync_s, "host_seconds": host,
                "outputs": {o: np.array(self.buf[o]) for o in self.outputs},
                "ops": times}

    def _replay(self, record: bool, times: list[dict[str, Any]]) -> tuple[float, float]:
        """The actions of one inference (GPU launches already enqueued when gated); returns
        (seconds waiting for the GPU, seconds enqueueing)."""
        sync_s = wait = host = 0.0
        for a in self.actions:
            kind = a[0]
            if kind == "gpu":
                st = a[1]
                if self.gated:
                    ev = self.events[a[2]]
                else:
                    t0 = time.perf_counter()
                    ev = st["launch"].enqueue()
                    self.ocl.flush()
                    host += time.perf_counter() - t0
                    self.events[a[2]] = ev
                if record:
                    times.append({"name": st["name"], "op": st["op"], "on": "gpu", "event": ev,
                                  **({"fused": st["fused"]} if "fused" in st else {})})
            elif kind == "wait":
                w = self._wait(a[1])
                sync_s += w
                wait += w
            elif kind == "join":
                if record:
                    times.append({"name": a[1]["name"], "op": a[1]["op"], "on": "join", "ms": 0.0, "wait_ms": 0.0})
            else:
                seg = a[1]
                t0 = time.perf_counter()
                seg["sess"].run_with_iobinding(seg["io"])
                if self.gated:
                    self.go[0] = seg["release"]  # GPU launches reading this segment's results go
                if record:
                    times.append({"name": seg["names"][0] if len(seg["names"]) == 1 else
                                  f"{seg['names'][0]}..{seg['names'][-1]}", "op": "segment", "on": "cpu",
                                  "nodes": seg["names"], "ms": (time.perf_counter() - t0) * 1e3,
                                  "wait_ms": wait * 1e3})
                wait = 0.0
        return sync_s, host


def _consumers(m: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """The nodes reading each tensor."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in m.graph.node:
        for x in node.input:
            consumers.setdefault(x, []).append(node)
    return consumers


def _session_options(ort, threads: int):
    """onnxruntime options of the CPU segments."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    # as the CPU profile was measured: onnxruntime's full optimisation (fusions, NCHWc)
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return so


def _gpu_first_order(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A topological order of ``steps`` that takes a GPU step as soon as its inputs exist
    (so it is enqueued before CPU work that can run beside it), else graph order."""
    producer = {o: i for i, st in enumerate(steps) for o in st["outputs"]}
    deps = [{producer[x] for x in st["inputs"] if x in producer} for st in steps]
    users: list[list[int]] = [[] for _ in steps]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    left = [len(d) for d in deps]
    heap = [(steps[i]["kind"] != "gpu", i) for i in range(len(steps)) if not left[i]]
    heapq.heapify(heap)
    order = []
    while heap:
        _, i = heapq.heappop(heap)
        order.append(steps[i])
        for j in users[i]:
            left[j] -= 1
            if not left[j]:
                heapq.heappush(heap, (steps[j]["kind"] != "gpu", j))
    if len(order) != len(steps):
        raise OplatError("model graph has a cycle or a node whose input nothing produces")
    return order
