"""Composed predictions (oplat.spaces.compose) equal the per-model path's, bit for bit.

The built-in spaces are checked on random networks of each; a hostile space cuts random
networks into pieces at the worst places (a BatchNorm or ReLU in the piece after its
conv, a hard-swish, swish or pre-activation block spread over three pieces, explicit
pads, identities, dead and aliasing pieces, pieces reading several earlier tensors,
pieces made of pieces), so
that every rule of the lowering that could cross between pieces is made to.
"""

from __future__ import annotations

import random
from functools import partial

import numpy as np
import pytest

from oplat.profile import load_profile
from oplat.spaces import SearchSpace, get_space
from oplat.spaces.compose import SpaceComposer
from oplat.sweep import score_archs

# one profile per lowering that composes (and its variants that choose kernels differently)
PROFILES = ("pixel4/tflite-gpu", "s10/tflite-gpu", "pixel4/tflite-cpu-1large", "onefusion/torch-gpu",
            "iphonexs/torch-gpu")


def _const(b, v):
    return b.const(np.array(v, np.float32), "c")


def _conv(b, x, c, k, groups=1, pad=None):
    return b.conv(x, c, k, 1, groups=groups, bias=False, pad=pad)


def _bn(b, x):
    return b.bn(x)


def _act(b, x, kind):
    return b.act(x, kind)


def _add(b, x, y):
    return b.add(x, y)


def _add_c(b, x, v):
    return b.op("Add", [x, _const(b, v)], b.shapes[x])


def _clip6(b, x):
    return b.act(x, "relu6")


def _mul_div6(b, x, y):
    m = b.op("Mul", [x, y], b.shapes[x])
    return b.op("Div", [m, _const(b, 6.0)], b.shapes[x])


def _sigmoid(b, x):
    return b.op("Sigmoid", [x], b.shapes[x])


def _mul(b, x, y):
    return b.op("Mul", [x, y], b.shapes[x])


