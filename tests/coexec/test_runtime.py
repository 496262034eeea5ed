"""Co-execution runtime: OpenCL (PoCL) + CPU executors sharing SVM; correctness, sync, faults."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from coexec.cli import main as coexec_main
from coexec.corun import CoRunner
from coexec.cpu import CpuExecutor, reference
from coexec.errors import RuntimeUnavailable, SyncTimeout
from coexec.layers import LayerSpec
from coexec.translate import layer_from_onnx
from coexec.opencl import OclExecutor
from coexec.probes import sync_costs
from coexec.sync import poll


@pytest.fixture(scope="module")
def ocl():
    try:
        return OclExecutor()
    except RuntimeUnavailable as e:
        pytest.skip(f"no OpenCL device with fine-grained SVM: {e}")


def _conv(c=16, h=20, k=24, ks=3, stride=1, pad=1, seed=0):
    rng = np.random.default_rng(seed)
    return (LayerSpec("conv", (rng.standard_normal((k, c, ks, ks)) * 0.1).astype(np.float32),
                      rng.standard_normal(k).astype(np.float32), stride, pad),
            rng.standard_normal((c, h, h)).astype(np.float32))


@pytest.mark.parametrize("sync", ["svm", "event", "finish"])
@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 1.0])
def test_split_conv_output_matches_onnxruntime(ocl, sync, ratio):
    layer, x = _conv()
    r = CoRunner(layer, x, ocl, CpuExecutor(), sync)
    r.run(ratio)
    ref = reference(layer, x)
    np.testing.assert_allclose(np.asarray(r.y), ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))


def test_strided_conv_and_linear_split(ocl):
    layer, x = _conv(c=8, h=17, k=16, stride=2, pad=1)
    r = CoRunner(layer, x, ocl, CpuExecutor())
    r.run(0.5)
    ref = reference(layer, x)
    np.testing.assert_allclose(np.asarray(r.y), ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))
    rng = np.random.default_rng(1)
    lin = LayerSpec("linear", rng.standard_normal((96, 64)).astype(np.float32), rng.standard_normal(96).astype(np.float32))
    xl = rng.standard_normal(64).astype(np.float32)
    r = CoRunner(lin, xl, ocl, CpuExecutor())
    for q in (0.25, 0.75):
        r.run(q)
        ref = reference(lin, xl)
        np.testing.assert_allclose(np.asarray(r.y), ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))
    assert r.split_channels(0.3) % 8 == 0


@pytest.mark.parametrize("stride", [1, 2])
def test_fused_clamp_on_both_sides(ocl, stride):
    import dataclasses

    layer, x = _conv(c=8, h=18, k=16, stride=stride, pad=1, seed=3)
    plain = reference(layer, x)
    relu6 = dataclasses.replace(layer, lo=0.0, hi=0.5 * float(plain.max()))
    for ratio in (0.5, 1.0, 0.0):
        r = CoRunner(relu6, x, ocl, CpuExecutor())
        r.run(ratio)
        np.testing.assert_allclose(np.asarray(r.y), np.clip(plain, relu6.lo, relu6.hi), rtol=1e-5,
                                   atol=1e-5 * float(np.abs(plain).max()))
    assert (np.asarray(r.y) == np.float32(relu6.hi)).any() and (np.asarray(r.y) == 0).any()  # both bounds hit


@pytest.mark.parametrize("channels", [3, 4, 12, 16])
def test_gpu_part_kernels_by_channel_count(ocl, channels):
    """Scalar, 4- and 8-channel blocked kernels (picked by the part's channel count) agree."""
    layer, x = _conv(c=5, h=15, k=16, stride=2, pad=1, seed=4)
    ref = reference(layer, x)
    xs, w, b = ocl.svm(x.shape), ocl.svm(layer.w.shape), ocl.svm(layer.b.shape)
    xs[...], w[...], b[...] = x, layer.w, layer.b
    y = ocl.svm(ref.shape)
    y[...] = 0
    ocl.prepare(layer, xs, w, b, y, 0, channels, x.shape).enqueue()
    ocl.queue.finish()
    np.testing.assert_allclose(np.asarray(y)[:channels], ref[:channels], rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))
    assert not np.asarray(y)[channels:].any()  # nothing written past the part


