"""A seeded corpus of broken and hostile model files, and the invariant every command that
reads a model must hold on it: a clean one-line error (exit 2) or a finite prediction,
never an uncaught exception, a hang or a huge allocation.

The corpus is made at run time in seconds from small models built here: truncations and
bit flips of valid ONNX and .tflite files, and hand-broken graphs (cycles, dangling
inputs, duplicate outputs, bad attributes, kernels larger than their input, zero strides,
huge dims, ranges that would allocate gigabytes, non-UTF-8 names, ...).

    from oplat.fuzz import corpus, run_case
    for name, data in corpus(seed=0, n=300): ...
"""

from __future__ import annotations

import io
import json
import math
import random
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUTCOMES = ("ok", "refused", "crash")


def _model(nodes, inputs, outputs, inits=(), opset: int = 17, name: str = "g") -> onnx.ModelProto:
    g = helper.make_graph(list(nodes), name, list(inputs), list(outputs), list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _vi(name: str, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _w(name: str, shape, rng: np.random.Generator):
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def small_cnn(rng: np.random.Generator, c: int = 8, hw: int = 16) -> onnx.ModelProto:
    """A valid little CNN: conv-relu, depthwise conv, pool, global pool, Gemm."""
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=c),
             helper.make_node("MaxPool", ["c2"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["p"], ["gap"]),
             helper.make_node("Flatten", ["gap"], ["f"]),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], transB=1)]
    inits = [_w("w1", (c, 3, 3, 3), rng), _w("b1", (c,), rng), _w("w2", (c, 1, 3, 3), rng),
             _w("w3", (10, c), rng), _w("b3", (10,), rng)]
    return _model(nodes, [_vi("x", [1, 3, hw, hw])], [_vi("y", [1, 10])], inits)


def _absent(name: str, dims) -> TensorProto:
    """An initializer with dims only: its data marked external and absent (graph-only)."""
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(dims))
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "__weights_absent__"), ("offset", "0"), ("length", "0")):
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


def _conv_model(rng, attrs: dict, wshape=(8, 3, 3, 3), xshape=(1, 3, 16, 16)) -> onnx.ModelProto:
    return _model([helper.make_node("Conv", ["x", "w"], ["y"], **attrs)], [_vi("x", list(xshape))],
                  [_vi("y", None)], [_w("w", wshape, rng)])


