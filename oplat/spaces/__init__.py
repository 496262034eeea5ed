"""Search spaces: a network's IR (or ONNX) straight from an architecture string.

Built in: ``nb201`` (NAS-Bench-201 cells, CIFAR 32x32), ``mbconv`` and ``mbconv-cifar``
(an FBNet-style MBConv block space at 224x224 and 32x32). A space is a
:class:`SearchSpace`: how to check an encoding, how to build its network on a builder
(:class:`~oplat.zoo.builder.OnnxBuilder` for ONNX, :class:`.graph_builder.GraphBuilder`
for the IR with no ONNX in between), and how to sample one.

Add your own with :func:`register_space`, or from an installed package through the
``oplat.search_spaces`` entry point group (the entry point names a SearchSpace, or a
function returning one); ``get_space("package.module:attr")`` imports one by path.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from functools import partial
from importlib.metadata import entry_points
from typing import Any, Callable

import onnx

from ..ir import Graph
from ..zoo.builder import OnnxBuilder
from .graph_builder import GraphBuilder

ENTRY_POINT_GROUP = "oplat.search_spaces"


@dataclass(frozen=True)
class SearchSpace:
    """A family of networks named by encodings (architecture strings).

    ``parse(encoding)`` returns what ``network`` needs and raises ValueError on a
    malformed encoding; ``network(builder, parsed)`` appends the network to ``builder``
    (whose graph input ``"input"`` has ``input_shape``) and returns its output tensor;
    ``sample(rng)`` draws an encoding (numpy Generator).
    """

    name: str
    input_shape: tuple[int, ...]
    parse: Callable[[str], Any]
    network: Callable[[OnnxBuilder, Any], str]
    sample: Callable[[Any], str]
    description: str = ""

    def graph(self, encoding: str) -> Graph:
        """The network of ``encoding`` as an IR graph (no ONNX in between)."""
        b = GraphBuilder(self.name, self.input_shape)
        return b.model(self.network(b, self.parse(encoding)))

    def onnx(self, encoding: str, graph_only: bool = True) -> onnx.ModelProto:
        """The network of ``encoding`` as an ONNX model (weights random unless graph-only)."""
        b = OnnxBuilder(self.name, self.input_shape)
        return b.model(self.network(b, self.parse(encoding)), graph_only)


_SPACES: dict[str, SearchSpace] = {}
_BROKEN: dict[str, str] = {}  # plug-ins that failed to load, and why


def register_space(space: SearchSpace, replace: bool = False) -> SearchSpace:
    """Make ``space`` known by its name (to :func:`get_space`, ``oplat predict --space``)."""
    _ensure_builtins()
    if space.name in _SPACES and not replace:
        raise ValueError(f"a search space called {space.name!r} is registered already")
    _SPACES[space.name] = space
    return space


_BUILTINS_DONE = False


def _ensure_builtins() -> None:
    global _BUILTINS_DONE
    if not _BUILTINS_DONE:
        _BUILTINS_DONE = True
        _builtins()


def _builtins() -> None:
    from . import mbconv, nb201

    register_space(SearchSpace("nb201", (1, 3, 32, 32), nb201.parse_arch,
                               partial(nb201._network, c=16, n=5, classes=10), nb201.random_arch,
                               "NAS-Bench-201 (CIFAR, 32x32, C=16, 5 cells per stage): '|op~0|+|op~0|op~1|+|...|'"))
    for space, variant in (("mbconv", "imagenet"), ("mbconv-cifar", "cifar")):
        r = mbconv.VARIANTS[variant]["resolution"]
        register_space(SearchSpace(space, (1, 3, r, r), partial(mbconv.parse_arch, variant=variant),
                                   partial(mbconv._network, variant=variant),
                                   partial(mbconv.random_arch, variant=variant),
                                   f"FBNet-style MBConv blocks, {r}x{r}: 22 of k3e1..k5e6[g2] or skip, joined by '-'"))


def _plugins() -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _SPACES or ep.name in _BROKEN:
            continue
        try:  # a broken plug-in must not take the built-in spaces down with it
            obj = ep.load()
            space = obj if isinstance(obj, SearchSpace) else obj()
            register_space(space)
        except Exception as e:
            _BROKEN[ep.name] = f"{type(e).__name__}: {e}"
            warnings.warn(f"search space plug-in {ep.name!r} ({ep.value}) failed to load: {_BROKEN[ep.name]}",
                          stacklevel=2)


def list_spaces() -> list[str]:
    """The names of every registered search space (built in and plug-ins)."""
    _ensure_builtins()
    _plugins()
    return sorted(_SPACES)


def get_space(name: str) -> SearchSpace:
    """The space called ``name``, or one imported from ``package.module:attr``; KeyError
    (naming the known spaces) otherwise."""
    _ensure_builtins()
    if name in _SPACES:
        return _SPACES[name]
    if ":" in name:
        mod, _, attr = name.partition(":")
        try:  # the user's own module: whatever it raises is one line, not a traceback
            obj = getattr(importlib.import_module(mod), attr)
            space = obj if isinstance(obj, SearchSpace) else obj()
        except Exception as e:
            raise KeyError(f"cannot import search space {name!r}: {type(e).__name__}: {e}") from None
        if not isinstance(space, SearchSpace):
            raise KeyError(f"{name!r} is not a SearchSpace")
        return space
    _plugins()
    if name in _SPACES:
        return _SPACES[name]
    raise KeyError(f"unknown search space {name!r} (known: {', '.join(list_spaces())}; "
                   "or package.module:attr)")


__all__ = ["SearchSpace", "register_space", "get_space", "list_spaces", "GraphBuilder", "ENTRY_POINT_GROUP"]
