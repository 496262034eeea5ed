"""One CLI vocabulary: --version, did-you-mean for profiles, profile filters, compare,
-o/--output, piped tables that do not wrap, the per-op CSV, a missing extra named."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from coexec.cli import main as coexec_main
from oplat.cli import main
from oplat.zoo import zoo_dir

MV2 = str(zoo_dir("samples") / "mobilenetv2_w1.onnx")
R18 = str(zoo_dir("samples") / "resnet18.onnx")


@pytest.mark.parametrize("prog", [main, coexec_main])
def test_version(prog, capsys):
    with pytest.raises(SystemExit) as e:
        prog(["--version"])
    assert e.value.code == 0 and "0.1.0" in capsys.readouterr().out


def test_android_harness_version():
    r = subprocess.run([sys.executable, "-m", "android_harness.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("android-harness ")


@pytest.mark.parametrize("wrong,hint", [("pixel4", "pixel4/"), ("Pixel4/tflite-gpu", "did you mean pixel4/tflite-gpu?"),
                                        ("pixel4/tflite-gpuu", "pixel4/tflite-gpu")])
def test_an_unknown_profile_gets_one_short_line_with_the_closest_ids(wrong, hint, capsys):
    assert main(["predict", MV2, "--profile", wrong]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and hint in err and len(err) < 300


def test_profiles_filters_header_and_json(capsys):
    assert main(["profiles", "--device", "pixel4", "--processor", "gpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("id\t") and {ln.split("\t")[0] for ln in lines[1:]} == {"pixel4/tflite-gpu",
                                                                                      "pixel4/torch-gpu"}
    assert main(["profiles", "--match", "*/tflite-cpu-1large-int8", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["id"].endswith("/tflite-cpu-1large-int8") and r["precision"] == "int8" for r in rows)
    assert main(["profiles", "--device", "nokia"]) == 2


def test_compare_table_json_and_the_fastest(tmp_path, capsys):
    assert main(["compare", MV2, R18, "--profiles", "*/tflite-gpu", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res["profiles"]) == 6 and set(res["models"]) == {MV2, R18}
    assert all(r["total_ms"] > 0 and r["complete"] for m in res["models"].values() for r in m.values())
    assert main(["compare", MV2, "--profiles", "pixel4/*-gpu"]) == 0
    out = capsys.readouterr().out
    assert "pixel4/tflite-gpu" in out and "pixel4/torch-gpu" in out and "fastest for mobilenetv2_w1.onnx" in out
    deit = str(zoo_dir("vit_zoo") / "deit-tiny-distilled-patch16-224.onnx")
    assert main(["compare", deit, "--profiles", "pixel4/tflite-cpu-1large*", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)["models"][deit]
    assert "refused" in res["pixel4/tflite-cpu-1large"] and res["pixel4/tflite-cpu-1large-vit"]["complete"]


def test_piped_table_does_not_wrap_and_csv(capsys):
    r = subprocess.run([sys.executable, "-m", "oplat.cli", "predict", MV2, "--profile", "pixel4/tflite-gpu"],
                       capture_output=True, text=True, env=dict(os.environ, COLUMNS="80"))
    rows = [ln for ln in r.stdout.splitlines() if ln.startswith("│")]
    assert r.returncode == 0 and len(rows) == 55  # one line per kernel, none wrapped
    assert main(["predict", MV2, "--profile", "pixel4/tflite-gpu", "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("index,name,kernel") and len(lines) == 56


def test_output_spelling_is_one_vocabulary(tmp_path):
    out = tmp_path / "a.onnx"
    assert main(["zoo", "build", "resnet10", "--graph-only", "--output", str(out)]) == 0 and out.is_file()
    out2 = tmp_path / "b.tflite"
    assert main(["convert", MV2, "--output", str(out2)]) == 0 and out2.is_file()