@pytest.mark.parametrize("h", [13, 8])
def test_pointwise_conv_runs_as_a_gemm_over_flattened_pixels(ocl, h):
    """1x1 convs take the GEMM kernel (no padded copy); maps whose pixel count is not a
    multiple of 8 end in a partial block, with nothing read or written past it."""
    from coexec.layers import is_pointwise, wants_padded_input

    layer, x = _conv(c=12, h=h, k=16, ks=1, stride=1, pad=0, seed=5)
    assert is_pointwise(layer) and not wants_padded_input(layer)
    ref = reference(layer, x)
    for c1 in (4, 12, 16):
        xs, w, b = ocl.svm(x.shape), ocl.svm(layer.w.shape), ocl.svm(layer.b.shape)
        xs[...], w[...], b[...] = x, layer.w, layer.b
        y = ocl.svm(ref.shape)
        y[...] = 0
        launch = ocl.prepare(layer, xs, w, b, y, 0, c1, x.shape)
        assert launch.items[0][0].function_name == "conv1x1_v8"
        launch.enqueue()
        ocl.queue.finish()
        np.testing.assert_allclose(np.asarray(y)[:c1], ref[:c1], rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))
        assert not np.asarray(y)[c1:].any()
    r = CoRunner(layer, x, ocl, CpuExecutor())
    r.run(0.5)
    np.testing.assert_allclose(np.asarray(r.y), ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))


def _kinds(c=24, seed=0):
    """One layer of every kind besides dense conv and linear, with an input."""
    rng = np.random.default_rng(seed)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    none = np.zeros(1, np.float32)
    x = r(c, 13, 13)
    return {"dwconv 3x3 relu6": (LayerSpec("dwconv", r(c, 1, 3, 3), r(c), 1, 1, lo=0.0, hi=6.0), x),
            "dwconv 5x5 s2": (LayerSpec("dwconv", r(c, 1, 5, 5), r(c), 2, 2), x),
            "maxpool 3 s2": (LayerSpec("maxpool", none, none, 2, 1, k=3, channels=c), x),
            "avgpool 3 s2 (pads not counted)": (LayerSpec("avgpool", none, none, 2, 1, k=3, channels=c), x),
            "global average": (LayerSpec("gap", none, none, channels=c), x),
            "add + relu": (LayerSpec("add", r(x.size), none, lo=0.0, channels=c), x),
            "mul per channel": (LayerSpec("mul", r(c), none, channels=c), x),
            "relu6": (LayerSpec("unary", none, none, lo=0.0, hi=6.0, channels=c), x),
            "hardswish": (LayerSpec("unary", none, none, mode=1, alpha=1 / 6, beta=0.5, channels=c), x),
            "sigmoid": (LayerSpec("unary", none, none, mode=2, channels=c), x),
            "hardsigmoid": (LayerSpec("unary", none, none, mode=3, alpha=0.2, beta=0.5, channels=c), x),
            "softmax": (LayerSpec("softmax", none, none, channels=4 * 16), r(4, 16, 40)),
            "layernorm": (LayerSpec("layernorm", r(40), r(40), alpha=1e-5, channels=16), r(16, 40)),
            "sub per last-axis position": (LayerSpec("sub", r(40), none, mode=2, channels=16), r(16, 40)),
            "div by a scalar": (LayerSpec("div", np.array([1.4142], np.float32), none, mode=3, channels=16),
                                r(16, 40)),
            "erf": (LayerSpec("unary", none, none, mode=4, channels=16), r(16, 40)),
            "gelu": (LayerSpec("unary", none, none, mode=5, channels=16), r(16, 40)),
            "matmul rows + bias": (LayerSpec("matmul", r(40, 24), r(24), channels=16, cols=24), r(16, 40)),
            "matmul odd rows, 20 columns": (LayerSpec("matmul", r(40, 20), none, channels=15, cols=20), r(15, 40)),
            "matmul odd rows, 24 columns": (LayerSpec("matmul", r(40, 24), none, channels=15, cols=24), r(15, 40)),
            "transpose 4d": (LayerSpec("transpose", none, none, channels=3, perm=(1, 0, 3, 2)), r(3, 4, 5, 6))}


@pytest.mark.parametrize("kind", list(_kinds()))
def test_every_layer_kind_matches_onnxruntime_whole_and_split(ocl, kind):
    """Each OpenCL kernel (depthwise, pools, global average, element-wise, activations,
    softmax, layer norm) against onnxruntime's op, alone and with the CPU executor
    computing the other half of the channels (rows) into the same buffer."""
    layer, x = _kinds()[kind]
    ref = reference(layer, x)
    r = CoRunner(layer, x, ocl, CpuExecutor())
    for ratio in ((1.0,) if layer.kind == "transpose" else (1.0, 0.5)):  # a transpose runs whole
        r.y[...] = np.nan
        r.run(ratio)
        np.testing.assert_allclose(np.asarray(r.y), ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))


