"""Shared helpers: tiny ONNX models built with onnx.helper."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oplat.datasets import SHARED_DATA  # noqa: E402
from oplat.zoo import zoo_dir

# Tests that train on or compare with the shared phone measurements run where the data is
# (../shared/data/mobile-ml-benchmark or OPLAT_SHARED_DATA) and are skipped, saying why, elsewhere.
needs_shared = pytest.mark.skipif(not (SHARED_DATA / "tflite_cnn_ops_gpu.csv").is_file(),
                                  reason=f"shared mobile-ml-benchmark data not found at {SHARED_DATA} "
                                         "(set OPLAT_SHARED_DATA)")


class Net:
    """Append nodes to a graph under construction; weights are random."""

    def __init__(self, shape=(1, 3, 32, 32), name="input", dynamic: bool = False) -> None:
        self.nodes, self.inits = [], []
        self.rng = np.random.default_rng(0)
        dims = ["N", "C", "H", "W"] if dynamic else list(shape)
        self.inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)]
        self.n = 0

    def _name(self, p: str) -> str:
        self.n += 1
        return f"{p}{self.n}"

    def const(self, arr) -> str:
        name = self._name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(self, op_type: str, inputs, **attrs) -> str:
        out = self._name(op_type.lower() + "_out")
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=self._name(op_type), **attrs))
        return out

    def conv(self, x, c_in, c_out, k=3, s=1, p=1, group=1, bias=True) -> str:
        w = self.const(self.rng.standard_normal((c_out, c_in // group, k, k)).astype(np.float32) * 0.1)
        ins = [x, w] + ([self.const(np.zeros(c_out, np.float32))] if bias else [])
        return self.op("Conv", ins, kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, group=group)

    def bn(self, x, c) -> str:
        return self.op("BatchNormalization", [x] + [self.const(np.ones(c, np.float32)) for _ in range(2)]
                       + [self.const(np.zeros(c, np.float32)), self.const(np.ones(c, np.float32))])

    def model(self, out: str, opset: int = 17) -> onnx.ModelProto:
        g = helper.make_graph(self.nodes, "net", self.inputs,
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        return m


@pytest.fixture
def net():
    return Net


@pytest.fixture(scope="session")
def zoo() -> Path:
    return zoo_dir("cnn_zoo")


def _skipped(config) -> list:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return list(reporter.stats.get("skipped", [])) if reporter is not None else []


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Never a silent skip: name the subsystems the run could not test, and why."""
    skipped = _skipped(config)
    if skipped:
        reasons = sorted({str(r.longrepr[2]).removeprefix("Skipped: ") if isinstance(r.longrepr, tuple)
                          else str(r.longrepr) for r in skipped})
        terminalreporter.write_line(f"UNTESTED: {len(skipped)} test(s) skipped: " + "; ".join(reasons), yellow=True)


def pytest_sessionfinish(session, exitstatus):
    """With OPLAT_REQUIRE_ALL=1 (CI), a skipped test fails the run."""
    import os

    if os.environ.get("OPLAT_REQUIRE_ALL") == "1" and _skipped(session.config) and session.exitstatus == 0:
        session.exitstatus = 1