def structural_cases(rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """Hand-broken graphs, each one thing a runtime would reject (or that must not be
    allowed to allocate or run for long)."""
    out: list[tuple[str, onnx.ModelProto | bytes]] = []
    relu = lambda i, o: helper.make_node("Relu", [i], [o])  # noqa: E731
    out.append(("cycle", _model([relu("x", "a"), helper.make_node("Add", ["a", "b"], ["b2"]), relu("b2", "b")],
                                [_vi("x", [1, 4])], [_vi("b", [1, 4])])))
    out.append(("dangling_input", _model([helper.make_node("Add", ["x", "nowhere"], ["y"])], [_vi("x", [1, 4])],
                                         [_vi("y", [1, 4])])))
    out.append(("duplicate_output", _model([relu("x", "y"), relu("x", "y")], [_vi("x", [1, 4])],
                                           [_vi("y", [1, 4])])))
    out.append(("kernel_larger_than_input", _conv_model(rng, {"kernel_shape": [9, 9]}, (8, 3, 9, 9), (1, 3, 4, 4))))
    out.append(("group_not_dividing", _conv_model(rng, {"group": 3}, (8, 1, 3, 3), (1, 4, 16, 16))))
    out.append(("group_zero", _conv_model(rng, {"group": 0})))
    out.append(("stride_zero", _conv_model(rng, {"strides": [0, 0]})))
    out.append(("dilation_huge", _conv_model(rng, {"dilations": [10 ** 9, 10 ** 9]})))
    out.append(("pool_no_kernel", _model([helper.make_node("MaxPool", ["x"], ["y"])], [_vi("x", [1, 3, 8, 8])],
                                         [_vi("y", None)])))
    out.append(("pool_stride_zero", _model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2],
                                                             strides=[0, 0])], [_vi("x", [1, 3, 8, 8])],
                                           [_vi("y", None)])))
    out.append(("concat_axis_9", _model([helper.make_node("Concat", ["x", "x"], ["y"], axis=9)],
                                        [_vi("x", [1, 3, 8, 8])], [_vi("y", None)])))
    neg = _conv_model(rng, {})
    neg.graph.initializer[0].dims[0] = -8
    out.append(("negative_init_dims", neg))
    zero = _conv_model(rng, {}, xshape=(1, 3, 0, 16))
    out.append(("zero_dim_input", zero))
    out.append(("tiny_image", _conv_model(rng, {"kernel_shape": [3, 3]}, xshape=(1, 3, 2, 2))))
    out.append(("huge_dims_graph_only", _model(
        [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3])], [_vi("x", [1, 100000, 16, 16])],
        [_vi("y", None)], [_absent("w", [100000, 100000, 3, 3])])))
    out.append(("huge_range", _model(
        [helper.make_node("Range", ["s", "l", "d"], ["r"]), helper.make_node("Shape", ["r"], ["y"])],
        [], [_vi("y", None, TensorProto.INT64)],
        [numpy_helper.from_array(np.array(0.0, np.float32), "s"),
         numpy_helper.from_array(np.array(1e12, np.float32), "l"),
         numpy_helper.from_array(np.array(1.0, np.float32), "d")])))
    out.append(("huge_constant_of_shape", _model(
        [helper.make_node("ConstantOfShape", ["s"], ["c"]), helper.make_node("Shape", ["c"], ["y"])],
        [], [_vi("y", None, TensorProto.INT64)],
        [numpy_helper.from_array(np.array([100000, 100000, 1000], np.int64), "s")])))
    out.append(("wrong_attr_type", _model([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape="3x3")],
                                          [_vi("x", [1, 3, 8, 8])], [_vi("y", None)], [_w("w", (4, 3, 3, 3), rng)])))
    out.append(("conv_rank_5_weights", _conv_model(rng, {}, (8, 3, 3, 3, 3), (1, 3, 8, 8))))
    out.append(("gemm_mismatch", _model([helper.make_node("Gemm", ["x", "w"], ["y"])], [_vi("x", [1, 16])],
                                        [_vi("y", None)], [_w("w", (7, 5), rng)])))
    out.append(("no_nodes", _model([], [_vi("x", [1, 4])], [_vi("x", [1, 4])])))
    out.append(("unknown_op", _model([helper.make_node("FancyOp", ["x"], ["y"], domain="com.example")],
                                     [_vi("x", [1, 3, 8, 8])], [_vi("y", None)])))
    out.append(("lstm_only", _model([helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=32)],
                                    [_vi("x", [10, 1, 16])], [_vi("y", None)],
                                    [_w("W", (1, 128, 16), rng), _w("R", (1, 128, 32), rng)])))
    return [(f"struct_{name}.onnx", m.SerializeToString() if isinstance(m, onnx.ModelProto) else m)
            for name, m in out]


