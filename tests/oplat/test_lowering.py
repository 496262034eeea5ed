import collections

import numpy as np
import onnx
import pytest

from oplat.lowering import lower
from oplat.lowering.classify import winograd_suitable
from oplat.onnx_loader import load_onnx
from conftest import needs_shared


def lowered(model, family="adreno"):
    return lower(load_onnx(model), "tflite-gpu", family)


def test_batchnorm_folds_into_conv_and_relu_links(net):
    n = net()
    out = n.op("Relu", [n.bn(n.conv("input", 3, 8), 8)])
    lm = lowered(n.model(out))
    assert [(k.type, k.linked) for k in lm.kernels] == [("CONV_2D", ["relu"])]


def test_batchnorm_without_conv_becomes_elementwise(net):
    n = net()
    x = n.conv("input", 3, 8)
    a = n.op("Relu", [x])
    b = n.bn(x, 8)  # conv output has two consumers: BN cannot fold
    lm = lowered(n.model(n.op("Add", [a, b])))
    assert "MUL_ADD" in [k.type for k in lm.kernels]


def test_residual_add_and_relu_link_into_conv(net):
    n = net(shape=(1, 8, 16, 16))
    y = n.conv("input", 8, 8)
    out = n.op("Relu", [n.op("Add", [y, "input"])])
    lm = lowered(n.model(out))
    assert [(k.type, k.linked) for k in lm.kernels] == [("CONV_2D", ["add", "relu"])]


def test_no_link_when_producer_output_is_shared(net):
    n = net(shape=(1, 8, 16, 16))
    y = n.conv("input", 8, 8)
    out = n.op("Add", [n.op("Relu", [y]), n.op("Sigmoid", [y])])
    lm = lowered(n.model(out))
    conv = lm.kernels[0]
    assert conv.type == "CONV_2D" and conv.linked == []
    assert len(lm.glue) >= 2


def test_hard_swish_pattern_is_recognised(net):
    n = net()
    y = n.conv("input", 3, 8)
    clip = n.op("Clip", [n.op("Add", [y, n.const(np.array(3.0, np.float32))]),
                         n.const(np.array(0.0, np.float32)), n.const(np.array(6.0, np.float32))])
    out = n.op("Div", [n.op("Mul", [y, clip]), n.const(np.array(6.0, np.float32))])
    lm = lowered(n.model(out))
    assert [(k.type, k.linked) for k in lm.kernels] == [("CONV_2D", ["hard_swish"])]


def test_swish_pattern_is_recognised(net):
    n = net()
    y = n.conv("input", 3, 8)
    out = n.op("Mul", [y, n.op("Sigmoid", [y])])
    lm = lowered(n.model(out))
    assert [(k.type, k.linked) for k in lm.kernels] == [("CONV_2D", ["swish"])]


def test_constant_add_after_conv_folds_into_bias(net):
    n = net()
    y = n.conv("input", 3, 8, bias=False)
    out = n.op("Add", [y, n.const(np.ones((1, 8, 1, 1), np.float32))])
    lm = lowered(n.model(out))
    assert [(k.type, k.linked) for k in lm.kernels] == [("CONV_2D", [])]


def test_conv_classification(net):
    n = net(shape=(1, 16, 16, 16))
    a = n.conv("input", 16, 16, group=16)      # depthwise
    b = n.conv(a, 16, 32, group=4)             # grouped
    c = n.conv(b, 32, 32, k=1, p=0)            # plain
    lm = lowered(n.model(c))
    assert [k.type for k in lm.kernels] == ["DEPTHWISE_CONV_2D", "CONV_2D_GROUP", "CONV_2D"]
    dw = lm.kernels[0]
    assert dw.params["Filter"] == 1 and dw.params["Input_shape"] == 18  # padded input recorded
    assert lm.kernels[1].params["Group"] == 4


