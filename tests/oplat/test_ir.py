import numpy as np
import onnx
import pytest

from oplat.errors import ModelLoadError, ShapeError
from oplat.graph_only import is_graph_only, strip_weights
from oplat.model_io import load_model
from oplat.onnx_loader import load_onnx, parse_input_shapes
from oplat.tflite_writer import conv_classifier_tflite


def small_cnn(Net, dynamic=False):
    n = Net(dynamic=dynamic)
    x = n.op("Relu", [n.bn(n.conv("input", 3, 16), 16)])
    x = n.op("GlobalAveragePool", [x])
    x = n.op("Flatten", [x], axis=1)
    w = n.const(np.zeros((16, 10), np.float32))
    return n.model(n.op("MatMul", [x, w]))


def test_shapes_inferred_for_every_tensor(net):
    g = load_onnx(small_cnn(net))
    for op in g.ops():
        for t in op.outputs:
            assert g.tensors[t].shape is not None, t
    conv = next(op for op in g.ops() if op.type == "Conv")
    assert g.shape(conv.outputs[0]) == (1, 16, 32, 32)
    assert g.shape(g.outputs[0]) == (1, 10)


def test_graph_edges_follow_tensors(net):
    g = load_onnx(small_cnn(net))
    names = [op.type for op in g.ops()]
    assert names == ["Conv", "BatchNormalization", "Relu", "GlobalAveragePool", "Flatten", "MatMul"]
    conv = next(op for op in g.ops() if op.type == "Conv")
    assert [c.type for c in g.consumers(conv.outputs[0])] == ["BatchNormalization"]


def test_graph_only_file_keeps_dims_and_loads(net, tmp_path):
    m = small_cnn(net)
    stripped = strip_weights(m, size_threshold=64)
    assert is_graph_only(stripped)
    p = tmp_path / "g.onnx"
    onnx.save(stripped, p)
    assert p.stat().st_size < len(m.SerializeToString())
    g = load_onnx(p)
    conv = next(op for op in g.ops() if op.type == "Conv")
    assert g.shape(conv.inputs[1]) == (16, 3, 3, 3)
    assert g.tensors[conv.inputs[1]].value is None  # weights absent
    assert g.shape(g.outputs[0]) == (1, 10)


def test_dynamic_input_needs_shape(net):
    m = small_cnn(net, dynamic=True)
    with pytest.raises(ShapeError, match="input 'input' has a dynamic shape"):
        load_onnx(m)
    g = load_onnx(m, parse_input_shapes(["input=1x3x64x64"]))
    conv = next(op for op in g.ops() if op.type == "Conv")
    assert g.shape(conv.outputs[0]) == (1, 16, 64, 64)


def test_input_shape_parsing_errors():
    assert parse_input_shapes(["x=1x3x8x8"]) == {"x": (1, 3, 8, 8)}
    assert parse_input_shapes(["1,3,8,8"]) == {"": (1, 3, 8, 8)}
    with pytest.raises(ShapeError):
        parse_input_shapes(["x=1xAx8"])


def test_corrupt_and_truncated_files(tmp_path, net):
    p = tmp_path / "bad.onnx"
    p.write_bytes(b"\x00\xffnot a model at all" * 10)
    with pytest.raises(ModelLoadError):
        load_onnx(p)
    good = small_cnn(net).SerializeToString()
    p.write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelLoadError):
        load_onnx(p)
    with pytest.raises(ModelLoadError, match="not found"):
        load_onnx(tmp_path / "missing.onnx")


def test_shape_math_is_folded(net):
    # Reshape target computed from Shape -> Gather -> Unsqueeze -> Concat, as torch exports flatten
    n = net()
    x = n.conv("input", 3, 8)
    shp = n.op("Shape", [x])
    b = n.op("Gather", [shp, n.const(np.array(0, np.int64))], axis=0)
    target = n.op("Concat", [n.op("Unsqueeze", [b, n.const(np.array([0], np.int64))]),
                             n.const(np.array([-1], np.int64))], axis=0)
    out = n.op("Reshape", [x, target])
    g = load_onnx(n.model(out))
    assert g.shape(out) == (1, 8 * 32 * 32)
    assert g.is_const(target)


def test_tflite_loads_into_the_same_ir(tmp_path):
    p = tmp_path / "tiny.tflite"
    p.write_bytes(conv_classifier_tflite(h=32, c_mid=16, classes=10))
    g = load_model(p)
    types = [op.type for op in g.ops()]
    assert types == ["Conv", "Relu", "Conv", "Clip", "ReduceMean", "Gemm"]
    conv = next(op for op in g.ops() if op.type == "Conv")
    assert g.shape(conv.outputs[0]) == (1, 16, 32, 32)  # NHWC file, NCHW IR
    dw = [op for op in g.ops() if op.type == "Conv"][1]
    assert dw.attrs["group"] == 16


