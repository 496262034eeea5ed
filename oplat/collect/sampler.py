"""Kernel-config samplers: the shapes real models use, plus random exploration.

``zoo_configs`` lowers model graphs and keeps their kernels as configs (the
distribution to cover); ``explore`` perturbs them (channels x0.5-x2 in multiples of 8,
neighbouring resolutions, other kernel sizes and strides) so the regressors also see
what the zoo does not hold. ``sample_configs`` interleaves both in a fixed, seeded
order, so a collection run is a deterministic prefix of one long list: resumable.
"""

from __future__ import annotations

import random
from typing import Any, Iterable, Iterator

from ..ir import Graph
from ..lowering import lower
from .ops import LAYOUT_KERNELS, config_id

LINKABLE = {"relu", "relu6", "hard_swish", "sigmoid", "hard_sigmoid", "add", "gelu"}


def kernel_config(k) -> dict[str, Any] | None:
    """A single-op config from a lowered kernel (None when it has no builder)."""
    p = k.params
    if any(t not in LINKABLE for t in k.linked):
        return None
    linked = list(k.linked)
    if k.type in ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_GROUP"):
        if k.impl == "fully_connected":
            return {"kernel": "FULLY_CONNECTED", "Input_channel": p["Input_channel"], "Filter": p["Filter"],
                    "linked": linked}
        h = int(p["Output_shape"]) * int(p.get("Stride", 1))
        cfg = {"kernel": k.type, "Input_shape": h, "Input_channel": p["Input_channel"], "Kernel": p["Kernel"],
               "Stride": p.get("Stride", 1), "linked": linked}
        if k.type != "DEPTHWISE_CONV_2D":
            cfg["Filter"] = p["Filter"]
        if k.type == "CONV_2D_GROUP":
            cfg["Group"] = p["Group"]
        return cfg
    if k.type == "FULLY_CONNECTED":
        return {"kernel": "FULLY_CONNECTED", "Input_channel": p["Input_channel"], "Filter": p["Filter"],
                "Rows": p.get("Input_shape", 1), "linked": linked}
    if k.type == "MEAN" or k.impl == "mean":
        return {"kernel": "MEAN", "Input_shape": p["Input_shape"], "Input_channel": p["Input_channel"]}
    if k.type in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        return {"kernel": k.type, "Input_shape": int(p["Output_shape"]) * int(p.get("Stride", 1)),
                "Input_channel": p["Input_channel"], "Kernel": p["Kernel"], "Stride": p.get("Stride", 1)}
    if k.type == "BATCH_MATMUL":
        return {"kernel": "BATCH_MATMUL", **{x: p[x] for x in ("Batch", "M", "K", "N")}}
    if k.type in ("SOFTMAX", "LAYER_NORM"):
        return {"kernel": k.type, "Rows": p["Rows"], "Cols": p["Cols"]}
    if k.type == "TRANSPOSE":
        return {"kernel": "TRANSPOSE", "Input_dims": list(p["Input_dims"]), "Perm": list(p["Perm"])}
    if k.type in ("ADD", "MUL") and "Input_dims" in p:
        cfg = {"kernel": k.type, "Input_dims": list(p["Input_dims"]), "Other_dims": list(p["Other_dims"])}
        return {**cfg, "linked": linked} if linked else cfg
    if k.impl in ("eltwise", "gelu") and k.type in ("RELU", "HARD_SWISH", "SIGMOID", "GELU", "HARD_SIGMOID") \
            and isinstance(p.get("Output_shape"), (tuple, list)):
        return {"kernel": k.type, "Input_dims": [int(d) for d in p["Output_shape"]]}
    if k.impl == "swish" and isinstance(p.get("Output_shape"), (tuple, list)):
        return {"kernel": "SWISH", "Input_dims": [int(d) for d in p["Output_shape"]]}
    if k.type in LAYOUT_KERNELS and p.get("Input_dims"):
        cfg = {"kernel": k.type, "Input_dims": [int(d) for d in p["Input_dims"]]}
        if k.type == "SPLIT":
            cfg.update(Axis=int(p.get("Axis", 1)), Parts=int(p.get("Parts", 2)))
        elif k.type in ("SLICE", "RESIZE", "REDUCE"):
            cfg["Output_dims"] = [int(d) for d in p["Output_shape"]]
            if k.type == "REDUCE" and len(cfg["Output_dims"]) != len(cfg["Input_dims"]):
                return None  # keepdims=0: the same work, but the builder keeps dims
            if k.type == "RESIZE":
                cfg["Mode"] = p.get("Mode", "nearest")
        else:
            cfg.update(Axis=int(p.get("Axis", 1)), Indices=int(p.get("Indices", 0)))
        return cfg
    if k.type == "CONCATENATION" and p.get("Axis", 1) == 1:
        return {"kernel": "CONCATENATION", "Input_shape": p["Input_shape"], "Input_channel": p["Input_channel"],
                "Filter": p["Filter"], "Kernel": p["Kernel"]}
    return None