def test_kernels_run_on_plain_buffers_for_devices_without_svm(ocl):
    """The kernel check of a device without fine-grained SVM: the same kernels on plain
    buffers (an Add's second operand read by its size in bytes there)."""
    plain = OclExecutor(require_svm=False)
    for kind in ("add + relu", "mul per channel", "dwconv 3x3 relu6", "layernorm"):
        layer, x = _kinds()[kind]
        y, ms = plain.run_buffers(layer, x, runs=2)
        np.testing.assert_allclose(y, reference(layer, x), rtol=1e-5, atol=1e-5)
        assert ms > 0
    layer, x = _conv()
    y, _ = plain.run_buffers(layer, x)  # the padded copy first, then the vectorised conv
    np.testing.assert_allclose(y, reference(layer, x), rtol=1e-4, atol=1e-4)


def test_gpu_writes_are_visible_to_the_cpu_without_copies(ocl):
    flag = ocl.svm((1,), np.int32)
    flag[0] = 0
    ocl.signal(flag, 42)
    ocl.flush()
    assert poll(flag, 42, timeout_s=5.0) >= 0.0
    assert int(flag[0]) == 42


def test_poll_times_out_instead_of_hanging(ocl):
    flag = ocl.svm((1,), np.int32)
    flag[0] = 0
    with pytest.raises(SyncTimeout, match="not at 7"):
        poll(flag, 7, timeout_s=0.05)


def test_poll_sees_a_flag_set_during_each_backoff_phase():
    """Spinning, yielding and sleeping phases all still read the flag (a thread sets it
    after the spinning phase, and after the yielding phase), and the long wait still ends
    in the timeout error."""
    import threading

    from coexec import sync as runtime

    for delay in (runtime.POLL_SPIN_S * 3, runtime.POLL_YIELD_S * 1.5):
        flag = np.zeros(1, np.int32)
        t = threading.Timer(delay, lambda f=flag: f.__setitem__(0, 5))
        t.start()
        assert poll(flag, 5, timeout_s=5.0) >= delay * 0.9
        t.join()
    with pytest.raises(SyncTimeout, match="after 0.1 s"):
        poll(np.zeros(1, np.int32), 1, timeout_s=0.1)


def test_sync_cost_measurement_reports_every_path(ocl):
    res = sync_costs(ocl, n=20, reps=3)
    assert set(res) == {"svm", "svm_enqueue", "event", "finish", "pipelined_op_us"}
    assert all(v >= 0 for v in res.values()) and res["svm"] > 0  # a gated round trip is never free


def _save(tmp_path, nodes, inputs, outputs, inits, name="m.onnx"):
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    p = tmp_path / name
    onnx.save(m, p)
    return p


def test_coexec_bench_contract_on_a_single_layer(ocl, tmp_path, capsys):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((16, 64)) * 0.1).astype(np.float32), "w")
    p = _save(tmp_path, [helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)],
              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])], [w])
    assert coexec_main(["bench", str(p), "--json", "--runs", "3", "--steps", "4"]) == 0
    res = json.loads(capsys.readouterr().out)
    for key in ("cpu_ms", "gpu_ms", "planned_ms", "oracle_ms"):
        assert res[key] > 0
    assert set(res["sync_us"]) >= {"svm", "event", "finish"}
    assert set(res["notify_us"]) == {"svm", "event", "finish"} and min(res["notify_us"].values()) > 0
    assert res["outputs_match"] is True
    # the oracle's split is the grid's fastest; it is then timed again beside the planned one
    assert res["oracle_grid_ms"] == min(res["grid_ms"].values())
    assert res["grid_ms"][f"{res['oracle_ratio']:.4f}"] == res["oracle_grid_ms"]


def test_bench_refuses_whole_models_and_graph_only(tmp_path, capsys):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "w")
    p = _save(tmp_path, [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("MatMul", ["h", "w"], ["y"])],
              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [w])
    with pytest.raises(Exception, match="single-layer"):
        layer_from_onnx(p)
    assert coexec_main(["bench", str(p)]) == 2
    assert "single-layer" in capsys.readouterr().err


