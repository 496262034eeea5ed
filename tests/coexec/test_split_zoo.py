"""Split correctness over the zoo: for each model (random weights), the plan made from the
pixel4 profiles and a forced plan splitting every splittable op at 1/2 (channel and row
splits alternating) are applied with ``split_model``; onnxruntime runs the original and the
split model on the same input and their outputs agree.

A representative set (every op kind of the zoo: plain, depthwise and grouped convs,
squeeze-excite, shuffles, dense concats, attention, windows, tokens) runs by default; the
whole zoo is the ``slow`` sweep (``pytest -m slow``)."""

from __future__ import annotations


import numpy as np
import onnx
import onnxruntime as ort
import pytest

import oplat.zoo as zoo
from coexec.plan import forced_plan, make_plan
from coexec.split import split_model
from oplat.profile import load_profile

TOL = 1e-5
REPRESENTATIVE = ("resnet18", "resnext26_32x4d", "mobilenet_v2_0.35", "mobilenet_v3_small_0.75", "shufflenet_v2_0.5",
                  "squeezenet1_1", "densenet121", "regnety_200mf", "ghostnet_1.0", "efficientnet_lite0",
                  "vit_tiny_patch16_224", "swin_tiny_patch4_window7_224", "mobilevit_xxs", "levit_128s", "mit_b0")


@pytest.fixture(scope="module")
def profiles():
    return load_profile("pixel4/tflite-cpu-3med"), load_profile("pixel4/tflite-gpu")


def _run(path, x):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})


def check_model(name: str, profiles, tmp_path) -> None:
    cpu, gpu = profiles
    path = tmp_path / f"{name}.onnx"
    onnx.save(zoo.build(name), path)
    dims = [d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(0).standard_normal(dims).astype(np.float32)
    ref = _run(path, x)
    planned = make_plan(path, cpu, gpu, sync_us=10)
    forced = forced_plan(planned)
    for label, plan in (("planned", planned), ("forced", forced)):
        out = tmp_path / f"{name}.{label}.onnx"
        m, _kept = split_model(path, plan, out)
        onnx.checker.check_model(m)
        got = _run(out, x)
        err = max(float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(a))), 1e-12) for a, b in zip(ref, got))
        assert err <= TOL, f"{name} {label}: max relative difference {err:.2g}"
    assert sum(1 for nd in split_model(path, forced, tmp_path / "again.onnx")[0].graph.node
               if nd.name.endswith("/concat")) > 0  # the forced plan really split something


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_split_model_computes_what_the_original_does(name, profiles, tmp_path):
    check_model(name, profiles, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(zoo.list_models()) - set(REPRESENTATIVE)))
def test_split_model_whole_zoo(name, profiles, tmp_path):
    check_model(name, profiles, tmp_path)


def _torch_like(path):
    """What torch.onnx exports look like: unnamed or path-named nodes, a Clip's bounds in
    Constant nodes right before it, a weight renamed by an Identity."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = lambda n, s: numpy_helper.from_array((rng.standard_normal(s) * 0.1).astype(np.float32), n)  # noqa: E731
    c = lambda out, v: helper.make_node("Constant", [], [out], value=numpy_helper.from_array(  # noqa: E731
        np.array(v, np.float32)))
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
             c("lo1", 0.0), c("hi1", 6.0), helper.make_node("Clip", ["c1", "lo1", "hi1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=32,
                              name="/features/stage1/unit1/conv2/conv/Conv"),
             c("lo2", 0.0), c("hi2", 6.0), helper.make_node("Clip", ["c2", "lo2", "hi2"], ["r2"]),
             helper.make_node("Identity", ["w3"], ["w3_shared"]),
             helper.make_node("Conv", ["r2", "w3_shared"], ["c3"], kernel_shape=[1, 1]),
             helper.make_node("GlobalAveragePool", ["c3"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "w4", "b4"], ["y"], transB=1)]
    g = helper.make_graph(nodes, "torch_like", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
                          [w("w1", (32, 3, 3, 3)), w("b1", (32,)), w("w2", (32, 1, 3, 3)), w("w3", (64, 32, 1, 1)),
                           w("w4", (10, 64)), w("b4", (10,))])
    onnx.save(onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 17)]), path)
    return path


def test_split_of_a_torch_like_export(profiles, tmp_path):
    path = _torch_like(tmp_path / "t.onnx")
    cpu, gpu = profiles
    forced = forced_plan(make_plan(path, cpu, gpu, sync_us=10))
    m, kept = split_model(path, forced, tmp_path / "split.onnx")
    onnx.checker.check_model(m)
    assert not kept or all("no split rule" in k["reason"] for k in kept)
    assert sum(1 for nd in m.graph.node if nd.name.endswith("/concat")) == 5  # 3 convs, the pool, the Gemm
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    ref, got = _run(path, x)[0], _run(tmp_path / "split.onnx", x)[0]
    assert float(np.max(np.abs(ref - got))) <= 1e-4 * float(np.max(np.abs(ref)))


def test_split_of_an_export_with_its_weights_beside_it(profiles, tmp_path):
    """torch.onnx.export(..., dynamo=True) writes model.onnx plus model.onnx.data: the split
    reads the weights from there and computes what the original does."""
    src = _torch_like(tmp_path / "t.onnx")
    path = tmp_path / "ext" / "model.onnx"
    path.parent.mkdir()
    onnx.save(onnx.load(src), path, save_as_external_data=True, all_tensors_to_one_file=True,
              location="model.onnx.data", size_threshold=0)
    cpu, gpu = profiles
    forced = forced_plan(make_plan(path, cpu, gpu, sync_us=10))
    m, _ = split_model(path, forced, tmp_path / "split.onnx")
    onnx.checker.check_model(m)
    x = np.random.default_rng(2).standard_normal((1, 3, 64, 64)).astype(np.float32)
    ref, got = _run(path, x)[0], _run(tmp_path / "split.onnx", x)[0]
    assert float(np.max(np.abs(ref - got))) <= 1e-4 * float(np.max(np.abs(ref)))
