"""The zoo's model builders by name (``resnet18``, ``mobilenet_v2_1.0``, ... and
``<space>:<arch>`` of a search space, e.g. ``nb201:<arch>``)."""

from __future__ import annotations

from functools import partial
from typing import Callable

import onnx

from . import cnn, vit

ZOO: dict[str, Callable[..., onnx.ModelProto]] = {}


def _register() -> None:
    for d in (10, 18, 34, 50):
        ZOO[f"resnet{d}"] = partial(cnn.resnet, d)
    ZOO["resnet18_w0.5"] = partial(cnn.resnet, 18, 0.5)
    ZOO["resnext26_32x4d"] = partial(cnn.resnet, 26, groups=32, base_width=4)
    ZOO["resnext50_32x4d"] = partial(cnn.resnet, 50, groups=32, base_width=4)
    for w in (0.25, 0.5, 0.75, 1.0):
        ZOO[f"mobilenet_v1_{w}"] = partial(cnn.mobilenet_v1, w)
    for w in (0.35, 0.5, 0.75, 1.0, 1.4):
        ZOO[f"mobilenet_v2_{w}"] = partial(cnn.mobilenet_v2, w)
    ZOO["mobilenet_v2_1.0_160"] = partial(cnn.mobilenet_v2, 1.0, 160)
    ZOO["mobilenet_v2_1.0_128"] = partial(cnn.mobilenet_v2, 1.0, 128)
    for size in ("large", "small"):
        for w in (0.75, 1.0):
            ZOO[f"mobilenet_v3_{size}_{w}"] = partial(cnn.mobilenet_v3, size, w)
    for v in range(5):
        ZOO[f"efficientnet_lite{v}"] = partial(cnn.efficientnet_lite, v)
    for w in (0.5, 1.0, 1.5, 2.0):
        ZOO[f"shufflenet_v2_{w}"] = partial(cnn.shufflenet_v2, w)
    ZOO["squeezenet1_0"] = partial(cnn.squeezenet, "1_0")
    ZOO["squeezenet1_1"] = partial(cnn.squeezenet, "1_1")
    ZOO["densenet121"] = partial(cnn.densenet, 121)
    ZOO["densenet169"] = partial(cnn.densenet, 169)
    for f in ("200mf", "400mf", "600mf", "800mf", "1.6gf"):
        ZOO[f"regnetx_{f}"] = partial(cnn.regnet, f)
        ZOO[f"regnety_{f}"] = partial(cnn.regnet, f, se=True)
    ZOO["mnasnet_1.0"] = partial(cnn.mnasnet, 1.0)
    ZOO["mnasnet_0.5"] = partial(cnn.mnasnet, 0.5)
    ZOO["ghostnet_1.0"] = partial(cnn.ghostnet, 1.0)
    for name, (dim, depth, heads) in {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12)}.items():
        for patch in (16, 32):
            ZOO[f"vit_{name}_patch{patch}_224"] = partial(vit.vit, dim, depth, heads, patch)
        ZOO[f"deit_{name}_distilled_patch16_224"] = partial(vit.vit, dim, depth, heads, 16, distilled=True)
    ZOO["swin_tiny_patch4_window7_224"] = partial(vit.swin, 96, (2, 2, 6, 2), (3, 6, 12, 24))
    ZOO["swin_small_patch4_window7_224"] = partial(vit.swin, 96, (2, 2, 18, 2), (3, 6, 12, 24))
    for v in ("xxs", "xs", "s"):
        ZOO[f"mobilevit_{v}"] = partial(vit.mobilevit, v)
    for v in ("l1", "l3"):
        ZOO[f"efficientformer_{v}"] = partial(vit.efficientformer, v)
    for v in ("128s", "192"):
        ZOO[f"levit_{v}"] = partial(vit.levit, v)
    for v in ("b0", "b1"):
        ZOO[f"mit_{v}"] = partial(vit.mit, v)
    ZOO["pvt_tiny_224"] = partial(vit.pvt, "tiny")
    ZOO["cvt_13"] = partial(vit.cvt, (1, 2, 10))


_register()


def is_transformer(name: str) -> bool:
    """True for the zoo's Vision Transformer families (ViT/DeiT, Swin, MobileViT, ...)."""
    fn = ZOO.get(name)
    return getattr(fn, "func", None) is not None and fn.func.__module__ == vit.__name__


def list_models() -> list[str]:
    """Every model name the zoo builds (``<space>:<arch>`` of a search space is accepted besides these)."""
    return sorted(ZOO)


def build(name: str, graph_only: bool = False) -> onnx.ModelProto:
    """Build a zoo model by name, or ``<space>:<architecture>`` from a search space
    (:mod:`oplat.spaces`); raises KeyError with the known names otherwise, ValueError
    for a malformed architecture."""
    space, sep, arch = name.partition(":")
    if sep:
        from ..spaces import get_space, list_spaces

        if space not in list_spaces():
            raise KeyError(name)
        return get_space(space).onnx(arch, graph_only=graph_only)
    if name not in ZOO:
        raise KeyError(name)
    m = ZOO[name](graph_only=graph_only)
    m.graph.name = name
    return m
