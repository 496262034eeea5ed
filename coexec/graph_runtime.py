"""Whole-model co-execution: run a split model (``coexec split``) on the CPU executor and
the OpenCL device at once.

Every tensor lives in fine-grained SVM, so the two sides read each other's outputs
without copies. One driver thread walks the graph in topological order:

- a node placed on the GPU with an OpenCL kernel in the runtime (dense conv with
  symmetric pads, linear layer over one row) is *enqueued* (non-blocking), followed by
  the tiny kernel that stores its sequence number into the SVM completion flag;
- any other node runs on the CPU executor (an onnxruntime single-node session, output
  bound straight into its SVM buffer), after waiting for its GPU-made inputs: polling
  the flag (``sync="svm"``), waiting on the kernel's event (``"event"``) or finishing
  the queue (``"finish"``).

So the GPU half of a split op runs while the CPU computes the other half; the Concat
that joins them waits for both. GPU-placed nodes without an OpenCL kernel run on the
CPU and are reported (``gpu_fallback``), never silently.
"""

from __future__ import annotations

import os
import time
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from oplat.errors import OplatError

from .runtime import LayerSpec, OclExecutor, poll


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _placement(node: onnx.NodeProto) -> str:
    return "gpu" if node.doc_string == "coexec:gpu" else "cpu"


