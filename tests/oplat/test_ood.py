"""Kernels outside what the features describe: priced by a stand-in, flagged, refused under --strict."""

import json

import pytest

from oplat.cli import main
from oplat.onnx_loader import load_onnx
from oplat.ood import describe, stand_in
from oplat.policy import PredictionRefused, judge
from oplat.profile import load_profile
from oplat.zoo.builder import OnnxBuilder


def inception_like(c=192, h=35):
    b = OnnxBuilder("inception_like", (1, c, h, h))
    x = b.conv("input", c, (1, 7), bias=False)
    x = b.conv(x, c, (7, 1), bias=False)
    x = b.conv(x, c, (7, 7), bias=False)
    x = b.conv(x, c, (3, 1), bias=False)
    return b.model(b.conv(x, c, (3, 3), bias=False), graph_only=True)


def test_stand_in_is_the_square_conv_scaled_by_its_taps():
    p = {"Kernel": 1, "Kernel_w": 7, "FLOPS": 700, "Input_shape": 17}
    impl, q, f = stand_in("CONV_2D", "winograd", p)
    assert (impl, q["Kernel"], q["Kernel_w"], q["FLOPS"], f) == ("convolution_2d", 7, 7, 4900, 1 / 7)
    assert p["Kernel_w"] == 7  # the caller's params are left alone
    assert stand_in("CONV_2D", "convolution_2d", {"Kernel": 3, "Kernel_w": 3}) is None
    assert stand_in("MAX_POOL_2D", "pooling", {"Kernel": 1, "Kernel_w": 3}) is None
    assert "1x7" in describe("CONV_2D", p)


@pytest.mark.parametrize("pid", ["pixel4/tflite-gpu", "s10/tflite-gpu", "pixel4/tflite-cpu-1large", "host/ort-cpu-1t"])
def test_non_square_convs_run_at_the_square_convs_flop_rate_and_are_flagged(pid):
    prof = load_profile(pid)
    g = load_onnx(inception_like())
    res = prof.predict(g)
    convs = {(o.params["Kernel"], o.params["Kernel_w"]): o for o in res.ops if o.kernel == "CONV_2D"}
    rate = {k: o.params["FLOPS"] / o.predicted_ms for k, o in convs.items()}
    assert rate[(1, 7)] == pytest.approx(rate[(7, 7)], rel=1e-6)
    assert rate[(7, 1)] == pytest.approx(rate[(7, 7)], rel=1e-6)
    assert convs[(3, 1)].impl != "winograd"  # Winograd takes 3x3 only
    if pid == "s10/tflite-gpu":  # Mali: the 3x3 conv of the same shapes does run as Winograd
        assert convs[(3, 3)].impl == "winograd"
    notes = [o.note or "" for o in res.ops if o.kernel == "CONV_2D"]
    assert [n.startswith("non-square") for n in notes] == [True, True, False, True, False]
    assert res.coverage["approximated_ops"] >= 3 and res.complete  # a 7x7 may be beyond the trained kernels too
    warnings = judge(res, g, prof)
    assert any("outside what" in w and "1x7" in w for w in warnings)
    with pytest.raises(PredictionRefused, match="--strict"):
        judge(res, g, prof, strict=True)


def test_square_models_are_not_flagged():
    prof = load_profile("pixel4/tflite-gpu")
    res = prof.predict("oplat/zoo/samples/resnet18.onnx")
    assert not res.approximated and "approximated_ops" not in res.coverage


def test_cli_flags_and_strict_refuses(tmp_path, capsys):
    f = tmp_path / "inc.onnx"
    f.write_bytes(inception_like().SerializeToString())
    assert main(["predict", str(f), "--profile", "pixel4/tflite-gpu", "--json"]) == 0
    out = capsys.readouterr()
    d = json.loads(out.out)
    assert d["coverage"]["approximated_ops"] == 3 and "non-square" in out.err  # pixel4's GPU saw 7x7 convs
    assert sum(1 for o in d["ops"] if "note" in o) == 3
    assert main(["predict", str(f), "--profile", "pixel4/tflite-gpu", "--strict"]) == 2
    assert "refused under --strict" in capsys.readouterr().err