def test_cpu_only_mode(tmp_path, capsys):
    layer, x = _conv(c=8, h=8, k=8)
    w = numpy_helper.from_array(layer.w, "w")
    b = numpy_helper.from_array(layer.b, "b")
    p = _save(tmp_path, [helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 8])],
              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])], [w, b])
    assert coexec_main(["bench", str(p), "--cpu-only", "--json", "--runs", "2"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["cpu_ms"] > 0 and "gpu_ms" not in res


def _tiny_cnn(path, seed=0):
    """conv3x3 -> relu -> conv1x1 (+residual) -> global pool -> flatten -> gemm, with weights."""
    rng = np.random.default_rng(seed)
    w = lambda *s: numpy_helper.from_array((rng.standard_normal(s) * 0.2).astype(np.float32))  # noqa: E731

    def init(name, *s):
        t = w(*s)
        t.name = name
        return t
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", kernel_shape=[1, 1]),
             helper.make_node("Add", ["c2", "r1"], ["a2"], name="add2"),
             helper.make_node("GlobalAveragePool", ["a2"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], name="fc", transB=1)]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
                          [init("w1", 32, 8, 3, 3), init("b1", 32), init("w2", 32, 32, 1, 1), init("b2", 32),
                           init("w3", 16, 32), init("b3", 16)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def _plan_for(model, placement):
    from coexec.plan import model_hash

    ops = [{"name": n, "sources": [n], "placement": p, "ratio": r, "dimension": "channel",
            "predicted_gpu_ms": 0.1, "predicted_cpu_ms": 0.2} for n, (p, r) in placement.items()]
    return {"format": 1, "model": model.name, "model_sha256": model_hash(model), "steps": 16, "ops": ops,
            "profiles": {"cpu": "test", "gpu": "test"}}


@pytest.mark.parametrize("sync", ["svm", "event", "finish"])
def test_whole_model_plan_runs_on_both_sides_and_matches(ocl, tmp_path, sync):
    from coexec.calibration import run_plan

    model = _tiny_cnn(tmp_path / "tiny.onnx")
    plan = _plan_for(model, {"conv1": ("split", 0.5), "relu1": ("cpu", 0.0), "conv2": ("gpu", 1.0),
                             "add2": ("gpu", 1.0), "gap": ("cpu", 0.0), "flat": ("gpu", 1.0), "fc": ("split", 0.5)})
    res = run_plan(str(model), plan, runs=2, sync=sync)
    assert res["outputs_match"], res["max_rel_err"]
    on = {n: o["on"] for o in res["ops"] for n in o.get("nodes", [o["name"]])}
    assert on["conv1/gpu"] == "gpu" and on["conv1/cpu"] == "cpu" and on["conv2"] == "gpu" and on["fc/gpu"] == "gpu"
    assert on["add2"] == "gpu"  # the residual Add reads two computed tensors on the device
    assert on["conv1/concat"] == "join"  # the halves wrote into one shared buffer: no copy
    assert on["flat"] == "join" and res["gpu_fallback"] == []  # a Flatten on the GPU is a view of its input
    assert res["cpu_ms"] > 0 and res["gpu_ms"] > 0 and res["planned_ms"] > 0 and res["speedup"] > 0


def test_split_op_keeps_its_activation_fused_on_both_sides(ocl, tmp_path):
    from coexec.calibration import run_plan
    from coexec.graph_runner import GraphRunner
    from coexec.split import split_model

    model = _tiny_cnn(tmp_path / "tiny.onnx")
    plan = _plan_for(model, {"conv1": ("split", 0.5), "conv2": ("cpu", 0.0), "add2": ("cpu", 0.0),
                             "gap": ("cpu", 0.0), "flat": ("cpu", 0.0), "fc": ("cpu", 0.0)})
    plan["ops"][0]["sources"] = ["conv1", "relu1"]  # the Relu is fused into the conv's plan op
    split, _ = split_model(model, plan)
    by_name = {n.name: n for n in split.graph.node}
    # each part applies the Relu; the join comes last and makes the Relu's output
    assert {"relu1/gpu", "relu1/cpu"} <= set(by_name) and "relu1" not in by_name
    assert by_name["conv1/concat"].input[:] == ["r1/gpu", "r1/cpu"] and by_name["conv1/concat"].output[0] == "r1"
    runner = GraphRunner(split, ocl, [0])
    gpu = [a[1] for a in runner.actions if a[0] == "gpu"]
    assert [st["name"] for st in gpu] == ["conv1/gpu"] and gpu[0]["fused"] == "relu1/gpu"
    assert gpu[0]["layer"].lo == 0.0
    # the GPU half is enqueued before the CPU segment that runs the other half, which
    # runs everything up to the first use of the join as one session
    kinds = [a[0] for a in runner.actions]
    assert kinds.index("gpu") < kinds.index("cpu") and kinds.count("wait") == 1
    first_seg = next(a[1] for a in runner.actions if a[0] == "cpu")
    assert first_seg["names"] == ["conv1/cpu", "relu1/cpu"]
    res = run_plan(str(model), plan, runs=1)
    assert res["outputs_match"], res["max_rel_err"]


def test_run_refuses_a_plan_of_another_model(tmp_path, capsys):
    a = _tiny_cnn(tmp_path / "a.onnx", seed=0)
    b = _tiny_cnn(tmp_path / "b.onnx", seed=1)
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps(_plan_for(a, {"conv1": ("gpu", 1.0)})))
    assert coexec_main(["run", str(b), "--plan", str(plan), "--cpu-only"]) == 2
    assert "plan" in capsys.readouterr().err.lower()


def test_crossing_cost_is_measured_per_size_and_fitted_non_negative(ocl):
    from coexec.calibration import crossing_cost

    res = crossing_cost(ocl, [0], runs=3)
    assert [r["tensor_mb"] for r in res["sizes"]] == sorted(r["tensor_mb"] for r in res["sizes"])
    assert all(r["after_gpu_ms"] > 0 and r["after_cpu_ms"] > 0 for r in res["sizes"])
    assert res["us"] >= 0 and res["ms_per_mb"] >= 0


def test_channel_block_is_read_from_the_steps_not_from_one_reading():
    import math

    from coexec.probes import block_from_times

    # two probes (channel_block) of onnxruntime's conv on this machine while it was loaded;
    # the first has a spike at 60 channels that a rule reading single steps would take
    # for a block boundary
    spiky = {48: 0.876, 49: 0.94, 50: 0.947, 51: 0.911, 52: 0.909, 53: 0.947, 54: 0.921, 55: 0.913, 56: 0.912,
             57: 0.998, 58: 0.966, 59: 0.968, 60: 1.092, 61: 1.008, 62: 0.952, 63: 0.946, 64: 0.967}
    quiet = {48: 0.896, 49: 0.925, 50: 0.928, 51: 0.923, 52: 0.948, 53: 0.944, 54: 0.899, 55: 0.916, 56: 0.908,
             57: 0.997, 58: 0.97, 59: 0.974, 60: 0.978, 61: 1.012, 62: 0.965, 63: 0.964, 64: 0.972}
    assert block_from_times(spiky) == 8 and block_from_times(quiet) == 8
    linear = {n: 0.01 * n for n in range(48, 65)}  # time follows channels
    assert block_from_times(linear) == 1
    fours = {n: 0.1 * math.ceil(n / 4) for n in range(48, 65)}
    assert block_from_times(fours) == 4
    sixteens = {n: 0.3 + 0.1 * math.ceil(n / 16) for n in range(48, 65)}
    assert block_from_times(sixteens) == 16


def test_only_launches_something_waits_for_store_a_flag(ocl, tmp_path):
    from coexec.graph_runner import GraphRunner
    from coexec.split import split_model

    model = _tiny_cnn(tmp_path / "tiny.onnx")
    # conv1 and conv2 both on the GPU: conv2 reads conv1's output on the device, so
    # nothing waits for conv1 itself; the CPU's Add waits for conv2
    plan = _plan_for(model, {"conv1": ("gpu", 1.0), "relu1": ("gpu", 1.0), "conv2": ("gpu", 1.0),
                             "add2": ("cpu", 0.0), "gap": ("cpu", 0.0), "flat": ("cpu", 0.0), "fc": ("cpu", 0.0)})
    split, _ = split_model(model, plan)
    runner = GraphRunner(split, ocl, [0])
    gpu = {a[1]["name"]: a for a in runner.actions if a[0] == "gpu"}
    waited = {a[1] for a in runner.actions if a[0] == "wait"}
    assert set(gpu) == {"conv1", "conv2"} and waited == {gpu["conv2"][2]}
    names = lambda a: [k.function_name for k, _ in a[1]["launch"].items]  # noqa: E731
    assert "set_flag" not in names(gpu["conv1"]) and names(gpu["conv2"])[-1] == "set_flag"
    import onnxruntime as ort

    x = np.random.default_rng(1).standard_normal((1, 8, 16, 16)).astype(np.float32)
    res = runner.run({"x": x})
    ref = ort.InferenceSession(model.read_bytes(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(res["outputs"]["y"].reshape(ref.shape), ref, rtol=1e-4, atol=1e-4)


def _chained_split_convs(tmp_path, ocl):
    """The tiny CNN with conv1 (its Relu fused) and conv2 both split in half, run with SVM
    sync: conv2's GPU half reads conv1's join."""
    from coexec.graph_runner import GraphRunner
    from coexec.split import split_model

    model = _tiny_cnn(tmp_path / "tiny.onnx")
    plan = _plan_for(model, {"conv1": ("split", 0.5), "conv2": ("split", 0.5), "add2": ("cpu", 0.0),
                             "gap": ("cpu", 0.0), "flat": ("cpu", 0.0), "fc": ("cpu", 0.0)})
    plan["ops"][0]["sources"] = ["conv1", "relu1"]
    split, _ = split_model(model, plan)
    return model, GraphRunner(split, ocl, [0], "svm")


def test_a_gpu_launch_reading_a_split_ops_join_waits_behind_a_gate_for_the_cpu_half(ocl, tmp_path):
    """With SVM sync every GPU launch is enqueued when the inference starts; conv2's GPU half
    reads conv1's join, whose CPU half a later segment makes: its launch waits behind a
    gate on the device until the host releases that segment (outputs would be garbage if
    it ran on the half-written join)."""
    import onnxruntime as ort

    model, runner = _chained_split_convs(tmp_path, ocl)
    gpu = {a[1]["name"]: a[1] for a in runner.actions if a[0] == "gpu"}
    seg_of = {n: a[1]["release"] for a in runner.actions if a[0] == "cpu" for n in a[1]["names"]}
    names = lambda st: [k.function_name for k, _ in st["launch"].items]  # noqa: E731
    assert gpu["conv1/gpu"]["gate_need"] == 0 and names(gpu["conv1/gpu"])[0] != "gate"
    # the segment that makes conv1's CPU half comes after the join in the schedule
    assert gpu["conv2/gpu"]["gate_need"] == seg_of["conv1/cpu"] >= 1 and names(gpu["conv2/gpu"])[0] == "gate"
    sess = ort.InferenceSession(model.read_bytes(), providers=["CPUExecutionProvider"])
    for seed in range(3):  # repeated inferences reuse the gates and the release counter
        x = np.random.default_rng(seed).standard_normal((1, 8, 16, 16)).astype(np.float32)
        ref = sess.run(None, {"x": x})[0]
        res = runner.run({"x": x})
        np.testing.assert_allclose(res["outputs"]["y"].reshape(ref.shape), ref, rtol=1e-4, atol=1e-4)


def test_a_failing_cpu_segment_opens_the_gates_instead_of_leaving_the_device_spinning(ocl, tmp_path):
    import time

    import onnxruntime as ort

    model, runner = _chained_split_convs(tmp_path, ocl)
    seg = next(a[1] for a in runner.actions if a[0] == "cpu")
    real = seg["sess"]

    class Broken:
        def run_with_iobinding(self, io):
            raise RuntimeError("segment failed")

    seg["sess"] = Broken()
    x = np.random.default_rng(0).standard_normal((1, 8, 16, 16)).astype(np.float32)
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match="segment failed"):
        runner.run({"x": x})
    assert time.perf_counter() - t0 < 5.0  # the gated launches drained, nothing spun until its bound
    seg["sess"] = real
    ref = ort.InferenceSession(model.read_bytes(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(runner.run({"x": x})["outputs"]["y"].reshape(ref.shape), ref, rtol=1e-4, atol=1e-4)


def _mobile_blocks(path, seed=0):
    """MobileNetV3-style blocks (expand + HardSwish, depthwise + ReLU6, squeeze-excite with
    HardSigmoid and a per-channel Mul, projection + residual Add, pools, Sigmoid) and an
    attention tail (LayerNormalization, Softmax over the last axis) on one (1, 16, 14, 14) input."""
    rng = np.random.default_rng(seed)
    inits = []

    def init(name, *s):
        inits.append(numpy_helper.from_array((rng.standard_normal(s) * 0.3).astype(np.float32), name))
        return name
    n = helper.make_node
    six = numpy_helper.from_array(np.array(6.0, np.float32), "six")
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    shape = numpy_helper.from_array(np.array([1, 16, 49], np.int64), "shape")
    nodes = [n("Conv", ["x", init("w1", 32, 16, 1, 1), init("b1", 32)], ["e"], name="expand", kernel_shape=[1, 1]),
             n("HardSwish", ["e"], ["eh"], name="hswish"),
             n("Conv", ["eh", init("wd", 32, 1, 3, 3), init("bd", 32)], ["d"], name="dw", kernel_shape=[3, 3],
               pads=[1] * 4, group=32),
             n("Clip", ["d", "zero", "six"], ["dr"], name="relu6"),
             n("GlobalAveragePool", ["dr"], ["s0"], name="se_pool"),
             n("Conv", ["s0", init("ws1", 8, 32, 1, 1), init("bs1", 8)], ["s1"], name="se_fc1", kernel_shape=[1, 1]),
             n("Relu", ["s1"], ["s1r"], name="se_relu"),
             n("Conv", ["s1r", init("ws2", 32, 8, 1, 1), init("bs2", 32)], ["s2"], name="se_fc2", kernel_shape=[1, 1]),
             n("HardSigmoid", ["s2"], ["s2h"], name="se_gate", alpha=1 / 6, beta=0.5),
             n("Mul", ["dr", "s2h"], ["m"], name="se_scale"),
             n("Conv", ["m", init("wp", 16, 32, 1, 1), init("bp", 16)], ["p"], name="project", kernel_shape=[1, 1]),
             n("Add", ["p", "x"], ["r"], name="residual"),
             n("MaxPool", ["r"], ["mp"], name="maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4),
             n("AveragePool", ["mp"], ["ap"], name="avgpool", kernel_shape=[3, 3], pads=[1] * 4),
             n("Sigmoid", ["ap"], ["sg"], name="sigmoid"),
             n("Reshape", ["sg", "shape"], ["t"], name="tokens"),
             n("LayerNormalization", ["t", init("g", 49), init("beta", 49)], ["ln"], name="ln", axis=-1),
             n("Softmax", ["ln"], ["y"], name="softmax", axis=-1)]
    g = helper.make_graph(nodes, "blocks", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 14, 14])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 49])],
                          inits + [six, zero, shape])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