def zoo_configs(graphs: Iterable[Graph], lowering: tuple[str, str] = ("tflite-gpu", "adreno")) -> list[dict[str, Any]]:
    """Distinct kernel configs of the given graphs lowered for ``lowering``, in first-seen order."""
    seen, out = set(), []
    for g in graphs:
        lm = lower(g, *lowering)
        for k in lm.rows + [k for k in lm.kernels
                            if k.impl in ("eltwise", "gelu", "swish") or k.type in LAYOUT_KERNELS
                            or k.type in ("ADD", "MUL")]:
            cfg = kernel_config(k)
            if cfg is None:
                continue
            cid = config_id(cfg)
            if cid not in seen:
                seen.add(cid)
                out.append(cfg)
    return out


def transformer_configs(n_blocks: int, seed: int = 0) -> list[dict[str, Any]]:
    """Kernels of randomly sized attention blocks (global and windowed): tokens,
    embedding width, heads and MLP ratio drawn from the ranges mobile ViTs use."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for _ in range(n_blocks):
        d = rng.choice([64, 96, 128, 144, 192, 240, 256, 320, 384, 448, 512, 576, 640, 768])
        hd = rng.choice([16, 32, 64])
        heads = max(1, d // hd)
        if rng.random() < 0.3:  # windowed attention: batch of windows
            t, batch = rng.choice([16, 49, 64]), rng.choice([1, 4, 16, 64])
        else:
            t, batch = rng.choice([16, 49, 50, 64, 65, 196, 197, 256, 257]), 1
        r = rng.choice([2, 3, 4])
        rows = t * batch
        out += [
            {"kernel": "LAYER_NORM", "Rows": rows, "Cols": d},
            {"kernel": "FULLY_CONNECTED", "Input_channel": d, "Filter": d, "Rows": rows, "linked": []},
            {"kernel": "BATCH_MATMUL", "Batch": batch * heads, "M": t, "K": hd, "N": t},
            {"kernel": "SOFTMAX", "Rows": batch * heads * t, "Cols": t},
            {"kernel": "BATCH_MATMUL", "Batch": batch * heads, "M": t, "K": t, "N": hd},
            {"kernel": "FULLY_CONNECTED", "Input_channel": d, "Filter": d, "Rows": rows, "linked": ["add"]},
            {"kernel": "FULLY_CONNECTED", "Input_channel": d, "Filter": r * d, "Rows": rows, "linked": ["gelu"]},
            {"kernel": "FULLY_CONNECTED", "Input_channel": r * d, "Filter": d, "Rows": rows, "linked": ["add"]},
            {"kernel": "TRANSPOSE", "Input_dims": [batch, t, heads, hd], "Perm": [0, 2, 1, 3]},
            {"kernel": "TRANSPOSE", "Input_dims": [batch, t, heads, hd], "Perm": [0, 2, 3, 1]},
            {"kernel": "ADD", "Input_dims": [batch, t, d], "Other_dims": [batch, t, d]},
            {"kernel": "MUL", "Input_dims": [batch * heads, t, t], "Other_dims": [1]},
            # the MLP's GELU on its own (frameworks that do not fuse it into the linear layer)
            {"kernel": "GELU", "Input_dims": [batch, t, r * d]},
        ]
        if rng.random() < 0.3:  # patch-embedding flatten (C, HW) -> (HW, C) and window shuffles
            g = rng.choice([7, 8, 14, 16, 28, 56])
            out.append({"kernel": "TRANSPOSE", "Input_dims": [1, d, g * g], "Perm": [0, 2, 1]})
            if g % 7 == 0:
                out.append({"kernel": "TRANSPOSE", "Input_dims": [1, g // 7, 7, g // 7, 7, d],
                            "Perm": [0, 1, 3, 2, 4, 5]})
    return out


def layout_configs(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Data-movement kernels of the sizes CNNs and ViTs use: channel splits and shuffles
    (ShuffleNet), channel and token slices (Swin, LeViT), token gathers (a ViT's class token), 2x
    resizes and means over tokens or channels, over feature maps of 7-112 pixels and
    16-1024 channels."""
    rng = random.Random(seed)
    out = [layout_config(rng.choice(["SPLIT", "SPLIT", "SLICE", "SLICE", "GATHER", "RESIZE", "REDUCE"]), rng)
           for _ in range(n)]
    shuffle_rng = random.Random(seed + 1)  # its own stream: the configs above stay as they were
    return out + [channel_shuffle_config(shuffle_rng) for _ in range(n // 4)]


def swish_configs(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Unfused x*sigmoid(x) of the sizes hybrid ViTs apply it to: conv feature maps
    (MobileViT's blocks, 8-128 px, 16-640 channels) and token rows (an MLP's hidden layer)."""
    rng = random.Random(seed + 2)  # its own stream, as the channel shuffles
    out = []
    for _ in range(n):
        c = rng.choice([16, 24, 32, 48, 64, 80, 96, 128, 144, 160, 192, 240, 256, 320, 384, 480, 640])
        if rng.random() < 0.6:
            h = rng.choice([8, 16, 32, 64, 128])
            out.append({"kernel": "SWISH", "Input_dims": [1, c, h, h]})
        else:
            out.append({"kernel": "SWISH", "Input_dims": [rng.choice([1, 4]), rng.choice([16, 64, 256, 1024]), 2 * c]})
    return out


def channel_shuffle_config(rng: random.Random) -> dict[str, Any]:
    """A ShuffleNet channel shuffle: (1, groups, C/groups, H, W) with the two channel
    axes swapped (the transformer configs' transposes move tokens, not channels:
    host/ort-cpu-1t had shufflenet_v2_0.5 +25% without these, +6% with them)."""
    g = rng.choice([2, 2, 2, 3, 4, 8])
    c = rng.choice([24, 48, 58, 88, 116, 176, 232, 244, 352, 464, 488, 704, 976]) // g * g
    h = rng.choice([7, 14, 28, 56])
    return {"kernel": "TRANSPOSE", "Input_dims": [1, g, c // g, h, h], "Perm": [0, 2, 1, 3, 4]}


def layout_config(kind: str, rng: random.Random) -> dict[str, Any]:
    """One random data-movement config of type ``kind`` (see :func:`layout_configs`)."""
    c = rng.choice([16, 24, 32, 48, 64, 96, 116, 128, 176, 192, 232, 256, 352, 384, 464, 512, 768, 1024])
    h = rng.choice([7, 14, 28, 56, 112])
    if kind == "SPLIT":
        return {"kernel": "SPLIT", "Input_dims": [1, c, h, h], "Axis": 1, "Parts": rng.choice([2, 2, 3, 4])}
    if kind == "SLICE":
        if rng.random() < 0.5:
            dims, odims = [1, c, h, h], [1, max(8, c // rng.choice([2, 4])), h, h]
        else:  # tokens x channels (a window or a class-token slice)
            t = rng.choice([49, 50, 196, 197, 3136])
            dims, odims = [1, t, c], [1, rng.choice([1, t // 2, t - 1]), c]
        return {"kernel": "SLICE", "Input_dims": dims, "Output_dims": odims}
    if kind == "REDUCE":
        if rng.random() < 0.5:  # channel or spatial mean of a feature map
            dims = [1, c, min(h, 56), min(h, 56)]
            out = [1, 1] + dims[2:] if rng.random() < 0.5 else [1, c, 1, 1]
        else:  # token mean (a ViT's pooled head) or a row mean (a decomposed layer norm)
            t = rng.choice([49, 50, 196, 197, 784, 3136])
            dims = [1, t, c]
            out = [1, 1, c] if rng.random() < 0.5 else [1, t, 1]
        return {"kernel": "REDUCE", "Input_dims": dims, "Output_dims": out}
    if kind == "GATHER":
        t = rng.choice([50, 65, 197, 257])
        return {"kernel": "GATHER", "Input_dims": [1, t, c], "Axis": 1, "Indices": rng.choice([0, 0, 1, 2])}
    h = min(h, 56)
    return {"kernel": "RESIZE", "Input_dims": [1, c, h, h], "Output_dims": [1, c, 2 * h, 2 * h],
            "Mode": rng.choice(["nearest", "linear"])}


def _ch(rng: random.Random, c: int) -> int:
    return max(8, int(c * rng.uniform(0.5, 2.0)) // 8 * 8)


def explore(cfg: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A random neighbour of ``cfg`` (same kernel type, similar size).

    Channels scale by 0.5-2x (multiples of 8), the resolution by 0.5/1/2x, kernel sizes
    move to a neighbour, links change: near the models' own kernels, where accuracy
    matters, instead of implausible corners (1,000 channels at 112x112).
    """
    if cfg["kernel"] in LAYOUT_KERNELS:  # fresh sizes of the same kind
        return layout_config(cfg["kernel"], rng)
    c = dict(cfg)
    if "Input_channel" in c:
        c["Input_channel"] = _ch(rng, int(c["Input_channel"]))
    if "Filter" in c and c["kernel"] not in ("CONCATENATION",):
        c["Filter"] = _ch(rng, int(c["Filter"]))
    if c["kernel"] == "CONCATENATION":
        c["Filter"] = c["Input_channel"] + _ch(rng, int(c["Input_channel"])) * (int(c.get("Kernel", 2)) - 1)
    if c["kernel"] == "CONV_2D_GROUP":
        g = rng.choice([2, 4, 8, 16])
        c["Input_channel"] = max(g, c["Input_channel"] // g * g)
        c["Filter"] = max(g, c["Filter"] // g * g)
        c["Group"] = g
    if "Input_shape" in c and c["kernel"] != "FULLY_CONNECTED":
        h = int(c["Input_shape"] * rng.choice([0.5, 1, 1, 2]))
        c["Input_shape"] = min(224, max(7, h))
    if "Input_dims" in c and "Perm" not in c and c["kernel"] not in ("ADD", "MUL"):
        dims = list(c["Input_dims"])
        j = 1 if len(dims) == 4 else len(dims) - 1
        dims[j] = _ch(rng, int(dims[j]))
        c["Input_dims"] = dims
    if c["kernel"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_GROUP"):
        k = int(c.get("Kernel", 3))
        c["Kernel"] = rng.choice({1: [1, 1, 3], 3: [1, 3, 3, 5], 5: [3, 5, 5, 7], 7: [5, 7]}.get(k, [k]))
        if c["kernel"] == "DEPTHWISE_CONV_2D" and c["Kernel"] == 1:
            c["Kernel"] = 3
        c["Stride"] = rng.choice([1, 1, 2])
        relu = "relu6" if "relu6" in cfg.get("linked", ()) else "relu"  # a ReLU6 net's neighbours clamp too
        c["linked"] = rng.choice([[], [relu], ["add"], ["add", relu], ["hard_swish"]])
        if c["Stride"] != 1 and "add" in c["linked"]:
            c["linked"] = [t for t in c["linked"] if t != "add"]
    return c


def sample_configs(base: list[dict[str, Any]], n: int, seed: int = 0,
                   explore_share: float = 0.5) -> Iterator[dict[str, Any]]:
    """``n`` configs: the base set (shuffled) interleaved with explored neighbours."""
    rng = random.Random(seed)
    order = list(base)
    rng.shuffle(order)
    seen: set[str] = set()
    i = 0
    produced = attempts = 0
    while produced < n and order and attempts < 20 * n + 1000:
        attempts += 1
        if rng.random() < explore_share or i >= len(order):
            cfg = explore(order[rng.randrange(len(order))], rng)
        else:
            cfg = order[i]
            i += 1
        cid = config_id(cfg)
        if cid in seen:
            continue
        seen.add(cid)
        produced += 1
        yield cfg


def default_configs(graphs: Iterable[Graph], n: int, seed: int = 0, transformer_blocks: int = 300,
                    lowering: tuple[str, str] = ("tflite-gpu", "adreno"), layout_kernels: int = 200
                    ) -> list[dict[str, Any]]:
    """What ``oplat collect`` measures: kernels of the given CNN graphs, of random
    attention blocks and random data-movement kernels, interleaved with explored
    neighbours, in a seeded order."""
    base = zoo_configs(graphs, lowering) + transformer_configs(transformer_blocks, seed) + layout_configs(layout_kernels, seed)
    if lowering[0] == "ort-cpu":  # only onnxruntime runs an unfused x*sigmoid(x) as a kernel family of its own
        base += swish_configs(layout_kernels // 2, seed)
    return list(sample_configs(base, n, seed=seed))


def select_kernels(configs: Iterable[dict[str, Any]], kernels: str | Iterable[str]) -> list[dict[str, Any]]:
    """The configs of the named kernel types (``"SPLIT,SLICE"`` or a list), in order;
    an unknown name is an error naming the known ones."""
    from ..errors import OplatError
    from .ops import KERNELS

    want = {k.strip().upper() for k in (kernels.split(",") if isinstance(kernels, str) else kernels) if k.strip()}
    unknown = sorted(want - set(KERNELS))
    if unknown:
        raise OplatError(f"unknown kernel type(s) {', '.join(unknown)} (known: {', '.join(KERNELS)})")
    return [c for c in configs if c["kernel"] in want]
