"""Search spaces: architecture strings to IR and ONNX, the batch path, `oplat predict --space`."""

import json
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from oplat.cli import main
from oplat.graph_only import is_graph_only
from oplat.lowering import lower
from oplat.onnx_loader import load_onnx
from oplat.profile import load_profile
from oplat.spaces import SearchSpace, get_space, list_spaces, register_space
from oplat.spaces import mbconv
from oplat.spaces.nb201 import nb201_model, parse_arch, random_arch
from oplat.sweep import predict_space, read_archs

ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"
# profiles of every lowering backend: GPU delegate, CPU (XNNPACK), PyTorch GPU, onnxruntime
PROFILES = ["pixel4/tflite-gpu", "pixel4/tflite-cpu-1large", "s10/torch-gpu", "host/ort-cpu-1t"]
EDGE_ARCHS = ["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
              "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
              "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
              "|avg_pool_3x3~0|+|none~0|none~1|+|none~0|none~1|nor_conv_1x1~2|"]


def test_nb201_parse():
    cell = parse_arch(ARCH)
    assert cell[2] == [("avg_pool_3x3", 0), ("none", 1), ("nor_conv_3x3", 2)]
    for bad in ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "|none~0|", "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|"):
        with pytest.raises(ValueError):
            parse_arch(bad)


def test_nb201_model_is_valid_and_runs():
    m = nb201_model(ARCH)
    onnx.checker.check_model(m)
    out = ort.InferenceSession(m.SerializeToString()).run(None, {"input": np.ones((1, 3, 32, 32), np.float32)})[0]
    assert out.shape == (1, 10) and np.isfinite(out).all()


def test_nb201_graph_only_lowers():
    m = nb201_model(random_arch(np.random.default_rng(3)), graph_only=True)
    assert is_graph_only(m)
    lm = lower(load_onnx(m), "tflite-gpu", "adreno")
    assert lm.unsupported == []
    assert sum(1 for k in lm.rows if k.type == "CONV_2D") >= 3  # stem + reductions at least


def test_space_onnx_is_the_zoo_model():
    assert get_space("nb201").onnx(ARCH, graph_only=False).SerializeToString() == nb201_model(ARCH).SerializeToString()
    assert {"nb201", "mbconv", "mbconv-cifar"} <= set(list_spaces())


def _ir(g):
    ops = [(o.name, o.type, o.inputs, o.outputs, o.attrs, o.folded) for o in g.ops()]
    tensors = {k: (t.shape, t.dtype, t.const, None if t.value is None else t.value.shape) for k, t in g.tensors.items()}
    return g.name, g.inputs, g.outputs, ops, tensors


@pytest.mark.parametrize("space", ["nb201", "mbconv", "mbconv-cifar"])
def test_direct_ir_equals_the_loaded_onnx(space):
    """The graph built with no ONNX in between is the one the loader makes of the file:
    names, attributes, shapes, which constants carry values, and the values of those that
    are not random weights."""
    sp = get_space(space)
    rng = np.random.default_rng(7)
    for arch in [sp.sample(rng) for _ in range(4)] + (EDGE_ARCHS if space == "nb201" else []):
        direct, loaded = sp.graph(arch), load_onnx(sp.onnx(arch))
        assert _ir(direct) == _ir(loaded), arch
        for name, t in loaded.tensors.items():
            if t.value is not None and not name.startswith("w_"):
                assert np.array_equal(t.value, direct.tensors[name].value), name


@pytest.mark.parametrize("space", ["mbconv", "mbconv-cifar"])
def test_mbconv_networks_run(space):
    sp = get_space(space)
    arch = "-".join(["k3e1"] + ["k5e6g2", "skip", "k3e3", "k5e1g2"] * 5 + ["k3e6"])
    m = sp.onnx(arch, graph_only=False)
    onnx.checker.check_model(m)
    shape = sp.input_shape
    out = ort.InferenceSession(m.SerializeToString()).run(None, {"input": np.ones(shape, np.float32)})[0]
    assert out.shape == (1, 1000 if space == "mbconv" else 10) and np.isfinite(out).all()
    g = sp.graph(arch)
    assert sum(1 for o in g.ops() if o.type == "Transpose") == 5  # a channel shuffle per expanded g2 block


