import json

import numpy as np
import pytest

from oplat.datasets import load_phone_e2e, load_phone_gpu_ops
from oplat.errors import ProfileError
from oplat.fitting import error_metrics, group_folds, nnls
from oplat.features import KEYS, feature_vector, predictor_key
from oplat.overhead import fit_overhead
from oplat.profile import Profile, load_profile
from oplat.train import ProfileTrainer, load_graphs
from conftest import needs_shared
from oplat.zoo import zoo_dir


def test_predictor_keys():
    assert predictor_key("CONV_2D", "fully_connected") == "FULLY_CONNECTED"
    assert predictor_key("AVERAGE_POOL_2D", "mean") == "MEAN"
    assert predictor_key("MAX_POOL_2D", "pooling_2d") == "POOL_2D"
    assert predictor_key("CONV_2D", "winograd") == "CONV_2D"
    assert predictor_key("RELU", "relu") is None
    from oplat.features import GLUE_KEYS

    assert predictor_key("ADD", "add") == "ADD" and "ADD" in GLUE_KEYS  # predicted only where measured


def test_features_see_winograd_and_links():
    p = {"Input_shape": 56, "Input_channel": 64, "Output_shape": 56, "Stride": 1, "Kernel": 3,
         "Filter": 64, "Group": 1}
    a = feature_vector("CONV_2D", "CONV_2D", "convolution_2d", p, [])
    b = feature_vector("CONV_2D", "CONV_2D", "winograd", p, ["add", "relu"])
    assert len(a) == len(b) and a != b
    for key in KEYS:
        assert all(np.isfinite(feature_vector(key, "CONV_2D", "x", dict(p, Input_w=56), [])))


def test_nnls_is_non_negative_and_exact_when_feasible():
    rng = np.random.default_rng(0)
    a = rng.random((50, 4))
    x_true = np.array([1.0, 0.0, 2.0, 0.5])
    x = nnls(a, a @ x_true)
    assert np.allclose(x, x_true, atol=1e-6)
    x = nnls(a, -(a @ x_true))
    assert (x >= 0).all()


def conv_overhead_features(seed: int, sums: tuple[float, float], counts: tuple[int, int]):
    """60 feature rows with only the CONV_2D sum, the constant and the CONV_2D count set."""
    from oplat.overhead import OVERHEAD_FEATURES

    rng = np.random.default_rng(seed)
    idx = (0, OVERHEAD_FEATURES.index("const_ms"), OVERHEAD_FEATURES.index("count:CONV_2D"))
    feats = []
    for s, n in zip(rng.uniform(*sums, 60), rng.integers(*counts, 60)):
        f = [0.0] * len(OVERHEAD_FEATURES)
        f[idx[0]], f[idx[1]], f[idx[2]] = s, 1.0, float(n)
        feats.append(f)
    return feats, idx


def test_overhead_fit_recovers_fixed_and_per_kernel_cost():
    feats, (i_sum, i_const, i_count) = conv_overhead_features(1, (1, 50), (10, 200))
    y = [f[i_sum] * 1.1 + 0.8 + 0.01 * f[i_count] for f in feats]
    c = fit_overhead(feats, y, ridge=1e-6, factor_ridge=1e-6)
    assert abs(c[i_sum] - 1.1) < 0.02 and abs(c[i_const] - 0.8) < 0.1 and abs(c[i_count] - 0.01) < 0.002
    assert (np.asarray(c[i_const:]) >= 0).all()


def test_group_folds_partition_models():
    folds = group_folds([f"m{i}" for i in range(23)] * 2, 5, seed=0)
    flat = [m for f in folds for m in f]
    assert sorted(flat) == sorted({f"m{i}" for i in range(23)}) and len(folds) == 5
    assert group_folds([f"m{i}" for i in range(23)], 5, seed=0) == folds


