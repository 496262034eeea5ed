import numpy as np
import onnx
import onnxruntime as ort
import pytest

from oplat.collect.backends import BackendError, make_backend
from oplat.collect.timing import time_runs
from oplat.collect.ops import config_id, onnx_single_op
from oplat.zoo import zoo_dir

CONFIGS = [
    {"kernel": "CONV_2D", "Input_shape": 14, "Input_channel": 16, "Filter": 32, "Kernel": 3, "Stride": 2, "linked": ["relu"]},
    {"kernel": "CONV_2D", "Input_shape": 14, "Input_channel": 16, "Filter": 16, "Kernel": 1, "Stride": 1, "linked": ["add", "relu6"]},
    {"kernel": "DEPTHWISE_CONV_2D", "Input_shape": 28, "Input_channel": 24, "Kernel": 5, "Stride": 1, "linked": ["hard_swish"]},
    {"kernel": "CONV_2D_GROUP", "Input_shape": 14, "Input_channel": 32, "Filter": 32, "Kernel": 3, "Stride": 1, "Group": 4},
    {"kernel": "FULLY_CONNECTED", "Input_channel": 64, "Filter": 10},
    {"kernel": "MEAN", "Input_shape": 7, "Input_channel": 64},
    {"kernel": "MAX_POOL_2D", "Input_shape": 28, "Input_channel": 8, "Kernel": 3, "Stride": 2},
    {"kernel": "AVERAGE_POOL_2D", "Input_shape": 28, "Input_channel": 8, "Kernel": 3, "Stride": 1},
    {"kernel": "CONCATENATION", "Input_shape": 14, "Input_channel": 8, "Filter": 32, "Kernel": 3},
    {"kernel": "ADD", "Input_shape": 14, "Input_channel": 8},
    {"kernel": "ADD", "Input_dims": [1, 8, 14, 14], "Other_dims": [1, 8, 14, 14], "linked": ["relu"]},
    {"kernel": "REDUCE", "Input_dims": [1, 16, 7, 7], "Output_dims": [1, 16, 1, 1]},
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=[c["kernel"] for c in CONFIGS])
def test_single_op_models_are_valid_and_run(cfg):
    m = onnx_single_op(cfg)
    onnx.checker.check_model(m)
    sess = ort.InferenceSession(m.SerializeToString())
    feeds = {i.name: np.ones(i.shape, np.float32) for i in sess.get_inputs()}
    out = sess.run(None, feeds)[0]
    assert np.isfinite(out).all()


def test_single_op_model_lowers_to_the_configured_kernel():
    from oplat.lowering import lower
    from oplat.onnx_loader import load_onnx

    lm = lower(load_onnx(onnx_single_op(CONFIGS[1])), "tflite-gpu", "adreno")
    assert [(k.type, k.linked) for k in lm.rows] == [("CONV_2D", ["add", "relu"])]


def test_reduce_configs_build_the_mean_a_model_lowers_them_from():
    from oplat.collect.sampler import kernel_config
    from oplat.lowering import lower
    from oplat.onnx_loader import load_onnx

    cfg = {"kernel": "REDUCE", "Input_dims": [1, 50, 64], "Output_dims": [1, 1, 64]}
    m = onnx_single_op(cfg)
    onnx.checker.check_model(m)
    x = np.random.default_rng(0).standard_normal((1, 50, 64)).astype(np.float32)
    y = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, x.mean(axis=1, keepdims=True), rtol=1e-5, atol=1e-6)
    (k,) = [k for k in lower(load_onnx(m), "tflite-cpu", "cpu").kernels if k.type == "REDUCE"]
    assert kernel_config(k) == cfg  # the lowered kernel names the config that measures it
    with pytest.raises(ValueError, match="only whole axes"):
        onnx_single_op({"kernel": "REDUCE", "Input_dims": [1, 50, 64], "Output_dims": [1, 25, 64]})


def test_ort_timing_binds_inputs_once_and_runs_the_model():
    b = make_backend("ort-cpu", threads=1)
    sess = b.session(onnx_single_op(CONFIGS[4]).SerializeToString())
    x = np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)
    run = sess.prepare({"x": x})
    run()
    (y,) = sess._bound.copy_outputs_to_cpu()
    np.testing.assert_allclose(y, sess.run(None, {"x": x})[0], rtol=1e-6)
    assert np.abs(y).sum() > 0


