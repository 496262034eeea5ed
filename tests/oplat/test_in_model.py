"""Per-kernel rows from onnxruntime's profiler (``oplat.collect.in_model``): node times net
of the profiler's own, and the Gemm reshapes of a ViT charged to its fully connected
kernels."""

from __future__ import annotations

import pytest

from oplat.collect.backends import make_backend
from oplat.collect.in_model import in_model_rows, profile_nodes, profiler_overhead
from oplat.lowering import lower
from oplat.onnx_loader import load_onnx
from oplat.zoo import build


@pytest.fixture(scope="module")
def backend():
    return make_backend("ort-cpu", threads=1)


def test_profiler_overhead_is_what_a_trivial_node_records_beyond_its_run(backend):
    extra, least = profiler_overhead(backend, nodes=100, runs=10)
    # recorded in whole microseconds: a trivial node records at least one more than it runs
    assert 0.0 <= least < 0.02 and 0.0 < extra < 0.05


@pytest.mark.parametrize("name", ["vit_tiny_patch32_224", "mobilenet_v2_0.35"])
def test_in_model_rows_take_the_profiler_overhead_off_every_node(backend, name):
    m = build(name)
    g = load_onnx(build(name, graph_only=True))
    lm = lower(g, "ort-cpu", "cpu")
    node_ms, node_args, _ = profile_nodes(backend, m, runs=3, warmup=1)
    raw, st = in_model_rows(name, g, lm, node_ms, node_args, 1.0)
    net, st_net = in_model_rows(name, g, lm, node_ms, node_args, 1.0, node_overhead=(0.001, 0.0002))
    assert st["unmatched_ms"] <= 0.1 * (st["matched_ms"] + st["unmatched_ms"])
    assert len(net) == len(raw)
    # each kernel's row loses the overhead of each node it runs, never below the floor
    for r_raw, r_net in zip(raw, net):
        assert (r_raw.kernel, r_raw.params) == (r_net.kernel, r_net.params)
        assert r_net.latency_ms <= r_raw.latency_ms and r_net.latency_ms >= 0.0002
    assert st_net["matched_ms"] < st["matched_ms"]
    if name.startswith("vit"):
        # Reshape, Gemm, Reshape: a token-wise fully connected kernel runs three nodes
        # (or two: q, k and v share one input reshape)
        fc = [a.latency_ms - b.latency_ms for a, b in zip(raw, net) if a.impl == "fc_tokens"]
        assert fc and sum(1 for d in fc if d >= 0.0015) > len(fc) // 2