@pytest.fixture(scope="module")
def trained(tmp_path_factory, zoo):
    """A profile trained on a subset of the phone data, with held-out models."""
    rows = load_phone_gpu_ops(devices=["pixel4"])
    e2e = load_phone_e2e()["pixel4"]
    names = sorted({r.model for r in rows})
    held = names[::7]
    train_names = [m for m in names if m not in held][::2]
    keep = set(train_names) | set(held)
    graphs = load_graphs(zoo, sorted(keep))
    rows = [r for r in rows if r.model in keep]
    prof = ProfileTrainer(source="test").fit(rows, e2e, graphs, "pixel4", exclude_models=held)
    return prof, rows, e2e, graphs, held, tmp_path_factory.mktemp("prof")


@needs_shared
def test_held_out_accuracy_stays_above_a_floor(trained):
    prof, rows, e2e, graphs, held, _ = trained
    test = [r for r in rows if r.model in held]
    pred = prof.predict_kernels([(r.kernel, r.impl, r.params, r.linked) for r in test])
    ops = error_metrics(pred, [r.latency_ms for r in test])
    assert ops["mape"] < 0.25, ops
    e_pred = [prof.predict(graphs[m]).total_ms for m in held]
    e2e_m = error_metrics(e_pred, [e2e[m] for m in held])
    assert e2e_m["mape"] < 0.12 and e2e_m["within_10"] >= 0.6, e2e_m


@needs_shared
def test_profile_round_trip(trained, zoo):
    prof, *_, folder = trained
    prof.save(folder / "pixel4" / "tflite-gpu")
    meta = json.loads((folder / "pixel4" / "tflite-gpu" / "profile.json").read_text())
    assert meta["device"] == "pixel4" and set(meta["models"]) <= set(KEYS)
    assert not list((folder / "pixel4" / "tflite-gpu").glob("*.pkl"))
    again = load_profile(folder / "pixel4" / "tflite-gpu")
    a = prof.predict(zoo / "resnet18.onnx")
    b = again.predict(zoo / "resnet18.onnx")
    assert a.total_ms == pytest.approx(b.total_ms, rel=1e-6)
    assert [o.predicted_ms for o in a.ops] == pytest.approx([o.predicted_ms for o in b.ops], rel=1e-6)


@needs_shared
def test_batch_prediction_equals_single(trained, zoo):
    prof, *_ = trained
    paths = [zoo / "resnet18.onnx", zoo / "mobilenetv2_w1.onnx"]
    many = prof.predict_many(paths)
    assert [r.total_ms for r in many] == pytest.approx([prof.predict(p).total_ms for p in paths])


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ProfileError, match="unknown profile 'nope/tflite-gpu'"):
        Profile.load("nope/tflite-gpu")


@needs_shared
def test_vectorised_conv_features_equal_the_reference():
    from oplat.features import conv_features, feature_matrix

    rows = [r for r in load_phone_gpu_ops(devices=["s10"]) if r.kernel in ("CONV_2D", "CONV_2D_GROUP")][:400]
    items = [(r.kernel, r.impl, r.params, r.linked) for r in rows]
    ref = np.array([conv_features(p, i, l) for _, i, p, l in items], dtype=np.float32)
    assert np.allclose(feature_matrix("CONV_2D", items), ref, rtol=1e-6)


def test_overhead_factors_never_negative():
    from oplat.overhead import OVERHEAD_FEATURES

    rng = np.random.default_rng(2)
    feats = rng.uniform(0, 5, (40, len(OVERHEAD_FEATURES)))
    y = 3.0 + feats[:, 0] - 2.0 * feats[:, 4]  # a relation that would want a negative factor
    y = np.maximum(y, 0.5)
    assert (fit_overhead(feats, y) >= 0).all()


def test_package_level_api(zoo):
    import oplat

    prof = oplat.load_profile("iphonexs/tflite-gpu")
    res = prof.predict(zoo / "mobilenetv2_w1.onnx")
    assert res.total_ms > res.ops_ms > 0 and res.unsupported == []
    assert ("iphonexs/tflite-gpu", prof.path) in oplat.list_profiles()


@needs_shared
def test_vectorised_conv_baseline_equals_the_reference():
    import math

    from oplat.features import baseline_matrix, work_terms

    rows = [r for r in load_phone_gpu_ops(devices=["pixel4"]) if r.kernel in ("CONV_2D", "CONV_2D_GROUP")][:300]
    items = [(r.kernel, r.impl, r.params, r.linked) for r in rows]
    ref = np.array([[math.log1p(f), math.log1p(b), 1.0] for f, b in (work_terms("CONV_2D", k, p) for k, _, p, _ in items)])
    assert np.allclose(baseline_matrix("CONV_2D", items), ref, rtol=1e-9)


