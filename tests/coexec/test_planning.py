"""Co-execution planner, plan format and graph splitter."""

import itertools
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import oplat.zoo as zoo
from coexec.cli import main as coexec_main
from coexec.cost import CostModel, build_units
from coexec.plan import PlanError, forced_plan, make_plan, validate_plan
from coexec.planner import SMALL_MODEL_UNITS, Decision, Timeline, oracle_search, plan, plan_dp, simulate
from coexec.split import split_model
from oplat.onnx_loader import load_onnx
from oplat.profile import load_profile
from oplat.zoo import zoo_dir

CPU, GPU = "pixel4/tflite-cpu-3med", "pixel4/tflite-gpu"


@pytest.fixture(scope="module")
def profiles():
    return load_profile(CPU), load_profile(GPU)


def _save(tmp_path, name):
    p = tmp_path / f"{name}.onnx"
    onnx.save(zoo.build(name), p)
    return p


def _run(path, x):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})


def _input(path):
    dims = [d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim]
    return np.random.default_rng(0).standard_normal(dims).astype(np.float32)


@pytest.mark.parametrize("name", ["mobilenet_v2_0.35", "shufflenet_v2_0.5", "resnext26_32x4d",
                                  "vit_tiny_patch32_224"])
def test_forced_split_of_every_splittable_op_is_numerically_identical(tmp_path, name):
    path = _save(tmp_path, name)
    plan = make_plan(path, CPU, GPU, sync_us=10)
    plan = forced_plan(plan)
    n_split = sum(1 for op in plan["ops"] if op["splittable"])
    m, kept = split_model(path, plan, tmp_path / "split.onnx")
    assert not kept
    concats = [n for n in m.graph.node if n.name.endswith("/concat")]
    assert len(concats) >= n_split * 0.9
    assert [i.name for i in m.graph.input] == [i.name for i in onnx.load(str(path)).graph.input]
    assert [o.name for o in m.graph.output] == [o.name for o in onnx.load(str(path)).graph.output]
    placement = json.loads(next(p.value for p in m.metadata_props if p.key == "coexec.placement"))
    assert {"cpu", "gpu"} <= set(placement.values())
    x = _input(path)
    a, b = _run(path, x)[0], _run(tmp_path / "split.onnx", x)[0]
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * float(np.abs(a).max()))


def test_dp_planner_matches_brute_force_on_a_small_chain(profiles):
    cpu, gpu = profiles
    g = load_onnx(zoo.build("resnet10"))
    units = build_units(g, gpu, cpu)[:5]
    for i, u in enumerate(units):  # make it a chain of the first five units
        u.producers = [i - 1] if i else []
    cm = CostModel(units, gpu, cpu, steps=4, sync_us=50)
    states = [Decision("channel", 0), Decision("channel", 4)] + [Decision(d, i) for d in cm.dims for i in (1, 2, 3)]

    def chain_cost(plan):
        # the DP's objective: per-unit max of the two sides plus a sync when data crosses
        total = 0.0
        for i, d in enumerate(plan):
            g_ms, c_ms = cm.unit_ms(units[i].index, d.index, d.dim)
            total += max(g_ms if d.index > 0 else 0.0, c_ms if d.index < 4 else 0.0)
            if i:
                p = plan[i - 1]
                crosses = (p.index > 0 and d.index < 4) or (p.index < 4 and d.index > 0)
                if crosses and not (p.index == 4 and d.index == 4) and not (p.index == 0 and d.index == 0):
                    total += cm.sync_ms
        return total

    brute = min(chain_cost(list(p)) for p in itertools.product(states, repeat=len(units)))
    assert chain_cost(plan_dp(cm)) == pytest.approx(brute, rel=1e-9)


def test_sync_cost_decides_how_much_is_split(tmp_path):
    path = _save(tmp_path, "resnet18")
    cheap = make_plan(path, CPU, GPU, sync_us=10)
    costly = make_plan(path, CPU, GPU, sync_us=5000)
    assert cheap["split_share"] > costly["split_share"]
    assert cheap["predicted_ms"]["coexec"] <= min(cheap["predicted_ms"]["cpu"], cheap["predicted_ms"]["gpu"])
    assert cheap["speedup"] > 1.05
    assert costly["speedup"] >= 1.0