def edge_models(rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """Unusual but valid models that must predict (exit 0, a finite total)."""
    out = [("small_cnn", small_cnn(rng)), ("small_cnn_tiny", small_cnn(rng, 4, 4))]
    conv1d = _model([helper.make_node("Conv", ["x", "w1"], ["c1"], kernel_shape=[3], pads=[1, 1]),
                     helper.make_node("Relu", ["c1"], ["r"]),
                     helper.make_node("Conv", ["r", "w2"], ["c2"], kernel_shape=[5], strides=[2]),
                     helper.make_node("GlobalAveragePool", ["c2"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
                     helper.make_node("Gemm", ["f", "w3"], ["y"], transB=1)],
                    [_vi("x", [1, 40, 100])], [_vi("y", [1, 12])],
                    [_w("w1", (32, 40, 3), rng), _w("w2", (32, 32, 5), rng), _w("w3", (12, 32), rng)])
    out.append(("conv1d_keyword_spotting", conv1d))
    custom = small_cnn(rng)  # one custom-domain op among convs: predicted, flagged incomplete
    custom.graph.node.insert(2, helper.make_node("Swizzle", ["r1"], ["r1s"], domain="com.example"))
    custom.graph.node[3].input[0] = "r1s"
    custom.opset_import.append(helper.make_opsetid("com.example", 1))
    out.append(("custom_op_among_convs", custom))
    named = small_cnn(rng)
    named.graph.node[0].name = "conv@@@@"
    return [(f"edge_{n}.onnx", m.SerializeToString()) for n, m in out] + [
        ("edge_non_utf8_names.onnx", named.SerializeToString().replace(b"conv@@@@", b"conv\xff\xfe\x80\xc3"))]


def _tflite_bytes(rng: np.random.Generator) -> bytes | None:
    try:
        from .onnx2tflite import onnx_to_tflite

        return onnx_to_tflite(small_cnn(rng), nhwc_inputs=True)
    except Exception:  # noqa: BLE001 - LiteRT's schema absent: no .tflite seeds
        return None


def corpus(seed: int = 0, n: int = 300) -> list[tuple[str, bytes]]:
    """``n`` mutated files (plus the structural cases): truncations, bit flips, byte
    insertions and deletions of valid ONNX and .tflite seeds. Deterministic for a seed."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    seeds = [("onnx", small_cnn(nrng).SerializeToString()), ("onnx", small_cnn(nrng, 4, 8).SerializeToString())]
    tfl = _tflite_bytes(nrng)
    if tfl:
        seeds.append(("tflite", tfl))
    out = structural_cases(nrng) + edge_models(nrng)
    for i in range(n):
        ext, data = seeds[i % len(seeds)]
        b = bytearray(data)
        kind = rng.choice(("truncate", "flip", "flip_many", "insert", "delete", "zero_run"))
        if kind == "truncate":
            b = b[:rng.randrange(0, len(b))]
        elif kind == "flip":
            pos = rng.randrange(len(b))
            b[pos] ^= 1 << rng.randrange(8)
        elif kind == "flip_many":
            for _ in range(rng.randrange(2, 20)):
                b[rng.randrange(len(b))] = rng.randrange(256)
        elif kind == "insert":
            pos = rng.randrange(len(b))
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
        elif kind == "delete":
            pos = rng.randrange(len(b))
            del b[pos:pos + rng.randrange(1, 16)]
        else:
            pos = rng.randrange(len(b))
            b[pos:pos + 32] = bytes(min(32, len(b) - pos))
        out.append((f"mut{i:04d}_{kind}.{ext}", bytes(b)))
    return out


def run_case(action: Callable[[list[str]], int], argv: list[str]) -> tuple[str, str]:
    """Run a CLI ``main`` on ``argv`` in-process: ``("ok" | "refused" | "crash", detail)``.

    ok: exit 0 and, with ``--json``, a finite ``total_ms`` in strict JSON; refused: exit 2
    with exactly one line on stderr; crash: anything else (an exception escaping, another
    exit code, several lines, non-finite numbers, output that is not strict JSON)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = action(argv)
    except SystemExit as e:  # argparse
        code = e.code if isinstance(e.code, int) else 2
    except BaseException as e:  # noqa: BLE001 - this is what the invariant is about
        return "crash", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip() and not ln.startswith("warning:")]
    if code == 2:
        return ("refused", lines[0]) if len(lines) == 1 else ("crash", f"exit 2 with {len(lines)} lines")
    if code != 0:
        return "crash", f"exit {code}: {lines[:1]}"
    if "--json" in argv:
        try:
            res = json.loads(out.getvalue(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        except ValueError as e:
            return "crash", f"not strict JSON ({e})"
        total = res.get("total_ms")
        if isinstance(total, (int, float)) and not math.isfinite(total):
            return "crash", f"total_ms {total}"
    return "ok", ""


def run_corpus(files: Iterable[tuple[str, bytes]], folder: Path,
               commands: dict[str, Callable[[Path, Path], tuple[Callable, list[str]]]]) -> dict:
    """Every command on every file; counts per command and outcome, and the crashes."""
    counts: dict[str, dict[str, int]] = {c: dict.fromkeys(OUTCOMES, 0) for c in commands}
    crashes: list[dict[str, str]] = []
    for name, data in files:
        path = folder / name
        path.write_bytes(data)
        for cmd, make in commands.items():
            action, argv = make(path, folder)
            outcome, detail = run_case(action, argv)
            counts[cmd][outcome] += 1
            if outcome == "crash":
                crashes.append({"file": name, "command": cmd, "detail": detail})
    return {"counts": counts, "crashes": crashes}


__all__ = ["corpus", "structural_cases", "edge_models", "small_cnn", "run_case", "run_corpus", "OUTCOMES"]
