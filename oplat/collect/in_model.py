"""Per-kernel times measured inside whole models (onnxruntime's profiler), as training rows.

A kernel timed alone and the same kernel inside a network do not take the same time (per
kernel family, ``in_model_over_single_op`` in ``bench/results/in_model_rows.json``): a
single-op session runs one kernel hot, over and over, net of the per-call floor; inside a
model each node pays its dispatch and reads what the previous one left, and the gap is
widest for the smallest kernels. The end-to-end term corrects a family's average, not how
the gap varies with a kernel's size. The phone data has this right by construction (per-op times come from
profiled whole models); :func:`in_model_rows` does the same here: it runs a model under
onnxruntime's profiler, takes each node's median time (times ``scale``), and gives each
kernel of the model's lowering the time of the nodes it runs (matched by tensor and op
names; NCHWc layout reorders become ``REORDER`` rows of their own, by their dims).
``oplat profile-device`` trains on them beside the single-op rows, taking the node times
net of what the profiler itself adds to each (:func:`profiler_overhead`, measured first):
what lies between nodes is the end-to-end term's.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

import numpy as np
import onnx

from ..datasets import OpRow
from ..graph_only import is_graph_only, with_random_weights
from ..ir import Graph
from ..lowering.kernels import LoweredModel
from ..lowering.ort_cpu import reorder_params
from ..onnx_utils import random_feeds
from .timing import time_runs


def profiled_runs(backend, model_bytes: bytes, runs: int, warmup: int, max_seconds: float | None = None
                  ) -> tuple[dict[str, list[float]], dict[str, dict[str, Any]], int]:
    """Run a model under ``backend``'s session options with onnxruntime's profiler on:
    each node's time (ms) in every run, its profiler arguments, and how many runs were made
    (``warmup + runs``, fewer past ``max_seconds`` once ``warmup + 5`` are done)."""
    so = backend._options()
    so.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        so.profile_file_prefix = os.path.join(tmp, "p")
        sess = backend._ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
        feeds = random_feeds(sess.get_inputs())
        t0 = time.perf_counter()
        n = 0
        while n < warmup + runs and (max_seconds is None or n < warmup + 5
                                     or time.perf_counter() - t0 < max_seconds):
            sess.run(None, feeds)
            n += 1
        with open(sess.end_profiling()) as f:
            events = json.load(f)
    times: dict[str, list[float]] = {}
    args: dict[str, dict[str, Any]] = {}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        name = e["name"][: -len("_kernel_time")]
        times.setdefault(name, []).append(e["dur"] / 1e3)
        args[name] = e.get("args") or {}
    return times, args, n


def profile_nodes(backend, model: onnx.ModelProto, runs: int = 20, warmup: int = 3,
                  max_seconds: float = 2.0) -> tuple[dict[str, float], dict[str, dict[str, Any]], float]:
    """Each node's median time (ms) in ``model`` under ``backend``'s session options with
    onnxruntime's profiler on, its profiler arguments, and the median of the runs' node sums."""
    if is_graph_only(model):
        model = with_random_weights(model)
    times, args, n = profiled_runs(backend, model.SerializeToString(), runs, warmup, max_seconds)
    med = {k: float(np.median(v[warmup:] or v)) for k, v in times.items()}
    # per run: every node's time of that run summed
    per_run = [sum(v[i] for v in times.values() if i < len(v)) for i in range(warmup, n)]
    return med, args, float(np.median(per_run)) if per_run else sum(med.values())


def profiler_overhead(backend, nodes: int = 200, runs: int = 30) -> tuple[float, float]:
    """What onnxruntime's profiler adds to each node's recorded time on this machine, and
    the least a node takes (ms each): a chain of ``nodes`` trivial element-wise nodes run
    with the profiler off (wall time per node) and on (each node's median recorded time).
    The recorded times are whole microseconds and carry the profiler's own bookkeeping: a
    trivial node that runs in a fraction of a microsecond records more than one
    (``profiler_node_overhead_us`` in ``bench/results/profile_device_ort-cpu_1t.json``),
    which adds up over the hundreds of small nodes of a mobile network."""
    from onnx import TensorProto, helper

    chain = [helper.make_node("Relu" if i % 2 == 0 else "Neg", [f"t{i}"], [f"t{i + 1}"]) for i in range(nodes)]
    graph = helper.make_graph(chain, "profiler_overhead", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info(f"t{nodes}", TensorProto.FLOAT, [1, 8])])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    sess = backend._ort.InferenceSession(data, backend._options(), providers=["CPUExecutionProvider"])
    feeds = {"t0": np.ones((1, 8), np.float32)}
    plain_ms = time_runs(lambda: sess.run(None, feeds), warmup=5, min_runs=runs, max_runs=runs)["median_ms"] / nodes
    times, _, _ = profiled_runs(backend, data, runs, 5)
    recorded_ms = float(np.median([np.median(v[5:] or v) for v in times.values()]))
    return max(recorded_ms - plain_ms, 0.0), plain_ms


def node_dims(a: dict[str, Any], key: str) -> list[int]:
    """The dims of a profiled node's first input or output (``key``: its profiler argument)."""
    shapes = a.get(key) or [{}]
    return [int(d) for d in next(iter(shapes[0].values()), [])]


BY_ORDER = {"Gelu": "gelu"}
GEMM_RESHAPES = ("gemm_input_reshape", "gemm_output_reshape")


def _match(node: str, by_name: dict[str, int]) -> int | None:
    """The kernel a profiled node belongs to: onnxruntime names a node after the ONNX node
    or output tensor it came from, with ``_nchwc`` appended by the layout transformer or
    ``/<Fusion>`` by a fusion (``MatMul_756/MatMulAddFusion``)."""
    name = node
    for suffix in ("_nchwc", "_new_reshape"):
        name = name[: -len(suffix)] if name.endswith(suffix) else name
    while True:
        if name in by_name:
            return by_name[name]
        if "/" not in name.strip("/"):
            return None
        name = name.rsplit("/", 1)[0]


def in_model_rows(model_name: str, graph: Graph, lm: LoweredModel, node_ms: dict[str, float],
                  node_args: dict[str, dict[str, Any]], scale: float, device: str = "host",
                  framework: str = "onnxruntime", node_overhead: tuple[float, float] = (0.0, 0.0)
                  ) -> tuple[list[OpRow], dict[str, float]]:
    """Training rows of ``lm``'s kernels from the profiled ``node_ms`` (each times
    ``scale``, less the profiler's own time per node and no less than the least a node
    takes: ``node_overhead``, :func:`profiler_overhead`), and what could not be matched:
    ``{"matched_ms", "unmatched_ms"}``."""
    extra, least = node_overhead
    by_tensor: dict[str, int] = {}
    kernels = lm.kernels
    for i, k in enumerate(kernels):
        if k.type == "REORDER":
            continue
        for t in list(k.outputs) + list(k.sources):
            by_tensor.setdefault(t, i)
        for s in k.sources:
            if s in graph._ops:
                for t in graph.op(s).outputs:
                    by_tensor.setdefault(t, i)
    acc: dict[int, float] = {}
    rows: list[OpRow] = []
    matched = unmatched = 0.0
    later: list[tuple[str, float]] = []
    prev: int | None = None  # the kernel of the last matched node (execution order)
    pending = 0.0  # reshapes before a Gemm not yet matched
    for name, ms in node_ms.items():
        a = node_args.get(name, {})
        op = a.get("op_name")
        ms = max(ms * scale - extra, least) if extra else ms * scale
        if op in ("ReorderInput", "ReorderOutput"):
            direction = "in" if op == "ReorderInput" else "out"
            dims = node_dims(a, "input_type_shape" if direction == "in" else "output_type_shape")
            if dims:
                rows.append(OpRow(model_name, device, framework, "cpu", "REORDER", "reorder", [],
                                  reorder_params(dims, direction), ms, {"in_model": True}))
                matched += ms
                continue
        i = _match(name, by_tensor)
        if i is None and name.startswith(GEMM_RESHAPES):
            # the reshapes onnxruntime puts around a Gemm that took over a MatMul of a 3-D
            # input (MatMulAddFusion: 144 nodes, 7% of ViT-Ti/32's node time): part of what
            # the token-wise fully connected kernel costs inside a ViT, which its single-op
            # session (a 2-D Gemm) does not time; an input reshape goes to the next kernel,
            # an output one to the last
            if name.startswith(GEMM_RESHAPES[0]):
                pending += ms
                continue
            i = prev
        if i is None:
            later.append((op, ms))
            continue
        acc[i] = acc.get(i, 0.0) + ms + pending
        matched += ms + pending
        prev, pending = i, 0.0
    unmatched += pending
    # fused nodes onnxruntime names by a counter (Gelu_token_12): the kernels of that kind
    # no name matched, in order
    spare = {op: [i for i, k in enumerate(kernels) if k.impl == impl and i not in acc] for op, impl in BY_ORDER.items()}
    for op, ms in later:
        if spare.get(op):
            i = spare[op].pop(0)
            acc[i] = ms
            matched += ms
        else:
            unmatched += ms
    for i, ms in acc.items():
        k = kernels[i]
        rows.append(OpRow(model_name, device, framework, "cpu", k.type, k.impl, list(k.linked), dict(k.params), ms,
                          {"in_model": True}))
    return rows, {"matched_ms": matched, "unmatched_ms": unmatched}


__all__ = ["profiled_runs", "node_dims", "profile_nodes", "profiler_overhead", "in_model_rows"]