def test_signed_counts_can_subtract_a_per_kernel_cost():
    feats, (i_sum, i_const, i_count) = conv_overhead_features(4, (5, 50), (10, 100))
    y = [f[i_sum] + 0.5 - 0.02 * f[i_count] for f in feats]  # single-op timings over-count 20 us per kernel
    c = fit_overhead(feats, y, ridge=1e-8, factor_ridge=1e-8, signed_counts=True)
    assert abs(c[i_count] + 0.02) < 0.003 and abs(c[i_sum] - 1.0) < 0.02
    assert (np.delete(np.asarray(c), i_count) >= 0).all()


def test_huber_end_to_end_term_is_not_pulled_by_a_few_wrong_measurements():
    feats, (i_sum, i_const, i_count) = conv_overhead_features(6, (2, 50), (10, 100))
    y = np.array([1.2 * f[i_sum] + 0.5 + 0.01 * f[i_count] for f in feats])
    y[:5] *= 1.6  # five runs that went wrong on the phone
    l2 = fit_overhead(feats, y, ridge=1e-8, factor_ridge=1e-8)
    hub = fit_overhead(feats, y, ridge=1e-8, factor_ridge=1e-8, loss="huber")
    assert abs(hub[i_sum] - 1.2) < 0.02 and abs(hub[i_count] - 0.01) < 0.002
    assert abs(l2[i_sum] - 1.2) > 2 * abs(hub[i_sum] - 1.2)
    with pytest.raises(ValueError, match="loss"):
        fit_overhead(feats, y, loss="l1")


def test_the_end_to_end_term_is_chosen_by_cross_validation():
    from oplat.overhead import choose_e2e_term

    feats, (i_sum, i_const, i_count) = conv_overhead_features(4, (5, 50), (10, 100))
    y = [f[i_sum] + 0.5 - 0.02 * f[i_count] for f in feats]  # only a signed count term can fit this
    names = [f"m{i:02d}" for i in range(len(y))]
    best, table = choose_e2e_term(feats, y, y, names, ["l2", "huber", "signed"])
    assert best == "signed" and set(table) == {"l2", "huber", "signed"}
    assert table["signed"] < 0.5 * min(table["l2"], table["huber"])
    # models measured slower than their kernels add up: no term needs a negative count
    y2 = [f[i_sum] + 0.5 + 0.02 * f[i_count] for f in feats]
    assert choose_e2e_term(feats, y2, y2, names, ["l2"])[0] == "l2"


def test_overhead_fit_recovers_a_factor_for_an_extra_kernel_family():
    from oplat.overhead import apply_overhead, overhead_features

    names = overhead_features(["FC_TOKENS"])
    feats, (i_sum, i_const, _) = conv_overhead_features(5, (1, 20), (10, 50))
    rng = np.random.default_rng(50)  # not 5: the same draws would make both sums collinear
    feats = [f + [float(t)] for f, t in zip(feats, rng.uniform(1, 40, len(feats)))]
    y = [f[i_sum] + 0.8 * f[-1] + 0.5 for f in feats]  # token FCs run 20% faster inside the model
    c = fit_overhead(feats, y, ridge=1e-8, factor_ridge=1e-8, names=names)
    assert abs(c[-1] - 0.8) < 0.02 and abs(c[i_sum] - 1.0) < 0.02 and abs(c[i_const] - 0.5) < 0.1
    total, overhead = apply_overhead(c, feats[0], names)
    assert total == pytest.approx(y[0], rel=0.02) and overhead == pytest.approx(y[0] - feats[0][i_sum] - feats[0][-1],
                                                                                  rel=0.05, abs=0.05)