@pytest.mark.parametrize("sync", ["svm", "event"])
def test_mobile_and_attention_ops_run_on_the_opencl_device(ocl, tmp_path, sync):
    """Placed on the GPU, every op of the blocks runs there (depthwise, squeeze-excite,
    pools, activations, residual Add, layer norm, softmax; the Reshape as a view), and
    the outputs match onnxruntime's."""
    import onnxruntime as ort

    from coexec.graph_runner import GraphRunner

    path = _mobile_blocks(tmp_path / "blocks.onnx")
    runner = GraphRunner(onnx.load(path), ocl, sync=sync, force="gpu")
    assert runner.gpu_fallback == []
    assert np.shares_memory(runner.buf["t"], runner.buf["sg"])  # the Reshape is a view
    gpu_ops = {st["op"] for st in runner.steps if st["kind"] == "gpu"}
    assert gpu_ops == {"Conv", "HardSwish", "GlobalAveragePool", "HardSigmoid", "Mul", "Add", "MaxPool",
                       "AveragePool", "Sigmoid", "LayerNormalization", "Softmax"}
    fused = {st.get("fused") for st in runner.steps}
    assert {"relu6", "se_relu"} <= fused  # the clamps went into the depthwise conv and the 1x1 conv
    x = np.random.default_rng(1).standard_normal((1, 16, 14, 14)).astype(np.float32)
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    for _ in range(2):
        np.testing.assert_allclose(runner.run({"x": x})["outputs"]["y"], ref, rtol=1e-4, atol=1e-5)