def test_dp_alone_is_close_to_the_oracle(profiles):
    cpu, gpu = profiles
    g = load_onnx(zoo.build("mobilenet_v2_0.5"))
    cm = CostModel(build_units(g, gpu, cpu), gpu, cpu, steps=8, sync_us=100)
    planned, _ = simulate(cm, plan_dp(cm))
    _, best = oracle_search(cm, starts=[plan_dp(cm)], max_sweeps=2)
    assert best <= planned + 1e-9
    assert planned <= best * 1.03


@pytest.mark.parametrize("name", ["resnet34", "ghostnet_1.0"])
def test_planner_is_within_two_percent_of_the_oracle_where_branches_matter(profiles, name):
    # residual branches: the DP alone was 5.9% (resnet34) and 7.5% (ghostnet) above the oracle
    cpu, gpu = profiles
    cm = CostModel(build_units(load_onnx(zoo.build(name, graph_only=True)), gpu, cpu), gpu, cpu, sync_us=100)
    assert len(cm.units) > SMALL_MODEL_UNITS or name == "resnet34"
    planned, _ = simulate(cm, plan(cm))
    _, best = oracle_search(cm, starts=[plan_dp(cm)])
    assert planned <= best * 1.02


def test_timeline_resumed_from_a_base_run_equals_a_full_run(profiles):
    cpu, gpu = profiles
    cm = CostModel(build_units(load_onnx(zoo.build("resnet18", graph_only=True)), gpu, cpu), gpu, cpu, sync_us=100,
                   dims=("channel", "row"))
    tl = Timeline(cm)
    rng = np.random.default_rng(0)
    codes = [tl.code(Decision("channel", int(rng.integers(0, cm.steps + 1)) if u.split_kind else cm.steps))
             for u in cm.units]
    total, base = tl.run(codes)
    for i in range(0, len(codes), 5):
        other = list(codes)
        other[i] = tl.code(Decision("row", 5)) if cm.units[i].split_kind == "conv" else tl.code(Decision("channel", 0))
        assert tl.run(other, start=i, base=base)[0] == pytest.approx(tl.run(other)[0], rel=1e-12)
        assert tl.run(other, start=i, base=base, bound=1e-6)[0] == float("inf")
    assert tl.run(codes, start=3, base=base)[0] == pytest.approx(total, rel=1e-12)


