"""Vision Transformer families built directly as ONNX: ViT/DeiT, Swin, MobileViT,
EfficientFormer, LeViT-style hybrids, SegFormer's MiT, PVT and CvT.

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
    """Multi-head self-attention over (1, N, D) tokens (``bias_table``: a relative
    position bias added to the attention logits, as Swin, BEiT and LeViT have)."""
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


def transformer_block(b: OnnxBuilder, x: str, heads: int, mlp_ratio: float = 4.0, rel_pos: bool = False,
                      layer_scale: bool = False) -> str:
    """Pre-norm block; ``layer_scale`` multiplies each branch by a learned per-channel gain
    before the residual add (BEiT, DINOv2)."""
    d = b.shapes[x][-1]

    def scaled(y: str) -> str:
        if not layer_scale:
            return y
        gamma = b.const(np.full(d, 0.1, np.float32), "gamma")
        b.shapes[gamma] = (d,)
        return b.mul(y, gamma)

    x = b.add(x, scaled(attention(b, layer_norm(b, x), heads, bias_table=rel_pos)))
    return b.add(x, scaled(mlp(b, layer_norm(b, x), mlp_ratio)))


def vit(dim: int = 384, depth: int = 12, heads: int = 6, patch: int = 16, res: int = 224,
        distilled: bool = False, graph_only: bool = False, classes: int = 1000, rel_pos: bool = False,
        layer_scale: bool = False, head: str = "cls") -> onnx.ModelProto:
    """ViT / DeiT: patch-embedding conv, class (and distillation) token, pre-norm blocks.

    BEiT: ``rel_pos``, ``layer_scale``, ``head="mean"`` (layer norm of the mean patch
    token); DINOv2's classifier: ``head="cls+mean"`` (class token and mean patch token
    concatenated).
    """
    b = OnnxBuilder("vit", (1, 3, res, res), opset=17)
    x = b.conv("input", dim, patch, patch, pad=0)
    g = res // patch
    x = _transpose(b, _reshape(b, x, (1, dim, g * g)), [0, 2, 1])
    n_tok = 2 if distilled else 1
    tokens = b.const(np.zeros((1, n_tok, dim), np.float32), "cls")
    b.shapes[tokens] = (1, n_tok, dim)
    x = b.concat([tokens, x], axis=1)
    if not rel_pos:
        x = b.add(x, b.const(np.zeros((1, g * g + n_tok, dim), np.float32), "pos"))
    for _ in range(depth):
        x = transformer_block(b, x, heads, rel_pos=rel_pos, layer_scale=layer_scale)

    def mean_patch(t: str) -> str:  # mean over the patch tokens (class tokens left out)
        patches = b.op("Slice", [t, b.const(np.array([n_tok], np.int64)), b.const(np.array([g * g + n_tok], np.int64)),
                                 b.const(np.array([1], np.int64))], (1, g * g, dim))
        return b.op("ReduceMean", [patches], (1, dim), axes=[1], keepdims=0)

    if head == "mean":
        return b.model(b.linear(layer_norm(b, mean_patch(x)), classes), graph_only)
    x = layer_norm(b, x)
    cls = b.op("Gather", [x, b.const(np.array(0, np.int64), "idx")], (1, dim), axis=1)
    if head == "cls+mean":
        cls = b.concat([cls, mean_patch(x)], axis=1)
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
                           "l3": ([4, 4, 12, 6], [64, 128, 320, 512], 4),
                           "l7": ([6, 6, 18, 8], [96, 192, 384, 768], 8)}[variant]
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


def _tokens(b: OnnxBuilder, x: str) -> str:
    """(1, C, H, W) image -> (1, H*W, C) tokens."""
    _, c, h, w = b.shapes[x]
    return _transpose(b, _reshape(b, x, (1, c, h * w)), [0, 2, 1])


def _image(b: OnnxBuilder, t: str, h: int, w: int) -> str:
    """(1, H*W, C) tokens -> (1, C, H, W) image."""
    c = b.shapes[t][2]
    return _reshape(b, _transpose(b, t, [0, 2, 1]), (1, c, h, w))


def _heads_attention(b: OnnxBuilder, q_in: str, kv_in: str, heads: int) -> str:
    """Attention of q_in's tokens over kv_in's (both (1, N, D); key/value sets may be shorter)."""
    return _heads_attention_kv(b, q_in, kv_in, kv_in, heads)


def _sr_attention(b: OnnxBuilder, x: str, heads: int, sr: int, h: int, w: int) -> str:
    """Spatial-reduction attention (PVT, SegFormer): keys and values from an sr x sr strided conv."""
    kv = x
    if sr > 1:
        kv = layer_norm(b, _tokens(b, b.conv(_image(b, x, h, w), b.shapes[x][2], sr, sr, pad=0)))
    return _heads_attention(b, x, kv, heads)


def _mix_ffn(b: OnnxBuilder, x: str, h: int, w: int, ratio: int = 4) -> str:
    """SegFormer's Mix-FFN: linear, 3x3 depthwise conv on the token image, GELU, linear."""
    d = b.shapes[x][2]
    y = b.linear(x, d * ratio)
    y = _tokens(b, b.conv(_image(b, y, h, w), d * ratio, 3, 1, groups=d * ratio))
    return b.linear(b.act(y, "gelu"), d)


