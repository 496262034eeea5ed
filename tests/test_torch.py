"""PyTorch Mobile GPU lowering and per-op data loading."""

import collections
from pathlib import Path

import pytest

from oplat.datasets import SHARED_DATA, load_torch_gpu_ops
from oplat.features import predictor_key
from oplat.lowering import lower
from oplat.onnx_loader import load_onnx

ZOO = Path(__file__).resolve().parents[1] / "models" / "cnn_zoo"


def test_vulkan_lowering_keeps_elementwise_ops_as_kernels():
    lm = lower(load_onnx(ZOO / "mobilenetv3_large_w1.onnx"), "torch-gpu", "vulkan")
    kinds = collections.Counter((k.type, k.impl) for k in lm.kernels)
    assert kinds[("HARD_SWISH", "eltwise")] > 0 and kinds[("ADD", "add")] > 0
    assert kinds[("DEPTHWISE_CONV_2D", "conv2d_dw_3x3")] > 0 and kinds[("DEPTHWISE_CONV_2D", "conv2d_dw_5x5")] > 0
    assert kinds[("CONV_2D", "conv2d_pw_2x2")] > 0
    # a ReLU right after a conv is fused into the prepacked conv context, nothing else is
    assert all(k.linked in ([], ["relu"]) for k in lm.kernels)
    assert all(k.type in ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_GROUP", "FULLY_CONNECTED")
               for k in lm.kernels if k.linked)
    assert {predictor_key(k.type, k.impl) for k in lm.kernels if k.type == "HARD_SWISH"} == {"ELTWISE"}


def test_metal_uses_one_conv_kernel_family():
    lm = lower(load_onnx(ZOO / "resnet18.onnx"), "torch-gpu", "metal")
    assert {k.impl for k in lm.kernels if k.type == "CONV_2D"} == {"prepack_conv2d"}


@pytest.mark.skipif(not (SHARED_DATA / "torch_cnn_ops_gpu.csv").is_file(), reason="shared dataset not present")
def test_torch_rows_match_the_lowering_of_the_same_model():
    rows = [r for r in load_torch_gpu_ops(devices=["pixel4"]) if r.model == "resnet18"]
    data = collections.Counter((r.kernel, r.impl) for r in rows)
    lm = lower(load_onnx(ZOO / "resnet18.onnx"), "torch-gpu", "vulkan")
    ours = collections.Counter((k.type, k.impl) for k in lm.kernels if k.type != "RESHAPE")
    assert ours[("CONV_2D", "conv2d")] == data[("CONV_2D", "conv2d")]
    assert ours[("CONV_2D", "conv2d_pw_2x2")] == data[("CONV_2D", "conv2d_pw_2x2")]
    assert ours[("ADD", "add")] == data[("ADD", "add")]
    assert all(r.latency_ms > 0 for r in rows)
