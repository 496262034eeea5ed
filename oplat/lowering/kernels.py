"""Kernels: what the framework actually launches, with the parameters predictors use."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

# Kernel types that have per-op rows (and regressors); everything else is "glue" that
# the end-to-end term accounts for (unfused element-wise work, layout ops).
ROW_TYPES = ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_GROUP", "FULLY_CONNECTED", "MEAN",
             "CONCATENATION", "MAX_POOL_2D", "AVERAGE_POOL_2D", "BATCH_MATMUL", "SOFTMAX", "LAYER_NORM")
ELEMENTWISE = ("ADD", "SUB", "MUL", "DIV", "RELU", "RELU6", "HARD_SWISH", "HARD_SIGMOID",
               "SIGMOID", "SWISH", "TANH", "LEAKY_RELU", "PRELU", "MINIMUM", "MAXIMUM", "ELU",
               "GELU", "ABS", "NEG", "SQRT", "EXP", "LOG", "POW", "ERF", "CLIP")
LAYOUT = ("RESHAPE", "TRANSPOSE", "PAD", "SLICE", "SPLIT", "RESIZE", "GATHER", "DEPTH_TO_SPACE",
          "SPACE_TO_DEPTH", "CAST", "TILE")


@dataclass(slots=True)
class Kernel:
    """One launched kernel.

    ``type`` is the TFLite op (as in the dataset's ``operation`` column); ``impl`` is the
    GPU kernel family chosen for it (``convolution_2d``, ``winograd``,
    ``fully_connected``, ``mean``, ...); ``linked`` lists element-wise ops fused into it.
    ``params`` use the dataset's feature names plus extra geometry.
    """

    name: str
    type: str
    impl: str
    params: dict[str, Any]
    linked: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    @property
    def is_row(self) -> bool:
        """True for kernels with a per-op regressor."""
        return self.type in ROW_TYPES

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kernel": self.type, "impl": self.impl,
                "linked": list(self.linked), "params": dict(self.params),
                "sources": list(self.sources)}


@dataclass
class LoweredModel:
    """The kernel list of one model plus what could not be lowered."""

    name: str
    kernels: list[Kernel]
    unsupported: list[dict[str, str]] = field(default_factory=list)
    backend: str = "tflite-gpu"

    @cached_property
    def rows(self) -> list[Kernel]:
        """Kernels with a per-op regressor, in execution order (computed once)."""
        return [k for k in self.kernels if k.is_row]

    @cached_property
    def glue(self) -> list[Kernel]:
        """Kernels without a regressor (unfused element-wise, layout), in order."""
        return [k for k in self.kernels if not k.is_row]

    def signature(self) -> tuple:
        """What a predictor sees of this model: every kernel's type, implementation,
        parameters and linked ops, in order (names aside). Two models with equal
        signatures are the same network to a profile, whatever their file says."""
        return tuple((k.type, k.impl, tuple(sorted((a, repr(b)) for a, b in k.params.items())), tuple(k.linked))
                     for k in self.kernels)
