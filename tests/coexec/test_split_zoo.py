"""Split correctness over the zoo: for each model (random weights), the plan made from the
pixel4 profiles and a forced plan splitting every splittable op at 1/2 (channel and row
splits alternating) are applied with ``split_model``; onnxruntime runs the original and the
split model on the same input and their outputs agree.

A representative set (every op kind of the zoo: plain, depthwise and grouped convs,
squeeze-excite, shuffles, dense concats, attention, windows, tokens) runs by default; the
whole zoo is the ``slow`` sweep (``pytest -m slow``)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import oplat.zoo as zoo
from coexec.plan import make_plan
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


def _forced(plan: dict) -> dict:
    forced = json.loads(json.dumps(plan))
    for i, op in enumerate(forced["ops"]):
        if op["splittable"]:
            op["placement"], op["ratio"] = "split", 0.5
            op["dimension"] = "row" if i % 2 and op["kernel"] in ("CONV_2D", "DEPTHWISE_CONV_2D") else "channel"
    return forced


def check_model(name: str, profiles, tmp_path) -> None:
    cpu, gpu = profiles
    path = tmp_path / f"{name}.onnx"
    onnx.save(zoo.build(name), path)
    dims = [d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(0).standard_normal(dims).astype(np.float32)
    ref = _run(path, x)
    planned = make_plan(path, cpu, gpu, sync_us=10)
    forced = _forced(planned)
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