def test_many_models_count_the_approximated_ones(tmp_path, capsys):
    (tmp_path / "inc.onnx").write_bytes(inception_like().SerializeToString())
    base = ["predict", str(tmp_path), "--profile", "pixel4/tflite-gpu", "--json-lines"]
    assert main(base) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["coverage"]["approximated_ops"] == 3 and "outside what" in out.err
    assert main(base + ["--strict"]) == 2


def test_trained_ranges_and_what_lies_outside_them():
    from oplat.ood import out_of_range, trained_ranges

    r = trained_ranges([("CONV_2D", {"Input_channel": 16, "Filter": 32}), ("CONV_2D", {"Input_channel": 512}),
                        (None, {"Input_channel": 9999})])
    assert r == {"CONV_2D": {"Input_channel": [16.0, 512.0], "Filter": [32.0, 32.0]}}
    assert out_of_range(r["CONV_2D"], {"Input_channel": 700}) is None  # within the slack
    assert "above the 512" in out_of_range(r["CONV_2D"], {"Input_channel": 4096})
    assert "below the 16" in out_of_range(r["CONV_2D"], {"Input_channel": 8})
    assert out_of_range(None, {"Input_channel": 4096}) is None


def test_every_shipped_phone_profile_knows_its_trained_ranges():
    import json

    from oplat.profile import list_profiles

    for pid, folder in list_profiles():
        meta = json.loads((folder / "profile.json").read_text())
        if meta.get("lowering") != "ort-cpu" and not pid.startswith("host/"):
            assert meta.get("trained_ranges", {}).get("CONV_2D"), pid


def test_a_kernel_beyond_the_trained_range_is_flagged_and_refused_under_strict():
    b = OnnxBuilder("wide", (1, 8192, 7, 7))
    g = load_onnx(b.model(b.conv("input", 8192, (1, 1), bias=False), graph_only=True))
    prof = load_profile("pixel4/tflite-gpu")
    res = prof.predict(g)
    assert res.approximated and "8192 above the 2048" in res.approximated[0].note
    assert any("beyond the trained ranges" in w for w in judge(res, g, prof))
    with pytest.raises(PredictionRefused):
        judge(res, g, prof, strict=True)


def test_a_batch_is_priced_as_its_images_one_after_the_other():
    from oplat.lowering import lower
    from oplat.ood import stand_in
    from oplat.zoo import build

    m = build("resnet18", graph_only=True)
    one = lower(load_onnx(m), "ort-cpu", "nchwc16")
    four = lower(load_onnx(m, {"input": (4, 3, 224, 224)}), "ort-cpu", "nchwc16")
    assert not any("Images" in k.params for k in one.kernels)  # batch-1 kernels are as before
    convs = [k for k in four.kernels if k.type == "CONV_2D"]
    assert convs and all(k.params["Images"] == 4 for k in convs)
    impl, p, f = stand_in("CONV_2D", "igemm", {"Images": 4, "Input_shape": 56, "Output_shape": 28, "Input_w": 56,
                                               "FLOPS": 100, "Kernel": 3, "Kernel_w": 3})
    assert (p["Input_shape"], p["Output_shape"], p["Input_w"], p["FLOPS"], f) == (56, 28, 56, 100, 4.0)
    assert "Images" not in p
    _, p, f = stand_in("CONV_2D", "igemm", {"Images": 2, "Kernel": 1, "Kernel_w": 7, "FLOPS": 7})
    assert (p["Kernel"], p["Kernel_w"], f) == (7, 7, 2 / 7)  # both stand-ins at once
    # a batched matmul's Batch is its number of matrices, already in its features
    assert stand_in("BATCH_MATMUL", "batch_matmul", {"Batch": 12, "M": 197, "K": 64, "N": 197}) is None
    prof = load_profile("host/ort-cpu-1t")
    t1, t4 = prof.predict(one).total_ms, prof.predict(four).total_ms
    assert 3.0 * t1 < t4 < 4.5 * t1
