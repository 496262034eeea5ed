"""ONNX -> .tflite conversion: every converted model computes what onnxruntime computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from oplat.zoo import build
from oplat.graph_only import with_random_weights
from oplat.onnx2tflite import ConvertError, onnx_to_tflite
from oplat.tflite_loader import load_tflite
from oplat.zoo import zoo_dir

ROOT = Path(__file__).resolve().parents[2]


def _run_both(model: onnx.ModelProto) -> tuple[np.ndarray, np.ndarray, bytes]:
    from ai_edge_litert.interpreter import Interpreter

    data = onnx_to_tflite(model)
    it = Interpreter(model_content=data, num_threads=1)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    x = np.random.default_rng(1).standard_normal(inp["shape"]).astype(np.float32)
    it.set_tensor(inp["index"], x)
    it.invoke()
    y = it.get_tensor(it.get_output_details()[0]["index"])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    return y.reshape(ref.shape), ref, data


@pytest.mark.parametrize("name", ["mobilenet_v3_small_0.75", "shufflenet_v2_0.5", "squeezenet1_1", "resnet10",
                                  "vit_tiny_patch32_224", "mobilevit_xxs", "levit_128s"])
def test_zoo_models_match_onnxruntime(name: str) -> None:
    y, ref, _ = _run_both(build(name))
    assert np.isfinite(ref).all()
    assert np.abs(y - ref).max() <= 1e-4 * (np.abs(ref).max() + 1e-6)


@pytest.mark.parametrize("path", ["oplat/zoo/cnn_zoo/efficientnet_edge_small_b.onnx", "oplat/zoo/cnn_zoo/bninception.onnx",
                                  "oplat/zoo/cnn_zoo/preresnet18_wd4.onnx"])
def test_pytorch_exports_with_shape_chains_and_ceil_pooling(path: str) -> None:
    """Pad sizes computed by Shape->Gather->Concat chains fold; ceil-mode pools pad at the end;
    BatchNorm variances shared through Identity nodes get positive random values."""
    model = with_random_weights(onnx.load(ROOT / path, load_external_data=False))
    y, ref, _ = _run_both(model)
    assert np.isfinite(ref).all()
    assert np.abs(y - ref).max() <= 1e-4 * (np.abs(ref).max() + 1e-6)


def _load(data: bytes, tmp_path: Path):
    p = tmp_path / "m.tflite"
    p.write_bytes(data)
    return load_tflite(p)


def test_layout_ops_fused_as_the_tflite_converter_does(tmp_path: Path) -> None:
    """BatchNorm folds into the conv, ReLU6 becomes its fused activation, GELU is one op."""
    _, _, data = _run_both(build("mobilenet_v2_0.35"))
    g = _load(data, tmp_path)
    types = [op.type for op in g.ops()]
    assert "BatchNormalization" not in types and types.count("Conv") == 52
    assert types.count("Transpose") == 1  # the NCHW input, once
    _, _, vdata = _run_both(build("vit_tiny_patch32_224"))
    vtypes = [op.type for op in _load(vdata, tmp_path).ops()]
    assert vtypes.count("Gelu") == 12 and "Erf" not in vtypes


def _tiny(op: str, dims=(1, 3, 8, 8)) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    g = helper.make_graph([helper.make_node(op, ["x"], ["y"])], "t", [x], [y])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_unsupported_op_named() -> None:
    with pytest.raises(ConvertError, match="unsupported op Celu"):
        onnx_to_tflite(_tiny("Celu"))


def test_dynamic_input_needs_a_size() -> None:
    m = _tiny("Relu", ("N", 3, 8, 8))
    with pytest.raises(ConvertError, match="input 'x' has a dynamic shape"):
        onnx_to_tflite(m)
    assert len(onnx_to_tflite(m, {"x": [1, 3, 8, 8]})) > 0


def test_convert_cli_and_prediction_agree_across_formats(tmp_path: Path) -> None:
    """The converted .tflite lowers to the same GPU kernels as the ONNX it came from."""
    import json
    import subprocess
    import sys

    out = tmp_path / "mv2.tflite"

    def run(*a):
        return subprocess.run([sys.executable, "-m", "oplat.cli", *map(str, a)], capture_output=True, text=True,
                              cwd=ROOT, timeout=300)

    src = zoo_dir("samples") / "mobilenetv2_w1.onnx"
    p = run("convert", src, "-o", out)
    assert p.returncode == 0, p.stderr
    a = json.loads(run("predict", src, "--profile", "pixel4/tflite-gpu", "--json").stdout)["total_ms"]
    b = json.loads(run("predict", out, "--profile", "pixel4/tflite-gpu", "--json").stdout)["total_ms"]
    assert abs(a / b - 1) < 0.02
    bad = run("convert", ROOT / "README.md", "-o", tmp_path / "x.tflite")
    assert bad.returncode == 2 and "not a readable ONNX model" in bad.stderr and not (tmp_path / "x.tflite").exists()
