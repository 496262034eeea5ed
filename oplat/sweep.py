"""Score many networks at once: a search space's architecture strings (or model files)
to end-to-end predictions, streamed in input order, in chunks, on any executor.

The fast path predicts each network from the cached predictions of its pieces
(:class:`oplat.spaces.compose.SpaceComposer`: a piece is built, lowered and predicted once,
wherever it recurs); where the lowering of a network is not its pieces' (onnxruntime's),
each network's IR is built directly (:meth:`oplat.spaces.SearchSpace.graph`, no ONNX
serialisation or shape inference) and predicted whole (:func:`score_archs`). Either
way the totals equal ``oplat zoo build`` followed by ``oplat predict`` of each file
(``tests/oplat/test_spaces.py``, ``tests/oplat/test_compose.py``).

Chunks go to an executor: a process pool by default (one profile load per worker), or
anything with the ``concurrent.futures.Executor.map`` interface, e.g. a Dask cluster's
``client.get_executor()`` (docs/nas.md).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Sequence

from .predict import PredictionResult, gc_paused, predict_models
from .profile import Profile, load_profile
from .spaces import SearchSpace, get_space
from .spaces.compose import SpaceComposer

DEFAULT_CHUNK = 200


def summary(res: PredictionResult) -> dict[str, Any]:
    """The one-line record of a prediction: totals, completeness and coverage."""
    return res.summary()


def check_archs(space: SearchSpace, archs: Sequence[str]) -> None:
    """Raise ValueError naming the first malformed architecture (1-based position)."""
    for i, a in enumerate(archs, start=1):
        try:
            space.parse(a)
        except ValueError as e:
            raise ValueError(f"architecture {i}: {e}") from None


def score_archs(profile: Profile, space: SearchSpace, archs: Sequence[str]) -> list[dict[str, Any]]:
    """Predict the networks of ``archs`` in ``space`` with ``profile``, each built and
    lowered whole, in one batch (the reference the composed path is checked against)."""
    with gc_paused():
        results = predict_models(profile, [space.graph(a) for a in archs])
    return [{"arch": a, **summary(r)} for a, r in zip(archs, results)]


# worker side: one profile load (and one composer, whose cache of pieces grows over the
# chunks) per worker, whatever the executor; per thread, since an XGBoost booster must not
# predict in two threads at once
_LOADED = threading.local()


def _profile(ref: str) -> Profile:
    cache = _LOADED.__dict__.setdefault("profiles", {})
    p = cache.get(ref)
    if p is None:
        p = cache[ref] = load_profile(ref)
    return p


def composer(profile: Profile, space: SearchSpace) -> SpaceComposer:
    """This thread's composer of ``space`` for ``profile`` (its pieces cached across calls)."""
    cache = _LOADED.__dict__.setdefault("composers", {})
    key = (id(profile), space)
    c = cache.get(key)
    if c is None:
        c = cache[key] = SpaceComposer(profile, space)
    return c


def _score_chunk(job: tuple[str, SearchSpace | str, list[str]]) -> list[dict[str, Any]]:
    ref, space, archs = job
    sp = get_space(space) if isinstance(space, str) else space
    return composer(_profile(ref), sp).summaries(archs)


def _chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def predict_space(profile: Profile | str, space: SearchSpace | str, archs: Sequence[str],
                  chunk: int = DEFAULT_CHUNK, jobs: int | None = 1, executor: Executor | None = None,
                  progress: Callable[[int], None] | None = None) -> Iterator[dict[str, Any]]:
    """Yield ``{"arch", "total_ms", ...}`` for every architecture of ``space``, in input order.

    ``jobs=1`` with no ``executor`` runs in this process; ``jobs=N`` (None: every core)
    runs a process pool of N workers; ``executor`` is any ``Executor`` whose workers can
    import oplat (a Dask ``client.get_executor()``, a Ray pool wrapped as one). A profile
    given as an object must have been loaded from an id or folder (workers load it again
    by that reference). ``progress(n)`` is called after each chunk with its size.
    """
    sp = get_space(space) if isinstance(space, str) else space
    archs = list(archs)
    check_archs(sp, archs)
    jobs = (os.cpu_count() or 1) if jobs is None else jobs
    if executor is None and jobs <= 1:
        prof = load_profile(profile) if isinstance(profile, str) else profile
        comp = SpaceComposer(prof, sp)
        for part in _chunks(archs, chunk):
            yield from comp.summaries(part)
            if progress:
                progress(len(part))
        return
    ref = profile if isinstance(profile, str) else str(profile.path or profile.id)
    # a registered space travels by name (workers register the built-ins themselves)
    space_ref: SearchSpace | str = sp.name if isinstance(space, str) else sp
    if executor is None:
        # smaller chunks keep every worker busy to the end
        chunk = max(1, min(chunk, -(-len(archs) // (4 * jobs))))
    jobs_list = [(ref, space_ref, part) for part in _chunks(archs, chunk)]
    own = executor is None
    # spawned, not forked: a fork of a process that has run XGBoost's OpenMP threads hangs
    ex = executor or ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        for part, out in zip(jobs_list, ex.map(_score_chunk, jobs_list)):
            yield from out
            if progress:
                progress(len(part[2]))
    finally:
        if own:
            ex.shutdown(cancel_futures=True)


def read_archs(lines: Iterable[str]) -> list[str]:
    """Architecture strings from a file's lines: one per line; blank lines and lines
    starting with ``#`` are skipped."""
    return [s for s in (ln.strip() for ln in lines) if s and not s.startswith("#")]


__all__ = ["predict_space", "score_archs", "composer", "summary", "check_archs", "read_archs", "DEFAULT_CHUNK"]