def test_a_factored_extra_family_is_scaled_and_not_added_again():
    import copy

    from oplat.zoo import build
    from oplat.onnx_loader import load_onnx
    from oplat.overhead import overhead_features

    from oplat.overhead import OVERHEAD_FEATURES

    shipped = load_profile("host/litert-cpu-1t")
    graph = load_onnx(build("vit_tiny_patch32_224", graph_only=True))

    def with_factors(extra: dict) -> Profile:
        meta = copy.deepcopy(shipped.meta)
        meta["overhead"]["features"] = list(overhead_features(list(extra)))
        meta["overhead"]["coef"] = list(shipped.meta["overhead"]["coef"][:len(OVERHEAD_FEATURES)]) + list(
            extra.values())
        return Profile(meta, shipped.boosters)

    a, b = with_factors({}).predict(graph), with_factors({"FC_TOKENS": 0.5}).predict(graph)
    fc = a.key_sums["FC_TOKENS"]
    assert fc > 0.2 * a.total_ms
    assert b.total_ms == pytest.approx(a.total_ms - 0.5 * fc, rel=1e-6)


def _conv_and_fc_rows(seed: int, fc_range: tuple[float, float]):
    """Fitting rows with a CONV_2D sum, a constant, a count and a FC_TOKENS sum."""
    feats, idx = conv_overhead_features(seed, (5, 50), (10, 50))
    rng = np.random.default_rng(seed + 100)
    return [f + [float(t)] for f, t in zip(feats, rng.uniform(*fc_range, len(feats)))], idx


def test_factor_ridge_cv_follows_the_one_standard_error_rule():
    from oplat.overhead import choose_factor_ridge, overhead_features

    names = overhead_features(["FC_TOKENS"])
    grid = [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]
    feats, (i_sum, _, _) = _conv_and_fc_rows(6, (5, 50))
    exact = [f[i_sum] + f[-1] + 0.5 for f in feats]  # per-op sums already right: every ridge fits
    lam, table = choose_factor_ridge(feats, exact, exact, grid, names=names, factor_units="raw")
    assert lam == 1000.0 and set(table) == {str(g) for g in grid}
    off = [f[i_sum] + 0.5 * f[-1] + 0.5 for f in feats]  # token FCs at half: strong ridges miss it
    lam, table = choose_factor_ridge(feats, off, off, grid, names=names, factor_units="raw")
    assert lam <= 1.0 and table["1000.0"] > 2 * table[str(lam)]


def test_raw_factor_units_hold_a_family_the_fitting_models_barely_have():
    from oplat.overhead import overhead_features

    names = overhead_features(["FC_TOKENS"])
    feats, (i_sum, _, _) = _conv_and_fc_rows(7, (0.01, 0.05))  # token FCs: a sliver of every model
    rng = np.random.default_rng(7)
    y = [f[i_sum] * (1 + e) + 0.5 for f, e in zip(feats, rng.normal(0, 0.02, len(feats)))]
    raw = fit_overhead(feats, y, factor_ridge=1.0, names=names, factor_units="raw")
    scaled = fit_overhead(feats, y, factor_ridge=1.0, names=names, factor_units="scaled")
    assert abs(raw[-1] - 1.0) < 0.1 < abs(scaled[-1] - 1.0)
    with pytest.raises(ValueError, match="factor_units"):
        fit_overhead(feats, y, names=names, factor_units="bogus")