def _pad(b, x):
    n, c, h, w = b.shapes[x]
    return b.op("Pad", [x, b.const(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")], (n, c, h + 2, w + 2),
                mode="constant")


def _identity(b, x):
    return b.op("Identity", [x], b.shapes[x])


def _pool(b, x, kind):
    return b.avg_pool(x, 3, 1, 1) if kind == "avg" else b.max_pool(x, 3, 1, 1)


def _hand_on(b, x, y):  # a piece that builds something and hands its first input on
    b.act(y, "relu")
    return x


def _relu_conv(b, x, c):  # a ReLU read by a conv: the ReLU may go into the kernel before the piece
    return _conv(b, b.act(x, "relu"), c, 3)


def _concat_conv(b, x, y, c):
    return _conv(b, b.concat([x, y]), c, 1)


def _nested(b, x, y, c):  # a segment of segments: a BatchNorm split from its conv, a dead piece, a hand-on
    t = b.segment(("conv", c, 3), partial(_conv, c=c, k=3), x)
    b.segment(("conv", c, 1), partial(_conv, c=c, k=1), y)
    t = b.segment(("bn",), _bn, t)
    t = b.segment(("hand_on",), _hand_on, t, y)
    t = b.segment(("act", "relu"), partial(_act, kind="relu"), t)
    return b.segment(("add",), _add, t, y)


def _nested_conv(b, x, c):  # ends in a conv: what follows it outside may fuse into it
    return b.segment(("conv", c, 1), partial(_conv, c=c, k=1), b.segment(("identity",), _identity, x))


def _head(b, x):
    return b.classifier(x, 10)


def _chaos_network(b, seed: int) -> str:
    rng = random.Random(seed)
    c = 16
    x = b.segment(("conv", c, 3), partial(_conv, c=c, k=3), "input")
    same = [x]  # tensors of shape (1, c, 16, 16) that later pieces may read

    def seg(key, fn, *ins):
        return b.segment(key, fn, *ins)

    for _ in range(rng.randint(6, 14)):
        kind = rng.choice(["conv", "conv_bn", "relu", "hswish3", "swish2", "preact", "pad_conv", "identity",
                           "residual", "pool", "dead", "alias", "concat", "dw", "nested", "nested_conv", "relu_conv", "relu_conv"])
        prev = same[-1]
        if kind == "conv":
            y = seg(("conv", c, 1), partial(_conv, c=c, k=1), prev)
        elif kind == "conv_bn":  # the BatchNorm in the next piece: folds into the conv only together
            y = seg(("bn",), _bn, seg(("conv", c, 3), partial(_conv, c=c, k=3), prev))
        elif kind == "relu":
            y = seg(("act", "relu"), partial(_act, kind="relu"), prev)
        elif kind == "dw":
            y = seg(("dw", c), partial(_conv, c=c, k=3, groups=c), prev)
            y = seg(("act", "relu6"), _clip6, y)
        elif kind == "hswish3":  # x * relu6(x + 3) / 6 over three pieces
            t = seg(("add_c", 3.0), partial(_add_c, v=3.0), prev)
            t = seg(("clip6",), _clip6, t)
            y = seg(("mul_div6",), _mul_div6, prev, t)
        elif kind == "swish2":  # x * sigmoid(x) over two pieces
            y = seg(("mul",), _mul, prev, seg(("sigmoid",), _sigmoid, prev))
        elif kind == "preact":  # BatchNorm (of an add: not folded) -> ReLU -> padded conv, one per piece
            t = seg(("add",), _add, prev, rng.choice(same))
            t = seg(("act", "relu"), partial(_act, kind="relu"), seg(("bn",), _bn, t))
            y = seg(("conv", c, 3), partial(_conv, c=c, k=3), t)
        elif kind == "pad_conv":
            y = seg(("conv", c, 3, 0), partial(_conv, c=c, k=3, pad=0), seg(("pad",), _pad, prev))
        elif kind == "identity":
            y = seg(("identity",), _identity, prev)
        elif kind == "residual":
            y = seg(("add",), _add, prev, rng.choice(same))
        elif kind == "pool":
            y = seg(("pool", "avg"), partial(_pool, kind="avg"), prev)
        elif kind == "dead":  # a piece nothing reads
            seg(("conv", c, 1), partial(_conv, c=c, k=1), prev)
            continue
        elif kind == "nested":
            y = seg(("nested", c), partial(_nested, c=c), prev, rng.choice(same))
        elif kind == "nested_conv":
            y = seg(("nested_conv", c), partial(_nested_conv, c=c), prev)
        elif kind == "relu_conv":
            y = seg(("relu_conv", c), partial(_relu_conv, c=c), prev)
        elif kind == "alias":
            y = seg(("hand_on",), _hand_on, prev, rng.choice(same))
        else:
            y = seg(("concat_conv", c), partial(_concat_conv, c=c), prev, rng.choice(same))
        same.append(y)
    return b.segment(("head",), _head, same[-1])


CHAOS = SearchSpace("chaos-test", (1, 3, 16, 16), int, _chaos_network, lambda rng: str(int(rng.integers(1 << 30))))


def _check(profile_id: str, space: SearchSpace, archs: list[str]) -> SpaceComposer:
    prof = load_profile(profile_id)
    comp = SpaceComposer(prof, space)
    got = comp.summaries(archs)
    want = score_archs(prof, space, archs)
    for g, w in zip(got, want):
        assert g == w, (profile_id, g["arch"])
    return comp


@pytest.mark.parametrize("profile_id", PROFILES)
def test_hostile_pieces_compose_exactly(profile_id):
    comp = _check(profile_id, CHAOS, [str(s) for s in range(200)])
    # the borders were crossed and handled; nested pieces were composed of their own
    assert comp.stats.merges > 0 and comp.stats.pieces_composed > 0 and comp.stats.per_model == 0
    assert comp.stats.relu_borders > 0


@pytest.mark.parametrize("space", ["nb201", "mbconv-cifar"])
def test_builtin_spaces_compose_exactly(space):
    sp = get_space(space)
    rng = np.random.default_rng(7)
    comp = _check("pixel4/tflite-gpu", sp, [sp.sample(rng) for _ in range(40)])
    assert comp.stats.pieces_lowered < comp.stats.piece_hits  # the pieces are reused


def test_other_lowerings_and_unmarked_networks_go_whole():
    sp = get_space("nb201")
    comp = _check("host/ort-cpu-1t", sp, [sp.sample(np.random.default_rng(1)) for _ in range(3)])
    assert comp.stats.per_model == 3 and "ort-cpu" in comp.stats.fallbacks[0]

    def unmarked(b, _):  # builds ops without segments
        return b.classifier(b.conv("input", 8, 3), 10)

    sp2 = SearchSpace("unmarked-test", (1, 3, 16, 16), int, unmarked, lambda rng: "0")
    comp = _check("pixel4/tflite-gpu", sp2, ["0"])
    assert comp.stats.per_model == 1 and "outside a segment" in comp.stats.fallbacks[0]


def test_a_full_piece_cache_is_emptied_not_trusted(monkeypatch):
    from oplat.spaces import compose

    monkeypatch.setattr(compose, "MAX_PIECES", 20)  # a long sweep's cache, in miniature
    sp = get_space("nb201")
    comp = _check("pixel4/tflite-gpu", sp, [sp.sample(np.random.default_rng(3)) for _ in range(30)])
    assert len(comp._pieces) <= 20 + 1
