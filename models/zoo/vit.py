"""Vision Transformer families built directly as ONNX: ViT/DeiT, Swin, MobileViT,
EfficientFormer and LeViT-style hybrids.

Attention is spelled out the way exporters emit it (q/k/v projections, Reshape +
Transpose to heads, MatMul, scale, Softmax, MatMul, merge heads), LayerNorm as
``LayerNormalization`` and GELU in its erf form, so the lowering sees real exports.
"""

from __future__ import annotations

import numpy as np
import onnx

from .builder import OnnxBuilder


def _reshape(b: OnnxBuilder, x: str, shape: tuple[int, ...]) -> str:
    return b.op("Reshape", [x, b.const(np.array(shape, np.int64), "shape")], tuple(shape))


def _transpose(b: OnnxBuilder, x: str, perm: list[int]) -> str:
    s = b.shapes[x]
    return b.op("Transpose", [x], tuple(s[p] for p in perm), perm=perm)


def layer_norm(b: OnnxBuilder, x: str) -> str:
    d = b.shapes[x][-1]
    return b.op("LayerNormalization", [x, b.const(np.ones(d, np.float32), "ln_g"),
                                       b.const(np.zeros(d, np.float32), "ln_b")], b.shapes[x], axis=-1, epsilon=1e-6)


def attention(b: OnnxBuilder, x: str, heads: int, key_dim: int | None = None, out_dim: int | None = None,
              bias_table: bool = False) -> str:
    """Multi-head self-attention over (1, N, D) tokens."""
    _, n, d = b.shapes[x]
    kd = key_dim or d // heads
    vd = d // heads
    q = _transpose(b, _reshape(b, b.linear(x, heads * kd), (1, n, heads, kd)), [0, 2, 1, 3])
    k = _transpose(b, _reshape(b, b.linear(x, heads * kd), (1, n, heads, kd)), [0, 2, 3, 1])
    v = _transpose(b, _reshape(b, b.linear(x, heads * vd), (1, n, heads, vd)), [0, 2, 1, 3])
    a = b.op("MatMul", [q, k], (1, heads, n, n))
    a = b.op("Mul", [a, b.const(np.array(kd ** -0.5, np.float32), "scale")], (1, heads, n, n))
    if bias_table:
        a = b.op("Add", [a, b.const(np.zeros((1, heads, n, n), np.float32), "relpos")], (1, heads, n, n))
    a = b.op("Softmax", [a], (1, heads, n, n), axis=-1)
    y = b.op("MatMul", [a, v], (1, heads, n, vd))
    y = _reshape(b, _transpose(b, y, [0, 2, 1, 3]), (1, n, heads * vd))
    return b.linear(y, out_dim or d)


def mlp(b: OnnxBuilder, x: str, ratio: float = 4.0, act: str = "gelu") -> str:
    d = b.shapes[x][-1]
    return b.linear(b.act(b.linear(x, int(d * ratio)), act), d)


def transformer_block(b: OnnxBuilder, x: str, heads: int, mlp_ratio: float = 4.0) -> str:
    x = b.add(x, attention(b, layer_norm(b, x), heads))
    return b.add(x, mlp(b, layer_norm(b, x), mlp_ratio))


def vit(dim: int = 384, depth: int = 12, heads: int = 6, patch: int = 16, res: int = 224,
        distilled: bool = False, graph_only: bool = False, classes: int = 1000) -> onnx.ModelProto:
    """ViT / DeiT: patch-embedding conv, class (and distillation) token, pre-norm blocks."""
    b = OnnxBuilder("vit", (1, 3, res, res), opset=17)
    x = b.conv("input", dim, patch, patch, pad=0)
    g = res // patch
    x = _transpose(b, _reshape(b, x, (1, dim, g * g)), [0, 2, 1])
    n_tok = 2 if distilled else 1
    tokens = b.const(np.zeros((1, n_tok, dim), np.float32), "cls")
    b.shapes[tokens] = (1, n_tok, dim)
    x = b.concat([tokens, x], axis=1)
    x = b.add(x, b.const(np.zeros((1, g * g + n_tok, dim), np.float32), "pos"))
    for _ in range(depth):
        x = transformer_block(b, x, heads)
    x = layer_norm(b, x)
    cls = b.op("Gather", [x, b.const(np.array(0, np.int64), "idx")], (1, dim), axis=1)
    return b.model(b.linear(cls, classes), graph_only)


