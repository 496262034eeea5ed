"""Kernels the regressors' features cannot describe, and the stand-ins that price them.

A convolution's features carry one kernel size (the benchmark's CNNs, which every
shipped profile learned from, have square kernels only). Fed a 1x7 or 7x1 kernel as
it is, a regressor prices it as a 1x1 or a 7x7 convolution: Inception v4 on a phone CPU
profile came out at 13 GFLOP/s for its 7x1 convs and 464 GFLOP/s for its 1x7 ones
beside 81 GFLOP/s for its square ones (issue 23). Instead, a kh x kw kernel is priced as
the square max(kh,kw) convolution of the same shapes, scaled by the share of its
multiply-adds it really does (kh*kw / k^2): the FLOP rate of the square conv it is a
slice of. ``bench/ood_kernels.py`` measures how well that predicts non-square convs
on this machine. Every such kernel is flagged in the result; ``--strict`` refuses it.
"""

from __future__ import annotations

from typing import Any, Mapping

CONV_TYPES = ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_GROUP")


def stand_in(kernel: str, impl: str, params: Mapping[str, Any]) -> tuple[str, dict[str, Any], float] | None:
    """``(impl, params, factor)`` of the square convolution that prices a non-square one
    (its prediction times ``factor``); None for a kernel the features describe."""
    if kernel not in CONV_TYPES:
        return None
    kh, kw = params.get("Kernel"), params.get("Kernel_w")
    if kw is None or kh == kw or not kh or not kw:
        return None
    k = max(int(kh), int(kw))
    p = dict(params)
    p["Kernel"] = p["Kernel_w"] = k
    if "FLOPS" in p:
        p["FLOPS"] = p["FLOPS"] * k * k / (kh * kw)
    # a non-square kernel never runs as Winograd (F(4x4, 3x3) needs 3x3)
    return ("convolution_2d" if impl == "winograd" else impl), p, kh * kw / (k * k)


def describe(kernel: str, params: Mapping[str, Any]) -> str | None:
    """Why a kernel is outside what the features describe (None when it is not)."""
    if kernel in CONV_TYPES:
        kh, kw = params.get("Kernel"), params.get("Kernel_w")
        if kw is not None and kh and kw and kh != kw:
            k = max(kh, kw)
            return f"non-square kernel {kh}x{kw}: priced as a {k}x{k} conv at {kh * kw}/{k * k} of its FLOPs"
    return None


__all__ = ["stand_in", "describe", "CONV_TYPES"]