def test_plan_json_contract_and_bad_plans(tmp_path, capsys):
    path = _save(tmp_path, "mobilenet_v2_0.35")
    out = tmp_path / "plan.json"
    png = tmp_path / "plan.png"
    assert coexec_main(["plan", str(path), "--cpu-profile", CPU, "--gpu-profile", GPU, "--sync-us", "10",
                        "--json", "-o", str(out), "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plan = json.loads(capsys.readouterr().out)
    assert set(plan["predicted_ms"]) == {"cpu", "gpu", "coexec"}
    assert all({"name", "placement", "ratio"} <= set(o) for o in plan["ops"])
    assert json.loads(out.read_text())["model_sha256"] == plan["model_sha256"]
    validate_plan(plan, path)
    bad = dict(plan, ops=[dict(plan["ops"][0], ratio=1.5)] + plan["ops"][1:])
    with pytest.raises(PlanError, match="outside"):
        validate_plan(bad)
    other = _save(tmp_path, "mobilenet_v2_0.5")
    (tmp_path / "p.json").write_text(json.dumps(plan))
    assert coexec_main(["split", str(other), str(tmp_path / "p.json"), "-o", str(tmp_path / "s.onnx")]) == 2
    assert "another model" in capsys.readouterr().err
    assert coexec_main(["plan", str(path), "--cpu-profile", "s10/tflite-cpu-1large", "--gpu-profile", GPU]) == 2
    assert "different devices" in capsys.readouterr().err


def test_graph_only_models_plan_but_do_not_split(tmp_path):
    path = tmp_path / "g.onnx"
    onnx.save(zoo.build("mobilenet_v2_0.35", graph_only=True), path)
    plan = make_plan(path, CPU, GPU, sync_us=10)
    plan["ops"][0].update(placement="split", ratio=0.5, dimension="channel")
    with pytest.raises(PlanError, match="graph-only"):
        split_model(path, plan)


def test_min_gain_keeps_the_faster_processor_alone(tmp_path):
    path = _save(tmp_path, "mobilenet_v2_0.35")
    base = make_plan(path, CPU, GPU, sync_us=10, dims=("channel",))
    gain = base["speedup"] - 1.0
    assert gain > 0.01
    same = make_plan(path, CPU, GPU, sync_us=10, dims=("channel",), min_gain=gain * 0.9)
    assert same["speedup"] == base["speedup"] and not same["kept_single"]
    kept = make_plan(path, CPU, GPU, sync_us=10, dims=("channel",), min_gain=gain * 1.1)
    assert kept["kept_single"] and kept["speedup"] == 1.0
    assert {o["placement"] for o in kept["ops"]} == {base["faster_single"]}


def test_a_measured_boundary_cost_in_the_cpu_profile_joins_every_sync(tmp_path):
    import shutil

    from oplat.profile import resolve_profile

    path = _save(tmp_path, "mobilenet_v2_0.35")
    folder = tmp_path / "cpu"
    shutil.copytree(resolve_profile(CPU), folder)
    meta = json.loads((folder / "profile.json").read_text())
    base = make_plan(path, str(folder), GPU, sync_us=10, dims=("channel",))
    meta["boundary"] = {"us": 400.0, "ms_per_mb": 0.5, "crossing": {"us": 50.0, "ms_per_mb": 0.1}}
    (folder / "profile.json").write_text(json.dumps(meta))
    costly = make_plan(path, str(folder), GPU, sync_us=10, dims=("channel",))
    assert costly["boundary_us"] == 400.0 and costly["boundary_ms_per_mb"] == 0.5
    assert costly["crossing_us"] == 50.0 and costly["crossing_ms_per_mb"] == 0.1
    n = lambda p: sum(o["placement"] != p["faster_single"] for o in p["ops"])  # noqa: E731
    assert n(costly) < n(base)  # dearer processor changes: fewer ops leave the faster processor
    # inside a run of CPU ops the cut-out cost that single-op timings carry is not paid
    assert costly["predicted_ms"]["cpu"] < base["predicted_ms"]["cpu"]


def test_boundary_fit_recovers_known_costs():
    from coexec.calibration import fit_boundary

    rows = [{"model": str(i), "whole_ms": 5.0, "boundaries": n, "crossing_mb": mb,
             "cut_ms": 5.0 + n * 0.04 + mb * 0.02} for i, (n, mb) in enumerate([(50, 20), (80, 10), (120, 40), (30, 30)])]
    fit = fit_boundary(rows)
    assert fit["us"] == pytest.approx(40.0, rel=1e-6) and fit["ms_per_mb"] == pytest.approx(0.02, rel=1e-6)
    rows = [dict(r, cut_ms=r["whole_ms"] + r["boundaries"] * 0.05 - r["crossing_mb"] * 0.001) for r in rows]
    fit = fit_boundary(rows)  # a negative per-MB term is not physical: one term only
    assert fit["ms_per_mb"] == 0.0 and fit["us"] > 0
    fit = fit_boundary(rows, floor_us=80.0)  # a segment costs at least what one call does
    assert fit["us"] == pytest.approx(80.0) and fit["ms_per_mb"] >= 0.0


def test_batchnorm_folds_into_its_conv_only_when_it_is_the_sole_consumer(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    from coexec.split import fold_batchnorm

    rng = np.random.default_rng(0)
    c = lambda name, *shape: numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)  # noqa: E731
    var = numpy_helper.from_array(rng.uniform(0.5, 2.0, 8).astype(np.float32), "v")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "beta", "m", "v"], ["bn"], name="bn", epsilon=1e-3),
             helper.make_node("Relu", ["bn"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["c2"], name="conv2"),
             helper.make_node("BatchNormalization", ["c2", "s", "beta", "m", "v"], ["bn2"], name="bn2"),
             helper.make_node("Add", ["bn2", "c2"], ["y"], name="add")]  # conv2 feeds two nodes: kept
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 6])],
                          [c("w", 8, 4, 3, 3), c("b", 8), c("s", 8), c("beta", 8), c("m", 8), var, c("w2", 8, 8, 1, 1)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    folded = fold_batchnorm(m)
    assert [n.op_type for n in folded.graph.node] == ["Conv", "Relu", "Conv", "BatchNormalization", "Add"]
    onnx.checker.check_model(folded)
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    run = lambda mm: ort.InferenceSession(mm.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]  # noqa: E731
    np.testing.assert_allclose(run(folded), run(m), rtol=1e-5, atol=1e-5)
    assert len(m.graph.node) == 6  # the input model is left alone


def test_a_linked_residual_add_makes_its_other_branch_a_dependency(tmp_path, profiles):
    cpu, gpu = profiles
    units = build_units(load_onnx(str(_save(tmp_path, "resnet18_w0.5"))), gpu, cpu)
    checked = 0
    for u in units:
        adds = [s for s in u.sources if s.startswith("Add")]
        if not adds:
            continue
        # the unit's Add reads the shortcut (or the other conv branch): whatever unit
        # wrote that tensor must finish first
        g = load_onnx(str(tmp_path / "resnet18_w0.5.onnx"))
        for t in g.op(adds[0]).inputs:
            w = g.producer(t)
            owner = next((v.index for v in units if w is not None and w.name in v.sources), None)
            if owner is not None and owner != u.index:
                assert owner in u.producers
                checked += 1
    assert checked >= 8


def test_a_cpu_op_reading_gpu_output_pays_the_cut_as_work(tmp_path, profiles):
    """The boundary cost is CPU work at the cut (not latency a slow GPU can hide)."""
    cpu, gpu = profiles
    units = build_units(load_onnx(str(_save(tmp_path, "mobilenet_v2_0.35"))), gpu, cpu)
    cm = CostModel(units, gpu, cpu, steps=16, sync_us=10, cpu_boundary=(300.0, 0.5))
    chain = next(u for u in units if u.producers and len(units[u.producers[0]].cpu) and u.index > 3)
    p = chain.producers[0]
    decisions = [Decision("channel", 0)] * len(units)
    decisions[p] = Decision("channel", 16)  # the producer on the GPU, the unit on the CPU
    _, detail = simulate(cm, decisions)
    own = cm.unit_ms(chain.index, 0)[1]
    cut = 0.3 + 0.5 * sum(units[q].out_bytes for q in chain.producers if decisions[q].index > 0) / 1e6
    assert detail[chain.index]["cpu_ms"] == pytest.approx(own + cut)
    decisions[p] = Decision("channel", 0)  # all on the CPU: no cut
    _, detail = simulate(cm, decisions)
    assert detail[chain.index]["cpu_ms"] == pytest.approx(own)


def test_context_fit_recovers_known_costs():
    from coexec.calibration import fit_context

    rng = np.random.default_rng(0)
    rows = []
    for m in range(3):
        segs = [{"ms": 0.0, "predicted_ms": 1.0, "nodes": 3, "gpu_in_mb": 0.0}]  # the first: not a cut
        for _ in range(30):
            p, mb = float(rng.uniform(0.05, 2.0)), float(rng.uniform(0.0, 1.5))
            segs.append({"ms": 1.2 * p + 0.06 + 0.1 * mb, "predicted_ms": p, "nodes": 1, "gpu_in_mb": mb})
        launches = [{"ms": 1.3 * p, "predicted_ms": p} for p in rng.uniform(0.1, 3.0, 10)]
        rows.append({"model": str(m), "segments": segs, "launches": launches, "host_ms": 0.25, "gpu_launches": 10})
    fit = fit_context(rows)
    assert fit["cpu_factor"] == pytest.approx(1.2, rel=1e-3) and fit["cpu_us"] == pytest.approx(60.0, rel=1e-2)
    assert fit["cpu_ms_per_mb"] == pytest.approx(0.1, rel=1e-2) and fit["gpu_factor"] == pytest.approx(1.3, rel=1e-3)
    assert fit["host_us"] == pytest.approx(25.0) and fit["segments"] == 90
    assert fit["cpu_mape_after"] < 1e-6 < fit["cpu_mape_before"]
    # segments faster than predicted by a constant: no negative per-cut cost
    for r in rows:
        for s in r["segments"]:
            s["ms"] = s["predicted_ms"] - 0.01
    fit = fit_context(rows)
    assert fit["cpu_us"] >= 0 and fit["cpu_ms_per_mb"] >= 0 and fit["cpu_factor"] > 0
    assert fit["cpu_mape_after"] <= fit["cpu_mape_before"]  # the constrained fit never does worse than none


def test_context_costs_make_gpu_work_dearer_on_the_timeline(tmp_path, profiles):
    cpu, gpu = profiles
    units = build_units(load_onnx(str(_save(tmp_path, "mobilenet_v2_0.35"))), gpu, cpu)
    base = CostModel(units, gpu, cpu, steps=16, sync_us=10)
    ctx = CostModel(units, gpu, cpu, steps=16, sync_us=10,
                    context={"cpu_factor": 1.5, "cpu_us": 200.0, "cpu_ms_per_mb": 0.0, "gpu_factor": 2.0,
                             "host_us": 100.0})
    n = len(units)
    all_cpu = [Decision("channel", 0)] * n
    # nothing on the GPU: no launch, no cut, no factor
    assert simulate(ctx, all_cpu)[0] == pytest.approx(simulate(base, all_cpu)[0])
    half = [Decision("channel", 8 if u.split_kind == "conv" else 0) for u in units]
    t_base, d_base = simulate(base, half)
    t_ctx, d_ctx = simulate(ctx, half)
    assert t_ctx > t_base
    i = next(u.index for u in units if u.split_kind == "conv")
    assert d_ctx[i]["gpu_ms"] == pytest.approx(2.0 * d_base[i]["gpu_ms"])
    assert d_ctx[i]["cpu_ms"] >= 1.5 * d_base[i]["cpu_ms"] - 1e-9
    # the planner splits fewer ops when splitting costs more
    from coexec.planner import plan

    split = lambda ds: sum(0 < d.index < 16 for d in ds)  # noqa: E731
    assert split(plan(ctx)) <= split(plan(base))


def test_a_plan_made_with_a_profile_of_another_cpu_says_so(tmp_path, capsys):
    import json
    import shutil

    from coexec.cli import main
    from coexec.plan import make_plan
    from conftest import ROOT

    from oplat.machine import cpu_identity

    folders = {}
    for name, machine in (("coexec-cpu", cpu_identity()), ("coexec-ocl", {"cpu": "Fake CPU", "cpu_id": "1/2/3"})):
        folders[name] = tmp_path / name
        shutil.copytree(ROOT / "device_profiles" / "host" / name, folders[name])
        meta = json.loads((folders[name] / "profile.json").read_text())
        meta["collection"]["machine"].update(machine)
        (folders[name] / "profile.json").write_text(json.dumps(meta))
    cpu, ocl = folders["coexec-cpu"], folders["coexec-ocl"]
    model = zoo_dir("samples") / "resnet18.onnx"
    plan = make_plan(model, cpu, ocl, dims=("channel",))
    assert list(plan["profiles_measured_elsewhere"]) == ["host/coexec-ocl"]  # this machine's CPU profile is not
    assert "Fake CPU 1/2/3" in plan["profiles_measured_elsewhere"]["host/coexec-ocl"]
    assert main(["plan", str(model), "--cpu-profile", str(cpu), "--gpu-profile", str(ocl), "--json"]) == 0
    assert "host/coexec-ocl was measured on Fake CPU 1/2/3" in capsys.readouterr().err