def _window_partition(b: OnnxBuilder, x: str, h: int, w: int, c: int, win: int) -> str:
    y = _reshape(b, x, (1, h // win, win, w // win, win, c))
    y = _transpose(b, y, [0, 1, 3, 2, 4, 5])
    return _reshape(b, y, ((h // win) * (w // win), win * win, c))


def _window_merge(b: OnnxBuilder, x: str, h: int, w: int, c: int, win: int) -> str:
    y = _reshape(b, x, (1, h // win, w // win, win, win, c))
    y = _transpose(b, y, [0, 1, 3, 2, 4, 5])
    return _reshape(b, y, (1, h * w, c))


def _window_attention(b: OnnxBuilder, x: str, heads: int) -> str:
    """Attention inside windows: x is (windows, tokens, C); the batch dim carries windows."""
    nw, n, d = b.shapes[x]
    hd = d // heads

    def proj(t: str, perm: list[int]) -> str:
        return _transpose(b, _reshape(b, b.linear(t, d), (nw, n, heads, hd)), perm)

    q, k, v = proj(x, [0, 2, 1, 3]), proj(x, [0, 2, 3, 1]), proj(x, [0, 2, 1, 3])
    a = b.op("MatMul", [q, k], (nw, heads, n, n))
    a = b.op("Mul", [a, b.const(np.array(hd ** -0.5, np.float32), "scale")], (nw, heads, n, n))
    a = b.op("Add", [a, b.const(np.zeros((1, heads, n, n), np.float32), "relpos")], (nw, heads, n, n))
    a = b.op("Softmax", [a], (nw, heads, n, n), axis=-1)
    y = b.op("MatMul", [a, v], (nw, heads, n, hd))
    y = _reshape(b, _transpose(b, y, [0, 2, 1, 3]), (nw, n, d))
    return b.linear(y, d)


def swin(dim: int = 96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), window: int = 7, res: int = 224,
         graph_only: bool = False, classes: int = 1000) -> onnx.ModelProto:
    """Swin Transformer: windowed attention (shifted windows as Slice+Concat rolls), patch merging."""
    b = OnnxBuilder("swin", (1, 3, res, res), opset=17)
    x = b.conv("input", dim, 4, 4, pad=0)
    h = w = res // 4
    c = dim
    x = layer_norm(b, _transpose(b, _reshape(b, x, (1, c, h * w)), [0, 2, 1]))
    for stage, (depth, nh) in enumerate(zip(depths, heads)):
        win = min(window, h)
        for i in range(depth):
            y = layer_norm(b, x)
            shift = win // 2 if (i % 2 and win < h) else 0
            if shift:
                y = _roll(b, y, h, w, c, shift)
            y = _window_merge(b, _window_attention(b, _window_partition(b, y, h, w, c, win), nh), h, w, c, win)
            if shift:
                y = _roll(b, y, h, w, c, -shift)
            x = b.add(x, y)
            x = b.add(x, mlp(b, layer_norm(b, x)))
        if stage < len(depths) - 1:  # patch merging: 2x2 neighbourhood -> 4C -> 2C
            y = _reshape(b, x, (1, h // 2, 2, w // 2, 2, c))
            y = _transpose(b, y, [0, 1, 3, 4, 2, 5])
            y = layer_norm(b, _reshape(b, y, (1, (h // 2) * (w // 2), 4 * c)))
            x = b.linear(y, 2 * c, bias=False)
            h, w, c = h // 2, w // 2, 2 * c
    x = layer_norm(b, x)
    x = b.op("ReduceMean", [x], (1, c), axes=[1], keepdims=0)
    return b.model(b.linear(x, classes), graph_only)


def _roll(b: OnnxBuilder, x: str, h: int, w: int, c: int, shift: int) -> str:
    """torch.roll over both spatial axes, as exporters emit it (Slice + Concat)."""
    y = _reshape(b, x, (1, h, w, c))
    for axis, size in ((1, h), (2, w)):
        s = shift % size
        parts = []
        for start, end in ((size - s, size), (0, size - s)):
            shp = list(b.shapes[y])
            shp[axis] = end - start
            parts.append(b.op("Slice", [y, b.const(np.array([start], np.int64)), b.const(np.array([end], np.int64)),
                                        b.const(np.array([axis], np.int64))], tuple(shp)))
        y = b.concat(parts, axis=axis)
    return _reshape(b, y, (1, h * w, c))


def mobilevit(variant: str = "xs", res: int = 256, graph_only: bool = False, classes: int = 1000) -> onnx.ModelProto:
    """MobileViT: MobileNetV2 blocks + MobileViT blocks (unfold to patches, transformer, fold)."""
    cfg = {"xxs": ([16, 16, 24, 48, 64, 80, 320], [64, 80, 96], 2),
           "xs": ([16, 32, 48, 64, 80, 96, 384], [96, 120, 144], 4),
           "s": ([16, 32, 64, 96, 128, 160, 640], [144, 192, 240], 4)}[variant]
    ch, dims, expand = cfg
    b = OnnxBuilder(f"mobilevit_{variant}", (1, 3, res, res), opset=17)

    def mv2(x: str, c_out: int, s: int) -> str:
        c_in = b.shapes[x][1]
        y = b.conv_bn_act(x, c_in * expand, 1, act="swish")
        y = b.conv_bn_act(y, c_in * expand, 3, s, groups=c_in * expand, act="swish")
        y = b.bn(b.conv(y, c_out, 1, bias=False))
        return b.add(y, x) if s == 1 and c_in == c_out else y

    def mvit_block(x: str, d: int, depth: int, p: int = 2) -> str:
        _, c, h, w = b.shapes[x]
        y = b.conv_bn_act(x, c, 3, act="swish")
        y = b.conv(y, d, 1, bias=False)
        # unfold: (1, d, h, w) -> (p*p, h*w/(p*p), d)
        y = _reshape(b, y, (1, d, h // p, p, w // p, p))
        y = _transpose(b, y, [0, 3, 5, 2, 4, 1])
        y = _reshape(b, y, (p * p, (h // p) * (w // p), d))
        for _ in range(depth):
            y = b.add(y, attention_batched(b, layer_norm(b, y), 4))
            y = b.add(y, mlp(b, layer_norm(b, y), 2.0, "swish"))
        y = layer_norm(b, y)
        # fold back
        y = _reshape(b, y, (1, p, p, h // p, w // p, d))
        y = _transpose(b, y, [0, 5, 3, 1, 4, 2])
        y = _reshape(b, y, (1, d, h, w))
        y = b.conv_bn_act(y, c, 1, act="swish")
        return b.conv_bn_act(b.concat([x, y]), c, 3, act="swish")

    x = b.conv_bn_act("input", ch[0], 3, 2, act="swish")
    x = mv2(x, ch[1], 1)
    x = mv2(mv2(mv2(x, ch[2], 2), ch[2], 1), ch[2], 1)
    x = mvit_block(mv2(x, ch[3], 2), dims[0], 2)
    x = mvit_block(mv2(x, ch[4], 2), dims[1], 4)
    x = mvit_block(mv2(x, ch[5], 2), dims[2], 3)
    x = b.conv_bn_act(x, ch[6], 1, act="swish")
    return b.model(b.classifier(x, classes), graph_only)


def attention_batched(b: OnnxBuilder, x: str, heads: int) -> str:
    """Attention over (B, N, D) where B is a batch of independent token sets."""
    bs, n, d = b.shapes[x]
    hd = d // heads

    def proj(perm: list[int]) -> str:
        return _transpose(b, _reshape(b, b.linear(x, d), (bs, n, heads, hd)), perm)

    q, k, v = proj([0, 2, 1, 3]), proj([0, 2, 3, 1]), proj([0, 2, 1, 3])
    a = b.op("Softmax", [b.op("Mul", [b.op("MatMul", [q, k], (bs, heads, n, n)),
                                      b.const(np.array(hd ** -0.5, np.float32), "scale")], (bs, heads, n, n))],
             (bs, heads, n, n), axis=-1)
    y = b.op("MatMul", [a, v], (bs, heads, n, hd))
    return b.linear(_reshape(b, _transpose(b, y, [0, 2, 1, 3]), (bs, n, d)), d)


def efficientformer(variant: str = "l1", res: int = 224, graph_only: bool = False,
                    classes: int = 1000) -> onnx.ModelProto:
    """EfficientFormer: conv stem, pooling-mixer meta blocks (4D), attention blocks (3D) at the end."""
    layers, dims, vit_n = {"l1": ([3, 2, 6, 4], [48, 96, 224, 448], 1),
                           "l3": ([4, 4, 12, 6], [64, 128, 320, 512], 4)}[variant]
    b = OnnxBuilder(f"efficientformer_{variant}", (1, 3, res, res), opset=17)
    x = b.conv_bn_act(b.conv_bn_act("input", dims[0] // 2, 3, 2), dims[0], 3, 2)
    for stage, (n, d) in enumerate(zip(layers, dims)):
        if stage:
            x = b.bn(b.conv(x, d, 3, 2, bias=False))
        n4 = n - vit_n if stage == len(layers) - 1 else n
        for _ in range(n4):
            pooled = b.op("Sub", [b.avg_pool(x, 3, 1, 1), x], b.shapes[x])
            x = b.add(x, pooled)
            y = b.bn(b.conv(b.act(b.bn(b.conv(x, 4 * d, 1, bias=False)), "gelu"), d, 1, bias=False))
            x = b.add(x, y)
        if stage == len(layers) - 1:
            _, c, h, w = b.shapes[x]
            x = _transpose(b, _reshape(b, x, (1, c, h * w)), [0, 2, 1])
            for _ in range(vit_n):
                x = b.add(x, attention(b, layer_norm(b, x), 8, key_dim=32, bias_table=True))
                x = b.add(x, mlp(b, layer_norm(b, x)))
            x = layer_norm(b, x)
            x = b.op("ReduceMean", [x], (1, c), axes=[1], keepdims=0)
    return b.model(b.linear(x, classes), graph_only)


def levit(variant: str = "128s", res: int = 224, graph_only: bool = False, classes: int = 1000) -> onnx.ModelProto:
    """LeViT-style hybrid: 4 stride-2 conv stem, attention stages with shrinking token grids."""
    dims, heads, depths = {"128s": ([128, 256, 384], [4, 6, 8], [2, 3, 4]),
                           "192": ([192, 288, 384], [3, 5, 6], [4, 4, 4])}[variant]
    b = OnnxBuilder(f"levit_{variant}", (1, 3, res, res), opset=17)
    x = "input"
    for c in (dims[0] // 8, dims[0] // 4, dims[0] // 2, dims[0]):
        x = b.conv_bn_act(x, c, 3, 2, act="hswish")
    _, c, h, w = b.shapes[x]
    x = _transpose(b, _reshape(b, x, (1, c, h * w)), [0, 2, 1])
    for stage, (d, nh, depth) in enumerate(zip(dims, heads, depths)):
        if stage:  # shrink attention: subsample the token grid by 2, widen to d
            y = _reshape(b, x, (1, h, w, b.shapes[x][2]))
            y = b.op("Slice", [y, b.const(np.array([0, 0], np.int64)), b.const(np.array([h, w], np.int64)),
                               b.const(np.array([1, 2], np.int64)), b.const(np.array([2, 2], np.int64))],
                     (1, (h + 1) // 2, (w + 1) // 2, b.shapes[x][2]))
            h, w = (h + 1) // 2, (w + 1) // 2
            x = b.linear(_reshape(b, y, (1, h * w, b.shapes[x][2])), d)
        for _ in range(depth):
            x = b.add(x, attention(b, x, nh, key_dim=16, bias_table=True))
            x = b.add(x, mlp(b, x, 2.0, "hswish"))
    x = b.op("ReduceMean", [x], (1, b.shapes[x][2]), axes=[1], keepdims=0)
    return b.model(b.linear(x, classes), graph_only)