def test_truncated_tflite(tmp_path):
    data = conv_classifier_tflite()
    p = tmp_path / "cut.tflite"
    p.write_bytes(data[:40])
    with pytest.raises(ModelLoadError):
        load_model(p)


def test_every_zoo_export_loads(zoo):
    paths = sorted(zoo.glob("*.onnx"))
    assert len(paths) >= 100
    for p in paths[::10]:
        g = load_onnx(p)
        assert len(g) > 10


def test_ops_are_topological_even_when_the_file_is_not(net):
    n = net()
    a = n.conv("input", 3, 8)
    b = n.op("Relu", [a])
    m = n.model(n.op("Sigmoid", [b]))
    nodes = list(m.graph.node)
    m.graph.ClearField("node")
    m.graph.node.extend(reversed(nodes))  # consumers before producers
    g = load_onnx(m)
    assert [op.type for op in g.ops()] == ["Conv", "Relu", "Sigmoid"]


def _slice_net(runtime_start: bool):
    """NASNet's path: Pad (0,1,0,1) then x[:, :, 1:, 1:] as a torch export writes it
    (Slice with its bounds as inputs), then a conv."""
    from onnx import TensorProto, helper, numpy_helper

    big = np.iinfo(np.int64).max
    inits = [numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64), "pads"),
             numpy_helper.from_array(np.array([1], np.int64), "one"),
             numpy_helper.from_array(np.array([big], np.int64), "end"),
             numpy_helper.from_array(np.array([2], np.int64), "ax2"),
             numpy_helper.from_array(np.array([3], np.int64), "ax3"),
             numpy_helper.from_array(np.zeros((8, 4, 1, 1), np.float32), "w")]
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"])]
    start = "one"
    if runtime_start:  # a start computed from the data: no shape can be known before running
        nodes += [helper.make_node("ReduceMax", ["x"], ["mx"], keepdims=0),
                  helper.make_node("Cast", ["mx"], ["mxi"], to=TensorProto.INT64),
                  helper.make_node("Reshape", ["mxi", "one"], ["start"])]
        start = "start"
    nodes += [helper.make_node("Slice", ["p", start, "end", "ax2", "one"], ["s1"]),
              helper.make_node("Slice", ["s1", "one", "end", "ax3", "one"], ["s2"]),
              helper.make_node("Conv", ["s2", "w"], ["y"], kernel_shape=[1, 1])]
    g = helper.make_graph(nodes, "slice", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_slice_bounds_given_as_inputs_give_the_sliced_shape():
    g = load_onnx(_slice_net(False))
    assert g.shape("p") == (1, 4, 9, 9) and g.shape("s1") == (1, 4, 8, 9) and g.shape("y") == (1, 8, 8, 8)


def test_a_standard_op_of_unknown_shape_is_refused_not_assumed():
    with pytest.raises(ShapeError, match="cannot infer the shape of 's1'"):
        load_onnx(_slice_net(True))


def test_external_weights_beside_the_file_are_loaded_and_escaping_ones_are_not(tmp_path, net):
    """A torch dynamo export keeps its weights in model.onnx.data: read them; a location
    outside the model's folder or a missing file leaves the model graph-only."""
    from oplat.graph_only import external_data_present, is_graph_only, load_with_weights

    n = net()
    m = n.model(n.conv(n.conv("input", 3, 16), 16, 16))
    onnx.save(m, tmp_path / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.onnx.data", size_threshold=0)
    got = load_with_weights(tmp_path / "m.onnx")
    assert not is_graph_only(got)
    assert [t.raw_data or t.float_data for t in got.graph.initializer][0]
    (tmp_path / "m.onnx.data").rename(tmp_path / "elsewhere.data")
    assert is_graph_only(load_with_weights(tmp_path / "m.onnx"))
    bad = onnx.load(tmp_path / "m.onnx", load_external_data=False)
    for t in bad.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../elsewhere.data"
    assert not external_data_present(bad, tmp_path / "sub")


def test_a_new_input_shape_replaces_the_shapes_the_exporter_recorded():
    """torch's dynamo exporter records every intermediate's shape for the size it exported
    at; --input-shape must reprice the model at the new size, not keep those."""
    from onnx import shape_inference

    from oplat.zoo import build

    m = shape_inference.infer_shapes(build("resnet18", graph_only=True))
    assert len(m.graph.value_info) > 10
    g = load_onnx(m, {"input": (2, 3, 160, 160)})
    first = next(iter(g.ops()))
    assert g.shape(first.outputs[0]) == (2, 64, 80, 80)
    assert g.shape(g.outputs[0]) == (2, 1000)
