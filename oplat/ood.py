"""Kernels outside what a profile learned: the ones its features cannot describe (priced by
a stand-in) and the ones whose parameters lie outside the ranges it was trained on.

A convolution's features carry one kernel size (the benchmark's CNNs, which every
shipped profile learned from, have square kernels only). Fed a 1x7 or 7x1 kernel as
it is, a regressor prices it as a 1x1 or a 7x7 convolution: Inception v4 on a phone CPU
profile came out at 13 GFLOP/s for its 7x1 convs and 464 GFLOP/s for its 1x7 ones
beside 81 GFLOP/s for its square ones (issue 23). Instead, a kh x kw kernel is priced as
the square max(kh,kw) convolution of the same shapes, scaled by the share of its
multiply-adds it really does (kh*kw / k^2): the FLOP rate of the square conv it is a
slice of. ``bench/ood_kernels.py`` measures how well that predicts non-square convs
on this machine. Every such kernel is flagged in the result; ``--strict`` refuses it.

A profile also records, per regressor, the range of each shape parameter its training
rows covered (``trained_ranges`` in profile.json; for the shipped phone profiles,
``tools/profile_ranges.py`` derives them from the benchmark models they were trained
on). A kernel beyond ``RANGE_SLACK`` times a range's ends is flagged the same way: the
regressors extrapolate flat past their data, only the log-linear baseline follows.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

CONV_TYPES = ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_GROUP")


def stand_in(kernel: str, impl: str, params: Mapping[str, Any]) -> tuple[str, dict[str, Any], float] | None:
    """``(impl, params, factor)`` of the kernel that prices one the features cannot
    describe (its prediction times ``factor``): the square convolution a non-square one is
    a slice of; for a batch of B images, the one-image kernel B times (the end-to-end
    term's fixed and per-kernel costs are not multiplied). Stacking the images along the
    height instead was checked and is worse: it drives the regressors past the sizes they
    were trained on (bench/results/batch_check.json). None for a kernel the features
    describe."""
    batch = params.get("Images")
    if batch and batch > 1:
        p = {k: v for k, v in params.items() if k != "Images"}
        inner = stand_in(kernel, impl, p)
        return (inner[0], inner[1], inner[2] * batch) if inner is not None else (impl, p, float(batch))
    taps = non_square(kernel, params)
    if taps is None:
        return None
    kh, kw = taps
    k = max(kh, kw)
    p = dict(params)
    p["Kernel"] = p["Kernel_w"] = k
    if "FLOPS" in p:
        p["FLOPS"] = p["FLOPS"] * k * k / (kh * kw)
    # a non-square kernel never runs as Winograd (F(4x4, 3x3) needs 3x3)
    return ("convolution_2d" if impl == "winograd" else impl), p, kh * kw / (k * k)


def non_square(kernel: str, params: Mapping[str, Any]) -> tuple[int, int] | None:
    """(height, width) of a convolution's kernel when they differ; None otherwise."""
    if kernel not in CONV_TYPES:
        return None
    kh, kw = params.get("Kernel"), params.get("Kernel_w")
    if kw is None or kh == kw or not kh or not kw:
        return None
    return int(kh), int(kw)


def describe(kernel: str, params: Mapping[str, Any]) -> str | None:
    """Why a kernel is outside what the features describe (None when it is not)."""
    taps = non_square(kernel, params)
    if taps is None:
        return None
    kh, kw = taps
    k = max(kh, kw)
    return f"non-square kernel {kh}x{kw}: priced as a {k}x{k} conv at {kh * kw}/{k * k} of its FLOPs"


# the shape parameters whose trained ranges a profile records
RANGE_PARAMS = ("Input_shape", "Input_w", "Input_channel", "Filter", "Kernel", "Stride", "Group",
                "Output_shape", "Batch", "M", "N", "K", "Rows", "Cols")
RANGE_SLACK = 1.5


def trained_ranges(items: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, dict[str, list[float]]]:
    """``{predictor key: {param: [lo, hi]}}`` over ``(predictor key, params)`` items."""
    out: dict[str, dict[str, list[float]]] = {}
    for key, params in items:
        if key is None:
            continue
        for name in RANGE_PARAMS:
            v = params.get(name)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                v = float(v)
                lo_hi = out.setdefault(key, {}).get(name)
                if lo_hi is None:
                    out[key][name] = [v, v]
                else:
                    lo_hi[0], lo_hi[1] = min(lo_hi[0], v), max(lo_hi[1], v)
    return out


def out_of_range(ranges: Mapping[str, Sequence[float]] | None, params: Mapping[str, Any],
                 slack: float = RANGE_SLACK) -> str | None:
    """Why a kernel's parameters are outside ``ranges`` (one regressor's trained ranges),
    or None."""
    if not ranges:
        return None
    for name, (lo, hi) in ranges.items():
        v = params.get(name)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if v > hi * slack:
            return f"{name} {v:g} above the {hi:g} this profile was trained on"
        if lo > 0 and v < lo / slack:
            return f"{name} {v:g} below the {lo:g} this profile was trained on"
    return None


__all__ = ["stand_in", "describe", "non_square", "CONV_TYPES", "trained_ranges", "out_of_range", "RANGE_PARAMS", "RANGE_SLACK"]
