"""`oplat profile-device`: from nothing measured to a profile with its held-out accuracy in
its metadata, within a budget, resumable (a tiny budget and small model sets here)."""

from __future__ import annotations

import json

from oplat.cli import main
from oplat.collect.backends import make_backend
from oplat.collect.device import informative_order, profile_device
from oplat.profile import load_profile


def test_profile_device_end_to_end_and_resume(tmp_path, capsys):
    backend = make_backend("ort-cpu", threads=1)
    prof, rep = profile_device(backend, tmp_path, budget_s=20, fit_limit=9, test_limit=3)
    folder = tmp_path / "host" / "ort-cpu-1t"
    assert (folder / "profile.json").is_file() and rep["folder"] == str(folder)
    meta = json.loads((folder / "profile.json").read_text())
    acc = meta["accuracy"]["end_to_end"]
    assert acc["n"] == 3 and 0 < acc["mape"] < 1.0 and rep["per_op_rows"] > 0 and rep["fit_models"] >= 5
    # kernels timed inside the fitting models too, from onnxruntime's profiler
    assert rep["in_model_rows"] > 0 and rep["in_model_models"] >= 1
    assert meta["overhead"]["coef"] is not None  # an end-to-end term, fitted on whole models
    spent = rep["spent_s"]
    # the same call again resumes: nothing measured twice, time already spent counts
    work = tmp_path / ".oplat-profile-device" / "ort-cpu-1t"
    rows_before = {f.name: len(f.read_text().splitlines()) for f in work.glob("*.csv") if f.name != "ops.csv"}
    _, rep2 = profile_device(backend, tmp_path, budget_s=20, fit_limit=9, test_limit=3)
    assert rep2["spent_s"] >= spent
    assert {f.name: len(f.read_text().splitlines()) for f in work.glob("*.csv") if f.name != "ops.csv"} == rows_before
    assert "in_model.csv" in rows_before
    # the folder is a profile the CLI uses: a prediction, or (with the few per-op rows of a
    # 20 s budget) a refusal for the kernels it has no regressor for yet
    code = main(["predict", "oplat/zoo/samples/mobilenetv2_w1.onnx", "--profile", str(folder), "--json"])
    out, err = capsys.readouterr()
    assert (code == 0 and json.loads(out)["total_ms"] > 0) or (code == 2 and "of this model's FLOPs" in err)
    assert load_profile(folder).id == "host/ort-cpu-1t"


def test_informative_order_covers_families_first():
    names = ["resnet18", "resnet34", "resnet50", "mobilenet_w1", "mobilenet_wd2", "densenet121"]
    order = informative_order(names)
    assert sorted(order) == sorted(names)
    assert {n.rstrip("0123456789") for n in order[:3]} == {"resnet", "mobilenet_w", "densenet"} or \
        len({n[:5] for n in order[:3]}) == 3
