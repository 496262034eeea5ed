"""Few-shot calibration: measurements CSV, methods, CLI contract and bad input."""

import json
from pathlib import Path

import numpy as np
import pytest

from oplat.calibrate import (CalibrationError, blend_library, calibrate_profile, design_points, read_measurements,
                             spearman)
from oplat.cli import main
from oplat.onnx_loader import load_onnx
from oplat.profile import load_profile
from oplat.zoo import zoo_dir

ZOO = zoo_dir("cnn_zoo")
MODELS = ["resnet10", "resnet18_wd2", "mobilenet_wd2", "mobilenetv2_wd2", "squeezenet_v1_1", "regnetx002",
          "mnasnet_b1", "fdmobilenet_wd2", "seresnet10", "mobilenetv3_small_w1", "ghostnet", "preresnet10"]


@pytest.fixture(scope="module")
def base():
    return load_profile("pixel4/tflite-cpu-1large")


@pytest.fixture(scope="module")
def graphs():
    return [load_onnx(ZOO / f"{m}.onnx") for m in MODELS]


def _phone(base, graphs):
    """A synthetic new phone: depthwise convs 2.5x slower, everything else 1.6x, +1 ms."""
    res = base.predict_many(graphs)
    out = []
    for r in res:
        dw = r.key_sums.get("DEPTHWISE_CONV_2D", 0.0) + r.key_sums.get("DW_S2", 0.0)
        out.append(2.5 * dw + 1.6 * (r.total_ms - dw) + 1.0)
    return np.array(out)


def test_per_key_calibration_learns_a_phone_with_different_kernel_speeds(base, graphs):
    y = _phone(base, graphs)
    prof, rep = calibrate_profile(base, graphs[:8], y[:8])
    pred = np.array([r.total_ms for r in prof.predict_many(graphs[8:])])
    err = np.abs(pred - y[8:]) / y[8:]
    assert rep["method"].startswith("per-key")
    assert err.max() < 0.05, err
    assert rep["factors"]["DEPTHWISE_CONV_2D"] > rep["factors"]["CONV_2D"]
    # per-op predictions move with the total: the calibrated per-op sum is the new total less the fixed cost
    r = prof.predict(graphs[9])
    assert r.total_ms == pytest.approx(sum(o.predicted_ms for o in r.ops) + r.overhead_ms, rel=1e-6)


def test_scale_calibration_is_exact_for_a_uniformly_slower_phone(base, graphs):
    y = np.array([2.0 * r.total_ms for r in base.predict_many(graphs)])
    prof, rep = calibrate_profile(base, graphs[:5], y[:5], method="scale")
    pred = np.array([r.total_ms for r in prof.predict_many(graphs[5:])])
    np.testing.assert_allclose(pred, y[5:], rtol=1e-3)
    assert spearman(pred, y[5:]) == pytest.approx(1.0)


def test_blend_recovers_a_phone_that_mixes_two_others_and_round_trips(base, graphs, tmp_path):
    other = load_profile("s10/tflite-cpu-1large")
    a = np.array([r.total_ms for r in base.predict_many(graphs)])
    b = np.array([r.total_ms for r in other.predict_many(graphs)])
    y = 0.7 * a + 0.5 * b + 2.0
    library = blend_library(base, exclude_devices=["mi8se"])
    ids = [p.id for p in library]
    assert ids[0] == base.id and "s10/tflite-cpu-1large" in ids
    assert not any(i.startswith("mi8se/") or i.endswith("-int8") or i.endswith("-vit") for i in ids)
    prof, rep = calibrate_profile(base, graphs[:8], y[:8], library=library, method="blend")
    assert rep["method"] == "blend"
    # it is a new phone now: not the base's phone facts or held-out accuracy
    assert prof.meta["accuracy"]["method"].startswith("leave-one-out over the calibration")
    assert prof.meta["phone"] == f"calibrated from {base.id}" and "soc" not in prof.meta
    pred = np.array([r.total_ms for r in prof.predict_many(graphs[8:])])
    np.testing.assert_allclose(pred, y[8:], rtol=0.03)
    # kernels carry the blend: per-op sum plus the fixed cost is the total
    r = prof.predict(graphs[9])
    assert r.total_ms == pytest.approx(sum(o.predicted_ms for o in r.ops) + r.overhead_ms, rel=1e-6)
    again = load_profile(prof.save(tmp_path / "blend"))
    np.testing.assert_allclose([x.total_ms for x in again.predict_many(graphs[8:])], pred, rtol=1e-9)
    assert not list((tmp_path / "blend").glob("*.pkl"))
    with pytest.raises(CalibrationError, match="itself a calibrated blend"):
        calibrate_profile(again, graphs[:8], y[:8], method="scale")


def _csv(tmp_path, rows):
    p = tmp_path / "m.csv"
    p.write_text("model,latency_ms\n" + "".join(f"{m},{v}\n" for m, v in rows))
    return p