def mit(variant: str = "b0", res: int = 224, graph_only: bool = False, classes: int = 1000) -> onnx.ModelProto:
    """SegFormer's Mix Transformer encoder (nvidia/mit-b0..b5) with its classification head:
    overlapping patch embeddings, spatial-reduction attention, Mix-FFN, mean over tokens."""
    depths = {"b0": (2, 2, 2, 2), "b1": (2, 2, 2, 2), "b2": (3, 4, 6, 3), "b3": (3, 4, 18, 3),
              "b4": (3, 8, 27, 3), "b5": (3, 6, 40, 3)}[variant]
    dims = (32, 64, 160, 256) if variant == "b0" else (64, 128, 320, 512)
    b = OnnxBuilder(f"mit_{variant}", (1, 3, res, res), opset=17)
    x = "input"
    for stage, (d, depth, nh, sr, k, st) in enumerate(zip(dims, depths, (1, 2, 5, 8), (8, 4, 2, 1), (7, 3, 3, 3),
                                                           (4, 2, 2, 2))):
        x = b.conv(x, d, k, st, pad=k // 2)
        _, _, h, w = b.shapes[x]
        t = layer_norm(b, _tokens(b, x))
        for _ in range(depth):
            t = b.add(t, _sr_attention(b, layer_norm(b, t), nh, sr, h, w))
            t = b.add(t, _mix_ffn(b, layer_norm(b, t), h, w))
        t = layer_norm(b, t)
        x = _image(b, t, h, w)
    t = b.op("ReduceMean", [_tokens(b, x)], (1, dims[-1]), axes=[1], keepdims=0)
    return b.model(b.linear(t, classes), graph_only)


def pvt(variant: str = "tiny", res: int = 224, graph_only: bool = False, classes: int = 1000) -> onnx.ModelProto:
    """Pyramid Vision Transformer v1 (Zetatechs/pvt-*-224): non-overlapping patch embeddings
    with position embeddings, spatial-reduction attention, class token in the last stage."""
    depths = {"tiny": (2, 2, 2, 2), "small": (3, 4, 6, 3), "medium": (3, 4, 18, 3), "large": (3, 8, 27, 3)}[variant]
    b = OnnxBuilder(f"pvt_{variant}", (1, 3, res, res), opset=17)
    x = "input"
    last = len(depths) - 1
    for stage, (d, depth, nh, sr, p, ratio) in enumerate(zip((64, 128, 320, 512), depths, (1, 2, 5, 8), (8, 4, 2, 1),
                                                              (4, 2, 2, 2), (8, 8, 4, 4))):
        x = b.conv(x, d, p, p, pad=0)
        _, _, h, w = b.shapes[x]
        t = layer_norm(b, _tokens(b, x))
        n_tok = h * w
        if stage == last:
            cls = b.const(np.zeros((1, 1, d), np.float32), "cls")
            b.shapes[cls] = (1, 1, d)
            t = b.concat([cls, t], axis=1)
            n_tok += 1
        t = b.add(t, b.const(np.zeros((1, n_tok, d), np.float32), "pos"))
        for _ in range(depth):
            y = layer_norm(b, t)
            if stage == last:  # sr = 1 here: attention over every token, class token included
                y = _heads_attention(b, y, y, nh)
            else:
                y = _sr_attention(b, y, nh, sr, h, w)
            t = b.add(t, y)
            t = b.add(t, mlp(b, layer_norm(b, t), ratio))
        if stage < last:
            x = _image(b, t, h, w)
    t = layer_norm(b, t)
    cls = b.op("Gather", [t, b.const(np.array(0, np.int64), "idx")], (1, 512), axis=1)
    return b.model(b.linear(cls, classes), graph_only)


def cvt(depths=(1, 2, 10), res: int = 224, graph_only: bool = False, classes: int = 1000) -> onnx.ModelProto:
    """Convolutional vision Transformer (microsoft/cvt-13, cvt-21): convolutional token
    embeddings, q/k/v from 3x3 depthwise conv + BatchNorm projections (keys and values at
    stride 2), class token in the last stage."""
    b = OnnxBuilder("cvt", (1, 3, res, res), opset=17)
    x = "input"
    last = len(depths) - 1
    for stage, (d, depth, nh, k, st, pad) in enumerate(zip((64, 192, 384), depths, (1, 3, 6), (7, 3, 3), (4, 2, 2),
                                                            (2, 1, 1))):
        x = b.conv(x, d, k, st, pad=pad)
        _, _, h, w = b.shapes[x]
        t = layer_norm(b, _tokens(b, x))
        if stage == last:
            cls = b.const(np.zeros((1, 1, d), np.float32), "cls")
            b.shapes[cls] = (1, 1, d)
            t = b.concat([cls, t], axis=1)
        for _ in range(depth):
            t = b.add(t, _conv_attention(b, layer_norm(b, t), nh, h, w, stage == last))
            t = b.add(t, mlp(b, layer_norm(b, t)))
        if stage < last:
            x = _image(b, t, h, w)
    t = layer_norm(b, t)
    cls = b.op("Gather", [t, b.const(np.array(0, np.int64), "idx")], (1, 384), axis=1)
    return b.model(b.linear(cls, classes), graph_only)


def _conv_attention(b: OnnxBuilder, t: str, heads: int, h: int, w: int, has_cls: bool) -> str:
    _, n, d = b.shapes[t]
    cls = None
    if has_cls:
        cls = b.op("Slice", [t, b.const(np.array([0], np.int64)), b.const(np.array([1], np.int64)),
                             b.const(np.array([1], np.int64))], (1, 1, d))
        t = b.op("Slice", [t, b.const(np.array([1], np.int64)), b.const(np.array([n], np.int64)),
                           b.const(np.array([1], np.int64))], (1, n - 1, d))
    img = _image(b, t, h, w)

    def proj(stride: int) -> str:
        y = _tokens(b, b.bn(b.conv(img, d, 3, stride, groups=d, bias=False)))
        return b.concat([cls, y], axis=1) if cls is not None else y

    return _heads_attention_kv(b, proj(1), proj(2), proj(2), heads)  # k and v: convs of their own


def _heads_attention_kv(b: OnnxBuilder, q_in: str, k_in: str, v_in: str, heads: int) -> str:
    """Multi-head attention with queries, keys and values projected from three token sets."""
    _, n, d = b.shapes[q_in]
    m = b.shapes[k_in][1]
    hd = d // heads
    q = _transpose(b, _reshape(b, b.linear(q_in, d), (1, n, heads, hd)), [0, 2, 1, 3])
    k = _transpose(b, _reshape(b, b.linear(k_in, d), (1, m, heads, hd)), [0, 2, 3, 1])
    v = _transpose(b, _reshape(b, b.linear(v_in, d), (1, m, heads, hd)), [0, 2, 1, 3])
    a = b.op("Mul", [b.op("MatMul", [q, k], (1, heads, n, m)), b.const(np.array(hd ** -0.5, np.float32), "scale")],
             (1, heads, n, m))
    y = b.op("MatMul", [b.op("Softmax", [a], (1, heads, n, m), axis=-1), v], (1, heads, n, hd))
    return b.linear(_reshape(b, _transpose(b, y, [0, 2, 1, 3]), (1, n, d)), d)


def _group_norm(b: OnnxBuilder, x: str) -> str:
    """GroupNorm with one group over (C, H, W), as PoolFormer normalises."""
    c = b.shapes[x][1]
    scale, bias = b.const(np.ones(c, np.float32), "gn_g"), b.const(np.zeros(c, np.float32), "gn_b")
    return b.op("GroupNormalization", [x, scale, bias], b.shapes[x], num_groups=1, epsilon=1e-5)


def _channel_scale(b: OnnxBuilder, x: str) -> str:
    """Per-channel layer scale on an image (1, C, H, W)."""
    c = b.shapes[x][1]
    g = b.const(np.full((c, 1, 1), 0.1, np.float32), "ls")
    b.shapes[g] = (c, 1, 1)
    return b.mul(x, g)


def poolformer(variant: str = "s12", res: int = 224, graph_only: bool = False, classes: int = 1000) -> onnx.ModelProto:
    """PoolFormer (sail/poolformer_*): MetaFormer blocks whose token mixer is a 3x3 average
    pool minus its input, GroupNorm(1), 1x1-conv MLPs, layer scale."""
    layers = {"s12": (2, 2, 6, 2), "s24": (4, 4, 12, 4), "s36": (6, 6, 18, 6), "m36": (6, 6, 18, 6),
              "m48": (8, 8, 24, 8)}[variant]
    dims = (96, 192, 384, 768) if variant.startswith("m") else (64, 128, 320, 512)
    b = OnnxBuilder(f"poolformer_{variant}", (1, 3, res, res), opset=21)
    x = b.conv("input", dims[0], 7, 4, pad=2)
    for stage, (n, d) in enumerate(zip(layers, dims)):
        if stage:
            x = b.conv(x, d, 3, 2, pad=1)
        for _ in range(n):
            y = _group_norm(b, x)
            x = b.add(x, _channel_scale(b, b.op("Sub", [b.avg_pool(y, 3, 1, 1), y], b.shapes[y])))
            y = b.conv(b.act(b.conv(_group_norm(b, x), 4 * d, 1), "gelu"), d, 1)
            x = b.add(x, _channel_scale(b, y))
    x = b.op("ReduceMean", [_group_norm(b, x), b.const(np.array([2, 3], np.int64), "axes")], (1, dims[-1]),
             keepdims=0)
    return b.model(b.linear(x, classes), graph_only)


def van(variant: str = "tiny", res: int = 224, graph_only: bool = False, classes: int = 1000) -> onnx.ModelProto:
    """Visual Attention Network (Visual-Attention-Network/van-*): large-kernel attention
    (5x5 depthwise, 7x7 depthwise dilated 3, 1x1 conv, gating multiply), conv MLPs with a
    3x3 depthwise conv, BatchNorm, layer scale, layer norm after each stage."""
    depths = {"tiny": (3, 3, 5, 2), "small": (2, 2, 4, 2), "base": (3, 3, 12, 3), "large": (3, 5, 27, 3)}[variant]
    dims = (32, 64, 160, 256) if variant == "tiny" else (64, 128, 320, 512)
    b = OnnxBuilder(f"van_{variant}", (1, 3, res, res), opset=17)
    x = "input"
    for stage, (d, depth, ratio) in enumerate(zip(dims, depths, (8, 8, 4, 4))):
        x = b.bn(b.conv(x, d, 7, 4, pad=3) if stage == 0 else b.conv(x, d, 3, 2, pad=1))
        for _ in range(depth):
            y = b.act(b.conv(b.bn(x), d, 1), "gelu")
            attn = b.conv(b.conv(b.conv(y, d, 5, groups=d), d, 7, groups=d, pad=9, dilation=3), d, 1)
            y = b.add(b.conv(b.mul(y, attn), d, 1), y)
            x = b.add(x, _channel_scale(b, y))
            y = b.conv(b.bn(x), d * ratio, 1)
            y = b.conv(b.act(b.conv(y, d * ratio, 3, groups=d * ratio), "gelu"), d, 1)
            x = b.add(x, _channel_scale(b, y))
        _, _, h, w = b.shapes[x]
        x = _image(b, layer_norm(b, _tokens(b, x)), h, w)
    x = b.op("ReduceMean", [_tokens(b, x)], (1, dims[-1]), axes=[1], keepdims=0)
    return b.model(b.linear(x, classes), graph_only)


def levit_hf(variant: str = "128S", res: int = 224, graph_only: bool = False, classes: int = 1000) -> onnx.ModelProto:
    """LeViT as published (facebook/levit-*): conv stem, attention with small keys, values
    ``attention_ratio`` times wider and a Hardswish before the output projection,
    attention-subsample blocks between stages, linear+BN MLPs (BN folded), mean pooling
    and a classifier with a distillation head."""
    dims, heads, depths, kd = {"128S": ((128, 256, 384), (4, 6, 8), (2, 3, 4), 16),
                               "128": ((128, 256, 384), (4, 8, 12), (4, 4, 4), 16),
                               "192": ((192, 288, 384), (3, 5, 6), (4, 4, 4), 32),
                               "256": ((256, 384, 512), (4, 6, 8), (4, 4, 4), 32),
                               "384": ((384, 512, 768), (6, 9, 12), (4, 4, 4), 32)}[variant]
    b = OnnxBuilder(f"levit_{variant}", (1, 3, res, res), opset=17)
    x = "input"
    for i, c in enumerate((dims[0] // 8, dims[0] // 4, dims[0] // 2, dims[0])):
        x = b.conv(x, c, 3, 2, pad=1)
        if i < 3:
            x = b.act(x, "hswish")
    _, _, h, w = b.shapes[x]
    t = _tokens(b, x)

    def attn(q_in: str, kv_in: str, nh: int, key_dim: int, ratio: int, out: int) -> str:
        n, m = b.shapes[q_in][1], b.shapes[kv_in][1]
        vd = ratio * key_dim
        q = _transpose(b, _reshape(b, b.linear(q_in, nh * key_dim), (1, n, nh, key_dim)), [0, 2, 1, 3])
        kv = _reshape(b, b.linear(kv_in, nh * (key_dim + vd)), (1, m, nh, key_dim + vd))
        k = b.op("Slice", [kv, b.const(np.array([0], np.int64)), b.const(np.array([key_dim], np.int64)),
                           b.const(np.array([3], np.int64))], (1, m, nh, key_dim))
        v = b.op("Slice", [kv, b.const(np.array([key_dim], np.int64)), b.const(np.array([key_dim + vd], np.int64)),
                           b.const(np.array([3], np.int64))], (1, m, nh, vd))
        k, v = _transpose(b, k, [0, 2, 3, 1]), _transpose(b, v, [0, 2, 1, 3])
        a = b.op("Mul", [b.op("MatMul", [q, k], (1, nh, n, m)), b.const(np.array(key_dim ** -0.5, np.float32), "s")],
                 (1, nh, n, m))
        a = b.op("Add", [a, b.const(np.zeros((1, nh, n, m), np.float32), "bias")], (1, nh, n, m))
        y = b.op("MatMul", [b.op("Softmax", [a], (1, nh, n, m), axis=-1), v], (1, nh, n, vd))
        y = b.act(_reshape(b, _transpose(b, y, [0, 2, 1, 3]), (1, n, nh * vd)), "hswish")
        return b.linear(y, out)

    def mlp_hs(x: str, ratio: int = 2) -> str:
        d = b.shapes[x][-1]
        return b.linear(b.act(b.linear(x, d * ratio), "hswish"), d)

    for stage, (d, nh, depth) in enumerate(zip(dims, heads, depths)):
        if stage:  # attention subsample: queries from every other token of the grid, keys/values from all
            prev = b.shapes[t][2]
            g = _reshape(b, t, (1, h, w, prev))
            g = b.op("Slice", [g, b.const(np.array([0, 0], np.int64)), b.const(np.array([h, w], np.int64)),
                               b.const(np.array([1, 2], np.int64)), b.const(np.array([2, 2], np.int64))],
                     (1, (h + 1) // 2, (w + 1) // 2, prev))
            h, w = (h + 1) // 2, (w + 1) // 2
            t = attn(_reshape(b, g, (1, h * w, prev)), t, prev // kd, kd, 4, d)
            t = b.add(t, mlp_hs(t))
        for _ in range(depth):
            t = b.add(t, attn(t, t, nh, kd, 2, d))
            t = b.add(t, mlp_hs(t))
    t = b.op("ReduceMean", [t], (1, dims[-1]), axes=[1], keepdims=0)
    y = b.add(b.linear(t, classes), b.linear(t, classes))  # class and distillation heads, averaged
    return b.model(y, graph_only)
