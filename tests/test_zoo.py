import numpy as np
import onnx
import onnxruntime as ort
import pytest

from models.zoo.nb201 import nb201_model, parse_arch, random_arch
from oplat.graph_only import is_graph_only
from oplat.lowering import lower
from oplat.onnx_loader import load_onnx

ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"


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
