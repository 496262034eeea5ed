import numpy as np
import onnx
import onnxruntime as ort
import pytest

from oplat.collect.backends import BackendError, make_backend, time_runs
from oplat.collect.ops import config_id, onnx_single_op

CONFIGS = [
    {"kernel": "CONV_2D", "Input_shape": 14, "Input_channel": 16, "Filter": 32, "Kernel": 3, "Stride": 2, "linked": ["relu"]},
    {"kernel": "CONV_2D", "Input_shape": 14, "Input_channel": 16, "Filter": 16, "Kernel": 1, "Stride": 1, "linked": ["add", "relu6"]},
    {"kernel": "DEPTHWISE_CONV_2D", "Input_shape": 28, "Input_channel": 24, "Kernel": 5, "Stride": 1, "linked": ["hard_swish"]},
    {"kernel": "CONV_2D_GROUP", "Input_shape": 14, "Input_channel": 32, "Filter": 32, "Kernel": 3, "Stride": 1, "Group": 4},
    {"kernel": "FULLY_CONNECTED", "Input_channel": 64, "Filter": 10},
    {"kernel": "MEAN", "Input_shape": 7, "Input_channel": 64},
    {"kernel": "MAX_POOL_2D", "Input_shape": 28, "Input_channel": 8, "Kernel": 3, "Stride": 2},
    {"kernel": "AVERAGE_POOL_2D", "Input_shape": 28, "Input_channel": 8, "Kernel": 3, "Stride": 1},
    {"kernel": "CONCATENATION", "Input_shape": 14, "Input_channel": 8, "Filter": 32, "Kernel": 3},
    {"kernel": "ADD", "Input_shape": 14, "Input_channel": 8},
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=[c["kernel"] for c in CONFIGS])
def test_single_op_models_are_valid_and_run(cfg):
    m = onnx_single_op(cfg)
    onnx.checker.check_model(m)
    sess = ort.InferenceSession(m.SerializeToString())
    feeds = {i.name: np.ones(i.shape, np.float32) for i in sess.get_inputs()}
    out = sess.run(None, feeds)[0]
    assert np.isfinite(out).all()


def test_single_op_model_lowers_to_the_configured_kernel():
    from oplat.lowering import lower
    from oplat.onnx_loader import load_onnx

    lm = lower(load_onnx(onnx_single_op(CONFIGS[1])), "tflite-gpu", "adreno")
    assert [(k.type, k.linked) for k in lm.rows] == [("CONV_2D", ["add", "relu"])]


def test_config_id_is_stable_and_order_free():
    a = {"kernel": "MEAN", "Input_shape": 7, "Input_channel": 64}
    b = {"Input_channel": 64, "kernel": "MEAN", "Input_shape": 7}
    assert config_id(a) == config_id(b) != config_id(dict(a, Input_shape=14))


def test_ort_backend_measures_and_rejects_bad_configs():
    b = make_backend("ort-cpu", threads=1)
    r = b.measure(CONFIGS[0])
    assert r["median_ms"] > 0 and r["count"] >= 10 and r["min_ms"] <= r["median_ms"]
    with pytest.raises(BackendError, match="no single-op builder"):
        b.measure({"kernel": "FFT"})
    with pytest.raises(BackendError, match="unknown backend"):
        make_backend("tpu-v9")


def test_time_runs_stops_at_the_cap():
    calls = []
    r = time_runs(lambda: calls.append(1), warmup=2, min_runs=10, max_runs=40, max_seconds=10, rel_tol=0.0)
    assert 40 <= r["count"] <= 60 and len(calls) == r["count"] + 2