def test_explicit_pad_is_absorbed_with_padded_size(net):
    n = net(shape=(1, 16, 28, 28))
    p = n.op("Pad", ["input", n.const(np.array([0, 0, 1, 1, 0, 0, 2, 2], np.int64))], mode="constant")
    out = n.conv(p, 16, 16, k=5, s=2, p=0, group=16)
    lm = lowered(n.model(out))
    assert len(lm.kernels) == 1
    assert lm.kernels[0].params["Input_shape"] == 31 and lm.kernels[0].params["Output_shape"] == 14


def test_one_by_one_conv_on_one_by_one_map_runs_fully_connected(net):
    n = net(shape=(1, 64, 1, 1))
    lm = lowered(n.model(n.conv("input", 64, 16, k=1, p=0)))
    assert (lm.kernels[0].type, lm.kernels[0].impl) == ("CONV_2D", "fully_connected")


def test_global_pools_become_mean(net):
    n = net(shape=(1, 32, 7, 7))
    a = n.op("AveragePool", ["input"], kernel_shape=[7, 7])
    b = n.op("GlobalAveragePool", ["input"])
    out = n.op("Add", [a, b])
    lm = lowered(n.model(out))
    assert [k.type for k in lm.rows] == ["MEAN", "MEAN"]


def test_pools_and_concat(net):
    n = net(shape=(1, 16, 32, 32))
    a = n.op("MaxPool", ["input"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    b = n.op("AveragePool", ["input"], kernel_shape=[2, 2], strides=[2, 2])
    out = n.op("Concat", [a, b], axis=1)
    lm = lowered(n.model(out))
    types = [k.type for k in lm.rows]
    assert types == ["MAX_POOL_2D", "AVERAGE_POOL_2D", "CONCATENATION"]
    cat = lm.rows[2]
    assert cat.params["Kernel"] == 2 and cat.params["Filter"] == 32


def test_gemm_is_fully_connected(net):
    n = net(shape=(1, 128))
    out = n.op("Gemm", ["input", n.const(np.zeros((10, 128), np.float32))], transB=1)
    lm = lowered(n.model(out))
    k = lm.kernels[0]
    assert (k.type, k.params["Input_channel"], k.params["Filter"]) == ("FULLY_CONNECTED", 128, 10)


def test_unknown_op_is_reported_not_dropped(net):
    n = net()
    y = n.conv("input", 3, 8)
    out = n.op("Hardmax", [y])
    lm = lowered(n.model(out))
    assert lm.unsupported == [{"name": lm.unsupported[0]["name"], "op_type": "Hardmax"}]
    assert [k.type for k in lm.kernels] == ["CONV_2D"]


@pytest.mark.parametrize("family,expected", [("adreno", False), ("mali", True), ("apple", True)])
def test_winograd_choice_depends_on_gpu_family(net, family, expected):
    n = net(shape=(1, 64, 56, 56))
    lm = lowered(n.model(n.conv("input", 64, 64)), family)
    assert (lm.kernels[0].impl == "winograd") is expected


def test_winograd_thresholds():
    assert winograd_suitable(3, 1, 1, 64, 64, 56, 56, "mali")
    assert not winograd_suitable(3, 1, 1, 32, 32, 56, 56, "mali")   # too few channel slices
    assert not winograd_suitable(3, 1, 1, 64, 64, 14, 14, "mali")   # 16 tiles < 32
    assert not winograd_suitable(3, 2, 1, 64, 64, 56, 56, "mali")   # stride 2


@needs_shared
def test_zoo_lowering_matches_dataset_rows(zoo):
    """mobilenetv3 lowered for Adreno reproduces (kernel family, links, geometry) the dataset's rows of that model."""
    import collections

    from oplat.datasets import load_phone_gpu_ops, row_identity

    rows = [r for r in load_phone_gpu_ops(devices=["pixel4"]) if r.model == "mobilenetv3_large_w1"]
    lm = lower(load_onnx(zoo / "mobilenetv3_large_w1.onnx"), "tflite-gpu", "adreno")
    def key(kernel, impl, params, linked):
        return (impl, tuple(linked)) + row_identity(kernel, params)

    ours = collections.Counter(key(k.type, k.impl, k.params, k.linked) for k in lm.rows)
    theirs = collections.Counter(key(r.kernel, r.impl, r.params, r.linked) for r in rows)
    assert sum((ours & theirs).values()) >= 0.95 * len(rows)


def test_pool_padding_absorbed_unless_ceil_mode_needs_more(net):
    n = net(shape=(1, 16, 112, 112))
    a = n.op("MaxPool", ["input"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    b = n.op("MaxPool", [a], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    lm = lowered(n.model(b))
    assert [(k.params["Input_shape"], k.params["Output_shape"]) for k in lm.rows] == [(112, 56), (58, 28)]


def test_pre_activation_networks_keep_explicit_conv_padding(net):
    # PreResNet/DenseNet style: BN -> ReLU -> Conv3x3; their TFLite models pad explicitly
    n = net(shape=(1, 16, 28, 28))
    x = n.op("Relu", [n.bn("input", 16)])
    y = n.conv(n.op("Relu", [n.conv(x, 16, 16, k=1, p=0)]), 16, 16)
    lm = lowered(n.model(y))
    assert [k.params["Input_shape"] for k in lm.rows] == [28, 30]
    # ResNet style: Conv -> BN -> ReLU -> Conv3x3 takes SAME padding
    n = net(shape=(1, 16, 28, 28))
    y = n.conv(n.op("Relu", [n.bn(n.conv("input", 16, 16), 16)]), 16, 16)
    lm = lowered(n.model(y))
    assert [k.params["Input_shape"] for k in lm.rows] == [28, 28]


def test_gelu_erf_form_is_recognised(net):
    n = net(shape=(1, 16, 64))
    x = n.op("MatMul", ["input", n.const(np.zeros((64, 64), np.float32))])
    e = n.op("Erf", [n.op("Div", [x, n.const(np.array(2 ** 0.5, np.float32))])])
    y = n.op("Mul", [n.op("Mul", [x, n.op("Add", [e, n.const(np.array(1.0, np.float32))])]),
                     n.const(np.array(0.5, np.float32))])
    lm = lowered(n.model(y))
    assert [(k.type, k.linked) for k in lm.kernels] == [("FULLY_CONNECTED", ["gelu"])]


def test_token_matmul_bias_folds_and_residual_links(net):
    n = net(shape=(1, 50, 64))
    y = n.op("Add", [n.op("MatMul", ["input", n.const(np.zeros((64, 64), np.float32))]),
                     n.const(np.zeros(64, np.float32))])
    lm = lowered(n.model(n.op("Add", [y, "input"])))
    assert [(k.type, k.linked, k.params["Input_shape"]) for k in lm.kernels] == [("FULLY_CONNECTED", ["add"], 50)]


@pytest.mark.parametrize("backend", ["tflite-gpu", "tflite-cpu", "torch-gpu"])
def test_group_norm_lowers_to_a_row_norm_over_each_group(net, backend):
    n = net(shape=(1, 16, 8, 8))
    y = n.op("GroupNormalization", ["input", n.const(np.ones(16, np.float32)), n.const(np.zeros(16, np.float32))],
             num_groups=4)
    lm = lower(load_onnx(n.model(y, opset=21)), backend)
    assert lm.unsupported == []
    norms = [k for k in lm.kernels if k.type == "LAYER_NORM"]
    assert [(k.params["Rows"], k.params["Cols"]) for k in norms] == [(4, 4 * 64)]


def _ort_node_counts(model):
    """How many nodes of each op type onnxruntime's profiler saw in one run."""
    import collections
    import json
    import tempfile

    import onnxruntime as ort

    from oplat.graph_only import with_random_weights

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    so.enable_profiling = True
    so.profile_file_prefix = tempfile.mkdtemp() + "/p"
    sess = ort.InferenceSession(with_random_weights(model).SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    sess.run(None, {i.name: np.zeros(i.shape, np.float32) for i in sess.get_inputs()})
    with open(sess.end_profiling()) as f:
        return collections.Counter(e["args"]["op_name"] for e in json.load(f)
                                   if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"))


def _ort_reorder_counts(model) -> tuple[int, int]:
    c = _ort_node_counts(model)
    return c["ReorderInput"], c["ReorderOutput"]


@pytest.mark.parametrize("name", ["mobilenet_v2_0.35", "mnasnet_0.5", "mit_b0", "shufflenet_v2_1.0",
                                  "efficientformer_l1", "mobilevit_xs"])
def test_ort_lowering_places_the_nchwc_reorders_onnxruntime_runs(name):
    """A plain CNN pays one reorder (the output), more where a layer's channels are not
    whole blocks; squeeze-excite nets one pair per gate multiply; SegFormer one pair per
    Mix-FFN conv; PoolFormer blocks one per Sub; ShuffleNet's two branches share one:
    counted against onnxruntime's own profiler on the same model, with this machine's
    block size."""
    from oplat.zoo import build

    m = build(name, graph_only=True)
    lm = lower(load_onnx(m), "ort-cpu", "cpu")
    mine = [k.params["Direction"] for k in lm.kernels if k.type == "REORDER"]
    assert (mine.count("in"), mine.count("out")) == _ort_reorder_counts(m)


@pytest.mark.parametrize("block, expected", [(16, ["in", "out", "out"]), (8, ["in", "out"]), (0, [])])
def test_nchwc_reorders_follow_the_block_size(net, block, expected):
    """16 -> 12 -> 32 channels: with 16-channel blocks the 12-channel map is too narrow to
    block, so the second conv reads it plain (a reorder out before it); with 8-channel
    blocks it stays blocked (12 is padded to 16); with none, no reorders at all."""
    from oplat.lowering.ort_cpu import nchwc_block

    n = net(shape=(1, 16, 8, 8))
    y = n.conv(n.conv("input", 16, 12, k=1, p=0), 12, 32, k=1, p=0)
    out = n.op("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])
    lm = lower(load_onnx(n.model(out)), "ort-cpu", f"nchwc{block}")
    assert nchwc_block(f"nchwc{block}") == block
    assert [k.params["Direction"] for k in lm.kernels if k.type == "REORDER"] == expected
    assert [k.type for k in lm.kernels if k.type != "REORDER"] == ["CONV_2D", "CONV_2D", "MAX_POOL_2D"]


@pytest.mark.parametrize("op, const_shape", [("Add", ()), ("Add", (1,)), ("Add", (16, 1, 1)), ("Add", (1, 16, 1, 1)),
                                             ("Sub", (16, 1, 1)), ("Mul", ()), ("Mul", (1,)), ("Mul", (16, 1, 1)),
                                             ("Div", ()), ("Div", (1, 16, 1, 1))])
def test_ort_lowering_folds_the_constants_onnxruntime_folds_into_a_conv(net, op, const_shape):
    """onnxruntime folds a per-channel add, and a per-channel or rank-0 multiply, into the
    conv before it; a scalar add, a [1] multiply, a Sub or a Div stay nodes of their own
    (the TFLite converter folds them all): the lowering's kernels other than the conv and
    the reorders against onnxruntime's profiler on the same model."""
    n = net(shape=(1, 16, 8, 8))
    y = n.op(op, [n.conv("input", 16, 16, k=1, p=0), n.const(np.full(const_shape, 2.0, np.float32))])
    m = n.model(n.op("Relu", [y]))
    rest = [k.type for k in lower(load_onnx(m), "ort-cpu", "cpu").kernels if k.type not in ("CONV_2D", "REORDER")]
    ort_rest = {k: v for k, v in _ort_node_counts(m).items() if k not in ("Conv", "ReorderInput", "ReorderOutput")}
    assert len(rest) == sum(ort_rest.values())
    assert lower(load_onnx(m), "tflite-cpu", "cpu").kernels[-1].type == "CONV_2D"  # folded for TFLite


def test_ort_lowering_keeps_a_written_out_hard_swish_as_onnxruntime_runs_it():
    """pytorchcv's MobileNetV3 writes hard swish as x * relu6(x + 3) / 6, which
    onnxruntime runs as Add, Clip, Mul and Div nodes (not a conv's activation), and its
    gates' relu6(x + 3) / 6 likewise; ViT attention's scale multiply goes into
    onnxruntime's FusedMatMul. Element-wise kernels and reorders counted against its
    profiler."""
    from oplat.zoo import build, zoo_dir

    m = onnx.load(zoo_dir("cnn_zoo") / "mobilenetv3_small_w1.onnx", load_external_data=False)
    lm = lower(load_onnx(m), "ort-cpu", "cpu")
    c = _ort_node_counts(m)
    kinds = collections.Counter(k.type for k in lm.kernels)
    assert not any("hard_swish" in k.linked for k in lm.kernels)
    assert kinds["MUL"] == c["Mul"] + c["Div"] and kinds["RELU"] == c["Clip"]
    g = load_onnx(m)
    const_adds = [k for k in lm.kernels if k.type == "ADD" and any(g.tensors[t].const for t in k.inputs)]
    # (the residual adds onnxruntime folds into the conv before them, NCHWc's Sum input,
    # stay ADD kernels here: the in-model rows time them at what they cost there)
    assert len(const_adds) == c["Add"] and kinds["REORDER"] == c["ReorderInput"] + c["ReorderOutput"]
    vit = build("vit_tiny_patch32_224", graph_only=True)
    c = _ort_node_counts(vit)
    kinds = collections.Counter(k.type for k in lower(load_onnx(vit), "ort-cpu", "cpu").kernels)
    assert kinds["MUL"] == c["Mul"] == 0 and kinds["BATCH_MATMUL"] == c["MatMul"] + c["FusedMatMul"]


def test_ort_lowering_fuses_hard_swish_into_convs_and_keeps_gelu_apart():
    from oplat.zoo import build

    lm = lower(load_onnx(build("mobilenet_v3_small_0.75", graph_only=True)), "ort-cpu", "cpu")
    assert not [k for k in lm.kernels if k.type == "HARD_SWISH"]
    assert any("hard_swish" in k.linked for k in lm.kernels if k.type == "CONV_2D")
    vit = lower(load_onnx(build("vit_tiny_patch32_224", graph_only=True)), "ort-cpu", "cpu")
    gelus = [k for k in vit.kernels if k.type == "GELU"]
    assert gelus and all(k.impl == "gelu" for k in gelus)
    from oplat.features import predictor_key

    assert predictor_key("GELU", "gelu") == "GELU" and predictor_key("REORDER", "reorder") == "REORDER"


def test_ort_lowering_runs_an_unfused_swish_as_quick_gelu():
    """MobileViT's x*sigmoid(x) after its convs and MLP layers: onnxruntime runs each as
    a QuickGelu node (its profiler), the lowering as a SWISH kernel of its own family."""
    from oplat.zoo import build
    from oplat.features import predictor_key

    m = build("mobilevit_xxs", graph_only=True)
    swish = [k for k in lower(load_onnx(m), "ort-cpu", "cpu").kernels if k.type == "SWISH"]
    assert swish and {(k.impl, predictor_key(k.type, k.impl)) for k in swish} == {("swish", "SWISH")}
    assert len(swish) == _ort_node_counts(m)["QuickGelu"]
    assert {k.impl for k in lower(load_onnx(m), "tflite-cpu", "cpu").kernels if k.type == "SWISH"} == {"eltwise"}


def test_ort_lowering_keeps_relu6_apart_from_relu():
    """onnxruntime clamps a fused Clip in a second pass over the conv's output, so the
    ort-cpu lowering names it ``relu6``; the other CPU path (free clamps) keeps ``relu``;
    the features tell the two apart, and the collection sampler builds and explores it."""
    import random

    from oplat.zoo import build
    from oplat.collect.ops import onnx_single_op
    from oplat.collect.sampler import explore, kernel_config
    from oplat.features import feature_vector, predictor_key

    g = load_onnx(build("mobilenet_v2_0.35", graph_only=True))
    ort_convs = [k for k in lower(g, "ort-cpu", "cpu").kernels if k.type == "DEPTHWISE_CONV_2D"]
    cpu_convs = [k for k in lower(g, "tflite-cpu", "cpu").kernels if k.type == "DEPTHWISE_CONV_2D"]
    assert ort_convs and all(k.linked == ["relu6"] for k in ort_convs)
    assert all(k.linked == ["relu"] for k in cpu_convs)
    mn = load_onnx(build("mnasnet_0.5", graph_only=True))  # plain ReLU nets are unchanged
    assert not any("relu6" in k.linked for k in lower(mn, "ort-cpu", "cpu").kernels)
    k = ort_convs[0]
    key = predictor_key(k.type, k.impl)
    assert feature_vector(key, k.type, k.impl, k.params, k.linked) != \
        feature_vector(key, k.type, k.impl, k.params, ["relu"])
    cfg = kernel_config(k)
    assert cfg["linked"] == ["relu6"]
    assert "Clip" in [n.op_type for n in onnx_single_op(cfg).graph.node]
    rng = random.Random(0)
    links = {tuple(explore(cfg, rng)["linked"]) for _ in range(60)}
    assert ("relu6",) in links and ("relu",) not in links


def test_signature_tells_the_same_network_under_another_name(zoo):
    from oplat.zoo import build

    from oplat.train import load_graphs

    exports = load_graphs(zoo, ["mobilenet_w1", "mobilenet_wd2"])
    zoo_v1 = load_onnx(build("mobilenet_v1_1.0", graph_only=True))
    for backend, family in (("tflite-cpu", "cpu"), ("ort-cpu", "cpu")):
        a, b = (lower(exports[n], backend, family).signature() for n in ("mobilenet_w1", "mobilenet_wd2"))
        assert a == lower(zoo_v1, backend, family).signature()  # pytorchcv's export is the zoo's network
        assert a != b


@needs_shared
def test_lowering_reproduces_the_datasets_gpu_rows():
    """The tflite-gpu lowering of the pytorchcv exports yields the per-op rows the phones
    recorded (operation and every feature; kernel family and links too), model by model
    (bench/results/lowering_match.json: 98.4% and 93.7% when this test was written)."""
    from oplat.datasets import load_phone_gpu_ops
    from oplat.evaluate import lowering_match
    from oplat.zoo import zoo_dir

    res = lowering_match(load_phone_gpu_ops(), zoo_dir("cnn_zoo"))
    assert res["models"] == 102 and res["rows"] > 30_000
    assert res["share"] >= 0.98 and res["share_with_kernel_and_links"] >= 0.93
    assert sum(v == 1.0 for v in res["per_model"].values()) >= 70  # 74 of 102 match row for row when written


def test_dead_ops_are_pruned_where_the_framework_prunes_them():
    """A NAS-Bench-201 cell whose last node reads only the cell input leaves its other ops
    dead: the TFLite converter and TorchScript drop them, onnxruntime runs them."""
    from oplat.spaces import get_space

    sp = get_space("nb201")
    dead = sp.graph("|nor_conv_1x1~0|+|avg_pool_3x3~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|")
    bare = sp.graph("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    for backend, variant in (("tflite-gpu", "adreno"), ("tflite-cpu", "cpu"), ("torch-gpu", "cpu")):
        a, b = lower(dead, backend, variant), lower(bare, backend, variant)
        assert [(k.type, k.params) for k in a.kernels] == [(k.type, k.params) for k in b.kernels], backend
    ort_dead, ort_bare = lower(dead, "ort-cpu", "nchwc16"), lower(bare, "ort-cpu", "nchwc16")
    assert sum(k.type == "CONV_2D" for k in ort_dead.kernels) > sum(k.type == "CONV_2D" for k in ort_bare.kernels)