class GraphRunner:
    """Execute one (split) ONNX model with CPU and OpenCL executors sharing SVM."""

    def __init__(self, model: onnx.ModelProto, ocl: OclExecutor | None, cpu_cores: Sequence[int] | None = None,
                 sync: str = "svm", threads: int = 1, force: str | None = None) -> None:
        """``force``: ``"cpu"`` or ``"gpu"`` overrides every node's placement (single-executor baselines)."""
        import onnxruntime as ort

        if sync not in ("svm", "event", "finish"):
            raise ValueError(f"sync must be svm, event or finish (got {sync!r})")
        self.ocl, self.sync, self.cpu_cores = ocl, sync, list(cpu_cores) if cpu_cores else None
        m = onnx.shape_inference.infer_shapes(model)
        self.consts = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
        shapes: dict[str, tuple[int, ...]] = {}
        for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
            dims = vi.type.tensor_type.shape.dim
            if all(d.HasField("dim_value") for d in dims):
                shapes[vi.name] = tuple(d.dim_value for d in dims)
        self.inputs = [i.name for i in m.graph.input if i.name not in self.consts]
        self.outputs = [o.name for o in m.graph.output]
        self.buf: dict[str, np.ndarray] = {}
        for name, shape in shapes.items():
            if name not in self.consts:
                self.buf[name] = ocl.svm(shape) if ocl is not None else np.empty(shape, np.float32)
        # zero-copy joins: a Concat along channels (batch 1) whose inputs feed nothing else
        # is a set of contiguous slices of its output, so the parts write straight into it
        consumers: dict[str, int] = {}
        for node in m.graph.node:
            for x in node.input:
                consumers[x] = consumers.get(x, 0) + 1
        produced = {o for node in m.graph.node for o in node.output}
        self.joins: set[str] = set()
        for node in m.graph.node:
            if node.op_type != "Concat" or node.output[0] not in self.buf:
                continue
            out_shape = shapes[node.output[0]]
            axis = int(_attrs(node).get("axis", 0)) % len(out_shape)
            ins = list(node.input)
            if (axis != 1 or out_shape[0] != 1 or len(set(ins)) != len(ins)
                    or any(x not in produced or x not in self.buf or consumers.get(x) != 1 or x in self.outputs
                           for x in ins)):
                continue
            flat = self.buf[node.output[0]].reshape(-1)
            off = 0
            for x in ins:
                n = int(np.prod(shapes[x]))
                self.buf[x] = flat[off:off + n].reshape(shapes[x])
                off += n
            self.joins.add(node.name or node.output[0])
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        self.steps: list[dict[str, Any]] = []
        self.gpu_fallback: list[str] = []
        for node in m.graph.node:
            place = force or _placement(node)
            missing = [o for o in node.output if o not in self.buf]
            if missing:
                raise OplatError(f"shape of {missing[0]!r} (node {node.name}) is not static; give the input a size")
            step: dict[str, Any] = {"name": node.name or node.output[0], "op": node.op_type, "placed": place,
                                    "node": node, "inputs": [x for x in node.input if x and x not in self.consts]}
            if step["name"] in self.joins:
                step.update(kind="join")
                self.steps.append(step)
                continue
            layer = self._ocl_layer(node, shapes) if place == "gpu" and ocl is not None else None
            if layer is not None:
                spec, x_shape = layer
                w, b = ocl.svm(spec.w.shape), ocl.svm(spec.b.shape)
                w[...], b[...] = spec.w, spec.b
                step.update(kind="gpu", layer=spec, x_shape=x_shape, w=w, b=b)
                if spec.kind == "conv" and spec.stride == 1 and spec.out_channels % 4 == 0:
                    # the vectorised stride-1 kernel (what the OpenCL profile measured)
                    # reads a padded copy, made on the device right before it
                    step["xpad"] = ocl.padded_buffer(x_shape, spec.pad)
            else:
                if place == "gpu":
                    self.gpu_fallback.append(step["name"])
                step.update(kind="cpu", sess=self._session(node, shapes, so, ort))
            self.steps.append(step)
        self.flag = ocl.svm((1,), np.int32) if ocl is not None else np.zeros(1, np.int32)
        self.flag[0] = 0
        self.seq = 0
        self.made_by_gpu: dict[str, tuple[int, Any]] = {}

    def _ocl_layer(self, node: onnx.NodeProto, shapes) -> tuple[LayerSpec, tuple[int, ...]] | None:
        a = _attrs(node)
        if node.op_type == "Conv" and node.input[1] in self.consts:
            w = self.consts[node.input[1]].astype(np.float32)
            pads, strides = list(a.get("pads", [0, 0, 0, 0])), list(a.get("strides", [1, 1]))
            xs = shapes.get(node.input[0])
            if (int(a.get("group", 1)) != 1 or w.ndim != 4 or w.shape[2] != w.shape[3] or len(set(pads)) != 1
                    or len(set(strides)) != 1 or any(d != 1 for d in a.get("dilations", [1, 1]))
                    or xs is None or xs[0] != 1):
                return None
            b = self.consts[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0])
            return LayerSpec("conv", w, b.astype(np.float32), int(strides[0]), int(pads[0])), tuple(xs[1:])
        if node.op_type in ("Gemm", "MatMul") and node.input[1] in self.consts:
            xs = shapes.get(node.input[0])
            if xs is None or len(xs) != 2 or xs[0] != 1 or xs[1] % 16:
                return None
            if node.op_type == "Gemm" and (a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0):
                return None
            w = self.consts[node.input[1]].astype(np.float32)
            w = w if node.op_type == "Gemm" and a.get("transB", 0) else w.T
            b = (self.consts[node.input[2]].reshape(-1) if node.op_type == "Gemm" and len(node.input) > 2
                 and node.input[2] else np.zeros(w.shape[0]))
            return LayerSpec("linear", np.ascontiguousarray(w), b.astype(np.float32)), (int(xs[1]),)
        return None

    def _session(self, node: onnx.NodeProto, shapes, so, ort):
        ins = [x for x in node.input if x and x not in self.consts]
        inits = [numpy_helper.from_array(self.consts[x], x) for x in dict.fromkeys(node.input) if x in self.consts]
        vi = lambda n: helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, list(shapes[n]))  # noqa: E731
        g = helper.make_graph([node], "op", [vi(x) for x in dict.fromkeys(ins)], [vi(o) for o in node.output], inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
        m.ir_version = 8
        try:
            return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise OplatError(f"node {node.name} ({node.op_type}) cannot run on the CPU executor: "
                             f"{str(e).splitlines()[0]}") from None

    def _wait(self, name: str) -> float:
        made = self.made_by_gpu.pop(name, None)
        if made is None:
            return 0.0
        seq, ev = made
        t0 = time.perf_counter()
        if self.sync == "svm":
            poll(self.flag, seq, at_least=True)
        elif self.sync == "event":
            ev.wait()
        else:
            self.ocl.queue.finish()
        return time.perf_counter() - t0

    def run(self, x: dict[str, np.ndarray], record: bool = False) -> dict[str, Any]:
        """One inference; returns wall seconds, outputs and (``record``) per-node times."""
        prev = os.sched_getaffinity(0)
        if self.cpu_cores:
            os.sched_setaffinity(0, set(self.cpu_cores))
        try:
            return self._run(x, record)
        finally:
            os.sched_setaffinity(0, prev)

    def _run(self, feeds: dict[str, np.ndarray], record: bool) -> dict[str, Any]:
        for name in self.inputs:
            self.buf[name][...] = feeds[name]
        times: list[dict[str, Any]] = []
        sync_s = 0.0
        t_start = time.perf_counter()
        for st in self.steps:
            if st["kind"] == "gpu":
                # CPU-made inputs are complete (this thread made them); GPU-made ones are
                # ordered by the in-order queue
                out = st["node"].output[0]
                x = self.buf[st["inputs"][0]]
                if "xpad" in st:
                    self.ocl.enqueue_pad(x, st["xpad"], st["x_shape"], st["layer"].pad)
                ev = self.ocl.enqueue(st["layer"], x, st["w"], st["b"], self.buf[out], 0,
                                      st["layer"].out_channels, st["x_shape"], st.get("xpad"))
                self.seq += 1
                if self.sync == "svm":
                    self.ocl.signal(self.flag, self.seq)
                self.ocl.flush()
                self.made_by_gpu[out] = (self.seq, ev)
                if record:
                    times.append({"name": st["name"], "op": st["op"], "on": "gpu", "event": ev})
                continue
            w = 0.0
            for x in st["inputs"]:
                w += self._wait(x)
            sync_s += w
            if st["kind"] == "join":  # the parts wrote into the output's slices: nothing to copy
                if record:
                    times.append({"name": st["name"], "op": st["op"], "on": "join", "ms": 0.0, "wait_ms": w * 1e3})
                continue
            t0 = time.perf_counter()
            sess = st["sess"]
            io = sess.io_binding()
            for x in dict.fromkeys(st["inputs"]):
                io.bind_cpu_input(x, self.buf[x])
            for o in st["node"].output:
                b = self.buf[o]
                io.bind_output(o, "cpu", 0, np.float32, list(b.shape), b.ctypes.data)
            sess.run_with_iobinding(io)
            if record:
                times.append({"name": st["name"], "op": st["op"], "on": "cpu", "ms": (time.perf_counter() - t0) * 1e3,
                              "wait_ms": w * 1e3})
        for o in self.outputs:
            sync_s += self._wait(o)
        if self.made_by_gpu:  # GPU work nobody consumed (dead ends): finish before returning
            for name in list(self.made_by_gpu):
                sync_s += self._wait(name)
        wall = time.perf_counter() - t_start
        if record:
            for t in times:
                ev = t.pop("event", None)
                if ev is not None:
                    t["ms"] = (ev.profile.end - ev.profile.start) * 1e-6
        return {"seconds": wall, "sync_seconds": sync_s, "outputs": {o: np.array(self.buf[o]) for o in self.outputs},
                "ops": times}


def run_plan(model_path: str, plan: dict[str, Any], runs: int = 10, sync: str = "svm",
             cpu_cores: Sequence[int] | None = None, gpu_cores: Sequence[int] | None = None,
             cpu_only: bool = False, seed: int = 0) -> dict[str, Any]:
    """CPU-only, GPU-only and planned co-execution of a whole model, measured side by side
    (interleaved runs, medians), outputs checked against onnxruntime on the original."""
    import onnxruntime as ort

    from .runtime import RuntimeUnavailable
    from .split import split_model

    ncpu = os.cpu_count() or 1
    gpu_cores = list(gpu_cores) if gpu_cores else [ncpu - 1]
    cpu_cores = list(cpu_cores) if cpu_cores else [c for c in range(ncpu) if c not in gpu_cores] or [0]
    split, kept = split_model(model_path, plan)
    original = onnx.load(model_path)
    ocl = None
    if not cpu_only:
        try:
            ocl = OclExecutor(gpu_cores)
        except RuntimeUnavailable as e:
            raise RuntimeUnavailable(f"{e} (use --cpu-only to run on the CPU executor alone)") from None
    runners = {"cpu": GraphRunner(original, ocl, cpu_cores, sync, force="cpu")}
    if ocl is not None:
        runners["gpu"] = GraphRunner(original, ocl, cpu_cores, sync, force="gpu")
        runners["planned"] = GraphRunner(split, ocl, cpu_cores, sync)
    rng = np.random.default_rng(seed)
    sess = ort.InferenceSession(original.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
             for i in sess.get_inputs()}
    ref = sess.run(None, feeds)
    errs = {}
    for name, r in runners.items():
        out = r.run(feeds)["outputs"]
        got = [out[o] for o in r.outputs]
        errs[name] = max(float(np.abs(g.reshape(e.shape) - e).max() / max(float(np.abs(e).max()), 1e-12))
                         for g, e in zip(got, ref))
    times: dict[str, list[float]] = {k: [] for k in runners}
    syncs: list[float] = []
    for _ in range(runs):  # interleaved: drift on a shared machine hits all three alike
        for name, r in runners.items():
            res = r.run(feeds)
            times[name].append(res["seconds"])
            if name == "planned":
                syncs.append(res["sync_seconds"])
    med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    detail = runners.get("planned", runners["cpu"]).run(feeds, record=True)["ops"]
    predicted = {o["name"]: o for o in plan.get("ops", [])}
    out = {"model": os.path.basename(model_path), "plan_profiles": plan.get("profiles"), "sync": sync,
           "cpu_cores": cpu_cores, "gpu_cores": gpu_cores, "device": ocl.device.name if ocl else None, "runs": runs,
           "cpu_ms": med["cpu"], "gpu_ms": med.get("gpu"), "planned_ms": med.get("planned"),
           "planned_sync_ms": float(np.median(syncs)) * 1e3 if syncs else None,
           "max_rel_err": errs, "outputs_match": all(v <= 1e-4 for v in errs.values()),
           "gpu_fallback": runners["planned"].gpu_fallback if "planned" in runners else [],
           # "GPU only" runs on the CPU what has no OpenCL kernel (depthwise, pools, ...): so many ops
           "gpu_only_cpu_ops": len(runners["gpu"].gpu_fallback) if "gpu" in runners else None,
           "kept_whole": kept, "predicted_ms": plan.get("predicted_ms"), "ops": detail}
    if ocl is not None:
        fast = min(med["cpu"], med["gpu"])
        out["speedup"] = fast / med["planned"]
    for o in detail:
        src = o["name"].split("/")[0]
        if src in predicted:
            p = predicted[src]
            o["predicted_ms"] = p["predicted_gpu_ms"] if o["on"] == "gpu" else p["predicted_cpu_ms"]
    return out
