"""PyTorch Mobile GPU lowering and per-op data loading."""

import collections

import pytest

from oplat.datasets import SHARED_DATA, load_torch_gpu_ops
from oplat.features import predictor_key
from oplat.lowering import lower
from oplat.onnx_loader import load_onnx
from oplat.zoo import zoo_dir

ZOO = zoo_dir("cnn_zoo")


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


def test_a_metal_profile_fitted_from_end_to_end_times_predicts_through_the_metal_lowering(tmp_path):
    import numpy as np

    from oplat.decompose import E2EDecomposer, KernelTable, kernel_tables
    from oplat.profile import Profile
    from oplat.train import load_graphs

    names = ["resnet18", "mobilenetv2_w1", "mobilenetv3_large_w1", "squeezenet_v1_1", "mobilenetv2_wd2",
             "resnet10", "mobilenet_w1", "ghostnet"]
    tables = kernel_tables(load_graphs(ZOO, names), backend="torch-gpu", bytes_per_elem=2.0, variant="metal")
    assert {i[1] for t in tables.values() for i in t.items.get("CONV_2D", [])} == {"prepack_conv2d"}
    vulkan = kernel_tables(load_graphs(ZOO, ["resnet18"]), backend="torch-gpu", variant="vulkan")
    assert {i[1] for i in vulkan["resnet18"].items["CONV_2D"]} != {"prepack_conv2d"}
    # a synthetic phone: per-kernel cost from GFLOPs and MB, plus a fixed cost
    measured = [0.3 + sum(float(np.sum(w[:, 0] * 2.0 + w[:, 1] * 0.05 + 0.004)) for w in tables[m].work.values())
                for m in sorted(tables)]
    d = E2EDecomposer().fit([tables[m] for m in sorted(tables)], measured)
    meta = {"id": "synthetic/torch-gpu", "device": "synthetic", "framework": "torch", "processor": "gpu",
            "lowering": "torch-gpu", "gpu_family": "metal"}
    prof = Profile.load(d.to_profile(meta).save(tmp_path / "p"))
    g = load_onnx(ZOO / "resnet18.onnx")
    res = prof.predict(g)
    assert not res.unsupported and {o.impl for o in res.ops if o.kernel == "CONV_2D"} == {"prepack_conv2d"}
    assert res.total_ms == pytest.approx(float(d.predict_totals([KernelTable(prof.lower(g), 2.0)])[0]), rel=1e-5)
