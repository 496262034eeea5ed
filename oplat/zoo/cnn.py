"""CNN families built directly as ONNX (no torch): ResNet/ResNeXt, MobileNet V1/V2/V3,
EfficientNet-lite, ShuffleNet V2, SqueezeNet, DenseNet, RegNet, MnasNet, GhostNet.

Each builder takes a width multiplier and a resolution so the zoo covers the shapes
real deployments use. Weights are random; ``graph_only`` drops them.
"""

from __future__ import annotations

import numpy as np
import onnx

from .builder import OnnxBuilder


def _div(v: float, d: int = 8) -> int:
    """Round channels to a multiple of ``d`` (at least d, never below 90% of v)."""
    n = max(d, int(v + d / 2) // d * d)
    return n + d if n < 0.9 * v else n


def resnet(depth: int = 18, width: float = 1.0, res: int = 224, groups: int = 1, base_width: int = 64,
           graph_only: bool = False, classes: int = 1000) -> onnx.ModelProto:
    """ResNet-18/34 (basic blocks) and ResNet-50/ResNeXt (bottlenecks, ``groups`` > 1)."""
    blocks = {10: [1, 1, 1, 1], 18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 26: [2, 2, 2, 2], 50: [3, 4, 6, 3],
              101: [3, 4, 23, 3]}[depth]
    bottleneck = depth in (26, 50, 101) or groups > 1
    b = OnnxBuilder(f"resnet{depth}", (1, 3, res, res))
    x = b.max_pool(b.conv_bn_act("input", _div(64 * width), 7, 2), 3, 2, 1)
    c_in = b.shapes[x][1]
    for stage, n in enumerate(blocks):
        c = _div(64 * width * 2 ** stage)
        for i in range(n):
            s = 2 if i == 0 and stage > 0 else 1
            if bottleneck:
                mid = _div(c * base_width / 64 * groups / (1 if groups > 1 else 1))
                c_out = c * 4
                y = b.conv_bn_act(x, mid, 1)
                y = b.conv_bn_act(y, mid, 3, s, groups=groups)
                y = b.bn(b.conv(y, c_out, 1, bias=False))
            else:
                c_out = c
                y = b.conv_bn_act(x, c, 3, s)
                y = b.bn(b.conv(y, c, 3, bias=False))
            short = x if (s == 1 and c_in == c_out) else b.bn(b.conv(x, c_out, 1, s, bias=False))
            x = b.act(b.add(y, short), "relu")
            c_in = c_out
    return b.model(b.classifier(x, classes), graph_only)


def mobilenet_v1(width: float = 1.0, res: int = 224, graph_only: bool = False, classes: int = 1000) -> onnx.ModelProto:
    """MobileNet V1: depthwise-separable convs."""
    cfg = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    b = OnnxBuilder("mobilenet_v1", (1, 3, res, res))
    x = b.conv_bn_act("input", _div(32 * width), 3, 2)
    for c, s in cfg:
        x = b.conv_bn_act(x, b.shapes[x][1], 3, s, groups=b.shapes[x][1])
        x = b.conv_bn_act(x, _div(c * width), 1)
    return b.model(b.classifier(x, classes), graph_only)


def _inverted_residual(b: OnnxBuilder, x: str, c_out: int, k: int, s: int, expand: float, act: str,
                       se: bool = False, se_gate: str = "sigmoid") -> str:
    c_in = b.shapes[x][1]
    mid = _div(c_in * expand) if expand != 1 else c_in
    y = b.conv_bn_act(x, mid, 1, act=act) if expand != 1 else x
    y = b.conv_bn_act(y, mid, k, s, groups=mid, act=act)
    if se:
        y = b.se(y, 4, se_gate)
    y = b.bn(b.conv(y, c_out, 1, bias=False))
    return b.add(y, x) if s == 1 and c_in == c_out else y


def mobilenet_v2(width: float = 1.0, res: int = 224, graph_only: bool = False, classes: int = 1000) -> onnx.ModelProto:
    """MobileNet V2: inverted residuals with ReLU6."""
    cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    b = OnnxBuilder("mobilenet_v2", (1, 3, res, res))
    x = b.conv_bn_act("input", _div(32 * width), 3, 2, act="relu6")
    for t, c, n, s in cfg:
        for i in range(n):
            x = _inverted_residual(b, x, _div(c * width), 3, s if i == 0 else 1, t, "relu6")
    x = b.conv_bn_act(x, _div(1280 * max(1.0, width)), 1, act="relu6")
    return b.model(b.classifier(x, classes), graph_only)


def mobilenet_v3(size: str = "large", width: float = 1.0, res: int = 224, graph_only: bool = False,
                 classes: int = 1000) -> onnx.ModelProto:
    """MobileNet V3 large/small: SE with hard-sigmoid gates, hard-swish."""
    large = [(3, 16, 16, False, "relu", 1), (3, 64, 24, False, "relu", 2), (3, 72, 24, False, "relu", 1),
             (5, 72, 40, True, "relu", 2), (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1),
             (3, 240, 80, False, "hswish", 2), (3, 200, 80, False, "hswish", 1), (3, 184, 80, False, "hswish", 1),
             (3, 184, 80, False, "hswish", 1), (3, 480, 112, True, "hswish", 1), (3, 672, 112, True, "hswish", 1),
             (5, 672, 160, True, "hswish", 2), (5, 960, 160, True, "hswish", 1), (5, 960, 160, True, "hswish", 1)]
    small = [(3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2), (3, 88, 24, False, "relu", 1),
             (5, 96, 40, True, "hswish", 2), (5, 240, 40, True, "hswish", 1), (5, 240, 40, True, "hswish", 1),
             (5, 120, 48, True, "hswish", 1), (5, 144, 48, True, "hswish", 1), (5, 288, 96, True, "hswish", 2),
             (5, 576, 96, True, "hswish", 1), (5, 576, 96, True, "hswish", 1)]
    cfg = large if size == "large" else small
    b = OnnxBuilder(f"mobilenet_v3_{size}", (1, 3, res, res))
    x = b.conv_bn_act("input", _div(16 * width), 3, 2, act="hswish")
    for k, exp, c, se, act, s in cfg:
        c_in = b.shapes[x][1]
        x = _inverted_residual(b, x, _div(c * width), k, s, _div(exp * width) / c_in, act, se, "hsigmoid")
    x = b.conv_bn_act(x, _div(cfg[-1][1] * width), 1, act="hswish")
    x = b.act(b.conv(b.gap(x), 1280 if size == "large" else 1024, 1), "hswish")
    return b.model(b.linear(b.flatten(x), classes), graph_only)


def efficientnet_lite(variant: int = 0, res: int | None = None, graph_only: bool = False,
                      classes: int = 1000) -> onnx.ModelProto:
    """EfficientNet-lite0..4: MBConv with ReLU6, no SE."""
    w, d, r = [(1.0, 1.0, 224), (1.0, 1.1, 240), (1.1, 1.2, 260), (1.2, 1.4, 280), (1.4, 1.8, 300)][variant]
    res = res or r
    cfg = [(1, 3, 16, 1, 1), (6, 3, 24, 2, 2), (6, 5, 40, 2, 2), (6, 3, 80, 3, 2), (6, 5, 112, 3, 1),
           (6, 5, 192, 4, 2), (6, 3, 320, 1, 1)]
    b = OnnxBuilder(f"efficientnet_lite{variant}", (1, 3, res, res))
    x = b.conv_bn_act("input", 32, 3, 2, act="relu6")
    for i, (t, k, c, n, s) in enumerate(cfg):
        reps = n if i in (0, len(cfg) - 1) else int(np.ceil(n * d))
        for j in range(reps):
            x = _inverted_residual(b, x, _div(c * w), k, s if j == 0 else 1, t, "relu6")
    x = b.conv_bn_act(x, 1280, 1, act="relu6")
    return b.model(b.classifier(x, classes), graph_only)


def squeezenet(version: str = "1_1", res: int = 224, graph_only: bool = False, classes: int = 1000) -> onnx.ModelProto:
    """SqueezeNet 1.0 / 1.1: fire modules (squeeze 1x1, expand 1x1 || 3x3)."""
    b = OnnxBuilder(f"squeezenet{version}", (1, 3, res, res))
    fires = [(16, 64), (16, 64), (32, 128), (32, 128), (48, 192), (48, 192), (64, 256), (64, 256)]
    pools = {0: (1, 3, 5), 1: (0, 2, 4)}[version == "1_1"]
    x = b.act(b.conv("input", 96 if version == "1_0" else 64, 7 if version == "1_0" else 3, 2, pad=0), "relu")
    x = b.max_pool(x, 3, 2, 0)
    for i, (sq, ex) in enumerate(fires):
        s = b.act(b.conv(x, sq, 1), "relu")
        x = b.concat([b.act(b.conv(s, ex, 1), "relu"), b.act(b.conv(s, ex, 3), "relu")])
        if i + 1 in pools[1:]:
            x = b.max_pool(x, 3, 2, 0)
    x = b.act(b.conv(x, classes, 1), "relu")
    return b.model(b.flatten(b.gap(x)), graph_only)


def shufflenet_v2(width: float = 1.0, res: int = 224, graph_only: bool = False, classes: int = 1000) -> onnx.ModelProto:
    """ShuffleNet V2: channel split, concat and shuffle."""
    chans = {0.5: [48, 96, 192, 1024], 1.0: [116, 232, 464, 1024], 1.5: [176, 352, 704, 1024],
             2.0: [244, 488, 976, 2048]}[width]
    b = OnnxBuilder("shufflenet_v2", (1, 3, res, res))
    x = b.max_pool(b.conv_bn_act("input", 24, 3, 2), 3, 2, 1)
    for stage, reps in enumerate([4, 8, 4]):
        c = chans[stage]
        for i in range(reps):
            if i == 0:
                l = b.conv_bn_act(b.bn(b.conv(x, b.shapes[x][1], 3, 2, groups=b.shapes[x][1], bias=False)), c // 2, 1)
                r = b.conv_bn_act(x, c // 2, 1)
            else:
                n_, cc, h, w = b.shapes[x]
                half = cc // 2
                splits = [b._uid("split_a"), b._uid("split_b")]
                b.nodes.append(onnx.helper.make_node("Split", [x, b.const(np.array([half, half], np.int64), "split")],
                                                     splits, name=b._uid("Split"), axis=1))
                b.shapes[splits[0]] = b.shapes[splits[1]] = (n_, half, h, w)
                l, r = splits[0], b.conv_bn_act(splits[1], half, 1)
                c = cc
            r = b.bn(b.conv(r, b.shapes[r][1], 3, 1 if i else 2, groups=b.shapes[r][1], bias=False))
            r = b.conv_bn_act(r, b.shapes[l][1], 1)
            x = b.channel_shuffle(b.concat([l, r]))
    x = b.conv_bn_act(x, chans[3], 1)
    return b.model(b.classifier(x, classes), graph_only)


def densenet(depth: int = 121, res: int = 224, growth: int = 32, graph_only: bool = False,
             classes: int = 1000) -> onnx.ModelProto:
    """DenseNet-121/169: BN-ReLU-Conv dense layers and transitions."""
    blocks = {121: [6, 12, 24, 16], 169: [6, 12, 32, 32]}[depth]
    b = OnnxBuilder(f"densenet{depth}", (1, 3, res, res))
    x = b.max_pool(b.conv_bn_act("input", 64, 7, 2), 3, 2, 1)
    for i, n in enumerate(blocks):
        for _ in range(n):
            y = b.conv(b.act(b.bn(x), "relu"), 4 * growth, 1, bias=False)
            y = b.conv(b.act(b.bn(y), "relu"), growth, 3, bias=False)
            x = b.concat([x, y])
        if i < len(blocks) - 1:
            x = b.conv(b.act(b.bn(x), "relu"), b.shapes[x][1] // 2, 1, bias=False)
            x = b.avg_pool(x, 2, 2, 0)
    return b.model(b.classifier(b.act(b.bn(x), "relu"), classes), graph_only)


def regnet(flops: str = "400mf", res: int = 224, se: bool = False, graph_only: bool = False,
           classes: int = 1000) -> onnx.ModelProto:
    """RegNetX/Y (grouped bottlenecks; Y adds SE)."""
    cfgs = {"200mf": ([1, 1, 4, 7], [24, 56, 152, 368], 8), "400mf": ([1, 2, 7, 12], [32, 64, 160, 384], 16),
            "600mf": ([1, 3, 5, 7], [48, 96, 240, 528], 24), "800mf": ([1, 3, 7, 5], [64, 128, 288, 672], 16),
            "1.6gf": ([2, 4, 10, 2], [72, 168, 408, 912], 24)}
    depths, widths, gw = cfgs[flops]
    b = OnnxBuilder(f"regnet{'y' if se else 'x'}_{flops}", (1, 3, res, res))
    x = b.conv_bn_act("input", 32, 3, 2)
    for d, w in zip(depths, widths):
        for i in range(d):
            s = 2 if i == 0 else 1
            y = b.conv_bn_act(x, w, 1)
            y = b.conv_bn_act(y, w, 3, s, groups=w // gw)
            if se:
                y = b.se(y, 4 * w // b.shapes[x][1] if b.shapes[x][1] else 4)
            y = b.bn(b.conv(y, w, 1, bias=False))
            short = x if (s == 1 and b.shapes[x][1] == w) else b.bn(b.conv(x, w, 1, s, bias=False))
            x = b.act(b.add(y, short), "relu")
    return b.model(b.classifier(x, classes), graph_only)


def mnasnet(width: float = 1.0, res: int = 224, graph_only: bool = False, classes: int = 1000) -> onnx.ModelProto:
    """MnasNet-A1: MBConv with SE in some stages."""
    cfg = [(6, 3, 24, 2, 2, False), (3, 5, 40, 3, 2, True), (6, 3, 80, 4, 2, False), (6, 3, 112, 2, 1, True),
           (6, 5, 160, 3, 2, True), (6, 3, 320, 1, 1, False)]
    b = OnnxBuilder("mnasnet_a1", (1, 3, res, res))
    x = b.conv_bn_act("input", _div(32 * width), 3, 2)
    x = b.conv_bn_act(x, b.shapes[x][1], 3, 1, groups=b.shapes[x][1])
    x = b.bn(b.conv(x, _div(16 * width), 1, bias=False))
    for t, k, c, n, s, se in cfg:
        for i in range(n):
            x = _inverted_residual(b, x, _div(c * width), k, s if i == 0 else 1, t, "relu", se)
    x = b.conv_bn_act(x, 1280, 1)
    return b.model(b.classifier(x, classes), graph_only)


def ghostnet(width: float = 1.0, res: int = 224, graph_only: bool = False, classes: int = 1000) -> onnx.ModelProto:
    """GhostNet: ghost modules (primary conv + cheap depthwise features, concatenated)."""
    cfg = [(3, 16, 16, False, 1), (3, 48, 24, False, 2), (3, 72, 24, False, 1), (5, 72, 40, True, 2),
           (5, 120, 40, True, 1), (3, 240, 80, False, 2), (3, 200, 80, False, 1), (3, 184, 80, False, 1),
           (3, 184, 80, False, 1), (3, 480, 112, True, 1), (3, 672, 112, True, 1), (5, 672, 160, True, 2),
           (5, 960, 160, False, 1), (5, 960, 160, True, 1), (5, 960, 160, False, 1), (5, 960, 160, True, 1)]

    def ghost(x: str, c_out: int, relu: bool) -> str:
        init = -(-c_out // 2)
        p = b.conv_bn_act(x, init, 1, act="relu" if relu else "none")
        q = b.conv_bn_act(p, init, 3, 1, groups=init, act="relu" if relu else "none")
        y = b.concat([p, q])
        if 2 * init != c_out:
            y = b.op("Slice", [y, b.const(np.array([0], np.int64)), b.const(np.array([c_out], np.int64)),
                               b.const(np.array([1], np.int64))], (1, c_out) + b.shapes[y][2:])
        return y

    b = OnnxBuilder("ghostnet", (1, 3, res, res))
    x = b.conv_bn_act("input", _div(16 * width, 4), 3, 2)
    for k, exp, c, se, s in cfg:
        c_out, mid = _div(c * width, 4), _div(exp * width, 4)
        y = ghost(x, mid, True)
        if s > 1:
            y = b.bn(b.conv(y, mid, k, s, groups=mid, bias=False))
        if se:
            y = b.se(y, 4, "hsigmoid", round_to=4)
        y = ghost(y, c_out, False)
        if s == 1 and b.shapes[x][1] == c_out:
            short = x
        else:
            short = b.bn(b.conv(x, b.shapes[x][1], k, s, groups=b.shapes[x][1], bias=False))
            short = b.bn(b.conv(short, c_out, 1, bias=False))
        x = b.add(y, short)
    x = b.conv_bn_act(x, _div(960 * width, 4), 1)
    x = b.act(b.conv(b.gap(x), 1280, 1), "relu")
    return b.model(b.linear(b.flatten(x), classes), graph_only)