def test_split_depthwise_and_pool_read_their_channels_in_place(ocl, tmp_path):
    """A split depthwise conv, pool, Mul and softmax: the GPU parts' channel Slices become
    views of their inputs (no Slice runs on the CPU before the GPU part: nothing falls
    back), and the co-executed outputs match onnxruntime's."""
    from coexec.calibration import run_plan
    from coexec.graph_runner import GraphRunner
    from coexec.split import split_model

    path = _mobile_blocks(tmp_path / "blocks.onnx")
    model = onnx.load(path)
    placement = {n.name: ("cpu", 0.0) for n in model.graph.node}
    placement.update({"dw": ("split", 0.5), "expand": ("gpu", 1.0), "hswish": ("gpu", 1.0), "se_scale": ("split", 0.5),
                      "maxpool": ("split", 0.5), "residual": ("gpu", 1.0), "ln": ("gpu", 1.0),
                      "softmax": ("split", 0.5)})
    plan = _plan_for(path, placement)
    res = run_plan(str(path), plan, runs=2)
    assert res["outputs_match"], res["max_rel_err"]
    assert res["gpu_fallback"] == []
    on = {o["name"]: o["on"] for o in res["ops"]}
    assert on["dw/gpu"] == "gpu" and on["maxpool/gpu"] == "gpu" and on["dw/gpu/slice"] == "join"
    split, _ = split_model(path, plan)
    runner = GraphRunner(split, ocl)
    sl = next(n for n in split.graph.node if n.name == "dw/gpu/slice")
    assert np.shares_memory(runner.buf[sl.output[0]], runner.buf[sl.input[0]])


