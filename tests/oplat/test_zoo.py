import numpy as np
import onnx
import onnxruntime as ort
import pytest

from oplat.lowering import lower
from oplat.onnx_loader import load_onnx

def test_every_zoo_model_is_valid_and_fully_lowered():
    from oplat.zoo import build, list_models

    names = list_models()
    assert len(names) >= 40
    for name in names:
        m = build(name, graph_only=True)
        lm = lower(load_onnx(m), "tflite-gpu", "mali")
        assert lm.unsupported == [], name
        assert len(lm.rows) > 10, name


@pytest.mark.parametrize("name", ["mobilenet_v3_small_1.0", "shufflenet_v2_0.5", "ghostnet_1.0", "regnety_200mf"])
def test_zoo_models_run_in_onnxruntime(name):
    from oplat.zoo import build

    m = build(name)
    onnx.checker.check_model(m)
    out = ort.InferenceSession(m.SerializeToString()).run(None, {"input": np.random.rand(1, 3, 224, 224).astype(np.float32)})[0]
    assert out.shape == (1, 1000) and np.isfinite(out).all()


def test_zoo_cli(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    def run(*a):
        return subprocess.run([sys.executable, "-m", "oplat.cli", "zoo", *map(str, a)], capture_output=True,
                              text=True, cwd=ROOT, timeout=120)

    names = run("list").stdout.split()
    assert "resnet18" in names and "mobilenet_v2_1.0" in names
    arch = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"
    p = run("build", "nb201:" + arch, "-o", tmp_path / "nb.onnx", "--graph-only")
    assert p.returncode == 0, p.stderr
    assert load_onnx(tmp_path / "nb.onnx").shape(load_onnx(tmp_path / "nb.onnx").outputs[0]) == (1, 10)
    bad = run("build", "resnet9000", "-o", tmp_path / "x.onnx")
    assert bad.returncode == 2 and "unknown zoo model" in bad.stderr


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "swin_tiny_patch4_window7_224", "mobilevit_xxs",
                                  "efficientformer_l1", "levit_128s", "mit_b0", "pvt_tiny_224", "cvt_13"])
def test_vit_families_run_in_onnxruntime(name):
    from oplat.zoo import build

    m = build(name)
    onnx.checker.check_model(m)
    shape = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    out = ort.InferenceSession(m.SerializeToString()).run(None, {"input": np.random.rand(*shape).astype(np.float32)})[0]
    assert out.shape == (1, 1000) and np.isfinite(out).all()


def test_cnn_trained_profile_flags_transformer_kernels():
    from oplat.zoo import build
    from oplat.profile import load_profile

    prof = load_profile("pixel4/tflite-gpu")
    res = prof.predict(load_onnx(build("vit_tiny_patch16_224", graph_only=True)))
    kinds = {u["op_type"] for u in res.unsupported}
    assert {"BATCH_MATMUL", "SOFTMAX", "LAYER_NORM"} <= kinds
    assert res.total_ms > 0
    assert prof.predict(load_onnx(build("resnet18", graph_only=True))).unsupported == []


# FLOPs the benchmark lists for the Hugging Face models (``flops`` column of
# ../shared/data/mobile-ml-benchmark/torch_transformer_e2e.csv)
PUBLISHED_GFLOPS = {"mit-b0": 0.901, "mit-b5": 23.40, "pvt-small-224": 7.614, "cvt-13": 9.118, "cvt-21-384": 49.60,
                    "efficientformer-l7-300": 20.23, "beit-base-patch16-224": 35.10,
                    "dinov2-small-imagenet1k-1-layer": 12.23, "swin-base-patch4-window7-224": 30.83,
                    "poolformer_s12": 3.625, "van-tiny": 1.728,
                    "levit-128S": 0.6071, "levit-384": 4.697}


@pytest.mark.parametrize("name", sorted(PUBLISHED_GFLOPS))
def test_benchmark_vit_builds_have_the_published_flops(name):
    from tools.export_vit_hf import HF_VITS
    from oplat.decompose import kernel_tables

    t = kernel_tables({name: load_onnx(HF_VITS[name](graph_only=True))})[name]
    gflops = sum(w[:, 0].sum() for w in t.work.values())
    assert gflops == pytest.approx(PUBLISHED_GFLOPS[name], rel=0.04)
