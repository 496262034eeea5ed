"""Every model gets a right answer or a clear refusal: coverage, --strict, batch, the
profile that fits, quantized ONNX, strict JSON."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from oplat.cli import main
from oplat.fuzz import edge_models, structural_cases
from oplat.profile import load_profile
from oplat.zoo import build, zoo_dir

DEIT = zoo_dir("vit_zoo") / "deit-tiny-distilled-patch16-224.onnx"
MV2 = zoo_dir("samples") / "mobilenetv2_w1.onnx"


def _edge(tmp_path, name):
    data = dict(edge_models(np.random.default_rng(0)))[f"edge_{name}.onnx"]
    p = tmp_path / f"{name}.onnx"
    p.write_bytes(data)
    return p


def _err_lines(capsys):
    captured = capsys.readouterr()
    return captured.out, [ln for ln in captured.err.splitlines() if ln.strip()]


def test_a_transformer_on_a_cnn_profile_is_refused_naming_the_vit_profile(capsys):
    assert main(["predict", str(DEIT), "--profile", "pixel4/tflite-cpu-1large"]) == 2
    _, err = _err_lines(capsys)
    assert len(err) == 1 and "predicts only 3% of this model's FLOPs" in err[0]
    assert "pixel4/tflite-cpu-1large-vit (100%" in err[0].split("fit it: ")[1].split(",")[0]
    assert main(["predict", str(DEIT), "--profile", "pixel4/tflite-cpu-1large-vit", "--json"]) == 0


def test_an_lstm_net_is_refused_not_predicted_as_nothing(tmp_path, capsys):
    data = dict(structural_cases(np.random.default_rng(0)))["struct_lstm_only.onnx"]
    p = tmp_path / "lstm.onnx"
    p.write_bytes(data)
    assert main(["predict", str(p), "--profile", "pixel4/tflite-gpu", "--json"]) == 2
    out, err = _err_lines(capsys)
    assert out == "" and "LSTM" in err[0] and "0% of this model's FLOPs" in err[0]


def test_incomplete_prediction_warns_on_stderr_even_with_json_and_strict_refuses(tmp_path, capsys):
    p = _edge(tmp_path, "custom_op_among_convs")
    assert main(["predict", str(p), "--profile", "pixel4/tflite-gpu", "--json"]) == 0
    out, err = _err_lines(capsys)
    res = json.loads(out)
    assert res["complete"] is False and 0.5 < res["coverage"]["flops"] < 1.0
    assert res["coverage"]["missing_types"] == ["Swizzle"]
    assert err and err[0].startswith("warning: incomplete prediction") and "lower bound" in err[0]
    assert main(["predict", str(p), "--profile", "pixel4/tflite-gpu"]) == 0
    assert "at least" in capsys.readouterr().out
    assert main(["predict", str(p), "--profile", "pixel4/tflite-gpu", "--strict"]) == 2
    assert "--strict" in _err_lines(capsys)[1][0]
    # a complete prediction passes --strict and says nothing on stderr
    assert main(["predict", str(MV2), "--profile", "pixel4/tflite-gpu", "--strict", "--json"]) == 0
    out, err = _err_lines(capsys)
    assert err == [] and json.loads(out)["complete"] is True


def test_a_batch_the_profile_never_saw_is_refused_and_a_trained_range_is_honoured(tmp_path, capsys):
    args = ["predict", str(MV2), "--input-shape", "input=16x3x224x224", "--json"]
    assert main(args + ["--profile", "pixel4/tflite-gpu"]) == 2
    _, err = _err_lines(capsys)
    assert "batch 16" in err[0] and "trained on batch 1 only" in err[0]
    folder = tmp_path / "p"
    shutil.copytree(load_profile("pixel4/tflite-gpu").path, folder)
    meta = json.loads((folder / "profile.json").read_text())
    meta["batch_range"] = [1, 32]
    (folder / "profile.json").write_text(json.dumps(meta))
    assert main(args + ["--profile", str(folder)]) == 0
    assert json.loads(capsys.readouterr().out)["batch"] == 16


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, \
        quantize_static

    d = tmp_path_factory.mktemp("q")
    model = build("mobilenet_v2_0.35")
    src = d / "mv2.onnx"
    onnx.save(model, src)
    dims = [x.dim_value for x in model.graph.input[0].type.tensor_type.shape.dim]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.left = 2

        def get_next(self):
            if not self.left:
                return None
            self.left -= 1
            return {model.graph.input[0].name: np.random.default_rng(self.left).standard_normal(dims).astype(np.float32)}

    quantize_dynamic(str(src), str(d / "dynamic.onnx"), weight_type=QuantType.QUInt8)
    quantize_static(str(src), str(d / "qdq.onnx"), Reader(), quant_format=QuantFormat.QDQ)
    quantize_static(str(src), str(d / "qoperator.onnx"), Reader(), quant_format=QuantFormat.QOperator)
    return d


@pytest.mark.parametrize("kind", ["dynamic", "qdq", "qoperator"])
def test_quantized_onnx_lowers_to_the_int8_kernels(kind, quantized, capsys):
    """ConvInteger, QDQ pairs and QLinearConv all run as the float model's kernels on an int8
    profile, with no Q/DQ left unpredicted; on a float profile the mismatch is said, with the
    int8 profiles of the device."""
    int8, fp32 = load_profile("pixel4/tflite-cpu-1large-int8"), load_profile("pixel4/tflite-cpu-1large")
    float_res = int8.predict(quantized / "mv2.onnx")
    res = int8.predict(quantized / f"{kind}.onnx")
    assert res.complete and res.unsupported == []
    assert [o.kernel for o in res.ops] == [o.kernel for o in float_res.ops]
    # QDQ quantization drops the ReLUs its ranges already clamp: those convs link none
    assert res.total_ms == pytest.approx(float_res.total_ms, rel=0.01)
    assert main(["predict", str(quantized / f"{kind}.onnx"), "--profile", fp32.id, "--json"]) == 0
    _, err = _err_lines(capsys)
    assert any("the model is int8" in e for e in err)
    assert any("pixel4/tflite-cpu-1large-int8" in e for e in err)


def test_json_output_is_strict_for_any_names(tmp_path, capsys):
    p = _edge(tmp_path, "non_utf8_names")
    assert main(["predict", str(p), "--profile", "pixel4/tflite-gpu", "--json"]) == 0
    out = capsys.readouterr().out
    res = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-strict constant {c}"))
    assert any("\\xff" in o["name"] for o in res["ops"])


def test_conv1d_predicts_as_a_conv_over_height_one(tmp_path):
    p = _edge(tmp_path, "conv1d_keyword_spotting")
    res = load_profile("pixel4/tflite-cpu-1large").predict(p)
    convs = [o for o in res.ops if o.kernel == "CONV_2D"]
    assert res.complete and len(convs) == 2
    assert [(c.params["Kernel"], c.params["Kernel_w"], c.params["Input_shape"]) for c in convs] == [(1, 3, 1),
                                                                                                    (1, 5, 1)]
    assert convs[1].params["Stride"] == 2 and convs[1].params["Output_w"] == 48


def test_convert_refuses_a_quantized_model_in_one_line(quantized, tmp_path, capsys):
    assert main(["convert", str(quantized / "qdq.onnx"), "-o", str(tmp_path / "q.tflite")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "a quantized model" in err and not (tmp_path / "q.tflite").exists()


def test_the_host_onnxruntime_profile_predicts_the_batches_it_was_checked_at(capsys):
    """host/ort-cpu-1t's batch method was checked against onnxruntime up to batch 16
    (bench/results/batch_check.json): batch 4 is predicted, batch 32 refused."""
    base = ["predict", str(MV2), "--profile", "host/ort-cpu-1t", "--json", "--input-shape"]
    assert main(base + ["input=1x3x224x224"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert main(base + ["input=4x3x224x224"]) == 0
    four = json.loads(capsys.readouterr().out)
    assert four["batch"] == 4 and 3.0 * one["total_ms"] < four["total_ms"] < 4.5 * one["total_ms"]
    assert main(base + ["input=32x3x224x224"]) == 2
    assert "batches 1-16" in _err_lines(capsys)[1][-1]