def test_mbconv_rejects_bad_layers():
    good = ["k3e1"] * mbconv.LAYERS
    for i, tok, why in ((3, "k7e6", "kernel"), (3, "k3e4", "expansion"), (3, "k3e6g4", "groups"),
                        (1, "skip", "cannot be skipped"), (3, "conv", "expected")):
        bad = list(good)
        bad[i] = tok
        with pytest.raises(ValueError, match=why):
            mbconv.parse_arch("-".join(bad))
    with pytest.raises(ValueError, match="22 layers"):
        mbconv.parse_arch("-".join(good[:-1]))


@pytest.mark.parametrize("profile_id", PROFILES)
def test_fast_path_equals_the_per_model_path(profile_id):
    """Scores from architecture strings equal predicting each network's ONNX file (with
    its weights, as `oplat zoo build` writes it), kernel by kernel."""
    prof = load_profile(profile_id)
    rng = np.random.default_rng(11)
    for space in ("nb201", "mbconv-cifar"):
        sp = get_space(space)
        archs = [sp.sample(rng) for _ in range(6)] + (EDGE_ARCHS if space == "nb201" else [])
        fast = list(predict_space(prof, sp, archs, chunk=4))
        assert [r["arch"] for r in fast] == archs
        prof._cache.clear()
        for arch, r in zip(archs, fast):
            ref = prof.predict(load_onnx(sp.onnx(arch, graph_only=False)))
            assert r["total_ms"] == ref.total_ms and r["ops_ms"] == ref.ops_ms, (space, arch)
            assert r["complete"] == ref.complete and r["kernels"] == len(ref.ops)


def _scale_space():
    """A user's own space: a plain conv stack whose encoding is the widths, '16,32,64'."""
    def parse(enc):
        widths = [int(w) for w in enc.split(",")]
        if not widths or any(w <= 0 or w > 1024 for w in widths):
            raise ValueError(f"bad widths {enc!r}")
        return widths

    def network(b, widths):
        x = "input"
        for w in widths:
            x = b.conv_bn_act(x, w, 3, 1)
        return b.classifier(x, 10)

    return SearchSpace("widths-test", (1, 3, 32, 32), parse, network,
                       lambda rng: ",".join(str(int(w)) for w in rng.choice([16, 32, 64], 3)), "conv stack")


def widths_space():  # for get_space("module:attr")
    return _scale_space()


def test_a_users_own_space(monkeypatch):
    sp = register_space(_scale_space(), replace=True)
    assert get_space("widths-test") is sp
    by_path = get_space(f"{__name__}:widths_space")
    assert by_path.name == "widths-test"
    prof = load_profile("pixel4/tflite-gpu")
    small, big = list(predict_space(prof, "widths-test", ["16,16", "64,128,256"]))
    assert 0 < small["total_ms"] < big["total_ms"] and small["complete"]
    with pytest.raises(ValueError, match="architecture 2: bad widths"):
        list(predict_space(prof, sp, ["16", "0"]))
    with pytest.raises(KeyError, match="unknown search space"):
        get_space("no-such-space")


def test_executors_give_the_same_lines():
    """A process pool (spawned workers) and any Executor give the in-process results, in order."""
    rng = np.random.default_rng(5)
    sp = get_space("nb201")
    archs = [sp.sample(rng) for _ in range(30)]
    one = list(predict_space("pixel4/tflite-gpu", "nb201", archs))
    with ThreadPoolExecutor(2) as ex:
        threaded = list(predict_space("pixel4/tflite-gpu", "nb201", archs, chunk=7, executor=ex))
    pooled = list(predict_space("pixel4/tflite-gpu", "nb201", archs, jobs=2))
    assert threaded == one and pooled == one