def test_layout_work_is_counted_per_kernel_type(net):
    """A slice's bytes land in its own column, a resize's in another; a profile whose
    fitting models had no slice gives a slice no cost (it reports it instead) rather than
    the per-byte cost of an interpolation."""
    from oplat.lowering import lower
    from oplat.onnx_loader import load_onnx
    from oplat.overhead import factored_keys, graph_features, overhead_features

    n = net(shape=(1, 8, 16, 16))
    y = n.conv("input", 8, 8)
    s = n.op("Slice", [y, n.const(np.array([2], np.int64)), n.const(np.array([14], np.int64)),
                       n.const(np.array([2], np.int64))])
    r = n.op("Resize", [n.conv(s, 8, 8), "", n.const(np.array([1, 1, 2, 2], np.float32))], mode="nearest")
    lm = lower(load_onnx(n.model(r)), "tflite-gpu", "adreno")
    assert {"SLICE", "RESIZE"} <= {k.type for k in lm.glue}
    both = overhead_features(["FC_TOKENS"], ["RESIZE", "SLICE"])
    assert "layout_mb" not in both and factored_keys(both) == ("FC_TOKENS",)
    f = dict(zip(both, graph_features(lm, {"CONV_2D": 1.0, "FC_TOKENS": 0.5}, (), ["FC_TOKENS"], both)))
    assert f["layout_ops:SLICE"] == 1 and f["layout_ops:RESIZE"] == 1 and f["sum_ms:FC_TOKENS"] == 0.5
    assert f["layout_mb:SLICE"] == pytest.approx((8 * 16 * 16 + 8 * 16 * 12) * 2 / 1e6, rel=0.3)
    old = dict(zip(overhead_features(), graph_features(lm, {"CONV_2D": 1.0}, (), ())))
    assert old["layout_mb"] == pytest.approx(f["layout_mb:SLICE"] + f["layout_mb:RESIZE"])
    only_resize = overhead_features((), ["RESIZE"])
    g = dict(zip(only_resize, graph_features(lm, {"CONV_2D": 1.0}, (), (), only_resize)))
    assert "layout_ops:SLICE" not in g and g["layout_ops:RESIZE"] == 1


def test_a_host_profile_from_another_cpu_is_flagged(tmp_path, capsys):
    """A profile of "this machine" measured on another CPU says so (its predictions describe
    that machine); the same profile on its own CPU, and phone profiles, say nothing."""
    import json
    import shutil

    from conftest import ROOT
    from oplat.cli import main
    from oplat.machine import cpu_identity, other_cpu
    from oplat.profile import load_profile

    here = cpu_identity()
    assert other_cpu(dict(here), here) is None
    assert other_cpu({"cpu": "Fake CPU", "cpu_id": "1/2/3"}, here).startswith("Fake CPU 1/2/3, not this machine's")
    assert other_cpu({"cpu": "unreadable"}, here) is None
    folder = tmp_path / "litert-cpu-1t"
    shutil.copytree(ROOT / "device_profiles" / "host" / "litert-cpu-1t", folder)
    meta = json.loads((folder / "profile.json").read_text())
    meta["collection"]["machine"].update(cpu="Fake CPU", cpu_id="1/2/3")
    (folder / "profile.json").write_text(json.dumps(meta))
    assert "Fake CPU" in load_profile(folder).measured_elsewhere()
    model = str(zoo_dir("samples") / "resnet18.onnx")
    assert main(["predict", model, "--profile", str(folder), "--json"]) == 0
    err = capsys.readouterr().err
    assert "measured on Fake CPU 1/2/3" in err
    meta["collection"]["machine"].update(here)
    (folder / "profile.json").write_text(json.dumps(meta))
    assert load_profile(folder).measured_elsewhere() is None
    assert load_profile("pixel4/tflite-gpu").measured_elsewhere() is None


def test_saving_over_a_profile_leaves_none_of_its_old_regressors(tmp_path):
    prof = load_profile("pixel4/tflite-gpu")
    folder = tmp_path / "p"
    prof.save(folder)
    (folder / "notes.txt").write_text("kept")
    smaller = Profile(dict(prof.meta), {k: b for k, b in prof.boosters.items() if k != "POOL_2D"})
    smaller.save(folder)
    files = sorted(p.name for p in folder.glob("*.ubj"))
    meta = json.loads((folder / "profile.json").read_text())
    assert files == sorted(meta["models"].values()) and "POOL_2D.ubj" not in files
    assert (folder / "notes.txt").read_text() == "kept"
    assert "POOL_2D" not in load_profile(folder).boosters


def test_nnls_keeps_the_best_feasible_subset():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (50, 3))
    y = x @ np.array([2.0, 0.5, 0.0]) + 0.01 * rng.standard_normal(50)
    assert nnls(x, y) == pytest.approx([2.0, 0.5, 0.0], abs=0.05)
    y = x @ np.array([1.0, -3.0, 0.2])  # the unconstrained fit is negative in one term
    c = nnls(x, y)
    assert c.min() >= 0 and c[1] == 0.0
