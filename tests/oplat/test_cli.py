import json
import subprocess
import sys

import onnx
import pytest

from conftest import ROOT
from conftest import needs_shared
from oplat.zoo import zoo_dir

SAMPLE = zoo_dir("samples") / "mobilenetv2_w1.onnx"


def run(*args):
    return subprocess.run([sys.executable, "-m", "oplat.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def one_line_error(p):
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("oplat: error:"), p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]


def test_predict_json_on_shipped_sample():
    p = run("predict", SAMPLE, "--profile", "pixel4/tflite-gpu", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["total_ms"] > 0 and out["overhead_ms"] >= 0 and out["unsupported"] == []
    assert len(out["ops"]) > 50
    assert {"name", "kernel", "predicted_ms"} <= set(out["ops"][0])
    assert out["total_ms"] == pytest.approx(out["ops_ms"] + out["overhead_ms"])


def test_predict_table_and_plot(tmp_path):
    png = tmp_path / "b.png"
    p = run("predict", SAMPLE, "--profile", "s10/tflite-gpu", "--plot", png)
    assert p.returncode == 0, p.stderr
    assert "predicted end-to-end latency" in p.stdout
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_profiles_lists_the_six_gpus():
    p = run("profiles")
    ids = [line.split("\t")[0] for line in p.stdout.splitlines()]
    for dev in ("pixel4", "s10", "mi8se", "a03s", "iphonexs", "iphone7"):
        assert f"{dev}/tflite-gpu" in ids


def test_corrupt_model(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(SAMPLE.read_bytes()[:1000])
    assert "corrupt or truncated" in one_line_error(run("predict", bad, "--profile", "pixel4/tflite-gpu"))
    txt = tmp_path / "notes.onnx"
    txt.write_text("hello, I am not a model\n")
    one_line_error(run("predict", txt, "--profile", "pixel4/tflite-gpu"))


def test_unknown_profile():
    assert "unknown profile" in one_line_error(run("predict", SAMPLE, "--profile", "nokia3310/tflite-gpu"))


def test_missing_input_shape(tmp_path, net):
    n = net(dynamic=True)
    m = n.model(n.op("Relu", [n.conv("input", 3, 8)]))
    path = tmp_path / "dyn.onnx"
    onnx.save(m, path)
    msg = one_line_error(run("predict", path, "--profile", "pixel4/tflite-gpu"))
    assert "'input'" in msg and "--input-shape" in msg
    ok = run("predict", path, "--profile", "pixel4/tflite-gpu", "--input-shape", "input=1x3x64x64", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["total_ms"] > 0


def test_unknown_ops_are_listed_and_the_rest_predicted(tmp_path, net):
    n = net()
    y = n.conv("input", 3, 16)
    out = n.op("Hardmax", [n.conv(y, 16, 16)])
    path = tmp_path / "odd.onnx"
    onnx.save(n.model(out), path)
    p = run("predict", path, "--profile", "pixel4/tflite-gpu", "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert [u["op_type"] for u in res["unsupported"]] == ["Hardmax"]
    assert len(res["ops"]) == 2 and res["total_ms"] > 0


@needs_shared
def test_train_contract_and_exclusion(tmp_path):
    from oplat.datasets import SHARED_DATA

    ops = SHARED_DATA / "tflite_cnn_ops_gpu.csv"
    e2e = ops.with_name("tflite_cnn_e2e.csv")
    p = run("train", "--ops-csv", ops, "--e2e-csv", e2e, "--devices", "a03s",
            "--exclude-models", "resnet18,mobilenetv2_w1", "--out", tmp_path)
    assert p.returncode == 0, p.stderr
    meta = json.loads((tmp_path / "a03s" / "tflite-gpu" / "profile.json").read_text())
    assert meta["training"]["excluded_models"] == ["mobilenetv2_w1", "resnet18"]
    q = run("predict", SAMPLE, "--profile", tmp_path / "a03s" / "tflite-gpu", "--json")
    assert q.returncode == 0 and json.loads(q.stdout)["total_ms"] > 0


def test_predict_tflite_file(tmp_path):
    from oplat.tflite_writer import conv_classifier_tflite

    path = tmp_path / "tiny.tflite"
    path.write_bytes(conv_classifier_tflite())
    p = run("predict", path, "--profile", "mi8se/tflite-gpu", "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert [o["kernel"] for o in res["ops"]] == ["CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "FULLY_CONNECTED"]
    assert res["ops"][0]["linked"] == ["relu"] and res["total_ms"] > 0


def test_custom_domain_op_is_listed_and_the_rest_predicted(tmp_path, net):
    from onnx import helper

    n = net()
    y = n.conv("input", 3, 8)
    n.nodes.append(helper.make_node("Foo", [y], ["foo_out"], name="foo", domain="com.acme"))
    m = n.model(n.conv("foo_out", 8, 8))
    m.opset_import.append(helper.make_opsetid("com.acme", 1))
    path = tmp_path / "custom.onnx"
    onnx.save(m, path)
    p = run("predict", path, "--profile", "pixel4/tflite-gpu", "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert [u["op_type"] for u in res["unsupported"]] == ["Foo"]
    assert "assumed" in res["unsupported"][0]["reason"]
    assert [o["kernel"] for o in res["ops"]] == ["CONV_2D", "CONV_2D"]


def test_unknown_end_to_end_term_is_a_one_line_error(tmp_path):
    for cmd in (["train", "--out", tmp_path / "p"], ["evaluate"]):
        line = one_line_error(run(*cmd, "--e2e-term", "l2,cubic"))
        assert "cubic" in line and "huber" in line
    assert not (tmp_path / "p").exists()