def test_cli_contract_json_lines_in_input_order(tmp_path, capsys):
    """`oplat predict --space nb201 --archs FILE --profile ID --json-lines`: one object per
    line in input order with `arch` and `total_ms`, the same total as `oplat zoo build`
    followed by `oplat predict` of the file."""
    rng = np.random.default_rng(2)
    archs = [random_arch(rng) for _ in range(5)] + [EDGE_ARCHS[0]]
    f = tmp_path / "archs.txt"
    f.write_text("# a comment\n" + "\n".join(archs) + "\n\n")
    assert read_archs(f.read_text().splitlines()) == archs
    assert main(["predict", "--space", "nb201", "--archs", str(f), "--profile", "pixel4/tflite-gpu",
                 "--json-lines"]) == 0
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert [r["arch"] for r in lines] == archs
    for i in (0, 5):
        onnx_path = tmp_path / f"n{i}.onnx"
        assert main(["zoo", "build", f"nb201:{archs[i]}", "-o", str(onnx_path)]) == 0
        capsys.readouterr()
        assert main(["predict", str(onnx_path), "--profile", "pixel4/tflite-gpu", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["total_ms"] == lines[i]["total_ms"]


def test_cli_refuses_bad_space_input(tmp_path, capsys):
    f = tmp_path / "archs.txt"
    f.write_text(ARCH + "\n|nor_conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|\n")
    base = ["predict", "--profile", "pixel4/tflite-gpu", "--json-lines"]
    assert main(base + ["--space", "nb201", "--archs", str(f)]) == 2
    err = capsys.readouterr()
    assert "architecture 2: bad NAS-Bench-201 edge" in err.err and err.out == ""
    assert main(base + ["--space", "nb999", "--archs", str(f)]) == 2
    assert "unknown search space" in capsys.readouterr().err
    assert main(base + ["--space", "no_such_module_here:space", "--archs", str(f)]) == 2
    assert "cannot import search space" in capsys.readouterr().err
    assert main(base + ["--space", "nb201"]) == 2
    assert "--archs" in capsys.readouterr().err
    assert main(base + ["--space", "nb201", "--archs", str(tmp_path)]) == 2
    assert "folder" in capsys.readouterr().err


def test_cli_many_model_files(tmp_path, capsys):
    """A folder of models: a line per file in name order; a broken file gets an error line,
    the others are still predicted, and the exit code says something failed."""
    for i, arch in enumerate(EDGE_ARCHS[:2]):
        (tmp_path / f"m{i}.onnx").write_bytes(nb201_model(arch, graph_only=True).SerializeToString())
    (tmp_path / "m2.onnx").write_bytes(b"not onnx")
    assert main(["predict", str(tmp_path), "--profile", "pixel4/tflite-gpu", "--json-lines"]) == 2
    out = capsys.readouterr()
    lines = [json.loads(ln) for ln in out.out.splitlines()]
    assert [r["model"].rsplit("/", 1)[-1] for r in lines] == ["m0.onnx", "m1.onnx", "m2.onnx"]
    assert lines[0]["total_ms"] > 0 and "error" in lines[2] and "corrupt or truncated" in out.err
    assert main(["predict", str(tmp_path / "m0.onnx"), str(tmp_path / "m1.onnx"), "--profile",
                 "pixel4/tflite-gpu"]) == 0
    assert "2 models on pixel4/tflite-gpu" in capsys.readouterr().out


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def test_suggest_from_a_space_writes_networks_to_measure_and_calibrates(tmp_path, capsys):
    """`oplat suggest --space`: k architectures of the space, their ONNX files beside the
    CSV template; the filled template calibrates like any other."""
    csv_path = tmp_path / "nb.csv"
    args = ["suggest", "--base", "pixel4/tflite-cpu-1large", "--space", "nb201", "--candidates", "40", "-k", "6",
            "--csv", str(csv_path)]
    assert main(args) == 0
    archs = capsys.readouterr().out.split()
    assert len(archs) == 6 and all(parse_arch(a) for a in archs)
    folder = tmp_path / "nb.csv.models"
    assert sorted(f.name for f in folder.iterdir()) == ["archs.txt"] + [f"nb201_{i:02d}.onnx" for i in range(6)]
    assert main(args) == 2  # the CSV and the folder exist: only --force touches them
    capsys.readouterr()
    prof = load_profile("pixel4/tflite-gpu")  # a stand-in "new device": another profile's numbers x 3
    rows = [ln.split(",")[0] for ln in csv_path.read_text().splitlines()[1:]]
    ms = [3 * prof.predict(load_onnx(tmp_path / r)).total_ms for r in rows]
    csv_path.write_text("model,latency_ms\n" + "".join(f"{r},{m}\n" for r, m in zip(rows, ms)))
    assert main(["calibrate", "--base", "pixel4/tflite-cpu-1large", "--measurements", str(csv_path), "--out",
                 str(tmp_path / "cal"), "--method", "per-key"]) == 0
    assert (tmp_path / "cal" / "profile.json").is_file()