def _attention_block(path, seed=0, t=16, d=32, heads=2):
    """A ViT encoder block as exporters write it: layer norm, Q/K/V projections (MatMul +
    bias Add), head split (Reshape + Transpose), scaled batched products, softmax, head
    merge, output projection, residual, and an erf-form GELU MLP (Div, Erf, Add, Mul)."""
    rng = np.random.default_rng(seed)
    inits = []

    def c(name, a):
        inits.append(numpy_helper.from_array(np.asarray(a, np.float32) if not isinstance(a, np.ndarray)
                                             or a.dtype != np.int64 else a, name))
        return name
    r = lambda *s: (rng.standard_normal(s) * 0.2).astype(np.float32)  # noqa: E731
    n = helper.make_node
    hd = d // heads
    split = c("split_shape", np.array([1, t, heads, hd], np.int64))
    merge = c("merge_shape", np.array([1, t, d], np.int64))
    nodes = [n("LayerNormalization", ["x", c("g1", r(d)), c("b1", r(d))], ["h"], axis=-1)]
    for q in "qkv":
        nodes += [n("MatMul", ["h", c(f"w{q}", r(d, d))], [f"{q}0"]), n("Add", [f"{q}0", c(f"b{q}", r(d))], [f"{q}1"]),
                  n("Reshape", [f"{q}1", split], [f"{q}2"]),
                  n("Transpose", [f"{q}2"], [f"{q}3"], perm=[0, 2, 3, 1] if q == "k" else [0, 2, 1, 3])]
    nodes += [n("MatMul", ["q3", "k3"], ["s0"]), n("Mul", ["s0", c("scale", np.array(hd ** -0.5))], ["s1"]),
              n("Softmax", ["s1"], ["p"], axis=-1), n("MatMul", ["p", "v3"], ["o0"]),
              n("Transpose", ["o0"], ["o1"], perm=[0, 2, 1, 3]), n("Reshape", ["o1", merge], ["o2"]),
              n("MatMul", ["o2", c("wo", r(d, d))], ["o3"]), n("Add", ["o3", c("bo", r(d))], ["o4"]),
              n("Add", ["x", "o4"], ["x1"]),
              n("MatMul", ["x1", c("w1", r(d, 2 * d))], ["f0"]), n("Add", ["f0", c("bf", r(2 * d))], ["f1"]),
              n("Div", ["f1", c("sqrt2", np.array(1.4142135))], ["f2"]), n("Erf", ["f2"], ["f3"]),
              n("Add", ["f3", c("one", np.array(1.0))], ["f4"]), n("Mul", ["f1", "f4"], ["f5"]),
              n("Mul", ["f5", c("half", np.array(0.5))], ["f6"]),
              n("MatMul", ["f6", c("w2", r(2 * d, d))], ["f7"]), n("Add", ["x1", "f7"], ["y"])]
    g = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, t, d])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, t, d])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def test_a_vision_transformer_block_runs_on_the_opencl_device(ocl, tmp_path):
    """Every node of an encoder block runs on the device (projections and batched
    products as row matmuls, head split/merge transposes, scalar and bias broadcasts,
    the erf GELU's five nodes as one kernel; reshapes as views), and the output matches
    onnxruntime's."""
    import onnxruntime as ort

    from coexec.graph_runner import GraphRunner

    path = _attention_block(tmp_path / "block.onnx")
    runner = GraphRunner(onnx.load(path), ocl, force="gpu")
    assert runner.gpu_fallback == []
    kinds = {st["layer"].kind for st in runner.steps if st["kind"] == "gpu"}
    assert kinds == {"layernorm", "matmul", "add", "mul", "unary", "transpose", "softmax"}
    gelu = [st for st in runner.steps if st["op"] == "Gelu"]  # Div, Erf, Add, Mul, Mul: one kernel
    assert len(gelu) == 1 and len(gelu[0]["fused_nodes"]) == 4 and gelu[0]["outputs"] == ["f6"]
    x = np.random.default_rng(1).standard_normal((1, 16, 32)).astype(np.float32)
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(runner.run({"x": x})["outputs"]["y"], ref, rtol=1e-4, atol=1e-5)