def test_cli_calibrates_then_predicts_and_refuses_to_overwrite(tmp_path, capsys, base, graphs):
    y = _phone(base, graphs)
    rows = [(str(ZOO / f"{m}.onnx"), f"{v:.4f}") for m, v in zip(MODELS[:10], y[:10])]
    csv_path = _csv(tmp_path, rows)
    out = tmp_path / "myphone" / "tflite-cpu"
    assert main(["calibrate", "--base", "pixel4/tflite-cpu-1large", "--measurements", str(csv_path),
                 "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["predict", str(ZOO / "ghostnet.onnx"), "--profile", str(out), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["total_ms"]
    assert got == pytest.approx(y[MODELS.index("ghostnet")], rel=0.08)
    assert main(["calibrate", "--base", "pixel4/tflite-cpu-1large", "--measurements", str(csv_path),
                 "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err


def test_relative_model_paths_resolve_against_the_csv_folder(tmp_path):
    (tmp_path / "m").mkdir()
    for m in MODELS[:3]:
        (tmp_path / "m" / f"{m}.onnx").write_bytes((ZOO / f"{m}.onnx").read_bytes())
    rows = read_measurements(_csv(tmp_path, [(f"m/{m}.onnx", 5.0) for m in MODELS[:3]]))
    assert [r.model.name for r in rows] == [f"{m}.onnx" for m in MODELS[:3]]


@pytest.mark.parametrize("rows, needle", [
    ([("resnet10", "1"), ("resnet18_wd2", "2")], "at least 3"),
    ([("resnet10", "1"), ("resnet18_wd2", "-2"), ("regnetx002", "3")], ":3: latency_ms '-2'"),
    ([("resnet10", "1"), ("resnet18_wd2", "fast"), ("regnetx002", "3")], ":3: latency_ms 'fast' is not a number"),
    ([("resnet10", "1"), ("nope", "2"), ("regnetx002", "3")], ":3: model file not found"),
])
def test_bad_measurements_name_the_row(tmp_path, capsys, rows, needle):
    rows = [(m if m == "nope" else str(ZOO / f"{m}.onnx"), v) for m, v in rows]
    p = _csv(tmp_path, rows)
    with pytest.raises(CalibrationError, match=needle.replace("'", ".")):
        read_measurements(p)
    assert main(["calibrate", "--base", "pixel4/tflite-cpu-1large", "--measurements", str(p),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_design_points_pick_the_models_the_members_disagree_on():
    rng = np.random.default_rng(0)
    speed = np.array([1.0, 1.7, 2.3, 3.1])  # four member phones
    work = rng.uniform(5, 50, 40)
    x = np.outer(work, speed)  # members agree on 36 models up to their speed...
    odd = [7, 19, 28, 33]
    x[odd] *= rng.uniform(0.5, 2.0, (len(odd), len(speed)))  # ...and disagree on four
    chosen = design_points(x, 4)
    assert len(set(chosen)) == 4
    assert len(set(chosen) & set(odd)) >= 2, chosen
    assert design_points(x, 4) == chosen  # deterministic


def test_cli_suggest_writes_a_template_that_calibrate_reads_once_filled(tmp_path, capsys, base, graphs):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    for m in MODELS:
        (zoo / f"{m}.onnx").symlink_to(ZOO / f"{m}.onnx")
    tpl = tmp_path / "phone" / "m.csv"
    assert main(["suggest", "--base", "pixel4/tflite-cpu-1large", "-k", "5", "--models", str(zoo),
                 "--csv", str(tpl), "--exclude-devices", "pixel4"]) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == len(set(printed)) == 5 and all(Path(p).parent == zoo for p in printed)
    assert main(["calibrate", "--base", "pixel4/tflite-cpu-1large", "--measurements", str(tpl),
                 "--out", str(tmp_path / "out")]) == 2
    assert "m.csv:2: latency_ms '' is not a number" in capsys.readouterr().err
    y = dict(zip(MODELS, _phone(base, graphs)))
    rows = tpl.read_text().splitlines()
    filled = [rows[0]] + [f"{r}{y[Path(r.rstrip(',')).stem]:.4f}" for r in rows[1:]]
    tpl.write_text("\n".join(filled) + "\n")
    assert main(["calibrate", "--base", "pixel4/tflite-cpu-1large", "--measurements", str(tpl),
                 "--out", str(tmp_path / "out")]) == 0
    assert main(["suggest", "--base", "pixel4/tflite-cpu-1large", "-k", "50", "--models", str(zoo)]) == 2
    assert "50 models asked for, 12 candidates" in capsys.readouterr().err
    # only models the base predicts under a budget: the fastest five are all that is left
    fast = sorted(MODELS, key=lambda m: base.predict(graphs[MODELS.index(m)]).total_ms)[:5]
    limit = base.predict(graphs[MODELS.index(fast[-1])]).total_ms
    assert main(["suggest", "--base", "pixel4/tflite-cpu-1large", "-k", "5", "--models", str(zoo),
                 "--max-ms", f"{limit + 1e-6}"]) == 0
    assert sorted(Path(p).stem for p in capsys.readouterr().out.split()) == sorted(fast)
    assert main(["suggest", "--base", "pixel4/tflite-cpu-1large", "-k", "6", "--models", str(zoo),
                 "--max-ms", f"{limit + 1e-6}"]) == 2
    assert "5 candidates predicted under" in capsys.readouterr().err
    assert main(["suggest", "--base", "pixel4/tflite-gpu", "--models", str(zoo)]) == 2
    assert "no other profile can blend with it" in capsys.readouterr().err


def test_the_default_leaves_the_blend_only_for_a_clearly_better_per_family_fit():
    from oplat.calibrate import auto_method

    assert auto_method(0.05, {"scale": 0.2, "per-key": 0.03}) == "blend"
    assert auto_method(0.30, {"scale": 0.2, "per-key": 0.05}) == "per-key"
    assert auto_method(None, {"scale": 0.2, "per-key": float("nan")}) == "scale"