def test_config_id_is_stable_and_order_free():
    a = {"kernel": "MEAN", "Input_shape": 7, "Input_channel": 64}
    b = {"Input_channel": 64, "kernel": "MEAN", "Input_shape": 7}
    assert config_id(a) == config_id(b) != config_id(dict(a, Input_shape=14))


def test_ort_backend_measures_and_rejects_bad_configs():
    b = make_backend("ort-cpu", threads=1)
    r = b.measure(CONFIGS[0])
    assert r["median_ms"] > 0 and r["count"] >= 10 and r["min_ms"] <= r["median_ms"]
    with pytest.raises(BackendError, match="no single-op builder"):
        b.measure({"kernel": "FFT"})
    with pytest.raises(BackendError, match="unknown backend"):
        make_backend("tpu-v9")


def test_time_runs_stops_at_the_cap():
    calls = []
    r = time_runs(lambda: calls.append(1), warmup=2, min_runs=10, max_runs=40, max_seconds=10, rel_tol=0.0)
    assert 40 <= r["count"] <= 60 and len(calls) == r["count"] + 2


def test_collect_appends_resumes_and_records_failures(tmp_path):
    from oplat.collect.run import collect, open_store, read_collected

    b = make_backend("ort-cpu", threads=1)
    cfgs = CONFIGS[:4] + [{"kernel": "FFT", "Input_shape": 8}] + CONFIGS[4:6]
    store = open_store(tmp_path / "d.csv", b, "host")
    counts = collect(b, cfgs[:3], store, batch=2)
    assert counts == {"measured": 3, "failed": 0, "skipped": 0, "repeated": 0}
    store = open_store(tmp_path / "d.csv", b, "host")  # same command again: resumes
    counts = collect(b, cfgs, store, batch=2)
    assert counts == {"measured": 3, "failed": 1, "skipped": 3, "repeated": 0}
    all_rows = store.rows()
    assert len({r["config_id"] for r in all_rows}) == len(all_rows)  # nothing twice, reorders included
    # onnxruntime's NCHWc reorders around each conv, timed on the side, are rows of their own
    reorders = [r for r in all_rows if r["kernel"] == "REORDER"]
    assert reorders and all(r["status"] == "ok" and float(r["latency_ms"]) > 0 for r in reorders)
    rows = [r for r in all_rows if r["kernel"] != "REORDER"]
    assert len(rows) == 7
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and "no single-op builder" in failed[0]["error"]
    train_rows = [r for r in read_collected(tmp_path / "d.csv") if r.kernel != "REORDER"]
    assert len(train_rows) == 6 and all(r.latency_ms > 0 for r in train_rows)
    assert {r.kernel for r in train_rows} >= {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MEAN"}


def test_collect_refuses_a_dataset_of_other_settings(tmp_path):
    from oplat.collect.run import open_store
    from oplat.errors import DatasetError

    open_store(tmp_path / "d.csv", make_backend("ort-cpu", threads=1), "host")
    with pytest.raises(DatasetError, match="threads"):
        open_store(tmp_path / "d.csv", make_backend("ort-cpu", threads=2), "host")


def test_budget_parsing():
    from oplat.collect.run import parse_budget
    from oplat.errors import DatasetError

    assert parse_budget("90s") == 90 and parse_budget("10m") == 600 and parse_budget("2") == 2
    with pytest.raises(DatasetError):
        parse_budget("soon")


def test_sampler_is_deterministic_and_near_the_zoo(zoo):
    from oplat.collect.sampler import sample_configs, zoo_configs
    from oplat.onnx_loader import load_onnx

    base = zoo_configs([load_onnx(zoo / "mobilenetv2_w1.onnx"), load_onnx(zoo / "resnet18.onnx")])
    assert {c["kernel"] for c in base} >= {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
    a = list(sample_configs(base, 200, seed=3))
    assert a == list(sample_configs(base, 200, seed=3)) and len(a) == 200
    assert len({config_id(c) for c in a}) == 200
    for c in a:
        if "Input_shape" in c and c["kernel"] != "FULLY_CONNECTED":
            assert 7 <= c["Input_shape"] <= 224


def test_collect_then_train_cli(tmp_path):
    import json
    import subprocess
    import sys

    from conftest import ROOT

    def run(*a):
        return subprocess.run([sys.executable, "-m", "oplat.cli", *map(str, a)], capture_output=True, text=True,
                              cwd=ROOT, timeout=300)

    data = tmp_path / "host.csv"
    p = run("collect", "--backend", "ort-cpu", "--threads", "1", "--budget", "8s", "--out", data)
    assert p.returncode == 0, p.stderr
    n1 = len(DatasetStore(data).rows())
    assert n1 >= 20
    p = run("collect", "--backend", "ort-cpu", "--threads", "1", "--budget", "3s", "--out", data)
    assert p.returncode == 0 and len(DatasetStore(data).rows()) > n1
    p = run("train", "--data", data, "--out", tmp_path / "prof")
    assert p.returncode == 0, p.stderr
    from oplat.lowering.ort_cpu import host_nchwc_block

    # the profile predicts with the NCHWc block size of the machine the rows came from
    meta = json.loads((tmp_path / "prof" / "host" / "ort-cpu-1t" / "profile.json").read_text())
    assert DatasetStore(data).meta["lowering"] == ["ort-cpu", f"nchwc{host_nchwc_block()}"]
    assert (meta["lowering"], meta["gpu_family"]) == ("ort-cpu", f"nchwc{host_nchwc_block()}")
    q = run("predict", zoo_dir("samples") / "mobilenetv2_w1.onnx", "--profile",
            tmp_path / "prof" / "host" / "ort-cpu-1t", "--json")
    assert q.returncode == 0 and json.loads(q.stdout)["total_ms"] > 0
    bad = run("collect", "--backend", "tpu", "--out", tmp_path / "x.csv")
    assert bad.returncode == 2 and "unknown backend" in bad.stderr


from oplat.store import DatasetStore  # noqa: E402


def test_whole_model_measurement_resumes(tmp_path):
    from oplat.collect.whole import measure_models
    from oplat.zoo import build

    b = make_backend("ort-cpu", threads=1)
    calls = []

    def make(name):
        calls.append(name)
        return build(name, graph_only=True)  # graph-only: random weights are filled in

    models = {n: (lambda n=n: make(n)) for n in ("mobilenet_v1_0.25", "squeezenet1_1")}
    res = measure_models(b, models, tmp_path / "e2e.csv")
    assert set(res) == set(models) and all(v > 0 for v in res.values())
    again = measure_models(b, models, tmp_path / "e2e.csv")
    assert again == res and len(calls) == 2  # nothing measured twice


def test_transformer_kernels_are_built_measured_and_lowered():
    from oplat.collect.run import kernel_of
    from oplat.collect.sampler import kernel_config, transformer_configs

    cfgs = transformer_configs(2, seed=1)
    assert {c["kernel"] for c in cfgs} == {"LAYER_NORM", "FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX", "TRANSPOSE",
                                          "ADD", "MUL", "GELU"}
    b = make_backend("ort-cpu", threads=1)
    for c in cfgs[:12]:
        k = kernel_of(c)
        assert k is not None and kernel_config(k)["kernel"] == c["kernel"]
        assert b.measure(c)["median_ms"] > 0


def test_litert_backend_measures_converted_single_ops_and_whole_models():
    from oplat.zoo import build
    from oplat.collect.run import kernel_of
    from oplat.collect.whole import measure_model

    b = make_backend("litert-cpu", threads=1)
    cfg = b.adapt({"kernel": "CONV_2D", "Input_shape": 14, "Input_channel": 16, "Filter": 16, "Kernel": 1,
                   "Stride": 1, "linked": ["add", "relu"]})
    assert cfg["linked"] == []  # XNNPACK runs the residual add as a kernel of its own
    assert b.adapt(CONFIGS[0]) is CONFIGS[0]  # a trailing ReLU fuses: kept
    assert kernel_of(cfg, b.lowering).impl == "gemm_1x1"
    for c in (cfg, {"kernel": "GELU", "Input_dims": [1, 50, 96]}, {"kernel": "LAYER_NORM", "Rows": 50, "Cols": 96},
              {"kernel": "BATCH_MATMUL", "Batch": 3, "M": 50, "K": 32, "N": 50}):
        r = b.measure(c)
        assert r["median_ms"] > 0 and r["count"] >= 5
    with pytest.raises(BackendError, match="no single-op builder"):
        b.measure({"kernel": "FFT"})
    assert measure_model(b, build("mobilenet_v3_small_0.75", graph_only=True), max_seconds=0.2)["median_ms"] > 0


def test_opencl_backend_runs_the_runtime_kernels_and_rejects_the_rest():
    try:
        b = make_backend("opencl", threads=1)
    except BackendError as e:
        pytest.skip(f"no OpenCL device: {e}")
    assert b.adapt(CONFIGS[0])["linked"] == []  # the runtime's kernels fuse nothing
    r = b.measure(b.adapt(CONFIGS[0]))
    assert r["median_ms"] > 0 and r["count"] >= 5
    assert b.measure({"kernel": "FULLY_CONNECTED", "Input_channel": 64, "Filter": 16})["median_ms"] > 0
    assert CONFIGS[5]["kernel"] == "MEAN" and b.measure(CONFIGS[5])["median_ms"] > 0  # through the graph runtime
    for cfg in ({"kernel": "DEPTHWISE_CONV_2D", "Input_shape": 14, "Input_channel": 16, "Kernel": 3, "Stride": 2,
                 "linked": []},
                {"kernel": "MUL", "Input_dims": [1, 16, 7, 7], "Other_dims": [1, 16, 1, 1]},
                {"kernel": "SOFTMAX", "Rows": 12, "Cols": 50}):
        assert b.measure(cfg)["median_ms"] > 0
    for cfg in ({"kernel": "FULLY_CONNECTED", "Input_channel": 24, "Filter": 16, "Rows": 10},
                {"kernel": "BATCH_MATMUL", "Batch": 3, "M": 10, "K": 8, "N": 10},
                {"kernel": "TRANSPOSE", "Input_dims": [1, 10, 3, 8], "Perm": [0, 2, 1, 3]},
                {"kernel": "GELU", "Input_dims": [1, 8, 16]}):
        assert b.measure(cfg)["median_ms"] > 0  # the transformer kernels, through the graph runtime
    with pytest.raises(BackendError, match="no OpenCL kernel .* for SPLIT"):
        b.measure({"kernel": "SPLIT", "Input_dims": [1, 8, 4, 4], "Axis": 1, "Parts": 2})
    with pytest.raises(BackendError, match="no OpenCL kernel .* for CONCATENATION"):
        b.measure({"kernel": "CONCATENATION", "Input_shape": 7, "Input_channel": 8, "Filter": 16, "Kernel": 2})
    assert b.settings["opencl_device"]


def test_opencl_collection_rejects_a_config_whose_device_result_is_wrong(monkeypatch):
    """A kernel that computes the wrong thing is recorded as failed, never timed."""
    from coexec.graph_runner import GraphRunner

    try:
        b = make_backend("opencl", threads=1)
    except BackendError as e:
        pytest.skip(f"no OpenCL device: {e}")
    cfg = {"kernel": "SOFTMAX", "Rows": 12, "Cols": 50}
    assert b.measure(cfg)["median_ms"] > 0
    real = GraphRunner.run

    def wrong(self, feeds, record=False):
        res = real(self, feeds, record)
        return {**res, "outputs": {k: v * 0.5 for k, v in res["outputs"].items()}}

    monkeypatch.setattr(GraphRunner, "run", wrong)
    with pytest.raises(BackendError, match="differs from onnxruntime"):
        b.measure(cfg)


def test_a_profile_trained_on_opencl_rows_predicts_with_the_lowering_that_named_them(tmp_path):
    """Rows are named (kernel, impl, features) by the collecting backend's lowering; the
    profile must lower models the same way, or its regressors see other features."""
    from oplat.collect.run import collect, open_store
    from oplat.profile import load_profile

    try:
        b = make_backend("opencl", threads=1)
    except BackendError as e:
        pytest.skip(f"no OpenCL device: {e}")
    data = tmp_path / "ocl.csv"
    store = open_store(data, b, "host")
    convs = [c for c in CONFIGS if c["kernel"] == "CONV_2D"][:4]
    cfgs = [dict(c, Filter=f) for c in convs for f in (8, 16, 24, 32, 40, 48)]
    collect(b, cfgs, store, "host", budget_s=60)
    from oplat.cli import main as oplat_main

    assert oplat_main(["train", "--data", str(data), "--out", str(tmp_path / "prof")]) == 0
    prof = load_profile(tmp_path / "prof" / "host" / "opencl-gpu-1t")
    assert (prof.meta["lowering"], prof.meta["gpu_family"]) == b.lowering
    assert prof.meta["runs_only_predicted_kernels"]


@pytest.mark.parametrize("strategy", ["committee", "error"])
def test_adaptive_collection_prefers_unknown_kernels_and_resumes(tmp_path, strategy):
    from oplat.collect.adaptive import committee_disagreement
    from oplat.collect.run import collect, collect_adaptive, kernel_of, open_store, read_collected

    b = make_backend("ort-cpu", threads=1)
    store = open_store(tmp_path / "a.csv", b, "host")
    convs = [{"kernel": "CONV_2D", "Input_shape": h, "Input_channel": c, "Filter": c, "Kernel": 1, "Stride": 1,
              "linked": []} for h in (7, 14) for c in (8, 16, 24, 32, 40, 48, 56, 64, 72, 80)]
    collect(b, convs, store, "host")
    rows = [r for r in read_collected(tmp_path / "a.csv") if r.kernel != "REORDER"]
    assert len(rows) == 20
    before = len(store.rows())  # the convs and the reorders timed around them
    cands = [dict(convs[0], Input_channel=96, Filter=96), {"kernel": "MEAN", "Input_shape": 7, "Input_channel": 64}]
    items = []
    for c in cands:
        k = kernel_of(c, b.lowering)
        items.append((k.type, k.impl, k.params, k.linked))
    sd = committee_disagreement(rows, items, members=3)
    assert np.isfinite(sd[0]) and sd[1] == np.inf  # no MEAN row measured yet: measured first
    more = [{"kernel": "MEAN", "Input_shape": h, "Input_channel": c} for h in (7, 14) for c in (16, 32, 64)]
    counts = collect_adaptive(b, convs + more, store, "host", batch=4, strategy=strategy)
    assert counts["measured"] == 6 and counts["skipped"] == before
    ids = [r["config_id"] for r in store.rows() if r["kernel"] != "REORDER"]
    assert len(ids) == len(set(ids)) == 26
    assert collect_adaptive(b, convs + more, store, "host", batch=4, strategy=strategy)["measured"] == 0


def test_error_driven_batches_go_where_the_predictor_erred():
    from oplat.collect.adaptive import MIN_ROWS, error_driven_batch
    from oplat.datasets import OpRow

    def row(kernel, impl, params):
        return OpRow("m", "host", "onnxruntime", "cpu", kernel, impl, [], params, 1.0)

    # softmax rows: small ones were predicted well, large ones badly; layer norms all well
    sm = [row("SOFTMAX", "softmax", {"Rows": r, "Cols": 64}) for r in range(10, 410, 10)]
    ln = [row("LAYER_NORM", "layer_norm", {"Rows": r, "Cols": 64}) for r in range(10, 410, 10)]
    errors = [0.02 if r.params["Rows"] < 200 else 0.5 for r in sm] + [0.02] * len(ln)
    cands = [(k, i, {"Rows": r, "Cols": 64}, []) for k, i in (("SOFTMAX", "softmax"), ("LAYER_NORM", "layer_norm"))
             for r in range(15, 415, 10)]
    pick = error_driven_batch(sm + ln, errors, cands, 20, seed=0, explore=0.1)
    chosen = [cands[i] for i in pick]
    big_softmax = sum(c[0] == "SOFTMAX" and c[2]["Rows"] >= 200 for c in chosen)
    assert len(set(pick)) == 20 and big_softmax >= 10  # 20 of the 80 candidates: uniform would give 5
    # a regressor with too few scored rows counts as badly known; too few scores overall: uniform
    few = error_driven_batch(sm[:MIN_ROWS - 1] + ln, errors[:MIN_ROWS - 1] + [0.02] * len(ln), cands, 20, seed=0)
    assert sum(cands[i][0] == "SOFTMAX" for i in few) >= 14  # uniform: 10
    assert len(error_driven_batch(sm, [float("nan")] * len(sm), cands, 20)) == 20


LAYOUT_CONFIGS = [
    {"kernel": "SPLIT", "Input_dims": [1, 48, 14, 14], "Axis": 1, "Parts": 3},
    {"kernel": "SLICE", "Input_dims": [1, 197, 64], "Output_dims": [1, 1, 64]},
    {"kernel": "GATHER", "Input_dims": [1, 50, 32], "Axis": 1, "Indices": 0},
    {"kernel": "RESIZE", "Input_dims": [1, 8, 7, 7], "Output_dims": [1, 8, 14, 14], "Mode": "linear"},
]


@pytest.mark.parametrize("cfg", LAYOUT_CONFIGS, ids=[c["kernel"] for c in LAYOUT_CONFIGS])
def test_data_movement_configs_compute_what_they_say_and_lower_back_to_themselves(cfg):
    from oplat.collect.sampler import kernel_config
    from oplat.lowering import lower
    from oplat.onnx_loader import load_onnx

    m = onnx_single_op(cfg)
    onnx.checker.check_model(m)
    sess = ort.InferenceSession(m.SerializeToString())
    x = np.random.default_rng(0).standard_normal(cfg["Input_dims"]).astype(np.float32)
    outs = sess.run(None, {"x": x})
    if cfg["kernel"] == "SPLIT":
        np.testing.assert_array_equal(np.concatenate(outs, axis=1), x)  # every part is an output
    elif cfg["kernel"] == "SLICE":
        np.testing.assert_array_equal(outs[0], x[:, :1])
    elif cfg["kernel"] == "GATHER":
        np.testing.assert_array_equal(outs[0], x[:, 0])
    else:
        assert outs[0].shape == tuple(cfg["Output_dims"])
    ks = [k for k in lower(load_onnx(m), "tflite-cpu", "cpu").kernels if k.type == cfg["kernel"]]
    assert len(ks) == 1 and ks[0].impl == "layout"
    assert kernel_config(ks[0]) == cfg


def test_litert_runs_data_movement_kernels_and_bad_sizes_are_rejected():
    b = make_backend("litert-cpu", threads=1)
    for cfg in LAYOUT_CONFIGS:
        assert b.measure(cfg)["median_ms"] > 0
    with pytest.raises(BackendError, match="does not fit"):
        b.measure({"kernel": "SLICE", "Input_dims": [1, 4, 8], "Output_dims": [1, 9, 8]})


def test_collect_kernel_filter_names_unknown_types():
    from oplat.collect.sampler import layout_configs, select_kernels
    from oplat.errors import OplatError

    cfgs = layout_configs(50, seed=3)
    assert {c["kernel"] for c in select_kernels(cfgs, "split, gather")} == {"SPLIT", "GATHER"}
    with pytest.raises(OplatError, match="unknown kernel type.*FOO"):
        select_kernels(cfgs, "SPLIT,FOO")


def test_resuming_on_another_machine_warns_but_keeps_the_rows(tmp_path, capsys):
    from oplat.machine import machine_facts, machine_mismatch
    from oplat.collect.run import open_store

    facts = machine_facts()
    assert facts["probe_ms"] > 0 and "cpu_id" in facts
    assert machine_mismatch(facts, dict(facts)) is None
    assert "speed probe" in machine_mismatch(facts, dict(facts, probe_ms=facts["probe_ms"] * 2))
    assert "CPU" in machine_mismatch(facts, dict(facts, cpu_id="25/1/1" if facts["cpu_id"] != "25/1/1" else "23/49/0"))
    b = make_backend("ort-cpu", threads=1)
    path = tmp_path / "d.csv"
    store = open_store(path, b, "host", machine=dict(facts, probe_ms=facts["probe_ms"] * 3))
    store.append([{"config_id": "a", "model": "single:MEAN", "status": "ok", "latency_ms": 1.0}])
    capsys.readouterr()
    again = open_store(path, b, "host", machine=facts)
    assert "another or differently loaded machine" in capsys.readouterr().err
    assert len(again.rows()) == 1


def test_single_op_timing_is_net_of_the_call_floor(tmp_path):
    """A backend that subtracts its fixed cost per call records the kernel's time less
    the do-nothing model's, never below 5% of the raw figure, and says what it took off;
    a dataset collected without that refuses to be resumed with it."""
    from oplat.collect.backends import Backend, floor_model, time_single_op
    from oplat.collect.run import open_store
    from oplat.errors import DatasetError
    from oplat.store import DatasetStore
    from oplat.collect.run import COLUMNS

    class _Sess:
        def __init__(self, seconds):
            self.seconds = seconds

        def get_inputs(self):
            return []

        def prepare(self, feeds):
            return lambda: self.seconds  # the timed part, as time_runs allows

    class Fake(Backend):
        name = "fake"
        subtract_call_floor = True
        kernel_s = 0.0012

        def session(self, model_bytes):
            return _Sess(0.0002 if model_bytes == floor_model() else self.kernel_s)

    b = Fake()
    t = time_single_op(b, b"kernel", "fake")
    assert t["call_floor_ms"] == pytest.approx(0.2) and t["median_ms"] == pytest.approx(1.0)
    assert t["min_ms"] == pytest.approx(1.0) and t["std_ms"] == pytest.approx(0.0)
    b.kernel_s = 0.0001
    assert time_single_op(b, b"kernel", "fake")["median_ms"] == pytest.approx(0.005)
    b.subtract_call_floor = False
    assert "call_floor_ms" not in time_single_op(b, b"kernel", "fake")
    floors = iter([0.0002, 0.0009, 0.0002, 0.0003])  # the second sample in a slow spell

    class Drifting(Fake):
        floor_refresh_s = 0.0  # a new sample on every call

        def session(self, model_bytes):
            return _Sess(next(floors) if model_bytes == floor_model() else self.kernel_s)

    d = Drifting()
    assert [round(d.call_floor_ms(), 4) for _ in range(4)] == [0.2, 0.55, 0.2, 0.3]
    ort_b = make_backend("ort-cpu", threads=1)
    assert 0 < ort_b.call_floor_ms() < 1.0
    old = tmp_path / "old.csv"
    DatasetStore(old, COLUMNS, {"device": "host", "backend": "ort-cpu", "threads": 1, "cores": None})
    with pytest.raises(DatasetError, match="call_floor"):
        open_store(old, ort_b, "host")


def test_layout_sampler_covers_channel_shuffles_and_they_run():
    """ShuffleNet's (1, g, C/g, H, W) channel swaps are sampled (the transformer blocks'
    transposes move tokens), build as single ops and lower to the configs they came from."""
    from oplat.collect.sampler import kernel_config, layout_configs
    from oplat.lowering import lower
    from oplat.onnx_loader import load_onnx

    shuffles = [c for c in layout_configs(40, seed=0) if c["kernel"] == "TRANSPOSE"]
    assert len(shuffles) == 10
    for c in shuffles[:3]:
        g, cg = c["Input_dims"][1:3]
        assert c["Perm"] == [0, 2, 1, 3, 4] and g >= 2 and cg >= 1
        m = onnx_single_op(c)
        x = np.random.default_rng(0).standard_normal(c["Input_dims"]).astype(np.float32)
        y = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
        assert np.array_equal(y, x.transpose(0, 2, 1, 3, 4))
        ks = [k for k in lower(load_onnx(m), "ort-cpu", "cpu").kernels if k.type == "TRANSPOSE"]
        assert kernel_config(ks[0]) == c


def test_swish_configs_build_as_quick_gelu_and_lower_back():
    """onnxruntime's SWISH family is sampled (own random stream: other configs unchanged),
    builds as x*sigmoid(x), computes it, and lowers back to the config it came from."""
    from oplat.collect.run import kernel_of
    from oplat.collect.sampler import default_configs, kernel_config, swish_configs

    cfgs = swish_configs(12, seed=0)
    assert len(cfgs) == 12 and {c["kernel"] for c in cfgs} == {"SWISH"} and cfgs == swish_configs(12, seed=0)
    for c in cfgs[:3]:
        x = np.random.default_rng(1).standard_normal(c["Input_dims"]).astype(np.float32)
        y = ort.InferenceSession(onnx_single_op(c).SerializeToString()).run(None, {"x": x})[0]
        assert np.allclose(y, x / (1 + np.exp(-x)), rtol=1e-5, atol=1e-6)
        k = kernel_of(c, ("ort-cpu", "cpu"))
        assert (k.type, k.impl) == ("SWISH", "swish") and kernel_config(k) == c
    for lowering, wanted in ((("ort-cpu", "cpu"), True), (("tflite-cpu", "cpu"), False)):
        got = any(c["kernel"] == "SWISH" for c in default_configs([], 400, seed=0, lowering=lowering))
        assert got == wanted