def test_a_gpu_placed_op_without_a_kernel_runs_on_the_cpu_and_is_reported(ocl, tmp_path):
    from coexec.graph_runner import GraphRunner

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                           helper.make_node("Tanh", ["r"], ["t"], name="tanh"),
                           helper.make_node("Sigmoid", ["t"], ["y"], name="sig")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    runner = GraphRunner(m, ocl, force="gpu")
    assert runner.gpu_fallback == ["tanh"]
    x = np.random.default_rng(0).standard_normal((1, 4, 8)).astype(np.float32)
    np.testing.assert_allclose(runner.run({"x": x})["outputs"]["y"], 1 / (1 + np.exp(-np.tanh(np.maximum(x, 0)))),
                               rtol=1e-5)


@pytest.mark.parametrize("rows,k", [(1, 64), (10, 64), (10, 24)])
def test_gemm_of_one_or_several_rows_on_the_device_matches(ocl, rows, k):
    """A Gemm over one row of 16k inputs runs the one-row linear kernel; several rows (a
    token-wise layer) or other widths run the row matmul: every row computed."""
    from coexec.graph_runner import GraphRunner

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, k)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b")
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, 16])], [w, b])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    runner = GraphRunner(m, ocl, force="gpu")
    kind = {st["layer"].kind for st in runner.steps if st["kind"] == "gpu"}
    assert kind == ({"linear"} if rows == 1 and k % 16 == 0 else {"matmul"})
    x = rng.standard_normal((rows, k)).astype(np.float32)
    ref = x @ numpy_helper.to_array(w).T + numpy_helper.to_array(b)
    np.testing.assert_allclose(runner.run({"x": x})["outputs"]["y"], ref, rtol=1e-4, atol=1e-4)
