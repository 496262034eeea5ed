"""An MBConv block space in the style of FBNet: one choice per searchable layer.

An architecture is 22 layer choices joined by ``-``, each ``k{3,5}e{1,3,6}`` with an
optional ``g2`` (the block's 1x1 convolutions in two groups, with a channel shuffle after
the expansion) or ``skip`` (the layer left out; only where its input and output shapes
agree). Example: ``k3e1-k3e6-k5e3g2-skip-...``.

Skeleton (FBNet-A's macro structure): stem conv3x3 (16) + BN + ReLU; layers in stages of
(channels, count, first stride) (16,1,1) (24,4,2) (32,4,2) (64,4,2) (112,4,1) (184,4,2)
(352,1,1); conv1x1 to 1504 + BN + ReLU; global pool; linear. ``imagenet``: 224x224
input, stem stride 2, 1000 classes. ``cifar``: 32x32 input, stem stride 1, the first
stride-2 stage at stride 1 (32 -> 4), 10 classes.

An MBConv layer: 1x1 expansion (c_in*e, groups g) + BN + ReLU [+ channel shuffle for
g=2], depthwise kxk (stride s) + BN + ReLU, 1x1 projection (groups g) + BN, and a
residual add when s=1 and c_in=c_out. With e=1 the expansion is left out.
"""

from __future__ import annotations

import re
from functools import partial

from ..zoo.builder import OnnxBuilder

STAGES = ((16, 1, 1), (24, 4, 2), (32, 4, 2), (64, 4, 2), (112, 4, 1), (184, 4, 2), (352, 1, 1))
LAYERS = sum(n for _, n, _ in STAGES)
HEAD = 1504
KERNELS, EXPANSIONS, GROUPS = (3, 5), (1, 3, 6), (1, 2)
_TOKEN = re.compile(r"k(\d+)e(\d+)(?:g(\d+))?")
VARIANTS = {"imagenet": {"resolution": 224, "stem_stride": 2, "classes": 1000, "cifar_strides": False},
            "cifar": {"resolution": 32, "stem_stride": 1, "classes": 10, "cifar_strides": True}}


def layer_plan(variant: str = "imagenet") -> list[tuple[int, int, int]]:
    """(c_in, c_out, stride) of each searchable layer."""
    plan, c_in = [], 16
    for si, (c, n, s) in enumerate(STAGES):
        if VARIANTS[variant]["cifar_strides"] and si == 1:
            s = 1
        for i in range(n):
            plan.append((c_in, c, s if i == 0 else 1))
            c_in = c
    return plan


def parse_arch(arch: str, variant: str = "imagenet") -> list[tuple[int, int, int] | None]:
    """``[(kernel, expansion, groups) or None for skip, ...]``; ValueError when malformed."""
    tokens = [t for t in arch.strip().split("-")]
    if len(tokens) != LAYERS:
        raise ValueError(f"an MBConv architecture has {LAYERS} layers joined by '-', got {len(tokens)}: {arch!r}")
    out: list[tuple[int, int, int] | None] = []
    for i, (tok, (c_in, c_out, s)) in enumerate(zip(tokens, layer_plan(variant))):
        if tok == "skip":
            if c_in != c_out or s != 1:
                raise ValueError(f"layer {i} changes the shape ({c_in}->{c_out} channels, stride {s}): "
                                 f"it cannot be skipped in {arch!r}")
            out.append(None)
            continue
        m = _TOKEN.fullmatch(tok)
        if not m:
            raise ValueError(f"bad MBConv layer {tok!r} (layer {i}): expected k3e6, k5e3g2 or skip")
        k, e, g = int(m[1]), int(m[2]), int(m[3] or 1)
        if k not in KERNELS or e not in EXPANSIONS or g not in GROUPS:
            raise ValueError(f"bad MBConv layer {tok!r} (layer {i}): kernel 3|5, expansion 1|3|6, groups 1|2")
        out.append((k, e, g))
    return out


def _mbconv(b: OnnxBuilder, x: str, c_out: int, k: int, e: int, g: int, s: int) -> str:
    c_in = b.shapes[x][1]
    y = x
    if e != 1:
        y = b.conv_bn_act(y, c_in * e, 1, 1, groups=g)
        if g > 1:
            y = b.channel_shuffle(y, g)
    y = b.conv_bn_act(y, c_in * e, k, s, groups=c_in * e)
    y = b.bn(b.conv(y, c_out, 1, 1, groups=g, bias=False))
    return b.add(x, y) if s == 1 and c_in == c_out else y


def _stem(b: OnnxBuilder, x: str, s: int) -> str:
    return b.conv_bn_act(x, 16, 3, s)


def _head(b: OnnxBuilder, x: str, classes: int) -> str:
    return b.classifier(b.conv_bn_act(x, HEAD, 1, 1), classes)


def _network(b: OnnxBuilder, layers: list[tuple[int, int, int] | None], variant: str) -> str:
    # stem, layers and head are segments (oplat.spaces.compose): 19 choices at 22 places
    v = VARIANTS[variant]
    x = b.segment(("mbconv-stem", v["stem_stride"]), partial(_stem, s=v["stem_stride"]), "input")
    for choice, (_, c_out, s) in zip(layers, layer_plan(variant)):
        if choice is not None:
            k, e, g = choice
            x = b.segment(("mbconv", c_out, k, e, g, s), partial(_mbconv, c_out=c_out, k=k, e=e, g=g, s=s), x)
    return b.segment(("mbconv-head", v["classes"]), partial(_head, classes=v["classes"]), x)


def random_arch(rng, variant: str = "imagenet", skip_p: float = 0.15) -> str:
    """A random architecture: each layer uniform over the choices, skipped with ``skip_p``
    where it may be."""
    toks = []
    for c_in, c_out, s in layer_plan(variant):
        if c_in == c_out and s == 1 and rng.random() < skip_p:
            toks.append("skip")
            continue
        k, e, g = KERNELS[rng.integers(2)], EXPANSIONS[rng.integers(3)], GROUPS[rng.integers(2)]
        toks.append(f"k{k}e{e}" + (f"g{g}" if g > 1 else ""))
    return "-".join(toks)
